"""docker-compose.yml without a Docker engine: valid against the Compose Specification schema, every service
configured with settings the code really reads, consistent across workers, Kafka and Prometheus, and secured
as `rollwatch broker start --secure` is: SASL_SSL for every Kafka client, the authorizer on, no password in
the file."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from cli.commands.broker import NOT_INSTALLED
from config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = Path(__file__).resolve().parent / "compose_spec" / "compose-spec.json"
SCHEMA_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"
KAFKA_NODES = ("kafka-1", "kafka-2", "kafka-3")
WORKERS = ("worker-1", "worker-2")
#: The Rollwatch services that talk to Kafka, and the Kafka user each runs as.
KAFKA_CLIENTS = {"worker-1": "rollwatch-worker", "worker-2": "rollwatch-worker", "register-sync": "rollwatch-register",
                 "dlq-exporter": "rollwatch-dlq-exporter", "kafka-access": "admin"}
#: The dead-letter exporter's service.
EXPORTER = "dlq-exporter"
#: `${NAME:?message}` and `${NAME:-default}` as compose interpolates them; the tests fill in a stand-in value.
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Z_]+)(?::(?P<op>[?-])(?P<arg>[^}]*))?\}")


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def interpolate(value: str) -> str:
    def stand_in(match: re.Match[str]) -> str:
        return match["arg"] if match["op"] == "-" else f"test-{match['name'].lower().replace('_', '-')}"

    return INTERPOLATION.sub(stand_in, value)


def environment(service: dict[str, Any]) -> dict[str, str | None]:
    raw = service.get("environment", {})
    if isinstance(raw, list):
        pairs = [item.split("=", 1) if "=" in item else [item, None] for item in raw]
        raw = {name: value for name, value in pairs}
    return {name: interpolate(str(value)) if value is not None else None for name, value in raw.items()}


def settings_of(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The Settings a process of this service builds from its environment (unset pass-throughs left out).

    A ROLLWATCH_<NAME>_FILE names a file that exists only in the container (a secret or a volume kafka-access
    fills): the test points it at a stand-in file of its own.
    """
    import os

    for name in [name for name in os.environ if name.startswith("ROLLWATCH_")]:
        monkeypatch.delenv(name)
    stand_ins = Path(tempfile.mkdtemp(prefix="compose-secrets-"))
    for name, value in environment(service).items():
        if name.startswith("ROLLWATCH_") and value is not None:
            if name.endswith("_FILE"):
                stand_in = stand_ins / name.lower()
                stand_in.write_text(f"test-{name.lower()}\n")
                value = str(stand_in)
            monkeypatch.setenv(name, value)
    return Settings()


def rollwatch_services() -> list[str]:
    return [name for name, service in services().items() if service.get("image", "").startswith("rollwatch")]


def test_the_vendored_schema_is_the_one_noted() -> None:
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_schema_check_catches_a_mistake() -> None:
    broken = compose()
    broken["services"]["worker-1"]["restart_policy"] = "always"  # not a service key
    broken["services"]["grafana"]["depends_on"]["prometheus"]["condition"] = "service_ready"
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    assert len(list(validator.iter_errors(broken))) >= 2


def test_every_rollwatch_variable_is_a_settings_field() -> None:
    from config.settings import secret_fields

    fields = set(Settings.model_fields)
    # ROLLWATCH_<NAME>_FILE exists for the secret settings only, ROLLWATCH_SECRETS_DIR is a field of its own.
    file_forms = {f"{field}_file" for field in secret_fields(Settings)}
    assert "secrets_dir" in fields
    seen = set()
    for name, service in services().items():
        for variable in environment(service):
            if variable.startswith("ROLLWATCH_"):
                field = variable.removeprefix("ROLLWATCH_").lower()
                assert field in fields or field in file_forms, f"{name}: {variable}"
                seen.add(field)
    assert {"security_protocol", "sasl_mechanism", "sasl_username", "sasl_password_file", "ssl_cafile"} <= seen


@pytest.mark.parametrize("name", ["worker-1", "worker-2", "register-migrate", "register-sync", "register-deliver"])
def test_each_rollwatch_service_builds_valid_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert name in rollwatch_services()
    settings = settings_of(services()[name], monkeypatch)
    assert settings.database_url.startswith("postgresql+psycopg://rollwatch:")
    assert settings.database_url.endswith("@postgres:5432/rollwatch")


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (volume name or ./path) of a service's volumes."""
    return {volume.split(":")[1]: volume.split(":")[0] for volume in service.get("volumes", [])}


def mounted(service: dict[str, Any], path: str) -> str | None:
    """The source of the mount `path` lies in, if any (the deepest, as mounts nest)."""
    holding = [target for target in mounts(service) if path == target or path.startswith(target.rstrip("/") + "/")]
    return mounts(service)[max(holding, key=len)] if holding else None


@pytest.mark.parametrize("name", sorted(KAFKA_CLIENTS))
def test_every_kafka_client_uses_sasl_ssl_as_its_own_user(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    all_services = services()
    service = all_services[name]
    settings = settings_of(service, monkeypatch)
    assert settings.security_protocol == "SASL_SSL"
    assert settings.sasl_mechanism == "SCRAM-SHA-512"
    assert settings.sasl_username == KAFKA_CLIENTS[name]
    assert settings.sasl_password is not None
    assert settings.bootstrap_list == [f"{node}:9092" for node in KAFKA_NODES]
    env = environment(service)
    # The password is read from a file the service alone mounts, never from a variable.
    assert "ROLLWATCH_SASL_PASSWORD" not in env
    password_file = str(env["ROLLWATCH_SASL_PASSWORD_FILE"])
    source = mounted(service, password_file)
    if name == "kafka-access":
        assert password_file == "/run/secrets/kafka_admin_password"
        assert service["secrets"] == ["kafka_admin_password"]
    else:
        assert source is not None and source.endswith("-credentials"), f"{name}: {password_file} not on a volume"
        readers = [other for other, spec in all_services.items() if source in mounts(spec).values()]
        owners = {KAFKA_CLIENTS.get(reader) for reader in readers} - {"admin"}
        assert owners == {KAFKA_CLIENTS[name]}, f"{source} is mounted by {readers}"
    # The CA that signs the brokers' certificates is mounted where the setting says.
    assert settings.ssl_cafile is not None
    assert mounted(service, str(settings.ssl_cafile)) == "tls-public"


def test_every_rollwatch_service_that_names_kafka_is_a_secured_client() -> None:
    for name in rollwatch_services():
        env = environment(services()[name])
        if "ROLLWATCH_BOOTSTRAP_SERVERS" in env:
            assert name in KAFKA_CLIENTS, f"{name} talks to Kafka but is not checked as a client"
            assert env["ROLLWATCH_SECURITY_PROTOCOL"] == "SASL_SSL"
        else:
            assert not any(variable.startswith(("ROLLWATCH_SASL", "ROLLWATCH_SSL")) for variable in env), name


def test_kafka_access_grants_the_roles_under_the_names_the_services_use(monkeypatch: pytest.MonkeyPatch) -> None:
    all_services = services()
    access = all_services["kafka-access"]
    script = (ROOT / "deploy" / "compose" / "grant-access.sh").read_text()
    grants = re.findall(r"^grant (\S+) (\S+) (\S+)$", script, re.MULTILINE)
    from config.access import ROLES

    granted = {user: (role, directory) for role, user, directory in grants}
    for name, user in KAFKA_CLIENTS.items():
        if user == "admin":
            continue
        role, directory = granted[user]
        assert role in ROLES
        service = all_services[name]
        # The volume the service reads its password from is the one the grant writes into.
        source = mounted(service, str(environment(service)["ROLLWATCH_SASL_PASSWORD_FILE"]))
        assert mounts(access)[directory] == source
        assert access["depends_on"] and all_services[name]["depends_on"]["kafka-access"] == {
            "condition": "service_completed_successfully"
        }
    assert {role for role, _ in granted.values()} == {"worker", "register", "ops-metrics"}
    assert granted["rollwatch-dlq-exporter"][0] == "ops-metrics"
    # The ACLs name the app id and the register's group: the granting admin and the services agree on them.
    admin = settings_of(access, monkeypatch)
    for name in ("worker-1", "register-sync", EXPORTER):
        client = settings_of(all_services[name], monkeypatch)
        assert (client.app_id, client.register_group, client.topic_prefix) == (
            admin.app_id, admin.register_group, admin.topic_prefix
        )


#: A setting or variable whose value is a secret.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|CREDENTIAL", re.IGNORECASE)


def raw_environment(service: dict[str, Any]) -> dict[str, str | None]:
    raw = service.get("environment", {})
    return {name: None if value is None else str(value) for name, value in raw.items()}


def test_no_service_has_a_password_literal() -> None:
    for name, service in services().items():
        for variable, value in raw_environment(service).items():
            if value is None or variable.endswith("_FILE"):
                continue  # passed through from the environment, or a path
            if SECRET_NAME.search(variable):
                assert re.fullmatch(r"\$\{[A-Z_]+(:[?-][^}]*)?\}", value), f"{name}: {variable} is a literal"
            # A URL's password part, too (user:password@host).
            for credentials in re.findall(r"://[^:/@\s]+:([^@\s]+)@", value):
                assert re.fullmatch(r"\$\{[A-Z_]+(:[?-][^}]*)?\}", credentials), f"{name}: {variable}"
    for secret in compose()["secrets"].values():
        assert set(secret) == {"environment"}, "secrets come from the operator's environment or .env"


def test_the_check_for_password_literals_catches_one() -> None:
    leaked = {"environment": {"ROLLWATCH_SASL_PASSWORD": "hunter2-hunter2"}}
    with pytest.raises(AssertionError):
        for variable, value in raw_environment(leaked).items():
            assert value is None or not SECRET_NAME.search(variable) or value.startswith("${"), variable


def test_kafka_nodes_authenticate_and_authorize_like_the_secure_local_broker() -> None:
    from localbroker.config import ADMIN_USER, secure_server_properties

    local = secure_server_properties(node_id=1, nodes=3, base_port=19092, node_dir=Path("/n"), keystore=Path("/k"))
    for name in KAFKA_NODES:
        service = services()[name]
        env = environment(service)
        protocols = dict(item.split(":") for item in str(env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]).split(","))
        # Clients only on SASL_SSL; the nodes' own listeners on TLS with client certificates; nothing plaintext.
        assert protocols == {"CLIENTS": "SASL_SSL", "CONTROLLER": "SSL", "INTERNAL": "SSL"}
        assert env["KAFKA_LISTENER_NAME_INTERNAL_SSL_CLIENT_AUTH"] == "required"
        assert env["KAFKA_LISTENER_NAME_CONTROLLER_SSL_CLIENT_AUTH"] == "required"
        assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "INTERNAL"
        for key in ("authorizer.class.name", "allow.everyone.if.no.acl.found", "sasl.enabled.mechanisms",
                    "listener.name.clients.sasl.enabled.mechanisms",
                    "listener.name.clients.scram-sha-512.sasl.jaas.config", "ssl.keystore.type"):
            variable = "KAFKA_" + key.replace("_", "__").replace("-", "___").replace(".", "_").upper()
            assert env[variable] == local[key], variable
        assert set(str(env["KAFKA_SUPER_USERS"]).split(";")) == {"User:CN=kafka-broker", f"User:{ADMIN_USER}"}
        # The admin user is created at format time, from the compose secret.
        assert service["entrypoint"] == ["/bin/sh", "/etc/rollwatch/kafka-node.sh"]
        assert service["secrets"] == ["kafka_admin_password"]
        assert mounts(service)["/etc/kafka/tls"] == "tls-kafka"
        assert mounts(service)["/etc/rollwatch"] == "./deploy/compose"
        assert str(env["KAFKA_SSL_KEYSTORE_LOCATION"]).startswith("/etc/kafka/tls/")
    script = (ROOT / "deploy" / "compose" / "kafka-node.sh").read_text()
    assert f"name={ADMIN_USER}," in script and "--add-scram" in script
    certs = (ROOT / "deploy" / "compose" / "make_certs.py").read_text()
    assert 'BROKER_PRINCIPAL = "kafka-broker"' in certs
    assert all(f'"{node}"' in certs for node in KAFKA_NODES), "the nodes' certificate names every node"


def test_the_dashboard_is_reached_over_tls_only() -> None:
    all_services = services()
    for name in WORKERS:
        assert "ports" not in all_services[name], f"{name} publishes its plain HTTP port"
        assert environment(all_services[name])["ROLLWATCH_DASHBOARD_SECURE_COOKIE"] == "true"
    dashboard = all_services["dashboard"]
    config_mounts = {target: source for target, source in mounts(dashboard).items() if source.startswith("./")}
    config = (ROOT / config_mounts["/etc/nginx/conf.d/default.conf"].removeprefix("./")).read_text()
    listens = re.findall(r"listen (\d+) ssl;", config)
    upstreams = re.findall(r"proxy_pass http://([\w-]+):(\d+);", config)
    assert sorted(dashboard["ports"]) == sorted(f"{port}:{port}" for port in listens)
    assert sorted(upstreams) == sorted((name, "6066") for name in WORKERS)
    assert "listen 80" not in config and "ssl_certificate /etc/nginx/tls/" in config
    assert mounts(dashboard)["/etc/nginx/tls"] == "tls-dashboard"
    assert "X-Forwarded-User \"\"" in (ROOT / "deploy" / "compose" / "proxy_headers.inc").read_text()


def test_workers_agree_with_each_other_and_with_the_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    all_services = services()
    workers = [settings_of(all_services[name], monkeypatch) for name in WORKERS]
    first, second = workers
    shared = ("app_id", "topic_partitions", "topic_replication_factor", "bootstrap_servers", "store",
              "processing_guarantee", "web_port")
    assert {field: getattr(first, field) for field in shared} == {field: getattr(second, field) for field in shared}
    assert first.bootstrap_list == [f"{node}:9092" for node in KAFKA_NODES]
    assert first.topic_replication_factor == len(KAFKA_NODES) == 3
    assert first.topic_partitions % len(WORKERS) == 0, "partitions spread evenly over the workers"
    assert first.processing_guarantee == "exactly_once"
    assert first.store == "rocksdb://"
    assert first.web_enabled and first.web_host == "0.0.0.0"  # noqa: S104 - reachable by Prometheus
    # The register reads the same topics from the same cluster.
    register = settings_of(all_services["register-sync"], monkeypatch)
    assert (register.bootstrap_servers, register.topic_prefix) == (first.bootstrap_servers, first.topic_prefix)
    for name in WORKERS:
        assert mounted(all_services[name], str(first.data_dir)) == f"{name}-data", "table state lives on the volume"


def test_kafka_nodes_form_one_kraft_quorum_with_rf_3_and_min_isr_2() -> None:
    all_services = services()
    # The image runs the Kafka release the local launcher and the tests run.
    pom = re.search(r"<kafka.version>([^<]+)</kafka.version>", (ROOT / "localbroker" / "pom.xml").read_text())
    assert pom is not None
    kafka_version = pom[1]
    assert kafka_version.startswith("4.")
    voters = []
    for index, name in enumerate(KAFKA_NODES, start=1):
        service = all_services[name]
        env = environment(service)
        assert service["image"] == f"apache/kafka:{kafka_version}"
        assert env["KAFKA_NODE_ID"] == str(index)
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"CLIENTS://{name}:9092,INTERNAL://{name}:9094"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2"
        assert any(volume.endswith(":" + str(env["KAFKA_LOG_DIRS"])) for volume in service["volumes"])
        voters.append(env["KAFKA_CONTROLLER_QUORUM_VOTERS"])
        assert env["CLUSTER_ID"] == environment(all_services[KAFKA_NODES[0]])["CLUSTER_ID"]
    assert set(voters) == {",".join(f"{i}@{node}:9093" for i, node in enumerate(KAFKA_NODES, start=1))}


def test_prometheus_scrapes_the_services_that_serve_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    all_services = services()
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: [t for group in job["static_configs"] for t in group["targets"]]
        for job in config["scrape_configs"]
    }
    worker_ports = {name: settings_of(all_services[name], monkeypatch).web_port for name in WORKERS}
    assert sorted(targets["rollwatch-worker"]) == sorted(f"{name}:{port}" for name, port in worker_ports.items())
    deliver = settings_of(all_services["register-deliver"], monkeypatch)
    assert deliver.deliver_metrics_port > 0
    assert targets["rollwatch-deliver"] == [f"register-deliver:{deliver.deliver_metrics_port}"]
    sync = settings_of(all_services["register-sync"], monkeypatch)
    assert targets["rollwatch-sync"] == [f"register-sync:{sync.sync_metrics_port}"]
    assert targets["rollwatch-dlq"] == [f"{EXPORTER}:{exporter_command().port}"]
    # The rules' tests name the exporter's job as the config does.
    assert 'job="rollwatch-dlq"' in (ROOT / "deploy" / "prometheus" / "rules.test.yml").read_text()
    prometheus = all_services["prometheus"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert config["rule_files"] == ["/etc/prometheus/rules.yml"]
    assert (ROOT / "deploy" / "prometheus" / "rules.yml").is_file()


def test_grafana_gets_the_provisioning_and_the_dashboards() -> None:
    grafana = services()["grafana"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in grafana["volumes"]}
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/rollwatch.yml").read_text())
    dashboards_path = provider["providers"][0]["options"]["path"]
    assert (ROOT / mounts[dashboards_path].removeprefix("./") / "rollwatch.json").is_file()
    home = environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{dashboards_path}/rollwatch.json"


def test_health_checks_use_the_real_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    all_services = services()
    for name in WORKERS:
        check = " ".join(all_services[name]["healthcheck"]["test"])
        port = settings_of(all_services[name], monkeypatch).web_port
        assert f"http://127.0.0.1:{port}/ready" in check
    deliver_check = " ".join(all_services["register-deliver"]["healthcheck"]["test"])
    deliver_port = settings_of(all_services["register-deliver"], monkeypatch).deliver_metrics_port
    assert f"http://127.0.0.1:{deliver_port}/metrics" in deliver_check
    exporter_check = " ".join(all_services[EXPORTER]["healthcheck"]["test"])
    assert f"http://127.0.0.1:{exporter_command().port}/metrics" in exporter_check
    long_running = [name for name, service in all_services.items() if service.get("restart") == "unless-stopped"]
    without = [name for name in long_running if "healthcheck" not in all_services[name]]
    # register sync exposes nothing to probe: it is the container's only process, so its exit is its failure.
    assert without == ["register-sync"]
    for name in KAFKA_NODES:
        check = " ".join(all_services[name]["healthcheck"]["test"])
        assert "--command-config /etc/kafka/tls/internal-client.properties" in check and ":9094" in check


def exporter_command() -> Any:
    """The exporter service's command as `rollwatch` parses it."""
    from cli.main import build_parser

    return build_parser().parse_args(services()[EXPORTER]["command"])


def test_the_dead_letter_exporter_runs_the_real_command_and_may_read_only_what_it_counts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cli.commands.dlq import REPUBLISHED, dlq_topics, run_exporter
    from config.access import role_bindings

    command = exporter_command()
    assert command.handler is run_exporter and not command.once
    service = services()[EXPORTER]
    assert service["restart"] == "unless-stopped"
    settings = settings_of(service, monkeypatch)
    assert settings.web_host == "0.0.0.0"  # noqa: S104 - scraped from the prometheus container
    # Not register sync's port, though each has its own address on the compose network.
    assert command.port != settings_of(services()["register-sync"], monkeypatch).sync_metrics_port
    bindings = role_bindings("ops-metrics", topic_prefix=settings.topic_prefix)
    assert {b.name for b in bindings if b.operation == "READ"} == {*dlq_topics(settings), settings.topic(REPUBLISHED)}
    assert {b.operation for b in bindings} == {"READ", "DESCRIBE"}


def test_dependencies_volumes_and_image_build_line_up() -> None:
    document = compose()
    all_services = document["services"]
    for name, service in all_services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in all_services, f"{name} depends on unknown {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in document["volumes"], f"{name} uses undeclared volume {source}"
    for name in rollwatch_services():
        assert all_services[name]["build"] == "."
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["rollwatch"]' in dockerfile
    copied = copied_from_the_context(dockerfile)
    assert copied <= dockerignore_allowed()


#: Development tools: neither copied into the image nor installed there.
DEVELOPMENT_ONLY = {"localbroker", "bench"}


def copied_from_the_context(dockerfile: str) -> set[str]:
    """What the Dockerfile's COPY lines take from the build context (not from another stage)."""
    return {
        path.rstrip("*") for line in dockerfile.splitlines()
        if line.startswith("COPY ") and "--from=" not in line for path in line.split()[1:-1]
    }


def dockerignore_allowed() -> set[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return {line[1:].rstrip("/") for line in lines if line.startswith("!")}


def image_packages(tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """The packages the image's build installs: pyproject.toml's after the Dockerfile's own rewrite of it."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    rewrites = [line for line in dockerfile.splitlines() if line.startswith("RUN python -c") and "pyproject" in line]
    for rewrite in rewrites:
        program, flag, command = shlex.split(rewrite.removeprefix("RUN "))  # as the shell reads it
        assert (program, flag) == ("python", "-c")
        subprocess.run([sys.executable, "-c", command], cwd=tmp_path, check=True)
    setuptools = tomllib.loads((tmp_path / "pyproject.toml").read_text())["tool"]["setuptools"]
    return list(setuptools["packages"]), dict(setuptools.get("package-dir", {}))


def test_the_image_installs_every_package_but_the_development_tools(tmp_path: Path) -> None:
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    packages, folders = image_packages(tmp_path)
    assert set(packages) == set(listed) - DEVELOPMENT_ONLY
    copied = copied_from_the_context((ROOT / "Dockerfile").read_text())
    # Every package the image installs reaches it, and no development tool does.
    assert {folders.get(package.split(".")[0], package.split(".")[0]) for package in packages} <= copied
    assert not (DEVELOPMENT_ONLY & (copied | dockerignore_allowed()))


def test_the_image_installs_from_the_lock_with_hashes() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    installs = [line for line in dockerfile.splitlines() if re.search(r"\bpip (install|wheel)\b", line)]
    assert installs
    for line in installs:
        # Every install takes no dependency of its own accord: those come from the lock, checked against its hashes.
        assert "--no-deps" in line, line
        if " -r " in line:
            assert "--require-hashes --no-deps -r" in line and line.rstrip().split(" -r ")[1].split()[0].endswith(
                "requirements.lock"
            ), line
    stages = dockerfile.split("\nFROM ")
    final = stages[-1]
    assert "--require-hashes --no-deps -r /tmp/requirements.lock" in final
    assert final.index("requirements.lock") < final.index("wheels/*.whl"), "the lock first, then the project"
    # Not root at run time: the user Kubernetes' runAsUser names.
    users = re.findall(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert users[-1] == "10001:10001"


def test_broker_says_in_one_line_that_the_local_broker_is_not_installed() -> None:
    """Where localbroker is missing (an image without it), `rollwatch broker` says so instead of a traceback."""
    program = (
        "import argparse, sys; sys.modules['localbroker'] = None\n"
        "from cli.commands import broker\n"
        "from config.settings import Settings\n"
        "parser = argparse.ArgumentParser(); broker.register(parser.add_subparsers(dest='command'))\n"
        "args = parser.parse_args(['broker', 'status'])\n"
        "sys.exit(args.handler(args, Settings()))\n"
    )
    outcome = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert outcome.returncode == 2, outcome.stderr
    assert outcome.stderr.strip().splitlines() == [NOT_INSTALLED]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked() -> dict[str, tuple[str, list[str]]]:
    """requirements.lock as name -> (version, hashes)."""
    text = (ROOT / "requirements.lock").read_text()
    entries = {}
    for match in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)((?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})+)", text,
                             re.MULTILINE):
        entries[canonical(match[1])] = (match[2], re.findall(r"sha256:([0-9a-f]{64})", match[3]))
    requirements = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert len(requirements) == len(entries), "every line of the lock is name==version with its hashes"
    return entries


def test_the_lock_pins_every_runtime_dependency_with_hashes() -> None:
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    lock = locked()
    direct = [
        *project["project"]["dependencies"],
        *project["project"]["optional-dependencies"]["postgres"],
        *project["build-system"]["requires"],
    ]
    pending = []
    for line in direct:
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{line}: pyproject pins exactly"
        assert canonical(requirement.name) in lock, f"{requirement.name} is not in requirements.lock"
        assert lock[canonical(requirement.name)][0] == specifier.version, f"{line}: locked at another version"
        pending.append(requirement)
    # What those need in turn, extras included, as installed here: every one locked.
    environment = {"python_version": "3.11", "sys_platform": "linux", "platform_system": "Linux"}
    seen: set[str] = set()
    while pending:
        requirement = pending.pop()
        name = canonical(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        assert name in lock, f"{requirement.name} (needed in turn) is not in requirements.lock"
        try:
            needs = requires(requirement.name) or []
        except PackageNotFoundError:
            continue  # a build requirement not installed here
        for need in map(Requirement, needs):
            extras = requirement.extras or {""}
            if need.marker is None or any(need.marker.evaluate({**environment, "extra": e}) for e in extras):
                pending.append(need)
    assert {"rocksdict", "psycopg-binary", "setuptools"} <= seen
    for name, (_, hashes) in lock.items():
        assert hashes, f"{name} has no hash"
    header = (ROOT / "requirements.lock").read_text().split("\n\n", 1)[0]
    assert "--generate-hashes" in header and re.search(r"--extra[ =]postgres", header)


def test_the_cli_starts_without_the_development_tools() -> None:
    """As in the image: localbroker and bench missing, every command loads and `broker` says why it cannot run."""
    hide = "import sys; sys.modules['localbroker'] = None; sys.modules['bench'] = None; "
    outcome = subprocess.run(
        [sys.executable, "-c", hide + "from cli.main import main; sys.exit(main(['broker', 'status']))"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert outcome.returncode == 2, outcome.stderr
    assert outcome.stderr.strip().splitlines() == [NOT_INSTALLED]
