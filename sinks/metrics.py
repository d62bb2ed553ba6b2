"""Prometheus metrics of the worker, of register sync and of webhook delivery, registered on a registry the caller
passes in."""

from __future__ import annotations

import time as clock
from collections import Counter as Tally
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from processors.calendar import SchoolCalendar
from processors.config import RuleConfig
from processors.records import Alert

#: Seconds from a triggering record to its alert: sub-second when live, hours when a backlog drains.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0)


class MeasuredFrom(StrEnum):
    """Where an alert's latency is measured from."""

    #: The triggering record's own time: a roll event's `recorded_at`, a status's `updated_at`, an action's `at`.
    RECORD = "record"
    #: The Kafka timestamp of the triggering record, for records without a time of their own: clock ticks
    #: (so deadline alerts count from the tick that found them due) and EHE notifications (a date only).
    BROKER = "broker"


class MetricsRecorder(Protocol):
    """What the worker's message path reports; `Metrics` in the worker, `MemoryMetrics` in unit tests."""

    def record_applied(self, topic: str, changed: bool) -> None: ...

    def record_dead_lettered(self, topic: str, error_code: str) -> None: ...

    def alert_sent(self, alert: Alert, latency_seconds: float | None, measured_from: MeasuredFrom) -> None: ...

    def deadline_check_failed(self, topic: str) -> None: ...

    def marks_handled(self, topic: str, applied: int) -> None:
        """A batch of a register's marks applied (records stay counted by register)."""
        ...

    def mark_dead_lettered(self, topic: str, error_code: str) -> None:
        """One mark of a register refused on its own; its register still counts as applied."""
        ...


@dataclass(frozen=True, slots=True)
class PartitionState:
    """What one partition's tables hold that operators watch."""

    partition: int
    business_date: date | None
    open_cases: Mapping[str, int]
    pending_deadlines: int


@dataclass(frozen=True, slots=True)
class PartitionLag:
    topic: str
    partition: int
    lag: int


def date_as_unix_time(day: date) -> float:
    """Midnight UTC at the start of the day, so Grafana and PromQL can read the date as a time."""
    return datetime.combine(day, time(), tzinfo=UTC).timestamp()


class Metrics:
    """Every metric a worker serves at /metrics. Counters move as records are handled; the gauges describe
    the partitions this worker owns and are replaced as a whole by `show_worker_state` before each scrape."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.consumed = Counter(
            "rollwatch_records_consumed", "Input records taken from Kafka, applied or dead-lettered.",
            ["topic"], registry=registry,
        )
        self.applied = Counter(
            "rollwatch_records_applied", "Input records that passed validation and went through the rules.",
            ["topic"], registry=registry,
        )
        self.unchanged = Counter(
            "rollwatch_records_unchanged",
            "Applied records that changed nothing: repeated ids, resent roll changes, ticks not ahead of the date.",
            ["topic"], registry=registry,
        )
        self.dead_lettered = Counter(
            "rollwatch_records_dead_lettered", "Input records sent to <topic>.dlq, by error code.",
            ["topic", "error_code"], registry=registry,
        )
        self.alerts = Counter(
            "rollwatch_alerts", "Alerts sent to the LA alert topics.",
            ["rule", "recipient", "severity", "la_code"], registry=registry,
        )
        self.latency = Histogram(
            "rollwatch_event_to_alert_seconds",
            "Seconds from the triggering record (its own time, or its Kafka timestamp) to its alert being sent.",
            ["measured_from"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.open_cases = Gauge(
            "rollwatch_open_cases", "Open CME cases held by each LA, in the partitions this worker owns.",
            ["la_code", "partition"], registry=registry,
        )
        self.pending_deadlines = Gauge(
            "rollwatch_pending_deadlines", "Deadlines waiting for the business date, per owned partition.",
            ["partition"], registry=registry,
        )
        self.business_date = Gauge(
            "rollwatch_business_date_seconds", "Business date of each owned partition, as midnight UTC unix time.",
            ["partition"], registry=registry,
        )
        self.consumer_lag = Gauge(
            "rollwatch_consumer_lag", "Records in each owned input partition not yet taken by this worker.",
            ["topic", "partition"], registry=registry,
        )
        self.ready = Gauge(
            "rollwatch_worker_ready", "1 when the worker would answer /ready with 200, else 0.", registry=registry,
        )
        self.deadline_checks_failed = Counter(
            "rollwatch_deadline_checks_failed",
            "Children whose deadlines a tick could not check (dead-lettered as DEADLINE_CHECK_FAILED, keyed by "
            "UPN); their deadlines stay pending and the next tick checks them again.",
            ["topic"], registry=registry,
        )
        self.marks_applied = Counter(
            "rollwatch_marks_applied", "Attendance marks applied from registers' batches.", ["topic"],
            registry=registry,
        )
        self.marks_dead_lettered = Counter(
            "rollwatch_marks_dead_lettered",
            "Attendance marks refused on their own and sent to <topic>.dlq as one-mark registers, by error code; "
            "their registers count as applied.",
            ["topic", "error_code"], registry=registry,
        )
        #: What /health shows of the records this worker could not apply, by error code.
        self.refused: Tally[str] = Tally()
        self.children_unchecked = 0
        # A labelled child found once: `labels()` validates and locks on every call, a cost paid per record.
        # These counters are never cleared, so a child found stays the one the registry reports.
        self._topic_counters: dict[str, tuple[Counter, Counter, Counter]] = {}
        self._alert_counters: dict[tuple[str, str, str, str], Counter] = {}
        self.calendar_fallbacks = Counter(
            "rollwatch_calendar_fallback_decisions",
            "School-day counts that reached a school year with no configured or shipped term dates, so took "
            "weekdays less bank holidays; la_code is the LA whose calendar counted, or default.",
            ["la_code"], registry=registry,
        )
        self._fallbacks_total_seen = 0
        self._fallbacks_seen: dict[int, int] = {}

    def record_applied(self, topic: str, changed: bool) -> None:
        counters = self._topic_counters.get(topic)
        if counters is None:
            counters = (self.consumed.labels(topic), self.applied.labels(topic), self.unchanged.labels(topic))
            self._topic_counters[topic] = counters
        consumed, applied, unchanged = counters
        consumed.inc()
        applied.inc()
        if not changed:
            unchanged.inc()

    def record_dead_lettered(self, topic: str, error_code: str) -> None:
        self.consumed.labels(topic).inc()
        self.dead_lettered.labels(topic, error_code).inc()
        self.refused[error_code] += 1

    def deadline_check_failed(self, topic: str) -> None:
        self.deadline_checks_failed.labels(topic).inc()
        self.children_unchecked += 1

    def marks_handled(self, topic: str, applied: int) -> None:
        self.marks_applied.labels(topic).inc(applied)

    def mark_dead_lettered(self, topic: str, error_code: str) -> None:
        self.marks_dead_lettered.labels(topic, error_code).inc()
        self.refused[error_code] += 1

    def health(self) -> dict[str, object]:
        """What /health adds to "alive": the records dead-lettered so far by code (UNPROCESSABLE marks one no
        check foresaw) and the children whose deadlines a tick could not check, since this worker started."""
        return {"dead_lettered": dict(sorted(self.refused.items())), "deadline_checks_failed": self.children_unchecked}

    def alert_sent(self, alert: Alert, latency_seconds: float | None, measured_from: MeasuredFrom) -> None:
        labels = (alert.rule.value, alert.recipient.value, alert.severity.value, alert.la_code)
        counter = self._alert_counters.get(labels)
        if counter is None:
            counter = self._alert_counters[labels] = self.alerts.labels(*labels)
        counter.inc()
        if latency_seconds is not None:
            # Clocks of other machines may run a little ahead; a negative latency means "immediately".
            self.latency.labels(measured_from.value).observe(max(latency_seconds, 0.0))

    def show_worker_state(
        self, partitions: Iterable[PartitionState], lags: Iterable[PartitionLag], ready: bool
    ) -> None:
        """Replaces every per-partition gauge, so partitions handed to another worker stop being reported here."""
        for gauge in (self.open_cases, self.pending_deadlines, self.business_date, self.consumer_lag):
            gauge.clear()
        for state in partitions:
            label = str(state.partition)
            for la_code, count in state.open_cases.items():
                if count:
                    self.open_cases.labels(la_code, label).set(count)
            self.pending_deadlines.labels(label).set(state.pending_deadlines)
            if state.business_date is not None:
                self.business_date.labels(label).set(date_as_unix_time(state.business_date))
        for lag in lags:
            self.consumer_lag.labels(lag.topic, str(lag.partition)).set(lag.lag)
        self.ready.set(1 if ready else 0)

    def count_calendar_fallbacks(self, config: RuleConfig) -> None:
        """Adds what each of the config's calendars has counted on the fallback since the last call."""
        total = SchoolCalendar.all_fallback_decisions
        if total == self._fallbacks_total_seen:
            return  # the usual case, checked once per record without visiting every LA's calendar
        self._fallbacks_total_seen = total
        for la_code, calendar in (("default", config.default_calendar), *config.calendars.items()):
            now = getattr(calendar, "fallback_decisions", 0)
            before = self._fallbacks_seen.get(id(calendar), 0)
            if now > before:
                self._fallbacks_seen[id(calendar)] = now
                self.calendar_fallbacks.labels(la_code).inc(now - before)


def count_calendar_fallbacks(metrics: object, config: RuleConfig) -> None:
    """The worker's call after each record: counts calendar fallback decisions where Prometheus is served."""
    if isinstance(metrics, Metrics):
        metrics.count_calendar_fallbacks(config)


class DeliveryMetrics:
    """Webhook delivery outcomes, served by `rollwatch register deliver`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.deliveries = Counter(
            "rollwatch_deliveries", "Alerts whose delivery finished, by channel, LA and outcome.",
            ["channel", "la_code", "outcome"], registry=registry,
        )
        self.failed_attempts = Counter(
            "rollwatch_delivery_failed_attempts", "Delivery attempts that failed and will be retried.",
            ["channel", "la_code"], registry=registry,
        )
        self.last_success = Gauge(
            "rollwatch_register_deliver_last_success_seconds",
            "Unix time the last delivery finished (delivered or dead-lettered; 0 until one has).",
            registry=registry,
        )
        self.pending = Gauge(
            "rollwatch_register_pending_deliveries",
            "Pending deliveries of each LA's alerts as its worker last fetched them (at most "
            "ROLLWATCH_WEBHOOK_BATCH_SIZE), less those finished since.",
            ["la_code"], registry=registry,
        )
        self._pending: dict[str, int] = {}

    def delivery_finished(self, channel: str, la_code: str, outcome: str) -> None:
        self.deliveries.labels(channel, la_code, outcome).inc()
        self.last_success.set(clock.time())
        if self._pending.get(la_code, 0) > 0:
            self._pending[la_code] -= 1
            self.pending.labels(la_code).set(self._pending[la_code])

    def attempt_failed(self, channel: str, la_code: str) -> None:
        self.failed_attempts.labels(channel, la_code).inc()

    def pending_found(self, la_code: str, count: int) -> None:
        self._pending[la_code] = count
        self.pending.labels(la_code).set(count)


class SyncRecorder(Protocol):
    """What `register sync` reports: `SyncMetrics` when served, `MemorySyncMetrics` in unit tests."""

    def batch_stored(self, unix_time: float) -> None: ...

    def show_lag(self, lag_by_topic: Mapping[str, int]) -> None: ...


class SyncMetrics:
    """How far `rollwatch register sync` is behind its topics and when it last stored a batch."""

    def __init__(self, registry: CollectorRegistry, started: float) -> None:
        self.registry = registry
        self.lag = Gauge(
            "rollwatch_register_sync_lag",
            "Records on each alert topic and case.actions not yet stored in the register (end offsets less the "
            "register group's positions, summed over partitions).",
            ["topic"], registry=registry,
        )
        self.last_success = Gauge(
            "rollwatch_register_sync_last_success_seconds",
            "Unix time the last batch was stored and its offsets committed (the start, until a first batch).",
            registry=registry,
        )
        self.last_success.set(started)

    def batch_stored(self, unix_time: float) -> None:
        self.last_success.set(unix_time)

    def show_lag(self, lag_by_topic: Mapping[str, int]) -> None:
        """Replaces the lag of every topic, so a topic no longer read stops being reported."""
        self.lag.clear()
        for topic, lag in lag_by_topic.items():
            self.lag.labels(topic).set(lag)


@dataclass
class MemorySyncMetrics:
    """Keeps what `register sync` reports, for unit tests."""

    stored_at: list[float] = field(default_factory=list)
    lag: dict[str, int] = field(default_factory=dict)

    def batch_stored(self, unix_time: float) -> None:
        self.stored_at.append(unix_time)

    def show_lag(self, lag_by_topic: Mapping[str, int]) -> None:
        self.lag = dict(lag_by_topic)


@dataclass
class MemoryMetrics:
    """Keeps what the message path reports, for unit tests."""

    consumed: Tally[str] = field(default_factory=Tally)
    applied: Tally[str] = field(default_factory=Tally)
    unchanged: Tally[str] = field(default_factory=Tally)
    dead_lettered: Tally[tuple[str, str]] = field(default_factory=Tally)
    alerts: list[Alert] = field(default_factory=list)
    latencies: list[tuple[MeasuredFrom, float]] = field(default_factory=list)
    unchecked: Tally[str] = field(default_factory=Tally)
    marks: Tally[str] = field(default_factory=Tally)
    marks_refused: Tally[tuple[str, str]] = field(default_factory=Tally)

    def record_applied(self, topic: str, changed: bool) -> None:
        self.consumed[topic] += 1
        self.applied[topic] += 1
        if not changed:
            self.unchanged[topic] += 1

    def record_dead_lettered(self, topic: str, error_code: str) -> None:
        self.consumed[topic] += 1
        self.dead_lettered[topic, error_code] += 1

    def deadline_check_failed(self, topic: str) -> None:
        self.unchecked[topic] += 1

    def marks_handled(self, topic: str, applied: int) -> None:
        self.marks[topic] += applied

    def mark_dead_lettered(self, topic: str, error_code: str) -> None:
        self.marks_refused[topic, error_code] += 1

    def alert_sent(self, alert: Alert, latency_seconds: float | None, measured_from: MeasuredFrom) -> None:
        self.alerts.append(alert)
        if latency_seconds is not None:
            self.latencies.append((measured_from, latency_seconds))


class NoMetrics:
    """Reports nothing; the default where no one watches."""

    def record_applied(self, topic: str, changed: bool) -> None:
        return None

    def record_dead_lettered(self, topic: str, error_code: str) -> None:
        return None

    def deadline_check_failed(self, topic: str) -> None:
        return None

    def marks_handled(self, topic: str, applied: int) -> None:
        return None

    def mark_dead_lettered(self, topic: str, error_code: str) -> None:
        return None

    def alert_sent(self, alert: Alert, latency_seconds: float | None, measured_from: MeasuredFrom) -> None:
        return None
