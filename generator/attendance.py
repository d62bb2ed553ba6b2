"""Daily attendance registers for a generator run: seeded, realistic marks for every pupil on roll."""

from __future__ import annotations

import json
import random
import uuid
from array import array
from collections.abc import Iterator
from datetime import date

from generator.options import CHUNK_MARKS, MAX_REGISTER_MARKS
from generator.population import _ON_ROLL, _RESERVED, Population

#: The topic of the registers (design.md, Rules (v2)).
ATTENDANCE_REGISTERS = "attendance.registers"
#: Register ids are UUIDv5 of seed, school, date and part in this namespace, so they follow from the seed.
REGISTER_NAMESPACE = uuid.UUID("6f1d0c52-8f0e-5b7a-9a43-2c1e5d7b3a90")
#: The time every generated register is taken at (a morning register closing half an hour after 09:05).
RECORDED_AT = "T09:35:00Z"

# Spells: what a pupil's marks are for some days. A spell runs `left` more days, then its follow-on.
_NONE, _ILL, _UNAUTH, _LEAVE, _LEAVE_ABROAD, _HOLIDAY, _SUSPENDED, _NO_SHOW = 0, 1, 2, 3, 4, 5, 6, 7
# Attendance profiles of pupils.
_ORDINARY, _PERSISTENT, _PART_TIME = 0, 1, 2
#: A spell that lasts until something else ends it (the removal at the end of an absence story).
_UNTIL_REMOVED = 32_000
#: Days of a run of unauthorised absence marked N (reason not yet known) before the school settles on O.
_N_DAYS = 3


def _pair(am: str, pm: str) -> str:
    """The tail of a mark's JSON after its UPN, e.g. `", "am": "/", "pm": "\\\\"}`."""
    return f'", "am": {json.dumps(am)}, "pm": {json.dumps(pm)}}}'


PRESENT = _pair("/", "\\")
LATE = _pair("L", "\\")
ILL = _pair("I", "I")
UNAUTH_N = _pair("N", "N")
UNAUTH_O = _pair("O", "O")
HOLIDAY = _pair("G", "G")
LEAVE = _pair("C", "C")
LEAVE_ABROAD = _pair("C1", "C1")
SUSPENDED = _pair("E", "E")
PART_TIME = _pair("/", "C2")
_SPELL_PAIRS = (PRESENT, ILL, UNAUTH_O, LEAVE, LEAVE_ABROAD, HOLIDAY, SUSPENDED, UNAUTH_N)
#: One-off days: (cumulative probability for an ordinary pupil, for a persistent absentee, the day's mark).
_ONE_OFF: tuple[tuple[float, float, str], ...] = tuple(
    (ordinary, persistent, pair)
    for ordinary, persistent, pair in (
        (0.0040, 0.0500, UNAUTH_O),
        (0.0060, 0.0700, UNAUTH_N),
        (0.0070, 0.0800, _pair("/", "O")),
        (0.0080, 0.0850, _pair("L", "N")),
        (0.0140, 0.0910, _pair("M", "\\")),
        (0.0190, 0.0960, _pair("/", "M")),
        (0.0390, 0.1160, LATE),
        (0.0410, 0.1180, _pair("V", "V")),
        (0.0420, 0.1190, _pair("B", "B")),
        (0.0425, 0.1195, _pair("P", "\\")),
        (0.0435, 0.1205, _pair("R", "R")),
        (0.0440, 0.1210, _pair("J1", "\\")),
        (0.0445, 0.1215, _pair("/", "C2")),
        (0.0447, 0.1217, _pair("/", "S")),
    )
)
#: Per pupil per school day: suspensions (E), 1-4 days.
_SUSPENSION_START = 0.0002
#: Illness spells are 1 to 4 days long, most of them short.
_ILL_LENGTHS = (1, 1, 1, 1, 2, 2, 2, 3, 3, 4)


class Attendance:
    """Marks for the pupils of a Population, day by day, and the register lines that carry them.

    Per pupil it keeps a cached UPN with the identity it belongs to (17 bytes), an attendance profile (1 byte)
    and a spell (kind, days left, days done, follow-on kind and length: 8 bytes); a day's registers are
    built school by school and handed out in chunks, so no more than a chunk of marks is ever held.
    """

    def __init__(self, population: Population) -> None:
        self.population = population
        self.rates = population.rates
        self.seed = population.options.seed
        # Its own generator: the marks, however many, draw nothing from the roll simulation's.
        self.rng = random.Random(f"attendance/{self.seed}")  # noqa: S311
        self.upns = bytearray()
        self.cached = array("I")  # identity + 1 of the pupil whose UPN is cached in the slot, 0 for none
        self.profile = array("b")
        self.kind = array("b")
        self.left = array("h")
        self.done = array("h")
        self.then_kind = array("b")
        self.then_left = array("h")
        #: Pupils still on the roll of their old school for a few days after an ADDED at the new one.
        self.dual: dict[int, int] = {}
        self.school_text = [
            json.dumps(
                {"urn": school.urn, "laestab": school.laestab, "name": school.record.name,
                 "special": school.record.special},
                ensure_ascii=False,
            )
            for school in population.schools
        ]
        self.registers = 0
        self.marks = 0
        self.carry = 0.0

    # ---- what the simulation tells it ------------------------------------------------------------------

    def _grow(self, slots: int) -> None:
        missing = slots - len(self.cached)
        if missing > 0:
            self.upns.extend(bytes(13 * missing))
            for column in (self.cached, self.profile, self.kind, self.left, self.done, self.then_kind, self.then_left):
                column.extend([0] * missing)

    def _start(self, slot: int, kind: int, days: int, then_kind: int = _NONE, then_days: int = 0) -> None:
        self._grow(slot + 1)
        if self.cached[slot] != self.population.identity[slot] + 1:
            self._refresh(slot)
        self.kind[slot] = kind
        self.left[slot] = days
        self.done[slot] = 0
        self.then_kind[slot] = then_kind
        self.then_left[slot] = then_days

    def on_added(self, slot: int, in_year: bool) -> None:
        """A pupil starts at a school: a clean slate, and for a few in-year admissions, days of no-show."""
        rng = self.rng
        if in_year and rng.random() < self.rates.no_show_share:
            self._start(slot, _NO_SHOW, 3 + int(rng.random() * 6))
        else:
            self._start(slot, _NONE, 0)

    def on_removed(self, slot: int) -> None:
        self._start(slot, _NONE, 0)

    def on_dual(self, slot: int, old_school: int) -> None:
        self.dual[slot] = old_school

    def end_dual(self, slot: int) -> None:
        self.dual.pop(slot, None)

    def absence_before_removal(self, slot: int, leave_ground: bool) -> int:
        """Start the absence that ends in a removal on ground I (or, with `leave_ground`, H); return how many
        school days, today included, it lasts, so the removal falls on the school day after its last.

        Most are supported by the register (ground I: at least 20 unauthorised days; ground H: leave, then at
        least 10); the rest are removed sooner, or (ground H) with no leave before, for the rules to catch.
        """
        rng = self.rng
        supported = rng.random() >= self.rates.unsupported_removal_share
        if not leave_ground:
            days = 20 + int(rng.random() * 11) if supported else 4 + int(rng.random() * 12)
            self._start(slot, _UNAUTH, _UNTIL_REMOVED)
            return days
        run = 10 + int(rng.random() * 7) if supported else 3 + int(rng.random() * 6)
        if not supported and rng.random() < 0.5:
            run = 12 + int(rng.random() * 8)
            self._start(slot, _UNAUTH, _UNTIL_REMOVED)  # gone without any leave granted
            return run
        leave = 5 + int(rng.random() * 6)
        self._start(slot, _LEAVE if rng.random() < 0.8 else _LEAVE_ABROAD, leave, _UNAUTH, _UNTIL_REMOVED)
        return leave + run

    def _absence_returns(self) -> None:
        """Pupils who stop coming for a few weeks and come back (some after leave): a run of 10 or more."""
        population = self.population
        rng = self.rng
        per_day = population.population * self.rates.absence_run_return / 190
        self.carry += per_day
        while self.carry >= 1:
            self.carry -= 1
            slot = int(rng.random() * len(population.state))
            if population.state[slot] != _ON_ROLL or (slot < len(self.kind) and self.kind[slot] != _NONE):
                continue
            run = 10 + int(rng.random() * 10)
            if rng.random() < 0.25:
                self._start(slot, _LEAVE, 3 + int(rng.random() * 8), _UNAUTH, run)
            else:
                self._start(slot, _UNAUTH, run)

    # ---- the registers ----------------------------------------------------------------------------------

    def _rosters(self) -> list[list[int]]:
        population = self.population
        state = population.state
        school = population.school
        rosters: list[list[int]] = [[] for _ in population.schools]
        for slot, slot_state in enumerate(state):
            if slot_state in (_ON_ROLL, _RESERVED):
                rosters[school[slot]].append(slot)
        return rosters

    def _refresh(self, slot: int) -> None:
        """Cache the UPN and attendance profile of a new pupil in `slot` (slots are reused), with no spell."""
        rates = self.rates
        identity = self.population.identity[slot]
        self.cached[slot] = identity + 1
        self.upns[13 * slot : 13 * slot + 13] = self.population._upn(slot).encode()
        share = (identity * 2_654_435_761 >> 7) % 10_000 / 10_000
        persistent = share < rates.persistent_absence
        part_time = not persistent and share < rates.persistent_absence + rates.part_time_timetable
        self.profile[slot] = _PERSISTENT if persistent else _PART_TIME if part_time else _ORDINARY
        self.kind[slot] = _NONE

    def _upn(self, slot: int) -> str:
        if self.cached[slot] != self.population.identity[slot] + 1:
            self._refresh(slot)
        return self.upns[13 * slot : 13 * slot + 13].decode()

    def _marks(self, roster: list[int]) -> list[str]:
        """Today's mark of each pupil on `roster`, as JSON text, advancing their spells."""
        identity = self.population.identity
        cached = self.cached
        upns = self.upns
        profile = self.profile
        rng = self.rng.random
        kind = self.kind
        left = self.left
        done = self.done
        rates = self.rates
        ill_start = rates.illness_start
        holiday_start = ill_start + rates.holiday_start
        leave_start = holiday_start + rates.leave_start
        suspension_start = leave_start + _SUSPENSION_START
        quiet_ordinary = _ONE_OFF[-1][0]
        quiet_persistent = _ONE_OFF[-1][1]
        marks: list[str] = []
        append = marks.append
        for slot in roster:
            if cached[slot] != identity[slot] + 1:
                self._refresh(slot)
            upn = upns[13 * slot : 13 * slot + 13].decode()
            spell = kind[slot]
            if spell:
                done[slot] += 1
                pair = UNAUTH_N if spell == _UNAUTH and done[slot] <= _N_DAYS else _SPELL_PAIRS[spell]
                left[slot] -= 1
                if left[slot] <= 0:
                    kind[slot] = self.then_kind[slot]
                    left[slot] = self.then_left[slot]
                    done[slot] = 0
                    self.then_kind[slot] = _NONE
                append('{"upn": "' + upn + pair)
                continue
            persistent = profile[slot] == _PERSISTENT
            draw = rng()
            start = draw * 0.4 if persistent else draw  # a persistent absentee starts spells more often
            if start >= suspension_start:
                # The common case: no spell starts; the same draw, rescaled, picks the day's one-off mark.
                draw = (draw - suspension_start) / (1 - suspension_start)
                if draw >= (quiet_persistent if persistent else quiet_ordinary):
                    append('{"upn": "' + upn + (PART_TIME if profile[slot] == _PART_TIME else PRESENT))
                    continue
                for ordinary, heavy, one_off in _ONE_OFF:
                    if draw < (heavy if persistent else ordinary):
                        append('{"upn": "' + upn + one_off)
                        break
                continue
            if start < ill_start:
                length = _ILL_LENGTHS[int(rng() * len(_ILL_LENGTHS))]
                if length > 1:
                    self._start(slot, _ILL, length - 1)
                append('{"upn": "' + upn + ILL)
            elif start < holiday_start:
                self._start(slot, _HOLIDAY, 2 + int(rng() * 7))
                append('{"upn": "' + upn + HOLIDAY)
            elif start < leave_start:
                abroad = rng() < 0.15
                self._start(slot, _LEAVE_ABROAD if abroad else _LEAVE, 1 + int(rng() * 4))
                append('{"upn": "' + upn + (LEAVE_ABROAD if abroad else LEAVE))
            else:
                self._start(slot, _SUSPENDED, 1 + int(rng() * 4))
                append('{"upn": "' + upn + SUSPENDED)
        return marks

    def run_day(self, day: date) -> Iterator[list[str]]:
        """The registers of a school day, one school (or one part of a big school) a line, in chunks of about
        CHUNK_MARKS marks; call it after the day's roll events, before its tick."""
        self._grow(len(self.population.state))
        self._absence_returns()
        iso_day = day.isoformat()
        rosters = self._rosters()
        dual_marks: dict[int, list[str]] = {}
        for slot, old_school in sorted(self.dual.items()):
            dual_marks.setdefault(old_school, []).append('{"upn": "' + self._upn(slot) + UNAUTH_N)
        chunk: list[str] = []
        in_chunk = 0
        for school_index, roster in enumerate(rosters):
            marks = self._marks(roster) + dual_marks.get(school_index, [])
            if not marks:
                continue
            parts = -(-len(marks) // MAX_REGISTER_MARKS)
            size = -(-len(marks) // parts)
            for part in range(parts):
                chunk.append(self._line(school_index, iso_day, part, marks[part * size : (part + 1) * size]))
            in_chunk += len(marks)
            self.registers += parts
            self.marks += len(marks)
            if in_chunk >= CHUNK_MARKS:
                yield chunk
                chunk, in_chunk = [], 0
        if chunk:
            yield chunk

    def _line(self, school_index: int, iso_day: str, part: int, marks: list[str]) -> str:
        urn = self.population.schools[school_index].urn
        register_id = uuid.uuid5(REGISTER_NAMESPACE, f"{self.seed}/{urn}/{iso_day}/{part}")
        return (
            f'{{"topic": "{ATTENDANCE_REGISTERS}", "value": {{"register_id": "{register_id}", '
            f'"school": {self.school_text[school_index]}, "date": "{iso_day}", '
            f'"recorded_at": "{iso_day}{RECORDED_AT}", "marks": [{", ".join(marks)}]}}}}'
        )
