"""Metrics: their own registry, consumed = applied + dead-lettered, alerts and latency, and the per-partition
totals of open cases and pending deadlines kept in step with the children's states."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from prometheus_client import REGISTRY, CollectorRegistry

from processors.calendar import default_calendar
from processors.config import RuleConfig
from processors.records import CLOCK_TICKS, ROLL_EVENTS, ClockTick, Rule
from processors.state import ChildState
from processors.timeline import Changes, MemoryChildStore, memory_timeline
from schemas.codec import AvroCodec
from schemas.jsonformat import parse_line
from sinks.alerts import MemoryAlertSink, MemoryDeadLetterSink
from sinks.metrics import (
    DeliveryMetrics,
    MeasuredFrom,
    MemoryMetrics,
    Metrics,
    PartitionLag,
    PartitionState,
    date_as_unix_time,
)
from streams.handler import RECORD_TYPES, RecordHandler
from streams.tables import MemoryPartitionCounts, PartitionTotals, TablePartitionCounts
from tests.scenarios.builder import Scenario
from tests.scenarios.catalogue import SCENARIOS
from tests.unit.test_record_handler import MISSING, topic_for
from tests.unit.test_validation import WIRE_BAD_RECORDS

CODEC = AvroCodec()
NOW = 1_750_000_000.0


def handler_with(
    metrics: Metrics | MemoryMetrics, counts: MemoryPartitionCounts | None = None
) -> tuple[RecordHandler, MemoryAlertSink, MemoryChildStore]:
    timeline = memory_timeline(RuleConfig(default_calendar()))
    alerts = MemoryAlertSink()
    handler = RecordHandler(
        CODEC, lambda _partition: timeline, alerts, MemoryDeadLetterSink(), RECORD_TYPES, metrics, counts,
        clock=lambda: NOW,
    )
    assert isinstance(timeline.children, MemoryChildStore)
    return handler, alerts, timeline.children


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def feed(handler: RecordHandler, messages: list[tuple[str, bytes]], timestamp: float | None = None) -> None:
    async def run() -> None:
        for offset, (topic, raw) in enumerate(messages):
            await handler.handle(topic, 0, offset, b"key", raw, timestamp)

    asyncio.run(run())


def scenario_messages() -> list[tuple[str, bytes]]:
    messages = []
    for scenario in SCENARIOS:
        for line in scenario.lines():
            topic, record = parse_line(line)
            messages.append((topic, CODEC.encode(record)))
    return messages


def test_metrics_live_only_in_the_registry_they_are_given() -> None:
    first, second = Metrics(CollectorRegistry()), Metrics(CollectorRegistry())
    first.record_applied(ROLL_EVENTS, changed=True)
    assert sample(first, "rollwatch_records_applied_total", topic=ROLL_EVENTS) == 1
    assert sample(second, "rollwatch_records_applied_total", topic=ROLL_EVENTS) == 0
    assert REGISTRY.get_sample_value("rollwatch_records_applied_total", {"topic": ROLL_EVENTS}) is None


def test_every_consumed_record_is_counted_applied_or_dead_lettered() -> None:
    metrics = Metrics(CollectorRegistry())
    handler, _alerts, _children = handler_with(metrics)
    bad = [(topic_for(record), CODEC.encode(record)) for _, record, _ in WIRE_BAD_RECORDS]
    garbage = [(ROLL_EVENTS, b"not avro"), (CLOCK_TICKS, b"\x00")]
    messages = scenario_messages() + bad + garbage
    feed(handler, messages)

    per_topic = Counter(topic for topic, _ in messages)
    for topic, count in per_topic.items():
        consumed = sample(metrics, "rollwatch_records_consumed_total", topic=topic)
        applied = sample(metrics, "rollwatch_records_applied_total", topic=topic)
        dead = sum(
            s.value for family in metrics.registry.collect() if family.name == "rollwatch_records_dead_lettered"
            for s in family.samples if s.name.endswith("_total") and s.labels["topic"] == topic
        )
        assert consumed == count
        assert consumed == applied + dead, topic
    assert isinstance(handler.dead_letters, MemoryDeadLetterSink)
    letters = Counter((letter.source_topic, letter.error_code) for letter in handler.dead_letters.letters)
    assert {str(code) for _, _, code in WIRE_BAD_RECORDS} <= {code for _, code in letters}
    for (topic, code), count in letters.items():
        assert sample(metrics, "rollwatch_records_dead_lettered_total", topic=topic, error_code=code) == count
    assert sample(metrics, "rollwatch_records_dead_lettered_total", topic=ROLL_EVENTS, error_code="BAD_MARKER") == 1


def test_alerts_are_counted_by_rule_recipient_severity_and_la() -> None:
    metrics = Metrics(CollectorRegistry())
    handler, alerts, _children = handler_with(metrics)
    feed(handler, scenario_messages(), timestamp=NOW)
    expected = Counter((str(a.rule), str(a.recipient), str(a.severity), a.la_code) for a in alerts.alerts)
    assert len(expected) > 5
    for (rule, recipient, severity, la_code), count in expected.items():
        assert sample(
            metrics, "rollwatch_alerts_total", rule=rule, recipient=recipient, severity=severity, la_code=la_code
        ) == count
    assert sample(metrics, "rollwatch_event_to_alert_seconds_count", measured_from="record") + sample(
        metrics, "rollwatch_event_to_alert_seconds_count", measured_from="broker"
    ) == len(alerts.alerts)


def test_a_repeated_record_counts_as_applied_and_unchanged() -> None:
    metrics = Metrics(CollectorRegistry())
    handler, alerts, _children = handler_with(metrics)
    raw = CODEC.encode(MISSING)
    feed(handler, [(ROLL_EVENTS, raw), (ROLL_EVENTS, raw)])
    assert sample(metrics, "rollwatch_records_applied_total", topic=ROLL_EVENTS) == 2
    assert sample(metrics, "rollwatch_records_unchanged_total", topic=ROLL_EVENTS) == 1
    assert len(alerts.alerts) == 1


def test_latency_runs_from_recorded_at_for_a_roll_event() -> None:
    recorded = NOW - 42.0
    event = replace(MISSING, recorded_at=datetime.fromtimestamp(recorded, tz=UTC))
    recorder = MemoryMetrics()
    handler, _alerts, _children = handler_with(recorder)
    feed(handler, [(ROLL_EVENTS, CODEC.encode(event))], timestamp=NOW - 1.0)
    assert recorder.latencies == [(MeasuredFrom.RECORD, pytest.approx(42.0))]


def test_deadline_alerts_measure_from_the_ticks_kafka_timestamp() -> None:
    scenario = next(s for s in SCENARIOS if any(e[0] == "TRANSITION_NOT_COMPLETED" for e in s.expected))
    recorder = MemoryMetrics()
    handler, _alerts, _children = handler_with(recorder)

    async def run() -> None:
        for offset, line in enumerate(scenario.lines()):
            topic, record = parse_line(line)
            # Ticks were published 7 s ago; other records carry their own (much older) times.
            await handler.handle(topic, 0, offset, None, CODEC.encode(record), NOW - 7.0)

    asyncio.run(run())
    deadline_alerts = [a for a in recorder.alerts if a.rule is Rule.TRANSITION_NOT_COMPLETED]
    assert deadline_alerts
    broker_measured = [seconds for source, seconds in recorder.latencies if source is MeasuredFrom.BROKER]
    assert broker_measured.count(pytest.approx(7.0)) >= len(deadline_alerts)


def test_a_negative_latency_from_a_fast_clock_counts_as_immediate() -> None:
    metrics = Metrics(CollectorRegistry())
    handler, alerts, _children = handler_with(MemoryMetrics())
    feed(handler, [(ROLL_EVENTS, CODEC.encode(MISSING))])
    [alert] = alerts.alerts
    metrics.alert_sent(alert, -3.0, MeasuredFrom.RECORD)
    assert sample(metrics, "rollwatch_event_to_alert_seconds_bucket", measured_from="record", le="0.05") == 1
    assert sample(metrics, "rollwatch_event_to_alert_seconds_sum", measured_from="record") == 0


def recount(states: list[ChildState]) -> PartitionTotals:
    open_cases: Counter[str] = Counter()
    for state in states:
        if state.case is not None:
            open_cases.update(state.case.holders)
    return PartitionTotals(dict(sorted(open_cases.items())), sum(len(state.deadlines) for state in states))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_totals_kept_from_changes_equal_a_recount_after_every_record(scenario: Scenario) -> None:
    counts = MemoryPartitionCounts()
    handler, _alerts, children = handler_with(MemoryMetrics(), counts)

    async def run() -> None:
        for offset, line in enumerate(scenario.lines()):
            topic, record = parse_line(line)
            await handler.handle(topic, 5, offset, None, CODEC.encode(record))
            assert counts.get(5) == recount(list(children)), f"after line {offset + 1}"

    asyncio.run(run())


def test_some_scenario_opens_and_one_closes_a_case() -> None:
    """The recount test above means something only if cases and deadlines come and go in the catalogue."""
    seen_open, seen_close, seen_deadline_end = False, False, False
    for scenario in SCENARIOS:
        timeline = memory_timeline(RuleConfig(default_calendar()))
        for line in scenario.lines():
            changes = timeline.apply(parse_line(line)[1]).changes
            seen_open |= bool(changes.cases_opened)
            seen_close |= bool(changes.cases_closed)
            seen_deadline_end |= changes.deadlines_ended > 0
    assert seen_open and seen_close and seen_deadline_end


def test_partition_totals_survive_their_encoding() -> None:
    totals = PartitionTotals({"330": 2, "331": 1}, 4)
    assert PartitionTotals.decode(totals.encode()) == totals


class DictTable:
    """A table as the worker's table stores use it: its store, `data`, read and written directly."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}


class DirectWrites:
    def set(self, table: DictTable, key: bytes, value: bytes) -> None:
        table.data[key] = value


def test_table_totals_follow_their_stored_value_even_when_it_changes_underneath() -> None:
    table = DictTable()
    counts = TablePartitionCounts(table, DirectWrites())  # type: ignore[arg-type]
    counts.add(1, Changes(cases_opened=("330",), deadlines_added=2))
    counts.add(1, Changes(cases_opened=("331",), deadlines_ended=1))
    assert counts.get(1) == PartitionTotals({"330": 1, "331": 1}, 1)
    assert PartitionTotals.decode(table.data[b"1"]) == counts.get(1)

    # A changelog recovery (the partition back from another worker) stores what that worker wrote.
    table.data[b"1"] = PartitionTotals({"332": 5}, 7).encode()
    assert counts.get(1) == PartitionTotals({"332": 5}, 7)
    counts.add(1, Changes(cases_closed=("332",)))
    assert counts.get(1) == PartitionTotals({"332": 4}, 7)
    assert counts.get(2) == PartitionTotals()


def test_worker_state_gauges_are_replaced_whole() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.show_worker_state(
        [PartitionState(0, date(2025, 3, 4), {"330": 2, "331": 0}, 3), PartitionState(1, None, {}, 0)],
        [PartitionLag("roll.events", 0, 12)],
        ready=True,
    )
    assert sample(metrics, "rollwatch_open_cases", la_code="330", partition="0") == 2
    assert metrics.registry.get_sample_value("rollwatch_open_cases", {"la_code": "331", "partition": "0"}) is None
    assert sample(metrics, "rollwatch_pending_deadlines", partition="0") == 3
    assert sample(metrics, "rollwatch_business_date_seconds", partition="0") == datetime(
        2025, 3, 4, tzinfo=UTC
    ).timestamp()
    assert metrics.registry.get_sample_value("rollwatch_business_date_seconds", {"partition": "1"}) is None
    assert sample(metrics, "rollwatch_consumer_lag", topic="roll.events", partition="0") == 12
    assert sample(metrics, "rollwatch_worker_ready") == 1

    # Partition 0 went to another worker: nothing of it stays behind here.
    metrics.show_worker_state([PartitionState(1, date(2025, 3, 5), {}, 0)], [], ready=False)
    assert metrics.registry.get_sample_value("rollwatch_open_cases", {"la_code": "330", "partition": "0"}) is None
    assert metrics.registry.get_sample_value("rollwatch_consumer_lag", {"topic": "roll.events", "partition": "0"}) \
        is None
    assert sample(metrics, "rollwatch_business_date_seconds", partition="1") == date_as_unix_time(date(2025, 3, 5))
    assert sample(metrics, "rollwatch_worker_ready") == 0


def test_business_date_is_midnight_utc() -> None:
    assert date_as_unix_time(date(1970, 1, 2)) == 86400.0


def test_delivery_metrics_count_outcomes_and_failed_attempts() -> None:
    metrics = DeliveryMetrics(CollectorRegistry())
    metrics.delivery_finished("webhook", "330", "delivered")
    metrics.delivery_finished("webhook", "330", "delivered")
    metrics.delivery_finished("webhook", "331", "dead_lettered")
    metrics.attempt_failed("webhook", "331")
    registry = metrics.registry
    assert registry.get_sample_value(
        "rollwatch_deliveries_total", {"channel": "webhook", "la_code": "330", "outcome": "delivered"}
    ) == 2
    assert registry.get_sample_value(
        "rollwatch_deliveries_total", {"channel": "webhook", "la_code": "331", "outcome": "dead_lettered"}
    ) == 1
    assert registry.get_sample_value(
        "rollwatch_delivery_failed_attempts_total", {"channel": "webhook", "la_code": "331"}
    ) == 1


def test_a_tick_alone_is_counted_once_per_copy() -> None:
    metrics = Metrics(CollectorRegistry())
    handler, _alerts, _children = handler_with(metrics)
    tick = CODEC.encode(ClockTick(date(2025, 3, 4)))
    feed(handler, [(CLOCK_TICKS, tick), (CLOCK_TICKS, tick)])
    assert sample(metrics, "rollwatch_records_consumed_total", topic=CLOCK_TICKS) == 2
    assert sample(metrics, "rollwatch_records_unchanged_total", topic=CLOCK_TICKS) == 1
