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
    """Deadline lengths and day counts in school days (marked days for the attendance rules), with the
    defaults of the rules tables."""

    transition_before: int = 10
    transition_after: int = 10
    ehe_notice_before: int = 20
    ehe_notice_after: int = 5
    exclusion_after: int = 6
    absence_enquiry_days: int = 10
    no_show_days: int = 3
    removal_check_days: int = 3
    absence_removal_days: int = 20
    leave_return_days: int = 10


@dataclass(frozen=True)
class RuleConfig:
    """Everything rules read besides state and the record: per-LA calendars and deadline lengths."""

    default_calendar: Calendar
    default_lengths: DeadlineLengths = field(default_factory=DeadlineLengths)
    calendars: Mapping[str, Calendar] = field(default_factory=dict)
    lengths: Mapping[str, DeadlineLengths] = field(default_factory=dict)

    def calendar_for(self, la_code: str) -> Calendar:
        return self.calendars.get(la_code, self.default_calendar)

    def lengths_for(self, la_code: str) -> DeadlineLengths:
        return self.lengths.get(la_code, self.default_lengths)
