"""Synthetic replay data: a seeded, streaming West Midlands feed of roll, EHE, safeguarding and clock records.

The generator simulates the 14 West Midlands LAs (domain.md §4.3) day by day and writes the replay JSON Lines
format of design.md, byte for byte as `schemas.jsonformat.record_to_line` would, so a file can be replayed
in-process or published to Kafka. It is meant for load tests, demos and soak runs; the records are invented.

Guarantees:
- Deterministic: all randomness comes from one `random.Random(seed)`; nothing reads the wall clock, and no
  iteration depends on hash order, so the same options always give the same bytes.
- Streaming: per pupil the generator keeps a handful of numbers in `array`s
  (about 30 bytes a pupil) plus a queue of scheduled follow-ups (an ADDED after a move, say); lines leave
  in chunks of at most CHUNK_LINES, so even the busiest day is never held whole.
- Valid: every line passes `schemas.jsonformat.parse_line` and `processors.validation.validate`.
- Ordered: records are in date order; each school day ends with its `clock.ticks` line.

Rates (per pupil per year unless stated; domain.md §6 gives the national figures they come from):
- In-year moves 3.3% (about 300k non-standard moves a year among about 9m pupils), split into moves to
  another school in the same LA, to a school in another West Midlands LA, to another LA with the school not
  yet known, out of the region, abroad, and to an unknown destination (grounds G, H, I). Most moves are
  completed within days by an ADDED at the new school (some ADDEDs come first), some late, some never.
- Pupils moving in from outside the region, enough to balance those who leave it.
- EHE deregistrations 0.6% (EHE is about 1.5% of children at any time; about 50k children a year start it),
  80% after a WRITTEN notice (some notices arrive a few days after the removal), 20% with no notice;
  10% of them return to school within months. ORAL indications 0.25%, a third followed by written notice.
- Child protection plans: 0.55% of pupils at any time (49k of 9m), 0.65% starting and ending a year.
  Looked after: 0.9% at any time (82k), 0.37% starting and ending a year; 40% placed out of area, so their
  status `la_code` (the responsible LA) differs from their school's LA. School Attendance Orders: 0.05%.
- Permanent exclusions 0.11% (most admitted to the LA's pupil referral unit within 6 school days),
  deaths 0.01%.
- CME: the moves to an unknown destination, never-completed moves and unconfirmed EHE give about 0.8% of
  pupils a year; the national "CME at any point" figure (143.5k, 1.6%) also counts children who were never
  on a roll, which a roll feed cannot see.
- Standard transitions on the last school day of the summer term: Year 6 leaves primary (ground A,
  destination the allocated secondary, ADDED there on the first school day of September for 97%; the rest
  late or never) and Year 11 leaves (ground L). A new Reception cohort starts each September. When the range
  starts on or before the first school day of a school year, that year's Reception and Year 7 pupils get
  their ADDEDs on that day too.
- Initial safeguarding statuses for every protected child and every child under an SAO are published on
  the first day of the range.
- Applicable by the worker: in-year roll changes start only on days whose rule windows (20 school days
  back, 10 ahead) lie inside the school calendar, so none is dead-lettered for a window the calendar
  cannot count (the first weeks of 2024/25, the last of 2027/28); the July transitions are left out of a
  school year with no following one in the calendar.
"""

from __future__ import annotations

import random
import uuid
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import accumulate
from typing import TextIO

from processors.calendar import OutsideCalendarError, SchoolCalendar, default_calendar
from processors.identifiers import CURRENT_LA_CODES, FORMER_LA_CODES, upn_check_letter

#: Identities are scrambled into the 7 digits a UPN holds after its LA code, so they must stay below this.
MAX_IDENTITIES = 10_000_000
#: The generator refuses populations whose identities over a long range could run past MAX_IDENTITIES.
MAX_PUPILS = 5_000_000

#: School days the rules look back from and ahead of a removal (the longest default windows of design.md).
RULE_WINDOW_BEFORE = 20
RULE_WINDOW_AFTER = 10

#: Lines handed out at a time on busy days; bounds the text held in memory.
CHUNK_LINES = 10_000

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


@dataclass(frozen=True, slots=True)
class GeneratorOptions:
    pupils: int = 10_000
    seed: int = 0
    start: date = DEFAULT_START
    end: date = DEFAULT_END
    rates: Rates = field(default_factory=Rates)


@dataclass(slots=True)
class GenerationSummary:
    """What a run wrote: lines in total and per topic, and the last day simulated."""

    lines: int = 0
    per_topic: dict[str, int] = field(default_factory=dict)
    last_day: date | None = None


class GeneratorOptionsError(ValueError):
    """Options the generator cannot honour (a bad date range, too many pupils)."""


# Phases of a school (index into the per-LA school lists).
_PRIMARY, _SECONDARY, _SPECIAL, _PRU = 0, 1, 2, 3
# Pupil slot states.
_FREE, _ON_ROLL, _PENDING, _RESERVED, _OFF_ROLL = 0, 1, 2, 3, 4
# Pupil flags.
_CP, _LAC, _SAO, _SEEN = 1, 2, 4, 8
# Scheduled follow-ups: (kind, slot, argument) triples in a per-day array.
_ADD, _REMOVE_AFTER_ADD, _EHE_REMOVE, _EHE_LATE_NOTICE, _ORAL_FOLLOWUP = 1, 2, 3, 4, 5
# Argument of _EHE_REMOVE: whether the written notice follows the removal.
_NOTICE_BEFORE, _NOTICE_AFTER, _NO_NOTICE = 0, 1, 2

_YEAR_GROUPS = 12  # Reception to Year 11
_PRIMARY_TOP_YEAR = 6
_SECONDARY_TOP_YEAR = 11

_FORENAMES = (
    "Aaliyah", "Adam", "Aisha", "Alfie", "Amara", "Amelia", "Arjun", "Ava", "Ayaan", "Bethany", "Callum",
    "Charlie", "Chloe", "Daniel", "Darcy", "Eden", "Elijah", "Ella", "Emily", "Ethan", "Evie", "Fatima",
    "Finley", "Freya", "George", "Grace", "Hamza", "Hannah", "Harper", "Harry", "Ibrahim", "Imogen",
    "Isaac", "Isla", "Jack", "Jacob", "Jasmine", "Jayden", "Joshua", "Kai", "Kian", "Layla", "Leo",
    "Lily", "Logan", "Lucas", "Maisie", "Maryam", "Mason", "Maya", "Mia", "Mohammed", "Muhammad", "Noah",
    "Nova", "Olivia", "Oliver", "Oscar", "Poppy", "Priya", "Reuben", "Riley", "Rosie", "Ruby", "Safa",
    "Samuel", "Sienna", "Sofia", "Sophie", "Theo", "Thomas", "Tyler", "Yusuf", "Zainab", "Zara", "Zoe",
)
_SURNAMES = (
    "Ahmed", "Ali", "Allen", "Bailey", "Baker", "Begum", "Bennett", "Brown", "Campbell", "Carter", "Chen",
    "Clarke", "Cooper", "Davies", "Edwards", "Evans", "Fisher", "Green", "Griffiths", "Hall", "Harris",
    "Hill", "Hughes", "Hussain", "Jackson", "James", "Jones", "Kaur", "Khan", "King", "Kowalski", "Lewis",
    "Mahmood", "Malik", "Martin", "Mistry", "Mitchell", "Moore", "Morgan", "Morris", "Murphy", "Nowak",
    "Okafor", "Owen", "Parker", "Patel", "Phillips", "Price", "Rahman", "Roberts", "Robinson", "Sharma",
    "Shaw", "Singh", "Smith", "Taylor", "Thomas", "Thompson", "Turner", "Walker", "Ward", "Watson", "White",
    "Williams", "Wilson", "Wood", "Wright", "Young",
)
_PLACE_STARTS = (
    "Ash", "Beech", "Birch", "Brook", "Cherry", "Elm", "Fern", "Glen", "Green", "Hazel", "Heath", "Holly",
    "Lark", "Lime", "Maple", "Mill", "Moor", "Oak", "Park", "Rose", "Stone", "Wil", "Wood", "Yew",
)
_PLACE_ENDS = (
    "bank", "bourne", "brook", "croft", "dale", "field", "ford", "gate", "hill", "hurst", "lands", "lea",
    "mead", "side", "ton", "wood",
)
_SCHOOL_KINDS: tuple[tuple[str, ...], ...] = (
    ("Primary School", "Junior and Infant School", "Primary Academy", "C of E Primary School"),
    ("High School", "Academy", "School", "Community College"),
    ("Special School", "School", "Academy"),
    ("Pupil Referral Unit",),
)
#: Letters allowed in the inward code of a postcode (C, I, K, M, O and V are never used there).
_INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"
_SOURCE_SYSTEMS = ("SYNTHMIS-A", "SYNTHMIS-B", "SYNTHMIS-C", "SYNTHMIS-D")

_WM_CODES = frozenset(la.code for la in WEST_MIDLANDS)
_OUTSIDE_CODES = tuple(sorted(CURRENT_LA_CODES - _WM_CODES))
_FORMER_CODES = tuple(sorted(FORMER_LA_CODES))

# Scrambles identity numbers into the 7 UPN digits after the LA code: a bijection on 0..10^7-1 because the
# multiplier is coprime with 10.
_UPN_MULTIPLIER = 7_654_321
_UPN_OFFSET = 1_234_567


def _json_string(text: str) -> str:
    """A JSON string literal for the plain ASCII names used here (letters, digits, spaces, hyphens)."""
    if not all(char.isalnum() or char in " -" for char in text) or not text.isascii():
        raise ValueError(f"name {text!r} needs JSON escaping, which the generator does not do")
    return f'"{text}"'


def _school_year_of(day: date) -> int:
    return day.year if day.month >= 9 else day.year - 1


@dataclass(frozen=True, slots=True)
class _School:
    la_index: int
    phase: int
    urn: str
    laestab: str
    json: str  # the `school` object of a roll event
    source_system: str

    @property
    def la_code(self) -> str:
        return self.laestab[:3]


class _Simulation:
    """The day-by-day state machine behind `iter_chunks`."""

    def __init__(self, options: GeneratorOptions, calendar: SchoolCalendar) -> None:
        self.options = options
        self.rates = options.rates
        self.calendar = calendar
        # Reproducible synthetic data, not secrets: a seeded generator is the point.
        self.rng = random.Random(options.seed)  # noqa: S311
        self.population = options.pupils
        self.start_ordinal = options.start.toordinal()
        self.first_school_year = _school_year_of(options.start)
        self.out: list[str] = []

        self.la_cumulative = list(accumulate(la.weight for la in WEST_MIDLANDS))
        self._build_schools()
        self._build_school_years()

        self.identity = array("I")
        self.upn_la = array("H")
        self.upn_year = array("B")
        self.cohort = array("H")  # birth school year: the calendar year of the 1 September before birth
        self.dob = array("i")
        self.salt = array("I")
        self.school = array("i")
        self.state = array("b")
        self.flags = array("B")
        self.care_la = array("H")  # responsible LA code for a looked-after child placed out of area, else 0
        self.free_slots: list[int] = []
        self.cp_members: list[int] = []
        self.lac_members: list[int] = []
        self.next_identity = 0
        self.schedule: dict[int, array[int]] = {}
        self.carry = [self.rng.random() for _ in range(32)]
        self._build_population()

    # ---- set-up --------------------------------------------------------------------------------------

    def _build_schools(self) -> None:
        rng = self.rng
        self.schools: list[_School] = []
        self.schools_by: list[list[list[int]]] = []
        total_weight = self.la_cumulative[-1]
        next_urn = rng.randrange(100_000, 140_000)
        special_share = self.rates.special_school_share
        for la_index, la in enumerate(WEST_MIDLANDS):
            la_pupils = self.population * la.weight / total_weight
            counts = (
                min(1998, max(2, round(la_pupils * (1 - special_share) * 7 / 12 / 280))),
                min(998, max(1, round(la_pupils * (1 - special_share) * 5 / 12 / 1000))),
                min(998, max(1, round(la_pupils * special_share / 110))),
                1,
            )
            estab_ranges = (range(2001, 4000), range(4001, 5000), range(7001, 8000), range(1101, 1200))
            by_phase: list[list[int]] = [[], [], [], []]
            for phase, count in enumerate(counts):
                for estab in sorted(rng.sample(estab_ranges[phase], count)):
                    next_urn += rng.randrange(1, 12)
                    if phase == _PRU:
                        name = f"{la.name} Pupil Referral Unit"
                    else:
                        name = (
                            f"{rng.choice(_PLACE_STARTS)}{rng.choice(_PLACE_ENDS)} "
                            f"{rng.choice(_SCHOOL_KINDS[phase])}"
                        )
                    urn = str(next_urn)
                    laestab = f"{la.code}{estab}"
                    special = "true" if phase == _SPECIAL else "false"
                    school_json = (
                        f'{{"urn": "{urn}", "laestab": "{laestab}", "name": {_json_string(name)}, '
                        f'"special": {special}}}'
                    )
                    by_phase[phase].append(len(self.schools))
                    self.schools.append(
                        _School(la_index, phase, urn, laestab, school_json, rng.choice(_SOURCE_SYSTEMS))
                    )
            self.schools_by.append(by_phase)

    def _build_school_years(self) -> None:
        """First and last school day of each school year the range touches, and its school-day count."""
        self.first_day: dict[int, int] = {}
        self.last_day: dict[int, int] = {}
        self.school_days_in_year: dict[int, int] = {}
        by_year: dict[int, list[date]] = {}
        for day in self.calendar.school_days:
            by_year.setdefault(_school_year_of(day), []).append(day)
        for school_year, days in by_year.items():
            self.first_day[school_year] = days[0].toordinal()
            self.last_day[school_year] = days[-1].toordinal()
            self.school_days_in_year[school_year] = len(days)

    def _new_pupil(self, school_year: int, year_group: int, school: int, upn_la: str, flags: int = 0) -> int:
        """A new pupil in `year_group` during `school_year`, on `school`'s books; returns the slot."""
        rng = self.rng
        cohort = school_year - 5 - year_group
        first = date(cohort, 9, 1).toordinal()
        born = first + int(rng.random() * (date(cohort + 1, 9, 1).toordinal() - first))
        identity = self.next_identity
        self.next_identity += 1
        if identity >= MAX_IDENTITIES:
            raise GeneratorOptionsError("the run needs more than 10 million pupil identities; use fewer pupils")
        values = (
            (self.identity, identity),
            (self.upn_la, int(upn_la)),
            (self.upn_year, (cohort + 5) % 100),
            (self.cohort, cohort),
            (self.dob, born),
            (self.salt, rng.getrandbits(32)),
            (self.school, school),
            (self.state, _ON_ROLL),
            (self.flags, flags),
            (self.care_la, 0),
        )
        if self.free_slots:
            slot = self.free_slots.pop()
            for column, value in values:
                column[slot] = value
        else:
            slot = len(self.state)
            for column, value in values:
                column.append(value)
        return slot

    def _build_population(self) -> None:
        rng = self.rng
        rates = self.rates
        school_year = self.first_school_year
        intake_pending = self.start_ordinal <= self.first_day.get(school_year, -1)
        intake: array[int] = array("i")
        for _ in range(self.population):
            year_group = int(rng.random() * _YEAR_GROUPS)
            la_index = self._pick_la()
            phase = self._phase_for(year_group)
            school = self._pick_school(la_index, phase)
            roll = rng.random()
            if roll < 0.93:
                upn_la = WEST_MIDLANDS[la_index].code
            elif roll < 0.98:
                upn_la = WEST_MIDLANDS[self._pick_la()].code
            else:
                upn_la = rng.choice(_OUTSIDE_CODES)
            flags = 0
            roll = rng.random()
            if roll < rates.cp_prevalence:
                flags = _CP
            elif roll < rates.cp_prevalence + rates.lac_prevalence:
                flags = _LAC
            if rng.random() < rates.sao_prevalence:
                flags |= _SAO
            slot = self._new_pupil(school_year, year_group, school, upn_la, flags)
            if flags & _CP:
                self.cp_members.append(slot)
            if flags & _LAC:
                self.lac_members.append(slot)
                if rng.random() < rates.lac_out_of_area:
                    self.care_la[slot] = self._other_care_la(la_index)
            starts_now = year_group == 0 or (year_group == _PRIMARY_TOP_YEAR + 1 and phase == _SECONDARY)
            if intake_pending and starts_now:
                self.state[slot] = _PENDING
                intake.extend((_ADD, slot, school))
        if intake:
            self.schedule[self.first_day[school_year]] = intake

    # ---- random choices ------------------------------------------------------------------------------

    def _pick_la(self) -> int:
        return bisect_right(self.la_cumulative, self.rng.random() * self.la_cumulative[-1])

    def _pick_other_la(self, la_index: int) -> int:
        while True:
            other = self._pick_la()
            if other != la_index:
                return other

    def _other_care_la(self, la_index: int) -> int:
        if self.rng.random() < 0.7:
            return int(WEST_MIDLANDS[self._pick_other_la(la_index)].code)
        return int(self.rng.choice(_OUTSIDE_CODES))

    def _phase_for(self, year_group: int) -> int:
        if self.rng.random() < self.rates.special_school_share:
            return _SPECIAL
        return _PRIMARY if year_group <= _PRIMARY_TOP_YEAR else _SECONDARY

    def _pick_school(self, la_index: int, phase: int, exclude: int = -1) -> int:
        choices = self.schools_by[la_index][phase]
        if len(choices) == 1:
            return choices[0] if choices[0] != exclude else -1
        while True:
            school = choices[int(self.rng.random() * len(choices))]
            if school != exclude:
                return school

    def _pick_pupil(self, *, want_seen: bool = False) -> int:
        """A random pupil on roll (and not already mid-way through a scheduled change), or -1."""
        state = self.state
        flags = self.flags
        slots = len(state)
        fallback = -1
        for _ in range(40):
            slot = int(self.rng.random() * slots)
            if state[slot] == _ON_ROLL:
                if not want_seen or flags[slot] & _SEEN:
                    return slot
                if fallback < 0:
                    fallback = slot
        return fallback

    def _pick_live_pupil(self) -> int:
        """A random pupil in the region, on roll or not, or -1."""
        state = self.state
        for _ in range(40):
            slot = int(self.rng.random() * len(state))
            if state[slot] != _FREE:
                return slot
        return -1

    def _count(self, index: int, expected: float) -> int:
        """How many of a kind of event today: expected values accumulate, so rare events still happen."""
        carried = self.carry[index] + expected
        whole = int(carried)
        self.carry[index] = carried - whole
        return whole

    def _year_group(self, slot: int, school_year: int) -> int:
        return school_year - self.cohort[slot] - 5

    def _destination_phase(self, slot: int, school_year: int) -> int:
        if self.schools[self.school[slot]].phase == _SPECIAL:
            return _SPECIAL
        return _PRIMARY if self._year_group(slot, school_year) <= _PRIMARY_TOP_YEAR else _SECONDARY

    def _school_day_after(self, day: date, n: int) -> int:
        """Ordinal of the Nth school day after `day`, or 0 when that is past the calendar (never emitted)."""
        try:
            return self.calendar.nth_school_day_after(day, n).toordinal()
        except OutsideCalendarError:
            return 0

    def _schedule(self, ordinal: int, kind: int, slot: int, argument: int) -> None:
        if ordinal <= 0:
            return
        bucket = self.schedule.get(ordinal)
        if bucket is None:
            bucket = self.schedule[ordinal] = array("i")
        bucket.extend((kind, slot, argument))

    def _free(self, slot: int) -> None:
        self.state[slot] = _FREE
        self.flags[slot] = 0
        self.care_la[slot] = 0
        self.free_slots.append(slot)

    # ---- record text -----------------------------------------------------------------------------------

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _timestamp(self, iso_day: str) -> str:
        seconds = 25_200 + int(self.rng.random() * 36_000)  # 07:00 to 17:00 UTC
        return f"{iso_day}T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}Z"

    def _upn(self, slot: int) -> str:
        scrambled = (self.identity[slot] * _UPN_MULTIPLIER + _UPN_OFFSET) % MAX_IDENTITIES
        body = f"{self.upn_la[slot]:03d}{scrambled // 1000:04d}{self.upn_year[slot]:02d}{scrambled % 1000:03d}"
        return upn_check_letter(body) + body

    def _child(self, slot: int, school: _School) -> str:
        salt = self.salt[slot]
        forename = _FORENAMES[salt % len(_FORENAMES)]
        surname = _SURNAMES[(salt >> 7) % len(_SURNAMES)]
        born = date.fromordinal(self.dob[slot]).isoformat()
        if salt >> 30 == 0:  # a quarter of MIS records hold no postcode
            return f'{{"forename": "{forename}", "surname": "{surname}", "date_of_birth": "{born}"}}'
        areas = WEST_MIDLANDS[school.la_index].postcode_areas
        area = areas[(salt >> 14) % len(areas)]
        postcode = (
            f"{area}{(salt >> 17) % 30 + 1} {(salt >> 22) % 10}"
            f"{_INWARD_LETTERS[(salt >> 2) % 20]}{_INWARD_LETTERS[(salt >> 25) % 20]}"
        )
        return (
            f'{{"forename": "{forename}", "surname": "{surname}", "date_of_birth": "{born}", '
            f'"postcode": "{postcode}"}}'
        )

    def _roll_event(
        self,
        slot: int,
        school_index: int,
        iso_day: str,
        *,
        ground: str | None = None,
        destination: str | None = None,
        standard_transition: bool = False,
    ) -> None:
        school = self.schools[school_index]
        event_type = "ADDED" if ground is None else "REMOVED"
        tail = ""
        if ground is not None:
            tail = f', "ground": "{ground}"'
            if destination is not None:
                tail += f', "destination": {destination}'
        self.out.append(
            f'{{"topic": "roll.events", "value": {{"event_id": "{self._uuid()}", "event_type": "{event_type}", '
            f'"upn": "{self._upn(slot)}", "child": {self._child(slot, school)}, "school": {school.json}, '
            f'"effective_date": "{iso_day}", "recorded_at": "{self._timestamp(iso_day)}", '
            f'"standard_transition": {"true" if standard_transition else "false"}, '
            f'"source_system": "{school.source_system}"{tail}}}}}'
        )
        if ground is None:
            self.flags[slot] |= _SEEN

    def _school_destination(self, school_index: int, *, with_la_code: bool) -> str:
        school = self.schools[school_index]
        la_code = f', "la_code": "{school.la_code}"' if with_la_code else ""
        return (
            f'{{"kind": "SCHOOL", "school_urn": "{school.urn}", "school_laestab": "{school.laestab}"{la_code}}}'
        )

    def _ehe_notification(self, slot: int, school_index: int, iso_day: str, method: str) -> None:
        school = self.schools[school_index]
        with_school = f', "school_urn": "{school.urn}"' if self.rng.random() < 0.8 else ""
        self.out.append(
            f'{{"topic": "ehe.notifications", "value": {{"notification_id": "{self._uuid()}", '
            f'"upn": "{self._upn(slot)}", "la_code": "{school.la_code}", "method": "{method}", '
            f'"received_on": "{iso_day}"{with_school}}}}}'
        )

    def _status(self, slot: int, iso_day: str) -> None:
        flags = self.flags[slot]
        care_la = self.care_la[slot]
        la_code = f"{care_la:03d}" if care_la else self.schools[self.school[slot]].la_code
        worker = ""
        if flags & (_CP | _LAC):
            salt = self.salt[slot]
            forename = _FORENAMES[(salt >> 3) % len(_FORENAMES)]
            surname = _SURNAMES[(salt >> 11) % len(_SURNAMES)]
            worker = (
                f', "social_worker": {{"name": "{forename} {surname}", '
                f'"email": "{forename.lower()}.{surname.lower()}@la{la_code}.example.org"}}'
            )
        self.out.append(
            f'{{"topic": "safeguarding.status", "value": {{"upn": "{self._upn(slot)}", "la_code": "{la_code}", '
            f'"child_protection_plan": {"true" if flags & _CP else "false"}, '
            f'"looked_after": {"true" if flags & _LAC else "false"}, '
            f'"school_attendance_order": {"true" if flags & _SAO else "false"}{worker}, '
            f'"updated_at": "{self._timestamp(iso_day)}"}}}}'
        )

    # ---- one day -------------------------------------------------------------------------------------

    def run_day(self, day: date) -> Iterator[list[str]]:
        """The lines of `day` in chunks, in order: records first, then the tick if it is a school day.

        Busy days (the July transitions, the September intake) are handed out in chunks of CHUNK_LINES so a
        million-pupil run never holds a whole day's text.
        """
        self.out = []
        ordinal = day.toordinal()
        iso_day = day.isoformat()
        school_year = _school_year_of(day)
        if ordinal == self.start_ordinal:
            yield from self._initial_statuses(iso_day)
        school_day = self.calendar.is_school_day(day)
        due = self.schedule.pop(ordinal, None)
        if due is not None:
            for index in range(0, len(due), 3):
                self._run_scheduled(due[index], due[index + 1], due[index + 2], day, iso_day)
                if len(self.out) >= CHUNK_LINES:
                    yield self._take()
        if school_day:
            if ordinal == self.last_day.get(school_year):
                yield from self._standard_transitions(day, iso_day, school_year)
            if ordinal == self.first_day.get(school_year) and school_year > self.first_school_year:
                yield from self._reception_intake(iso_day, school_year)
            if self._rule_windows_fit(day):
                self._roll_changes(day, iso_day, school_year)
        self._status_changes(iso_day)
        if school_day:
            self.out.append(f'{{"topic": "clock.ticks", "value": {{"today": "{iso_day}"}}}}')
        yield self._take()

    def _rule_windows_fit(self, day: date) -> bool:
        """Whether the rules' school-day windows around a removal on `day` lie inside the calendar.

        The worker dead-letters a removal whose window it cannot count (the calendar refuses to guess term
        dates), so in-year changes start only once 20 school days lie behind and 10 ahead.
        """
        try:
            self.calendar.nth_school_day_before(day, RULE_WINDOW_BEFORE)
            self.calendar.nth_school_day_after(day, RULE_WINDOW_AFTER)
        except OutsideCalendarError:
            return False
        return True

    def _take(self) -> list[str]:
        lines = self.out
        self.out = []
        return lines

    def _initial_statuses(self, iso_day: str) -> Iterator[list[str]]:
        flags = self.flags
        for slot in range(len(flags)):
            if flags[slot] & (_CP | _LAC | _SAO) and self.state[slot] != _FREE:
                self._status(slot, iso_day)
                if len(self.out) >= CHUNK_LINES:
                    yield self._take()

    def _run_scheduled(self, kind: int, slot: int, argument: int, day: date, iso_day: str) -> None:
        rng = self.rng
        if kind == _ADD:
            self.school[slot] = argument
            self.state[slot] = _ON_ROLL
            self._roll_event(slot, argument, iso_day)
        elif kind == _REMOVE_AFTER_ADD:
            new_school = self.school[slot]
            self.state[slot] = _ON_ROLL
            different_la = self.schools[new_school].la_index != self.schools[argument].la_index
            destination = self._school_destination(new_school, with_la_code=different_la and rng.random() < 0.5)
            self._roll_event(slot, argument, iso_day, ground="A_REGISTERED_ELSEWHERE", destination=destination)
        elif kind == _EHE_REMOVE:
            school = self.school[slot]
            self._roll_event(slot, school, iso_day, ground="F_HOME_EDUCATION")
            self.state[slot] = _OFF_ROLL
            if argument == _NOTICE_AFTER:
                self._schedule(self._school_day_after(day, 1 + int(rng.random() * 4)), _EHE_LATE_NOTICE, slot,
                               school)
            if rng.random() < 0.10:
                self._return_to_school(slot, day, 20 + int(rng.random() * 100))
        elif kind == _EHE_LATE_NOTICE:
            self._ehe_notification(slot, argument, iso_day, "WRITTEN")
        elif kind == _ORAL_FOLLOWUP:
            self._start_written_ehe(slot, day, iso_day)

    def _return_to_school(self, slot: int, day: date, after_school_days: int) -> None:
        """Schedule an ADDED, most often in the pupil's own LA, for a pupil off roll."""
        school_year = _school_year_of(day)
        la_index = self.schools[self.school[slot]].la_index
        if self.rng.random() < 0.2:
            la_index = self._pick_other_la(la_index)
        phase = self._destination_phase(slot, school_year)
        school = self._pick_school(la_index, phase, exclude=self.school[slot])
        if school < 0:
            return
        self.state[slot] = _PENDING
        self._schedule(self._school_day_after(day, after_school_days), _ADD, slot, school)

    def _standard_transitions(self, day: date, iso_day: str, school_year: int) -> Iterator[list[str]]:
        rng = self.rng
        state = self.state
        cohort = self.cohort
        september = self.first_day.get(school_year + 1, 0)
        if not september:
            return  # the calendar holds no next school year, so no transfer deadline could be counted
        next_start = date.fromordinal(september)
        for slot in range(len(state)):
            if len(self.out) >= CHUNK_LINES:
                yield self._take()
            slot_state = state[slot]
            if slot_state == _FREE:
                continue
            year_group = school_year - cohort[slot] - 5
            if slot_state in (_OFF_ROLL, _PENDING, _RESERVED):
                if year_group >= _SECONDARY_TOP_YEAR and slot_state == _OFF_ROLL:
                    self._free(slot)  # ages out of compulsory education unseen
                continue
            school = self.schools[self.school[slot]]
            if year_group >= _SECONDARY_TOP_YEAR:
                self._roll_event(slot, self.school[slot], iso_day, ground="L_CEASED_COMPULSORY_AGE",
                                 standard_transition=True)
                self._free(slot)
            elif year_group == _PRIMARY_TOP_YEAR and school.phase == _PRIMARY:
                la_index = school.la_index if rng.random() < 0.92 else self._pick_other_la(school.la_index)
                secondary = self._pick_school(la_index, _SECONDARY)
                destination = self._school_destination(secondary, with_la_code=rng.random() < 0.3)
                self._roll_event(slot, self.school[slot], iso_day, ground="A_REGISTERED_ELSEWHERE",
                                 destination=destination, standard_transition=True)
                roll = rng.random()
                if roll >= 0.985:
                    state[slot] = _OFF_ROLL  # never starts: a transfer not started
                elif roll < 0.97:
                    state[slot] = _PENDING
                    self._schedule(september, _ADD, slot, secondary)
                else:
                    state[slot] = _PENDING
                    self._schedule(self._school_day_after(next_start, 11 + int(rng.random() * 15)), _ADD, slot,
                                   secondary)

    def _reception_intake(self, iso_day: str, school_year: int) -> Iterator[list[str]]:
        for _ in range(round(self.population / _YEAR_GROUPS)):
            if len(self.out) >= CHUNK_LINES:
                yield self._take()
            la_index = self._pick_la()
            school = self._pick_school(la_index, self._phase_for(0))
            slot = self._new_pupil(school_year, 0, school, WEST_MIDLANDS[la_index].code)
            self._roll_event(slot, school, iso_day)

    def _roll_changes(self, day: date, iso_day: str, school_year: int) -> None:
        rates = self.rates
        per_day = self.population / self.school_days_in_year[school_year]
        kinds: tuple[tuple[float, Callable[[int, date, str, int], None]], ...] = (
            (rates.move_within_la, self._move_within_la),
            (rates.move_to_region_school, self._move_to_region_school),
            (rates.move_to_region_la, self._move_to_region_la),
            (rates.move_out_of_region, self._move_out_of_region),
            (rates.move_abroad, self._move_abroad),
            (rates.move_unknown, self._move_unknown),
            (rates.ehe_written, self._ehe_written),
            (rates.ehe_without_notice, self._ehe_without_notice),
            (rates.oral_indication, self._oral_indication),
            (rates.exclusion, self._exclusion),
            (rates.death, self._death),
        )
        for index, (rate, action) in enumerate(kinds):
            for _ in range(self._count(index, rate * per_day)):
                slot = self._pick_pupil(want_seen=action == self._oral_indication)
                if slot >= 0:
                    action(slot, day, iso_day, school_year)
        for _ in range(self._count(len(kinds), rates.move_in_from_outside * per_day)):
            self._move_in(iso_day, school_year)

    # ---- in-year moves ---------------------------------------------------------------------------------

    def _complete_move(self, slot: int, old_school: int, new_school: int, day: date, iso_day: str,
                       ground: str, destination: str | None) -> None:
        """Remove from `old_school` today; most pupils start at `new_school` within days, a few later or never.

        One in ten starts at the new school a few days before the old one removes them, which exercises the
        worker's tolerance of an ADDED arriving before the REMOVED.
        """
        rng = self.rng
        roll = rng.random()
        if roll < 0.10 and destination is not None and ground == "A_REGISTERED_ELSEWHERE":
            self.school[slot] = new_school
            self._roll_event(slot, new_school, iso_day)
            self.state[slot] = _RESERVED
            self._schedule(self._school_day_after(day, 1 + int(rng.random() * 3)), _REMOVE_AFTER_ADD, slot,
                           old_school)
            return
        self._roll_event(slot, old_school, iso_day, ground=ground, destination=destination)
        if roll < 0.25:
            self.school[slot] = new_school
            self._roll_event(slot, new_school, iso_day)
        elif roll < 0.90:
            self.state[slot] = _PENDING
            self._schedule(self._school_day_after(day, 1 + int(rng.random() * 5)), _ADD, slot, new_school)
        elif roll < 0.97:
            self.state[slot] = _PENDING
            self._schedule(self._school_day_after(day, 12 + int(rng.random() * 20)), _ADD, slot, new_school)
        else:
            self.state[slot] = _OFF_ROLL

    def _move_within_la(self, slot: int, day: date, iso_day: str, school_year: int) -> None:
        old_school = self.school[slot]
        la_index = self.schools[old_school].la_index
        new_school = self._pick_school(la_index, self._destination_phase(slot, school_year), exclude=old_school)
        if new_school < 0:
            return
        destination = self._school_destination(new_school, with_la_code=False)
        self._complete_move(slot, old_school, new_school, day, iso_day, "A_REGISTERED_ELSEWHERE", destination)

    def _move_to_region_school(self, slot: int, day: date, iso_day: str, school_year: int) -> None:
        old_school = self.school[slot]
        la_index = self._pick_other_la(self.schools[old_school].la_index)
        new_school = self._pick_school(la_index, self._destination_phase(slot, school_year))
        destination = self._school_destination(new_school, with_la_code=self.rng.random() < 0.5)
        self._complete_move(slot, old_school, new_school, day, iso_day, "A_REGISTERED_ELSEWHERE", destination)

    def _move_to_region_la(self, slot: int, day: date, iso_day: str, school_year: int) -> None:
        old_school = self.school[slot]
        la_index = self._pick_other_la(self.schools[old_school].la_index)
        new_school = self._pick_school(la_index, self._destination_phase(slot, school_year))
        destination = f'{{"kind": "OTHER_LA", "la_code": "{WEST_MIDLANDS[la_index].code}"}}'
        self._complete_move(slot, old_school, new_school, day, iso_day, "G_MOVED_AWAY", destination)

    def _move_out_of_region(self, slot: int, day: date, iso_day: str, school_year: int) -> None:
        destination = f'{{"kind": "OTHER_LA", "la_code": "{self.rng.choice(_OUTSIDE_CODES)}"}}'
        ground = "G_MOVED_AWAY" if self.rng.random() < 0.7 else "A_REGISTERED_ELSEWHERE"
        self._roll_event(slot, self.school[slot], iso_day, ground=ground, destination=destination)
        self._free(slot)

    def _move_abroad(self, slot: int, day: date, iso_day: str, school_year: int) -> None:
        self._roll_event(slot, self.school[slot], iso_day, ground="G_MOVED_AWAY", destination='{"kind": "ABROAD"}')
        self._free(slot)

    def _move_unknown(self, slot: int, day: date, iso_day: str, school_year: int) -> None:
        rng = self.rng
        roll = rng.random()
        ground = "G_MOVED_AWAY" if roll < 0.5 else "H_NOT_RETURNED_FROM_LEAVE" if roll < 0.7 else "I_CONTINUOUS_ABSENCE"
        destination = '{"kind": "UNKNOWN"}' if rng.random() < 0.6 else None
        self._roll_event(slot, self.school[slot], iso_day, ground=ground, destination=destination)
        self.state[slot] = _OFF_ROLL
        if rng.random() < 0.55:  # found later, usually by an admission elsewhere
            self._return_to_school(slot, day, 15 + int(rng.random() * 65))

    def _move_in(self, iso_day: str, school_year: int) -> None:
        rng = self.rng
        la_index = self._pick_la()
        year_group = int(rng.random() * _YEAR_GROUPS)
        school = self._pick_school(la_index, self._phase_for(year_group))
        upn_la = rng.choice(_FORMER_CODES) if rng.random() < 0.05 else rng.choice(_OUTSIDE_CODES)
        slot = self._new_pupil(school_year, year_group, school, upn_la)
        self._roll_event(slot, school, iso_day)

    # ---- EHE, exclusions, deaths ---------------------------------------------------------------------

    def _start_written_ehe(self, slot: int, day: date, iso_day: str) -> None:
        """A written notice, then the removal on ground F some school days later (or, sometimes, first)."""
        rng = self.rng
        self.state[slot] = _RESERVED
        after = self._school_day_after(day, 1 + int(rng.random() * 10))
        if rng.random() < 0.15:
            self._schedule(after, _EHE_REMOVE, slot, _NOTICE_AFTER)
            return
        self._ehe_notification(slot, self.school[slot], iso_day, "WRITTEN")
        self._schedule(after, _EHE_REMOVE, slot, _NOTICE_BEFORE)

    def _ehe_written(self, slot: int, day: date, iso_day: str, school_year: int) -> None:
        self._start_written_ehe(slot, day, iso_day)

    def _ehe_without_notice(self, slot: int, day: date, iso_day: str, school_year: int) -> None:
        self._run_scheduled(_EHE_REMOVE, slot, _NO_NOTICE, day, iso_day)

    def _oral_indication(self, slot: int, day: date, iso_day: str, school_year: int) -> None:
        self._ehe_notification(slot, self.school[slot], iso_day, "ORAL")
        if self.rng.random() < 0.33:
            self.state[slot] = _RESERVED
            self._schedule(self._school_day_after(day, 3 + int(self.rng.random() * 8)), _ORAL_FOLLOWUP, slot, 0)

    def _exclusion(self, slot: int, day: date, iso_day: str, school_year: int) -> None:
        rng = self.rng
        school = self.school[slot]
        la_index = self.schools[school].la_index
        self._roll_event(slot, school, iso_day, ground="O_PERMANENTLY_EXCLUDED")
        self.state[slot] = _OFF_ROLL
        roll = rng.random()
        if roll >= 0.95:
            return
        unit = self.schools_by[la_index][_PRU][0]
        after = 1 + int(rng.random() * 6) if roll < 0.80 else 8 + int(rng.random() * 12)
        self.state[slot] = _PENDING
        self._schedule(self._school_day_after(day, after), _ADD, slot, unit)

    def _death(self, slot: int, day: date, iso_day: str, school_year: int) -> None:
        self._roll_event(slot, self.school[slot], iso_day, ground="K_DIED")
        self._free(slot)

    # ---- safeguarding status ---------------------------------------------------------------------------

    def _status_changes(self, iso_day: str) -> None:
        rates = self.rates
        per_day = self.population / 365
        base = 20
        for _ in range(self._count(base, rates.cp_turnover * per_day)):
            self._toggle(_CP, self.cp_members, start=True, iso_day=iso_day)
        for _ in range(self._count(base + 1, rates.cp_turnover * per_day)):
            self._toggle(_CP, self.cp_members, start=False, iso_day=iso_day)
        for _ in range(self._count(base + 2, rates.lac_turnover * per_day)):
            self._toggle(_LAC, self.lac_members, start=True, iso_day=iso_day)
        for _ in range(self._count(base + 3, rates.lac_turnover * per_day)):
            self._toggle(_LAC, self.lac_members, start=False, iso_day=iso_day)
        for _ in range(self._count(base + 4, rates.sao_start * per_day)):
            slot = self._pick_live_pupil()
            if slot >= 0 and not self.flags[slot] & _SAO:
                self.flags[slot] |= _SAO
                self._status(slot, iso_day)

    def _toggle(self, flag: int, members: list[int], *, start: bool, iso_day: str) -> None:
        rng = self.rng
        if start:
            slot = self._pick_live_pupil()
            if slot < 0 or self.flags[slot] & flag:
                return
            self.flags[slot] |= flag
            members.append(slot)
            if flag == _LAC and rng.random() < self.rates.lac_out_of_area:
                self.care_la[slot] = self._other_care_la(self.schools[self.school[slot]].la_index)
            self._status(slot, iso_day)
            return
        for _ in range(5):
            if not members:
                return
            index = int(rng.random() * len(members))
            slot = members[index]
            members[index] = members[-1]
            members.pop()
            if self.flags[slot] & flag and self.state[slot] != _FREE:
                self.flags[slot] &= ~flag
                self._status(slot, iso_day)
                if flag == _LAC:
                    self.care_la[slot] = 0
                return


def _check_options(options: GeneratorOptions, calendar: SchoolCalendar) -> None:
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


def iter_chunks(
    options: GeneratorOptions, calendar: SchoolCalendar | None = None
) -> Iterator[tuple[date, list[str]]]:
    """The run's replay lines (no newlines) in order, in chunks, each with its day (a day may span several
    chunks). Raises GeneratorOptionsError for options it cannot honour."""
    school_calendar = calendar or default_calendar()
    _check_options(options, school_calendar)
    simulation = _Simulation(options, school_calendar)
    day = options.start
    while day <= options.end:
        for chunk in simulation.run_day(day):
            yield day, chunk
        day += timedelta(days=1)


def generate_lines(options: GeneratorOptions, calendar: SchoolCalendar | None = None) -> Iterator[str]:
    """Every replay line of the run (no newlines), in order."""
    for _, lines in iter_chunks(options, calendar):
        yield from lines


def write_replay(
    options: GeneratorOptions,
    out: TextIO,
    *,
    calendar: SchoolCalendar | None = None,
    on_day: Callable[[date, int], None] | None = None,
) -> GenerationSummary:
    """Write the run to `out` as JSON Lines; `on_day(day, lines_so_far)` is called after each chunk."""
    summary = GenerationSummary()
    for day, lines in iter_chunks(options, calendar):
        if lines:
            out.write("\n".join(lines))
            out.write("\n")
            summary.lines += len(lines)
            for line in lines:
                topic = line[11 : line.index('"', 11)]
                summary.per_topic[topic] = summary.per_topic.get(topic, 0) + 1
        summary.last_day = day
        if on_day is not None:
            on_day(day, summary.lines)
    return summary
