"""Publishing in file order through Kafka: before switching topic, wait until the worker applied the rest."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from kafka.admin import KafkaAdminClient, OffsetSpec
from kafka.errors import KafkaError
from kafka.structs import TopicPartition

from rollwatch_client.connection import KafkaConnection


class OrderingTimeout(RuntimeError):
    """The worker did not apply what was sent in time: most often no worker is running for the group."""


#: A register reaches its children through the worker's own topic `<application id>-mark-batches` (one message
#: per partition holding its children): a register counts as applied once those batches are.
REGISTERS_TOPIC = "attendance.registers"
MARK_BATCHES_SUFFIX = "mark-batches"


class AppliedOffsets:
    """Reads the worker group's committed offsets: a committed offset past a record means it was applied
    (the worker commits only after processing, inside the same transaction as its alerts).

    `group_id` is the worker's consumer group: its application id (ROLLWATCH_APP_ID). Which partitions to
    read comes from the send futures passed to `wait_for`, so no topic list is needed here."""

    def __init__(self, connection: KafkaConnection, group_id: str) -> None:
        self.group_id = group_id
        self.admin = KafkaAdminClient(**connection.kafka_options())

    def committed(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        try:
            offsets = self.admin.list_group_offsets({self.group_id: partitions}).get(self.group_id, {})
        except KafkaError as error:
            # While the group coordinator starts or moves, nothing can be read yet: ask again later.
            if getattr(error, "retriable", False):
                return {}
            raise
        return {tp: meta.offset for tp, meta in offsets.items() if meta is not None and meta.offset >= 0}

    def wait_for(
        self,
        targets: Mapping[TopicPartition, int],
        timeout: float = 120.0,
        poll_interval: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Blocks until every partition's committed offset reaches its target (the next offset to read)."""
        deadline = time.monotonic() + timeout
        partitions = list(targets)
        while True:
            committed = self.committed(partitions)
            behind = {tp: off for tp, off in targets.items() if committed.get(tp, -1) < off}
            if not behind:
                if any(tp.topic.endswith(REGISTERS_TOPIC) for tp in partitions):
                    self._wait_for_batches(deadline, poll_interval, sleep)
                return
            if time.monotonic() > deadline:
                where = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(behind))
                raise OrderingTimeout(
                    f"the worker group {self.group_id!r} has not applied records sent to {where} after "
                    f"{timeout:.0f} s; is `rollwatch worker` running with ROLLWATCH_APP_ID={self.group_id}?"
                )
            sleep(poll_interval)

    def batch_targets(self) -> dict[TopicPartition, int]:
        """Per partition of the worker's mark-batches topic, the offset its group commits once it has applied
        every batch written so far (empty when the topic does not exist)."""
        from kafka.protocol.consumer.offsets import IsolationLevel

        topic = f"{self.group_id}-{MARK_BATCHES_SUFFIX}"
        described = self.admin.describe_topics([topic])
        partitions = [
            TopicPartition(topic, partition["partition_index"])
            for entry in described
            for partition in entry.get("partitions", [])
        ]
        if not partitions:
            return {}
        ends = self.admin.list_partition_offsets(
            {tp: OffsetSpec.LATEST for tp in partitions}, isolation_level=IsolationLevel.READ_COMMITTED
        )
        # The batches are written in transactions: the last offset of a partition is the commit marker, one
        # past the next offset the worker commits after reading the last batch.
        return {tp: found.offset - 1 for tp, found in ends.items() if found.offset > 0}

    def batches_applied(self, targets: Mapping[TopicPartition, int] | None = None) -> bool:
        """Whether the worker has applied every mark batch written so far (or up to `targets`)."""
        wanted = self.batch_targets() if targets is None else targets
        committed = self.committed(list(wanted))
        return all(committed.get(tp, -1) >= offset for tp, offset in wanted.items())

    def _wait_for_batches(self, deadline: float, poll_interval: float, sleep: Callable[[float], None]) -> None:
        """Waits until the worker has applied every mark batch its registers produced so far."""
        targets = self.batch_targets()
        while not self.batches_applied(targets):
            if time.monotonic() > deadline:
                raise OrderingTimeout(
                    f"the worker group {self.group_id!r} has not applied the marks of the registers sent after "
                    "their batches were written; is the worker running?"
                )
            sleep(poll_interval)

    def close(self) -> None:
        self.admin.close()


class OrderedSender:
    """Keeps a file's order through Kafka: whenever the next record goes to a different topic, it first
    waits until the worker has applied everything sent before it (design.md, "Ordering through Kafka")."""

    def __init__(self, flush: Callable[[], None], applied: AppliedOffsets, timeout: float = 120.0) -> None:
        self.flush = flush
        self.applied = applied
        self.timeout = timeout
        self.last_topic: str | None = None
        self.futures: list[Any] = []
        self.barriers = 0

    def before(self, topic: str) -> None:
        """Call before sending to `topic`."""
        if self.last_topic is not None and topic != self.last_topic:
            self.barrier()
        self.last_topic = topic

    def sent(self, futures: list[Any]) -> None:
        """Call with the send futures of what was just sent."""
        self.futures.extend(futures)

    def barrier(self) -> None:
        """Waits until the worker has applied every record sent so far."""
        if not self.futures:
            return
        self.flush()
        targets: dict[TopicPartition, int] = {}
        for future in self.futures:
            meta = future.get(timeout=self.timeout)
            tp = TopicPartition(meta.topic, meta.partition)
            targets[tp] = max(targets.get(tp, 0), meta.offset + 1)
        self.futures.clear()
        self.applied.wait_for(targets, timeout=self.timeout)
        self.barriers += 1
