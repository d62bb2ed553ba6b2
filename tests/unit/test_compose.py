"""docker-compose.yml without a Docker engine: valid against the Compose Specification schema, and every
service configured with settings the code really reads, consistent across workers, Kafka and Prometheus."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = Path(__file__).resolve().parent / "compose_spec" / "compose-spec.json"
SCHEMA_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"
KAFKA_NODES = ("kafka-1", "kafka-2", "kafka-3")
WORKERS = ("worker-1", "worker-2")
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
    """The Settings a process of this service builds from its environment (unset pass-throughs left out)."""
    import os

    for name in [name for name in os.environ if name.startswith("ROLLWATCH_")]:
        monkeypatch.delenv(name)
    for name, value in environment(service).items():
        if name.startswith("ROLLWATCH_") and value is not None:
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
    fields = set(Settings.model_fields)
    for name, service in services().items():
        for variable in environment(service):
            if variable.startswith("ROLLWATCH_"):
                assert variable.removeprefix("ROLLWATCH_").lower() in fields, f"{name}: {variable}"


@pytest.mark.parametrize("name", ["worker-1", "worker-2", "register-migrate", "register-sync", "register-deliver"])
def test_each_rollwatch_service_builds_valid_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert name in rollwatch_services()
    settings = settings_of(services()[name], monkeypatch)
    assert settings.database_url.startswith("postgresql+psycopg://rollwatch:")
    assert settings.database_url.endswith("@postgres:5432/rollwatch")


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
    for name in ("register-sync", "register-deliver"):
        register = settings_of(all_services[name], monkeypatch)
        assert (register.bootstrap_servers, register.topic_prefix) == (first.bootstrap_servers, first.topic_prefix)
    for name in WORKERS:
        [volume] = all_services[name]["volumes"]
        assert str(first.data_dir).startswith(volume.split(":")[1]), "table state lives on the volume"


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
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
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
    long_running = [name for name, service in all_services.items() if service.get("restart") == "unless-stopped"]
    without = [name for name in long_running if "healthcheck" not in all_services[name]]
    # register sync exposes nothing to probe: it is the container's only process, so its exit is its failure.
    assert without == ["register-sync"]


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
    ignore_lines = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore_lines if line.startswith("!")}
    copied = {
        path.rstrip("*") for line in dockerfile.splitlines() if line.startswith("COPY ") for path in line.split()[1:-1]
    }
    assert copied <= allowed
    # Every package the project installs reaches the image.
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = setuptools.get("package-dir", {})
    assert {folders.get(package.split(".")[0], package.split(".")[0]) for package in setuptools["packages"]} <= copied
