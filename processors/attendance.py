"""The attendance rules of design v2: session codes, absence runs, no-shows after admission, unsupported removals."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from msgspec import Struct
from msgspec.structs import replace

from processors import wording
from processors.config import RuleConfig
from processors.records import AttendanceMark, EventType, Ground, Recipient, Rule, School, Severity
from processors.state import ChildState, Removal, SchoolAttendance

# Session code classes (design.md, Rules (v2), Terms).
SEEN_CODES = frozenset({"/", "\\", "L", "U", "K", "V", "P", "W", "B", "D"})
UNAUTHORISED_CODES = frozenset({"G", "N", "O"})
LEAVE_CODES = frozenset({"C", "C1"})
EXCUSED_CODES = frozenset({"C2", "J1", "M", "S", "E", "I", "R", "T", "Q", *(f"Y{n}" for n in range(1, 8))})
NOT_COUNTED_CODES = frozenset({"X", "Z", "#"})
SESSION_CODES = SEEN_CODES | UNAUTHORISED_CODES | LEAVE_CODES | EXCUSED_CODES | NOT_COUNTED_CODES

# A marked day is stored as one int: its date's ordinal times 8 plus these flags, so a child's days are a
# tuple of small ints, cheap to store and to compare.
UNAUTHORISED = 1  # every counted session unauthorised: the day counts in an absence run
SEEN = 2  # a session seen (present, or at approved education elsewhere)
LEAVE = 4  # a session of granted leave of absence

#: Marked days kept per child and school: enough for the longest day count an LA may set (60) twice over,
#: with the day before a run; older days only matter to registers sent months late.
MAX_MARKED_DAYS = 130

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


def day_flags(am: str, pm: str) -> int | None:
    """The flags of a day's two sessions, or None when neither counts (the day is not a marked day)."""
    return _DAY_FLAGS[(am, pm)]


def _day(entry: int) -> date:
    return date.fromordinal(entry >> 3)


class AttendanceAlert(Struct, frozen=True, gc=False):
    """An alert an attendance rule decided on, before it is addressed (rules.py turns it into Alerts)."""

    rule: Rule
    school_urn: str
    school_la: str
    raised_on: date
    trigger: str
    reason: str


class MarkOutcome(Struct, frozen=True, gc=False):
    state: ChildState
    decided: tuple[AttendanceAlert, ...] = ()


def _school_entry(state: ChildState, school_urn: str) -> tuple[int, SchoolAttendance | None]:
    for position, entry in enumerate(state.attendance):
        if entry.school_urn == school_urn:
            return position, entry
    return -1, None


def _with_school(state: ChildState, position: int, entry: SchoolAttendance) -> ChildState:
    """The state with the school's entry put back at `position` (or added, for -1)."""
    schools = list(state.attendance)
    if position < 0:
        schools.append(entry)
    else:
        schools[position] = entry
    return replace(state, attendance=tuple(schools))


def _set_day(days: tuple[int, ...], day: date, flags: int | None) -> tuple[int, ...]:
    """The days with `day` marked as `flags` (or unmarked, for None), kept in date order."""
    ordinal = day.toordinal()
    if flags is not None and (not days or days[-1] >> 3 < ordinal):
        # Registers mostly come in date order: the day goes last.
        if len(days) < MAX_MARKED_DAYS:
            return (*days, ordinal << 3 | flags)
        return (*days[1 - MAX_MARKED_DAYS :], ordinal << 3 | flags)
    kept = [entry for entry in days if entry >> 3 != ordinal]
    if flags is not None:
        kept.append(ordinal << 3 | flags)
        kept.sort()
    if len(kept) > MAX_MARKED_DAYS:
        kept = kept[-MAX_MARKED_DAYS:]
    return tuple(kept)


def apply_mark(
    state: ChildState, school: School, day: date, mark: AttendanceMark, config: RuleConfig
) -> MarkOutcome:
    """Records one mark (replacing any earlier mark for the same school, date and pupil) and decides the
    absence and no-show rules it completes."""
    flags = _DAY_FLAGS[(mark.am, mark.pm)]
    urn = school.urn
    schools = state.attendance
    position = -1
    entry = None
    for at, held in enumerate(schools):
        if held.school_urn == urn:
            position, entry = at, held
            break
    if entry is None:
        if flags is None:
            return MarkOutcome(state)
        entry = SchoolAttendance(urn, school.la_code)
    days = _set_day(entry.days, day, flags)
    if days == entry.days:
        return MarkOutcome(state)  # the same mark again: nothing to write, nothing to decide
    entry = replace(entry, days=days)
    decided: list[AttendanceAlert] = []
    if flags is not None and flags & UNAUTHORISED:
        needed = config.lengths_for(entry.school_la).absence_enquiry_days
        entry = _judge_run(entry, day, needed, school.name, decided)
    if state.rolls:
        entry = _judge_no_shows(state, entry, config.lengths_for(entry.school_la).no_show_days, school.name, decided)
    return MarkOutcome(_with_school(state, position, entry), tuple(decided))


def _run_around(days: tuple[int, ...], day: date) -> tuple[list[int], int | None]:
    """The absence run holding `day` (its marked days in order) and the marked day just before it."""
    ordinal = day.toordinal()
    index = next(i for i, entry in enumerate(days) if entry >> 3 == ordinal)
    start = index
    while start > 0 and days[start - 1] & UNAUTHORISED:
        start -= 1
    end = index
    while end + 1 < len(days) and days[end + 1] & UNAUTHORISED:
        end += 1
    return list(days[start : end + 1]), days[start - 1] if start > 0 else None


def _judge_run(
    entry: SchoolAttendance, day: date, needed: int, school_name: str, decided: list[AttendanceAlert]
) -> SchoolAttendance:
    run, before = _run_around(entry.days, day)
    first, last = run[0] >> 3, run[-1] >> 3
    raised = list(entry.raised_runs)
    overlapping = [i for i, (start, end) in enumerate(raised) if start <= last and first <= end]
    if overlapping:
        # A run that shares a day with one that already raised raises nothing more; the raised span grows
        # with it, so a correction that splits the run later cannot raise it again.
        start = min([first, *(raised[i][0] for i in overlapping)])
        end = max([last, *(raised[i][1] for i in overlapping)])
        raised = [span for i, span in enumerate(raised) if i not in overlapping]
        raised.append((start, end))
        return replace(entry, raised_runs=tuple(sorted(raised)))
    if len(run) < needed:
        return entry
    after_leave = before is not None and bool(before & LEAVE)
    nth = _day(run[needed - 1])
    rule = Rule.NOT_RETURNED_FROM_LEAVE if after_leave else Rule.ABSENCE_ENQUIRIES_DUE
    reason = (
        wording.not_returned_from_leave(school_name, entry.school_urn, _day(before or 0), _day(run[0]), nth, needed)
        if after_leave
        else wording.absence_enquiries_due(school_name, entry.school_urn, _day(run[0]), nth, needed)
    )
    decided.append(AttendanceAlert(rule, entry.school_urn, entry.school_la, nth, f"{entry.school_urn}|{nth}", reason))
    raised.append((first, last))
    return replace(entry, raised_runs=tuple(sorted(raised)))


def _judge_no_shows(
    state: ChildState, entry: SchoolAttendance, needed: int, school_name: str, decided: list[AttendanceAlert]
) -> SchoolAttendance:
    for admission in state.rolls:
        if (
            admission.event_type is not EventType.ADDED
            or admission.school_urn != entry.school_urn
            or admission.effective_date.toordinal() in entry.no_shows_judged
        ):
            continue
        start = admission.effective_date.toordinal()
        first_days = [d for d in entry.days if d >> 3 >= start][:needed]
        if len(first_days) < needed:
            continue
        entry = replace(entry, no_shows_judged=(*entry.no_shows_judged, start))
        if any(d & SEEN for d in first_days):
            continue
        admitted = admission.effective_date
        nth = _day(first_days[-1])
        decided.append(AttendanceAlert(
            Rule.NO_SHOW_AFTER_ADMISSION, entry.school_urn, entry.school_la, nth, f"{entry.school_urn}|{admitted}",
            wording.no_show_after_admission(school_name, entry.school_urn, admitted, [_day(d) for d in first_days]),
        ))
    return entry


def judge_admission(state: ChildState, school: School, config: RuleConfig) -> MarkOutcome:
    """A late ADDED: the registers already applied may show the no-show at once."""
    position, entry = _school_entry(state, school.urn)
    if entry is None:
        return MarkOutcome(state)
    decided: list[AttendanceAlert] = []
    judged = _judge_no_shows(state, entry, config.lengths_for(entry.school_la).no_show_days, school.name, decided)
    if judged is entry:
        return MarkOutcome(state)
    return MarkOutcome(_with_school(state, position, judged), tuple(decided))


def removal_run(state: ChildState, removal: Removal) -> tuple[int, bool] | None:
    """The absence run ending at the child's last marked day at the removing school on or before the
    removal (its length, 0 when that day is not unauthorised, and whether it follows leave), or None when
    the school marked no day for the child up to the removal."""
    _position, entry = _school_entry(state, removal.school_urn)
    if entry is None:
        return None
    limit = removal.effective_date.toordinal()
    days = [d for d in entry.days if d >> 3 <= limit]
    if not days:
        return None
    if not days[-1] & UNAUTHORISED:
        return 0, False
    start = len(days) - 1
    while start > 0 and days[start - 1] & UNAUTHORISED:
        start -= 1
    return len(days) - start, start > 0 and bool(days[start - 1] & LEAVE)


def removal_unsupported(state: ChildState, removal: Removal, config: RuleConfig) -> tuple[int, bool] | None:
    """The run behind a ground I or H removal when it does not support the removal, else None."""
    run = removal_run(state, removal)
    if run is None:
        return None
    length, after_leave = run
    lengths = config.lengths_for(removal.school_la)
    if removal.ground is Ground.I_CONTINUOUS_ABSENCE:
        return run if length < lengths.absence_removal_days else None
    if removal.ground is Ground.H_NOT_RETURNED_FROM_LEAVE:
        return run if length < lengths.leave_return_days or not after_leave else None
    return None


def recipients(state: ChildState, school_la: str) -> list[tuple[Recipient, str]]:
    targets = [(Recipient.CME_OFFICER, school_la)]
    if state.status is not None and state.status.protected:
        targets.append((Recipient.SOCIAL_CARE, state.status.la_code))
    return targets


def severity_of(state: ChildState) -> Severity:
    return Severity.IMMEDIATE if state.protected else Severity.MEDIUM


def dated(items: Iterable[date]) -> str:
    return ", ".join(day.strftime("%a %d %b %Y") for day in items)
