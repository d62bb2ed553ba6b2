"""The worker's topology: input topics, changelog-backed tables, the one thin agent, and the live clock."""

from __future__ import annotations

import logging
import shutil
import time
import traceback
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

import faust
import mode
import msgspec
from aiokafka.errors import KafkaError
from faust.types import TableT
from prometheus_client import CollectorRegistry

from config.settings import Settings
from processors.apply import apply_record
from processors.config import RuleConfig
from processors.failures import UNPROCESSABLE, Rejected, describe_error
from processors.records import (
    CASE_ACTIONS,
    CLOCK_TICKS,
    EHE_NOTIFICATIONS,
    ROLL_EVENTS,
    SAFEGUARDING_STATUS,
    CaseAction,
    ClockTick,
    DeadLetter,
    EHENotification,
    InputRecord,
    RollEvent,
    SafeguardingStatus,
)
from processors.state import ChildState
from processors.timeline import Changes, Timeline
from schemas.codec import AvroCodec
from schemas.errors import CodecError
from sinks.alerts import AlertSink, DeadLetterSink
from sinks.kafka import KafkaAlertSink, KafkaDeadLetterSink, RecordOutbox
from sinks.metrics import MeasuredFrom, Metrics, MetricsRecorder, NoMetrics, PartitionState, count_calendar_fallbacks
from streams.app import create_app
from streams.runtime.tablewrites import ChangelogWrites
from streams.statecodec import decode_state, encode_state
from web.dashboard import install_dashboard
from web.views import KafkaBrokerProbe, install_views

log = logging.getLogger(__name__)
LONDON = ZoneInfo("Europe/London")
_encode_json = msgspec.json.Encoder().encode

RECORD_TYPES: dict[str, type[InputRecord]] = {
    ROLL_EVENTS: RollEvent,
    EHE_NOTIFICATIONS: EHENotification,
    SAFEGUARDING_STATUS: SafeguardingStatus,
    CLOCK_TICKS: ClockTick,
    CASE_ACTIONS: CaseAction,
}


class TableChildStore:
    """Child states in a changelog-backed table keyed by UPN.

    The tables here are read and written through their stores (`table.data`), as ChangelogWrites writes
    them: a read through the table would only add Faust's per-key statistics and, for a key not there yet
    (every new child), a KeyError raised and caught."""

    def __init__(self, table: TableT, writes: ChangelogWrites) -> None:
        self.table = table
        self.writes = writes

    def get(self, upn: str) -> ChildState | None:
        raw = self.table.data.get(upn.encode())
        return decode_state(raw, upn) if raw is not None else None

    def put(self, state: ChildState) -> None:
        self.writes.set(self.table, state.upn.encode(), encode_state(state))


class TableDeadlineIndex:
    """Pending deadlines of one partition as `<partition>|<due date>|<UPN>` keys in a table; the partition
    prefix keeps each partition's index apart in a worker that owns several."""

    def __init__(self, table: TableT, partition: int, writes: ChangelogWrites) -> None:
        self.table = table
        self.prefix = f"{partition}|".encode()
        self.writes = writes
        #: The keys due_before last found, per child, for discard_due_before to delete without a second scan.
        self.found: dict[str, list[bytes]] = {}

    def add(self, due: date, upn: str) -> None:
        self.writes.set(self.table, self.prefix + f"{due.isoformat()}|{upn}".encode(), b"1")

    def due_before(self, business_date: date) -> list[str]:
        limit = business_date.isoformat().encode()
        start = len(self.prefix)
        self.found = {}
        for key in list(self.table.keys()):
            if key.startswith(self.prefix) and key[start : start + 10] < limit:
                # A key that is not UTF-8 names no child: checked as one that has gone, it is then deleted.
                self.found.setdefault(key[start + 11 :].decode(errors="replace"), []).append(key)
        return sorted(self.found)

    def discard_due_before(self, business_date: date, upn: str) -> None:
        for key in self.found.pop(upn, ()):
            self.writes.delete(self.table, key)


class TableBusinessClock:
    """One partition's business date in a table keyed by partition number."""

    def __init__(self, table: TableT, partition: int, writes: ChangelogWrites | None = None) -> None:
        self.table = table
        self.key = str(partition).encode()
        self.writes = writes

    def get(self) -> date | None:
        raw = self.table.data.get(self.key)
        return date.fromisoformat(raw.decode()) if raw is not None else None

    def set(self, today: date) -> None:
        if self.writes is None:
            raise RuntimeError("a business clock read for a report cannot be moved")
        self.writes.set(self.table, self.key, today.isoformat().encode())


@dataclass(frozen=True)
class PartitionTotals:
    """Open cases per holding LA and pending deadlines of one partition, kept alongside its state so that
    they survive restarts and move with the partition."""

    open_cases: dict[str, int] = field(default_factory=dict)
    pending_deadlines: int = 0

    def plus(self, changes: Changes) -> PartitionTotals:
        pending = self.pending_deadlines + changes.deadlines_added - changes.deadlines_ended
        if not changes.cases_opened and not changes.cases_closed:
            # Most changes are deadlines alone: the cases' counts are shared, never changed in place.
            return PartitionTotals(self.open_cases, pending)
        open_cases = dict(self.open_cases)
        for la_code in changes.cases_opened:
            open_cases[la_code] = open_cases.get(la_code, 0) + 1
        for la_code in changes.cases_closed:
            open_cases[la_code] = open_cases.get(la_code, 0) - 1
        return PartitionTotals({la: n for la, n in sorted(open_cases.items()) if n}, pending)

    def encode(self) -> bytes:
        return _encode_json({"open_cases": self.open_cases, "pending_deadlines": self.pending_deadlines})

    @classmethod
    def decode(cls, raw: bytes) -> PartitionTotals:
        plain = msgspec.json.decode(raw)
        return cls(dict(plain["open_cases"]), int(plain["pending_deadlines"]))


class PartitionCounts(Protocol):
    def add(self, partition: int, changes: Changes) -> None: ...

    def get(self, partition: int) -> PartitionTotals: ...


class TablePartitionCounts:
    """Each partition's totals under its partition number in a changelog-backed table."""

    def __init__(self, table: TableT, writes: ChangelogWrites) -> None:
        self.table = table
        self.writes = writes
        #: Per partition, the stored value last read or written and its decoded totals: most records that
        #: change the totals find them as this worker last wrote them, and skip decoding them again.
        self.decoded: dict[int, tuple[bytes, PartitionTotals]] = {}

    def add(self, partition: int, changes: Changes) -> None:
        totals = self.get(partition).plus(changes)
        raw = totals.encode()
        self.writes.set(self.table, str(partition).encode(), raw)
        self.decoded[partition] = (raw, totals)

    def get(self, partition: int) -> PartitionTotals:
        raw = self.table.data.get(str(partition).encode())
        if raw is None:
            return PartitionTotals()
        known = self.decoded.get(partition)
        if known is not None and known[0] == raw:
            return known[1]
        totals = PartitionTotals.decode(raw)
        self.decoded[partition] = (raw, totals)
        return totals


class MemoryPartitionCounts:
    def __init__(self) -> None:
        self.totals: dict[int, PartitionTotals] = {}

    def add(self, partition: int, changes: Changes) -> None:
        self.totals[partition] = self.get(partition).plus(changes)

    def get(self, partition: int) -> PartitionTotals:
        return self.totals.get(partition, PartitionTotals())


def own_time(record: InputRecord) -> datetime | None:
    """The time a record carries of its own, from which an alert's latency is measured."""
    if isinstance(record, RollEvent):
        return record.recorded_at
    if isinstance(record, SafeguardingStatus):
        return record.updated_at
    if isinstance(record, CaseAction):
        return record.at
    return None


def alert_origin(record: InputRecord, broker_timestamp: float | None) -> tuple[float | None, MeasuredFrom]:
    """Unix time the alerts of a record are measured from, and which clock that is."""
    moment = own_time(record)
    if moment is not None:
        aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        return aware.timestamp(), MeasuredFrom.RECORD
    return broker_timestamp, MeasuredFrom.BROKER


@dataclass
class HandledRecord:
    applied: bool
    alerts: int = 0
    error_code: str | None = None


class StateWrites(Protocol):
    """Sends the state a record wrote to where it is kept durably, before the record counts as handled."""

    async def flush(self) -> None: ...

    def discard(self) -> None:
        """Takes back what the record in hand wrote, for a record refused part-way."""
        ...


class NoStateWrites:
    """For stores that keep nothing beyond this process (in-memory timelines in tests)."""

    async def flush(self) -> None:
        return None

    def discard(self) -> None:
        return None


#: Failures of the worker's surroundings rather than of the record in hand: the worker stops, to be restarted
#: from its last commit, instead of dead-lettering a record that did nothing wrong.
SURROUNDINGS_FAILED: tuple[type[BaseException], ...] = (KafkaError, OSError, TimeoutError)

#: A child whose deadlines a tick could not check; its deadlines stay pending and the next tick tries again.
DEADLINE_CHECK_FAILED = "DEADLINE_CHECK_FAILED"


def _where_it_failed(error: BaseException) -> str:
    """The code locations an unforeseen failure passed through (file, line, function, source line): enough
    to find a fault, without the values in its message."""
    cause = error.__cause__ or error
    return "".join(traceback.format_tb(cause.__traceback__)).rstrip()


class RecordHandler:
    """Decode, validate, apply, deliver: everything the agent does with one message, with no Faust in it.

    No record can stop the worker: whatever goes wrong with one (bytes that do not decode, a field no check
    foresaw, a rule that fails on it, a stored state that does not read) dead-letters that record, with the
    state left as it was, and the worker goes on. Only a failure of Kafka or the machine stops it."""

    def __init__(
        self,
        codec: AvroCodec,
        timeline_for: Callable[[int], Timeline],
        alerts: AlertSink,
        dead_letters: DeadLetterSink,
        record_types: dict[str, type[InputRecord]],
        metrics: MetricsRecorder | None = None,
        counts: PartitionCounts | None = None,
        clock: Callable[[], float] = time.time,
        writes: StateWrites | None = None,
    ) -> None:
        self.codec = codec
        self.timeline_for = timeline_for
        self.alerts = alerts
        self.dead_letters = dead_letters
        self.record_types = record_types
        self.metrics: MetricsRecorder = metrics or NoMetrics()
        self.counts: PartitionCounts = counts or MemoryPartitionCounts()
        self.clock = clock
        self.writes: StateWrites = writes or NoStateWrites()

    async def handle(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        timestamp: float | None = None,
    ) -> HandledRecord:
        """Applies or dead-letters one message; `timestamp` is its Kafka timestamp (unix seconds)."""
        raw = value if value is not None else b""  # a tombstone (a null value) is refused like empty bytes
        try:
            record = self.codec.decode(raw, self.record_types[topic])
            applied = apply_record(self.timeline_for(partition), record)
            if applied.changes:
                self.counts.add(partition, applied.changes)
            for alert in applied.alerts:
                await self.alerts.send(alert)
        except SURROUNDINGS_FAILED:
            raise
        except Exception as error:
            self.writes.discard()
            code, message = self._refusal(error, topic, partition, offset)
            await self.dead_letters.send(DeadLetter(raw, topic, partition, offset, code, message), key)
            await self.writes.flush()
            self.metrics.record_dead_lettered(topic, code)
            return HandledRecord(applied=False, error_code=code)
        for failure in applied.failed:
            # The tick itself applies; each child it could not check gets a dead letter keyed by its UPN.
            log.error("deadline check of one child failed at %s[%d]@%d (%s); its deadlines stay pending and "
                      "the next tick checks them again", topic, partition, offset, DEADLINE_CHECK_FAILED)
            letter = DeadLetter(raw, topic, partition, offset, DEADLINE_CHECK_FAILED,
                                "the deadlines of the child named by this dead letter's key could not be checked "
                                f"({failure.error}); they stay pending and the next tick checks them again")
            await self.dead_letters.send(letter, failure.upn.encode())
            self.metrics.deadline_check_failed(topic)
        # The record's state and alerts go out together: see RecordOutbox.
        await self.writes.flush()
        if applied.alerts:
            origin, measured_from = alert_origin(record, timestamp)
            for alert in applied.alerts:
                latency = self.clock() - origin if origin is not None else None
                self.metrics.alert_sent(alert, latency, measured_from)
        self.metrics.record_applied(topic, applied.new)
        count_calendar_fallbacks(self.metrics, self.timeline_for(partition).config)
        return HandledRecord(applied=True, alerts=len(applied.alerts))

    @staticmethod
    def _refusal(error: Exception, topic: str, partition: int, offset: int) -> tuple[str, str]:
        """The code and message a refused record's dead letter carries, logged without personal data."""
        if isinstance(error, CodecError | Rejected):
            code = str(error.code)
            message = error.message
        else:
            code = UNPROCESSABLE
            message = f"the record could not be handled ({describe_error(error)})"
        if code == UNPROCESSABLE:
            # Not a contract rule the sender broke but something no check foresaw: where it failed is what
            # someone needs to fix it.
            log.error("dead-lettered %s[%d]@%d: %s (%s)\n%s", topic, partition, offset, code,
                      type(error.__cause__ or error).__name__, _where_it_failed(error))
        else:
            log.warning("dead-lettered %s[%d]@%d: %s", topic, partition, offset, code)
        return code, message


def london_today(now: datetime | None = None) -> date:
    return (now or datetime.now(tz=LONDON)).astimezone(LONDON).date()


class WallClockTicker:
    """In live mode, decides when the calendar date in England has moved on and a tick is due."""

    def __init__(self, now: Callable[[], datetime] = lambda: datetime.now(tz=LONDON)) -> None:
        self.now = now
        self.last_sent: date | None = None

    def due(self) -> date | None:
        today = london_today(self.now())
        return today if self.last_sent is None or today > self.last_sent else None

    def sent(self, today: date) -> None:
        self.last_sent = today


def discard_local_tables(app: faust.App, settings: Settings) -> bool:
    """Under exactly_once on RocksDB, removes the table files an earlier run left, so that the tables are
    rebuilt from their changelogs, which hold committed writes only; returns whether there were any.

    A record's table writes reach RocksDB at once and its changelog records only at its transaction's
    commit. A run that ended between the two (a crash, a kill, a stop whose last commit did not happen) left
    files holding the state of records whose offsets were never committed, event ids included; read again
    against those files, the records would count their own alerts as already raised, and raise nothing."""
    if settings.processing_guarantee != "exactly_once" or not settings.store.startswith("rocksdb"):
        return False
    tables = Path(app.conf.tabledir)
    if not tables.exists():
        return False
    shutil.rmtree(tables)
    log.info("Rebuilding the tables from their changelogs: removed the RocksDB files of an earlier run, which "
             "may hold writes of records whose transaction never committed")
    return True


def build_worker(settings: Settings, rule_config: RuleConfig, ready_topics: Collection[str] = ()) -> faust.App:
    """The whole worker: an App whose single agent applies every input record in partition order.

    `ready_topics` are the topics known to exist (streams.topics.ensure_worker_topics): the worker neither
    declares them again nor makes its producers learn them one at a time."""
    app = create_app(settings)
    codec = AvroCodec()
    partitions = settings.topic_partitions
    record_types = {settings.topic(name): kind for name, kind in RECORD_TYPES.items()}
    inputs = app.topic(*record_types, key_serializer="raw", value_serializer="raw", partitions=partitions)
    children = app.Table("children", partitions=partitions, key_type=bytes, value_type=bytes)
    deadlines = app.Table("deadlines", partitions=partitions, key_type=bytes, value_type=bytes)
    clocks = app.Table("clocks", partitions=partitions, key_type=bytes, value_type=bytes)
    totals = app.Table("totals", partitions=partitions, key_type=bytes, value_type=bytes)
    outbox = RecordOutbox(app, known_topics=ready_topics)
    app.before_commit.append(outbox.send_pending)
    app.before_commit_offsets.append(outbox.confirm_sent)

    def roll_back(transactions: list[str]) -> None:
        restored = outbox.roll_back(transactions)
        if restored:
            log.info("Put %d table keys back as last committed: their partitions' transactions never will", restored)

    app.on_transactions_lost.append(roll_back)
    writes = ChangelogWrites(outbox)
    child_store = TableChildStore(children, writes)
    counts = TablePartitionCounts(totals, writes)
    metrics = Metrics(CollectorRegistry())
    timelines: dict[int, Timeline] = {}

    def timeline_for(partition: int) -> Timeline:
        timeline = timelines.get(partition)
        if timeline is None:
            timeline = Timeline(
                child_store,
                TableDeadlineIndex(deadlines, partition, writes),
                TableBusinessClock(clocks, partition, writes),
                rule_config,
            )
            timelines[partition] = timeline
        return timeline

    handler = RecordHandler(
        codec,
        timeline_for,
        KafkaAlertSink(app, codec, partitions, outbox, settings.topic_prefix),
        KafkaDeadLetterSink(app, codec, partitions, outbox),
        record_types,
        metrics,
        counts,
        writes=outbox,
    )

    def partition_state(partition: int) -> PartitionState:
        partition_totals = counts.get(partition)
        return PartitionState(
            partition,
            TableBusinessClock(clocks, partition).get(),
            partition_totals.open_cases,
            partition_totals.pending_deadlines,
        )

    if settings.web_enabled:
        install_views(app, metrics, partition_state, set(record_types), KafkaBrokerProbe(settings))

    # A crash here must stop the worker (to be restarted from committed offsets), never leave it idle.
    @app.agent(inputs, concurrency=1, name="apply-records", supervisor_strategy=mode.CrashingSupervisor)
    async def apply_records(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            message = event.message
            await handler.handle(
                message.topic, message.partition, message.offset, message.key, event.value, message.timestamp
            )

    install_dashboard(app, settings)

    if settings.live_clock:
        ticks_topic = app.topic(settings.topic(CLOCK_TICKS), key_serializer="raw", value_serializer="raw")
        wall_clock = WallClockTicker()

        @app.timer(interval=60.0, on_leader=True)
        async def advance_from_wall_clock() -> None:
            today = wall_clock.due()
            if today is None:
                return
            # Each partition keeps its own business date, so the tick goes to every partition.
            for partition in range(partitions):
                await ticks_topic.send(value=codec.encode(ClockTick(today)), partition=partition)
            wall_clock.sent(today)
            log.info("business date advanced from the wall clock to %s", today.isoformat())

    return app
