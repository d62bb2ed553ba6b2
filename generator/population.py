"""The simulated population: schools, pupils in compact arrays, and the records they give rise to."""

from __future__ import annotations

import random
import uuid
from array import array
from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import accumulate
from typing import TYPE_CHECKING

from generator.options import MAX_IDENTITIES, WEST_MIDLANDS, GeneratorOptions, GeneratorOptionsError
from processors.calendar import SchoolCalendar
from processors.identifiers import CURRENT_LA_CODES, FORMER_LA_CODES, upn_check_letter
from processors.records import (
    EHE_NOTIFICATIONS,
    ROLL_EVENTS,
    SAFEGUARDING_STATUS,
    Child,
    Destination,
    DestinationKind,
    EHEMethod,
    EHENotification,
    EventType,
    Ground,
    RollEvent,
    SafeguardingStatus,
    School,
    SocialWorker,
)
from schemas.jsonfields import record_to_line

if TYPE_CHECKING:
    from generator.attendance import Attendance

# Phases of a school (index into the per-LA school lists).
_PRIMARY, _SECONDARY, _SPECIAL, _PRU = 0, 1, 2, 3
# Pupil slot states.
_FREE, _ON_ROLL, _PENDING, _RESERVED, _OFF_ROLL = 0, 1, 2, 3, 4
# Pupil flags.
_CP, _LAC, _SAO, _SEEN = 1, 2, 4, 8
# Scheduled follow-ups: (kind, slot, argument) triples in a per-day array.
_ADD, _REMOVE_AFTER_ADD, _EHE_REMOVE, _EHE_LATE_NOTICE, _ORAL_FOLLOWUP, _ABSENCE_REMOVE = 1, 2, 3, 4, 5, 6
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


def _school_year_of(day: date) -> int:
    return day.year if day.month >= 9 else day.year - 1


@dataclass(frozen=True, slots=True)
class _School:
    la_index: int
    phase: int
    urn: str
    laestab: str
    record: School  # the `school` of its roll events
    source_system: str

    @property
    def la_code(self) -> str:
        return self.laestab[:3]


class Population:
    """The region's schools and pupils, how they are picked, and the replay lines their records make."""

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
        self.attendance: Attendance | None = None  # set by the simulation when registers are asked for
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
                    record = School(urn=urn, laestab=laestab, name=name, special=phase == _SPECIAL)
                    by_phase[phase].append(len(self.schools))
                    self.schools.append(_School(la_index, phase, urn, laestab, record, rng.choice(_SOURCE_SYSTEMS)))
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
        """Ordinal of the Nth school day after `day`."""
        return self.calendar.nth_school_day_after(day, n).toordinal()

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

    def _timestamp(self, iso_day: str) -> datetime:
        seconds = 25_200 + int(self.rng.random() * 36_000)  # 07:00 to 17:00 UTC
        return datetime.fromisoformat(iso_day).replace(tzinfo=UTC) + timedelta(seconds=seconds)

    def _upn(self, slot: int) -> str:
        scrambled = (self.identity[slot] * _UPN_MULTIPLIER + _UPN_OFFSET) % MAX_IDENTITIES
        body = f"{self.upn_la[slot]:03d}{scrambled // 1000:04d}{self.upn_year[slot]:02d}{scrambled % 1000:03d}"
        return upn_check_letter(body) + body

    def _child(self, slot: int, school: _School) -> Child:
        salt = self.salt[slot]
        forename = _FORENAMES[salt % len(_FORENAMES)]
        surname = _SURNAMES[(salt >> 7) % len(_SURNAMES)]
        born = date.fromordinal(self.dob[slot])
        if salt >> 30 == 0:  # a quarter of MIS records hold no postcode
            return Child(forename, surname, born)
        areas = WEST_MIDLANDS[school.la_index].postcode_areas
        area = areas[(salt >> 14) % len(areas)]
        postcode = (
            f"{area}{(salt >> 17) % 30 + 1} {(salt >> 22) % 10}"
            f"{_INWARD_LETTERS[(salt >> 2) % 20]}{_INWARD_LETTERS[(salt >> 25) % 20]}"
        )
        return Child(forename, surname, born, postcode)

    def _roll_event(
        self,
        slot: int,
        school_index: int,
        iso_day: str,
        *,
        ground: str | None = None,
        destination: Destination | None = None,
        standard_transition: bool = False,
    ) -> None:
        school = self.schools[school_index]
        event = RollEvent(
            event_id=self._uuid(),
            event_type=EventType.ADDED if ground is None else EventType.REMOVED,
            upn=self._upn(slot),
            child=self._child(slot, school),
            school=school.record,
            effective_date=date.fromisoformat(iso_day),
            recorded_at=self._timestamp(iso_day),
            source_system=school.source_system,
            ground=None if ground is None else Ground(ground),
            destination=destination if ground is not None else None,
            standard_transition=standard_transition,
        )
        self.out.append(record_to_line(ROLL_EVENTS, event))
        if ground is None:
            self.flags[slot] |= _SEEN
        if self.attendance is not None:
            if ground is None:
                day = event.effective_date
                self.attendance.on_added(slot, day.toordinal() != self.first_day.get(_school_year_of(day)))
            elif school_index == self.school[slot]:
                self.attendance.on_removed(slot)

    def _school_destination(self, school_index: int, *, with_la_code: bool) -> Destination:
        school = self.schools[school_index]
        return Destination(
            DestinationKind.SCHOOL, school.urn, school.laestab, school.la_code if with_la_code else None
        )

    def _ehe_notification(self, slot: int, school_index: int, iso_day: str, method: str) -> None:
        school = self.schools[school_index]
        with_school = school.urn if self.rng.random() < 0.8 else None
        notification = EHENotification(
            self._uuid(), self._upn(slot), school.la_code, EHEMethod(method), date.fromisoformat(iso_day), with_school
        )
        self.out.append(record_to_line(EHE_NOTIFICATIONS, notification))

    def _status(self, slot: int, iso_day: str) -> None:
        flags = self.flags[slot]
        care_la = self.care_la[slot]
        la_code = f"{care_la:03d}" if care_la else self.schools[self.school[slot]].la_code
        worker = None
        if flags & (_CP | _LAC):
            salt = self.salt[slot]
            forename = _FORENAMES[(salt >> 3) % len(_FORENAMES)]
            surname = _SURNAMES[(salt >> 11) % len(_SURNAMES)]
            worker = SocialWorker(
                f"{forename} {surname}", f"{forename.lower()}.{surname.lower()}@la{la_code}.example.org"
            )
        status = SafeguardingStatus(
            upn=self._upn(slot),
            la_code=la_code,
            child_protection_plan=bool(flags & _CP),
            looked_after=bool(flags & _LAC),
            school_attendance_order=bool(flags & _SAO),
            updated_at=self._timestamp(iso_day),
            social_worker=worker,
        )
        self.out.append(record_to_line(SAFEGUARDING_STATUS, status))
