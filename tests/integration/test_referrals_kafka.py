"""The referral scenarios through a real broker and worker: the in-process replay's alerts, field for field."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer

from config.settings import Settings
from processors.records import CMEReferral, DeadLetter
from schemas.codec import AvroCodec
from schemas.jsonfields import alert_to_json
from schemas.jsonformat import parse_line
from tests.integration.test_scenarios_kafka import (
    Case,
    replayed,
    scenario_cases,
    through_one_worker,
)
from tests.scenarios.referrals import REFERRAL_SCENARIOS
from tests.shared import SHARED_SCENARIOS

pytestmark = pytest.mark.integration

PARTITIONS = 32


def _cases() -> list[Case]:
    return scenario_cases(sorted(SHARED_SCENARIOS.glob("v2/p09*.jsonl")), REFERRAL_SCENARIOS)


def _keys_of(lines: list[str]) -> set[str]:
    """Every UPN and referral id a scenario's records name: its alerts carry one of them."""
    keys = set()
    for line in lines:
        value = json.loads(line)["value"]
        keys |= {value[name] for name in ("upn", "referral_id") if value.get(name)}
    return keys


@pytest.fixture(scope="module")
def referral_run(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[list[Case], list[Any], Settings]]:
    """All referral scenarios at once in one worker, each pinned to a partition of its own, in file order."""
    cases = _cases()
    scripts = [lines for _name, lines, _expected in cases]
    tmp = tmp_path_factory.mktemp("referrals")
    with through_one_worker(kafka_bootstrap, tmp, "ref", PARTITIONS, scripts, list(range(len(scripts)))) as (
        settings, _worker, alerts
    ):
        yield cases, alerts, settings


def test_every_referral_scenario_through_kafka_gives_its_expected_alerts(
    referral_run: tuple[list[Case], list[Any], Settings],
) -> None:
    cases, alerts, _settings = referral_run
    failures = []
    for name, lines, expected in cases:
        keys = _keys_of(lines)
        got = Counter((str(a.rule), str(a.recipient), a.la_code, a.upn) for a in alerts if a.key in keys)
        if got != expected:
            failures.append(
                f"{name}: expected {sorted(expected.elements(), key=str)}, got {sorted(got.elements(), key=str)}")
    assert not failures, "\n".join(failures)
    assert len({a.alert_id for a in alerts}) == len(alerts), "an alert was delivered twice"


def test_referral_alerts_through_kafka_equal_the_in_process_replay_field_for_field(
    referral_run: tuple[list[Case], list[Any], Settings],
) -> None:
    cases, alerts, _settings = referral_run
    expected = sorted(json.dumps(a, sort_keys=True) for _name, lines, _e in cases for a in replayed(lines))
    assert sorted(json.dumps(alert_to_json(a), sort_keys=True) for a in alerts) == expected


def test_alerts_without_a_upn_are_keyed_by_their_referral_id(
    referral_run: tuple[list[Case], list[Any], Settings],
) -> None:
    _cases_run, alerts, settings = referral_run
    unnamed = [a for a in alerts if a.upn is None]
    assert unnamed and all(a.referral_id for a in unnamed)
    consumer = KafkaConsumer(
        *{settings.topic(a.topic) for a in unnamed}, bootstrap_servers=settings.bootstrap_list,
        auto_offset_reset="earliest", isolation_level="read_committed", consumer_timeout_ms=4000,
    )
    codec = AvroCodec()
    keys = {codec.decode(m.value, type(unnamed[0])).alert_id: m.key for m in consumer}
    consumer.close()
    assert all(keys[a.alert_id] == a.referral_id.encode() for a in unnamed)  # type: ignore[union-attr]


def test_a_bad_referral_is_dead_lettered_with_its_bytes_and_a_code(
    referral_run: tuple[list[Case], list[Any], Settings],
) -> None:
    _cases_run, _alerts, settings = referral_run
    codec = AvroCodec()
    _topic, good = parse_line(REFERRAL_SCENARIOS[0].lines()[0])
    assert isinstance(good, CMEReferral)
    from dataclasses import replace

    bad = replace(good, referral_id="not-a-uuid", details="x" * 2001, la_code="999")
    raw = codec.encode(bad)
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_list, acks="all")
    producer.send(settings.topic("cme.referrals"), key=bad.key.encode(), value=raw).get(30)
    producer.close()
    consumer = KafkaConsumer(
        settings.topic("cme.referrals.dlq"), bootstrap_servers=settings.bootstrap_list,
        auto_offset_reset="earliest", isolation_level="read_committed", consumer_timeout_ms=15000,
    )
    letters = []
    for message in consumer:
        letters.append(codec.decode(message.value, DeadLetter))
        break
    consumer.close()
    assert len(letters) == 1
    assert letters[0].raw == raw and letters[0].source_topic == settings.topic("cme.referrals")
    assert letters[0].error_code == "EVENT_ID_FORMAT"
    assert "LA_CODE_UNKNOWN" in letters[0].message and "TEXT_TOO_LONG" in letters[0].message
