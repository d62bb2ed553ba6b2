"""The school-day calendar: term time, weekends, bank holidays, closures, and counting school days."""

from __future__ import annotations

from datetime import date, timedelta
from itertools import pairwise

import pytest

from processors.calendar import SchoolCalendar, default_calendar
from processors.terms import DEFAULT_SCHOOL_YEARS, DEFAULT_TERMS


@pytest.fixture(scope="module")
def calendar() -> SchoolCalendar:
    return default_calendar()


def test_default_calendar_is_built_once() -> None:
    assert default_calendar() is default_calendar()


def test_weekdays_in_term_are_school_days(calendar: SchoolCalendar) -> None:
    assert calendar.is_school_day(date(2025, 3, 4))  # Tuesday
    assert calendar.is_school_day(date(2025, 3, 7))  # Friday


def test_weekends_are_not(calendar: SchoolCalendar) -> None:
    assert not calendar.is_school_day(date(2025, 3, 8))
    assert not calendar.is_school_day(date(2025, 3, 9))


def test_bank_holidays_in_term_are_not(calendar: SchoolCalendar) -> None:
    assert not calendar.is_school_day(date(2025, 5, 5))  # early May bank holiday, in term
    assert not calendar.is_school_day(date(2025, 5, 26))  # spring bank holiday
    assert calendar.is_school_day(date(2025, 5, 6))
    assert not calendar.is_school_day(date(2027, 5, 3))
    assert not calendar.is_school_day(date(2027, 3, 26))  # Good Friday, last day of spring term


def test_half_terms_and_breaks_are_not(calendar: SchoolCalendar) -> None:
    for day in [
        date(2024, 10, 30),  # autumn half-term
        date(2025, 2, 19),  # February half-term
        date(2025, 5, 28),  # May half-term
        date(2024, 12, 23),
        date(2024, 12, 31),
        date(2025, 1, 3),  # Christmas
        date(2025, 4, 14),
        date(2025, 4, 22),
        date(2025, 4, 25),  # Easter
        date(2025, 8, 1),
        date(2025, 8, 29),  # summer
    ]:
        assert not calendar.is_school_day(day), day


def test_term_boundaries(calendar: SchoolCalendar) -> None:
    assert calendar.is_school_day(date(2024, 9, 2))
    assert calendar.is_school_day(date(2024, 12, 20))
    assert calendar.is_school_day(date(2025, 1, 6))
    assert calendar.is_school_day(date(2025, 7, 22))
    assert not calendar.is_school_day(date(2025, 7, 23))
    assert calendar.is_school_day(date(2025, 9, 3))
    assert not calendar.is_school_day(date(2025, 9, 2))


def test_every_default_school_year_has_a_normal_number_of_school_days(calendar: SchoolCalendar) -> None:
    # 190 pupil days plus INSET days: an English school year has about 190-195 weekdays in term.
    for label in DEFAULT_SCHOOL_YEARS:
        start_year = int(label[:4])
        days = calendar.school_days_between(date(start_year, 9, 1), date(start_year + 1, 8, 31))
        assert 188 <= days <= 197, (label, days)


def test_default_terms_are_ordered_and_separated_by_breaks() -> None:
    for (_, last), (next_first, _) in pairwise(DEFAULT_TERMS):
        assert next_first - last > timedelta(days=3), (last, next_first)


def test_worked_example_ten_school_days_after_4_march_2025(calendar: SchoolCalendar) -> None:
    assert calendar.nth_school_day_after(date(2025, 3, 4), 10) == date(2025, 3, 18)
    assert calendar.nth_school_day_after(date(2025, 3, 4), 1) == date(2025, 3, 5)


def test_worked_example_summer_removal_reaches_into_september(calendar: SchoolCalendar) -> None:
    deadline = calendar.nth_school_day_after(date(2025, 7, 18), 10)
    assert date(2025, 8, 29) < deadline < date(2025, 10, 1)
    # 21 and 22 July, then 8 days from Wednesday 3 September
    assert deadline == date(2025, 9, 12)


def test_counting_after_a_non_school_day_starts_at_the_next_school_day(calendar: SchoolCalendar) -> None:
    assert calendar.nth_school_day_after(date(2025, 3, 8), 1) == date(2025, 3, 10)  # Saturday -> Monday
    assert calendar.nth_school_day_after(date(2025, 5, 2), 1) == date(2025, 5, 6)  # over bank holiday
    assert calendar.nth_school_day_after(date(2024, 12, 20), 1) == date(2025, 1, 6)  # over Christmas


def test_nth_school_day_before(calendar: SchoolCalendar) -> None:
    assert calendar.nth_school_day_before(date(2025, 3, 18), 10) == date(2025, 3, 4)
    assert calendar.nth_school_day_before(date(2025, 3, 10), 1) == date(2025, 3, 7)
    assert calendar.nth_school_day_before(date(2025, 9, 3), 1) == date(2025, 7, 22)
    # the day itself never counts, even when it is a school day
    assert calendar.nth_school_day_before(date(2025, 3, 5), 1) == date(2025, 3, 4)
    assert calendar.nth_school_day_before(date(2025, 2, 24), 1) == date(2025, 2, 14)  # over half-term


def test_before_and_after_are_inverse_on_school_days(calendar: SchoolCalendar) -> None:
    for day in calendar.school_days[10:-20:37]:
        assert calendar.nth_school_day_before(calendar.nth_school_day_after(day, 7), 7) == day


def test_zero_school_days_is_the_day_itself(calendar: SchoolCalendar) -> None:
    assert calendar.nth_school_day_after(date(2025, 3, 8), 0) == date(2025, 3, 8)
    assert calendar.nth_school_day_before(date(2025, 3, 8), 0) == date(2025, 3, 8)
    with pytest.raises(ValueError, match="negative"):
        calendar.nth_school_day_after(date(2025, 3, 4), -1)
    with pytest.raises(ValueError, match="negative"):
        calendar.nth_school_day_before(date(2025, 3, 4), -1)


def test_school_days_between_includes_both_ends(calendar: SchoolCalendar) -> None:
    assert calendar.school_days_between(date(2025, 3, 4), date(2025, 3, 18)) == 11
    assert calendar.school_days_between(date(2025, 3, 4), date(2025, 3, 4)) == 1
    assert calendar.school_days_between(date(2025, 3, 8), date(2025, 3, 9)) == 0
    assert calendar.school_days_between(date(2025, 3, 18), date(2025, 3, 4)) == 0
    assert calendar.school_days_between(date(2025, 7, 19), date(2025, 9, 2)) == 2  # 21 and 22 July


def test_coverage_is_whole_school_years(calendar: SchoolCalendar) -> None:
    assert calendar.first_covered == date(2024, 9, 1)
    assert calendar.last_covered == date(2028, 8, 31)
    assert calendar.covers(date(2028, 8, 31))
    assert not calendar.covers(date(2028, 9, 1))
    assert not calendar.is_school_day(date(2028, 8, 15))  # summer holiday after the last term


def test_dates_outside_coverage_are_answered_by_the_fallback(calendar: SchoolCalendar) -> None:
    assert calendar.is_school_day(date(2024, 8, 30))  # a Friday before the first covered school year
    assert not calendar.is_school_day(date(2024, 8, 26))  # summer bank holiday
    assert not calendar.is_school_day(date(2028, 12, 25))
    assert calendar.nth_school_day_after(date(2028, 9, 4), 1) == date(2028, 9, 5)
    assert calendar.school_days_between(date(2025, 1, 6), date(2029, 1, 1)) == calendar.school_days_between(
        date(2025, 1, 6), date(2028, 8, 31)
    ) + calendar.school_days_between(date(2028, 9, 1), date(2029, 1, 1))
    assert calendar.school_days_between(date(2028, 9, 1), date(2028, 9, 8)) == 6


def test_counts_running_past_coverage_go_on_with_the_fallback(calendar: SchoolCalendar) -> None:
    # 21 July 2028 ends the last covered term, then Fri 1 Sep 2028 onwards are weekdays on the fallback
    assert calendar.nth_school_day_after(date(2028, 7, 20), 10) == date(2028, 9, 13)
    # back over 3 and 2 September 2024 (term starts 2 Sep) into the uncovered August: 30, 29, 28 Aug
    assert calendar.nth_school_day_before(date(2024, 9, 4), 5) == date(2024, 8, 28)
    assert calendar.nth_school_day_after(date(2028, 7, 20), 1) == date(2028, 7, 21)


def test_closures_from_config_are_not_school_days() -> None:
    terms: list[tuple[date | str, date | str]] = [
        ("2025-09-01", "2025-12-19"),
        (date(2026, 1, 5), date(2026, 7, 21)),
    ]
    la_calendar = SchoolCalendar.from_config(terms, closures=["2025-09-01", date(2025, 9, 2)])
    assert not la_calendar.is_school_day(date(2025, 9, 1))
    assert not la_calendar.is_school_day(date(2025, 9, 2))
    assert la_calendar.is_school_day(date(2025, 9, 3))
    # no half-terms configured, so late October is term time in this LA
    assert la_calendar.is_school_day(date(2025, 10, 29))
    assert la_calendar.nth_school_day_after(date(2025, 9, 1), 1) == date(2025, 9, 3)
    # bank holidays still apply to a configured calendar
    assert not la_calendar.is_school_day(date(2026, 5, 4))
    assert la_calendar.first_covered == date(2025, 9, 1)
    assert la_calendar.last_covered == date(2026, 8, 31)
    assert la_calendar.covers(date(2026, 8, 31))
    assert not la_calendar.covers(date(2026, 9, 1))
    # school years the LA does not configure take the shipped calendar (half-term), then the fallback
    assert not la_calendar.is_school_day(date(2026, 10, 26))
    assert not la_calendar.is_school_day(date(2028, 8, 1))
    assert la_calendar.is_school_day(date(2028, 9, 5))
    # closures apply only in the LA's own school years
    assert la_calendar.nth_school_day_after(date(2026, 7, 21), 1) == date(2026, 9, 2)


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one term"):
        SchoolCalendar.from_config([])
    with pytest.raises(ValueError, match="ends before it starts"):
        SchoolCalendar.from_config([("2025-12-19", "2025-09-01")])
    with pytest.raises(ValueError, match="1990/91 to 2099/2100"):
        SchoolCalendar.from_config([("1990-06-01", "1990-07-20")])
    with pytest.raises(ValueError, match="1990/91 to 2099/2100"):
        SchoolCalendar.from_config([("2100-09-01", "2100-12-20")])


def test_past_its_school_years_a_calendar_counts_weekdays_less_bank_holidays() -> None:
    shipped = default_calendar()
    assert shipped.nth_school_day_after(date(2025, 3, 4), 10) == date(2025, 3, 18)
    # Fri 14 Jul 2028 is covered (summer term ends 21 Jul: 17-21 Jul are 5 school days), then the count runs
    # past 31 Aug 2028 as plain working days: Fri 1 Sep, Mon 4, Tue 5, Wed 6, Thu 7 Sep.
    assert shipped.nth_school_day_after(date(2028, 7, 14), 10) == date(2028, 9, 7)
    # wholly outside: Christmas Day and Boxing Day 2028 are bank holidays
    assert shipped.nth_school_day_after(date(2028, 12, 22), 2) == date(2028, 12, 28)
    # backwards from early September 2024 into the uncovered August: 30, 29, 28 Aug (26 Aug is a bank holiday)
    assert shipped.nth_school_day_before(date(2024, 9, 3), 4) == date(2024, 8, 28)
    assert shipped.nth_school_day_before(date(2024, 9, 2), 10) == date(2024, 8, 16)


def test_counting_from_before_the_calendar_stays_near_the_date() -> None:
    from processors.config import RuleConfig

    rules_calendar = RuleConfig(default_calendar()).calendar_for("330")
    # 19 July 2024 is before the shipped calendar's first day (1 September 2024): 22-26 July, 29 July-2 August
    assert rules_calendar.nth_school_day_after(date(2024, 7, 19), 10) == date(2024, 8, 2)
    # the mirror: counting back from after the last covered day (31 August 2028)
    assert rules_calendar.nth_school_day_before(date(2028, 10, 2), 10) == date(2028, 9, 18)
