"""The worker's Faust transport: commits (buffer first, partitions at once, fencing crashes) and its consumer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import ProducerFenced
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer
from faust.transport.producer import ProducerBuffer
from faust.types import TP

from config.settings import Settings
from streams.app import create_app
from streams.runtime.consumer import WorkerConsumer, WorkerConsumerThread, seek_to_committed_or_start
from streams.runtime.transactions import RevocationSafeTransactionManager, drain


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
    producer: RecordingProducer, crashes: list[BaseException], send_pending: Any = None
) -> RevocationSafeTransactionManager:
    async def crash(reason: BaseException) -> None:
        crashes.append(reason)

    app = SimpleNamespace(
        conf=SimpleNamespace(id="rollwatch"),
        assignor=SimpleNamespace(group_for_topic=lambda _topic: 0),
        crash=crash,
    )
    manager = RevocationSafeTransactionManager(
        SimpleNamespace(app=app),  # type: ignore[arg-type]
        consumer=SimpleNamespace(),  # type: ignore[arg-type]
        producer=producer,  # type: ignore[arg-type]
    )
    if send_pending is not None:
        manager.hooks = SimpleNamespace(send_pending=send_pending)  # type: ignore[assignment]
    return manager


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

    manager = manager_for(producer, [], send_pending)
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


class FakeAiokafkaConsumer:
    """The calls `seek_to_committed_or_start` makes of an aiokafka consumer, in the order they happen."""

    def __init__(self, committed: dict[Any, int | None], starts: dict[Any, int]) -> None:
        self.offsets = committed
        self.starts = starts
        self.calls: list[str] = []

    def assignment(self) -> set[Any]:
        return set(self.offsets)

    async def committed(self, tp: Any) -> int | None:
        await asyncio.sleep(0)
        self.calls.append(f"committed {tp.topic}")
        return self.offsets[tp]

    async def beginning_offsets(self, partitions: list[Any]) -> dict[Any, int]:
        await asyncio.sleep(0)
        self.calls.append("beginning_offsets")
        return {tp: self.starts[tp] for tp in partitions}

    def seek(self, tp: Any, offset: int) -> None:
        self.calls.append(f"seek {tp.topic} {offset}")


async def test_every_partition_is_sought_at_once_after_every_lookup() -> None:
    events, fresh, changelog = (
        TopicPartition("roll.events", 0), TopicPartition("ehe.notifications", 0), TopicPartition("children", 0)
    )
    consumer = FakeAiokafkaConsumer({events: 703, fresh: None, changelog: None}, {fresh: 12})
    sought: list[tuple[Any, Any]] = []

    def on_sought(committed: Any, positions: Any) -> None:
        consumer.calls.append("on_sought")
        sought.append((dict(committed), dict(positions)))

    committed = await seek_to_committed_or_start(consumer, {"children"}, (), on_sought)
    assert committed == {events: 703, fresh: None, changelog: None}
    assert sought == [(committed, {events: 703, fresh: 12})]
    lookups, seeks = consumer.calls[:4], consumer.calls[4:]
    assert all(not call.startswith("seek") for call in lookups)
    assert sorted(seeks[:2]) == ["seek ehe.notifications 12", "seek roll.events 703"]
    assert seeks[2:] == ["on_sought"]  # in the same step as the seeks: no fetch can come between


def fetch_yielding(records: list[tuple[TP, int]], fetched_at: int, during: dict[int, Any]) -> Any:
    """Stands in for Faust's own fetch of a batch made at seek count `fetched_at`: yields `records`,
    calling `during[offset]()` (and awaiting what it returns) before the record at that offset."""

    async def getmany(self: Any, timeout: float) -> AsyncIterator[tuple[TP, Any]]:  # noqa: ASYNC109 - Faust's
        self.fetched_at = fetched_at  # as WorkerConsumer._getmany does with the batch's count
        for tp, offset in records:
            if offset in during:
                outcome = during[offset]()
                if asyncio.iscoroutine(outcome):
                    await outcome
            yield tp, SimpleNamespace(tp=tp, offset=offset)

    return getmany


async def test_records_fetched_before_their_partitions_seek_are_not_handed_on(monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(Settings())
    consumer: Any = app.consumer
    sought, other = TP("roll.events", 2), TP("roll.events", 3)
    # A batch fetched from where reading had got to (881) is still being handed on when the rebalance's
    # seek puts roll.events[2] back at 703; roll.events[3] is not sought.
    batch = [(sought, 881), (other, 5), (sought, 882), (other, 6)]
    seek = {5: lambda: consumer.on_sought({sought: 703}, {sought: 703})}
    monkeypatch.setattr(Consumer, "getmany", fetch_yielding(batch, consumer.seeks, seek))
    assert [(tp.partition, message.offset) async for tp, message in consumer.getmany(1.0)] == [(2, 881), (3, 5), (3, 6)]
    assert consumer._read_offset[sought] == 703
    # The next batch, fetched after the seek, is handed on whole.
    monkeypatch.setattr(Consumer, "getmany", fetch_yielding([(sought, 703), (sought, 704)], consumer.seeks, {}))
    assert [message.offset async for _, message in consumer.getmany(1.0)] == [703, 704]


async def test_a_fetch_is_stamped_with_the_seek_count_it_was_made_under(monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(Settings())
    consumer: Any = app.consumer
    tp = TP("roll.events", 0)

    async def fetched_records(self: Any, *args: Any, **kwargs: Any) -> dict[TP, list[Any]]:
        return {tp: ["record"]}

    monkeypatch.setattr(AIOKafkaConsumerThread, "_fetch_records", fetched_records)
    consumer.on_sought({tp: 7}, {tp: 7})
    records = await consumer._thread._fetch_records(None, {tp})
    assert records == {tp: ["record"]}
    assert records.seeks == consumer.seeks == 1


async def ignore_rebalance(partitions: set[TP]) -> None:
    return None


async def test_a_record_handed_on_across_a_seek_is_skipped_and_leaves_the_read_offset_where_the_seek_put_it() -> None:
    app = create_app(Settings())
    tp = TP("roll.events", 2)
    handed_on: list[Any] = []
    waiting = asyncio.Event()

    async def conductor(message: Any) -> None:
        await waiting.wait()  # Faust's conductor waits here while flow control is suspended
        handed_on.append(message)

    consumer: Any = app.transport.Consumer(app.transport, conductor, ignore_rebalance, ignore_rebalance)
    message = SimpleNamespace(tp=tp, topic=tp.topic, offset=746, generation_id=2, acked=False)
    in_hand = asyncio.ensure_future(consumer.callback(message))
    await asyncio.sleep(0)
    consumer.on_sought({tp: 727}, {tp: 727})  # the end of the recovery, which then lets flow resume
    waiting.set()
    await in_hand
    # What Faust's fetch loop does once its callback returns: the seek's offset must stand.
    consumer._read_offset[tp] = message.offset
    assert consumer._read_offset[tp] == 727
    assert handed_on == [message]
    assert message.generation_id != app.consumer_generation_id  # the stream skips it
    assert message.acked  # and its acknowledgement of what it skips records nothing
    # Records fetched again from 727 move the read offset as before.
    consumer._read_offset[tp] = 727
    consumer._read_offset[tp] = 728
    assert consumer._read_offset[tp] == 728
    assert consumer._read_offset[TP("roll.events", 3)] is None


async def test_a_record_handed_on_without_a_seek_is_left_alone() -> None:
    app = create_app(Settings())
    tp = TP("roll.events", 2)

    async def conductor(message: Any) -> None:
        await asyncio.sleep(0)

    consumer: Any = app.transport.Consumer(app.transport, conductor, ignore_rebalance, ignore_rebalance)
    consumer.on_sought({TP("roll.events", 3): 1}, {TP("roll.events", 3): 1})  # another partition's seek
    message = SimpleNamespace(tp=tp, topic=tp.topic, offset=746, generation_id=app.consumer_generation_id, acked=False)
    await consumer.callback(message)
    consumer._read_offset[tp] = message.offset
    assert consumer._read_offset[tp] == 746
    assert message.generation_id == app.consumer_generation_id
    assert not message.acked


async def test_a_partition_whose_commits_are_held_by_unacknowledged_records_is_read_again_on_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = create_app(Settings())
    consumer: Any = app.consumer
    held, other = TP("ehe.notifications", 3), TP("ehe.notifications", 2)
    rewound: list[set[TP]] = []

    async def rewind(partitions: Any) -> dict[TP, int]:
        rewound.append(set(partitions))
        consumer.on_sought({held: 731}, {held: 731})
        return {held: 731}

    monkeypatch.setattr(consumer._thread, "rewind", rewind)
    monkeypatch.setattr(consumer, "assignment", lambda: {held, other})
    consumer.rewind_after = 0.0
    consumer._committed_offset[held] = 731
    consumer._acked[held] = list(range(744, 1020))  # 731 to 743 never acknowledged
    consumer._acked_index[held] = set(range(744, 1020))
    consumer._read_offset[held] = 1019
    await consumer.commit()
    assert rewound == [{held}]
    assert consumer._read_offset[held] == 731
    # Records 731 to 743 fetched again and acknowledged: the partition commits past everything handled.
    consumer._acked[held].extend(range(731, 744))
    assert consumer._new_offset(held) == 1020


async def test_a_partition_acknowledged_in_order_is_never_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(Settings())
    consumer: Any = app.consumer
    tp = TP("roll.events", 0)
    rewound: list[Any] = []

    async def rewind(partitions: Any) -> dict[TP, int]:
        rewound.append(partitions)
        return {}

    monkeypatch.setattr(consumer._thread, "rewind", rewind)
    monkeypatch.setattr(consumer, "assignment", lambda: {tp})
    monkeypatch.setattr(consumer, "_commit_offsets", lambda offsets, **_: asyncio.sleep(0, True))
    consumer.rewind_after = 0.0
    consumer._committed_offset[tp] = 731
    consumer._acked[tp] = [732, 733]  # Faust's own off-by-one: the record at the committed offset may be missing
    consumer._acked_index[tp] = {732, 733}
    await consumer.commit()
    assert rewound == []


async def test_a_seeks_offsets_are_set_once_with_it_not_again_after_a_commit_that_finished_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = create_app(Settings())
    consumer: Any = app.consumer
    tp = TP("roll.events", 2)

    async def rewind(partitions: Any) -> dict[TP, int]:
        consumer.on_sought({tp: 703}, {tp: 703})
        consumer._committed_offset[tp] = 742  # a commit that was under way finishes before the seek returns
        return {tp: 703}

    monkeypatch.setattr(consumer._thread, "rewind", rewind)
    await consumer.perform_seek()
    assert consumer._read_offset[tp] == 703
    assert consumer._committed_offset[tp] == 742


async def test_commits_start_an_interval_apart_however_long_each_takes(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer: Any = create_app(Settings(broker_commit_interval=0.2)).consumer
    clock = [100.0]
    starts: list[float] = []
    durations = iter([0.05, 0.15, 0.3, 0.05])

    async def sleep(seconds: float) -> None:
        clock[0] += seconds

    async def commit() -> bool:
        starts.append(round(clock[0], 3))
        clock[0] += next(durations)
        if len(starts) == 4:
            consumer._stopped.set()
        return True

    monkeypatch.setattr(consumer, "now", lambda: clock[0])
    monkeypatch.setattr(consumer, "sleep", sleep)
    monkeypatch.setattr(consumer, "commit", commit)
    await consumer._commit_handler(consumer)
    # Faust's own timer waits the interval after each commit ends: 100.2, 100.45, 100.8, 101.3.
    # A commit longer than half the interval (0.15 s, 0.3 s) is followed half an interval after it ends.
    assert starts == [100.2, 100.4, 100.65, 101.05]


async def test_the_workers_producers_retry_after_the_configured_backoff() -> None:
    app = create_app(Settings(producer_retry_backoff=0.015))
    producer = app.producer._new_producer(transactional_id="rollwatch-roll.events-0")  # type: ignore[attr-defined]
    try:
        assert producer._sender._retry_backoff == 0.015  # aiokafka's own would be 0.1
    finally:
        await producer.stop()


async def test_offsets_are_committed_without_a_transaction_only_once_sent_messages_are_confirmed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = create_app(Settings(processing_guarantee="at_least_once"))
    consumer: Any = app.consumer
    committed: list[dict[TP, int]] = []
    tp = TP("roll.events", 1)

    async def commit_to_kafka(offsets: dict[TP, int]) -> bool:
        committed.append(dict(offsets))
        return True

    async def lost() -> None:
        raise RuntimeError("a message was lost")

    monkeypatch.setattr(consumer, "_commit", commit_to_kafka)
    monkeypatch.setattr(consumer, "assignment", lambda: {tp})
    monkeypatch.setattr(app.producer, "flush", lambda: asyncio.sleep(0))
    assert consumer.hooks is app.outbox  # installed by the app factory
    monkeypatch.setattr(app.outbox, "confirm_sent", lost)
    with pytest.raises(RuntimeError, match="lost"):
        await consumer._commit_offsets({tp: 41})
    assert committed == []

    monkeypatch.setattr(app.outbox, "confirm_sent", lambda: asyncio.sleep(0))
    assert await consumer._commit_offsets({tp: 41})
    assert committed == [{tp: 41}]


def test_the_stalled_partition_check_runs_on_a_timer_of_its_own_not_four_times_a_second() -> None:
    # Faust times the check by the commit interval (2.5 of them: 0.25 s at ours); the worker's runs in its place.
    tasks = WorkerConsumer._tasks[WorkerConsumer._get_class_id()]  # type: ignore[index]
    assert "_commit_livelock_detector" in tasks
    assert "_commit_livelock_detector" in vars(WorkerConsumer)
    assert WorkerConsumer.livelock_check_interval >= 5.0
