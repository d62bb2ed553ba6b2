"""Per-LA rule configuration: deadline lengths and the school-day calendar each LA uses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol


class Calendar(Protocol):
    """What the rules need of a school-day calendar."""

    def nth_school_day_after(self, day: date, n: int) -> date: ...

    def nth_school_day_before(self, day: date, n: int) -> date: ...


@dataclass(frozen=True, slots=True)
class DeadlineLengths:
    """Deadline lengths in school days, with the defaults of the rules table."""

    transition_before: int = 10
    transition_after: int = 10
    ehe_notice_before: int = 20
    ehe_notice_after: int = 5
    exclusion_after: int = 6


@dataclass(frozen=True)
class RuleConfig:
    """Everything rules read besides state and the record: per-LA calendars and deadline lengths."""

    default_calendar: Calendar
    default_lengths: DeadlineLengths = field(default_factory=DeadlineLengths)
    calendars: Mapping[str, Calendar] = field(default_factory=dict)
    lengths: Mapping[str, DeadlineLengths] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Rules see calendars that count past their configured school years rather than refuse a record
        # (see LenientCalendar); built once here because rules ask for a calendar on every record.
        from processors.calendar import LenientCalendar, SchoolCalendar

        def lenient(calendar: Calendar) -> Calendar:
            return LenientCalendar(calendar) if isinstance(calendar, SchoolCalendar) else calendar

        object.__setattr__(self, "_default", lenient(self.default_calendar))
        object.__setattr__(self, "_by_la", {la: lenient(c) for la, c in self.calendars.items()})

    def calendar_for(self, la_code: str) -> Calendar:
        by_la: Mapping[str, Calendar] = self._by_la  # type: ignore[attr-defined]
        default: Calendar = self._default  # type: ignore[attr-defined]
        return by_la.get(la_code, default)

    def lengths_for(self, la_code: str) -> DeadlineLengths:
        return self.lengths.get(la_code, self.default_lengths)
