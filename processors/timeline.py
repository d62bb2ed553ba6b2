"""Applies records in arrival order: per-child rules, the business date, and deadlines falling due."""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from datetime import date
from typing import Any, Protocol

from msgspec import Struct

from processors.attendance import (
    AttendanceState,
    MemoryPresentDays,
    PresentDays,
    apply_mark,
    attendance_limit_problem,
    removal_unsupported,
    watch_admission,
)
from processors.config import RuleConfig
from processors.failures import STATE_LIMIT, UNPROCESSABLE, Rejected, describe_error
from processors.records import (
    Alert,
    AttendanceRegister,
    CaseAction,
    CaseActionType,
    ClockTick,
    CMEReferral,
    EHENotification,
    EventType,
    InputRecord,
    MarkBatch,
    RollEvent,
    SafeguardingStatus,
)
from processors.referrals import apply_case_action, apply_referral
from processors.registers import MarkRejection, batch_of, check_marks
from processors.rules import (
    Outcome,
    apply_ehe_notification,
    apply_roll_event,
    apply_status,
    attendance_alerts,
    check_deadlines,
)
from processors.state import ChildState, Removal, state_limit_problem


class ChildStore(Protocol):
    """Where per-child state lives: a dict in replay, a changelog-backed table in the worker."""

    def get(self, upn: str) -> ChildState | None: ...

    def put(self, state: ChildState) -> None: ...


class DeadlineIndex(Protocol):
    """Which children have a deadline due on which date, so an advance touches only those children."""

    def add(self, due: date, upn: str) -> None: ...

    def due_before(self, business_date: date) -> list[str]:
        """The children with a deadline due before `business_date`, in UPN order; nothing is removed."""
        ...

    def discard_due_before(self, business_date: date, upn: str) -> None:
        """Forgets one child's deadlines due before `business_date`, once they have been checked."""
        ...


class AttendanceStore(Protocol):
    """Where each child's attendance state lives, apart from the rest of its state: a mark reads only this."""

    def get(self, upn: str) -> AttendanceState | None: ...

    def put(self, state: AttendanceState) -> None: ...


class MemoryAttendanceStore:
    def __init__(self) -> None:
        self.states: dict[str, AttendanceState] = {}

    def get(self, upn: str) -> AttendanceState | None:
        return self.states.get(upn)

    def put(self, state: AttendanceState) -> None:
        self.states[state.upn] = state


class RegisterLedger(Protocol):
    """The register ids already applied, so that a register sent again is ignored."""

    def admit(self, register_id: str) -> bool:
        """True, and remembered, the first time a register id is met; False after that."""
        ...


class MemoryRegisterLedger:
    def __init__(self) -> None:
        self.ids: set[str] = set()

    def admit(self, register_id: str) -> bool:
        if register_id in self.ids:
            return False
        self.ids.add(register_id)
        return True


class BusinessClock(Protocol):
    """The business date: the latest tick applied; it never moves back."""

    def get(self) -> date | None: ...

    def set(self, today: date) -> None: ...


class Changes(Struct, frozen=True, gc=False):
    """How a record moved the totals operators watch: the LAs that began or stopped holding an open case, and
    how many deadlines were added or ended (fired, cancelled or closed with the case)."""

    cases_opened: tuple[str, ...] = ()
    cases_closed: tuple[str, ...] = ()
    deadlines_added: int = 0
    deadlines_ended: int = 0

    def __add__(self, other: Changes) -> Changes:
        return Changes(
            self.cases_opened + other.cases_opened,
            self.cases_closed + other.cases_closed,
            self.deadlines_added + other.deadlines_added,
            self.deadlines_ended + other.deadlines_ended,
        )

    def __bool__(self) -> bool:
        return bool(self.cases_opened or self.cases_closed or self.deadlines_added or self.deadlines_ended)


NO_CHANGES = Changes()


def changes_between(before: ChildState | None, after: ChildState) -> Changes:
    """The case holders and deadlines that differ between two states of one child."""
    if before is not None and before.case is after.case and before.deadlines is after.deadlines:
        # Most records (an ADDED, a status, a notice) carry case and deadlines over untouched.
        return NO_CHANGES
    if before is None and after.case is None and not after.deadlines:
        return NO_CHANGES
    case_before = before.case if before is not None else None
    held_before = set(case_before.holders) if case_before is not None else set()
    held_after = set(after.case.holders) if after.case is not None else set()
    if case_before is not None and after.case is not None and case_before.case_id == after.case.case_id:
        opened, closed = held_after - held_before, held_before - held_after
    else:
        # A different case (or none) on either side: every holder of the old one let go, of the new one joined.
        opened, closed = held_after, held_before
    # A child has a handful of deadlines at most, so matching them off a list beats building Counters; a
    # deadline carried over is the same object, which list.remove finds by identity before comparing fields.
    unmatched = list(before.deadlines) if before is not None else []
    added = 0
    for deadline in after.deadlines:
        try:
            unmatched.remove(deadline)
        except ValueError:
            added += 1
    return Changes(tuple(sorted(opened)), tuple(sorted(closed)), added, len(unmatched))


class ChildFailure(Struct, frozen=True, gc=False):
    """A child whose deadlines a tick could not check (its stored state unreadable, or a rule failing on it):
    its deadlines stay in the index, so the next tick tries again."""

    upn: str
    error: str


class Applied(Struct, frozen=True, gc=False):
    """What applying one record did: the alerts it raised, whether it was new (not a duplicate), how it
    changed open cases and pending deadlines, and (for a tick) the children it could not check."""

    alerts: tuple[Alert, ...]
    new: bool
    changes: Changes = NO_CHANGES
    failed: tuple[ChildFailure, ...] = ()
    refused_marks: tuple[MarkRejection, ...] = ()


class Timeline:
    """The one code path that replay and the worker share: record in, alerts out."""

    def __init__(
        self,
        children: ChildStore,
        index: DeadlineIndex,
        clock: BusinessClock,
        config: RuleConfig,
        registers: RegisterLedger | None = None,
        owns: Callable[[str], bool] | None = None,
        attendance: AttendanceStore | None = None,
        present: PresentDays | None = None,
    ) -> None:
        """`owns` says which children this timeline holds, when several share the work (parallel replay)."""
        self.children = children
        self.index = index
        self.clock = clock
        self.config = config
        self.registers: RegisterLedger = registers if registers is not None else MemoryRegisterLedger()
        self.owns = owns
        self.attendance: AttendanceStore = attendance if attendance is not None else MemoryAttendanceStore()
        self.present: PresentDays = present if present is not None else MemoryPresentDays()

    def apply(self, record: InputRecord) -> Applied:
        if isinstance(record, ClockTick):
            return self.advance(record.today)
        if isinstance(record, AttendanceRegister):
            return self.apply_register(record)
        rule = _APPLY.get(type(record))
        if rule is None:
            raise TypeError(f"cannot apply {type(record).__name__}")
        # A referral or a case action without a UPN lives under its referral id (design.md, Rules (v2)).
        key = record.key if isinstance(record, CaseAction | CMEReferral) else record.upn
        stored = self.children.get(key)
        state = stored or ChildState(upn=key)
        outcome: Outcome = rule(state, record, self.config)
        changes = NO_CHANGES
        if outcome.state is not state:
            too_large = state_limit_problem(outcome.state)
            if too_large is not None:
                raise Rejected(STATE_LIMIT, f"{too_large}; check the sender is not resending one pupil's records")
        alerts = outcome.alerts
        if isinstance(record, RollEvent) and record.event_type is EventType.ADDED and outcome.applied:
            # Its first marked days are awaited; registers already applied may show the no-show at once.
            known = self.attendance.get(record.upn)
            watched = watch_admission(known, record.upn, record.school, record.effective_date, self.present,
                                      self.config)
            if watched.state is not known and watched.state is not None:
                self.attendance.put(watched.state)
            if watched.decided:
                alerts = (*alerts, *attendance_alerts(outcome.state, watched.decided, (record.event_id,)))
        if outcome.state is not state:
            self.children.put(outcome.state)
            if not (isinstance(record, CaseAction) and record.action is CaseActionType.LINK):
                # A linked case is already counted open where its referral opened it (under the referral id,
                # on another partition); it is counted closed when the child's roll event closes it.
                changes = changes_between(stored, outcome.state)
        for due in outcome.new_due_dates:
            self.index.add(due, key)
        return Applied(alerts, outcome.applied, changes)

    def apply_register(self, register: AttendanceRegister) -> Applied:
        """A whole register: ignored when already applied, else each mark checked and applied on its own."""
        if not self.registers.admit(register.register_id):
            return Applied((), False)
        valid, refused = check_marks(register, self.owns)
        applied = self.apply_batch(batch_of(register, valid))
        if not refused:
            return applied
        return Applied(applied.alerts, True, applied.changes, (), tuple(sorted(
            (*applied.refused_marks, *refused), key=lambda r: r.index)))

    def apply_batch(self, batch: MarkBatch) -> Applied:
        """The marks of one register whose children this timeline holds, in the batch's order; a mark that
        cannot be applied is refused on its own, with its child's state as it was. Pupils simply present
        are recorded once for the batch, not each in its own state."""
        alerts: list[Alert] = []
        refused: list[MarkRejection] = []
        present: list[str] = []
        school, day, config, store = batch.school, batch.date, self.config, self.attendance
        for index, mark in zip(batch.indexes, batch.marks, strict=True):
            upn = mark.upn
            try:
                stored = store.get(upn)
                outcome = apply_mark(stored, upn, school, day, mark, self.present, config)
                # The state to write: None when the mark left it as it was (a pupil simply present).
                written = outcome.state if outcome.state is not stored else None
                if written is not None:
                    too_large = attendance_limit_problem(written)
                    if too_large is not None:
                        refused.append(MarkRejection(index, upn, STATE_LIMIT, too_large))
                        continue
                if outcome.decided:
                    child = self.children.get(upn) or ChildState(upn=upn)
                    alerts.extend(attendance_alerts(child, outcome.decided, (batch.register_id,)))
            except (OSError, TimeoutError):
                raise  # the store's disk, not the mark
            except Exception as error:
                refused.append(MarkRejection(
                    index, upn, UNPROCESSABLE, f"the mark could not be applied ({describe_error(error)})"))
                continue
            if written is not None:
                store.put(written)
            if outcome.present:
                present.append(upn)
        self.present.add(school.urn, day.toordinal(), present)
        if len(alerts) > 1:
            # In UPN order (each child's own in the order raised), however the school listed its pupils: so
            # processes sharing a replay by child give their alerts in one order.
            alerts.sort(key=lambda alert: alert.upn or "")
        return Applied(tuple(alerts), True, NO_CHANGES, (), tuple(refused))

    def unsupported_removal(self, upn: str) -> Callable[[Removal], tuple[int, bool] | None]:
        return lambda removal: removal_unsupported(self.attendance.get(upn), upn, removal, self.present, self.config)

    def advance(self, today: date) -> Applied:
        """Moves the business date forward and raises every deadline alert that has fallen due.

        Each due child is checked on its own: one that cannot be (unreadable state, a failing rule) keeps its
        deadlines in the index for the next tick and is reported in `failed`, and every other child due
        gets its alerts."""
        current = self.clock.get()
        if current is not None and today <= current:
            return Applied((), False)
        alerts: list[Alert] = []
        changes = NO_CHANGES
        failed: list[ChildFailure] = []
        for upn in self.index.due_before(today):
            try:
                state = self.children.get(upn)
                if state is not None:
                    outcome = check_deadlines(state, today, self.config, self.unsupported_removal(upn))
                    if outcome.state is not state:
                        self.children.put(outcome.state)
            except Exception as error:
                failed.append(ChildFailure(upn, describe_error(error)))
                continue
            self.index.discard_due_before(today, upn)
            if state is not None:
                if outcome.state is not state:
                    changes += changes_between(state, outcome.state)
                alerts.extend(outcome.alerts)
        self.clock.set(today)
        return Applied(tuple(alerts), True, changes, tuple(failed))


_APPLY: dict[type, Callable[[ChildState, Any, RuleConfig], Outcome]] = {
    RollEvent: apply_roll_event,
    EHENotification: apply_ehe_notification,
    SafeguardingStatus: apply_status,
    CaseAction: apply_case_action,
    CMEReferral: apply_referral,
}


class MemoryChildStore:
    """A dict of child states, for replay and unit tests."""

    def __init__(self) -> None:
        self.states: dict[str, ChildState] = {}

    def get(self, upn: str) -> ChildState | None:
        return self.states.get(upn)

    def put(self, state: ChildState) -> None:
        self.states[state.upn] = state

    def __iter__(self) -> Iterator[ChildState]:
        return iter(self.states.values())

    def __len__(self) -> int:
        return len(self.states)


class MemoryDeadlineIndex:
    """Due dates to the children with a deadline on them, in memory."""

    def __init__(self) -> None:
        self.by_date: MutableMapping[date, set[str]] = {}

    def add(self, due: date, upn: str) -> None:
        self.by_date.setdefault(due, set()).add(upn)

    def due_before(self, business_date: date) -> list[str]:
        upns: set[str] = set()
        for due, children in self.by_date.items():
            if due < business_date:
                upns |= children
        return sorted(upns)

    def discard_due_before(self, business_date: date, upn: str) -> None:
        for due in [d for d, children in self.by_date.items() if d < business_date and upn in children]:
            children = self.by_date[due]
            children.discard(upn)
            if not children:
                del self.by_date[due]


class MemoryClock:
    def __init__(self, today: date | None = None) -> None:
        self.today = today

    def get(self) -> date | None:
        return self.today

    def set(self, today: date) -> None:
        self.today = today


def memory_timeline(config: RuleConfig) -> Timeline:
    return Timeline(MemoryChildStore(), MemoryDeadlineIndex(), MemoryClock(), config)
