"""The rules of the CME procedure: apply one record to a child's state and decide who must be told."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable
from datetime import date
from zoneinfo import ZoneInfo

from msgspec import Struct
from msgspec.structs import replace

from processors import attendance, wording
from processors.cases import CASE_OPENING_RULES, holds_case, opens_case
from processors.config import RuleConfig
from processors.records import (
    Alert,
    AlertChild,
    CMEReferral,
    DestinationKind,
    EHEMethod,
    EHENotification,
    EventType,
    Ground,
    Recipient,
    RollEvent,
    Rule,
    SafeguardingStatus,
    Severity,
)
from processors.state import (
    Case,
    ChildState,
    Deadline,
    NoticeEntry,
    Removal,
    RollEntry,
    StatusEntry,
)

#: Fixed namespaces: alert and case ids must stay stable across releases, so these never change.
ALERT_NAMESPACE = uuid.UUID("5d0c7a4e-8f3b-5b8e-9a61-2f4c1e7b9d30")
CASE_NAMESPACE = uuid.UUID("a3f1c2d4-6b7e-5c8f-8d9a-0b1c2d3e4f50")

LONDON = ZoneInfo("Europe/London")

MISSING_GROUNDS = frozenset({
    Ground.A_REGISTERED_ELSEWHERE, Ground.G_MOVED_AWAY, Ground.H_NOT_RETURNED_FROM_LEAVE,
    Ground.I_CONTINUOUS_ABSENCE, Ground.M_BOARDING_FEES_UNPAID, Ground.N_LEFT_INDEPENDENT_SCHOOL,
})
TRANSITION_GROUNDS = MISSING_GROUNDS | {Ground.D_SAO_AMENDED}
NO_TRANSFER_GROUNDS = frozenset({
    Ground.F_HOME_EDUCATION, Ground.J_DETAINED, Ground.K_DIED, Ground.L_CEASED_COMPULSORY_AGE,
})
NO_MOVE_GROUNDS = frozenset({Ground.K_DIED, Ground.L_CEASED_COMPULSORY_AGE})
UNSAFE_DESTINATIONS = frozenset({None, DestinationKind.UNKNOWN})
UNSAFE_FOR_PROTECTED = UNSAFE_DESTINATIONS | {DestinationKind.ABROAD, DestinationKind.OTHER_LA}
CASE_RULES = CASE_OPENING_RULES


class Outcome(Struct, frozen=True, gc=False):
    """A child's new state, the alerts to send, and the due dates of deadlines it added."""

    state: ChildState
    alerts: tuple[Alert, ...] = ()
    new_due_dates: tuple[date, ...] = ()
    applied: bool = True


def uuid5_text(namespace: uuid.UUID, name: str) -> str:
    """str(uuid.uuid5(namespace, name)) without the UUID object in between, which costs three times as much;
    ids are made for every alert and case."""
    digest = bytearray(hashlib.sha1(namespace.bytes + name.encode()).digest()[:16])  # noqa: S324 - RFC 4122 v5 is SHA-1
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def alert_id(rule: Rule, recipient: Recipient, la_code: str, upn: str, trigger: str) -> str:
    return uuid5_text(ALERT_NAMESPACE, f"{rule}|{recipient}|{la_code}|{upn}|{trigger}")


def case_id_for(upn: str, removal: Removal) -> str:
    return uuid5_text(CASE_NAMESPACE, f"{upn}|{removal.school_urn}|{removal.effective_date.isoformat()}")


def referral_case_id(referral_id: str) -> str:
    """The id of a case a referral opens: the referral id is unique, so it alone names the case."""
    return uuid5_text(CASE_NAMESPACE, f"referral|{referral_id}")


def roll_trigger(school_urn: str, effective_date: date) -> str:
    return f"{school_urn}|{effective_date.isoformat()}"


class Target(Struct, frozen=True, gc=False):
    recipient: Recipient
    la_code: str


class Decision:
    """Collects the alerts of one record and the case changes they imply."""

    def __init__(self, state: ChildState) -> None:
        self.state = state
        self.alerts: list[Alert] = []

    def child(self) -> AlertChild:
        if self.state.child is None:
            raise ValueError("an alert needs the child's details, which arrive with a roll event")
        return self.state.child

    def emit(
        self,
        rule: Rule,
        targets: Iterable[Target],
        severity: Severity,
        *,
        school_urn: str | None,
        raised_on: date,
        reason: str,
        trigger: str,
        trigger_ids: tuple[str, ...],
        case_id: str | None = None,
        named: bool = True,
        referral_id: str | None = None,
    ) -> None:
        """`named=False` for the attendance and referral rules, which may know a child from registers alone,
        or from a referral that gives no date of birth. The alert id takes the state's key, which is the
        referral id for a referral without a UPN, as design.md's Guarantees say."""
        child = self.child() if named else self.state.child
        upn = None if self.state.by_referral else self.state.upn
        for target in targets:
            self.alerts.append(
                Alert(
                    alert_id=alert_id(rule, target.recipient, target.la_code, self.state.upn, trigger),
                    rule=rule,
                    recipient=target.recipient,
                    la_code=target.la_code,
                    severity=severity,
                    upn=upn,
                    child=child,
                    school_urn=school_urn,
                    raised_on=raised_on,
                    reason=reason,
                    trigger_event_ids=trigger_ids,
                    case_id=case_id,
                    referral_id=referral_id,
                )
            )

    def open_or_join_case(self, rule: Rule, removal: Removal, targets: list[Target], on: date) -> str:
        """Open the child's case, or add holders to the open one: every alerted CME officer's LA holds it."""
        if not opens_case(rule):
            raise ValueError(f"{rule} does not open a case")
        case = self.state.case
        if case is None:
            case = Case(
                case_id=case_id_for(self.state.upn, removal),
                opened_by=removal,
                opened_on=on,
                opening_rule=rule,
                holders=(),
            )
        return self._hold(case, rule, targets)

    def open_or_join_referral_case(self, referral: CMEReferral, targets: list[Target]) -> str:
        """A referral's case: the child's open one joined, else a new one opened by the referral (for a
        referral without a UPN, always a new one: its state holds nothing else)."""
        case = self.state.case
        if case is None:
            case = Case(
                case_id=referral_case_id(referral.referral_id),
                opened_by=None,
                opened_on=referral.received_on,
                opening_rule=Rule.REFERRAL_NOT_ON_ROLL,
                holders=(),
                referral_id=referral.referral_id,
            )
        return self._hold(case, Rule.REFERRAL_NOT_ON_ROLL, targets)

    def _hold(self, case: Case, rule: Rule, targets: list[Target]) -> str:
        """Every alerted CME officer's LA holds the case; a SOCIAL_CARE alert counts as its social care alert."""
        officer_las = [t.la_code for t in targets if holds_case(rule, t.recipient)]
        social_care_las = [t.la_code for t in targets if t.recipient is Recipient.SOCIAL_CARE]
        case = replace(
            case,
            holders=merge_las(case.holders, officer_las),
            social_care_alerted=merge_las(case.social_care_alerted, social_care_las),
        )
        self.state = replace(self.state, case=case)
        return case.case_id

    def outcome(self, new_due_dates: tuple[date, ...] = ()) -> Outcome:
        return Outcome(self.state, tuple(self.alerts), new_due_dates)


def merge_las(existing: tuple[str, ...], more: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(existing).union(more)))


def protected_targets(state: ChildState, targets: list[Target]) -> list[Target]:
    """Adds the social care LA's SOCIAL_CARE recipient when the child is protected."""
    if state.status is not None and state.status.protected:
        targets.append(Target(Recipient.SOCIAL_CARE, state.status.la_code))
    return targets


def _officer_targets(school_la: str, destination_la: str | None = None) -> list[Target]:
    targets = [Target(Recipient.CME_OFFICER, school_la)]
    if destination_la and destination_la != school_la:
        targets.append(Target(Recipient.CME_OFFICER, destination_la))
    return targets


# --- roll events -------------------------------------------------------------------------------------------


def apply_roll_event(state: ChildState, event: RollEvent, config: RuleConfig) -> Outcome:
    if event.event_id in state.seen_ids:
        return Outcome(state, applied=False)
    seen = state.seen_ids | {event.event_id}
    if state.has_roll_change(event.event_type, event.school.urn, event.effective_date):
        # A resend under a new event id: remember the id, change nothing else.
        return Outcome(replace(state, seen_ids=seen), applied=False)
    entry = RollEntry(
        event_type=event.event_type,
        school_urn=event.school.urn,
        effective_date=event.effective_date,
        seq=len(state.rolls),
        event_id=event.event_id,
        school_la=event.school.la_code,
    )
    known, given = state.child, event.child
    child = (
        known
        if known is not None
        and (known.forename, known.surname, known.date_of_birth)
        == (given.forename, given.surname, given.date_of_birth)
        else AlertChild(given.forename, given.surname, given.date_of_birth)
    )
    state = replace(state, child=child, rolls=(*state.rolls, entry), seen_ids=seen)
    if event.event_type is EventType.ADDED:
        return _apply_added(state, event, config)
    return _apply_removed(state, event, config)


def _apply_added(state: ChildState, event: RollEvent, config: RuleConfig) -> Outcome:
    decision = Decision(state)
    case = decision.state.case
    if case is None:
        return decision.outcome()
    opening = case.opened_by
    state = decision.state
    # A case a referral opened has no removal to date the ADDED against: any ADDED finds the child.
    located = opening is None or event.effective_date >= opening.effective_date
    if not located and opening is not None and event.school.urn != opening.school_urn:
        calendar = config.calendar_for(opening.school_la)
        lengths = config.lengths_for(opening.school_la)
        located = event.effective_date >= calendar.nth_school_day_before(
            opening.effective_date, lengths.transition_before
        )
    if not located:
        return decision.outcome()
    targets = [Target(Recipient.CME_OFFICER, la) for la in case.holders]
    targets = protected_targets(state, targets)
    decision.emit(
        Rule.CHILD_LOCATED,
        targets,
        Severity.INFO,
        school_urn=event.school.urn,
        raised_on=event.effective_date,
        reason=wording.child_located(event.school.name, event.school.urn, event.effective_date, case),
        trigger=roll_trigger(event.school.urn, event.effective_date),
        trigger_ids=(event.event_id,),
        case_id=case.case_id,
    )
    decision.state = replace(
        decision.state,
        case=None,
        deadlines=removal_checks(decision.state.deadlines),
        closed_case_ids=(*decision.state.closed_case_ids, case.case_id, *case.linked),
    )
    return decision.outcome()


def removal_checks(deadlines: tuple[Deadline, ...]) -> tuple[Deadline, ...]:
    """The deadlines that outlive the child's case: whether a register supports a removal does not depend on
    where the child is now."""
    return tuple(d for d in deadlines if d.rule is Rule.ABSENCE_REMOVAL_UNSUPPORTED)


def _apply_removed(state: ChildState, event: RollEvent, config: RuleConfig) -> Outcome:
    ground = event.ground
    if ground is None:
        raise ValueError("a REMOVED roll event needs a ground; validate records before applying them")
    school = event.school
    school_la = school.la_code
    destination = event.destination
    kind = destination.kind if destination else None
    destination_la = destination.destination_la if destination else None
    removal = Removal(
        event_id=event.event_id,
        school_urn=school.urn,
        school_name=school.name,
        school_la=school_la,
        effective_date=event.effective_date,
        ground=ground,
        destination_la=destination_la,
    )
    calendar = config.calendar_for(school_la)
    lengths = config.lengths_for(school_la)
    removed_on = event.effective_date
    trigger = roll_trigger(school.urn, removed_on)
    trigger_ids = (event.event_id,)
    protected = state.protected
    decision = Decision(state)

    def emit(rule: Rule, targets: list[Target], severity: Severity, reason: str, case_id: str | None = None) -> None:
        decision.emit(
            rule, targets, severity, school_urn=school.urn, raised_on=removed_on, reason=reason,
            trigger=trigger, trigger_ids=trigger_ids, case_id=case_id,
        )

    transition = event.standard_transition
    unsafe_kinds = UNSAFE_FOR_PROTECTED if protected else UNSAFE_DESTINATIONS
    if not transition and ground in MISSING_GROUNDS and kind in unsafe_kinds:
        earliest = calendar.nth_school_day_before(removed_on, lengths.transition_before)
        elsewhere = [
            e for e in state.on_roll_schools() if e.school_urn != school.urn and e.effective_date >= earliest
        ]
        if not elsewhere:
            targets = protected_targets(state, [Target(Recipient.CME_OFFICER, school_la)])
            case_id = decision.open_or_join_case(Rule.MISSING_NO_DESTINATION, removal, targets, removed_on)
            severity = Severity.IMMEDIATE if protected else Severity.HIGH
            emit(Rule.MISSING_NO_DESTINATION, targets, severity,
                 wording.missing_no_destination(removal, kind, protected), case_id)

    if not transition and ground not in NO_MOVE_GROUNDS and destination_la and destination_la != school_la:
        severity = Severity.MEDIUM if kind is DestinationKind.OTHER_LA else Severity.INFO
        emit(Rule.MOVED_OUT_OF_AREA, [Target(Recipient.CME_OFFICER, destination_la)], severity,
             wording.moved_out_of_area(removal, kind))

    if ground is Ground.F_HOME_EDUCATION:
        emit(Rule.EHE_NOTIFIED, [Target(Recipient.EHE_SERVICE, school_la)], Severity.INFO,
             wording.ehe_notified(removal))
        attendance_order = state.status is not None and state.status.school_attendance_order
        if school.special or attendance_order:
            emit(Rule.EHE_CONSENT_REQUIRED,
                 [Target(Recipient.EHE_SERVICE, school_la), Target(Recipient.CME_OFFICER, school_la)],
                 Severity.HIGH, wording.ehe_consent_required(removal, school.special, attendance_order))
        if protected and state.status is not None:
            emit(Rule.EHE_PROTECTED_CHILD, [Target(Recipient.SOCIAL_CARE, state.status.la_code)],
                 Severity.IMMEDIATE, wording.ehe_protected_child(removal))

    deadlines: list[Deadline] = []
    if not transition and ground in TRANSITION_GROUNDS and kind in (DestinationKind.SCHOOL, DestinationKind.OTHER_LA):
        deadlines.append(Deadline(
            Rule.TRANSITION_NOT_COMPLETED, removal,
            calendar.nth_school_day_before(removed_on, lengths.transition_before),
            calendar.nth_school_day_after(removed_on, lengths.transition_after),
        ))
    if transition and ground not in NO_TRANSFER_GROUNDS and kind is not DestinationKind.ABROAD:
        deadlines.append(Deadline(
            Rule.TRANSFER_NOT_STARTED, removal,
            calendar.nth_school_day_before(removed_on, lengths.transition_before),
            calendar.nth_school_day_after(removed_on, lengths.transition_after),
        ))
    if ground is Ground.F_HOME_EDUCATION:
        deadlines.append(Deadline(
            Rule.EHE_NOT_CONFIRMED, removal,
            calendar.nth_school_day_before(removed_on, lengths.ehe_notice_before),
            calendar.nth_school_day_after(removed_on, lengths.ehe_notice_after),
        ))
    if ground is Ground.O_PERMANENTLY_EXCLUDED:
        deadlines.append(Deadline(
            Rule.EXCLUDED_NO_PROVISION, removal, removed_on,
            calendar.nth_school_day_after(removed_on, lengths.exclusion_after),
        ))
    if ground in attendance.REMOVAL_CHECK_GROUNDS:
        # Checked once the registers up to the removal have had time to arrive.
        deadlines.append(Deadline(
            Rule.ABSENCE_REMOVAL_UNSUPPORTED, removal, removed_on,
            calendar.nth_school_day_after(removed_on, lengths.removal_check_days),
        ))
    if not deadlines:
        return decision.outcome()
    decision.state = replace(decision.state, deadlines=(*decision.state.deadlines, *deadlines))
    return decision.outcome(tuple([d.due for d in deadlines]))


# --- deadlines ---------------------------------------------------------------------------------------------


def check_deadlines(
    state: ChildState,
    business_date: date,
    config: RuleConfig,
    unsupported: Callable[[Removal], tuple[int, bool] | None] = lambda removal: None,
) -> Outcome:
    """Evaluates every deadline whose window closed before the business date; keeps the others.

    `unsupported` gives the absence run behind a removal the register does not support (from the child's
    attendance), or None."""
    due = [d for d in state.deadlines if d.due < business_date]
    if not due:
        return Outcome(state)
    remaining = tuple(d for d in state.deadlines if d.due >= business_date)
    decision = Decision(replace(state, deadlines=remaining))
    for deadline in sorted(due, key=lambda d: (d.due, d.removal.effective_date, d.rule)):
        if deadline.rule is Rule.ABSENCE_REMOVAL_UNSUPPORTED:
            _check_removal(decision, deadline, business_date, config, unsupported(deadline.removal))
        elif _deadline_met(decision.state, deadline):
            _fire_deadline(decision, deadline, business_date)
    return decision.outcome()


def _deadline_met(state: ChildState, deadline: Deadline) -> bool:
    """True when the child has not turned up as the rule expects, so the alert must go out."""
    removal = deadline.removal
    additions = state.additions()
    if deadline.rule in (Rule.TRANSITION_NOT_COMPLETED, Rule.TRANSFER_NOT_STARTED):
        return not any(
            a.school_urn != removal.school_urn and deadline.window_start <= a.effective_date <= deadline.due
            for a in additions
        )
    if deadline.rule is Rule.EHE_NOT_CONFIRMED:
        written = any(
            n.method is EHEMethod.WRITTEN and deadline.window_start <= n.received_on <= deadline.due
            for n in state.notices
        )
        added_later = any(a.effective_date > removal.effective_date for a in additions)
        return not written and not added_later
    if deadline.rule is Rule.EXCLUDED_NO_PROVISION:
        return not any(deadline.window_start <= a.effective_date <= deadline.due for a in additions)
    raise ValueError(f"{deadline.rule} is not a deadline rule")


_DEADLINE_SEVERITY = {
    Rule.TRANSITION_NOT_COMPLETED: Severity.HIGH,
    Rule.TRANSFER_NOT_STARTED: Severity.MEDIUM,
    Rule.EHE_NOT_CONFIRMED: Severity.MEDIUM,
    Rule.EXCLUDED_NO_PROVISION: Severity.HIGH,
}


def _fire_deadline(decision: Decision, deadline: Deadline, business_date: date) -> None:
    removal = deadline.removal
    state = decision.state
    if deadline.rule in (Rule.TRANSITION_NOT_COMPLETED, Rule.TRANSFER_NOT_STARTED):
        targets = _officer_targets(removal.school_la, removal.destination_la)
    else:
        targets = _officer_targets(removal.school_la)
    targets = protected_targets(state, targets)
    protected = state.protected
    case_id = decision.open_or_join_case(deadline.rule, removal, targets, business_date)
    decision.emit(
        deadline.rule,
        targets,
        Severity.IMMEDIATE if protected else _DEADLINE_SEVERITY[deadline.rule],
        school_urn=removal.school_urn,
        raised_on=business_date,
        reason=wording.deadline_passed(deadline, protected),
        trigger=roll_trigger(removal.school_urn, removal.effective_date),
        trigger_ids=(removal.event_id,),
        case_id=case_id,
    )


def _check_removal(
    decision: Decision,
    deadline: Deadline,
    business_date: date,
    config: RuleConfig,
    unsupported: tuple[int, bool] | None,
) -> None:
    removal = deadline.removal
    if unsupported is None:
        return
    run, after_leave = unsupported
    lengths = config.lengths_for(removal.school_la)
    needed = (
        lengths.absence_removal_days if removal.ground is Ground.I_CONTINUOUS_ABSENCE else lengths.leave_return_days
    )
    case = decision.state.case
    decision.emit(
        Rule.ABSENCE_REMOVAL_UNSUPPORTED,
        [Target(Recipient.CME_OFFICER, removal.school_la)],
        Severity.HIGH,
        school_urn=removal.school_urn,
        raised_on=business_date,
        reason=wording.absence_removal_unsupported(removal, run, needed, after_leave),
        trigger=roll_trigger(removal.school_urn, removal.effective_date),
        trigger_ids=(removal.event_id,),
        case_id=case.case_id if case is not None else None,
        named=False,
    )


# --- attendance registers ----------------------------------------------------------------------------------


def attendance_alerts(
    state: ChildState, decided: Iterable[attendance.AttendanceAlert], trigger_ids: tuple[str, ...]
) -> tuple[Alert, ...]:
    """The alerts of what the attendance rules decided, addressed by the child's state: the school LA's CME
    officer, and social care if the child is protected (then IMMEDIATE for everyone)."""
    decision = Decision(state)
    protected = state.protected
    for alert in decided:
        targets = protected_targets(state, [Target(Recipient.CME_OFFICER, alert.school_la)])
        decision.emit(
            alert.rule,
            targets,
            Severity.IMMEDIATE if protected else Severity.MEDIUM,
            school_urn=alert.school_urn,
            raised_on=alert.raised_on,
            reason=alert.reason + (wording.PROTECTED_NOTE if protected else ""),
            trigger=alert.trigger,
            trigger_ids=trigger_ids,
            named=False,
        )
    return tuple(decision.alerts)


# --- EHE notifications and safeguarding status ------------------------------------------------------------


def apply_ehe_notification(state: ChildState, notice: EHENotification, config: RuleConfig) -> Outcome:
    if notice.notification_id in state.seen_ids:
        return Outcome(state, applied=False)
    entry = NoticeEntry(notice.notification_id, notice.la_code, notice.method, notice.received_on)
    state = replace(
        state, notices=(*state.notices, entry), seen_ids=state.seen_ids | {notice.notification_id}
    )
    decision = Decision(state)
    if notice.method is EHEMethod.ORAL:
        on_roll = state.on_roll_schools()
        if on_roll and state.child is not None:
            school_urn = notice.school_urn or on_roll[0].school_urn
            decision.emit(
                Rule.ORAL_EHE_INDICATION,
                [Target(Recipient.EHE_SERVICE, notice.la_code)],
                Severity.INFO,
                school_urn=school_urn,
                raised_on=notice.received_on,
                reason=wording.oral_indication(school_urn, notice.received_on),
                trigger=notice.notification_id,
                trigger_ids=(notice.notification_id,),
            )
    return decision.outcome()


def apply_status(state: ChildState, status: SafeguardingStatus, config: RuleConfig) -> Outcome:
    entry = StatusEntry(
        status.la_code, status.child_protection_plan, status.looked_after, status.school_attendance_order
    )
    state = replace(state, status=entry)
    decision = Decision(state)
    case = state.case
    if entry.protected and case is not None and entry.la_code not in case.social_care_alerted:
        decision.emit(
            Rule.OPEN_CASE_PROTECTED,
            [Target(Recipient.SOCIAL_CARE, entry.la_code)],
            Severity.IMMEDIATE,
            school_urn=case.opened_by.school_urn if case.opened_by is not None else None,
            raised_on=status.updated_at.astimezone(LONDON).date(),
            reason=wording.open_case_protected(case, entry),
            trigger=case.case_id,
            trigger_ids=_case_trigger_ids(case),
            case_id=case.case_id,
            # A case a referral opened (or an officer linked) may be all that is known of the child, and a
            # referral without a date of birth names no child: the alert goes out without one.
            named=False,
        )
        decision.state = replace(
            state, case=replace(case, social_care_alerted=merge_las(case.social_care_alerted, [entry.la_code]))
        )
    return decision.outcome()


def _case_trigger_ids(case: Case) -> tuple[str, ...]:
    """The record that opened a case: its removal, else its referral."""
    if case.opened_by is not None:
        return (case.opened_by.event_id,)
    return (case.referral_id,) if case.referral_id is not None else ()
