"""The record outbox: a record's messages together, in order, held back (not lost) while a commit holds the lock."""

from __future__ import annotations

import asyncio
import weakref
from types import SimpleNamespace
from typing import Any

from faust.streams import _current_event
from faust.types import TP

from sinks.kafka import RecordOutbox

TRANSACTION = "rollwatch-0-2"


class FakeProducer:
    """aiokafka's transactional producer as the outbox uses it: send returns a delivery future."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, int | None]] = []
        self.client = SimpleNamespace(_topics=set(), add_topic=lambda topic: self.client._topics.add(topic))

    async def send(self, topic: str, value: bytes | None, key: bytes | None, partition: int | None) -> Any:
        self.sent.append((topic, value, partition))
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        delivery.set_result(SimpleNamespace(offset=len(self.sent)))
        return delivery


class Event:
    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(tp=TP("roll.events", partition), partition=partition)


def outbox_with(producer: FakeProducer) -> tuple[RecordOutbox, asyncio.Lock, Any]:
    lock = asyncio.Lock()
    driver = SimpleNamespace(_transaction_producers={TRANSACTION: producer}, _trn_locks={TRANSACTION: lock})
    app = SimpleNamespace(
        in_transaction=True,
        conf=SimpleNamespace(id="rollwatch"),
        assignor=SimpleNamespace(group_for_topic=lambda _topic: 0),
        producer=driver,
    )
    return RecordOutbox(app), lock, driver  # type: ignore[arg-type]


async def handle_record(outbox: RecordOutbox, *values: bytes) -> None:
    """Stages and flushes like the worker's handler, with an input record of partition 2 in hand."""
    event = Event(2)
    _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    for value in values:
        outbox.stage("children-changelog", b"upn", value, 2)
    await outbox.flush()


async def test_a_record_goes_out_at_once_when_no_commit_holds_the_lock() -> None:
    producer = FakeProducer()
    outbox, _lock, _driver = outbox_with(producer)
    delivered: list[Any] = []
    event = Event(2)
    _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    outbox.stage("children-changelog", b"upn", b"state", 2, delivered.append)
    outbox.stage("la.330.alerts.cme-officer", b"upn", b"alert")

    await outbox.flush()

    assert producer.sent == [("children-changelog", b"state", 2), ("la.330.alerts.cme-officer", b"alert", None)]
    await asyncio.sleep(0)
    assert [delivery.result().offset for delivery in delivered] == [1]
    assert producer.client._topics == {"children-changelog", "la.330.alerts.cme-officer"}


async def test_during_a_commit_records_are_held_back_then_sent_in_order_ahead_of_the_next() -> None:
    producer = FakeProducer()
    outbox, lock, _driver = outbox_with(producer)
    async with lock:  # a commit in progress
        await asyncio.wait_for(handle_record(outbox, b"first"), timeout=1)
        await asyncio.wait_for(handle_record(outbox, b"second"), timeout=1)
        assert producer.sent == []

    await handle_record(outbox, b"third")

    assert [value for _, value, _ in producer.sent] == [b"first", b"second", b"third"]
    assert outbox.held_back == {}


async def test_the_next_commit_sends_what_was_held_back_before_committing() -> None:
    producer = FakeProducer()
    outbox, lock, _driver = outbox_with(producer)
    async with lock:
        await handle_record(outbox, b"during-commit")

    await outbox.send_held_back(TRANSACTION)
    await outbox.send_held_back(TRANSACTION)  # nothing left: sends nothing twice

    assert [value for _, value, _ in producer.sent] == [b"during-commit"]


async def test_what_was_held_back_for_a_producer_since_replaced_is_dropped() -> None:
    old, new = FakeProducer(), FakeProducer()
    outbox, lock, driver = outbox_with(old)
    async with lock:
        await handle_record(outbox, b"for-the-old-owner")
    driver._transaction_producers[TRANSACTION] = new  # the partition went away and came back

    await handle_record(outbox, b"after-return")

    assert old.sent == []
    assert [value for _, value, _ in new.sent] == [b"after-return"]
