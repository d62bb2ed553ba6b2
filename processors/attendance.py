"""The attendance rules of design v2: session codes, absence runs, no-shows after admission, unsupported removals."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from datetime import date
from typing import Protocol

from msgspec import Struct
from msgspec.structs import replace

from processors import wording
from processors.config import RuleConfig
from processors.records import AttendanceMark, Ground, Rule, School
from processors.state import Removal

# Session code classes (design.md, Rules (v2), Terms).
SEEN_CODES = frozenset({"/", "\\", "L", "U", "K", "V", "P", "W", "B", "D"})
UNAUTHORISED_CODES = frozenset({"G", "N", "O"})
LEAVE_CODES = frozenset({"C", "C1"})
EXCUSED_CODES = frozenset({"C2", "J1", "M", "S", "E", "I", "R", "T", "Q", *(f"Y{n}" for n in range(1, 8))})
NOT_COUNTED_CODES = frozenset({"X", "Z", "#"})
SESSION_CODES = SEEN_CODES | UNAUTHORISED_CODES | LEAVE_CODES | EXCUSED_CODES | NOT_COUNTED_CODES

# A day's flags. A day marked present and nothing else (SEEN alone) is not kept with the child: it goes into the
# partition's register of present pupils (PresentDays), one write a batch rather than one a child. Every other
# marked day is kept with the child as its ordinal << SHIFT | flags.
UNAUTHORISED = 1  # every counted session unauthorised: the day counts in an absence run
SEEN = 2  # a session seen (present, or at approved education elsewhere)
LEAVE = 4  # a session of granted leave of absence
UNMARKED = 8  # a mark taken back (corrected to codes that do not count): the day has no mark
SHIFT = 4

#: Days kept with a child per school besides plain present ones: enough for the longest day count an LA may
#: set (60) several times over; older ones only matter to registers sent months late.
MAX_OWN_DAYS = 200
#: How far after an admission its first marked days are looked for, in calendar days.
NO_SHOW_WINDOW = 183

REMOVAL_CHECK_GROUNDS = frozenset({Ground.I_CONTINUOUS_ABSENCE, Ground.H_NOT_RETURNED_FROM_LEAVE})


def _judge_day(am: str, pm: str) -> int | None:
    counted = [code for code in (am, pm) if code not in NOT_COUNTED_CODES]
    if not counted:
        return None
    flags = UNAUTHORISED if all(code in UNAUTHORISED_CODES for code in counted) else 0
    if any(code in SEEN_CODES for code in counted):
        flags |= SEEN
    if any(code in LEAVE_CODES for code in counted):
        flags |= LEAVE
    return flags


#: Every pair of session codes judged once: a mark's flags are then one dictionary lookup.
_DAY_FLAGS = {(am, pm): _judge_day(am, pm) for am in SESSION_CODES for pm in SESSION_CODES}


class PresentDays(Protocol):
    """The pupils a school marked present (and nothing else) on a day, among the children of one partition,
    and the latest day any of the school's registers there was for."""

    def present(self, school_urn: str, ordinal: int, upn: str) -> bool: ...

    def latest(self, school_urn: str) -> int | None: ...

    def add(self, school_urn: str, ordinal: int, upns: Iterable[str]) -> None:
        """Records a batch: these pupils present on the day, and the day among the school's."""
        ...


class MemoryPresentDays:
    """PresentDays in memory, for replay and tests."""

    def __init__(self) -> None:
        self.days: dict[tuple[str, int], set[str]] = {}
        self.latest_day: dict[str, int] = {}

    def present(self, school_urn: str, ordinal: int, upn: str) -> bool:
        found = self.days.get((school_urn, ordinal))
        return found is not None and upn in found

    def latest(self, school_urn: str) -> int | None:
        return self.latest_day.get(school_urn)

    def add(self, school_urn: str, ordinal: int, upns: Iterable[str]) -> None:
        names = [sys.intern(upn) for upn in upns]  # a pupil recurs every day: its UPN is kept once
        if names:
            self.days.setdefault((school_urn, ordinal), set()).update(names)
        if ordinal > self.latest_day.get(school_urn, ordinal - 1):
            self.latest_day[school_urn] = ordinal


class SchoolMarks(Struct, frozen=True, gc=False, array_like=True):
    """What a child's marks at one school need beyond the present days: the earliest marked day known (walks
    back stop there), the other days, the spans of runs that raised an alert, and the admissions whose first
    days are awaited or were judged (date ordinals)."""

    school_urn: str
    school_la: str
    first: int
    own: tuple[int, ...] = ()
    raised_runs: tuple[tuple[int, int], ...] = ()
    watches: tuple[int, ...] = ()
    judged: tuple[int, ...] = ()


class AttendanceState(Struct, frozen=True, gc=False, array_like=True):
    upn: str
    schools: tuple[SchoolMarks, ...] = ()

    def at(self, school_urn: str) -> SchoolMarks | None:
        for marks in self.schools:
            if marks.school_urn == school_urn:
                return marks
        return None

    def with_school(self, marks: SchoolMarks) -> AttendanceState:
        kept = tuple(m for m in self.schools if m.school_urn != marks.school_urn)
        return replace(self, schools=(*kept, marks))


class AttendanceAlert(Struct, frozen=True, gc=False):
    """An alert an attendance rule decided on, before it is addressed (rules.py turns it into Alerts)."""

    rule: Rule
    school_urn: str
    school_la: str
    raised_on: date
    trigger: str
    reason: str


class MarkOutcome(Struct, frozen=True, gc=False):
    """A mark's effect: the child's attendance state (the same object when unchanged), whether the pupil goes
    into the day's present pupils, and the alerts it completes."""

    state: AttendanceState | None
    present: bool = False
    decided: tuple[AttendanceAlert, ...] = ()


class _Days:
    """One child's marked days at one school, read from its own days, the present pupils and the mark in hand."""

    def __init__(
        self, upn: str, marks: SchoolMarks, present: PresentDays, current: tuple[int, int | None] | None = None
    ) -> None:
        self.upn = upn
        self.marks = marks
        self.ledger = present
        self.own = {entry >> SHIFT: entry & 15 for entry in marks.own}
        self.current = current

    def flags(self, ordinal: int) -> int | None:
        current = self.current
        if current is not None and current[0] == ordinal:
            return current[1]
        own = self.own.get(ordinal)
        if own is not None:
            return None if own & UNMARKED else own
        return SEEN if self.ledger.present(self.marks.school_urn, ordinal, self.upn) else None

    def before(self, ordinal: int) -> Iterator[tuple[int, int]]:
        """Marked days before `ordinal`, latest first."""
        for day in range(ordinal - 1, self.marks.first - 1, -1):
            flags = self.flags(day)
            if flags is not None:
                yield day, flags

    def after(self, ordinal: int, until: int) -> Iterator[tuple[int, int]]:
        """Marked days after `ordinal` up to `until`, earliest first."""
        for day in range(ordinal + 1, until + 1):
            flags = self.flags(day)
            if flags is not None:
                yield day, flags

    def last_known(self) -> int:
        latest = self.ledger.latest(self.marks.school_urn) or self.marks.first
        own = max(self.own, default=latest)
        current = self.current[0] if self.current is not None else latest
        return max(latest, own, current)


def _with_own(marks: SchoolMarks, ordinal: int, flags: int | None) -> SchoolMarks:
    """The school's marks with the day's own entry set to `flags`, or removed for None."""
    kept = [entry for entry in marks.own if entry >> SHIFT != ordinal]
    if flags is not None:
        kept.append(ordinal << SHIFT | flags)
        kept.sort()
    if len(kept) > MAX_OWN_DAYS:
        kept = kept[-MAX_OWN_DAYS:]
    return replace(marks, own=tuple(kept), first=min(marks.first, ordinal))


def apply_mark(
    state: AttendanceState | None,
    upn: str,
    school: School,
    day: date,
    mark: AttendanceMark,
    present: PresentDays,
    config: RuleConfig,
) -> MarkOutcome:
    """Records one mark (replacing any earlier mark for the same school, date and pupil) and decides the
    absence and no-show rules it completes. A pupil simply present usually changes nothing of its own."""
    flags = _DAY_FLAGS[(mark.am, mark.pm)]
    ordinal = day.toordinal()
    marks = None
    if state is not None:
        urn = school.urn
        for held_marks in state.schools:
            if held_marks.school_urn == urn:
                marks = held_marks
                break
    if marks is None:
        if flags is None:
            return MarkOutcome(state)
        marks = SchoolMarks(school.urn, school.la_code, ordinal)
        changed = True
    else:
        changed = False
    plain = flags == SEEN
    held = None
    for entry in marks.own:  # a plain loop: most children have no day of their own, so this is usually empty
        if entry >> SHIFT == ordinal:
            held = entry & 15
            break
    if plain:
        if held is not None:
            marks = _with_own(marks, ordinal, None)  # a correction back to present
            changed = True
        elif ordinal < marks.first:
            marks = replace(marks, first=ordinal)
            changed = True
    elif flags is None:
        # Codes that do not count: the day has no mark, whatever was sent for it before.
        if (held is not None and not held & UNMARKED) or (
            held is None and present.present(school.urn, ordinal, upn)
        ):
            marks = _with_own(marks, ordinal, UNMARKED)
            changed = True
    elif held != flags:
        marks = _with_own(marks, ordinal, flags)
        changed = True
    decided: list[AttendanceAlert] = []
    if changed or marks.watches:
        days = _Days(upn, marks, present, (ordinal, flags))
        lengths = config.lengths_for(marks.school_la)
        if flags is not None and flags & UNAUTHORISED:
            marks = _judge_run(days, ordinal, lengths.absence_enquiry_days, school.name, decided)
            days.marks = marks
        if marks.watches:
            marks = _judge_no_shows(days, lengths.no_show_days, school.name, decided)
            changed = changed or marks is not days.marks
    if not changed and not decided:
        return MarkOutcome(state, plain)
    base = state if state is not None else AttendanceState(upn)
    return MarkOutcome(base.with_school(marks), plain, tuple(decided))


def _judge_run(
    days: _Days, ordinal: int, needed: int, school_name: str, decided: list[AttendanceAlert]
) -> SchoolMarks:
    marks = days.marks
    earlier: list[int] = []
    before: tuple[int, int] | None = None
    for day, flags in days.before(ordinal):
        if not flags & UNAUTHORISED:
            before = (day, flags)
            break
        earlier.append(day)
    later: list[int] = []
    for day, flags in days.after(ordinal, days.last_known()):
        if not flags & UNAUTHORISED:
            break
        later.append(day)
    run = [*reversed(earlier), ordinal, *later]
    first, last = run[0], run[-1]
    raised = list(marks.raised_runs)
    overlapping = [i for i, (start, end) in enumerate(raised) if start <= last and first <= end]
    if overlapping:
        # A run that shares a day with one that already raised raises nothing more; the raised span grows
        # with it, so a correction that splits the run later cannot raise it again.
        start = min([first, *(raised[i][0] for i in overlapping)])
        end = max([last, *(raised[i][1] for i in overlapping)])
        raised = [span for i, span in enumerate(raised) if i not in overlapping]
        raised.append((start, end))
        return replace(marks, raised_runs=tuple(sorted(raised)))
    if len(run) < needed:
        return marks
    after_leave = before is not None and bool(before[1] & LEAVE)
    nth = date.fromordinal(run[needed - 1])
    begun = date.fromordinal(first)
    if after_leave and before is not None:
        rule = Rule.NOT_RETURNED_FROM_LEAVE
        reason = wording.not_returned_from_leave(
            school_name, marks.school_urn, date.fromordinal(before[0]), begun, nth, needed
        )
    else:
        rule = Rule.ABSENCE_ENQUIRIES_DUE
        reason = wording.absence_enquiries_due(school_name, marks.school_urn, begun, nth, needed)
    decided.append(AttendanceAlert(rule, marks.school_urn, marks.school_la, nth, f"{marks.school_urn}|{nth}", reason))
    raised.append((first, last))
    return replace(marks, raised_runs=tuple(sorted(raised)[-200:]))


def _judge_no_shows(days: _Days, needed: int, school_name: str, decided: list[AttendanceAlert]) -> SchoolMarks:
    marks = days.marks
    for admitted in marks.watches:
        until = min(days.last_known(), admitted + NO_SHOW_WINDOW)
        first_days: list[tuple[int, int]] = []
        flags = days.flags(admitted)
        if flags is not None:
            first_days.append((admitted, flags))
        for found in days.after(admitted, until):
            if len(first_days) >= needed:
                break
            first_days.append(found)
        if len(first_days) < needed:
            if days.last_known() > admitted + NO_SHOW_WINDOW:
                # The registers have gone past the admission's window without its first days: judged, quietly,
                # so that no watch outlives the window and every later mark walks it again.
                marks = replace(marks, watches=tuple(w for w in marks.watches if w != admitted),
                                judged=(*marks.judged, admitted)[-50:])
            continue
        marks = replace(
            marks,
            watches=tuple(w for w in marks.watches if w != admitted),
            judged=(*marks.judged, admitted)[-50:],
        )
        if any(flags & SEEN for _day, flags in first_days):
            continue
        start = date.fromordinal(admitted)
        nth = date.fromordinal(first_days[-1][0])
        decided.append(AttendanceAlert(
            Rule.NO_SHOW_AFTER_ADMISSION, marks.school_urn, marks.school_la, nth, f"{marks.school_urn}|{start}",
            wording.no_show_after_admission(
                school_name, marks.school_urn, start, [date.fromordinal(d) for d, _f in first_days]
            ),
        ))
    return marks


def watch_admission(
    state: AttendanceState | None, upn: str, school: School, admitted: date, present: PresentDays, config: RuleConfig
) -> MarkOutcome:
    """An ADDED: its first marked days are awaited, and judged at once if the registers already hold them."""
    ordinal = admitted.toordinal()
    marks = state.at(school.urn) if state is not None else None
    if marks is None:
        # No mark is known at the school yet, so none lies before the admission either.
        marks = SchoolMarks(school.urn, school.la_code, ordinal)
    if ordinal in marks.watches or ordinal in marks.judged:
        return MarkOutcome(state)
    marks = replace(marks, watches=(*marks.watches, ordinal)[-20:])
    decided: list[AttendanceAlert] = []
    days = _Days(upn, marks, present)
    marks = _judge_no_shows(days, config.lengths_for(marks.school_la).no_show_days, school.name, decided)
    base = state if state is not None else AttendanceState(upn)
    return MarkOutcome(base.with_school(marks), False, tuple(decided))


def removal_run(
    state: AttendanceState | None, upn: str, removal: Removal, present: PresentDays
) -> tuple[int, bool] | None:
    """The absence run ending at the child's last marked day at the removing school on or before the
    removal (its length, 0 when that day is not unauthorised, and whether it follows leave), or None when
    the school marked no day for the child up to the removal."""
    marks = state.at(removal.school_urn) if state is not None else None
    if marks is None:
        return None
    days = _Days(upn, marks, present)
    limit = removal.effective_date.toordinal()
    walk = days.before(limit + 1)
    last = next(walk, None)
    if last is None:
        return None
    if not last[1] & UNAUTHORISED:
        return 0, False
    length = 1
    for _day, flags in walk:
        if not flags & UNAUTHORISED:
            return length, bool(flags & LEAVE)
        length += 1
    return length, False


def removal_unsupported(
    state: AttendanceState | None, upn: str, removal: Removal, present: PresentDays, config: RuleConfig
) -> tuple[int, bool] | None:
    """The run behind a ground I or H removal when it does not support the removal, else None."""
    run = removal_run(state, upn, removal, present)
    if run is None:
        return None
    length, after_leave = run
    lengths = config.lengths_for(removal.school_la)
    if removal.ground is Ground.I_CONTINUOUS_ABSENCE:
        return run if length < lengths.absence_removal_days else None
    if removal.ground is Ground.H_NOT_RETURNED_FROM_LEAVE:
        return run if length < lengths.leave_return_days or not after_leave else None
    return None


def attendance_limit_problem(state: AttendanceState) -> str | None:
    """What bound a child's attendance state breaks, if any."""
    if len(state.schools) > 50:
        return f"the child's state would hold the registers of {len(state.schools)} schools, more than the 50 kept"
    return None
