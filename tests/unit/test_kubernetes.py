"""deploy/kubernetes without a cluster or kubectl: each kustomization rendered here (its resources loaded, the
overlay's JSON patches, images and namespace applied), every object valid against the Kubernetes schemas
(kubernetes-validate, offline), and the settings checked against the code as docker-compose.yml's are."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from config.settings import Settings, secret_fields

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
PRODUCTION = KUBERNETES / "overlays" / "production"
#: The Kubernetes release whose schemas the objects are checked against.
KUBERNETES_VERSION = "1.30"
#: The Dockerfile's user.
IMAGE_UID = 10001
WORKER = "rollwatch-worker"
EXPORTER = "rollwatch-dlq-exporter"
#: Secrets and ConfigMaps the operator creates (README, "Deploying on Kubernetes"), and the keys each holds.
OPERATOR_OBJECTS = {
    "rollwatch-kafka-worker": {"sasl_password"},
    "rollwatch-kafka-register": {"sasl_password"},
    "rollwatch-kafka-dlq-exporter": {"sasl_password"},
    "rollwatch-database": {"database_url"},
    "rollwatch-webhooks": {"webhooks"},
    "rollwatch-dashboard": {"dashboard_tokens"},
    "rollwatch-kafka-ca": {"ca.pem"},
}
KUSTOMIZATIONS = [BASE, PRODUCTION]
WORKLOAD_KINDS = ("StatefulSet", "Deployment", "Job")


# -- rendering -------------------------------------------------------------------------------------------------


def _pointer(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for raw in path.lstrip("/").split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        parts.append(int(part) if part.isdigit() else part)
    return parts


def apply_json_patch(document: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 add, replace and remove, as kustomize applies a patch given as a list of operations."""
    patched = copy.deepcopy(document)
    for operation in operations:
        *parents, last = _pointer(operation["path"])
        target: Any = patched
        for part in parents:
            target = target[part]
        op = operation["op"]
        if op == "replace":
            # Replace needs the value to exist: a KeyError or IndexError otherwise.
            assert last in target if isinstance(target, dict) else int(last) < len(target), operation["path"]
            target[last] = copy.deepcopy(operation["value"])
        elif op == "add":
            if isinstance(target, list):
                target.insert(len(target) if last == "-" else int(last), copy.deepcopy(operation["value"]))
            else:
                target[last] = copy.deepcopy(operation["value"])
        elif op == "remove":
            del target[last]
        else:
            raise AssertionError(f"unsupported patch operation {op}")
    return patched


def _matches(target: dict[str, Any], document: dict[str, Any]) -> bool:
    return all(
        document.get(key) == value if key == "kind" else document["metadata"].get(key) == value
        for key, value in target.items()
    )


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize directory` gives, for the kustomization features used here."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    allowed = {"apiVersion", "kind", "resources", "labels", "namespace", "images", "patches"}
    assert set(kustomization) <= allowed, f"{directory}: rendering here knows only {sorted(allowed)}"
    documents: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        path = directory / resource
        if path.is_dir():
            documents.extend(render(path))
        else:
            documents.extend(document for document in yaml.safe_load_all(path.read_text()) if document)
    for patch in kustomization.get("patches", []):
        assert set(patch) == {"target", "patch"}, "patches are JSON patches with a target"
        operations = yaml.safe_load(patch["patch"])
        hits = [index for index, document in enumerate(documents) if _matches(patch["target"], document)]
        assert len(hits) == 1, f"patch target {patch['target']} matches {len(hits)} objects"
        documents[hits[0]] = apply_json_patch(documents[hits[0]], operations)
    for document in documents:
        for label in kustomization.get("labels", []):
            document["metadata"].setdefault("labels", {}).update(label["pairs"])
        if "namespace" in kustomization:
            document["metadata"]["namespace"] = kustomization["namespace"]
        for container in containers(document):
            name, _, tag = container["image"].partition(":")
            for image in kustomization.get("images", []):
                if image["name"] == name:
                    container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
    return documents


def pod_spec(document: dict[str, Any]) -> dict[str, Any] | None:
    if document["kind"] in WORKLOAD_KINDS:
        return dict(document["spec"]["template"]["spec"])
    return None


def containers(document: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(document)
    return [] if spec is None else [*spec.get("initContainers", []), *spec["containers"]]


def workloads(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [document for document in documents if document["kind"] in WORKLOAD_KINDS]


def named(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def environment(documents: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """The variables a container starts with: its ConfigMaps' data, then its own env (which wins)."""
    variables: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, "settings come from ConfigMaps or env; secrets from files"
        variables.update(named(documents, "ConfigMap", source["configMapRef"]["name"])["data"])
    for variable in container.get("env", []):
        assert set(variable) == {"name", "value"}, f"{variable['name']}: a secret is read from a file, not env"
        variables[variable["name"]] = str(variable["value"])
    return variables


def mount_source(document: dict[str, Any], container: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The volume (or volume claim template) the file or directory `path` lies on in this container."""
    holding = [
        mount for mount in container.get("volumeMounts", [])
        if path == mount["mountPath"] or path.startswith(mount["mountPath"].rstrip("/") + "/")
    ]
    if not holding:
        return None
    mount = max(holding, key=lambda m: len(m["mountPath"]))
    spec = pod_spec(document) or {}
    volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
    claims = {claim["metadata"]["name"]: {"name": claim["metadata"]["name"], "persistentVolumeClaim": claim}
              for claim in document.get("spec", {}).get("volumeClaimTemplates", [])}
    return {**claims, **volumes}[mount["name"]] | {"mountPath": mount["mountPath"]}


def settings_of(
    documents: list[dict[str, Any]], container: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Settings:
    """The Settings the container's process builds; each *_FILE points at a stand-in file here."""
    for name in [name for name in os.environ if name.startswith("ROLLWATCH_")]:
        monkeypatch.delenv(name)
    stand_ins = {
        "sasl_password_file": "test-password",
        "database_url_file": "postgresql+psycopg://rollwatch:test@postgres:5432/rollwatch",
        "webhooks_file": '{"330": {"url": "https://cms.example.org/hook", "secret": "whsec_'
        + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" + '"}}',
        "dashboard_tokens_file": "{}",
    }
    for name, value in environment(documents, container).items():
        if name.endswith("_FILE"):
            field = name.removeprefix("ROLLWATCH_").lower()
            stand_in = tmp_path / field
            stand_in.write_text(stand_ins[field] + "\n")
            value = str(stand_in)
        monkeypatch.setenv(name, value)
    return Settings()


# -- the tests -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda d: d.name)
def test_every_object_is_valid_against_the_kubernetes_schemas(directory: Path) -> None:
    documents = render(directory)
    assert documents
    for document in documents:
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{document['kind']}/{document['metadata']['name']}: {error.message}")


def test_the_schema_check_catches_a_mistake() -> None:
    worker = copy.deepcopy(named(render(BASE), "StatefulSet", WORKER))
    worker["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/health"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, KUBERNETES_VERSION, strict=True)


def test_every_file_is_a_resource_of_its_kustomization() -> None:
    for directory in KUSTOMIZATIONS:
        listed = set(yaml.safe_load((directory / "kustomization.yaml").read_text())["resources"])
        present = {path.name for path in directory.glob("*.yaml")} - {"kustomization.yaml"}
        assert present <= listed, f"{directory}: {sorted(present - listed)} not in resources"


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda d: d.name)
def test_every_rollwatch_variable_is_a_setting(directory: Path) -> None:
    fields = set(Settings.model_fields)
    file_forms = {f"{field}_file" for field in secret_fields(Settings)}
    documents = render(directory)
    for document in documents:
        if document["kind"] == "ConfigMap":
            for variable in document.get("data", {}):
                if variable.startswith("ROLLWATCH_"):
                    field = variable.removeprefix("ROLLWATCH_").lower()
                    # Secret settings are never in a ConfigMap, not even as a path.
                    assert field in fields and field not in secret_fields(Settings), variable
        for container in containers(document):
            for variable in environment(documents, container):
                assert variable.startswith("ROLLWATCH_"), f"{container['name']}: {variable}"
                field = variable.removeprefix("ROLLWATCH_").lower()
                assert field in fields or field in file_forms, f"{container['name']}: {variable}"
                assert field not in secret_fields(Settings), f"{container['name']}: {variable} set directly"


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda d: d.name)
def test_each_secret_is_a_file_from_a_secret_only_that_setting_reads(directory: Path) -> None:
    documents = render(directory)
    for document in workloads(documents):
        for container in containers(document):
            for variable, path in environment(documents, container).items():
                if not variable.endswith("_FILE"):
                    continue
                field = variable.removeprefix("ROLLWATCH_").removesuffix("_FILE").lower()
                volume = mount_source(document, container, path)
                assert volume is not None and "secret" in volume, f"{container['name']}: {path} not on a Secret"
                secret = volume["secret"]["secretName"]
                assert OPERATOR_OBJECTS[secret] == {Path(path).name} == {field}
                assert volume["secret"]["defaultMode"] == 0o440
            mounted = {
                volume["secret"]["secretName"]
                for mount in container.get("volumeMounts", [])
                if (volume := mount_source(document, container, mount["mountPath"])) and "secret" in volume
            }
            read = {
                volume["secret"]["secretName"]
                for variable, path in environment(documents, container).items() if variable.endswith("_FILE")
                if (volume := mount_source(document, container, path))
            }
            assert mounted == read, f"{container['name']} mounts a Secret it does not read"


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda d: d.name)
def test_each_workload_builds_valid_settings(
    directory: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    documents = render(directory)
    commands = {}
    for document in workloads(documents):
        (container,) = document["spec"]["template"]["spec"]["containers"]
        settings = settings_of(documents, container, monkeypatch, tmp_path)
        commands[" ".join(container["args"][:2])] = settings
        if container["args"][0] != "dlq":
            assert settings.database_url.startswith("postgresql+psycopg://")
    assert set(commands) == {"worker", "register sync", "register deliver", "register migrate", "dlq exporter"}
    worker, sync, exporter = commands["worker"], commands["register sync"], commands["dlq exporter"]
    for client, user in (
        (worker, "rollwatch-worker"), (sync, "rollwatch-register"), (exporter, "rollwatch-dlq-exporter")
    ):
        assert client.security_protocol == "SASL_SSL" and client.sasl_mechanism == "SCRAM-SHA-512"
        assert client.sasl_username == user and client.sasl_password is not None
        assert client.ssl_cafile is not None
    # Worker, register and exporter read the same topics from the same cluster under the names the ACLs give.
    shared = ("bootstrap_servers", "topic_prefix", "app_id", "register_group")
    assert {f: getattr(worker, f) for f in shared} == {f: getattr(sync, f) for f in shared}
    assert {f: getattr(worker, f) for f in shared} == {f: getattr(exporter, f) for f in shared}
    assert worker.processing_guarantee == "exactly_once"
    assert worker.store == "rocksdb://"
    assert worker.web_enabled and worker.web_host == "0.0.0.0"  # noqa: S104 - probed and scraped from outside
    assert worker.topic_replication_factor == 3
    assert commands["register deliver"].webhooks and commands["register deliver"].deliver_metrics_port > 0
    # Only the worker, register sync and the exporter talk to Kafka.
    for command in ("register deliver", "register migrate"):
        assert commands[command].sasl_username is None


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda d: d.name)
def test_the_kafka_ca_is_mounted_where_the_setting_says(
    directory: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    documents = render(directory)
    for document in workloads(documents):
        for container in containers(document):
            settings = settings_of(documents, container, monkeypatch, tmp_path)
            if settings.ssl_cafile is None:
                continue
            volume = mount_source(document, container, str(settings.ssl_cafile))
            assert volume is not None and volume["configMap"]["name"] == "rollwatch-kafka-ca"
            assert settings.ssl_cafile.name in OPERATOR_OBJECTS["rollwatch-kafka-ca"]


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda d: d.name)
def test_the_worker_is_a_statefulset_with_its_data_on_a_volume(
    directory: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    documents = render(directory)
    worker = named(documents, "StatefulSet", WORKER)
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    settings = settings_of(documents, container, monkeypatch, tmp_path)
    volume = mount_source(worker, container, str(settings.data_dir))
    assert volume is not None and "persistentVolumeClaim" in volume, "RocksDB lives on the pod's own claim"
    assert volume["persistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    # The headless Service the StatefulSet names, selecting its pods.
    service = named(documents, "Service", worker["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == worker["spec"]["selector"]["matchLabels"]
    assert worker["spec"]["template"]["metadata"]["labels"] == worker["spec"]["selector"]["matchLabels"]
    budget = [d for d in documents if d["kind"] == "PodDisruptionBudget"]
    assert [b["spec"]["selector"] for b in budget] == [worker["spec"]["selector"]]
    # Partitions spread evenly over the workers.
    assert settings.topic_partitions % worker["spec"]["replicas"] == 0


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda d: d.name)
def test_probes_use_the_real_endpoints_on_the_web_port(
    directory: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    documents = render(directory)
    worker = named(documents, "StatefulSet", WORKER)
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    settings = settings_of(documents, container, monkeypatch, tmp_path)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["web"] == settings.web_port

    def probed(probe: str) -> tuple[str, int]:
        get = container[probe]["httpGet"]
        return get["path"], ports.get(get["port"], get["port"])

    assert probed("livenessProbe") == ("/health", settings.web_port)
    assert probed("startupProbe") == ("/health", settings.web_port)
    assert probed("readinessProbe") == ("/ready", settings.web_port)
    deliver = named(documents, "Deployment", "rollwatch-register-deliver")
    (sender,) = deliver["spec"]["template"]["spec"]["containers"]
    deliver_settings = settings_of(documents, sender, monkeypatch, tmp_path)
    deliver_ports = {port["name"]: port["containerPort"] for port in sender["ports"]}
    assert sender["livenessProbe"]["httpGet"]["path"] == "/metrics"
    assert deliver_ports[sender["livenessProbe"]["httpGet"]["port"]] == deliver_settings.deliver_metrics_port


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda d: d.name)
def test_the_dead_letter_exporter_runs_the_real_command_on_the_port_it_is_scraped_and_probed_on(
    directory: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from cli.commands.dlq import REPUBLISHED, dlq_topics, run_exporter
    from cli.main import build_parser
    from config.access import role_bindings

    documents = render(directory)
    exporter = named(documents, "Deployment", EXPORTER)
    assert exporter["spec"]["replicas"] == 1
    (container,) = containers(exporter)
    args = build_parser().parse_args(container["args"])
    assert args.handler is run_exporter and not args.once
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"metrics": args.port}
    annotations = exporter["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert (annotations["prometheus.io/port"], annotations["prometheus.io/path"]) == (str(args.port), "/metrics")
    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert (get["path"], ports.get(get["port"], get["port"])) == ("/metrics", args.port)
    settings = settings_of(documents, container, monkeypatch, tmp_path)
    assert settings.web_host == "0.0.0.0"  # noqa: S104 - scraped and probed from outside the pod
    # Its user's role reads every topic it counts from, and writes nothing.
    bindings = role_bindings("ops-metrics", topic_prefix=settings.topic_prefix)
    readable = {b.name for b in bindings if b.operation == "READ"}
    assert readable == {*dlq_topics(settings), settings.topic(REPUBLISHED)}
    assert {b.operation for b in bindings} == {"READ", "DESCRIBE"}


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda d: d.name)
def test_the_dashboard_service_reaches_the_workers_web_port(directory: Path) -> None:
    documents = render(directory)
    worker = named(documents, "StatefulSet", WORKER)
    dashboard = named(documents, "Service", "rollwatch-dashboard")
    assert dashboard["spec"]["type"] == "ClusterIP", "TLS ends at the ingress in front, never at a public port"
    assert dashboard["spec"]["selector"] == worker["spec"]["selector"]["matchLabels"]
    (port,) = dashboard["spec"]["ports"]
    assert port["port"] in (80, 443) and port["targetPort"] == "web"
    # Sessions live in the worker that opened them.
    assert dashboard["spec"]["sessionAffinity"] == "ClientIP"


def memory(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
    return int(number) * (1024 if unit == "Gi" else 1) * 2**20


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda d: d.name)
def test_resources_follow_the_benchmark(directory: Path) -> None:
    documents = render(directory)
    for document in workloads(documents):
        for container in containers(document):
            resources = container["resources"]
            assert memory(resources["requests"]["memory"]) <= memory(resources["limits"]["memory"])
            assert resources["requests"]["cpu"]
    (worker,) = containers(named(documents, "StatefulSet", WORKER))
    # The benchmark's workers held about 190-500 MB: the request covers the top of that, the limit leaves room.
    assert memory(worker["resources"]["requests"]["memory"]) >= 500 * 10**6
    assert memory(worker["resources"]["limits"]["memory"]) >= 2 * memory(worker["resources"]["requests"]["memory"])


def test_the_production_overlay_scales_out_in_one_app_id(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    base, production = render(BASE), render(PRODUCTION)
    base_worker, worker = named(base, "StatefulSet", WORKER), named(production, "StatefulSet", WORKER)
    assert worker["spec"]["replicas"] > base_worker["spec"]["replicas"]
    (base_container,), (container,) = containers(base_worker), containers(worker)
    assert container["resources"] != base_container["resources"]
    before = settings_of(base, base_container, monkeypatch, tmp_path)
    after = settings_of(production, container, monkeypatch, tmp_path)
    assert after.topic_partitions > before.topic_partitions
    assert after.app_id == before.app_id
    assert {document["metadata"]["namespace"] for document in production} == {"rollwatch"}


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda d: d.name)
def test_one_image_everywhere(directory: Path) -> None:
    images = {container["image"] for document in render(directory) for container in containers(document)}
    assert len(images) == 1, images
    (image,) = images
    # The image docker-compose.yml builds, under the project's version.
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    built = {s["image"].split(":")[0] for s in compose["services"].values() if s.get("build") == "."}
    assert built == {"rollwatch"}
    assert image.split("/")[-1] == "rollwatch:0.1.0"


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda d: d.name)
def test_every_pod_runs_as_the_image_user_without_privileges(directory: Path) -> None:
    for document in workloads(render(directory)):
        spec = document["spec"]["template"]["spec"]
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] == IMAGE_UID, document["metadata"]["name"]
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for container in containers(document):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context.get("runAsUser", IMAGE_UID) == IMAGE_UID
            # A read-only root needs a writable /tmp.
            assert mount_source(document, container, "/tmp") is not None  # noqa: S108 - the mount itself
    assert f"--uid {IMAGE_UID}" in (ROOT / "Dockerfile").read_text()


def test_no_secret_is_kept_in_the_manifests() -> None:
    for path in KUBERNETES.rglob("*.yaml"):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") == "Secret":
                pytest.fail(f"{path}: Secrets are created by the operator, not kept here")
        assert not re.search(r"://[^:/@\s]+:[^@\s]+@", path.read_text()), f"{path}: a URL with a password"


def test_the_readme_says_which_objects_to_create() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Deploying on Kubernetes", 1)[1].split("\n## ", 1)[0]
    assert "kubectl apply -k deploy/kubernetes/overlays/production" in section
    for name, keys in OPERATOR_OBJECTS.items():
        assert name in section, name
        for key in keys:
            assert key in section, f"{name}: {key}"
