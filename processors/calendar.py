"""The school-day calendar: which days are school days, and counting N school days from any date."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from datetime import date, timedelta
from functools import cache
from typing import ClassVar

import holidays

from processors.terms import DEFAULT_CLOSURES, DEFAULT_TERMS

DayLike = date | str
TermLike = tuple[DayLike, DayLike]

_SATURDAY = 5
_ONE_DAY = timedelta(days=1)

#: The span whose school days every calendar precomputes; counts beyond it go on day by day on the fallback.
SPAN_FIRST = date(1990, 1, 1)
SPAN_LAST = date(2100, 12, 31)
#: Term dates may be configured for the whole school years inside the span: 1990/91 to 2099/2100.
_FIRST_TERM_YEAR = 1990
_LAST_TERM_YEAR = 2099


class OutsideCalendarError(ValueError):
    """Kept for callers that still catch it: calendars now answer every date, so none raises it."""


def _as_date(value: DayLike) -> date:
    if isinstance(value, date):
        return value
    return date.fromisoformat(value)


def _school_year(day: date) -> int:
    """The calendar year in which the day's school year starts (1 September)."""
    return day.year if day.month >= 9 else day.year - 1


def _school_year_start(day: date) -> date:
    return date(_school_year(day), 9, 1)


def _school_year_end(day: date) -> date:
    return date(_school_year(day) + 1, 8, 31)


def england_bank_holidays(first_year: int, last_year: int) -> frozenset[date]:
    """England's bank holidays (substitute days included) for the calendar years given, inclusive."""
    calendar = holidays.country_holidays("GB", subdiv="ENG", years=range(first_year, last_year + 1))
    return frozenset(calendar.keys())


@cache
def _span_bank_holidays() -> frozenset[date]:
    return england_bank_holidays(SPAN_FIRST.year, SPAN_LAST.year)


@cache
def _bank_holidays_of(year: int) -> frozenset[date]:
    return england_bank_holidays(year, year)


def _is_bank_holiday(day: date) -> bool:
    if SPAN_FIRST <= day <= SPAN_LAST:
        return day in _span_bank_holidays()
    return day in _bank_holidays_of(day.year)


def _fallback_school_day(day: date) -> bool:
    return day.weekday() < _SATURDAY and not _is_bank_holiday(day)


@cache
def _fallback_days() -> tuple[date, ...]:
    """Every weekday of the span that is not an England bank holiday, in order; shared by all calendars."""
    closed = _span_bank_holidays()
    days: list[date] = []
    day = SPAN_FIRST
    while day <= SPAN_LAST:
        if day.weekday() < _SATURDAY and day not in closed:
            days.append(day)
        day += _ONE_DAY
    return tuple(days)


def _walk_fallback(day: date, n: int, forward: bool, stop: date) -> tuple[date, int]:
    """Steps from `day` towards `stop` until n fallback school days are counted or `stop` is reached.

    Returns the day reached and how many were counted; the rules' short counts make a day-by-day walk cheap.
    """
    step = _ONE_DAY if forward else -_ONE_DAY
    counted = 0
    while counted < n and day != stop:
        day += step
        if _fallback_school_day(day):
            counted += 1
    return day, counted


class SchoolCalendar:
    """School days of one LA, for any date: configured term dates where they exist, a fallback beyond.

    Each school year (1 September to 31 August) is answered wholly by one source:

    - a year holding one of this calendar's term ranges: weekdays in term, less England bank holidays and
      the LA's closure days (a year of the calendar's own is said to be covered);
    - else, for a calendar built over a `base` (an LA's calendar over the shipped English one), the base;
    - else the fallback: every weekday that is not an England bank holiday. Without term breaks it reaches
      a deadline sooner, never later, so an LA whose term dates have run out gets alerts early rather
      than none.

    Term ranges must lie in the school years 1990/91 to 2099/2100. School days from 1990-01-01 to 2100-12-31
    are precomputed into one sorted tuple, so a count is a binary search and a span that runs from one
    source into another takes each day's own rule; beyond that span counts go on, day by day, on the
    fallback, and a count running off the ends of `date` stops at `date.min` or `date.max`.

    `fallback_decisions` counts the answers whose counted days (D itself excluded) touched a school year
    that neither this calendar nor its base covers, so a worker can tell an LA to configure its terms;
    `all_fallback_decisions` adds up every calendar's, so a caller can see cheaply whether any moved.
    """

    all_fallback_decisions: ClassVar[int] = 0

    __slots__ = (
        "_covered_years",
        "_day_set",
        "_days",
        "_own_years",
        "fallback_decisions",
        "first_covered",
        "last_covered",
    )

    def __init__(
        self, terms: Iterable[TermLike], closures: Iterable[DayLike] = (), *, base: SchoolCalendar | None = None
    ) -> None:
        ranges = [(_as_date(first), _as_date(last)) for first, last in terms]
        if not ranges:
            raise ValueError("a school calendar needs at least one term range")
        for first, last in ranges:
            if first > last:
                raise ValueError(
                    f"term range {first.isoformat()} to {last.isoformat()} ends before it starts"
                )
            if _school_year(first) < _FIRST_TERM_YEAR or _school_year(last) > _LAST_TERM_YEAR:
                raise ValueError(
                    f"term range {first.isoformat()} to {last.isoformat()} is outside the school years "
                    f"{_FIRST_TERM_YEAR}/{(_FIRST_TERM_YEAR + 1) % 100:02d} to "
                    f"{_LAST_TERM_YEAR}/{_LAST_TERM_YEAR + 1} a calendar can configure"
                )
        self.first_covered: date = _school_year_start(min(first for first, _ in ranges))
        self.last_covered: date = _school_year_end(max(last for _, last in ranges))
        own_years = frozenset(
            year for first, last in ranges for year in range(_school_year(first), _school_year(last) + 1)
        )
        self._own_years: frozenset[int] = own_years
        self._covered_years: frozenset[int] = own_years | (base._covered_years if base else frozenset())

        closed = _span_bank_holidays() | {_as_date(day) for day in closures}
        own_days: set[date] = set()
        for first, last in ranges:
            day = first
            while day <= last:
                if day.weekday() < _SATURDAY and day not in closed:
                    own_days.add(day)
                day += _ONE_DAY

        # Start from the base's days (or the fallback's) and replace each school year of our own.
        days = list(base._days if base else _fallback_days())
        for year in sorted(own_years, reverse=True):
            del days[bisect_left(days, date(year, 9, 1)) : bisect_right(days, date(year + 1, 8, 31))]
        days.extend(own_days)
        days.sort()
        self._days: tuple[date, ...] = tuple(days)
        self._day_set: frozenset[date] = frozenset(days)
        self.fallback_decisions = 0

    @classmethod
    def from_config(cls, terms: Iterable[TermLike], closures: Iterable[DayLike] = ()) -> SchoolCalendar:
        """An LA's calendar from configuration (term ranges and closure days, as dates or ISO text), over
        the shipped English calendar for the school years the LA does not configure."""
        return cls(terms, closures, base=default_calendar())

    @property
    def school_days(self) -> tuple[date, ...]:
        """The school days from `first_covered` to `last_covered` (this calendar's own term ranges), in order."""
        return self._days[
            bisect_left(self._days, self.first_covered) : bisect_right(self._days, self.last_covered)
        ]

    def covers(self, day: date) -> bool:
        """Whether the day's school year is answered by this calendar's own term ranges."""
        return _school_year(day) in self._own_years

    def is_school_day(self, day: date) -> bool:
        if SPAN_FIRST <= day <= SPAN_LAST:
            return day in self._day_set
        return _fallback_school_day(day)

    def nth_school_day_after(self, day: date, n: int) -> date:
        """The Nth school day after `day`, counting from the first school day after it (`day` never counts).

        n = 0 gives `day` itself, so a window of zero school days starts or ends on the date it is about.
        """
        if n < 0:
            raise ValueError(f"n must not be negative, got {n}")
        if n == 0:
            return day
        answer = self._count_after(day, n)
        if answer > day:
            self._note(day + _ONE_DAY, answer)
        else:
            self._note(day, day)
        return answer

    def nth_school_day_before(self, day: date, n: int) -> date:
        """The Nth school day before `day`, counting back from the last school day before it.

        n = 0 gives `day` itself.
        """
        if n < 0:
            raise ValueError(f"n must not be negative, got {n}")
        if n == 0:
            return day
        answer = self._count_before(day, n)
        if answer < day:
            self._note(answer, day - _ONE_DAY)
        else:
            self._note(day, day)
        return answer

    def school_days_between(self, first: date, last: date) -> int:
        """How many school days lie from `first` to `last`, both included (0 if `last` is before `first`)."""
        if last < first:
            return 0
        days = self._days
        inside = bisect_right(days, min(last, SPAN_LAST)) - bisect_left(days, max(first, SPAN_FIRST))
        count = max(inside, 0)
        for lo, hi in ((first, min(last, SPAN_FIRST - _ONE_DAY)), (max(first, SPAN_LAST + _ONE_DAY), last)):
            day = lo
            while day <= hi:
                count += _fallback_school_day(day)
                if day == hi:
                    break
                day += _ONE_DAY
        return count

    def _count_after(self, day: date, n: int) -> date:
        days = self._days
        if day < SPAN_FIRST:
            day, counted = _walk_fallback(day, n, True, SPAN_FIRST - _ONE_DAY)
            n -= counted
            if n == 0:
                return day
        if day < SPAN_LAST:
            start = bisect_right(days, day)
            index = start + n - 1
            if index < len(days):
                return days[index]
            n -= len(days) - start
            day = SPAN_LAST
        if n > (date.max - day).days:
            return date.max  # no date can answer: a deadline that never comes
        return _walk_fallback(day, n, True, date.max)[0]

    def _count_before(self, day: date, n: int) -> date:
        days = self._days
        if day > SPAN_LAST:
            day, counted = _walk_fallback(day, n, False, SPAN_LAST + _ONE_DAY)
            n -= counted
            if n == 0:
                return day
        if day > SPAN_FIRST:
            end = bisect_left(days, day)
            index = end - n
            if index >= 0:
                return days[index]
            n -= end
            day = SPAN_FIRST
        if n > (day - date.min).days:
            return date.min
        return _walk_fallback(day, n, False, date.min)[0]

    def _note(self, first: date, last: date) -> None:
        """Counts a decision whose counted days, `first` to `last`, touch a school year nobody configured."""
        covered = self._covered_years
        for year in range(_school_year(first), _school_year(last) + 1):
            if year not in covered:
                self.fallback_decisions += 1
                SchoolCalendar.all_fallback_decisions += 1
                return


@cache
def default_calendar() -> SchoolCalendar:
    """The shipped English calendar (2024/25 to 2027/28, the fallback beyond), built once per process."""
    return SchoolCalendar(DEFAULT_TERMS, DEFAULT_CLOSURES)
