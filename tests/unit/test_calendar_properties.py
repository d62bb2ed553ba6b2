"""Counting school days agrees with a day-by-day count from the definition, for any date from 1990 to 2100."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from functools import cache

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.calendar import SchoolCalendar, default_calendar
from processors.terms import DEFAULT_CLOSURES, DEFAULT_TERMS

ONE_DAY = timedelta(days=1)
FIRST, LAST = date(1990, 1, 1), date(2100, 12, 31)
BANK_HOLIDAYS = frozenset(holidays.country_holidays("GB", subdiv="ENG", years=range(1989, 2102)).keys())

# A small LA configuration: 2025/26 overrides the shipped year, 2030/31 lies beyond it with fallback years
# between, so spans run LA -> shipped -> fallback -> LA -> fallback.
LA_TERMS: list[tuple[date | str, date | str]] = [
    ("2025-09-08", "2025-12-12"),
    ("2026-01-12", "2026-03-27"),
    ("2026-04-20", "2026-07-10"),
    ("2030-09-02", "2030-12-20"),
    ("2031-01-06", "2031-07-18"),
]
LA_CLOSURES = [date(2025, 11, 14), date(2026, 2, 16), date(2030, 9, 2)]

Rule = Callable[[date], bool]


def _school_year(day: date) -> int:
    return day.year if day.month >= 9 else day.year - 1


def _term_rule(terms: list[tuple[date, date]], closures: set[date]) -> tuple[set[int], Rule]:
    years = {year for first, last in terms for year in range(_school_year(first), _school_year(last) + 1)}

    def school_day(day: date) -> bool:
        in_term = any(first <= day <= last for first, last in terms)
        return in_term and day.weekday() < 5 and day not in BANK_HOLIDAYS and day not in closures

    return years, school_day


def _by_definition(*layers: tuple[set[int], Rule]) -> Rule:
    """Each school year is answered by the first layer configuring it, else weekdays less bank holidays."""

    def school_day(day: date) -> bool:
        for years, rule in layers:
            if _school_year(day) in years:
                return rule(day)
        return day.weekday() < 5 and day not in BANK_HOLIDAYS

    return school_day


SHIPPED = _term_rule(list(DEFAULT_TERMS), set(DEFAULT_CLOSURES))
LA = _term_rule([(date.fromisoformat(str(a)), date.fromisoformat(str(b))) for a, b in LA_TERMS], set(LA_CLOSURES))
DEFINITIONS: dict[str, Rule] = {"shipped": _by_definition(SHIPPED), "la": _by_definition(LA, SHIPPED)}


@cache
def _calendar(name: str) -> SchoolCalendar:
    return default_calendar() if name == "shipped" else SchoolCalendar.from_config(LA_TERMS, LA_CLOSURES)


def brute_after(school_day: Rule, day: date, n: int) -> date:
    counted = 0
    while counted < n:
        day += ONE_DAY
        counted += school_day(day)
    return day


def brute_before(school_day: Rule, day: date, n: int) -> date:
    counted = 0
    while counted < n:
        day -= ONE_DAY
        counted += school_day(day)
    return day


EDGES = [
    FIRST, LAST, date(2024, 9, 1), date(2028, 8, 31), date(2025, 9, 1), date(2026, 8, 31), date(2030, 9, 1),
    date(2031, 8, 31), date(2024, 7, 19), date(2028, 7, 21),
]
DAYS = st.one_of(
    st.dates(min_value=FIRST, max_value=LAST),
    st.builds(lambda edge, offset: edge + timedelta(days=offset), st.sampled_from(EDGES), st.integers(-120, 120)),
)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(DEFINITIONS)), day=DAYS, n=st.integers(0, 60))
def test_counts_match_a_day_by_day_count(name: str, day: date, n: int) -> None:
    calendar, school_day = _calendar(name), DEFINITIONS[name]
    assert calendar.nth_school_day_after(day, n) == brute_after(school_day, day, n)
    assert calendar.nth_school_day_before(day, n) == brute_before(school_day, day, n)
    if FIRST <= day <= LAST:
        assert calendar.is_school_day(day) == school_day(day)


def test_ten_school_days_after_a_july_day_before_the_calendar_is_in_that_summer() -> None:
    answer = default_calendar().nth_school_day_after(date(2024, 7, 19), 10)
    assert answer == date(2024, 8, 2)
    assert answer == brute_after(DEFINITIONS["shipped"], date(2024, 7, 19), 10)


def test_after_the_shipped_years_counts_weekdays_less_bank_holidays() -> None:
    # Fri 21 Dec 2029, Mon 24, (Christmas and Boxing Day), Thu 27, Fri 28, Mon 31, (New Year's Day), 2-4, 7, 8 Jan
    assert default_calendar().nth_school_day_after(date(2029, 12, 20), 10) == date(2030, 1, 8)
    assert default_calendar().nth_school_day_before(date(2030, 1, 8), 10) == date(2029, 12, 20)


@pytest.mark.parametrize("day", [date.min, date(1, 1, 2), date(1989, 12, 30), date(2101, 1, 2), date.max])
def test_any_date_gets_an_answer(day: date) -> None:
    calendar = default_calendar()
    after, before = calendar.nth_school_day_after(day, 10), calendar.nth_school_day_before(day, 10)
    assert after >= day >= before
    if date(1, 1, 20) < day < date(9999, 12, 10):
        assert after == brute_after(DEFINITIONS["shipped"], day, 10)
        assert before == brute_before(DEFINITIONS["shipped"], day, 10)
    assert calendar.nth_school_day_after(date(9999, 12, 1), 10**9) == date.max


def test_fallback_decisions_are_counted() -> None:
    calendar = SchoolCalendar(DEFAULT_TERMS)
    calendar.nth_school_day_after(date(2025, 3, 4), 10)
    calendar.nth_school_day_before(date(2025, 3, 4), 20)
    calendar.nth_school_day_after(date(2028, 9, 4), 0)
    assert calendar.fallback_decisions == 0
    calendar.nth_school_day_after(date(2028, 7, 20), 10)  # runs into September 2028
    calendar.nth_school_day_before(date(2024, 9, 4), 5)  # runs back into August 2024
    calendar.nth_school_day_after(date(2040, 1, 1), 1)
    assert calendar.fallback_decisions == 3
    # an LA's calendar counting into the shipped years is not on the fallback
    la = SchoolCalendar.from_config(LA_TERMS, LA_CLOSURES)
    la.nth_school_day_after(date(2026, 7, 9), 10)
    assert la.fallback_decisions == 0
    la.nth_school_day_before(date(2030, 9, 10), 10)
    assert la.fallback_decisions == 1


def test_building_a_calendar_is_quick() -> None:
    import time

    default_calendar()
    started = time.perf_counter()
    SchoolCalendar.from_config(LA_TERMS, LA_CLOSURES)
    SchoolCalendar(DEFAULT_TERMS)
    assert time.perf_counter() - started < 0.5


def test_the_worker_metric_adds_what_calendars_counted_on_the_fallback() -> None:
    from prometheus_client import CollectorRegistry

    from processors.config import RuleConfig
    from sinks.metrics import Metrics, count_calendar_fallbacks

    metrics = Metrics(CollectorRegistry())
    shipped, la = SchoolCalendar(DEFAULT_TERMS), SchoolCalendar.from_config(LA_TERMS, LA_CLOSURES)
    config = RuleConfig(shipped, calendars={"331": la})

    def reported(la_code: str) -> float | None:
        return metrics.registry.get_sample_value("rollwatch_calendar_fallback_decisions_total", {"la_code": la_code})

    count_calendar_fallbacks(metrics, config)
    assert reported("default") is None
    shipped.nth_school_day_after(date(2028, 7, 20), 10)
    shipped.nth_school_day_after(date(2040, 1, 1), 1)
    la.nth_school_day_before(date(2030, 9, 10), 10)
    count_calendar_fallbacks(metrics, config)
    count_calendar_fallbacks(metrics, config)
    assert reported("default") == 2
    assert reported("331") == 1
    count_calendar_fallbacks(object(), config)  # a recorder without Prometheus is left alone
