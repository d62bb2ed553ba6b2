"""The record outbox: a record's messages together, sent with its transaction's commit, each changelog key once."""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from faust.streams import _current_event
from faust.types import TP

from config.settings import Settings
from sinks.kafka import _TopicCache
from streams.app import create_app
from streams.runtime.outbox import JOIN_LIMIT, DeliveryFailed, RecordOutbox
from streams.runtime.tablewrites import ChangelogWrites

TRANSACTION = "rollwatch-0-2"


class FakeClient:
    """aiokafka's client as far as topics go: each new topic set it is given costs a metadata request."""

    def __init__(self) -> None:
        self._topics: set[str] = set()
        self.metadata_requests = 0

    def set_topics(self, topics: set[str]) -> None:
        if topics - self._topics:
            self.metadata_requests += 1
        self._topics = set(topics)


class FakeProducer:
    """aiokafka's transactional producer as the outbox uses it: send returns a delivery future."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, int | None]] = []
        self.client = FakeClient()

    async def send(self, topic: str, value: bytes | None, key: bytes | None, partition: int | None) -> Any:
        self.sent.append((topic, value, partition))
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        delivery.set_result(SimpleNamespace(offset=len(self.sent)))
        return delivery


class Event:
    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(tp=TP("roll.events", partition), partition=partition)


def outbox_with(
    producer: FakeProducer, max_pending: int = 5000, known_topics: frozenset[str] = frozenset()
) -> tuple[RecordOutbox, asyncio.Lock, Any]:
    lock = asyncio.Lock()
    driver = SimpleNamespace(_transaction_producers={TRANSACTION: producer}, _trn_locks={TRANSACTION: lock})
    app = SimpleNamespace(
        in_transaction=True,
        conf=SimpleNamespace(id="rollwatch"),
        assignor=SimpleNamespace(group_for_topic=lambda _topic: 0),
        producer=driver,
    )
    return RecordOutbox(app, max_pending, known_topics), lock, driver  # type: ignore[arg-type]


async def handle_record(outbox: RecordOutbox, state: bytes, *alerts: bytes) -> None:
    """Stages and flushes like the worker's handler, with an input record of partition 2 in hand: the
    child's state (one changelog key), then its alerts."""
    event = Event(2)
    _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    outbox.stage("children-changelog", b"upn", state, 2, latest_only=True)
    for alert in alerts:
        outbox.stage("la.330.alerts.cme-officer", b"upn", alert)
    await outbox.flush()


def values(producer: FakeProducer) -> list[bytes | None]:
    return [value for _, value, _ in producer.sent]


async def test_a_records_messages_wait_for_its_transactions_commit_then_go_out_together() -> None:
    producer = FakeProducer()
    outbox, _lock, _driver = outbox_with(producer)
    delivered: list[Any] = []
    event = Event(2)
    _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    outbox.stage("children-changelog", b"upn", b"state", 2, delivered.append, latest_only=True)
    outbox.stage("la.330.alerts.cme-officer", b"upn", b"alert")

    await outbox.flush()
    assert producer.sent == []

    await outbox.send_pending(TRANSACTION)
    await outbox.send_pending(TRANSACTION)  # nothing left: sends nothing twice

    assert producer.sent == [("children-changelog", b"state", 2), ("la.330.alerts.cme-officer", b"alert", None)]
    await asyncio.sleep(0)
    assert [delivery.result().offset for delivery in delivered] == [1]
    assert producer.client._topics == {"children-changelog", "la.330.alerts.cme-officer"}


async def test_a_producer_learns_every_known_output_topic_in_one_metadata_request() -> None:
    producer = FakeProducer()
    known = frozenset(f"la.{code}.alerts.cme-officer" for code in ("330", "331", "332"))
    outbox, _lock, _driver = outbox_with(producer, known_topics=known)
    await handle_record(outbox, b"state", b"alert")
    await outbox.send_pending(TRANSACTION)
    assert producer.client._topics == known | {"children-changelog"}
    assert producer.client.metadata_requests == 1

    # a later record's alert for another known LA costs no request; a topic nobody knew of costs one
    event = Event(2)
    _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    outbox.stage("la.331.alerts.cme-officer", b"upn", b"alert 2")
    await outbox.flush()
    await outbox.send_pending(TRANSACTION)
    assert producer.client.metadata_requests == 1
    outbox.stage("la.201.alerts.cme-officer", b"upn", b"alert 3")
    await outbox.flush()
    await outbox.send_pending(TRANSACTION)
    assert producer.client.metadata_requests == 2
    assert "la.201.alerts.cme-officer" in producer.client._topics and known <= producer.client._topics


async def test_a_key_written_by_several_records_is_sent_once_with_its_latest_value_and_every_alert() -> None:
    producer = FakeProducer()
    outbox, _lock, _driver = outbox_with(producer)
    await handle_record(outbox, b"state-1", b"alert-1")
    await handle_record(outbox, b"state-2")
    await handle_record(outbox, b"state-3", b"alert-3a", b"alert-3b")

    await outbox.send_pending(TRANSACTION)

    assert values(producer) == [b"state-3", b"alert-1", b"alert-3a", b"alert-3b"]


async def test_a_deleted_key_is_sent_as_its_tombstone() -> None:
    producer = FakeProducer()
    outbox, _lock, _driver = outbox_with(producer)
    await handle_record(outbox, b"deadline")
    event = Event(2)
    _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    outbox.stage("children-changelog", b"upn", None, 2, latest_only=True)
    await outbox.flush()

    await outbox.send_pending(TRANSACTION)

    assert producer.sent == [("children-changelog", None, 2)]


async def test_joinable_messages_of_a_transaction_go_out_as_one_per_partition_in_order() -> None:
    producer = FakeProducer()
    outbox, _lock, _driver = outbox_with(producer)
    event = Event(2)
    _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    for value, partition in ((b"a", 0), (b"b", 1), (b"c", 0), (b"d", 0)):
        outbox.stage("app-mark-batches", value, value, partition, join=lambda values: b"+".join(values))
        outbox.stage("la.330.alerts.cme-officer", b"upn", b"alert-" + value)
        await outbox.flush()

    await outbox.send_pending(TRANSACTION)

    # each joined message where its first part was staged
    assert [(topic, value) for topic, value, _partition in producer.sent] == [
        ("app-mark-batches", b"a+c+d"), ("la.330.alerts.cme-officer", b"alert-a"), ("app-mark-batches", b"b"),
        ("la.330.alerts.cme-officer", b"alert-b"), ("la.330.alerts.cme-officer", b"alert-c"),
        ("la.330.alerts.cme-officer", b"alert-d"),
    ]


async def test_a_joined_message_stops_growing_at_the_limit() -> None:
    producer = FakeProducer()
    outbox, _lock, _driver = outbox_with(producer)
    event = Event(2)
    _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    big = b"x" * (JOIN_LIMIT // 2)
    for _ in range(5):
        outbox.stage("app-mark-batches", None, big, 0, join=b"".join)
    await outbox.flush()

    await outbox.send_pending(TRANSACTION)

    assert [len(value or b"") for value in values(producer)] == [2 * len(big), 2 * len(big), len(big)]


async def test_records_handled_during_a_commit_wait_for_the_next_one() -> None:
    producer = FakeProducer()
    outbox, lock, _driver = outbox_with(producer)
    await handle_record(outbox, b"before", b"alert-before")

    async def commit() -> None:
        await outbox.send_pending(TRANSACTION)
        async with lock:  # the producer's commit holds the lock
            await asyncio.sleep(0.01)

    committing = asyncio.create_task(commit())
    await asyncio.sleep(0)
    await handle_record(outbox, b"during", b"alert-during")
    await committing

    assert values(producer) == [b"before", b"alert-before"]
    await outbox.send_pending(TRANSACTION)
    assert values(producer) == [b"before", b"alert-before", b"during", b"alert-during"]


async def test_a_full_outbox_sends_whole_records_early_unless_a_commit_holds_the_lock() -> None:
    producer = FakeProducer()
    outbox, lock, _driver = outbox_with(producer, max_pending=3)
    async with lock:
        await asyncio.wait_for(handle_record(outbox, b"state-1", b"alert-1", b"alert-2"), timeout=1)
        assert producer.sent == []

    await handle_record(outbox, b"state-2", b"alert-3")

    assert values(producer) == [b"state-2", b"alert-1", b"alert-2", b"alert-3"]
    assert outbox.pending == {}


async def test_what_waited_for_a_producer_since_replaced_is_dropped() -> None:
    old, new = FakeProducer(), FakeProducer()
    outbox, _lock, driver = outbox_with(old)
    await handle_record(outbox, b"for-the-old-owner")
    driver._transaction_producers[TRANSACTION] = new  # the partition went away and came back

    await handle_record(outbox, b"after-return")
    await outbox.send_pending(TRANSACTION)

    assert old.sent == []
    assert values(new) == [b"after-return"]


async def test_a_commit_after_the_partition_went_away_sends_nothing() -> None:
    old = FakeProducer()
    outbox, _lock, driver = outbox_with(old)
    await handle_record(outbox, b"uncommitted")
    del driver._transaction_producers[TRANSACTION]

    await outbox.send_pending(TRANSACTION)

    assert old.sent == []
    assert outbox.pending == {}


def fake_table(data: dict[bytes, bytes]) -> Any:
    return SimpleNamespace(
        data=data,
        changelog_topic=SimpleNamespace(get_topic_name=lambda: "children-changelog"),
        _on_changelog_sent=lambda delivery: None,
    )


async def write_in_record(writes: ChangelogWrites, table: Any, *changes: tuple[bytes, bytes | None]) -> None:
    """Writes (None deletes) like the worker's handler, with an input record of partition 2 in hand."""
    event = Event(2)
    _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    for key, value in changes:
        if value is None:
            writes.delete(table, key)
        else:
            writes.set(table, key, value)
    await writes.outbox.flush()


async def test_a_partition_lost_before_its_commit_gets_its_table_keys_back_as_last_committed() -> None:
    producer = FakeProducer()
    outbox, _lock, _driver = outbox_with(producer)
    writes = ChangelogWrites(outbox)
    table = fake_table({b"known": b"committed", b"gone": b"committed too"})
    await write_in_record(writes, table, (b"known", b"first"), (b"new", b"state"), (b"gone", None))
    await write_in_record(writes, table, (b"known", b"second"))
    assert table.data == {b"known": b"second", b"new": b"state"}

    assert outbox.roll_back([TRANSACTION]) == 3
    assert table.data == {b"known": b"committed", b"gone": b"committed too"}
    await outbox.send_pending(TRANSACTION)
    assert producer.sent == []  # what waited is gone with the transaction


async def test_a_loss_after_a_commit_puts_keys_back_only_as_far_as_that_commit() -> None:
    producer = FakeProducer()
    outbox, _lock, _driver = outbox_with(producer)
    writes = ChangelogWrites(outbox)
    table = fake_table({b"known": b"committed"})
    await write_in_record(writes, table, (b"known", b"first"))
    await outbox.send_pending(TRANSACTION)  # the commit
    await write_in_record(writes, table, (b"known", b"second"), (b"new", b"state"))

    assert outbox.roll_back([TRANSACTION]) == 2
    assert table.data == {b"known": b"first"}


async def test_messages_sent_early_are_still_put_back_if_their_transaction_never_commits() -> None:
    producer = FakeProducer()
    outbox, _lock, _driver = outbox_with(producer, max_pending=1)
    writes = ChangelogWrites(outbox)
    table = fake_table({b"known": b"committed"})
    await write_in_record(writes, table, (b"known", b"first"))
    assert values(producer) == [b"first"]  # sent early, into the open transaction

    assert outbox.roll_back([TRANSACTION]) == 1
    assert table.data == {b"known": b"committed"}


async def test_nothing_is_kept_for_rolling_back_without_transactions() -> None:
    producer = FakeProducer()
    outbox, _lock, _driver = outbox_with(producer)
    outbox.app.in_transaction = False
    table = fake_table({b"known": b"committed"})
    outbox.remember(table, b"known", TP("roll.events", 2))
    assert outbox.before == {}


class PlainProducer:
    """Faust's (non-transactional) producer as the outbox uses it under at_least_once; deliveries stay
    pending until the test settles them."""

    def __init__(self) -> None:
        self._producer = SimpleNamespace(client=FakeClient())
        self.deliveries: list[asyncio.Future[Any]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None, *_: Any) -> Any:
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.deliveries.append(delivery)
        return delivery


def plain_outbox() -> tuple[RecordOutbox, PlainProducer]:
    plain = PlainProducer()

    async def maybe_start_producer() -> PlainProducer:
        return plain

    app = SimpleNamespace(in_transaction=False, maybe_start_producer=maybe_start_producer)
    return RecordOutbox(app), plain  # type: ignore[arg-type]


async def test_without_transactions_a_record_is_done_before_its_messages_are_acknowledged() -> None:
    outbox, plain = plain_outbox()
    await asyncio.wait_for(handle_record(outbox, b"state", b"alert"), timeout=1)  # does not wait for acks
    assert len(plain.deliveries) == 2 and not any(delivery.done() for delivery in plain.deliveries)

    confirming = asyncio.ensure_future(outbox.confirm_sent())
    await asyncio.sleep(0)
    assert not confirming.done(), "a commit must wait for every message sent before it"
    for delivery in plain.deliveries:
        delivery.set_result(SimpleNamespace(offset=1))
    await asyncio.wait_for(confirming, timeout=1)
    assert outbox.unconfirmed == []


async def test_a_lost_message_stops_every_later_commit_too() -> None:
    outbox, plain = plain_outbox()
    await handle_record(outbox, b"state", b"alert")
    plain.deliveries[0].set_result(SimpleNamespace(offset=1))
    plain.deliveries[1].set_exception(RuntimeError("delivery timed out"))
    with pytest.raises(DeliveryFailed) as failed:
        await outbox.confirm_sent()
    assert isinstance(failed.value.__cause__, RuntimeError)

    # The stopped commit has already taken its records' offsets as handled; the commit the worker makes as
    # it stops (with later records acknowledged since) must not pass them on.
    await handle_record(outbox, b"state 2")
    plain.deliveries[2].set_result(SimpleNamespace(offset=2))
    with pytest.raises(DeliveryFailed):
        await outbox.confirm_sent()


async def test_a_rocksdb_partition_lost_before_its_commit_gets_its_keys_back(tmp_path: Path) -> None:
    app = create_app(Settings(store="rocksdb://", data_dir=tmp_path))
    table = app.Table("children", partitions=4, key_type=bytes, value_type=bytes)
    store: Any = table.data
    store._db_for_partition(2).put(b"known", b"committed")
    outbox, _lock, _driver = outbox_with(FakeProducer())
    tp = TP("roll.events", 2)
    # Records of partition 2 write both keys; then the rebalance revokes the partition, closing its file.
    outbox.remember(table, b"known", tp)
    outbox.remember(table, b"new", tp)
    store._db_for_partition(2).put(b"known", b"ahead")
    store._db_for_partition(2).put(b"new", b"ahead")
    store._dbs.pop(2)
    gc.collect()

    assert outbox.roll_back([TRANSACTION]) == 2

    assert 2 not in store._dbs, "the revoked partition's file is let go again"
    reopened = store._db_for_partition(2)
    assert reopened.get(b"known") == b"committed"
    assert reopened.get(b"new") is None


async def test_topics_created_up_front_are_not_declared_again_and_others_once() -> None:
    declared: list[str] = []

    class Topic:
        def __init__(self, name: str) -> None:
            self.name = name

        def get_topic_name(self) -> str:
            return self.name

        async def maybe_declare(self) -> None:
            declared.append(self.name)

    app = SimpleNamespace(topic=lambda name, **_options: Topic(name))
    cache = _TopicCache(app, 4, "p.", ready={"p.la.330.alerts.cme-officer"})  # type: ignore[arg-type]
    for name in ("la.330.alerts.cme-officer", "la.201.alerts.cme-officer", "la.201.alerts.cme-officer"):
        assert (await cache.get(name)).get_topic_name() == "p." + name
    assert declared == ["p.la.201.alerts.cme-officer"]


@pytest.mark.parametrize(("store", "keeps_offsets"), [("memory://", False), ("rocksdb://", True)])
async def test_only_a_store_that_keeps_changelog_offsets_hears_of_each_delivered_write(
    store: str, keeps_offsets: bool, tmp_path: Path
) -> None:
    app = create_app(Settings(store=store, data_dir=tmp_path))
    table = app.Table("children", partitions=4, key_type=bytes, value_type=bytes)
    outbox, _lock, _driver = outbox_with(FakeProducer())
    event = Event(2)
    _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    if keeps_offsets:
        table.data._db_for_partition(2)  # type: ignore[attr-defined]  # opened by Faust as the partition is assigned
    ChangelogWrites(outbox).set(table, b"upn", b"state")
    await outbox.flush()
    [staged] = outbox.pending[TRANSACTION].messages.values()
    assert staged.topic == table.changelog_topic.get_topic_name()
    assert (staged.on_delivered is not None) == keeps_offsets


def test_a_joinable_message_cannot_ask_to_hear_of_its_own_delivery() -> None:
    outbox, _lock, _driver = outbox_with(FakeProducer())
    with pytest.raises(ValueError, match="joined"):
        outbox.stage("app-mark-batches", None, b"batch", 0, lambda _delivery: None, join=b"".join)
