"""The day-by-day state machine of a generator run: what happens to which pupils, day by day."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date

from generator.attendance import Attendance
from generator.options import CHUNK_LINES, WEST_MIDLANDS, GeneratorOptions
from generator.population import (
    _ABSENCE_REMOVE,
    _ADD,
    _CP,
    _EHE_LATE_NOTICE,
    _EHE_REMOVE,
    _FORMER_CODES,
    _FREE,
    _LAC,
    _NO_NOTICE,
    _NOTICE_AFTER,
    _NOTICE_BEFORE,
    _OFF_ROLL,
    _ON_ROLL,
    _ORAL_FOLLOWUP,
    _OUTSIDE_CODES,
    _PENDING,
    _PRIMARY,
    _PRIMARY_TOP_YEAR,
    _PRU,
    _REMOVE_AFTER_ADD,
    _RESERVED,
    _SAO,
    _SECONDARY,
    _SECONDARY_TOP_YEAR,
    _YEAR_GROUPS,
    Population,
    _school_year_of,
)
from processors.calendar import SchoolCalendar
from processors.records import CLOCK_TICKS, ClockTick, Destination, DestinationKind
from schemas.jsonfields import record_to_line


class Simulation(Population):
    """Runs the population one day at a time; `run_day` yields the day's replay lines in chunks."""

    def __init__(self, options: GeneratorOptions, calendar: SchoolCalendar) -> None:
        super().__init__(options, calendar)
        if options.attendance:
            self.attendance = Attendance(self)

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
            self._roll_changes(day, iso_day, school_year)
        self._status_changes(iso_day)
        if school_day and self.attendance is not None:
            yield self._take()
            yield from self.attendance.run_day(day)
        if school_day:
            self.out.append(record_to_line(CLOCK_TICKS, ClockTick(day)))
        yield self._take()

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
            if self.attendance is not None:
                self.attendance.end_dual(slot)
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
        elif kind == _ABSENCE_REMOVE:
            ground = "H_NOT_RETURNED_FROM_LEAVE" if argument else "I_CONTINUOUS_ABSENCE"
            self._remove_unknown(slot, day, iso_day, ground)

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
                       ground: str, destination: Destination | None) -> None:
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
            if self.attendance is not None:
                self.attendance.on_dual(slot, old_school)
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
        destination = Destination(DestinationKind.OTHER_LA, la_code=WEST_MIDLANDS[la_index].code)
        self._complete_move(slot, old_school, new_school, day, iso_day, "G_MOVED_AWAY", destination)

    def _move_out_of_region(self, slot: int, day: date, iso_day: str, school_year: int) -> None:
        destination = Destination(DestinationKind.OTHER_LA, la_code=self.rng.choice(_OUTSIDE_CODES))
        ground = "G_MOVED_AWAY" if self.rng.random() < 0.7 else "A_REGISTERED_ELSEWHERE"
        self._roll_event(slot, self.school[slot], iso_day, ground=ground, destination=destination)
        self._free(slot)

    def _move_abroad(self, slot: int, day: date, iso_day: str, school_year: int) -> None:
        abroad = Destination(DestinationKind.ABROAD)
        self._roll_event(slot, self.school[slot], iso_day, ground="G_MOVED_AWAY", destination=abroad)
        self._free(slot)

    def _move_unknown(self, slot: int, day: date, iso_day: str, school_year: int) -> None:
        roll = self.rng.random()
        ground = "G_MOVED_AWAY" if roll < 0.5 else "H_NOT_RETURNED_FROM_LEAVE" if roll < 0.7 else "I_CONTINUOUS_ABSENCE"
        if self.attendance is not None and ground != "G_MOVED_AWAY":
            # With registers, the removal comes at the end of the absence (or leave and absence) behind it.
            leave = ground == "H_NOT_RETURNED_FROM_LEAVE"
            days = self.attendance.absence_before_removal(slot, leave)
            self.state[slot] = _RESERVED
            self._schedule(self._school_day_after(day, days), _ABSENCE_REMOVE, slot, int(leave))
            return
        self._remove_unknown(slot, day, iso_day, ground)

    def _remove_unknown(self, slot: int, day: date, iso_day: str, ground: str) -> None:
        rng = self.rng
        destination = Destination(DestinationKind.UNKNOWN) if rng.random() < 0.6 else None
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
