"""Metrics of `register sync` (lag, last batch stored) and `register deliver` (pending, last delivery finished)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from prometheus_client import CollectorRegistry

from sinks.metrics import DeliveryMetrics, MemorySyncMetrics, SyncMetrics
from sinks.register.deliveries import MemoryDeliveryLog
from sinks.register.feed import lag_by_topic
from sinks.register.schema import DeliveryOutcome
from sinks.webhook import DeliveryResult, Endpoint, RetryPolicy, WebhookDispatcher
from tests.unit.test_register_feed import ALERT

POLICY = RetryPolicy(max_attempts=1, backoff_initial=0.01, backoff_max=0.01, retry_after_max=1.0, timeout=1.0)
ENDPOINT = Endpoint("331", "https://la331.example.org/hook", "whsec_" + "A" * 32)


class TP(NamedTuple):
    topic: str
    partition: int


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels or None)


def test_lag_sums_each_topics_partitions_and_never_goes_below_zero() -> None:
    ends = {TP("la.331.alerts.cme-officer", 0): 10, TP("la.331.alerts.cme-officer", 1): 4, TP("case.actions", 0): 3}
    positions = {TP("la.331.alerts.cme-officer", 0): 7, TP("la.331.alerts.cme-officer", 1): 4, TP("case.actions", 0): 5}
    assert lag_by_topic(ends, positions) == {"la.331.alerts.cme-officer": 3, "case.actions": 0}
    assert lag_by_topic({TP("case.actions", 0): 2}, {}) == {"case.actions": 2}


def test_sync_metrics_show_the_start_then_each_batch_stored_and_the_lag_of_topics_still_read() -> None:
    registry = CollectorRegistry()
    metrics = SyncMetrics(registry, started=1000.0)
    assert value(registry, "rollwatch_register_sync_last_success_seconds") == 1000.0
    metrics.batch_stored(1234.5)
    assert value(registry, "rollwatch_register_sync_last_success_seconds") == 1234.5
    metrics.show_lag({"la.331.alerts.cme-officer": 7, "case.actions": 0})
    assert value(registry, "rollwatch_register_sync_lag", topic="la.331.alerts.cme-officer") == 7
    metrics.show_lag({"case.actions": 2})
    assert value(registry, "rollwatch_register_sync_lag", topic="la.331.alerts.cme-officer") is None
    assert value(registry, "rollwatch_register_sync_lag", topic="case.actions") == 2


def test_the_memory_double_keeps_what_sync_reports() -> None:
    metrics = MemorySyncMetrics()
    metrics.batch_stored(5.0)
    metrics.show_lag({"case.actions": 1})
    assert metrics.stored_at == [5.0] and metrics.lag == {"case.actions": 1}


def test_delivery_metrics_count_pending_down_as_deliveries_finish_and_note_the_last() -> None:
    registry = CollectorRegistry()
    metrics = DeliveryMetrics(registry)
    assert value(registry, "rollwatch_register_deliver_last_success_seconds") == 0
    metrics.pending_found("331", 2)
    before = time.time()
    metrics.delivery_finished("webhook", "331", "delivered")
    assert value(registry, "rollwatch_register_pending_deliveries", la_code="331") == 1
    assert (value(registry, "rollwatch_register_deliver_last_success_seconds") or 0) >= before
    metrics.delivery_finished("webhook", "331", "dead_lettered")
    metrics.delivery_finished("webhook", "331", "delivered")
    assert value(registry, "rollwatch_register_pending_deliveries", la_code="331") == 0


class AnsweringSender:
    """Stands in for the HTTP sender: every alert is delivered at the first attempt."""

    async def deliver(
        self, endpoint: Endpoint, alert: object, attempts: int, note_failure: Callable[[int, str], Awaitable[None]]
    ) -> DeliveryResult:
        return DeliveryResult(getattr(alert, "alert_id", ""), DeliveryOutcome.DELIVERED, attempts + 1, None)


def test_the_dispatcher_reports_what_it_found_pending_and_each_delivery_finished() -> None:
    registry = CollectorRegistry()
    metrics = DeliveryMetrics(registry)
    log = MemoryDeliveryLog([ALERT])
    dispatcher = WebhookDispatcher(log, {"331": ENDPOINT}, POLICY, recorder=metrics)
    asyncio.run(dispatcher._la_worker(AnsweringSender(), ENDPOINT, once=True))  # type: ignore[arg-type]
    assert [result.outcome for result in dispatcher.results] == [DeliveryOutcome.DELIVERED]
    assert value(registry, "rollwatch_register_pending_deliveries", la_code="331") == 0
    assert value(registry, "rollwatch_deliveries_total", channel="webhook", la_code="331", outcome="delivered") == 1
    assert (value(registry, "rollwatch_register_deliver_last_success_seconds") or 0) > 0
