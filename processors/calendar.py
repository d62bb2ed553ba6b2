"""The school-day calendar: which days are school days, and counting N school days from a date."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from datetime import date, timedelta
from functools import cache

import holidays

from processors.terms import DEFAULT_CLOSURES, DEFAULT_TERMS

DayLike = date | str
TermLike = tuple[DayLike, DayLike]

_SATURDAY = 5


class OutsideCalendarError(ValueError):
    """A date, or the answer to a count, falls outside the school years a calendar covers."""


def _as_date(value: DayLike) -> date:
    if isinstance(value, date):
        return value
    return date.fromisoformat(value)


def _school_year_start(day: date) -> date:
    return date(day.year if day.month >= 9 else day.year - 1, 9, 1)


def _school_year_end(day: date) -> date:
    return date(day.year if day.month <= 8 else day.year + 1, 8, 31)


def england_bank_holidays(first_year: int, last_year: int) -> frozenset[date]:
    """England's bank holidays (substitute days included) for the calendar years given, inclusive."""
    calendar = holidays.country_holidays("GB", subdiv="ENG", years=range(first_year, last_year + 1))
    return frozenset(calendar.keys())


class SchoolCalendar:
    """School days of one LA: weekdays in term, less England bank holidays and the LA's closure days.

    The calendar covers whole school years: from 1 September of the school year holding the first term
    day to 31 August of the school year holding the last one, so holidays at either end are answered too.

    Outside that range it refuses rather than guesses: every method raises `OutsideCalendarError` (a
    `ValueError` naming the covered range) when given a date outside it, or when a count runs past either
    end. A deadline computed from invented term dates would be silently wrong, so the caller has to extend
    the LA's configuration instead (or dead-letter the record with that message).

    School days are precomputed into a sorted tuple, so every count is a binary search.
    """

    __slots__ = ("_day_set", "_days", "first_covered", "last_covered")

    def __init__(self, terms: Iterable[TermLike], closures: Iterable[DayLike] = ()) -> None:
        ranges = [(_as_date(first), _as_date(last)) for first, last in terms]
        if not ranges:
            raise ValueError("a school calendar needs at least one term range")
        for first, last in ranges:
            if first > last:
                raise ValueError(
                    f"term range {first.isoformat()} to {last.isoformat()} ends before it starts"
                )
        self.first_covered: date = _school_year_start(min(first for first, _ in ranges))
        self.last_covered: date = _school_year_end(max(last for _, last in ranges))
        closed = england_bank_holidays(self.first_covered.year, self.last_covered.year)
        closed |= {_as_date(day) for day in closures}

        in_term: set[date] = set()
        for first, last in ranges:
            day = first
            while day <= last:
                if day.weekday() < _SATURDAY and day not in closed:
                    in_term.add(day)
                day += timedelta(days=1)
        self._days: tuple[date, ...] = tuple(sorted(in_term))
        self._day_set: frozenset[date] = frozenset(in_term)

    @classmethod
    def from_config(cls, terms: Iterable[TermLike], closures: Iterable[DayLike] = ()) -> SchoolCalendar:
        """Build an LA's calendar from configuration: term ranges and closure days, as dates or ISO text."""
        return cls(terms, closures)

    @property
    def school_days(self) -> tuple[date, ...]:
        """Every school day the calendar covers, in order."""
        return self._days

    def covers(self, day: date) -> bool:
        return self.first_covered <= day <= self.last_covered

    def _require_covered(self, day: date) -> None:
        if not self.first_covered <= day <= self.last_covered:
            raise OutsideCalendarError(
                f"{day.isoformat()} is outside the school calendar, which covers "
                f"{self.first_covered.isoformat()} to {self.last_covered.isoformat()}; "
                "add the school year's terms to the LA's calendar configuration"
            )

    def _beyond_coverage(self, day: date, n: int, direction: str) -> OutsideCalendarError:
        return OutsideCalendarError(
            f"the school day {n} school days {direction} {day.isoformat()} falls outside the school "
            f"calendar, which covers {self.first_covered.isoformat()} to {self.last_covered.isoformat()}; "
            "add the next school year's terms to the LA's calendar configuration"
        )

    def is_school_day(self, day: date) -> bool:
        self._require_covered(day)
        return day in self._day_set

    def nth_school_day_after(self, day: date, n: int) -> date:
        """The Nth school day after `day`, counting from the first school day after it (`day` never counts).

        n = 0 gives `day` itself, so a window of zero school days starts or ends on the date it is about.
        """
        self._require_covered(day)
        if n < 0:
            raise ValueError(f"n must not be negative, got {n}")
        if n == 0:
            return day
        index = bisect_right(self._days, day) + n - 1
        if index >= len(self._days):
            raise self._beyond_coverage(day, n, "after")
        return self._days[index]

    def nth_school_day_before(self, day: date, n: int) -> date:
        """The Nth school day before `day`, counting back from the last school day before it.

        n = 0 gives `day` itself.
        """
        self._require_covered(day)
        if n < 0:
            raise ValueError(f"n must not be negative, got {n}")
        if n == 0:
            return day
        index = bisect_left(self._days, day) - n
        if index < 0:
            raise self._beyond_coverage(day, n, "before")
        return self._days[index]

    def school_days_between(self, first: date, last: date) -> int:
        """How many school days lie from `first` to `last`, both included (0 if `last` is before `first`)."""
        self._require_covered(first)
        self._require_covered(last)
        if last < first:
            return 0
        return bisect_right(self._days, last) - bisect_left(self._days, first)


@cache
def default_calendar() -> SchoolCalendar:
    """The shipped English calendar (2024/25 to 2027/28), built once per process."""
    return SchoolCalendar(DEFAULT_TERMS, DEFAULT_CLOSURES)


@cache
def _bank_holidays_of(year: int) -> frozenset[date]:
    return england_bank_holidays(year, year)


def _plain_working_day(day: date) -> bool:
    return day.weekday() < _SATURDAY and day not in _bank_holidays_of(day.year)


class LenientCalendar:
    """A SchoolCalendar that never refuses a date: past the configured school years it counts weekdays
    less bank holidays. Without term breaks that count reaches a deadline sooner, never later, so an
    LA whose configuration has run out gets alerts early rather than a refused record and no alert."""

    __slots__ = ("_after", "_before", "strict")

    def __init__(self, strict: SchoolCalendar) -> None:
        self.strict = strict
        # The calendar never changes and records cluster on a few hundred dates, so answers are kept.
        self._after: dict[tuple[date, int], date] = {}
        self._before: dict[tuple[date, int], date] = {}

    def nth_school_day_after(self, day: date, n: int) -> date:
        answer = self._after.get((day, n))
        if answer is None:
            answer = self._after[(day, n)] = self._count_after(day, n)
        return answer

    def nth_school_day_before(self, day: date, n: int) -> date:
        answer = self._before.get((day, n))
        if answer is None:
            answer = self._before[(day, n)] = self._count_before(day, n)
        return answer

    def _count_after(self, day: date, n: int) -> date:
        strict = self.strict
        if strict.covers(day):
            try:
                return strict.nth_school_day_after(day, n)
            except OutsideCalendarError:
                days = strict.school_days
                counted = len(days) - bisect_right(days, day)
                current = strict.last_covered
        else:
            counted, current = 0, day
        while counted < n:
            current += timedelta(days=1)
            if current > strict.last_covered and _plain_working_day(current):
                counted += 1
        return current

    def _count_before(self, day: date, n: int) -> date:
        strict = self.strict
        if strict.covers(day):
            try:
                return strict.nth_school_day_before(day, n)
            except OutsideCalendarError:
                counted = bisect_left(strict.school_days, day)
                current = strict.first_covered
        else:
            counted, current = 0, day
        while counted < n:
            current -= timedelta(days=1)
            if current < strict.first_covered and _plain_working_day(current):
                counted += 1
        return current
