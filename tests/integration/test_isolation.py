"""Each LA and role sees only its own topics, on a real secure broker (SASL_SSL, SCRAM, StandardAuthorizer)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError

from cli.main import load_env_file
from config.kafka import KafkaAccessError, check_access, client_options
from config.settings import Settings
from localbroker.launcher import BrokerError, LocalCluster
from localbroker.nodes import find_free_base_port

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).resolve().parents[2]
RECIPIENTS = ("cme-officer", "social-care", "ehe-service")
ALERT_TOPICS = [f"la.{la}.alerts.{recipient}" for la in ("330", "331") for recipient in RECIPIENTS]


@dataclass(frozen=True)
class SecureBroker:
    cluster: LocalCluster
    admin_env: Path
    home: Path


def settings_from(env_file: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith("ROLLWATCH_"):
            monkeypatch.delenv(name)
    with monkeypatch.context() as scoped:
        for line in env_file.read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition("=")
            scoped.setenv(key, value)
        return Settings()


def rollwatch(
    *args: str, timeout: float = 120, environment: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    inherited = {name: value for name, value in os.environ.items() if not name.startswith("ROLLWATCH_")}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=PROJECT_ROOT,
        env={**inherited, **(environment or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    home = tmp_path_factory.mktemp("secure-kafka")
    cache_dir = Settings().broker_cache_dir
    cluster: LocalCluster | None = None
    for attempt in range(3):
        candidate = LocalCluster(
            home / f"kafka-{attempt}", base_port=find_free_base_port(), cache_dir=cache_dir, secure=True
        )
        try:
            candidate.start(timeout=120)
        except BrokerError as error:
            if "already in use" not in str(error):
                raise
            continue
        cluster = candidate
        break
    assert cluster is not None, "found no free ports for the secure broker"
    try:
        admin_env = cluster.admin_env_path
        admin = KafkaAdminClient(client_id="isolation-setup", **client_options(_admin_settings(admin_env)))
        try:
            admin.create_topics([NewTopic(name, 1, 1) for name in [*ALERT_TOPICS, "roll.events"]])
            producer = KafkaProducer(**client_options(_admin_settings(admin_env)))
            for topic in ALERT_TOPICS:
                producer.send(topic, value=f"for {topic}".encode())
            producer.flush(timeout=30)
            producer.close(timeout=10)
        finally:
            admin.close()
        yield SecureBroker(cluster=cluster, admin_env=admin_env, home=home)
    finally:
        cluster.stop()


def _admin_settings(admin_env: Path) -> Settings:
    values = dict(line.split("=", 1) for line in admin_env.read_text(encoding="utf-8").splitlines())
    return Settings(
        bootstrap_servers=values["ROLLWATCH_BOOTSTRAP_SERVERS"],
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=values["ROLLWATCH_SASL_USERNAME"],
        sasl_password=values["ROLLWATCH_SASL_PASSWORD"],
        ssl_cafile=Path(values["ROLLWATCH_SSL_CAFILE"]),
    )


def grant(
    broker: SecureBroker, role: str, user: str, la_code: str | None = None, environment: dict[str, str] | None = None
) -> Path:
    output = broker.home / f"{user}.env"
    result = rollwatch(
        "--env-file", str(broker.admin_env), "access", "grant", "--role", role, "--user", user,
        "--output", str(output), *(("--la", la_code) if la_code else ()), environment=environment,
    )
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    return output


def read_one(settings: Settings, topic: str) -> list[bytes]:
    consumer = KafkaConsumer(
        group_id=f"{topic}-reader", auto_offset_reset="earliest", consumer_timeout_ms=15_000,
        **client_options(settings),
    )
    try:
        consumer.subscribe([topic])
        return [message.value for message in consumer][:1]
    finally:
        consumer.close()


def test_the_secure_broker_keeps_its_secrets_private(secure_broker: SecureBroker) -> None:
    data_dir = secure_broker.cluster.data_dir
    for private in (secure_broker.admin_env, data_dir / "tls" / "broker-keystore.pem", data_dir / "tls" / "ca-key.pem"):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    text = secure_broker.admin_env.read_text(encoding="utf-8")
    assert "ROLLWATCH_SECURITY_PROTOCOL=SASL_SSL" in text
    password = next(line.split("=", 1)[1] for line in text.splitlines() if line.startswith("ROLLWATCH_SASL_PASSWORD="))
    assert len(password) >= 22  # at least 128 bits of URL-safe base64
    for node_file in data_dir.glob("node-*/**/*"):
        if node_file.is_file() and node_file.suffix in (".properties", ".log"):
            assert password not in node_file.read_text(encoding="utf-8", errors="replace"), node_file


def test_an_anonymous_plaintext_client_is_not_served_on_the_client_port(secure_broker: SecureBroker) -> None:
    with pytest.raises(KafkaError):
        KafkaAdminClient(
            bootstrap_servers=secure_broker.cluster.bootstrap_servers, bootstrap_timeout_ms=4000,
            request_timeout_ms=4000,
        )


def test_la_330s_cme_officer_reads_its_topic_and_nothing_else(
    secure_broker: SecureBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    officer_env = grant(secure_broker, "cme-officer", "officer330", "330")
    officer = settings_from(officer_env, monkeypatch)
    assert read_one(officer, "la.330.alerts.cme-officer") == [b"for la.330.alerts.cme-officer"]
    check_access(officer, ["la.330.alerts.cme-officer"])
    for refused in ("la.331.alerts.cme-officer", "la.330.alerts.social-care"):
        with pytest.raises(KafkaAccessError, match=f"not allowed to READ topic {refused} as user officer330"):
            check_access(officer, [refused])
        # Reading by partition, with no group, yields nothing: the topic holds a record, but not for this user.
        consumer = KafkaConsumer(auto_offset_reset="earliest", **client_options(officer))
        try:
            consumer.assign([TopicPartition(refused, 0)])
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                assert not consumer.poll(timeout_ms=500), f"officer330 read {refused}"
        finally:
            consumer.close()
        # And the command an officer runs says so in one line, exit status 2.
        la_code, recipient = refused.split(".")[1], refused.rsplit(".", 1)[1].upper().replace("-", "_")
        result = rollwatch(
            "--env-file", str(officer_env), "alerts", "--la", la_code, "--recipient", recipient, "--from-beginning"
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [
            f"rollwatch alerts: not allowed to READ topic {refused} as user officer330; "
            "ask your Rollwatch administrator for access"
        ]
    visible = KafkaConsumer(**client_options(officer))
    try:
        assert {topic for topic in visible.topics() if topic.startswith("la.")} == {"la.330.alerts.cme-officer"}
    finally:
        visible.close()


def test_the_mis_writes_roll_events_and_reads_no_alert(
    secure_broker: SecureBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    mis_env = grant(secure_broker, "mis", "mis-sims")
    mis = settings_from(mis_env, monkeypatch)
    producer = KafkaProducer(acks="all", **client_options(mis))
    try:
        producer.send("roll.events", key=b"W330215224052", value=b"a roll change").get(timeout=30)
    finally:
        producer.close(timeout=10)
    for topic in ALERT_TOPICS:
        with pytest.raises(KafkaAccessError, match=f"not allowed to READ topic {topic} as user mis-sims"):
            check_access(mis, [topic])
    result = rollwatch("--env-file", str(mis_env), "alerts", "--la", "330", "--recipient", "CME_OFFICER")
    assert result.returncode == 2
    assert "not allowed to READ topic la.330.alerts.cme-officer as user mis-sims" in result.stderr
    # Without naming a topic it still sees none: alerts are invisible to it, not just unreadable.
    listing = KafkaConsumer(**client_options(mis))
    try:
        assert not [topic for topic in listing.topics() if topic.startswith("la.")]
    finally:
        listing.close()


def test_a_wrong_password_fails_fast_with_one_clear_line(secure_broker: SecureBroker) -> None:
    officer_env = grant(secure_broker, "cme-officer", "officer331", "331")
    wrong = secure_broker.home / "wrong.env"
    wrong.write_text(
        "".join(
            "ROLLWATCH_SASL_PASSWORD=not-the-password\n" if line.startswith("ROLLWATCH_SASL_PASSWORD=") else line + "\n"
            for line in officer_env.read_text(encoding="utf-8").splitlines()
        ),
        encoding="utf-8",
    )
    started = time.monotonic()
    result = rollwatch("--env-file", str(wrong), "alerts", "--la", "331", "--recipient", "CME_OFFICER")
    assert time.monotonic() - started < 10
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "rollwatch alerts: Kafka refused the login of user officer331 (SCRAM-SHA-512): wrong user name or "
        "password, or the user was revoked"
    ]
    assert "not-the-password" not in result.stderr


def test_access_list_shows_users_and_revoke_removes_them(secure_broker: SecureBroker) -> None:
    ops_env = grant(secure_broker, "ops", "ops-team")
    listed = rollwatch("--env-file", str(secure_broker.admin_env), "access", "list")
    assert listed.returncode == 0, listed.stderr
    assert "ops-team: SCRAM credentials, 32 ACL(s)" in listed.stdout
    assert "ALLOW READ topic roll.events.dlq" in listed.stdout
    revoked = rollwatch("--env-file", str(secure_broker.admin_env), "access", "revoke", "--user", "ops-team")
    assert revoked.returncode == 0, revoked.stderr
    assert "Revoked ops-team: 32 ACL(s) and 1 credential(s) deleted." in revoked.stdout
    assert "ops-team" not in rollwatch("--env-file", str(secure_broker.admin_env), "access", "list").stdout
    result = rollwatch("--env-file", str(ops_env), "alerts", "--la", "330", "--recipient", "CME_OFFICER")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    # The broker refuses an unknown user's login, or (busy, as in this module's run) drops the connection
    # before its answer arrives: either way one line naming the user and the credentials to check.
    assert "refused the login of user ops-team" in line or (
        "as user ops-team" in line and "check the user name and password (the user may have been revoked)" in line
    ), line


def test_ops_works_dead_letters_and_the_exporter_only_counts_them(
    secure_broker: SecureBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ops` lists, shows and republishes dead letters and reads no alert; `ops-metrics`, the exporter's
    role, counts them but may not republish one."""
    from processors.records import DeadLetter
    from schemas.codec import AvroCodec

    admin_settings = _admin_settings(secure_broker.admin_env)
    admin = KafkaAdminClient(client_id="isolation-dlq", **client_options(admin_settings))
    try:
        admin.create_topics([NewTopic("roll.events.dlq", 1, 1)])
    finally:
        admin.close()
    codec = AvroCodec()
    producer = KafkaProducer(acks="all", **client_options(admin_settings))
    try:
        for offset in (7, 8):
            letter = DeadLetter(f"raw {offset}".encode(), "roll.events", 0, offset, "DATE_IMPLAUSIBLE", "a date")
            producer.send("roll.events.dlq", key=b"W330215224052", value=codec.encode(letter)).get(timeout=30)
    finally:
        producer.close(timeout=10)
    ops_env = grant(secure_broker, "ops", "ops-dlq")
    exporter_env = grant(secure_broker, "ops-metrics", "dlq-exporter")

    counted = rollwatch("--env-file", str(exporter_env), "dlq", "exporter", "--once")
    assert counted.returncode == 0, counted.stderr
    assert 'rollwatch_dead_letters{error_code="DATE_IMPLAUSIBLE",topic="roll.events.dlq"} 2.0' in counted.stdout

    listed = rollwatch("--env-file", str(ops_env), "dlq", "list", "--topic", "roll.events")
    assert listed.returncode == 0, listed.stderr
    assert "roll.events.dlq:0:0" in listed.stdout and "roll.events.dlq:0:1" in listed.stdout
    shown = rollwatch("--env-file", str(ops_env), "dlq", "show", "roll.events.dlq:0:0")
    assert shown.returncode == 0, shown.stderr
    assert f"raw (5 bytes): {b'raw 7'.hex()}" in shown.stdout
    republished = rollwatch("--env-file", str(ops_env), "dlq", "republish", "roll.events.dlq:0:0")
    assert republished.returncode == 0, republished.stderr
    assert "roll.events.dlq:0:0: sent to roll.events:0:" in republished.stdout
    again = rollwatch("--env-file", str(ops_env), "dlq", "republish", "roll.events.dlq:0:0")
    assert again.returncode == 0 and "already republished by ops-dlq" in again.stdout, again.stderr

    # The exporter reads what was republished and counts only the letter still waiting.
    counted = rollwatch("--env-file", str(exporter_env), "dlq", "exporter", "--once")
    assert counted.returncode == 0, counted.stderr
    assert 'rollwatch_dead_letters{error_code="DATE_IMPLAUSIBLE",topic="roll.events.dlq"} 1.0' in counted.stdout
    # But may not send it back: the long-running exporter holds no right to write.
    refused = rollwatch("--env-file", str(exporter_env), "dlq", "republish", "roll.events.dlq:0:1")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "not allowed to WRITE" in refused.stderr and "as user dlq-exporter" in refused.stderr, refused.stderr
    assert "sent to" not in refused.stdout

    ops = settings_from(ops_env, monkeypatch)
    exporter = settings_from(exporter_env, monkeypatch)
    for user, settings in (("ops-dlq", ops), ("dlq-exporter", exporter)):
        for topic in [*ALERT_TOPICS, "case.actions", "roll.events"]:
            with pytest.raises(KafkaAccessError, match=f"not allowed to READ topic {topic} as user {user}"):
                check_access(settings, [topic])
    result = rollwatch("--env-file", str(ops_env), "alerts", "--la", "330", "--recipient", "CME_OFFICER")
    assert result.returncode == 2
    assert "not allowed to READ topic la.330.alerts.cme-officer as user ops-dlq" in result.stderr


def test_env_file_settings_reach_the_process(secure_broker: SecureBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLWATCH_SASL_USERNAME", "someone-else")
    monkeypatch.setenv("ROLLWATCH_SASL_PASSWORD", "x")
    # Every variable the file sets is put back after the test: the rest of the session talks to a plain broker.
    for line in secure_broker.admin_env.read_text(encoding="utf-8").splitlines():
        name = line.partition("=")[0].strip()
        if name:
            monkeypatch.setenv(name, os.environ.get(name, "placeholder"))
    load_env_file(str(secure_broker.admin_env))
    assert Settings().sasl_username == "admin"


def test_a_worker_and_register_sync_under_their_own_principals_match_the_in_process_replay(
    secure_broker: SecureBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shared scenarios over SASL_SSL: the admin publishes as the MIS would, the worker and register sync
    run as `worker` and `register` users, and the alerts are the replay's, field for field."""
    import json
    import uuid

    from cli.commands.publish import connection_of
    from processors.records import CLOCK_TICKS
    from rollwatch_client.ordering import AppliedOffsets, OrderedSender
    from schemas.codec import AvroCodec
    from schemas.errors import CodecError
    from schemas.jsonfields import alert_to_json
    from schemas.jsonformat import parse_line
    from sinks.register import open_register
    from streams.topics import ensure_worker_topics
    from tests.integration.test_scenarios_kafka import replayed
    from tests.integration.workers import WorkerProcess, worker_env
    from tests.shared import SHARED_SCENARIOS

    run_id = uuid.uuid4().hex[:8]
    deployment = {"ROLLWATCH_TOPIC_PREFIX": f"sec{run_id}.", "ROLLWATCH_APP_ID": f"sec-{run_id}",
                  "ROLLWATCH_REGISTER_GROUP": f"sec-reg-{run_id}"}
    worker_file = grant(secure_broker, "worker", f"worker-{run_id}", environment=deployment)
    register_file = grant(secure_broker, "register", f"register-{run_id}", environment=deployment)
    scenarios = [path.read_text(encoding="utf-8").splitlines() for path in sorted(SHARED_SCENARIOS.glob("*.jsonl"))]
    assert scenarios
    tuning = {
        "topic_partitions": max(4, len(scenarios)), "broker_commit_interval": 0.1, "web_enabled": False,
        "data_dir": secure_broker.home / f"worker-{run_id}", "broker_session_timeout": 10,
        "broker_rebalance_timeout": 10, "log_level": "WARNING",
    }
    worker_settings = settings_from(worker_file, monkeypatch).model_copy(update=tuning)
    admin = _admin_settings(secure_broker.admin_env).model_copy(
        update={"topic_prefix": worker_settings.topic_prefix, "app_id": worker_settings.app_id, **tuning}
    )
    ensure_worker_topics(admin)
    worker = WorkerProcess(worker_settings, secure_broker.home / f"worker-{run_id}.log").start()
    codec = AvroCodec()
    producer = KafkaProducer(acks="all", linger_ms=2, **client_options(admin))
    applied = AppliedOffsets(connection_of(admin), admin.app_id)
    sender = OrderedSender(producer.flush, applied, timeout=180)
    try:
        # Each scenario on its own partition, so each keeps its own business date; file order kept per topic run.
        for partition, lines in enumerate(scenarios):
            for line in lines:
                try:
                    topic, record = parse_line(line)
                except CodecError:
                    continue
                key = None if topic == CLOCK_TICKS else record.upn.encode()  # type: ignore[union-attr]
                value = codec.encode(record)
                sender.sent([producer.send(admin.topic(topic), key=key, value=value, partition=partition)])
                sender.barrier()
            assert worker.alive(), worker.log()
        consumer = KafkaConsumer(
            auto_offset_reset="earliest", isolation_level="read_committed", consumer_timeout_ms=4000,
            metadata_max_age_ms=1000, **client_options(admin),
        )
        consumer.subscribe(pattern=rf"^sec{run_id}\.la\.\d{{3}}\.alerts\..+$")
        from processors.records import Alert

        alerts = [codec.decode(message.value, Alert) for message in consumer]
        consumer.close()
    finally:
        producer.close()
        applied.close()
        worker.stop()
    expected = sorted(json.dumps(alert, sort_keys=True) for lines in scenarios for alert in replayed(lines))
    assert expected, "the shared scenarios raise alerts"
    assert sorted(json.dumps(alert_to_json(a), sort_keys=True) for a in alerts) == expected, worker.log()

    database = f"sqlite:///{secure_broker.home / f'register-{run_id}.db'}"
    register_settings = settings_from(register_file, monkeypatch).model_copy(update={"database_url": database})
    for command in (["register", "migrate"], ["register", "sync", "--once", "--timeout", "60"]):
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", *command], cwd=PROJECT_ROOT, env=worker_env(register_settings),
            capture_output=True, text=True, timeout=180, check=False,
        )
        assert done.returncode == 0, done.stderr
    register = open_register(database)
    try:
        assert sorted(a.alert_id for a in register.alerts()) == sorted(a.alert_id for a in alerts)
    finally:
        register.close()
