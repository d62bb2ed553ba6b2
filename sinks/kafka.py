"""Kafka delivery of alerts (la.<LA>.alerts.<recipient>) and dead letters (<topic>.dlq), Avro-encoded."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import faust
from faust.streams import current_event
from faust.transport.consumer import TopicPartitionGroup, TransactionManager
from faust.types import TP, AppT

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


def transactional_id(app: AppT, tp: TP) -> str:
    """The id of the transaction that commits an input partition's offsets, in the format Faust's transaction
    manager names (and starts and stops) its producers by."""
    group = TopicPartitionGroup(tp.topic, tp.partition, app.assignor.group_for_topic(tp.topic))
    return TransactionManager.transactional_id_format.format(group_id=app.conf.id, tpg=group)


Delivered = Callable[["asyncio.Future[Any]"], None]


@dataclass(frozen=True, slots=True)
class Staged:
    topic: str
    key: bytes | None
    value: bytes | None
    #: None lets the producer pick the partition by key (alert topics); changelogs name theirs.
    partition: int | None
    on_delivered: Delivered | None


class RecordOutbox:
    """Everything one input record sends (its alerts and its table changelog writes), sent together.

    Under exactly_once the whole lot goes to the input partition's transactional producer while holding
    that transaction's lock once, so a commit can never fall between a record's state and its alerts.
    While a commit holds the lock, the record's messages are held back instead and the agent goes on: they
    go out, in order, ahead of that partition's next messages, and at the latest at the start of its next
    commit (`send_held_back`, which the worker's transaction manager calls), the first that can include
    the record's offset. A record whose offset is committed has therefore always had its messages sent in
    that transaction or an earlier one; one read again after a crash finds its state (and so its event id)
    and raises nothing twice. Sending straight to aiokafka also spares each message Faust's per-send lock,
    signal and buffer. Under at_least_once each message is acknowledged before the record is done.
    """

    def __init__(self, app: faust.App) -> None:
        self.app = app
        self.staged: list[Staged] = []
        #: Per transaction: the producer they were meant for, and the messages held back during a commit.
        self.held_back: dict[str, tuple[Any, list[Staged]]] = {}

    def stage(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        on_delivered: Delivered | None = None,
    ) -> None:
        self.staged.append(Staged(topic, key, value, partition, on_delivered))

    async def flush(self) -> None:
        if not self.staged:
            return
        staged, self.staged = self.staged, []
        event = current_event()
        if self.app.in_transaction and event is not None:
            transaction = transactional_id(self.app, event.message.tp)
            # Faust's driver keeps a producer and a lock per transaction; its own send takes the lock per message.
            driver: Any = self.app.producer
            producer = driver._transaction_producers.get(transaction)
            if producer is None:
                raise RuntimeError(f"no transactional producer for {transaction}: partition not assigned")
            lock = driver._trn_locks[transaction]
            if lock.locked():
                _, waiting = self.held_back.setdefault(transaction, (producer, []))
                waiting.extend(staged)
                return
            async with lock:
                staged = self._take_held_back(transaction, producer) + staged
                await _send_all(producer, staged)
            return
        plain: Any = await self.app.maybe_start_producer()
        keep_in_metadata(plain._producer, staged)  # the aiokafka producer behind Faust's
        deliveries = [
            await plain.send(message.topic, message.key, message.value, message.partition, None, None)
            for message in staged
        ]
        await asyncio.gather(*deliveries)
        _on_delivered(staged, deliveries)

    async def send_held_back(self, transaction: str) -> None:
        """Sends what was held back for a transaction, ahead of its commit."""
        driver: Any = self.app.producer
        producer = driver._transaction_producers.get(transaction)
        if producer is None or transaction not in self.held_back:
            return
        async with driver._trn_locks[transaction]:
            await _send_all(producer, self._take_held_back(transaction, producer))

    def _take_held_back(self, transaction: str, producer: Any) -> list[Staged]:
        meant_for, waiting = self.held_back.pop(transaction, (producer, []))
        # A partition that moved away and came back has a new producer; the records behind what was held
        # back for the old one had their offsets left uncommitted, so whoever owned the partition since has
        # applied them again.
        return waiting if meant_for is producer else []


async def _send_all(producer: Any, staged: list[Staged]) -> None:
    keep_in_metadata(producer, staged)
    deliveries = [
        await producer.send(message.topic, message.value, key=message.key, partition=message.partition)
        for message in staged
    ]
    _on_delivered(staged, deliveries)


def _on_delivered(staged: list[Staged], deliveries: list[asyncio.Future[Any]]) -> None:
    for message, delivery in zip(staged, deliveries, strict=True):
        if message.on_delivered is not None:
            delivery.add_done_callback(message.on_delivered)


def keep_in_metadata(producer: Any, staged: list[Staged]) -> None:
    """Makes the producer's metadata requests name every topic it sends to.

    An aiokafka client that has learnt a topic from a request for all topics does not add it to the topics
    it names later. Once a new topic (an LA's first alert) makes it ask for named topics only, the answer
    drops the unnamed ones; a batch already waiting for such a topic then has no known leader, and the
    metadata requests meant to find one never name its topic. The transaction's commit waits for that
    batch while holding the lock every later send needs: the worker stalls with no error."""
    client = producer.client
    for message in staged:
        if message.topic not in client._topics:
            client.add_topic(message.topic)


class KafkaAlertSink:
    """Stages each alert for its LA's recipient topic, keyed by UPN, in the input record's outbox."""

    def __init__(
        self, app: faust.App, codec: AvroCodec, partitions: int, outbox: RecordOutbox, prefix: str = ""
    ) -> None:
        self.codec = codec
        self.outbox = outbox
        self.topics = _TopicCache(app, partitions, prefix)

    async def send(self, alert: Alert) -> None:
        topic = await self.topics.get(alert.topic)
        self.outbox.stage(topic.get_topic_name(), alert.upn.encode(), self.codec.encode(alert))


class KafkaDeadLetterSink:
    """Stages each dead letter for `<source topic>.dlq` (the source topic already carries any prefix) in the
    record's outbox, which sends it with whatever the record wrote."""

    def __init__(self, app: faust.App, codec: AvroCodec, partitions: int, outbox: RecordOutbox) -> None:
        self.codec = codec
        self.outbox = outbox
        self.topics = _TopicCache(app, partitions, prefix="")

    async def send(self, letter: DeadLetter, key: bytes | None) -> None:
        topic = await self.topics.get(dead_letter_topic(letter.source_topic))
        self.outbox.stage(topic.get_topic_name(), key, self.codec.encode(letter))
