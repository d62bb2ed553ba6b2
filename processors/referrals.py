"""Referrals and officers' case work: the referral rules, and what case actions do to a state."""

from __future__ import annotations

from msgspec.structs import replace

from processors import wording
from processors.cases import action_changes_state, action_closes_case
from processors.config import RuleConfig
from processors.records import (
    AlertChild,
    CaseAction,
    CaseActionType,
    CMEReferral,
    Recipient,
    ReferralConcern,
    Rule,
    Severity,
)
from processors.rules import LONDON, Decision, Outcome, Target, merge_las, protected_targets, removal_checks
from processors.state import Case, ChildState

# --- officers' case actions --------------------------------------------------------------------------------


def apply_case_action(state: ChildState, action: CaseAction, config: RuleConfig) -> Outcome:
    """Closing the open case ends its deadlines, so a later ADDED no longer raises CHILD_LOCATED for it.
    An action for a case that is not the child's open one changes nothing (it was closed already).

    Notes and assignments are the register's to record: the worker applies them and changes nothing, not
    even the ids it remembers (a busy case would otherwise fill them). A LINK, keyed by the child's UPN,
    makes a referral's case the child's open case, or adds its LA to the open one (docs/decisions/015)."""
    if not action_changes_state(action):
        return Outcome(state)
    if action.action_id in state.seen_ids:
        return Outcome(state, applied=False)
    seen = state.seen_ids | {action.action_id}
    if action.action is CaseActionType.LINK:
        return _apply_link(state, action, seen)
    case = state.case
    if not action_closes_case(action) or case is None:
        return Outcome(replace(state, seen_ids=seen), applied=False)
    if action.case_id in case.linked:
        # A linked referral's case closed on its own: the child's case goes on.
        linked = tuple(c for c in case.linked if c != action.case_id)
        return Outcome(replace(
            state, case=replace(case, linked=linked), seen_ids=seen,
            closed_case_ids=(*state.closed_case_ids, action.case_id),
        ))
    if case.case_id != action.case_id:
        return Outcome(replace(state, seen_ids=seen), applied=False)
    return Outcome(
        replace(
            state,
            case=None,
            deadlines=removal_checks(state.deadlines),
            seen_ids=seen,
            closed_case_ids=(*state.closed_case_ids, case.case_id, *case.linked),
        )
    )


def _apply_link(state: ChildState, action: CaseAction, seen: frozenset[str]) -> Outcome:
    """The referral's case becomes the child's open case, held by the LA that linked it; with a case already
    open, that LA joins its holders and the referral's case ends with it."""
    case = state.case
    holder = action.la_code
    if (
        holder is None
        or action.case_id in state.closed_case_ids
        or (case is not None and (case.case_id == action.case_id or action.case_id in case.linked))
    ):
        return Outcome(replace(state, seen_ids=seen), applied=False)
    if case is None:
        case = Case(
            case_id=action.case_id,
            opened_by=None,
            opened_on=action.at.astimezone(LONDON).date(),
            opening_rule=Rule.REFERRAL_NOT_ON_ROLL,
            holders=(holder,),
            referral_id=action.referral_id,
        )
    else:
        case = replace(case, holders=merge_las(case.holders, [holder]), linked=(*case.linked, action.case_id))
    return Outcome(replace(state, case=case, seen_ids=seen))


# --- referrals ---------------------------------------------------------------------------------------------


def apply_referral(state: ChildState, referral: CMEReferral, config: RuleConfig) -> Outcome:
    """A practitioner's or the public's referral: REFERRAL_NOT_ON_ROLL (opening or joining a case) when the
    child is on roll nowhere, or has no UPN to tell; else REFERRAL_ON_ROLL to the LAs involved."""
    if referral.referral_id in state.seen_ids:
        return Outcome(state, applied=False)
    given = referral.child
    child = state.child
    if child is None and given.date_of_birth is not None:
        # What the referrer knows, until a roll event gives the name the school holds.
        child = AlertChild(given.forename, given.surname, given.date_of_birth)
    state = replace(
        state, child=child, seen_ids=state.seen_ids | {referral.referral_id}, by_referral=referral.upn is None
    )
    decision = Decision(state)
    la = referral.la_code
    rid = referral.referral_id
    on_roll = state.on_roll_schools() if referral.upn is not None else []
    if not on_roll:
        protected = state.protected
        targets = [Target(Recipient.CME_OFFICER, la)]
        if referral.concern is ReferralConcern.EDUCATION_UNSUITABLE:
            targets.append(Target(Recipient.EHE_SERVICE, la))
        targets = protected_targets(state, targets)
        case_id = decision.open_or_join_referral_case(referral, targets)
        decision.emit(
            Rule.REFERRAL_NOT_ON_ROLL,
            targets,
            Severity.IMMEDIATE if protected else Severity.HIGH,
            school_urn=None,
            raised_on=referral.received_on,
            reason=wording.referral_not_on_roll(referral, protected, named=state.child is not None),
            trigger=rid,
            trigger_ids=(rid,),
            case_id=case_id,
            named=False,
            referral_id=rid,
        )
        return decision.outcome()
    latest = max(on_roll, key=lambda entry: (entry.effective_date, entry.seq))
    other_las = sorted({entry.school_la for entry in on_roll if entry.school_la and entry.school_la != la})
    decision.emit(
        Rule.REFERRAL_ON_ROLL,
        [Target(Recipient.CME_OFFICER, code) for code in (la, *other_las)],
        Severity.INFO,
        school_urn=latest.school_urn,
        raised_on=referral.received_on,
        reason=wording.referral_on_roll(referral, [entry.school_urn for entry in on_roll], other_las),
        trigger=rid,
        trigger_ids=(rid,),
        named=False,
        referral_id=rid,
    )
    return decision.outcome()
