"""The command line against a running worker: publish --ordered, worker, alerts, as an LA integration would."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient

from cli.commands.publish import connection_of
from config.kafka import client_options
from config.settings import Settings
from processors.records import DeadLetter
from schemas.codec import AvroCodec
from streams.topics import ensure_worker_topics, output_topics
from tests.integration.workers import ROOT, WorkerProcess, worker_env
from tests.shared import SHARED_SCENARIOS

pytestmark = pytest.mark.e2e

SHARED = SHARED_SCENARIOS
# In this order the worked examples' clock ticks only move forward, so one worker can take them all.
ORDER = ("p01", "p02", "p04", "p03", "p05", "p06")


@pytest.fixture(scope="module")
def running_worker(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    run_id = uuid.uuid4().hex[:8]
    tmp = tmp_path_factory.mktemp("e2e")
    settings = Settings(
        bootstrap_servers=kafka_bootstrap, topic_prefix=f"e2e{run_id}.", app_id=f"e2e-{run_id}",
        topic_partitions=4, broker_commit_interval=0.1, data_dir=tmp / "worker", web_enabled=False,
        broker_session_timeout=10, broker_rebalance_timeout=10, log_level="WARNING",
        # The default, which the other tests' workers leave off to keep the shared broker small.
        alert_topics_up_front=True,
    )
    ensure_worker_topics(settings)
    worker = WorkerProcess(settings, tmp / "worker.log").start()
    try:
        yield settings
        assert worker.alive(), worker.log()
    finally:
        worker.stop()


def rollwatch(settings: Settings, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=worker_env(settings),
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def worked_examples(tmp_path: Path) -> tuple[Path, Counter[tuple[str, ...]]]:
    """The shared worked examples as one replay file, and the alerts they must raise."""
    files = [next(SHARED.glob(f"{name}_*.jsonl")) for name in ORDER]
    combined = tmp_path / "worked-examples.jsonl"
    combined.write_text("".join(f.read_text() for f in files))
    expected: Counter[tuple[str, ...]] = Counter()
    for f in files:
        expected.update(tuple(e) for e in json.loads(f.with_name(f.stem + ".expected.json").read_text()))
    return combined, expected


def publish_and_read_alerts(settings: Settings, replay_file: Path) -> list[dict[str, str]]:
    """Publishes a replay file with --ordered, then reads every alert the worker raised."""
    published = rollwatch(settings, "publish", "--ordered", "--wait-timeout", "120", str(replay_file))
    assert published.returncode == 0, published.stderr
    printed = rollwatch(settings, "alerts", "--from-beginning", "--idle-seconds", "5")
    assert printed.returncode == 0, printed.stderr
    return [json.loads(line) for line in printed.stdout.splitlines()]


def test_publish_ordered_then_alerts_matches_replay(running_worker: Settings, tmp_path: Path) -> None:
    combined, expected = worked_examples(tmp_path)
    alerts = publish_and_read_alerts(running_worker, combined)
    assert Counter((a["rule"], a["recipient"], a["la_code"], a["upn"]) for a in alerts) == expected

    replayed = rollwatch(running_worker, "replay", "--quiet", str(combined))
    assert replayed.returncode == 0, replayed.stderr
    in_process = [json.loads(line) for line in replayed.stdout.splitlines()]
    canonical = sorted(json.dumps(a, sort_keys=True) for a in alerts)
    assert canonical == sorted(json.dumps(a, sort_keys=True) for a in in_process)


def test_every_output_topic_exists_before_any_alert_needs_it(running_worker: Settings) -> None:
    admin = KafkaAdminClient(**client_options(running_worker))
    try:
        existing = set(admin.list_topics())
    finally:
        admin.close()
    missing = set(output_topics(running_worker)) - existing
    assert not missing, f"{len(missing)} output topics were not created up front, e.g. {sorted(missing)[:3]}"


def test_alerts_filters_by_la_and_recipient(running_worker: Settings) -> None:
    deadline = time.monotonic() + 60
    alerts: list[dict[str, str]] = []
    while not alerts and time.monotonic() < deadline:
        printed = rollwatch(
            running_worker, "alerts", "--from-beginning", "--la", "333", "--recipient", "SOCIAL_CARE",
            "--idle-seconds", "3",
        )
        assert printed.returncode == 0, printed.stderr
        alerts = [json.loads(line) for line in printed.stdout.splitlines()]
    assert alerts and {(a["la_code"], a["recipient"]) for a in alerts} == {("333", "SOCIAL_CARE")}


def test_undecodable_record_goes_to_the_dead_letter_topic_and_the_worker_carries_on(
    running_worker: Settings,
) -> None:
    topic = running_worker.topic("roll.events")
    producer = KafkaProducer(bootstrap_servers=running_worker.bootstrap_list, acks="all")
    producer.send(topic, key=b"K861210025067", value=b"\x00garbage from a broken MIS export").get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(
        f"{topic}.dlq", bootstrap_servers=running_worker.bootstrap_list, auto_offset_reset="earliest",
        isolation_level="read_committed", consumer_timeout_ms=3000,
    )
    letters: list[DeadLetter] = []
    deadline = time.monotonic() + 60
    codec = AvroCodec()
    while not letters and time.monotonic() < deadline:
        letters = [codec.decode(m.value, DeadLetter) for m in consumer]
    consumer.close()
    assert [(d.raw, d.source_topic, d.error_code) for d in letters] == [
        (b"\x00garbage from a broken MIS export", topic, "BAD_MARKER")
    ]
    assert "Avro" in letters[0].message or "marker" in letters[0].message.lower()


def test_a_case_closed_through_the_cli_changes_what_the_worker_does_next(
    running_worker: Settings, tmp_path: Path
) -> None:
    from kafka.structs import TopicPartition

    from rollwatch_client.ordering import AppliedOffsets
    from tests.scenarios.builder import COV_A, COV_B, UNKNOWN, added, removed, upn

    register = {"database_url": f"sqlite:///{tmp_path / 'register.db'}", "register_group": f"reg-{uuid.uuid4()}"}
    settings = running_worker.model_copy(update=register)
    child = upn("330", 990_001)
    missing = tmp_path / "missing.jsonl"
    missing.write_text(json.dumps(removed(child, COV_A, "2025-11-03", "G_MOVED_AWAY", destination=UNKNOWN)) + "\n")
    assert rollwatch(settings, "publish", "--ordered", str(missing)).returncode == 0
    for command in (("register", "migrate"), ("register", "sync", "--once", "--timeout", "60")):
        done = rollwatch(settings, *command)
        assert done.returncode == 0, done.stderr
    listed = rollwatch(settings, "cases", "list", "--status", "open", "--json")
    [case] = [c for c in map(json.loads, listed.stdout.splitlines()) if c["upn"] == child]

    reason, officer = "On roll in Wales", "A. Officer"
    closed = rollwatch(settings, "cases", "close", case["case_id"], "--reason", reason, "--by", officer)
    assert closed.returncode == 0, closed.stderr
    again = rollwatch(settings, "cases", "close", "00000000-0000-5000-8000-000000000000", "--reason", "x", "--by", "y")
    assert again.returncode != 0 and "00000000-0000-5000-8000-000000000000" in again.stderr
    # Wait until the worker has applied the officer's action, then the child turns up at another school.
    actions = TopicPartition(settings.topic("case.actions"), 0)
    applied = AppliedOffsets(connection_of(settings), settings.app_id)
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_list)
    ends = consumer.end_offsets([TopicPartition(actions.topic, p) for p in range(settings.topic_partitions)])
    consumer.close()
    applied.wait_for({tp: end for tp, end in ends.items() if end > 0}, timeout=60)
    applied.close()
    found = tmp_path / "found.jsonl"
    found.write_text(json.dumps(added(child, COV_B, "2025-11-05")) + "\n")
    assert rollwatch(settings, "publish", "--ordered", str(found)).returncode == 0

    printed = rollwatch(settings, "alerts", "--from-beginning", "--idle-seconds", "5")
    rules = sorted(a["rule"] for a in map(json.loads, printed.stdout.splitlines()) if a["upn"] == child)
    assert rules == ["MISSING_NO_DESTINATION"], "no CHILD_LOCATED for a case the officer closed"
    assert rollwatch(settings, "register", "sync", "--once", "--timeout", "60").returncode == 0
    shown = json.loads(rollwatch(settings, "cases", "show", case["case_id"], "--json").stdout)
    assert (shown["status"], shown["closing_reason"], shown["closed_by"]) == ("closed", reason, officer)


def test_an_at_least_once_worker_raises_the_worked_examples_alerts(kafka_bootstrap: str, tmp_path: Path) -> None:
    run_id = uuid.uuid4().hex[:8]
    settings = Settings(
        bootstrap_servers=kafka_bootstrap, topic_prefix=f"e2e-alo{run_id}.", app_id=f"e2e-alo-{run_id}",
        topic_partitions=4, processing_guarantee="at_least_once", broker_commit_interval=0.1,
        data_dir=tmp_path / "worker", web_enabled=False, broker_session_timeout=10, broker_rebalance_timeout=10,
        log_level="WARNING",
    )
    ensure_worker_topics(settings)
    combined, expected = worked_examples(tmp_path)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        alerts = publish_and_read_alerts(settings, combined)
        assert Counter((a["rule"], a["recipient"], a["la_code"], a["upn"]) for a in alerts) == expected
        assert worker.alive(), worker.log()
    finally:
        worker.stop()
