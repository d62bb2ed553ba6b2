"""Role ACL bindings, the secure broker's properties and TLS files, and env files, without a broker."""

from __future__ import annotations

import os
import ssl
import stat
from pathlib import Path

import pytest

from cli.main import build_parser, load_env_file
from config.access import ROLES, AccessError, Binding, env_file_text, role_bindings
from config.kafka import connection_options
from config.settings import Settings
from localbroker.certificates import ensure_tls_files
from localbroker.config import ClusterLayout, internal_port, secure_server_properties, server_properties
from processors.records import INPUT_TOPICS


def test_an_officer_reads_only_their_las_one_alert_topic_and_groups_named_after_it() -> None:
    assert role_bindings("cme-officer", la_code="330") == sorted(
        [
            Binding("TOPIC", "la.330.alerts.cme-officer", "LITERAL", "READ"),
            Binding("TOPIC", "la.330.alerts.cme-officer", "LITERAL", "DESCRIBE"),
            Binding("GROUP", "la.330.alerts.cme-officer", "PREFIXED", "READ"),
            Binding("GROUP", "la.330.alerts.cme-officer", "PREFIXED", "DESCRIBE"),
        ]
    )
    social = role_bindings("social-care", la_code="331", topic_prefix="test.")
    assert {b.name for b in social} == {"test.la.331.alerts.social-care"}
    assert {b.name for b in role_bindings("ehe-service", la_code="332")} == {"la.332.alerts.ehe-service"}


def test_no_role_but_the_worker_writes_alerts_and_no_per_la_role_uses_a_prefix_wider_than_its_topic() -> None:
    for role in ROLES:
        la_code = "330" if role in ("cme-officer", "social-care", "ehe-service") else None
        for binding in role_bindings(role, la_code=la_code):
            if binding.resource == "TOPIC" and binding.name.startswith("la.") and binding.operation == "WRITE":
                assert role == "worker"
            if la_code is not None:
                assert binding.name == "la.330.alerts." + role


def test_mis_writes_the_five_input_topics_and_reads_nothing() -> None:
    bindings = role_bindings("mis")
    assert {b.name for b in bindings} == {
        "roll.events", "ehe.notifications", "safeguarding.status", "clock.ticks", "attendance.registers"
    }
    assert {b.operation for b in bindings} == {"WRITE", "DESCRIBE"}
    assert all(b.pattern == "LITERAL" for b in bindings)


def test_worker_register_and_ops_get_what_they_run_on() -> None:
    worker = role_bindings("worker", app_id="rw", topic_prefix="p.")
    assert Binding("TOPIC", "p.roll.events", "LITERAL", "READ") in worker
    assert Binding("TOPIC", "p.roll.events.dlq", "LITERAL", "WRITE") in worker
    assert Binding("TOPIC", "p.la.", "PREFIXED", "WRITE") in worker
    assert Binding("TOPIC", "rw-", "PREFIXED", "ALL") in worker
    assert Binding("GROUP", "rw", "PREFIXED", "READ") in worker
    assert Binding("TRANSACTIONAL_ID", "rw", "PREFIXED", "WRITE") in worker
    assert Binding("CLUSTER", "kafka-cluster", "LITERAL", "IDEMPOTENT_WRITE") in worker
    register = role_bindings("register", register_group="reg")
    assert Binding("TOPIC", "la.", "PREFIXED", "READ") in register
    assert Binding("TOPIC", "case.actions", "LITERAL", "WRITE") in register
    assert Binding("TOPIC", "cme.referrals", "LITERAL", "WRITE") in register
    # register sync keeps each referral (the referrer's details go nowhere else).
    assert Binding("TOPIC", "cme.referrals", "LITERAL", "READ") in register
    assert Binding("TOPIC", "p.cme.referrals", "LITERAL", "READ") in worker
    assert Binding("TOPIC", "p.cme.referrals.dlq", "LITERAL", "WRITE") in worker
    assert Binding("GROUP", "reg", "LITERAL", "READ") in register
    assert not any(b.operation == "WRITE" and b.name.startswith("la.") for b in register)


def test_ops_works_dead_letters_and_the_exporters_role_only_reads_them() -> None:
    dead_letters = {f"p.{t}.dlq" for t in INPUT_TOPICS}
    ops = role_bindings("ops", topic_prefix="p.")
    grants = {(b.name, b.operation) for b in ops}
    assert all(b.resource == "TOPIC" and b.pattern == "LITERAL" for b in ops)
    # list and show read the .dlq topics and what was republished; republish writes each input and the record.
    assert grants >= {(name, op) for name in dead_letters for op in ("READ", "DESCRIBE")}
    assert grants >= {("p.dlq.republished", op) for op in ("READ", "DESCRIBE", "WRITE", "CREATE")}
    assert grants >= {(f"p.{t}", op) for t in INPUT_TOPICS for op in ("WRITE", "DESCRIBE")}
    assert {b.name for b in ops} == dead_letters | {f"p.{t}" for t in INPUT_TOPICS} | {"p.dlq.republished"}
    # Never an input's or an alert's data: no READ beyond the dead letters and their record.
    assert {b.name for b in ops if b.operation == "READ"} == dead_letters | {"p.dlq.republished"}
    metrics = role_bindings("ops-metrics", topic_prefix="p.")
    assert {(b.name, b.operation) for b in metrics} == {
        (name, op) for name in [*dead_letters, "p.dlq.republished"] for op in ("READ", "DESCRIBE")
    }


def test_access_help_names_every_role() -> None:
    from cli.commands.access import EPILOG

    for role in ROLES:
        assert f"  {role} " in EPILOG
    assert "dlq.republished" in EPILOG


@pytest.mark.parametrize(
    ("role", "la_code"), [("cme-officer", None), ("cme-officer", "33"), ("mis", "330"), ("root", None)]
)
def test_wrong_role_arguments_are_refused(role: str, la_code: str | None) -> None:
    with pytest.raises(AccessError):
        role_bindings(role, la_code=la_code)


def test_env_files_round_trip_through_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = env_file_text({"ROLLWATCH_SASL_USERNAME": "officer330", "ROLLWATCH_SASL_PASSWORD": "a-b_c"})
    path = tmp_path / "officer.env"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("ROLLWATCH_SASL_USERNAME", "someone-else")
    monkeypatch.delenv("ROLLWATCH_SASL_PASSWORD", raising=False)
    assert build_parser().parse_args(["--env-file", str(path), "replay", "x"]).env_file == str(path)
    load_env_file(str(path))
    settings = Settings()
    assert settings.sasl_username == "officer330"
    assert settings.sasl_password is not None and settings.sasl_password.get_secret_value() == "a-b_c"
    with pytest.raises(AccessError) as refused:
        env_file_text({"ROLLWATCH_SASL_PASSWORD": "has space"})
    assert "has space" not in str(refused.value)


def test_secure_properties_put_clients_on_sasl_ssl_and_deny_by_default(tmp_path: Path) -> None:
    plain = server_properties(node_id=2, nodes=3, base_port=20000, node_dir=tmp_path)
    secure = secure_server_properties(
        node_id=2, nodes=3, base_port=20000, node_dir=tmp_path, keystore=tmp_path / "k.pem"
    )
    assert plain["listeners"] == "PLAINTEXT://127.0.0.1:20010,CONTROLLER://127.0.0.1:20011"
    assert secure["listeners"] == (
        f"CLIENTS://127.0.0.1:20010,CONTROLLER://127.0.0.1:20011,INTERNAL://127.0.0.1:{internal_port(20000, 2)}"
    )
    assert secure["listener.security.protocol.map"] == "CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,CLIENTS:SASL_SSL"
    assert secure["inter.broker.listener.name"] == "INTERNAL"
    assert secure["ssl.keystore.type"] == "PEM"
    assert secure["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert secure["allow.everyone.if.no.acl.found"] == "false"
    assert "User:ANONYMOUS" in secure["super.users"].split(";")
    assert ClusterLayout.from_json(ClusterLayout("id", 3, 20000, secure=True).to_json()).secure
    assert not ClusterLayout.from_json('{"cluster_id": "x", "nodes": 1, "base_port": 9092}').secure


def test_tls_files_are_generated_once_private_and_trusted_by_a_client_context(tmp_path: Path) -> None:
    files = ensure_tls_files(tmp_path / "tls")
    for private in (files.broker_keystore, tmp_path / "tls" / "ca-key.pem"):
        assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    keystore = files.broker_keystore.read_text(encoding="ascii")
    assert keystore.startswith("-----BEGIN PRIVATE KEY-----") and keystore.count("BEGIN CERTIFICATE") == 2
    before = files.broker_keystore.read_bytes()
    assert ensure_tls_files(tmp_path / "tls").broker_keystore.read_bytes() == before
    # The broker's own key and chain load as a server would load them, and the CA is accepted by clients.
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(files.broker_keystore)
    ssl.create_default_context(cafile=str(files.ca_file))


def test_client_options_present_a_client_certificate_for_mutual_tls(tmp_path: Path) -> None:
    files = ensure_tls_files(tmp_path)
    settings = Settings(
        security_protocol="SSL", ssl_cafile=files.ca_file, ssl_certfile=files.broker_keystore, ssl_keyfile=None
    )
    context = connection_options(settings)["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    with pytest.raises(ssl.SSLError):
        connection_options(Settings(security_protocol="SSL", ssl_certfile=files.ca_file))
