"""The worker's Faust transport: commits (buffer first, partitions at once, fencing crashes) and its consumer."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka.errors import ProducerFenced
from faust.transport.producer import ProducerBuffer
from faust.types import TP

from streams.app import RevocationSafeTransactionManager, WorkerConsumerThread, create_app, drain
from streams.settings import Settings


class SlowBuffer(ProducerBuffer):
    """Faust's own buffer and flush, with a producer that takes longer per message than flush waits.

    Like Faust's aiokafka driver, a send holds its transaction's lock, which a commit also takes."""

    def __init__(self) -> None:
        super().__init__()
        self.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))  # type: ignore[assignment]
        self.sent: list[Any] = []
        self.transaction_lock = asyncio.Lock()

    async def _send_pending(self, fut: Any) -> None:
        async with self.transaction_lock:
            await asyncio.sleep(0.15)
            self.sent.append(fut)


async def test_drain_outlasts_faust_flush_giving_up() -> None:
    buffer = SlowBuffer()
    await buffer.start()
    try:
        for change in range(3):
            buffer.put(change)  # type: ignore[arg-type]
        await buffer.flush()
        assert buffer.size > 0, "Faust's flush alone returns with writes still queued"

        await drain(buffer)

        assert buffer.size == 0
        assert buffer.sent[:2] == [0, 1]
    finally:
        await buffer.stop()


class RecordingProducer:
    """Commits like Faust's driver: under each transaction's lock, one round trip long."""

    def __init__(self, buffer: SlowBuffer, fenced: set[str] | None = None) -> None:
        self.buffer = buffer
        self.fenced = fenced or set()
        self.committed: list[tuple[str, dict[TP, int], int, list[Any]]] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def commit_transactions(
        self, offsets_by_transaction: dict[str, dict[TP, int]], group_id: str, start_new_transaction: bool
    ) -> None:
        [(transactional_id, offsets)] = offsets_by_transaction.items()
        if transactional_id in self.fenced:
            raise ProducerFenced()
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        async with self.buffer.transaction_lock:
            queued, sent = self.buffer.size, list(self.buffer.sent)
        await asyncio.sleep(0.05)
        self.in_flight -= 1
        self.committed.append((transactional_id, offsets, queued, sent))


def manager_for(
    producer: RecordingProducer, crashes: list[BaseException], before_commit: list[Any] | None = None
) -> RevocationSafeTransactionManager:
    async def crash(reason: BaseException) -> None:
        crashes.append(reason)

    app = SimpleNamespace(
        conf=SimpleNamespace(id="rollwatch"),
        assignor=SimpleNamespace(group_for_topic=lambda _topic: 0),
        crash=crash,
        before_commit=before_commit or [],
    )
    return RevocationSafeTransactionManager(
        SimpleNamespace(app=app),  # type: ignore[arg-type]
        consumer=SimpleNamespace(),  # type: ignore[arg-type]
        producer=producer,  # type: ignore[arg-type]
    )


async def test_commit_starts_only_after_queued_table_writes_have_gone() -> None:
    buffer = SlowBuffer()
    await buffer.start()
    producer = RecordingProducer(buffer)
    try:
        for change in ("state-a", "state-b", "deadline-a"):
            buffer.put(change)  # type: ignore[arg-type]

        assert await manager_for(producer, []).commit({TP("roll.events", 0): 42})

        assert producer.committed == [
            ("rollwatch-0-0", {TP("roll.events", 0): 42}, 0, ["state-a", "state-b", "deadline-a"])
        ]
    finally:
        await buffer.stop()


async def test_partitions_commit_together_each_in_its_own_transaction() -> None:
    buffer = SlowBuffer()
    await buffer.start()
    producer = RecordingProducer(buffer)
    offsets = {TP(topic, partition): 10 + partition for partition in range(4) for topic in ("roll.events", "ehe")}
    try:
        assert await manager_for(producer, []).commit(offsets)
    finally:
        await buffer.stop()

    assert producer.most_in_flight == 4, "a partition's commit waited for another's"
    by_transaction = {transactional_id: tp_offsets for transactional_id, tp_offsets, _, _ in producer.committed}
    assert by_transaction == {
        f"rollwatch-0-{partition}": {TP("roll.events", partition): 10 + partition, TP("ehe", partition): 10 + partition}
        for partition in range(4)
    }


async def test_each_partition_sends_what_waits_for_it_before_it_commits() -> None:
    producer = RecordingProducer(SlowBuffer())  # nothing queued in Faust's buffer
    pending_sent: list[tuple[str, int]] = []

    async def send_pending(transactional_id: str) -> None:
        pending_sent.append((transactional_id, len(producer.committed)))

    manager = manager_for(producer, [], [send_pending])
    await manager.commit({TP("roll.events", 0): 1, TP("roll.events", 1): 1})

    # every partition's held-back sends ran before any transaction was committed
    assert sorted(pending_sent) == [("rollwatch-0-0", 0), ("rollwatch-0-1", 0)]
    assert len(producer.committed) == 2


async def test_a_fenced_partition_crashes_the_worker_and_the_others_still_commit() -> None:
    buffer = SlowBuffer()
    await buffer.start()
    producer = RecordingProducer(buffer, fenced={"rollwatch-0-1"})
    crashes: list[BaseException] = []
    try:
        await manager_for(producer, crashes).commit({TP("roll.events", p): 5 for p in range(3)})
    finally:
        await buffer.stop()

    assert [type(reason) for reason in crashes] == [ProducerFenced]
    assert sorted(transactional_id for transactional_id, *_ in producer.committed) == ["rollwatch-0-0", "rollwatch-0-2"]


async def test_the_worker_consumer_fetches_with_the_configured_wait_not_fausts() -> None:
    app = create_app(Settings(fetch_max_wait=0.03))
    assert isinstance(app.consumer._thread, WorkerConsumerThread)  # type: ignore[attr-defined]
    consumer = app.consumer._thread._create_worker_consumer(app.transport)  # type: ignore[attr-defined]
    try:
        assert consumer._fetch_max_wait_ms == 30  # Faust's own would be 1,500
    finally:
        await consumer.stop()
