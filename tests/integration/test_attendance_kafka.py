"""The attendance scenarios through the real broker and worker: registers split into per-partition batches
give the alerts of the in-process replay, field for field, and bad marks are dead-lettered one by one."""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka.partitioner import murmur2
from kafka import KafkaConsumer

from config.settings import Settings
from processors.records import DeadLetter
from schemas.codec import AvroCodec
from schemas.jsonfields import alert_to_json
from tests.integration.test_scenarios_kafka import (
    Case,
    replayed,
    scenario_cases,
    through_one_worker,
)
from tests.scenarios.attendance import ATTENDANCE_SCENARIOS
from tests.scenarios.builder import upn
from tests.shared import SHARED_SCENARIOS

pytestmark = pytest.mark.integration

PARTITIONS = 64


def _cases() -> list[Case]:
    return scenario_cases(sorted(SHARED_SCENARIOS.glob("v2/p0[78]*.jsonl")), ATTENDANCE_SCENARIOS)


def _upns_of(lines: list[str]) -> list[str]:
    found: dict[str, None] = {}
    for line in lines:
        value = json.loads(line)["value"]
        if "upn" in value:
            found[value["upn"]] = None
        for mark in value.get("marks", ()):
            found[mark["upn"]] = None
    return list(found)


def _partition_of(pupil: str) -> int:
    return (murmur2(pupil.encode()) & 0x7FFFFFFF) % PARTITIONS


def pinned(cases: list[Case]) -> list[tuple[Case, int]]:
    """Each case on a partition of its own (so each keeps its own business date), its pupils given new UPNs
    that Kafka's partitioner sends to that partition, as a register's batches and roll events are routed."""
    fresh = (upn("330", serial) for serial in itertools.count(980_000))
    placed = []
    for partition, (name, lines, expected) in enumerate(cases):
        text = "\n".join(lines)
        renamed = {}
        for old in _upns_of(lines):
            if len(old) != 13:
                continue  # a deliberately malformed UPN is refused whatever its partition
            new = next(u for u in fresh if _partition_of(u) == partition)
            renamed[old] = new
        for old, new in renamed.items():
            text = text.replace(old, new)
        expected_now = Counter(
            (rule, recipient, la, renamed.get(pupil, pupil)) for rule, recipient, la, pupil in expected.elements()
        )
        placed.append(((name, text.splitlines(), expected_now), partition))
    return placed


@pytest.fixture(scope="module")
def attendance_run(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[list[tuple[Case, int]], list[Any], Settings]]:
    placed = pinned(_cases())
    scripts = [lines for (_name, lines, _expected), _partition in placed]
    tmp = tmp_path_factory.mktemp("attendance")
    pinned_to = [partition for _case, partition in placed]
    with through_one_worker(kafka_bootstrap, tmp, "att", PARTITIONS, scripts, pinned_to) as (settings, _worker, alerts):
        yield placed, alerts, settings


def test_every_attendance_scenario_through_kafka_gives_its_expected_alerts(
    attendance_run: tuple[list[tuple[Case, int]], list[Any], Settings],
) -> None:
    placed, alerts, _settings = attendance_run
    failures = []
    for (name, _lines, expected), _partition in placed:
        upns = {e[3] for e in expected.elements()} | set(_upns_of(_lines))
        got = Counter((str(a.rule), str(a.recipient), a.la_code, a.upn) for a in alerts if a.upn in upns)
        if got != expected:
            failures.append(f"{name}: expected {sorted(expected.elements())}, got {sorted(got.elements())}")
    assert not failures, "\n".join(failures)
    assert len({a.alert_id for a in alerts}) == len(alerts), "an alert was delivered twice"


def test_attendance_alerts_through_kafka_equal_the_in_process_replay_field_for_field(
    attendance_run: tuple[list[tuple[Case, int]], list[Any], Settings],
) -> None:
    placed, alerts, _settings = attendance_run
    expected = sorted(json.dumps(a, sort_keys=True) for (_n, lines, _e), _p in placed for a in replayed(lines))
    assert sorted(json.dumps(alert_to_json(a), sort_keys=True) for a in alerts) == expected


def test_a_bad_mark_is_dead_lettered_alone_with_its_register_and_index(
    attendance_run: tuple[list[tuple[Case, int]], list[Any], Settings],
) -> None:
    _placed, _alerts, settings = attendance_run
    consumer = KafkaConsumer(
        settings.topic("attendance.registers.dlq"), bootstrap_servers=settings.bootstrap_list,
        auto_offset_reset="earliest", isolation_level="read_committed", consumer_timeout_ms=4000,
    )
    codec = AvroCodec()
    letters = [codec.decode(message.value, DeadLetter) for message in consumer]
    consumer.close()
    codes = Counter(letter.error_code for letter in letters)
    assert codes["MARK_CODE_UNKNOWN"] >= 1, codes
    for letter in letters:
        if letter.error_code == "MARK_CODE_UNKNOWN":
            single = codec.decode_any(letter.raw)
            assert len(single.marks) == 1  # type: ignore[union-attr]
            assert re.match(r"mark \d+ of register [0-9a-f-]{36}: MARK_CODE_UNKNOWN", letter.message), letter.message
