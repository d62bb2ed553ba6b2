"""The record outbox: what each input record sends, held for its transaction's commit and sent then in one go."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Collection, Hashable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import faust
from faust.streams import current_event
from faust.transport.consumer import TopicPartitionGroup, TransactionManager
from faust.types import TP, AppT


def transactional_id(app: AppT, tp: TP) -> str:
    """The id of the transaction that commits an input partition's offsets, in the format Faust's transaction
    manager names (and starts and stops) its producers by."""
    group = TopicPartitionGroup(tp.topic, tp.partition, app.assignor.group_for_topic(tp.topic))
    return TransactionManager.transactional_id_format.format(group_id=app.conf.id, tpg=group)


Delivered = Callable[["asyncio.Future[Any]"], None]
#: Makes one message value of several, in the order they were staged.
Join = Callable[[Sequence[bytes]], bytes]

#: A joined message grows to about this many bytes at most, far below the producers' max_request_size (1 MB)
#: and the brokers' message.max.bytes; a message bigger on its own is sent as it is.
JOIN_LIMIT = 256 * 1024


@dataclass(frozen=True, slots=True)
class Staged:
    topic: str
    key: bytes | None
    value: bytes | None
    #: None lets the producer pick the partition by key (alert topics); changelogs name theirs.
    partition: int | None
    on_delivered: Delivered | None
    #: A changelog write: only the latest value of its key in a transaction needs sending.
    latest_only: bool = False
    #: Set for messages that may go out as one with the transaction's others of their topic and partition:
    #: how to join their values.
    join: Join | None = None


class PendingSends:
    """What a transaction will send at its commit: every alert and dead letter, each changelog key's latest
    value, and joinable messages joined per topic and partition (up to JOIN_LIMIT bytes each), in the order
    they were first staged."""

    def __init__(self, producer: Any) -> None:
        #: The transactional producer they are meant for; a partition that comes back gets a new one.
        self.producer = producer
        self.messages: dict[Hashable, Staged] = {}
        self.numbers = itertools.count()
        #: Per slot of a joined message, the values joined into it so far.
        self.joined: dict[Hashable, list[bytes]] = {}
        #: Per topic and partition, the slot of the joined message still taking values, and its size.
        self.joining: dict[tuple[str, int | None], tuple[Hashable, int]] = {}

    def add(self, staged: list[Staged]) -> None:
        for message in staged:
            if message.join is not None:
                self._join(message)
                continue
            slot = (message.topic, message.partition, message.key) if message.latest_only else next(self.numbers)
            self.messages[slot] = message

    def _join(self, message: Staged) -> None:
        place = (message.topic, message.partition)
        value = message.value or b""
        open_slot = self.joining.get(place)
        if open_slot is not None and open_slot[1] + len(value) <= JOIN_LIMIT:
            slot, size = open_slot
            self.joined[slot].append(value)
        else:
            slot, size = next(self.numbers), 0
            self.messages[slot] = message
            self.joined[slot] = [value]
        self.joining[place] = (slot, size + len(value))

    def to_send(self) -> list[Staged]:
        """The messages to send, joined ones with their values joined."""
        sends = []
        for slot, message in self.messages.items():
            values = self.joined.get(slot)
            if values is not None and message.join is not None and len(values) > 1:
                message = replace(message, value=message.join(values))
            sends.append(message)
        return sends

    def __len__(self) -> int:
        return len(self.messages)


class DeliveryFailed(Exception):
    """A message sent outside a transaction was lost: offsets must not be committed past its record."""


class RecordOutbox:
    """Everything one input record sends (its alerts and its table changelog writes), sent together.

    Under exactly_once a record's messages wait for the commit of its input partition's transaction
    (`send_pending`, which the worker's transaction manager awaits before each commit) and go out then, in
    one go, on that transaction's producer and under its lock: a commit can never fall between a record's
    state and its alerts, and a record whose offset is committed has always had its messages sent in that
    transaction or an earlier one, so one read again after a crash finds its state (and so its event id)
    and raises nothing twice. A table key written by several records in one commit interval (a partition's
    totals, a busy child) is sent once, with its latest value, which is all a changelog keeps anyway.
    Readers see nothing before the commit in any case (read_committed), and sending at the commit makes
    alerts no later (docs/decisions/002). `max_pending` messages waiting send early, whole records at a time.
    Sending straight to aiokafka also spares each message Faust's per-send lock, signal and buffer.

    Under at_least_once messages go out at once and the record is done without waiting for them; before
    any offset is committed, `confirm_sent` waits for every message sent so far and raises if one was lost,
    so that no record is committed whose messages did not reach Kafka.
    """

    def __init__(self, app: faust.App, max_pending: int = 5000, known_topics: Collection[str] = ()) -> None:
        self.app = app
        self.max_pending = max_pending
        #: Topics that exist already and that this worker may send to: see keep_in_metadata.
        self.known_topics = frozenset(known_topics)
        self.staged: list[Staged] = []
        #: Per transactional id, what its next commit sends.
        self.pending: dict[str, PendingSends] = {}
        #: Per transactional id, the value each table key written since its last commit had then (None: absent).
        self.before: dict[str, dict[tuple[int, bytes], tuple[Any, bytes, bytes | None, int]]] = {}
        self.transaction_of: dict[TP, str] = {}
        #: Deliveries of messages sent outside a transaction that no commit has confirmed yet.
        self.unconfirmed: list[asyncio.Future[Any]] = []
        #: The first such delivery that failed: every later confirmation fails too.
        self.lost: BaseException | None = None
        #: The record in hand's table writes as (store, key, value before), oldest first: put back if the
        #: record is refused part-way (`discard`), forgotten once its messages are handed on (`flush`).
        self.undo: list[tuple[Any, bytes, bytes | None]] = []

    def transaction_for(self, tp: TP) -> str:
        transaction = self.transaction_of.get(tp)
        if transaction is None:
            transaction = self.transaction_of[tp] = transactional_id(self.app, tp)
        return transaction

    def remember(self, table: Any, key: bytes, tp: TP) -> None:
        """Keeps a table key's value as of its transaction's last commit, before a record of input partition
        `tp` first writes it: should the transaction never commit (its partition taken by another worker
        first), the store goes back to it (`roll_back`). Left ahead, a store would hold the state of records
        whose messages never went out, and the event ids that make their alerts count as already raised when
        the partition comes back and they are read again."""
        if not self.app.in_transaction:
            return
        window = self.before.get(transaction := self.transaction_for(tp))
        if window is None:
            window = self.before[transaction] = {}
        slot = (id(table), key)
        if slot not in window:
            window[slot] = (table, key, table.data.get(key), tp.partition)

    def roll_back(self, transactions: Iterable[str]) -> int:
        """Forgets what waits for transactions that will never commit (their producers are stopped, so the
        broker aborts what they sent) and puts the table keys their records wrote back as they were at their
        last commit; returns how many keys."""
        restored = 0
        for transaction in transactions:
            self.pending.pop(transaction, None)
            for table, key, value, partition in (self.before.pop(transaction, None) or {}).values():
                put_back(table.data, key, value, partition)
                restored += 1
        return restored

    def stage(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        on_delivered: Delivered | None = None,
        *,
        latest_only: bool = False,
        join: Join | None = None,
    ) -> None:
        """Holds a message of the record in hand. With `join`, its transaction may send it joined with its
        others of the same topic and partition (in staging order, under the first one's key): one message
        for the consumer to handle instead of many. Without a transaction it goes out as it is."""
        if join is not None and on_delivered is not None:
            raise ValueError("a message that may be joined with others has no delivery of its own to hear of")
        self.staged.append(Staged(topic, key, value, partition, on_delivered, latest_only, join))

    def note_write(self, store: Any, key: bytes) -> None:
        """Keeps a table key's value from before the record in hand first writes it, for `discard`."""
        self.undo.append((store, key, store.get(key)))

    def discard(self) -> None:
        """Takes back the record in hand: its staged messages are dropped and its table writes undone, so a
        record dead-lettered part-way leaves the state as it found it (and can be republished later)."""
        self.staged = []
        undo, self.undo = self.undo, []
        for store, key, value in reversed(undo):
            if value is not None:
                store[key] = value
            elif key in store:
                del store[key]

    async def flush(self) -> None:
        """Hands on the messages of the record in hand: to its transaction's next commit under exactly_once,
        otherwise sent and acknowledged at once."""
        self.undo = []
        if not self.staged:
            return
        staged, self.staged = self.staged, []
        event = current_event()
        if self.app.in_transaction and event is not None:
            transaction = self.transaction_for(event.message.tp)
            # Faust's driver keeps a producer and a lock per transaction; its own send takes the lock per message.
            driver: Any = self.app.producer
            producer = driver._transaction_producers.get(transaction)
            if producer is None:
                raise RuntimeError(f"no transactional producer for {transaction}: partition not assigned")
            pending = self.pending.get(transaction)
            if pending is None or pending.producer is not producer:
                # What waited for an earlier producer belongs to records whose offsets that owner never
                # committed: whoever owned the partition since has applied them again.
                pending = self.pending[transaction] = PendingSends(producer)
            pending.add(staged)
            if len(pending) >= self.max_pending and not driver._trn_locks[transaction].locked():
                await self._send(transaction)
            return
        plain: Any = await self.app.maybe_start_producer()
        keep_in_metadata(plain._producer, staged, self.known_topics)  # the aiokafka producer behind Faust's
        deliveries = [
            await plain.send(message.topic, message.key, message.value, message.partition, None, None)
            for message in staged
        ]
        _on_delivered(staged, deliveries)
        if self.app.in_transaction:
            # Sent with no record in hand, so no transaction to join; no offset commit confirms it either.
            await asyncio.gather(*deliveries)
        else:
            self.unconfirmed.extend(deliveries)

    async def confirm_sent(self) -> None:
        """Returns once every message sent outside a transaction so far has been acknowledged; raises
        DeliveryFailed if one never was, then and at every later call. The worker awaits it before committing
        offsets under at_least_once: a commit after a lost message would skip its record for good. The
        failure sticks because the commit it stops has already taken its offsets as handled: the commit the
        worker makes as it stops would otherwise pass them on."""
        if self.lost is None:
            unconfirmed, self.unconfirmed = self.unconfirmed, []
            outcomes = await asyncio.gather(*unconfirmed, return_exceptions=True)
            self.lost = next((outcome for outcome in outcomes if isinstance(outcome, BaseException)), None)
        if self.lost is not None:
            raise DeliveryFailed(
                f"a message sent without a transaction was not acknowledged ({type(self.lost).__name__}); "
                "no offset is committed past it, so its record is read again once the worker restarts"
            ) from self.lost

    async def send_pending(self, transaction: str) -> None:
        """Sends what waits for a transaction, ahead of its commit: the records whose messages these are
        commit with it, so the table values from before them are no longer needed."""
        self.before.pop(transaction, None)
        await self._send(transaction)

    async def _send(self, transaction: str) -> None:
        pending = self.pending.pop(transaction, None)
        if pending is None:
            return
        driver: Any = self.app.producer
        producer = driver._transaction_producers.get(transaction)
        if producer is not pending.producer:
            return
        async with driver._trn_locks[transaction]:
            await _send_all(producer, pending.to_send(), self.known_topics)


def put_back(store: Any, key: bytes, value: bytes | None, partition: int) -> None:
    """Sets (or, for None, removes) a table key of input partition `partition` with no record in hand."""
    open_partition = getattr(store, "_db_for_partition", None)
    if open_partition is None:
        if value is None:
            store.pop(key, None)
        else:
            store[key] = value
        return
    # Faust's RocksDB store writes to the partition of the record in hand, and there is none here; once the
    # rebalance has revoked the partition its file is no longer among the open ones. Open it for the change
    # and let it go again.
    was_open = partition in store._dbs
    db = open_partition(partition)
    if value is None:
        db.delete(key)
    else:
        db.put(key, value)
    if not was_open:
        store._dbs.pop(partition, None)


async def _send_all(producer: Any, staged: list[Staged], known_topics: frozenset[str]) -> None:
    keep_in_metadata(producer, staged, known_topics)
    deliveries = [
        await producer.send(message.topic, message.value, key=message.key, partition=message.partition)
        for message in staged
    ]
    _on_delivered(staged, deliveries)


def _on_delivered(staged: list[Staged], deliveries: list[asyncio.Future[Any]]) -> None:
    for message, delivery in zip(staged, deliveries, strict=True):
        if message.on_delivered is not None:
            delivery.add_done_callback(message.on_delivered)


def keep_in_metadata(producer: Any, staged: list[Staged], known_topics: frozenset[str] = frozenset()) -> None:
    """Makes the producer's metadata requests name every topic it sends to, and with the first of them every
    topic in `known_topics`.

    An aiokafka client that has learnt a topic from a request for all topics does not add it to the topics
    it names later. Once a new topic (an LA's first alert) makes it ask for named topics only, the answer
    drops the unnamed ones; a batch already waiting for such a topic then has no known leader, and the
    metadata requests meant to find one never name its topic. The transaction's commit waits for that
    batch while holding the lock every later send needs: the worker stalls with no error.

    Each new topic costs a metadata request on each of the worker's producers, answering for every topic named
    so far; naming every known output topic at the first new one makes it one request (docs/decisions/007)."""
    client = producer.client
    named = client._topics
    new = {message.topic for message in staged if message.topic not in named}
    if new:
        client.set_topics(named | new | known_topics)

