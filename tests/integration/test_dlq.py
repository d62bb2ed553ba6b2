"""`rollwatch dlq` against a real worker: dead letters listed without names, shown, corrected, republished once."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from config.settings import Settings
from processors.records import Alert, DeadLetter, Rule
from schemas.codec import AvroCodec
from streams.topics import ensure_worker_topics
from tests.integration.test_poison_records import MISSING, hand_made_roll_event, read
from tests.integration.workers import ROOT, WorkerProcess, worker_env

pytestmark = pytest.mark.integration

CODEC = AvroCodec()
NAMES = ("Zebediah", "Quillfeather")


def rollwatch(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=worker_env(settings),
        capture_output=True, text=True, timeout=120, check=False,
    )


def end_offset(settings: Settings, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_list)
    try:
        partition = TopicPartition(topic, 0)
        return int(consumer.end_offsets([partition])[partition])
    finally:
        consumer.close()


def dead_letters_with_offsets(settings: Settings, topic: str) -> list[tuple[int, DeadLetter]]:
    consumer = KafkaConsumer(
        topic, bootstrap_servers=settings.bootstrap_list, auto_offset_reset="earliest",
        isolation_level="read_committed", consumer_timeout_ms=2000,
    )
    try:
        return [(message.offset, CODEC.decode(message.value, DeadLetter)) for message in consumer]
    finally:
        consumer.close()


def test_dead_letters_are_listed_shown_corrected_and_republished_once(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    run = unique_name("dlq")
    settings = Settings(
        bootstrap_servers=kafka_bootstrap, topic_prefix=f"{run}.", app_id=run, topic_partitions=1,
        broker_commit_interval=0.1, data_dir=tmp_path / "worker", web_enabled=False, broker_session_timeout=6,
        broker_heartbeat_interval=1, broker_rebalance_timeout=10, log_level="WARNING",
    )
    ensure_worker_topics(settings)
    roll_events = settings.topic("roll.events")
    dlq = roll_events + ".dlq"
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_list, acks="all")
    key = MISSING.upn.encode()
    try:
        producer.send(roll_events, key=key, value=hand_made_roll_event(recorded_at=datetime(9999, 1, 1, tzinfo=UTC)))
        producer.send(roll_events, key=key, value=b"not avro at all")
        producer.send(roll_events, key=key, value=hand_made_roll_event(
            event_id="6c4a3d2e-1f0b-4c9d-8e7f-7a6b5c4d3e2f", recorded_at=datetime(9999, 1, 2, tzinfo=UTC)
        ))
        producer.flush()
        read(settings, dlq, 3)
        # The worker writes dead letters in transactions, whose markers take offsets too: how many depends on
        # how the three records fell into commits, so the letters' own offsets are read.
        found = dead_letters_with_offsets(settings, dlq)
        letters = [letter for _offset, letter in found]
        offsets = [offset for offset, _letter in found]
        assert [letter.error_code for letter in letters] == ["DATE_IMPLAUSIBLE", "BAD_MARKER", "DATE_IMPLAUSIBLE"]
        first, bad, _third = (f"{dlq}:0:{offset}" for offset in offsets)

        listed = rollwatch(settings, "dlq", "list")
        assert listed.returncode == 0, listed.stderr
        assert f"{dlq} BAD_MARKER" in listed.stdout and f"{dlq} DATE_IMPLAUSIBLE" in listed.stdout
        counted = dict(line.rsplit(None, 1) for line in listed.stdout.splitlines()[:3])
        assert counted == {f"{dlq} BAD_MARKER": "1", f"{dlq} DATE_IMPLAUSIBLE": "2", "total": "3"}
        for offset in offsets:
            assert f"{dlq}:0:{offset}  " in listed.stdout
        assert not any(name in listed.stdout + listed.stderr for name in NAMES)
        assert MISSING.upn not in listed.stdout
        only = rollwatch(settings, "dlq", "list", "--topic", "roll.events", "--code", "BAD_MARKER", "--since", "1d")
        assert only.returncode == 0 and f"{bad}  " in only.stdout and f"{first}  " not in only.stdout
        assert any(name in rollwatch(settings, "dlq", "list", "--show").stdout for name in NAMES)

        shown = rollwatch(settings, "dlq", "show", first)
        assert shown.returncode == 0, shown.stderr
        assert letters[0].raw.hex() in shown.stdout and "DATE_IMPLAUSIBLE" in shown.stdout
        [record_line] = [line for line in shown.stdout.splitlines() if line.startswith("record:")]
        replay = json.loads(record_line.split(":", 1)[1])
        assert replay["topic"] == "roll.events" and replay["value"]["recorded_at"].startswith("9999-01-01")

        replay["value"]["recorded_at"] = "2025-03-04T09:00:00Z"
        fixed = tmp_path / "fixed.jsonl"
        fixed.write_text(json.dumps(replay) + "\n")
        before = end_offset(settings, roll_events)
        republished = rollwatch(settings, "dlq", "republish", first, "--replace", str(fixed))
        assert republished.returncode == 0, republished.stderr
        assert "1 sent, 0 already republished" in republished.stderr
        alerts = read(settings, settings.topic("la.331.alerts.cme-officer"), 1)
        assert [CODEC.decode(value, Alert).rule for _key, value in alerts] == [Rule.MISSING_NO_DESTINATION]
        assert end_offset(settings, roll_events) == before + 1

        again = rollwatch(settings, "dlq", "republish", first, "--replace", str(fixed))
        assert again.returncode == 0, again.stderr
        assert "0 sent, 1 already republished" in again.stderr
        assert end_offset(settings, roll_events) == before + 1

        exported = rollwatch(settings, "dlq", "exporter", "--once")
        assert exported.returncode == 0, exported.stderr
        assert f'rollwatch_dead_letters{{error_code="DATE_IMPLAUSIBLE",topic="{dlq}"}} 1.0' in exported.stdout
        assert f'rollwatch_dead_letters{{error_code="BAD_MARKER",topic="{dlq}"}} 1.0' in exported.stdout
        after = rollwatch(settings, "dlq", "list")
        assert f"{first}  " not in after.stdout and "1 republished not shown" in after.stderr
        assert worker.alive(), worker.log()
    finally:
        producer.close()
        worker.stop()
