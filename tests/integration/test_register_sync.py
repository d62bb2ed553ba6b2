"""`rollwatch register sync` and `rollwatch cases` against the real broker, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from cli.main import main
from config.settings import Settings
from processors.apply import apply_checked
from processors.calendar import default_calendar
from processors.config import RuleConfig
from processors.records import CASE_ACTIONS, Alert, CaseAction, CaseActionType, Rule
from processors.timeline import memory_timeline
from schemas.codec import AvroCodec
from schemas.jsonformat import parse_line
from sinks.metrics import MemorySyncMetrics
from sinks.register import CaseStatus, open_register
from sinks.register.feed import consume_into_register
from tests.scenarios.builder import BHM_A, COV_A, DUD_A, UNKNOWN, added, ehe, removed, tick, to_school, upn

pytestmark = pytest.mark.integration

CODEC = AvroCodec()
MISSING, MOVED, HOME = upn("331", 880_001), upn("331", 880_002), upn("331", 880_003)
D = "2025-03-04"
# Three children: one goes missing (open case), one moves to Dudley and is found after the deadline (a case
# held by two LAs, closed by CHILD_LOCATED), one is taken off roll for home education (an alert with no case).
STORY = [
    removed(MISSING, COV_A, D, "G_MOVED_AWAY", destination=UNKNOWN),
    removed(MOVED, COV_A, D, "A_REGISTERED_ELSEWHERE", destination=to_school(DUD_A)),
    removed(HOME, BHM_A, D, "F_HOME_EDUCATION"),
    ehe(HOME, "330", "WRITTEN", "2025-03-03"),
    tick("2025-03-19"),
    added(MOVED, DUD_A, "2025-03-24"),
]


def story_alerts() -> list[Alert]:
    timeline = memory_timeline(RuleConfig(default_calendar()))
    alerts: list[Alert] = []
    for line in STORY:
        alerts.extend(apply_checked(timeline, parse_line(json.dumps(line))[1]))
    return alerts


def publish_alerts(bootstrap: str, prefix: str, alerts: list[Alert]) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    topics = sorted({prefix + a.topic for a in alerts})
    admin.create_topics([NewTopic(topic, 2, 1) for topic in topics])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for alert in alerts:
        producer.send(prefix + alert.topic, key=alert.upn.encode(), value=CODEC.encode(alert))
    producer.flush()
    producer.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/register.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def environment(
    monkeypatch: pytest.MonkeyPatch, kafka_bootstrap: str, unique_name: Callable[[str], str], database_url: str
) -> str:
    prefix = unique_name("reg") + "."
    for name in list(__import__("os").environ):
        if name.startswith("ROLLWATCH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ROLLWATCH_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("ROLLWATCH_TOPIC_PREFIX", prefix)
    monkeypatch.setenv("ROLLWATCH_DATABASE_URL", database_url)
    monkeypatch.setenv("ROLLWATCH_REGISTER_GROUP", unique_name("register"))
    monkeypatch.setenv("ROLLWATCH_TOPIC_PARTITIONS", "2")
    return prefix


def case_of(alerts: list[Alert], child: str) -> str:
    case_ids = {a.case_id for a in alerts if a.upn == child and a.case_id is not None}
    assert len(case_ids) == 1
    return case_ids.pop()


def test_sync_stores_published_alerts_once_and_cases_close_reaches_the_worker_topic(
    environment: str, kafka_bootstrap: str, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = environment
    alerts = story_alerts()
    rules = sorted((a.rule.value, a.recipient.value, a.la_code) for a in alerts)
    assert rules == [
        ("CHILD_LOCATED", "CME_OFFICER", "331"), ("CHILD_LOCATED", "CME_OFFICER", "332"),
        ("EHE_NOTIFIED", "EHE_SERVICE", "330"),
        ("MISSING_NO_DESTINATION", "CME_OFFICER", "331"), ("MOVED_OUT_OF_AREA", "CME_OFFICER", "332"),
        ("TRANSITION_NOT_COMPLETED", "CME_OFFICER", "331"), ("TRANSITION_NOT_COMPLETED", "CME_OFFICER", "332"),
    ]
    missing_case, moved_case = case_of(alerts, MISSING), case_of(alerts, MOVED)
    # One alert is delivered twice, as after a producer retry.
    publish_alerts(kafka_bootstrap, prefix, [*alerts, alerts[0]])

    assert main(["register", "migrate"]) == 0
    assert main(["register", "sync", "--once", "--timeout", "60"]) == 0

    register = open_register(database_url)
    try:
        assert sorted(a.alert_id for a in register.alerts()) == sorted(a.alert_id for a in alerts)
        assert {a.alert_id: a for a in register.alerts()} == {a.alert_id: a for a in alerts}
        assert register.counts()["alerts"] == 7 and register.counts()["cases"] == 2
        missing, moved = register.case(missing_case), register.case(moved_case)
        assert missing is not None and moved is not None
        assert (missing.status, missing.holders, missing.opening_rule) == (
            CaseStatus.OPEN, ("331",), Rule.MISSING_NO_DESTINATION,
        )
        assert (moved.status, moved.holders, moved.closing_reason) == (CaseStatus.CLOSED, ("331", "332"),
                                                                      "child located")
    finally:
        register.close()
    capsys.readouterr()

    # An officer closes the open case; closing the closed one, or one that does not exist, is refused.
    assert main(["cases", "close", missing_case, "--reason", "Found in Wales, on roll", "--by", "A. Officer"]) == 0
    assert main(["cases", "close", moved_case, "--reason", "x", "--by", "y"]) == 1
    assert f"cannot close case {moved_case}: it is already closed" in capsys.readouterr().err
    unknown = "99999999-9999-5999-8999-999999999999"
    assert main(["cases", "close", unknown, "--reason", "x", "--by", "y"]) == 1
    assert f"cannot close case {unknown}: no such case in the register" in capsys.readouterr().err

    consumer = KafkaConsumer(
        prefix + CASE_ACTIONS, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    published = list(consumer)
    consumer.close()
    [message] = published
    action = CODEC.decode(message.value, CaseAction)
    assert message.key == MISSING.encode()
    assert (action.upn, action.case_id, action.action) == (MISSING, missing_case, CaseActionType.CLOSE)
    assert (action.reason, action.by) == ("Found in Wales, on roll", "A. Officer")
    partitions = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    assert len(partitions.partitions_for_topic(prefix + CASE_ACTIONS) or ()) == 2  # co-partitioned with inputs
    partitions.close()

    # The register records who closed it, when and why, once sync has seen the action; its metrics say when.
    synced, before = MemorySyncMetrics(), time.time()
    assert consume_into_register(Settings(), once=True, timeout=60, recorder=synced).caught_up
    assert len(synced.stored_at) == 1 and synced.stored_at[0] >= before
    capsys.readouterr()
    assert main(["cases", "list", "--status", "closed", "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_case = {entry["case_id"]: entry for entry in listed}
    assert set(by_case) == {missing_case, moved_case}
    assert (by_case[missing_case]["closed_by"], by_case[missing_case]["closing_reason"]) == (
        "A. Officer", "Found in Wales, on roll",
    )
    assert by_case[moved_case]["closed_by"] == "rollwatch"
    assert main(["cases", "show", missing_case]) == 0
    shown = capsys.readouterr().out
    assert "Found in Wales, on roll" in shown and "MISSING_NO_DESTINATION" in shown
