"""Kafka delivery of one input record's writes: state changelogs, alerts (la.<LA>.alerts.<recipient>) and dead
letters (<topic>.dlq), sent together in the record's transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import faust
from faust.exceptions import ProducerSendError
from faust.streams import current_event

from processors.records import Alert, DeadLetter, dead_letter_topic
from schemas.codec import AvroCodec


class _TopicCache:
    """Declares each output topic once (so it gets the configured partitions), then reuses it."""

    def __init__(self, app: faust.App, partitions: int, prefix: str) -> None:
        self.app = app
        self.partitions = partitions
        self.prefix = prefix
        self.topics: dict[str, faust.TopicT] = {}

    async def get(self, name: str) -> faust.TopicT:
        topic = self.topics.get(name)
        if topic is None:
            topic = self.app.topic(
                self.prefix + name, partitions=self.partitions, key_serializer="raw", value_serializer="raw"
            )
            await topic.maybe_declare()
            self.topics[name] = topic
        return topic


@dataclass(frozen=True, slots=True)
class StagedWrite:
    topic: str
    key: bytes | None
    value: bytes | None
    #: None lets the producer's partitioner place the record by its key.
    partition: int | None = None
    #: Called with the record's metadata once the broker has it (a table records its changelog offset).
    on_delivered: Callable[[Any], None] | None = None


class RecordWrites:
    """Every Kafka write that one input record causes (state changelogs, alerts, dead letters), staged while
    the record is applied and then sent together, in order, in that record's transaction.

    Together matters under exactly_once: the writes are sent under one hold of the partition's transaction
    lock, so a commit never falls between a child's new state and the alerts it raised. If it did, a crash
    could commit the state without the alerts, and the replayed record would then be a duplicate that raises
    nothing: a missed alert. Faust's own table writes go through a shared buffer drained in the background,
    which gives no such guarantee and stalls every partition while any one of them commits.
    """

    def __init__(self, app: faust.App) -> None:
        self.app = app
        self.staged: list[StagedWrite] = []

    def stage(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        on_delivered: Callable[[Any], None] | None = None,
    ) -> None:
        self.staged.append(StagedWrite(topic, key, value, partition, on_delivered))

    async def send(self) -> None:
        staged, self.staged = self.staged, []
        if staged:
            await send_with_input(self.app, staged)

    def discard(self) -> None:
        """Drops what is staged: the record failed and will be dead-lettered instead."""
        self.staged = []


async def send_with_input(app: faust.App, writes: list[StagedWrite]) -> None:
    """Sends records as part of processing the input record in hand.

    Under exactly_once they join the transaction that commits that input's offset: Faust's own send picks
    the transaction by the destination's partition, which only works for co-partitioned outputs, so an
    alert topic's record would otherwise go out non-transactionally and be repeated after a crash. Under
    at_least_once it waits for the broker's acknowledgement, so the input is acked only after its output.
    """
    producer: Any = await app.maybe_start_producer()
    event = current_event()
    if app.in_transaction and event is not None:
        tp = event.message.tp
        transactional_id = f"{app.conf.id}-{app.assignor.group_for_topic(tp.topic)}-{tp.partition}"
        driver = producer.producer
        transaction_producer = driver._transaction_producers.get(transactional_id)
        if transaction_producer is None:
            raise ProducerSendError(f"no transactional producer for {transactional_id}; is the partition assigned?")
        async with driver._trn_locks[transactional_id]:
            for write in writes:
                delivery = await transaction_producer.send(
                    write.topic, write.value, key=write.key, partition=write.partition
                )
                if write.on_delivered is not None:
                    delivery.add_done_callback(_reporting_to(write.on_delivered))
        return
    deliveries = [
        await producer.send(write.topic, write.key, write.value, write.partition, None, None) for write in writes
    ]
    for write, delivery in zip(writes, deliveries, strict=True):
        metadata = await delivery
        if write.on_delivered is not None:
            write.on_delivered(metadata)


def _reporting_to(on_delivered: Callable[[Any], None]) -> Callable[[asyncio.Future[Any]], None]:
    def report(delivery: asyncio.Future[Any]) -> None:
        # A failed send fails the transaction's commit, which stops the worker; nothing to record here.
        if not delivery.cancelled() and delivery.exception() is None:
            on_delivered(delivery.result())

    return report


class KafkaAlertSink:
    """Stages each alert for its LA's recipient topic, keyed by UPN, with the input record's other writes."""

    def __init__(
        self, app: faust.App, codec: AvroCodec, partitions: int, writes: RecordWrites, prefix: str = ""
    ) -> None:
        self.codec = codec
        self.writes = writes
        self.topics = _TopicCache(app, partitions, prefix)

    async def send(self, alert: Alert) -> None:
        topic = await self.topics.get(alert.topic)
        self.writes.stage(topic.get_topic_name(), alert.upn.encode(), self.codec.encode(alert))


class KafkaDeadLetterSink:
    """Stages each dead letter for `<source topic>.dlq`; the source topic already carries any prefix."""

    def __init__(self, app: faust.App, codec: AvroCodec, partitions: int, writes: RecordWrites) -> None:
        self.codec = codec
        self.writes = writes
        self.topics = _TopicCache(app, partitions, prefix="")

    async def send(self, letter: DeadLetter, key: bytes | None) -> None:
        topic = await self.topics.get(dead_letter_topic(letter.source_topic))
        self.writes.stage(topic.get_topic_name(), key, self.codec.encode(letter))
