"""What the bench reads from the broker: end offsets, a group's committed offsets and members, alert arrivals."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field

from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.structs import TopicPartition

from cli.commands.publish import connection_of
from config.kafka import client_options
from config.settings import Settings
from processors.records import INPUT_TOPICS
from rollwatch_client.ordering import AppliedOffsets


def input_partitions(settings: Settings) -> list[TopicPartition]:
    return [
        TopicPartition(settings.topic(name), partition)
        for name in INPUT_TOPICS
        for partition in range(settings.topic_partitions)
    ]


def end_offsets(settings: Settings, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    """The next offset of each partition: with an idempotent, non-transactional publisher, also its count."""
    consumer = KafkaConsumer(**client_options(settings), enable_auto_commit=False)
    try:
        offsets: dict[TopicPartition, int] = consumer.end_offsets(partitions)
        return offsets
    finally:
        consumer.close()


def create_topic(settings: Settings, name: str) -> None:
    admin = KafkaAdminClient(**client_options(settings))
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics(
                [NewTopic(name, settings.topic_partitions, settings.topic_replication_factor)]
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            described = admin.describe_topics([name])
            if all(t["error_code"] == 0 and t["partitions"] and all(p["leader_id"] >= 0 for p in t["partitions"])
                   for t in described):
                return
            time.sleep(0.2)
        raise RuntimeError(f"topic {name} has no partition leaders after 30 s")
    finally:
        admin.close()


def committed_records(settings: Settings, topic: str) -> int:
    """Records of `topic` a read_committed consumer sees, read to the end: the offsets alone would also count
    transaction markers and aborted records."""
    consumer = KafkaConsumer(**client_options(settings), isolation_level="read_committed", enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends: dict[TopicPartition, int] = consumer.end_offsets(partitions)  # the last stable offsets here
        count = 0
        deadline = time.monotonic() + 600
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"reading {topic} back took over 600 s")
            count += sum(len(batch) for batch in consumer.poll(timeout_ms=500, max_records=10_000).values())
        return count
    finally:
        consumer.close()


class GroupProbe:
    """A consumer group's progress: how many of the target records it has committed, how many members it has."""

    def __init__(self, settings: Settings, group_id: str, targets: dict[TopicPartition, int]) -> None:
        self.group_id = group_id
        self.targets = targets
        self.total = sum(targets.values())
        self.offsets = AppliedOffsets(connection_of(settings), group_id)
        self.admin = KafkaAdminClient(**client_options(settings))

    def committed(self) -> int:
        committed = self.offsets.committed(list(self.targets))
        return sum(min(committed.get(tp, 0), target) for tp, target in self.targets.items())

    def stable_members(self) -> int:
        """Members of the group once it has settled after a rebalance (0 while it is still rebalancing)."""
        try:
            group = self.admin.describe_groups([self.group_id]).get(self.group_id, {})
        except KafkaError:
            return 0
        if group.get("group_state") != "Stable":
            return 0
        return len(group.get("members") or [])

    def close(self) -> None:
        self.offsets.close()
        self.admin.close()


@dataclass(frozen=True)
class AlertArrival:
    upn: str
    #: The alert record's Kafka timestamp (set when the worker produced it), unix seconds.
    produced_at: float
    #: When a read_committed consumer received it, i.e. after the worker's transaction committed.
    received_at: float


@dataclass
class AlertListener:
    """Reads one alert topic with read_committed isolation on a thread, noting when each alert arrives."""

    settings: Settings
    topic: str
    arrivals: list[AlertArrival] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _error: BaseException | None = None

    def start(self) -> AlertListener:
        consumer = KafkaConsumer(
            **client_options(self.settings),
            isolation_level="read_committed",
            enable_auto_commit=False,
            # A fetch answered as soon as one record is in costs this process and the broker a round trip per
            # few records, CPU the measured worker shares; waiting for a batch costs at most the 10 ms.
            fetch_max_wait_ms=10,
            fetch_min_bytes=256 * 1024,
        )
        partitions = [TopicPartition(self.topic, p) for p in range(self.settings.topic_partitions)]
        consumer.assign(partitions)
        consumer.seek_to_end(*partitions)
        for tp in partitions:  # resolves the lazy seek now, so nothing sent from here on is skipped
            consumer.position(tp)
        self._thread = threading.Thread(target=self._run, args=(consumer,), name="alert-listener", daemon=True)
        self._thread.start()
        return self

    def _run(self, consumer: KafkaConsumer) -> None:
        try:
            while not self._stop.is_set():
                batches = consumer.poll(timeout_ms=50)
                received_at = time.time()
                for messages in batches.values():
                    for message in messages:
                        upn = message.key.decode() if message.key else ""
                        self.arrivals.append(AlertArrival(upn, message.timestamp / 1000.0, received_at))
        except BaseException as error:  # handed to the main thread by stop()
            self._error = error
        finally:
            consumer.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._error is not None:
            raise RuntimeError(f"the alert listener failed: {self._error}") from self._error
