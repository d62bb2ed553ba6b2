"""What opens, holds and closes a CME case: the one definition the rules and the register share."""

from __future__ import annotations

from processors.records import CaseAction, CaseActionType, Recipient, Rule

#: Rules whose alerts open the child's case, or add holders to the open one (design.md, "Cases").
CASE_OPENING_RULES = frozenset({
    Rule.MISSING_NO_DESTINATION, Rule.TRANSITION_NOT_COMPLETED, Rule.TRANSFER_NOT_STARTED,
    Rule.EHE_NOT_CONFIRMED, Rule.EXCLUDED_NO_PROVISION, Rule.REFERRAL_NOT_ON_ROLL,
})
#: The closing reason of a case that CHILD_LOCATED closed.
CHILD_LOCATED_REASON = "child located"


def opens_case(rule: Rule) -> bool:
    return rule in CASE_OPENING_RULES


def holds_case(rule: Rule, recipient: Recipient) -> bool:
    """Whether an alert of `rule` to `recipient` shows that the recipient's LA holds the case: every LA whose
    CME officer an opening alert goes to holds it, and CHILD_LOCATED goes to every holder's CME officer."""
    return recipient is Recipient.CME_OFFICER and (opens_case(rule) or rule is Rule.CHILD_LOCATED)


def closes_case(rule: Rule) -> bool:
    """CHILD_LOCATED closes the child's open case (and ends its deadlines)."""
    return rule is Rule.CHILD_LOCATED


def action_closes_case(action: CaseAction) -> bool:
    """An officer's CLOSE action closes the case it names, if that case is still open."""
    return action.action is CaseActionType.CLOSE


def action_changes_state(action: CaseAction) -> bool:
    """Closing and linking change what the worker knows of a case; notes and assignments are the register's
    alone, so the worker applies them without touching any state."""
    return action.action in (CaseActionType.CLOSE, CaseActionType.LINK)
