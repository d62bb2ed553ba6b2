"""Officers' case work as events: closing, enquiries, assignment and links, checked against the register, then
published to case.actions."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from processors.identifiers import upn_problems
from processors.records import CaseAction, CaseActionType, CaseEnquiry, CloseReason, EnquiryKind
from processors.validation import validate
from sinks.register.queries import CaseSummary
from sinks.register.schema import CaseStatus

if TYPE_CHECKING:
    from config.settings import Settings
    from schemas.mapping import AvroRecord

#: Longest enquiry note and outcome, in characters (the CaseAction contract's bound on `reason`).
MAX_NOTE = 2000


class ActionRefused(Exception):
    """The case action cannot be taken: no such case, a case in the wrong state, or the action is invalid."""


class CloseRefused(ActionRefused):
    """The case cannot be closed: it does not exist, is closed already, or the action is invalid."""


def _now() -> datetime:
    return datetime.now(tz=UTC)


def _words(value: str, option: str) -> str:
    value = value.strip()
    if not value:
        raise ActionRefused(f"{option} must say something: the register records who did what on a case and why")
    return value


def _open_case(summary: CaseSummary | None, case_id: str, doing: str) -> CaseSummary:
    if summary is None:
        raise ActionRefused(f"cannot {doing} case {case_id}: no such case in the register")
    if summary.status is not CaseStatus.OPEN:
        raise ActionRefused(f"cannot {doing} case {case_id}: it is closed")
    return summary


def _checked(action: CaseAction) -> CaseAction:
    problems = validate(action)
    if problems:
        raise ActionRefused("; ".join(f"{problem.code}: {problem.message}" for problem in problems))
    return action


def _holder(summary: CaseSummary, la_code: str | None) -> str | None:
    """The acting officer's LA: the one given, else the case's only holder."""
    if la_code is not None:
        return la_code
    return summary.holders[0] if len(summary.holders) == 1 else None


def note_action(
    summary: CaseSummary | None, case_id: str, kind: EnquiryKind, outcome: str, note: str, by: str,
    la_code: str | None = None, now: Callable[[], datetime] = _now,
) -> CaseAction:
    """A NOTE action recording one reasonable enquiry on a case, open or closed (a late finding still counts)."""
    outcome, note, by = _words(outcome, "--outcome"), _words(note, "--note"), _words(by, "--by")
    if len(note) > MAX_NOTE or len(outcome) > MAX_NOTE:
        raise ActionRefused(f"--note and --outcome take at most {MAX_NOTE:,} characters")
    if summary is None:
        raise ActionRefused(f"cannot note an enquiry on case {case_id}: no such case in the register")
    return _checked(CaseAction(
        action_id=str(uuid.uuid4()), upn=summary.upn, case_id=summary.case_id, action=CaseActionType.NOTE,
        reason=note, by=by, at=now(), referral_id=summary.referral_id, enquiry=CaseEnquiry(kind, outcome),
        la_code=_holder(summary, la_code),
    ))


def assign_action(
    summary: CaseSummary | None, case_id: str, to: str, by: str, la_code: str | None = None,
    now: Callable[[], datetime] = _now,
) -> CaseAction:
    """An ASSIGN action giving an open case to an officer."""
    to, by = _words(to, "--to"), _words(by, "--by")
    summary = _open_case(summary, case_id, "assign")
    return _checked(CaseAction(
        action_id=str(uuid.uuid4()), upn=summary.upn, case_id=summary.case_id, action=CaseActionType.ASSIGN,
        reason=f"assigned to {to}", by=by, at=now(), referral_id=summary.referral_id, assignee=to,
        la_code=_holder(summary, la_code),
    ))


def link_action(
    summary: CaseSummary | None, case_id: str, upn: str, by: str, la_code: str | None = None,
    now: Callable[[], datetime] = _now,
) -> CaseAction:
    """A LINK action attaching an open referral case without a UPN to a child's UPN."""
    by = _words(by, "--by")
    upn = upn.strip().upper()
    problems = upn_problems(upn, "UPN")
    if problems:
        raise ActionRefused(f"cannot link case {case_id}: {problems[0].message}")
    summary = _open_case(summary, case_id, "link")
    if summary.upn is not None:
        raise ActionRefused(f"cannot link case {case_id}: it is already the case of UPN {summary.upn}")
    if summary.referral_id is None:
        raise ActionRefused(f"cannot link case {case_id}: only a case opened by a referral without a UPN is linked")
    holder = _holder(summary, la_code)
    if holder is None:
        raise ActionRefused(f"cannot link case {case_id}: say which holding LA links it with --la")
    return _checked(CaseAction(
        action_id=str(uuid.uuid4()), upn=upn, case_id=summary.case_id, action=CaseActionType.LINK,
        reason=f"linked to UPN {upn}", by=by, at=now(), referral_id=summary.referral_id, la_code=holder,
    ))


def closing_words(reason: str, by: str) -> tuple[str, str]:
    """The reason and closer, stripped; CloseRefused if either is empty."""
    reason, by = reason.strip(), by.strip()
    if not reason or not by:
        raise CloseRefused("--reason and --by must say something: the register records who closed a case and why")
    return reason, by


def closing_action(
    summary: CaseSummary | None,
    case_id: str,
    reason: str,
    by: str,
    now: Callable[[], datetime] = _now,
    close_reason: CloseReason = CloseReason.OTHER,
    la_code: str | None = None,
) -> CaseAction:
    """The CLOSE action for an open case, or CloseRefused with a message naming the case. `reason` is the
    officer's note, `close_reason` the code from the fixed list (OTHER when only words are given)."""
    reason, by = closing_words(reason, by)
    if summary is None:
        raise CloseRefused(f"cannot close case {case_id}: no such case in the register")
    if summary.status is not CaseStatus.OPEN:
        closed = f" on {summary.closed_on.isoformat()}" if summary.closed_on else ""
        who = f" by {summary.closed_by}" if summary.closed_by else ""
        why = f" ({summary.closing_reason})" if summary.closing_reason else ""
        raise CloseRefused(f"cannot close case {case_id}: it is already closed{closed}{who}{why}")
    action = CaseAction(
        action_id=str(uuid.uuid4()),
        upn=summary.upn,
        case_id=summary.case_id,
        action=CaseActionType.CLOSE,
        reason=reason,
        by=by,
        at=now(),
        referral_id=summary.referral_id,
        close_reason=close_reason,
        la_code=_holder(summary, la_code),
    )
    problems = validate(action)
    if problems:
        raise CloseRefused("; ".join(f"{problem.code}: {problem.message}" for problem in problems))
    return action


def publish_case_action(settings: Settings, action: CaseAction) -> str:
    """Sends the action to case.actions keyed by `action.key` (UPN, else referral id), Avro, acks=all."""
    from processors.records import CASE_ACTIONS

    return publish_record(settings, settings.topic(CASE_ACTIONS), action.key, action)


def publish_record(settings: Settings, topic: str, key: str, record: AvroRecord) -> str:
    """Sends one record to an input topic, Avro-encoded, acks=all; creates the topic with the input topics'
    partition count if it is missing, since it must stay co-partitioned with them."""
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    from config.kafka import client_options
    from schemas.codec import AvroCodec

    options = client_options(settings)
    admin = KafkaAdminClient(**options)
    try:
        if topic not in admin.list_topics():
            admin.create_topics(
                [NewTopic(topic, settings.topic_partitions, settings.topic_replication_factor)]
            )
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()
    producer = KafkaProducer(acks="all", retries=10, **options)
    try:
        producer.send(topic, key=key.encode(), value=AvroCodec().encode(record)).get(timeout=30)
    finally:
        producer.close()
    return topic
