"""Every scenario through the real broker and a real worker: alerts equal to the in-process replay's."""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer

from cli.commands.publish import connection_of
from config.settings import Settings
from processors.calendar import default_calendar
from processors.config import RuleConfig
from processors.records import CLOCK_TICKS, Alert, AttendanceRegister, CaseAction, CMEReferral
from processors.timeline import memory_timeline
from replay.run import replay
from rollwatch_client.ordering import AppliedOffsets, OrderedSender
from schemas.codec import AvroCodec
from schemas.errors import CodecError
from schemas.jsonfields import alert_to_json
from schemas.jsonformat import parse_line
from streams.topics import ensure_worker_topics
from tests.integration.workers import WorkerProcess
from tests.scenarios.builder import Scenario
from tests.scenarios.catalogue import SCENARIOS
from tests.shared import SHARED_SCENARIOS

pytestmark = pytest.mark.integration

SHARED = SHARED_SCENARIOS


Case = tuple[str, list[str], Counter[tuple[str, ...]]]


def scenario_cases(files: list[Path], scenarios: list[Scenario]) -> list[Case]:
    """Worked example files (NAME.jsonl beside NAME.expected.json) and catalogue scenarios, as name, lines and
    the alerts expected."""
    cases: list[Case] = []
    for path in files:
        expected = json.loads(path.with_name(path.stem + ".expected.json").read_text())
        cases.append((path.stem, path.read_text().splitlines(), Counter(tuple(e) for e in expected)))
    for scenario in scenarios:
        cases.append((scenario.name, scenario.lines(), Counter(scenario.expected)))
    return cases


def all_scenarios() -> list[Case]:
    return scenario_cases(sorted(SHARED.glob("*.jsonl")), SCENARIOS)


def replayed(lines: list[str]) -> list[dict[str, Any]]:
    alerts: list[Alert] = []
    replay(lines, memory_timeline(RuleConfig(default_calendar())), alerts.append)
    return [alert_to_json(a) for a in alerts]


def read_alerts(settings: Settings, idle_ms: int = 4000) -> list[Alert]:
    codec = AvroCodec()
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_list, auto_offset_reset="earliest",
        isolation_level="read_committed", consumer_timeout_ms=idle_ms, metadata_max_age_ms=1000,
    )
    consumer.subscribe(pattern=rf"^{re.escape(settings.topic_prefix)}la\.\d{{3}}\.alerts\..+$")
    alerts = [codec.decode(message.value, Alert) for message in consumer]
    consumer.close()
    return alerts


Item = tuple[str, bytes | None, bytes]


def message_key(topic: str, record: object) -> bytes | None:
    """A record's key as its sender gives it: none for a tick, the school's URN for a register, else the UPN
    (for a referral or case action without one, its referral id)."""
    if topic == CLOCK_TICKS:
        return None
    if isinstance(record, AttendanceRegister):
        return record.school.urn.encode()
    if isinstance(record, CMEReferral | CaseAction):
        return record.key.encode()
    return record.upn.encode()  # type: ignore[attr-defined]


def segments_of(lines: list[str], settings: Settings, codec: AvroCodec) -> list[list[Item]]:
    """A scenario's records as runs of consecutive records on one topic (lines that do not parse are left out)."""
    segments: list[list[Item]] = []
    for line in lines:
        try:
            topic, record = parse_line(line)
        except CodecError:
            continue
        item = (settings.topic(topic), message_key(topic, record), codec.encode(record))
        if segments and segments[-1][0][0] == item[0]:
            segments[-1].append(item)
        else:
            segments.append([item])
    return segments


def send_in_rounds(
    runs: list[list[list[Item]]], partitions: list[int], producer: KafkaProducer, sender: OrderedSender,
    worker: WorkerProcess,
) -> None:
    """Round r sends every scenario's r-th run, each scenario to its own partition, then waits until the worker
    applied it all: every scenario goes through Kafka in file order, all of them at once."""
    for round_index in range(max(len(s) for s in runs)):
        for partition, segments in zip(partitions, runs, strict=True):
            if round_index < len(segments):
                for topic, key, value in segments[round_index]:
                    sender.sent([producer.send(topic, key=key, value=value, partition=partition)])
        assert worker.alive(), worker.log()
        sender.barrier()


@contextlib.contextmanager
def through_one_worker(
    kafka_bootstrap: str, tmp: Path, name: str, partitions: int, scripts: list[list[str]], pinned_to: list[int]
) -> Iterator[tuple[Settings, WorkerProcess, list[Alert]]]:
    """Sends each script (replay lines) to its own partition of a fresh deployment, in file order and all at once
    (OrderedSender), with one worker applying them; yields the settings, the worker and every alert it raised."""
    run_id = uuid.uuid4().hex[:8]
    settings = Settings(
        bootstrap_servers=kafka_bootstrap, topic_prefix=f"{name}{run_id}.", app_id=f"{name}-{run_id}",
        topic_partitions=partitions, broker_commit_interval=0.1, data_dir=tmp / "worker", web_enabled=False,
        broker_session_timeout=10, broker_rebalance_timeout=10, log_level="WARNING",
    )
    assert len(scripts) <= partitions
    ensure_worker_topics(settings)
    worker = WorkerProcess(settings, tmp / "worker.log").start()
    codec = AvroCodec()
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_list, acks="all", linger_ms=2)
    applied = AppliedOffsets(connection_of(settings), settings.app_id)
    sender = OrderedSender(producer.flush, applied, timeout=180)
    runs = [segments_of(lines, settings, codec) for lines in scripts]
    try:
        send_in_rounds(runs, pinned_to, producer, sender, worker)
        yield settings, worker, read_alerts(settings)
    finally:
        producer.close()
        applied.close()
        worker.stop()


@pytest.fixture(scope="module")
def scenario_run(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[list[Any], list[Alert], WorkerProcess]]:
    """Runs all scenarios at once in one worker: each pinned to its own partition, so each keeps its own
    business date, with its ticks sent only there; records go in file order (OrderedSender)."""
    cases = all_scenarios()
    scripts = [lines for _name, lines, _expected in cases]
    tmp = tmp_path_factory.mktemp("scenarios")
    with through_one_worker(kafka_bootstrap, tmp, "scn", 64, scripts, list(range(len(scripts)))) as (
        _settings, worker, alerts
    ):
        yield cases, alerts, worker


def test_every_scenario_through_kafka_gives_its_expected_alerts(
    scenario_run: tuple[list[Any], list[Alert], WorkerProcess],
) -> None:
    cases, alerts, worker = scenario_run
    by_upn: dict[str, list[Alert]] = defaultdict(list)
    for alert in alerts:
        by_upn[alert.upn].append(alert)
    failures = []
    for name, _lines, expected in cases:
        upns = {e[3] for e in expected}
        got = Counter(
            (str(a.rule), str(a.recipient), a.la_code, a.upn) for upn in upns for a in by_upn.get(upn, [])
        )
        if got != expected:
            failures.append(f"{name}: expected {sorted(expected)}, got {sorted(got)}")
    assert not failures, "\n".join(failures) + "\n" + worker.log()
    assert len({a.alert_id for a in alerts}) == len(alerts), "an alert was delivered twice"


def test_kafka_alerts_equal_the_in_process_replay_field_for_field(
    scenario_run: tuple[list[Any], list[Alert], WorkerProcess],
) -> None:
    cases, alerts, _worker = scenario_run
    expected = sorted(
        (json.dumps(alert, sort_keys=True) for _name, lines, _e in cases for alert in replayed(lines)),
    )
    got = sorted(json.dumps(alert_to_json(a), sort_keys=True) for a in alerts)
    assert got == expected


def test_scenarios_without_alerts_raised_none(scenario_run: tuple[list[Any], list[Alert], WorkerProcess]) -> None:
    cases, alerts, _worker = scenario_run
    quiet_upns = set()
    for _name, lines, expected in cases:
        if not expected:
            for line in lines:
                value = json.loads(line)["value"]
                if "upn" in value:
                    quiet_upns.add(value["upn"])
    assert quiet_upns, "there are scenarios that expect no alert"
    assert [a for a in alerts if a.upn in quiet_upns] == []


@pytest.fixture(params=["sqlite", "postgresql"])
def register_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'register.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def test_register_fed_from_the_scenarios_holds_exactly_their_cases_and_alerts(
    scenario_run: tuple[list[Any], list[Alert], WorkerProcess], register_url: str, tmp_path: Path
) -> None:
    import subprocess
    import sys
    import uuid

    from processors.rules import CASE_RULES
    from sinks.register import CaseStatus, open_register
    from tests.integration.workers import ROOT, worker_env

    _cases, alerts, worker = scenario_run
    settings = worker.settings.model_copy(
        update={"database_url": register_url, "register_group": f"reg-{uuid.uuid4().hex[:8]}"}
    )
    # One alert delivered twice, as a retrying producer might: the register must store it once.
    codec = AvroCodec()
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_list, acks="all")
    producer.send(settings.topic(alerts[0].topic), key=alerts[0].upn.encode(), value=codec.encode(alerts[0])).get(30)
    producer.close()
    for command in (["register", "migrate"], ["register", "sync", "--once", "--timeout", "60"]):
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", *command], cwd=ROOT, env=worker_env(settings),
            capture_output=True, text=True, timeout=180, check=False,
        )
        assert done.returncode == 0, done.stderr

    register = open_register(register_url)
    try:
        stored = {a.alert_id: a for a in register.alerts()}
        assert set(stored) == {a.alert_id for a in alerts}
        assert register.counts()["alerts"] == len(alerts)
        expected: dict[str, dict[str, Any]] = {}
        for alert in sorted(alerts, key=lambda a: (a.raised_on, str(a.rule))):
            if alert.case_id is None:
                continue
            case = expected.setdefault(alert.case_id, {"holders": set(), "closed": False, "upn": alert.upn})
            if alert.rule in CASE_RULES and alert.recipient == "CME_OFFICER":
                case["holders"].add(alert.la_code)
            if alert.rule == "CHILD_LOCATED":
                case["closed"] = True
        got = {
            c.case_id: {"holders": set(c.holders), "closed": c.status is CaseStatus.CLOSED, "upn": c.upn}
            for c in register.cases()
        }
        assert got == expected
    finally:
        register.close()
