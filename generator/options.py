"""What a generator run is asked for: its options, event rates and the simulated region."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from processors.calendar import SchoolCalendar

#: Identities are scrambled into the 7 digits a UPN holds after its LA code, so they must stay below this.
MAX_IDENTITIES = 10_000_000
#: The generator refuses populations whose identities over a long range could run past MAX_IDENTITIES.
MAX_PUPILS = 5_000_000

#: School days the rules look back from and ahead of a removal (the longest default windows of design.md).
RULE_WINDOW_BEFORE = 20
RULE_WINDOW_AFTER = 10

#: Lines handed out at a time on busy days; bounds the text held in memory.
CHUNK_LINES = 10_000
#: Attendance marks handed out at a time (about 50 bytes each); bounds the register text held in memory.
CHUNK_MARKS = 50_000
#: Marks a register may carry (design.md); a bigger school's day is split into several registers.
MAX_REGISTER_MARKS = 5_000

DEFAULT_START = date(2024, 9, 1)
DEFAULT_END = date(2025, 8, 31)


@dataclass(frozen=True, slots=True)
class RegionLA:
    """One LA of the simulated region: its DfE code, name, relative size and postcode areas."""

    code: str
    name: str
    #: Relative pupil numbers (roughly thousands of pupils; only the ratios matter; sizes are approximate).
    weight: int
    postcode_areas: tuple[str, ...]


WEST_MIDLANDS: tuple[RegionLA, ...] = (
    RegionLA("330", "Birmingham", 200, ("B",)),
    RegionLA("331", "Coventry", 55, ("CV",)),
    RegionLA("332", "Dudley", 45, ("DY", "B")),
    RegionLA("333", "Sandwell", 52, ("B", "WS")),
    RegionLA("334", "Solihull", 35, ("B",)),
    RegionLA("335", "Walsall", 45, ("WS",)),
    RegionLA("336", "Wolverhampton", 42, ("WV",)),
    RegionLA("860", "Staffordshire", 125, ("ST", "WS", "DE")),
    RegionLA("861", "Stoke-on-Trent", 40, ("ST",)),
    RegionLA("884", "Herefordshire", 24, ("HR",)),
    RegionLA("885", "Worcestershire", 85, ("WR", "DY", "B")),
    RegionLA("893", "Shropshire", 40, ("SY", "TF")),
    RegionLA("894", "Telford and Wrekin", 28, ("TF",)),
    RegionLA("937", "Warwickshire", 82, ("CV", "B")),
)


@dataclass(frozen=True, slots=True)
class Rates:
    """How often things happen, per pupil per year (see the module docstring for the sources)."""

    move_within_la: float = 0.0180
    move_to_region_school: float = 0.0045
    move_to_region_la: float = 0.0020
    move_out_of_region: float = 0.0030
    move_abroad: float = 0.0015
    move_unknown: float = 0.0040
    move_in_from_outside: float = 0.0045
    ehe_written: float = 0.0048
    ehe_without_notice: float = 0.0012
    oral_indication: float = 0.0025
    exclusion: float = 0.0011
    death: float = 0.0001
    cp_prevalence: float = 0.0055
    cp_turnover: float = 0.0065
    lac_prevalence: float = 0.0090
    lac_turnover: float = 0.0037
    lac_out_of_area: float = 0.40
    sao_prevalence: float = 0.0005
    sao_start: float = 0.0005
    special_school_share: float = 0.015
    # Attendance (only with registers on). Per pupil per school day unless stated.
    illness_start: float = 0.017  # spells of 1-4 days: about 3% of sessions
    holiday_start: float = 0.0004  # term-time holidays (G), 2-8 days
    leave_start: float = 0.0003  # leave of absence (C, C1), 1-4 days
    persistent_absence: float = 0.045  # share of pupils who start absences 2.5 times as often
    part_time_timetable: float = 0.003  # share of pupils on a part-time timetable (C2 afternoons)
    no_show_share: float = 0.06  # share of in-year admissions marked N for their first 3-8 days
    unsupported_removal_share: float = 0.2  # share of ground H and I removals the register does not support
    absence_run_return: float = 0.004  # per pupil per year: 10-19 days of unauthorised absence, then back


@dataclass(frozen=True, slots=True)
class GeneratorOptions:
    pupils: int = 10_000
    seed: int = 0
    start: date = DEFAULT_START
    end: date = DEFAULT_END
    rates: Rates = field(default_factory=Rates)
    #: Write a daily attendance register for every school with pupils on roll (design.md, Rules (v2)).
    attendance: bool = False


@dataclass(slots=True)
class GenerationSummary:
    """What a run wrote: lines in total and per topic, the last day simulated, and attendance registers and marks."""

    lines: int = 0
    per_topic: dict[str, int] = field(default_factory=dict)
    last_day: date | None = None
    registers: int = 0
    marks: int = 0


class GeneratorOptionsError(ValueError):
    """Options the generator cannot honour (a bad date range, too many pupils)."""


def check_options(options: GeneratorOptions, calendar: SchoolCalendar) -> None:
    if not 1 <= options.pupils <= MAX_PUPILS:
        raise GeneratorOptionsError(f"pupils must be from 1 to {MAX_PUPILS:,}, got {options.pupils:,}")
    if options.end < options.start:
        raise GeneratorOptionsError(
            f"the range ends ({options.end.isoformat()}) before it starts ({options.start.isoformat()})"
        )
    for day in (options.start, options.end):
        if not calendar.covers(day):
            raise GeneratorOptionsError(
                f"{day.isoformat()} is outside the school calendar, which covers "
                f"{calendar.first_covered.isoformat()} to {calendar.last_covered.isoformat()}"
            )
