"""Closing a case as an event: checked against the register, then published to case.actions."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from processors.records import CaseAction, CaseActionType
from processors.validation import validate
from sinks.register.queries import CaseSummary
from sinks.register.schema import CaseStatus

if TYPE_CHECKING:
    from config.settings import Settings


class CloseRefused(Exception):
    """The case cannot be closed: it does not exist, is closed already, or the action is invalid."""


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
    now: Callable[[], datetime] = lambda: datetime.now(tz=UTC),
) -> CaseAction:
    """The CLOSE action for an open case, or CloseRefused with a message naming the case."""
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
    )
    problems = validate(action)
    if problems:
        raise CloseRefused("; ".join(f"{problem.code}: {problem.message}" for problem in problems))
    return action


def publish_case_action(settings: Settings, action: CaseAction) -> str:
    """Sends the action to case.actions keyed by UPN, Avro-encoded, acks=all; creates the topic with the input
    topics' partition count if it is missing, since it must stay co-partitioned with them."""
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    from config.kafka import client_options
    from processors.records import CASE_ACTIONS
    from schemas.codec import AvroCodec

    topic = settings.topic(CASE_ACTIONS)
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
        producer.send(topic, key=action.key.encode(), value=AvroCodec().encode(action)).get(timeout=30)
    finally:
        producer.close()
    return topic
