"""The logic behind /ready and /metrics without a running worker: readiness verdicts and gauge refreshes."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import date

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sinks.metrics import Metrics, PartitionLag, PartitionState
from web.views import Readiness, WorkerStatus, judge_readiness, refresh_metrics

READY = WorkerStatus(
    consumer_started=True, rebalancing=False, tables_recovered=True, active_partitions=frozenset({0, 2}),
    broker_reachable=True,
)


def test_a_worker_with_partitions_recovered_tables_and_a_broker_is_ready() -> None:
    verdict = judge_readiness(READY)
    assert verdict == Readiness(True, ())
    assert (verdict.status_code, verdict.body()) == (200, {"ready": True, "reasons": []})


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"broker_reachable": False}, "broker unreachable: no bootstrap server answered a metadata request"),
        ({"consumer_started": False}, "consumer not started"),
        ({"rebalancing": True}, "rebalancing: partitions are being reassigned"),
        ({"active_partitions": frozenset()}, "no input partitions assigned"),
        ({"tables_recovered": False}, "tables still recovering from their changelogs"),
    ],
)
def test_each_missing_condition_makes_it_unready_with_its_reason(change: dict[str, object], reason: str) -> None:
    verdict = judge_readiness(replace(READY, **change))  # type: ignore[arg-type]
    assert (verdict.status_code, verdict.body()) == (503, {"ready": False, "reasons": [reason]})


def test_an_unreachable_broker_is_reported_alongside_the_consumer_state() -> None:
    verdict = judge_readiness(replace(READY, broker_reachable=False, active_partitions=frozenset()))
    assert verdict.reasons == (
        "broker unreachable: no bootstrap server answered a metadata request",
        "no input partitions assigned",
    )


class FixedInspector:
    def __init__(self, status: WorkerStatus, lags: list[PartitionLag]) -> None:
        self._status = status
        self._lags = lags

    async def status(self) -> WorkerStatus:
        return self._status

    async def lags(self) -> list[PartitionLag]:
        return self._lags


def exposition(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_refresh_shows_exactly_the_owned_partitions_in_the_exposition() -> None:
    metrics = Metrics(CollectorRegistry())
    asked: list[int] = []

    def partition_state(partition: int) -> PartitionState:
        asked.append(partition)
        return PartitionState(partition, date(2025, 3, 4 + partition), {"330": partition + 1}, partition * 2)

    inspector = FixedInspector(READY, [PartitionLag("roll.events", 0, 5), PartitionLag("roll.events", 2, 0)])
    readiness = asyncio.run(refresh_metrics(metrics, inspector, partition_state))
    assert readiness.ready
    assert asked == [0, 2]
    samples = exposition(metrics)
    assert samples["rollwatch_open_cases", (("la_code", "330"), ("partition", "2"))] == 3
    assert samples["rollwatch_pending_deadlines", (("partition", "2"),)] == 4
    assert samples["rollwatch_consumer_lag", (("partition", "0"), ("topic", "roll.events"))] == 5
    assert samples["rollwatch_worker_ready", ()] == 1
    assert not any(name == "rollwatch_pending_deadlines" and labels == (("partition", "1"),)
                   for name, labels in samples)

    unready = FixedInspector(replace(READY, rebalancing=True, active_partitions=frozenset({1})), [])
    asked.clear()
    asyncio.run(refresh_metrics(metrics, unready, partition_state))
    samples = exposition(metrics)
    assert asked == [1]
    assert samples["rollwatch_worker_ready", ()] == 0
    assert ("rollwatch_pending_deadlines", (("partition", "0"),)) not in samples
    assert not any(name == "rollwatch_consumer_lag" for name, _ in samples)
