"""Crash safety and scale-out: workers killed mid-stream lose and repeat nothing, and state matches a clean run."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer
from rocksdict import Options as RocksOptions
from rocksdict import Rdict

from bench.datasets import removal_without_destination
from cli.commands.publish import connection_of
from config.settings import Settings
from generator.generate import generate_lines
from generator.options import GeneratorOptions
from processors.calendar import default_calendar
from processors.config import RuleConfig
from processors.records import Alert, RollEvent
from processors.timeline import MemoryChildStore, MemoryClock, MemoryDeadlineIndex, Timeline
from replay.run import replay
from rollwatch_client.ordering import AppliedOffsets, OrderedSender
from rollwatch_client.publisher import InputPublisher
from schemas.codec import AvroCodec
from schemas.jsonfields import alert_to_json
from schemas.jsonformat import parse_line
from streams.app import create_app
from streams.statecodec import decode_state, encode_state
from streams.topics import ensure_worker_topics
from tests.integration.workers import WorkerProcess

pytestmark = pytest.mark.integration

# Two months of a 40,000-pupil region: a few hundred roll changes, statuses and notices, a tick a school day.
DATA = GeneratorOptions(pupils=40_000, seed=11, start=date(2025, 1, 6), end=date(2025, 3, 14))


def pipeline_settings(kafka_bootstrap: str, tmp: Path, store: str = "memory://") -> Settings:
    run_id = uuid.uuid4().hex[:8]
    return Settings(
        store=store,
        bootstrap_servers=kafka_bootstrap, topic_prefix=f"rs{run_id}.", app_id=f"rs-{run_id}", topic_partitions=4,
        broker_commit_interval=0.1, data_dir=tmp / "worker", web_enabled=False, broker_session_timeout=6,
        broker_heartbeat_interval=1, broker_rebalance_timeout=10, log_level="WARNING",
    )


class OrderedPublishing(threading.Thread):
    """Publishes the lines in file order through Kafka in the background, counting what it has sent."""

    def __init__(self, settings: Settings, lines: list[str]) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.lines = lines
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with InputPublisher(connection_of(self.settings)) as publisher:
                applied = AppliedOffsets(connection_of(self.settings), self.settings.app_id)
                ordered = OrderedSender(publisher.producer.flush, applied, timeout=240)
                for line in self.lines:
                    _topic, record = parse_line(line)
                    ordered.before(publisher.publisher_for(record).topic)
                    ordered.sent(publisher.publish(record))
                    self.sent += 1
                ordered.barrier()
                applied.close()
        except BaseException as error:  # reported by the test's assertions
            self.error = error

    def wait_until_sent(self, count: int, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while self.sent < count and self.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.sent >= count, f"only {self.sent} of {count} records sent: {self.error}"


def read_topic_values(settings: Settings, pattern: str | None = None, topic: str | None = None) -> list[Any]:
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_list, auto_offset_reset="earliest", isolation_level="read_committed",
        consumer_timeout_ms=4000, metadata_max_age_ms=1000,
    )
    if topic is not None:
        consumer.subscribe([topic])
    else:
        consumer.subscribe(pattern=pattern)
    messages = [(m.key, m.value) for m in consumer]
    consumer.close()
    return messages


def uninterrupted(lines: list[str]) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """The in-process replay's alerts and final child states: what any Kafka run must end with."""
    children = MemoryChildStore()
    timeline = Timeline(children, MemoryDeadlineIndex(), MemoryClock(), RuleConfig(default_calendar()))
    alerts: list[Alert] = []
    replay(lines, timeline, alerts.append)
    return [alert_to_json(a) for a in alerts], {s.upn: encode_state(s) for s in children}


def assert_same_outcome(settings: Settings, lines: list[str], logs: str) -> None:
    expected_alerts, expected_states = uninterrupted(lines)
    assert expected_alerts, "the generated data should raise alerts"
    codec = AvroCodec()
    raw = read_topic_values(settings, pattern="^" + re.escape(settings.topic_prefix) + r"la\..+")
    alerts = [alert_to_json(codec.decode(value, Alert)) for _key, value in raw]
    repeated = [i for i, n in Counter(a["alert_id"] for a in alerts).items() if n > 1]
    assert repeated == [], f"{len(repeated)} alerts delivered more than once\n{logs}"
    assert sorted(json.dumps(a, sort_keys=True) for a in alerts) == sorted(
        json.dumps(a, sort_keys=True) for a in expected_alerts
    ), logs
    changelog = read_topic_values(settings, topic=f"{settings.app_id}-children-changelog")
    latest: dict[bytes, bytes] = {}
    for key, value in changelog:
        latest[key] = value
    states = {key.decode(): encode_state(decode_state(value)) for key, value in latest.items()}
    assert states == expected_states


def test_a_worker_killed_mid_stream_resumes_with_every_alert_exactly_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # RocksDB, as in production: after the kill the worker reopens its on-disk state and the changelog.
    settings = pipeline_settings(kafka_bootstrap, tmp_path, store="rocksdb://")
    lines = list(generate_lines(DATA))
    ensure_worker_topics(settings)
    first = WorkerProcess(settings, tmp_path / "worker-1.log").start()
    publishing = OrderedPublishing(settings, lines)
    publishing.start()
    publishing.wait_until_sent(len(lines) // 3)
    first.kill()
    second = WorkerProcess(settings, tmp_path / "worker-2.log").start()
    try:
        publishing.join(timeout=300)
        assert not publishing.is_alive() and publishing.error is None, publishing.error
        assert_same_outcome(settings, lines, first.log() + second.log())
        assert list((tmp_path / "worker").rglob("children-*.db")), "the RocksDB store was not used"
    finally:
        second.stop()


def test_two_workers_share_partitions_and_one_stopping_mid_stream_loses_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = pipeline_settings(kafka_bootstrap, tmp_path)
    lines = list(generate_lines(DATA))
    ensure_worker_topics(settings)
    workers = [WorkerProcess(settings, tmp_path / f"worker-{i}.log").start() for i in (1, 2)]
    publishing = OrderedPublishing(settings, lines)
    publishing.start()
    try:
        publishing.wait_until_sent(len(lines) // 2)
        workers[1].kill()
        publishing.join(timeout=300)
        assert not publishing.is_alive() and publishing.error is None, publishing.error
        assert workers[0].alive(), workers[0].log()
        assert_same_outcome(settings, lines, workers[0].log() + workers[1].log())
    finally:
        for worker in workers:
            worker.stop()


def published_and_alerted(settings: Settings, events: list[RollEvent], expected_alerts: int) -> list[Alert]:
    """Publishes `events`, then reads the alert topics until `expected_alerts` are there (60 s at most)."""
    with InputPublisher(connection_of(settings)) as publisher:
        for event in events:
            publisher.publish(event)
        publisher.flush()
    codec = AvroCodec()
    deadline = time.monotonic() + 60
    alerts: list[Alert] = []
    while time.monotonic() < deadline and len(alerts) < expected_alerts:
        raw = read_topic_values(settings, pattern="^" + re.escape(settings.topic_prefix) + r"la\..+")
        alerts = [codec.decode(value, Alert) for _key, value in raw]
    return alerts


def test_a_worker_restarted_on_rocksdb_ignores_table_writes_whose_transaction_never_committed(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = pipeline_settings(kafka_bootstrap, tmp_path, store="rocksdb://")
    ensure_worker_topics(settings)
    now = datetime.now(tz=UTC)
    first, second = removal_without_destination(1, now), removal_without_destination(2, now)
    worker = WorkerProcess(settings, tmp_path / "worker-1.log").start()
    try:
        assert len(published_and_alerted(settings, [first], 1)) == 1, worker.log()
    finally:
        worker.stop()
    # What a worker killed between a record's table write and its transaction's commit leaves behind: the
    # second child's state, its event id included, in the RocksDB files, with nothing in the changelog.
    children = MemoryChildStore()
    Timeline(children, MemoryDeadlineIndex(), MemoryClock(), RuleConfig(default_calendar())).apply(second)
    ahead = encode_state(children.get(second.upn))
    tables = Path(create_app(settings).conf.tabledir)
    written = 0
    for path in sorted(tables.glob("children-*.db")):
        db = Rdict(str(path), options=RocksOptions(raw_mode=True))
        try:
            db[second.upn.encode()] = ahead
            written += 1
        finally:
            db.close()
    assert written, f"the first run left no RocksDB files under {tables}"

    worker = WorkerProcess(settings, tmp_path / "worker-2.log").start()
    try:
        alerts = published_and_alerted(settings, [second], 2)
        assert sorted(alert.upn for alert in alerts) == sorted([first.upn, second.upn]), worker.log()
    finally:
        worker.stop()
