"""The worker's operational web views: /metrics (Prometheus), /health (alive) and /ready (fit to process)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, cast

import faust
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from faust import web
from faust.exceptions import ConsumerNotStarted
from faust.tables.manager import TableManager
from faust.types import TP
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from config.kafka import connection_options
from config.settings import Settings
from sinks.metrics import Metrics, PartitionLag, PartitionState

log = logging.getLogger(__name__)

HEALTH_PATH = "/health"
READY_PATH = "/ready"
METRICS_PATH = "/metrics"


class BrokerProbe(Protocol):
    async def reachable(self) -> bool: ...


class KafkaBrokerProbe:
    """Asks the cluster for its metadata on a fresh connection: the worker's own clients keep their
    partitions (and so look healthy) for a whole session timeout after the brokers have gone."""

    def __init__(self, settings: Settings, timeout: float = 5.0) -> None:
        self.settings = settings
        self.timeout = timeout

    def client_options(self) -> dict[str, Any]:
        return {
            **connection_options(self.settings),
            "request_timeout_ms": int(self.timeout * 1000),
            "client_id": f"{self.settings.app_id}-ready-probe",
        }

    async def reachable(self) -> bool:
        client = AIOKafkaClient(**self.client_options())
        try:
            await asyncio.wait_for(client.bootstrap(), self.timeout)
        except (KafkaError, OSError, TimeoutError):
            return False
        finally:
            await client.close()
        return True


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """What readiness is judged on, read from the running worker."""

    consumer_started: bool
    rebalancing: bool
    tables_recovered: bool
    active_partitions: frozenset[int]
    broker_reachable: bool


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reasons: tuple[str, ...]

    @property
    def status_code(self) -> int:
        return 200 if self.ready else 503

    def body(self) -> dict[str, Any]:
        return {"ready": self.ready, "reasons": list(self.reasons)}


def judge_readiness(status: WorkerStatus) -> Readiness:
    """Ready means: the broker answers, and this worker owns input partitions whose tables are recovered."""
    reasons = []
    if not status.broker_reachable:
        reasons.append("broker unreachable: no bootstrap server answered a metadata request")
    if not status.consumer_started:
        reasons.append("consumer not started")
    elif status.rebalancing:
        reasons.append("rebalancing: partitions are being reassigned")
    elif not status.active_partitions:
        reasons.append("no input partitions assigned")
    elif not status.tables_recovered:
        reasons.append("tables still recovering from their changelogs")
    return Readiness(not reasons, tuple(reasons))


class Inspector(Protocol):
    """What the views read from the worker: `WorkerInspector` on a Faust app, a fixed double in unit tests."""

    async def status(self) -> WorkerStatus: ...

    async def lags(self) -> list[PartitionLag]: ...


class WorkerInspector:
    """Reads assignment, rebalancing, recovery and offsets from a running Faust app, tolerating the moments
    (start-up, rebalances) when the consumer cannot answer yet."""

    def __init__(self, app: faust.App, input_topics: Collection[str], broker: BrokerProbe) -> None:
        self.app = app
        self.input_topics = frozenset(input_topics)
        self.broker = broker

    def active_input_partitions(self) -> set[TP]:
        try:
            assigned = self.app.consumer.assignment()
        except ConsumerNotStarted:
            return set()
        actives = self.app.assignor.assigned_actives()
        return {tp for tp in assigned & actives if tp.topic in self.input_topics}

    def consumer_started(self) -> bool:
        try:
            self.app.consumer.assignment()
        except ConsumerNotStarted:
            return False
        return True

    async def status(self) -> WorkerStatus:
        recovery = cast(TableManager, self.app.tables).recovery
        return WorkerStatus(
            consumer_started=self.consumer_started(),
            rebalancing=bool(self.app.rebalancing),
            tables_recovered=recovery.completed.is_set() and not self.app.in_recovery,
            active_partitions=frozenset(tp.partition for tp in self.active_input_partitions()),
            broker_reachable=await self.broker.reachable(),
        )

    async def lags(self) -> list[PartitionLag]:
        """Records between this worker's position and the end of each owned input partition (the last stable
        offset under exactly-once, so open transactions do not count)."""
        consumer = self.app.consumer
        lags = []
        for tp in sorted(self.active_input_partitions()):
            try:
                end = consumer.highwater(tp)
                position = await consumer.position(tp)
            except (ConsumerNotStarted, KafkaError, AssertionError) as error:
                # A partition revoked between listing and asking: it is simply not ours to report.
                log.debug("no lag for %s[%d]: %r", tp.topic, tp.partition, error)
                continue
            if end is None or position is None:
                continue
            lags.append(PartitionLag(tp.topic, tp.partition, max(end - position, 0)))
        return lags


async def refresh_metrics(
    metrics: Metrics, inspector: Inspector, partition_state: Callable[[int], PartitionState]
) -> Readiness:
    """Brings the gauges up to date with the worker; everything slow happens before any gauge changes."""
    status = await inspector.status()
    lags = await inspector.lags()
    states = states_of(status.active_partitions, partition_state)
    readiness = judge_readiness(status)
    metrics.show_worker_state(states, lags, readiness.ready)
    return readiness


def states_of(partitions: Iterable[int], partition_state: Callable[[int], PartitionState]) -> list[PartitionState]:
    return [partition_state(partition) for partition in sorted(partitions)]


def install_views(
    app: faust.App,
    metrics: Metrics,
    partition_state: Callable[[int], PartitionState],
    input_topics: Collection[str],
    broker: BrokerProbe,
) -> None:
    """Adds /health, /ready and /metrics to the worker's web server."""
    inspector = WorkerInspector(app, input_topics, broker)

    class Health(web.View):
        """Answers as long as the process runs its event loop."""

        async def get(self, request: web.Request) -> web.Response:
            return self.json({"status": "alive", **metrics.health()})

    class Ready(web.View):
        """200 when this worker can process records, 503 with the reasons otherwise."""

        async def get(self, request: web.Request) -> web.Response:
            readiness = judge_readiness(await inspector.status())
            return self.json(readiness.body(), status=readiness.status_code)

    class MetricsText(web.View):
        """Prometheus text exposition of the worker's registry."""

        async def get(self, request: web.Request) -> web.Response:
            await refresh_metrics(metrics, inspector, partition_state)
            return self.bytes(generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.page(HEALTH_PATH, name="health")(Health)
    app.page(READY_PATH, name="ready")(Ready)
    app.page(METRICS_PATH, name="metrics")(MetricsText)
