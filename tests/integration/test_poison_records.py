"""Hostile records sent straight to the input topics through a real broker: dead-lettered, never a stop."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer
from kafka import KafkaConsumer, KafkaProducer

from config.settings import Settings
from processors.records import Alert, ClockTick, DeadLetter, Ground, Rule
from schemas.codec import SINGLE_OBJECT_MARKER, AvroCodec, load_schema, schema_fingerprint
from streams.handler import DEADLINE_CHECK_FAILED
from streams.topics import ensure_worker_topics
from tests.integration.workers import WorkerProcess
from tests.unit.test_validation import REMOVED

pytestmark = pytest.mark.integration

CODEC = AvroCodec()
MISSING = replace(REMOVED, ground=Ground.G_MOVED_AWAY, destination=None)


def settings_for(kafka_bootstrap: str, tmp: Path) -> Settings:
    run_id = uuid.uuid4().hex[:8]
    return Settings(
        bootstrap_servers=kafka_bootstrap, topic_prefix=f"poison{run_id}.", app_id=f"poison-{run_id}",
        topic_partitions=1, broker_commit_interval=0.1, data_dir=tmp / "worker", web_enabled=False,
        broker_session_timeout=6, broker_heartbeat_interval=1, broker_rebalance_timeout=10, log_level="WARNING",
    )


def hand_made_roll_event(**changes: Any) -> bytes:
    """A RollEvent written with fastavro from a plain dict, as any producer other than the SDK could."""
    schema = load_schema("RollEvent")
    fields: dict[str, Any] = {
        "event_id": "5b3f2c1d-0e9a-4b8c-9d7e-6f5a4b3c2d1e", "event_type": "REMOVED", "upn": MISSING.upn,
        "child": {"forename": "Zebediah", "surname": "Quillfeather", "date_of_birth": date(2014, 7, 16),
                  "postcode": None},
        "school": {"urn": "140201", "laestab": "3312201", "name": "Canley Primary", "special": False},
        "effective_date": date(2025, 3, 4), "recorded_at": datetime(2025, 3, 4, 9, tzinfo=UTC),
        "ground": "G_MOVED_AWAY", "destination": None, "standard_transition": False, "source_system": "OTHERMIS",
    }
    fields.update(changes)
    body = BytesIO()
    schemaless_writer(body, parse_schema(schema), fields)
    return SINGLE_OBJECT_MARKER + schema_fingerprint(schema) + body.getvalue()


def read(settings: Settings, topic: str, expected: int, timeout: float = 60) -> list[tuple[bytes | None, bytes]]:
    """Every committed record of a topic, waiting until there are at least `expected`."""
    deadline = time.monotonic() + timeout
    while True:
        consumer = KafkaConsumer(
            topic, bootstrap_servers=settings.bootstrap_list, auto_offset_reset="earliest",
            isolation_level="read_committed", consumer_timeout_ms=2000, metadata_max_age_ms=1000,
        )
        found = [(message.key, message.value) for message in consumer]
        consumer.close()
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_poison_records_sent_straight_to_the_topic_are_dead_lettered_and_later_records_still_alert(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = settings_for(kafka_bootstrap, tmp_path)
    ensure_worker_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_list, acks="all")
    poison = [
        hand_made_roll_event(recorded_at=datetime(9999, 12, 31, 23, 59, tzinfo=UTC)),
        hand_made_roll_event(effective_date=date(1, 1, 1), event_id="6c4a3d2e-1f0b-4c9d-8e7f-7a6b5c4d3e2f"),
        hand_made_roll_event(school={"urn": "140201", "laestab": "3312201", "name": "x" * 1_000_000,
                                     "special": False}, event_id="7d5b4e3f-2a1c-4d0e-9f8a-8b7c6d5e4f3a"),
        b"\xc3\x01" + b"\xff" * 64,
        None,  # a tombstone
    ]
    try:
        roll_events = settings.topic("roll.events")
        for value in poison:
            producer.send(roll_events, key=MISSING.upn.encode(), value=value)
        producer.send(roll_events, key=MISSING.upn.encode(), value=hand_made_roll_event())
        producer.flush()
        alerts = read(settings, settings.topic("la.331.alerts.cme-officer"), 1)
        letters = [CODEC.decode(value, DeadLetter) for _key, value in read(settings, roll_events + ".dlq", 5)]
        assert worker.alive(), worker.log()
    finally:
        producer.close()
        worker.stop()
    assert [CODEC.decode(value, Alert).rule for _key, value in alerts] == [Rule.MISSING_NO_DESTINATION]
    assert [letter.error_code for letter in letters] == [
        "DATE_IMPLAUSIBLE", "DATE_IMPLAUSIBLE", "TEXT_TOO_LONG", "UNKNOWN_SCHEMA", "BAD_MARKER"
    ]
    # the record of a million characters is cut to fit a dead letter; its offset finds it whole
    assert [letter.raw for letter in letters[:2] + letters[3:]] == [v or b"" for v in poison[:2] + poison[3:]]
    assert poison[2] is not None and poison[2].startswith(letters[2].raw) and len(letters[2].raw) > 900_000
    assert [letter.offset for letter in letters] == [0, 1, 2, 3, 4]


def test_a_tick_that_meets_an_unreadable_child_state_still_alerts_every_other_child_due(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = settings_for(kafka_bootstrap, tmp_path)
    ensure_worker_topics(settings)
    moving = REMOVED  # to a named school: TRANSITION_NOT_COMPLETED falls due ten school days on
    other = replace(REMOVED, upn="A334210025903", event_id="00000000-0000-0000-0000-c0ffee0000aa")
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_list, acks="all")
    children = f"{settings.app_id}-children-changelog"
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        for event in (moving, other):
            producer.send(settings.topic("roll.events"), key=event.upn.encode(), value=CODEC.encode(event))
        producer.flush()
        assert len({key for key, _ in read(settings, children, 2)}) == 2, worker.log()
        worker.stop()
        # The state of one child becomes unreadable (corruption, or a newer release's format).
        producer.send(children, key=moving.upn.encode(), value=b"\x07not a state", partition=0)
        producer.flush()
        worker = WorkerProcess(settings, tmp_path / "worker-2.log").start()
        tick = CODEC.encode(ClockTick(date(2025, 3, 20)))
        producer.send(settings.topic("clock.ticks"), value=tick, partition=0)
        producer.flush()
        alerts = [CODEC.decode(v, Alert) for _k, v in read(settings, settings.topic("la.331.alerts.cme-officer"), 1)]
        letters = read(settings, settings.topic("clock.ticks") + ".dlq", 1)
        assert worker.alive(), worker.log()
    finally:
        producer.close()
        worker.stop()
    assert [(a.rule, a.upn) for a in alerts] == [(Rule.TRANSITION_NOT_COMPLETED, other.upn)]
    [(key, value)] = letters
    letter = CODEC.decode(value, DeadLetter)
    assert (key, letter.error_code, letter.raw) == (moving.upn.encode(), DEADLINE_CHECK_FAILED, tick)
    # Its deadline is kept for the next tick: no tombstone for its index key was written.
    deadlines: dict[bytes, bytes | None] = {}
    for k, v in read(settings, f"{settings.app_id}-deadlines-changelog", 2):
        deadlines[k] = v
    assert [k for k, v in deadlines.items() if moving.upn.encode() in k and v is not None], deadlines
    assert [k for k, v in deadlines.items() if other.upn.encode() in k and v is None], deadlines
