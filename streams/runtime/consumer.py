"""The worker's Faust consumer and consumer thread: seeks to committed offsets, stale records dropped, commits timed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Container, Iterable, Mapping
from contextlib import aclosing
from typing import Any, cast

from aiokafka import TopicPartition
from faust.transport.consumer import ensure_TP
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer
from faust.types import TP, Message
from mode import Service

from streams.runtime.transactions import NO_HOOKS, CommitHooks

Sought = Callable[[Mapping[Any, "int | None"], Mapping[Any, int]], None]


async def seek_to_committed_or_start(
    consumer: Any, changelog_topics: Container[str], partitions: Iterable[TP] = (), on_sought: Sought | None = None
) -> Mapping[Any, int | None]:
    """Seeks input partitions (those given, or every assigned one) to their committed offsets, and one never
    committed to its start; returns every partition's committed offset (None where there is none).

    aiokafka seeks only partitions with a committed offset past 0; a never-committed partition left where
    the fetcher got to would never fetch again the records Faust drops during a rebalance (docs/decisions/005).
    Changelogs are left to Faust's recovery, which positions them itself.

    Every offset is looked up first and every partition then sought at once, with `on_sought(committed,
    positions)` in the same step: nothing else on the consumer's loop (a fetch above all) runs in between,
    so a fetch returns records either all from before the seek or all from after it."""
    wanted = [TopicPartition(tp.topic, tp.partition) for tp in partitions] or sorted(consumer.assignment())
    committed: dict[Any, int | None] = {tp: await consumer.committed(tp) for tp in wanted}
    inputs = {tp: offset for tp, offset in committed.items() if tp.topic not in changelog_topics}
    positions: dict[Any, int] = {tp: offset for tp, offset in inputs.items() if offset}
    never_committed = [tp for tp, offset in inputs.items() if not offset]
    if never_committed:
        # Seeking to the offsets looked up, not with seek_to_beginning: that leaves a partition with no
        # position until a reset completes, and Faust's livelock check then crashes the worker reading it.
        positions.update(await consumer.beginning_offsets(never_committed))
    for tp, offset in positions.items():
        consumer.seek(tp, offset)
    if on_sought is not None:
        on_sought(committed, positions)
    return committed


class Fetched(dict[TP, list[Any]]):
    """A fetch's records, with the consumer's seek count when they were fetched."""

    def __init__(self, records: Mapping[TP, list[Any]], seeks: int) -> None:
        super().__init__(records)
        self.seeks = seeks


class WorkerConsumerThread(AIOKafkaConsumerThread):
    """Faust's consumer thread, with three changes.

    The broker's wait for new records is a setting, not Faust's fixed 1.5 s: a fetch that asks only for quiet
    partitions would otherwise hold back a busy partition's new records that long (docs/decisions/004).

    Seeks go to the committed offsets or, for partitions never committed, to their start
    (`seek_to_committed_or_start`), all at once.

    Each fetch carries the seek count it was made under (`Fetched`), for the WorkerConsumer to tell records
    from before a seek."""

    fetch_max_wait_ms = 1500

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read when the consumer starts and builds its fetcher, which is after this.
        consumer._fetch_max_wait_ms = self.fetch_max_wait_ms
        return consumer

    async def _fetch_records(
        self,
        consumer: Any,
        active_partitions: set[TP],
        timeout: float | None = None,  # noqa: ASYNC109 - Faust's signature
        max_records: int | None = None,
    ) -> Any:
        records = await super()._fetch_records(consumer, active_partitions, timeout=timeout, max_records=max_records)
        return Fetched(records, cast(WorkerConsumer, self.consumer).seeks)

    async def on_thread_stop(self) -> None:
        """Stops the aiokafka consumer, even when its fetcher re-raises a fetch's cancellation.

        aiokafka's fetcher, closing, re-raises the cancellation of a fetch backing off after a failed request
        (every fetch, once the broker is gone); the thread must still report its stop, or the worker's stop
        waits out mode's shutdown timeout (docs/decisions/013)."""
        try:
            await super().on_thread_stop()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            self.log.info("Consumer stopped while a fetch was backing off after a failed request")
            consumer = self._consumer
            client = getattr(consumer, "_client", None)
            if client is not None:
                await client.close()

    async def seek_to_committed(self) -> Mapping[TP, int]:
        return await self.rewind(())

    async def rewind(self, partitions: Iterable[TP]) -> Mapping[TP, int]:
        """Seeks the partitions (every assigned one if none are given) to their committed offsets."""
        consumer = self._ensure_consumer()
        changelogs = self.app.tables.changelog_topics
        on_sought = cast(WorkerConsumer, self.consumer).on_sought
        return await self.call_thread(seek_to_committed_or_start, consumer, changelogs, partitions, on_sought)


MessageHandler = Callable[[Message], Awaitable[None]]


class ReadOffsets(dict[TP, int | None]):
    """Faust's read offset of each partition (None before the first), which a record handed on before a seek
    cannot move past where the seek put it."""

    def __init__(self) -> None:
        super().__init__()
        #: The one write, per partition, that a record from before a seek is about to make.
        self.overtaken: dict[TP, int] = {}

    def __missing__(self, tp: TP) -> None:
        return None

    def __setitem__(self, tp: TP, offset: int | None) -> None:
        if offset is not None and self.overtaken.get(tp) == offset:
            del self.overtaken[tp]
            return
        super().__setitem__(tp, offset)


class WorkerConsumer(Consumer):
    """Faust's aiokafka consumer, run on a WorkerConsumerThread, that forgets what a seek makes stale.

    Faust seeks the input partitions back to their committed offsets after every rebalance. A record from
    before such a seek, handed on after it, would move Faust's read offset past the records the seek fetches
    again and hold the partition's commits for good (docs/decisions/005).

    So the records of a fetch made before a partition's seek are discarded (the seek fetches them again),
    and a record handed on across its partition's seek is skipped by the stream and leaves the read offset
    where the seek put it. Should a partition's commits still be held by records missing from the head of
    what it has acknowledged for `rewind_after` seconds, it is sought back to its committed offset on its
    own. A record handled twice raises nothing twice: the child's state holds its event id, and the messages
    of its first pass go with its partition's next commit."""

    thread_class: type[WorkerConsumerThread] = WorkerConsumerThread
    #: How long records missing from the head of a partition's acknowledgements may hold its commits.
    rewind_after: float = 5.0
    #: Installed by the app factory: what must hold before offsets are committed without a transaction.
    hooks: CommitHooks = NO_HOOKS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_offset = self.read_offsets = ReadOffsets()
        self.callback = self._skipping_overtaken(self.callback)
        #: Seeks so far, and each partition's count as of its last one; a fetch's is in `Fetched.seeks`.
        self.seeks = 0
        self.sought_at: dict[TP, int] = {}
        self.fetched_at = 0
        #: Since when each partition's commits have been held, and those to seek back at the next commit.
        self.held_since: dict[TP, float] = {}
        self.to_rewind: set[TP] = set()

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return self.thread_class(self, loop=self.loop, beacon=self.beacon)

    def on_sought(self, committed: Mapping[Any, int | None], positions: Mapping[Any, int]) -> None:
        """Runs on the consumer's thread in the same step as the seeks, before any later fetch."""
        self.seeks += 1
        for partition, offset in committed.items():
            tp = ensure_TP(partition)
            self.read_offsets.overtaken.pop(tp, None)
            # As Faust's own seek does, changelogs included (which its recovery then positions itself).
            self._read_offset[tp] = offset if offset is not None and offset >= 0 else None
            if offset is not None:
                self._committed_offset[tp] = offset or None
        for partition in positions:
            tp = ensure_TP(partition)
            self.sought_at[tp] = self.seeks
            self.held_since.pop(tp, None)

    async def perform_seek(self) -> None:
        # `on_sought` has set the read and committed offsets in the same step as the seeks. Faust's own would
        # set them again once back on this loop, where a commit finished meanwhile may have moved them on.
        await self.seek_to_committed()

    def _overtaken(self, tp: TP, seeks: int) -> bool:
        """Whether `tp` has been sought since the seek count was `seeks`."""
        return self.sought_at.get(tp, -1) > seeks

    def _skipping_overtaken(self, callback: MessageHandler) -> MessageHandler:
        async def hand_on(message: Message) -> None:
            fetched_at = self.fetched_at
            await callback(message)
            if self._overtaken(message.tp, fetched_at):
                # Nothing has run since it was queued: the stream skips a message of another generation, and
                # acknowledges what it skips unless already acknowledged. Its offset must wait for the copy
                # the seek fetches again to be handled.
                message.generation_id = OVERTAKEN
                message.acked = True
                self.read_offsets.overtaken[message.tp] = message.offset

        return hand_on

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> Any:  # noqa: ASYNC109 - Faust's
        records = await super()._getmany(active_partitions, timeout)
        self.fetched_at = getattr(records, "seeks", self.seeks)
        return records

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:  # noqa: ASYNC109 - Faust's signature
        fetching = cast(AsyncGenerator[tuple[TP, Message], None], super().getmany(timeout))
        async with aclosing(fetching) as fetched:
            async for tp, message in fetched:
                if not self._overtaken(tp, self.fetched_at):
                    yield tp, message

    @Service.task
    async def _commit_handler(self) -> None:
        """Commits every `commit_interval` from the start of one commit to the start of the next.

        Faust's own timer waits the interval after each commit ends, so a record's alerts also waited out the
        commit before theirs (tens of milliseconds, more under load). Commits are still half an interval
        apart at least, so that a worker whose commits are slow (under load) handles records between them."""
        interval = self.commit_interval
        due = self.now() + interval
        while not self.should_stop:
            await self.sleep(max(0.0, due - self.now()))
            if self.should_stop:
                break
            started = self.now()
            await self.commit()
            due = max(started + interval, self.now() + interval / 2)

    #: Seconds between Faust's checks that every assigned partition still moves (it logs those that stalled).
    livelock_check_interval: float = 5.0

    @Service.task
    async def _commit_livelock_detector(self) -> None:
        """Faust's check for stalled partitions, every `livelock_check_interval` seconds.

        Faust runs it every two and a half commit intervals, which at 0.1 s walked every assigned partition
        (changelogs included) four times a second; it warns of partitions stalled for minutes."""
        interval = self.livelock_check_interval
        await self.sleep(interval)
        async for _sleep_time in self.itertimer(interval, name="livelock"):
            if not self.app.rebalancing:
                await self.verify_all_partitions_active()

    def now(self) -> float:
        """The clock commits and held partitions are timed by."""
        return time.monotonic()

    def _new_offset(self, tp: TP) -> int | None:
        offset: int | None = super()._new_offset(tp)
        acked = self._acked.get(tp)
        committed = self._committed_offset.get(tp)
        if offset is None and acked and committed and acked[0] - committed > 1:
            now = self.now()
            held_since = self.held_since.setdefault(tp, now)
            if now - held_since >= self.rewind_after:
                self.log.warning(
                    "Commits of %s[%d] held %.0f s: records from the committed offset %d to %d were never "
                    "acknowledged; reading it again from %d", tp.topic, tp.partition, self.rewind_after,
                    committed, acked[0] - 1, committed,
                )
                self.to_rewind.add(tp)
        else:
            self.held_since.pop(tp, None)
        return offset

    async def _commit_offsets(self, offsets: Mapping[TP, int], start_new_transaction: bool = True) -> bool:
        if not self.in_transaction:
            # Faust flushes its producer before committing, but a failed send does not stop the commit.
            await self.hooks.confirm_sent()
        committed: bool = await super()._commit_offsets(offsets, start_new_transaction)
        return committed

    async def commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        committed: bool = await super().commit(topics, start_new_transaction=start_new_transaction)
        held = self.to_rewind & self.assignment()
        self.to_rewind.clear()
        if held:
            try:
                await cast(WorkerConsumerThread, self._thread).rewind(held)
            except Exception as exc:  # a rebalance may have taken them; tried again while still held
                self.log.warning("Could not read %s again: %r", sorted(held), exc)
        return committed


#: The generation of a message overtaken by a seek: no consumer generation is negative.
OVERTAKEN = -1
