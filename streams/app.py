"""The Faust application factory: one configured App per call, built from the settings, no module globals."""

from __future__ import annotations

import asyncio
import ssl
from collections import defaultdict
from collections.abc import Awaitable, Callable, Container, Mapping
from typing import Any

import faust
from aiokafka.errors import ProducerFenced
from faust.transport.consumer import TransactionManager
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer
from faust.types import TP

from sinks.kafka import transactional_id
from streams.settings import Settings


async def drain(buffer: Any) -> None:
    """Returns once Faust's producer buffer has handed every queued message on to be sent.

    The buffer's flush gives up after 0.1 s without a message sent, hence the loop. A message the buffer
    has taken already waits on (or holds) its transaction's lock, which the commit takes after it."""
    while buffer.size:
        await buffer.flush()


class RevocationSafeTransactionManager(TransactionManager):
    """Faust's transaction manager, with three changes.

    A commit first drains Faust's producer buffer. The worker's own table writes and alerts no longer pass
    through it (see sinks.kafka.RecordOutbox), but anything Faust sends there for a record must join the
    transaction that commits the record's offset, and Faust commits without waiting for the buffer.

    Partitions' transactions are committed concurrently instead of one after another: each commit holds
    its partition's lock and carries what the partition's records sent since the last, so one after another
    they took the sum of every partition's round trips at each interval.

    A rebalance stops the transactional producer of every partition this worker no longer owns. Faust
    skips partitions it keeps as standbys, so such a producer lived on, was fenced once another worker
    took the partition, and crashed this worker when the partition came back to it."""

    async def commit(self, offsets: Mapping[TP, int], start_new_transaction: bool = True) -> bool:
        await drain(self.producer.buffer)
        group_id = self.app.conf.id
        by_transaction: dict[str, dict[TP, int]] = defaultdict(dict)
        for tp, offset in offsets.items():
            by_transaction[transactional_id(self.app, tp)][tp] = offset
        outcomes = await asyncio.gather(
            *(
                self._commit_one(transaction, tp_offsets, group_id, start_new_transaction)
                for transaction, tp_offsets in by_transaction.items()
            ),
            return_exceptions=True,  # every partition's commit ends before this one returns
        )
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        fenced = [failure for failure in failures if isinstance(failure, ProducerFenced)]
        if len(fenced) < len(failures):
            raise next(failure for failure in failures if not isinstance(failure, ProducerFenced))
        if fenced:
            # As Faust does: another worker owns the partition now; crash, to be restarted and rebalanced.
            self.log.warning("Producer fenced: %r", fenced[0])
            await self.app.crash(fenced[0])
        return True

    async def _commit_one(
        self, transaction: str, offsets: dict[TP, int], group_id: str, start_new_transaction: bool
    ) -> None:
        for send_pending in getattr(self.app, "before_commit", ()):
            await send_pending(transaction)
        await self.producer.commit_transactions({transaction: offsets}, group_id, start_new_transaction)

    async def on_rebalance(self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP]) -> None:
        keep = self._tps_to_transactional_ids(assigned)
        producers: dict[str, Any] = getattr(self.producer, "_transaction_producers", {})
        stale = sorted(tid for tid in producers if tid not in keep)
        if stale:
            self.log.info("Stopping %d transactional producers of partitions no longer owned", len(stale))
            await self._stop_transactions(stale)
        await super().on_rebalance(assigned, revoked, newly_assigned)


async def seek_to_committed_or_start(consumer: Any, changelog_topics: Container[str]) -> Mapping[Any, int | None]:
    """Seeks every assigned input partition to its committed offset, and one never committed to its start.

    aiokafka seeks only partitions with a committed offset past 0 and leaves the others where the fetcher
    got to. Records fetched there and then dropped by Faust because a rebalance had begun meanwhile (it
    drops a fetch that spans a generation change) were never fetched again: with no commit yet, a
    partition's first records were lost and the worker waited for them for good. Changelogs are left to
    Faust's recovery, which positions them itself."""
    committed: Mapping[Any, int | None] = await consumer.seek_to_committed()
    never_committed = [tp for tp, offset in committed.items() if not offset and tp.topic not in changelog_topics]
    if never_committed:
        # Seeking to the offsets looked up, not with seek_to_beginning: that leaves a partition with no
        # position until a reset completes, and Faust's livelock check then crashes the worker reading it.
        starts: Mapping[Any, int] = await consumer.beginning_offsets(never_committed)
        for tp, offset in starts.items():
            consumer.seek(tp, offset)
    return committed


class WorkerConsumerThread(AIOKafkaConsumerThread):
    """Faust's consumer thread, with two changes.

    The broker's wait for new records is a setting. Faust fixes it at 1.5 s, and aiokafka leaves out of its
    next fetch every partition it still holds records of: while the agent works through one partition's
    records the fetch in flight asks only for the others, and when they are quiet (a stream of roll events
    and no EHE notices, say) the broker holds it the whole wait while the busy partition's new records sit
    there. Every alert came about 1.3 s late at 1,000 events a second.

    After a rebalance, partitions never committed are sought to their start (`seek_to_committed_or_start`)."""

    fetch_max_wait_ms = 1500

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read when the consumer starts and builds its fetcher, which is after this.
        consumer._fetch_max_wait_ms = self.fetch_max_wait_ms
        return consumer

    async def seek_to_committed(self) -> Mapping[TP, int]:
        consumer = self._ensure_consumer()
        changelogs = self.app.tables.changelog_topics
        return await self.call_thread(seek_to_committed_or_start, consumer, changelogs)


class WorkerConsumer(Consumer):
    """Faust's aiokafka consumer, run on a WorkerConsumerThread."""

    thread_class: type[WorkerConsumerThread] = WorkerConsumerThread

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return self.thread_class(self, loop=self.loop, beacon=self.beacon)


def broker_credentials(settings: Settings) -> faust.SASLCredentials | faust.SSLCredentials | None:
    """Translates the settings' security options into Faust credentials (None for PLAINTEXT)."""
    protocol = settings.security_protocol
    context: ssl.SSLContext | None = None
    if protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None)
    if protocol.startswith("SASL"):
        password = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
        return faust.SASLCredentials(
            username=settings.sasl_username or "",
            password=password,
            mechanism=settings.sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


BeforeCommit = Callable[[str], Awaitable[None]]


class RollwatchApp(faust.App):
    """A Faust App whose transaction manager first awaits each of `before_commit` with the transactional id
    of every partition it is about to commit (the worker's outbox sends what waits for that commit)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.before_commit: list[BeforeCommit] = []


def create_app(settings: Settings, *, app_id: str | None = None) -> RollwatchApp:
    """A Faust App tuned for real brokers: agent concurrency 1 (see kafka-notes), explicit timeouts,
    co-partitioned topics, nothing discovered or connected until the worker starts it."""
    app = RollwatchApp(
        app_id or settings.app_id,
        broker=settings.faust_broker_url,
        broker_credentials=broker_credentials(settings),
        autodiscover=False,
        store=settings.store,
        datadir=str(settings.data_dir),
        processing_guarantee=settings.processing_guarantee,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        topic_disable_leader=True,
        # Faust falls back to a round-robin assignor (which breaks exactly_once) when an app has neither
        # tables nor standbys; at least one standby keeps its co-partitioning assignor in every case.
        table_standby_replicas=max(settings.table_standby_replicas, 1)
        if settings.processing_guarantee == "exactly_once"
        else settings.table_standby_replicas,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.broker_session_timeout,
        broker_heartbeat_interval=settings.broker_heartbeat_interval,
        broker_rebalance_timeout=settings.broker_rebalance_timeout,
        broker_request_timeout=settings.broker_request_timeout,
        broker_commit_interval=settings.broker_commit_interval,
        producer_linger=settings.producer_linger,
        stream_recovery_delay=0.5,
        producer_acks=-1,
        web_enabled=settings.web_enabled,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        key_serializer="raw",
        value_serializer="raw",
        timezone="Europe/London",
    )
    # Building the transport object opens no connection; it only picks the classes the worker will use.
    app.transport.TransactionManager = RevocationSafeTransactionManager  # type: ignore[misc]
    thread_class = type(
        "WorkerConsumerThread", (WorkerConsumerThread,), {"fetch_max_wait_ms": round(settings.fetch_max_wait * 1000)}
    )
    app.transport.Consumer = type("WorkerConsumer", (WorkerConsumer,), {"thread_class": thread_class})  # type: ignore[misc]
    return app
