"""Feeding the register from Kafka: the alert topics, case.actions and cme.referrals, recorded batch by batch."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from processors.records import Alert, CaseAction, CMEReferral
from processors.validation import validate
from schemas.codec import AvroCodec
from schemas.errors import CodecError
from sinks.register.writer import BatchResult, RegisterItem, RegisterWriter

if TYPE_CHECKING:
    from config.settings import Settings
    from sinks.metrics import SyncRecorder

log = logging.getLogger(__name__)
#: How often the consumer looks for topics it does not read yet (a new LA's alert topic), seconds.
TOPIC_REFRESH_SECONDS = 5.0


def alert_topic_regex(topic_prefix: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(topic_prefix)}la\.\d{{3}}\.alerts\.[a-z-]+$")


@dataclass
class FeedStats:
    messages: int = 0
    alerts_new: int = 0
    alerts_duplicate: int = 0
    actions: int = 0
    referrals: int = 0
    cases_closed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def add(self, result: BatchResult) -> None:
        self.alerts_new += result.alerts_new
        self.alerts_duplicate += result.alerts_duplicate
        self.cases_closed += result.cases_closed


class RegisterFeed:
    """Turns a batch of consumed messages (alert topics, case.actions, cme.referrals) into one register
    transaction.

    Kafka-free, so the consumer loop stays a thin shell: decode, validate, record. A message that cannot be
    decoded, or a case action that fails validation, is skipped and counted by error code; it is already on
    its topic for anyone to inspect, and holding the register back for it would stall every LA.
    """

    def __init__(
        self,
        register: RegisterWriter,
        codec: AvroCodec,
        topic_prefix: str,
        case_actions_topic: str,
        webhook_las: Iterable[str] = (),
        referrals_topic: str | None = None,
    ) -> None:
        self.register = register
        self.codec = codec
        self.alert_topics = alert_topic_regex(topic_prefix)
        self.case_actions_topic = case_actions_topic
        self.referrals_topic = referrals_topic
        self.webhook_las = frozenset(webhook_las)
        self.stats = FeedStats()

    def handles(self, topic: str) -> bool:
        return (
            topic in (self.case_actions_topic, self.referrals_topic) or self.alert_topics.match(topic) is not None
        )

    def feed(self, messages: Sequence[tuple[str, int, int, bytes]]) -> BatchResult:
        """Records (topic, partition, offset, value) messages in one transaction."""
        batch: list[RegisterItem] = []
        for topic, partition, offset, value in messages:
            self.stats.messages += 1
            try:
                if topic == self.referrals_topic:
                    referral = self.codec.decode(value, CMEReferral)
                    problems = validate(referral)
                    if problems:
                        self._skip(str(problems[0].code), topic, partition, offset)
                        continue
                    batch.append(referral)
                    self.stats.referrals += 1
                elif topic == self.case_actions_topic:
                    action = self.codec.decode(value, CaseAction)
                    problems = validate(action)
                    if problems:
                        self._skip(str(problems[0].code), topic, partition, offset)
                        continue
                    batch.append(action)
                    self.stats.actions += 1
                else:
                    batch.append(self.codec.decode(value, Alert))
            except CodecError as error:
                self._skip(str(error.code), topic, partition, offset)
        if not batch:
            return BatchResult()
        result = self.register.record(batch, self.webhook_las)
        self.stats.add(result)
        return result

    def _skip(self, code: str, topic: str, partition: int, offset: int) -> None:
        log.warning("register skipped %s[%d]@%d: %s", topic, partition, offset, code)
        self.stats.skipped[code] = self.stats.skipped.get(code, 0) + 1


@dataclass
class SyncOutcome:
    caught_up: bool
    batches: int
    stats: FeedStats


def lag_by_topic(ends: Mapping[Any, int], positions: Mapping[Any, int]) -> dict[str, int]:
    """Records not yet stored per topic: each partition's end offset less the position reached, summed."""
    lag: dict[str, int] = {}
    for tp, end in ends.items():
        lag[tp.topic] = lag.get(tp.topic, 0) + max(end - positions.get(tp, 0), 0)
    return lag


def consume_into_register(
    settings: Settings, once: bool, timeout: float, recorder: SyncRecorder | None = None
) -> SyncOutcome:
    """The sync loop: poll a batch, record it in one transaction, commit the offsets. Partitions are assigned
    by hand (topics matched by name, re-listed every few seconds so a new LA's topic is picked up) and offsets
    committed under the register's group. Raises RegisterNotReady if the register's schema is not this
    release's."""
    from kafka import KafkaConsumer, TopicPartition

    from config.kafka import client_options
    from processors.records import CASE_ACTIONS, CME_REFERRALS
    from sinks.register.store import open_register

    register = open_register(settings.database_url)
    feed = RegisterFeed(
        register, AvroCodec(), settings.topic_prefix, settings.topic(CASE_ACTIONS),
        webhook_las=settings.webhooks.keys(), referrals_topic=settings.topic(CME_REFERRALS),
    )
    consumer = KafkaConsumer(
        group_id=settings.register_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        **client_options(settings),
    )
    assigned: set[TopicPartition] = set()
    batches = 0
    started = time.monotonic()
    next_refresh = 0.0
    try:
        while True:
            if time.monotonic() >= next_refresh:
                wanted = {
                    TopicPartition(topic, partition)
                    for topic in consumer.topics()
                    if feed.handles(topic)
                    for partition in consumer.partitions_for_topic(topic) or ()
                }
                if wanted != assigned:
                    consumer.assign(sorted(wanted))
                    assigned = wanted
                next_refresh = time.monotonic() + TOPIC_REFRESH_SECONDS
                if recorder is not None:
                    ends = consumer.end_offsets(list(assigned)) if assigned else {}
                    recorder.show_lag(lag_by_topic(ends, {tp: consumer.position(tp) for tp in ends}))
            polled = consumer.poll(timeout_ms=500, max_records=settings.register_batch_size) if assigned else {}
            messages = [
                (record.topic, record.partition, record.offset, record.value)
                for records in polled.values()
                for record in records
            ]
            if messages:
                feed.feed(messages)
                consumer.commit()
                batches += 1
                if recorder is not None:
                    recorder.batch_stored(time.time())
                continue
            if once:
                if _caught_up(consumer, assigned):
                    return SyncOutcome(True, batches, feed.stats)
                if time.monotonic() - started > timeout:
                    return SyncOutcome(False, batches, feed.stats)
            elif not assigned:
                time.sleep(1.0)
    except KeyboardInterrupt:
        return SyncOutcome(False, batches, feed.stats)
    finally:
        consumer.close()
        register.close()


def _caught_up(consumer: Any, assigned: set[Any]) -> bool:
    if not assigned:
        return True
    ends = consumer.end_offsets(list(assigned))
    return all(consumer.position(tp) >= ends[tp] for tp in assigned)
