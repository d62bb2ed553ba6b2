"""The worker's topology: input topics, changelog-backed tables, the one thin agent, and the live clock."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from datetime import date, datetime
from zoneinfo import ZoneInfo

import faust
import mode
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from config.settings import Settings
from processors.config import RuleConfig
from processors.records import ATTENDANCE_REGISTERS, CLOCK_TICKS, ClockTick
from processors.timeline import Timeline
from schemas.codec import AvroCodec
from sinks.alerts import AlertSink, DeadLetterSink
from sinks.kafka import KafkaAlertSink, KafkaDeadLetterSink
from sinks.metrics import Metrics, PartitionState
from streams.app import create_app
from streams.batches import OutboxBatchSink, TableRegisterLedger, partitioner
from streams.handler import RECORD_TYPES, RecordHandler, RegisterRoute
from streams.runtime.tablewrites import ChangelogWrites
from streams.tables import (
    TableAttendanceStore,
    TableBusinessClock,
    TableChildStore,
    TableDeadlineIndex,
    TablePartitionCounts,
    TablePresentDays,
)
from streams.topics import mark_batches_topic, wait_until_served
from streams.tracing import TracedAlerts, TracedDeadLetters, install_tracing
from web.casework import install_casework
from web.dashboard import install_dashboard
from web.views import KafkaBrokerProbe, install_views

log = logging.getLogger(__name__)
LONDON = ZoneInfo("Europe/London")


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



def build_worker(
    settings: Settings,
    rule_config: RuleConfig,
    ready_topics: Collection[str] = (),
    tracer: TracerProvider | None = None,
) -> faust.App:
    """The whole worker: an App whose single agent applies every input record in partition order.

    `ready_topics` are the topics known to exist (streams.topics.ensure_worker_topics): the worker neither
    declares them again nor makes its producers learn them one at a time. Each input record is traced with
    `tracer`, or, without one, over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set (streams/tracing.py)."""
    app = create_app(settings, known_topics=ready_topics)
    codec = AvroCodec()
    partitions = settings.topic_partitions
    record_types = {settings.topic(name): kind for name, kind in RECORD_TYPES.items()}
    batches_topic = mark_batches_topic(settings)
    inputs = app.topic(
        *record_types, batches_topic, key_serializer="raw", value_serializer="raw", partitions=partitions
    )
    children = app.Table("children", partitions=partitions, key_type=bytes, value_type=bytes)
    deadlines = app.Table("deadlines", partitions=partitions, key_type=bytes, value_type=bytes)
    clocks = app.Table("clocks", partitions=partitions, key_type=bytes, value_type=bytes)
    totals = app.Table("totals", partitions=partitions, key_type=bytes, value_type=bytes)
    registers = app.Table("registers", partitions=partitions, key_type=bytes, value_type=bytes)
    attendance = app.Table("attendance", partitions=partitions, key_type=bytes, value_type=bytes)
    present = app.Table("present", partitions=partitions, key_type=bytes, value_type=bytes)
    outbox = app.outbox
    writes = ChangelogWrites(outbox)
    child_store = TableChildStore(children, writes)
    attendance_store = TableAttendanceStore(attendance, writes)
    counts = TablePartitionCounts(totals, writes)
    metrics = Metrics(CollectorRegistry())
    ledger = TableRegisterLedger(registers, writes)
    timelines: dict[int, Timeline] = {}

    def timeline_for(partition: int) -> Timeline:
        timeline = timelines.get(partition)
        if timeline is None:
            timeline = Timeline(
                child_store,
                TableDeadlineIndex(deadlines, partition, writes),
                TableBusinessClock(clocks, partition, writes),
                rule_config,
                attendance=attendance_store,
                present=TablePresentDays(present, partition, writes),
            )
            timelines[partition] = timeline
        return timeline

    async def served(topic: str) -> None:
        await asyncio.to_thread(wait_until_served, settings, [topic])

    alerts: AlertSink = KafkaAlertSink(app, codec, partitions, outbox, settings.topic_prefix, served)
    dead_letters: DeadLetterSink = KafkaDeadLetterSink(app, codec, partitions, outbox, served=served)
    if install_tracing(app, tracer):
        alerts, dead_letters = TracedAlerts(alerts), TracedDeadLetters(dead_letters)
    handler = RecordHandler(
        codec,
        timeline_for,
        alerts,
        dead_letters,
        record_types,
        metrics,
        counts,
        writes=outbox,
        registers=RegisterRoute(
            registers_topic=settings.topic(ATTENDANCE_REGISTERS),
            ledger_for=lambda: ledger,
            batches=OutboxBatchSink(outbox, batches_topic),
            batches_topic=batches_topic,
            partition_of=partitioner(partitions),
        ),
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

    dashboard = install_dashboard(app, settings)
    if dashboard is not None:
        install_casework(app, settings, dashboard)

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
