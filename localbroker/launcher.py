"""Fetches the Kafka jars and starts, stops and inspects a local KRaft cluster of 1 or 3 nodes."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localbroker.processes import dies_with_parent

POM_PATH = Path(__file__).with_name("pom.xml")
LOG4J_CONFIG_PATH = Path(__file__).with_name("log4j2.properties")
#: Where fetched jars are kept when the caller names no folder (the same default as ROLLWATCH_BROKER_CACHE_DIR).
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "rollwatch" / "kafka-libs"
LAYOUT_FILE_NAME = "cluster.json"
#: In a node's folder: the process whose end the node dies with (pid and start time), for nodes tied to one.
OWNER_FILE_NAME = "owner.pid"
MINIMUM_JAVA_VERSION = 17
MAX_NODES = 9
#: Pinned because Maven 3.8 would otherwise pick dependency-plugin 2.8, which lacks needed options.
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies"
JAVA_PACKAGE_HINT = "install Java 17 or newer, e.g. `sudo apt-get install openjdk-17-jre-headless`"
MAVEN_PACKAGE_HINT = "install Maven, e.g. `sudo apt-get install maven`"
LOCALHOST = "127.0.0.1"

Progress = Callable[[str], None]
logger = logging.getLogger(__name__)


class BrokerError(Exception):
    """The local broker could not be started, stopped or inspected; the message says how to fix it."""


@dataclass(frozen=True)
class NodeStatus:
    """What one node of the local cluster is doing right now."""

    node_id: int
    client_port: int
    controller_port: int
    pid: int | None
    running: bool
    accepting_connections: bool
    log_path: Path

    @property
    def address(self) -> str:
        return f"{LOCALHOST}:{self.client_port}"


@dataclass(frozen=True)
class ClusterLayout:
    """The shape of a cluster as recorded in its data dir, so later commands need no flags."""

    cluster_id: str
    nodes: int
    base_port: int

    def to_json(self) -> str:
        return json.dumps(
            {"cluster_id": self.cluster_id, "nodes": self.nodes, "base_port": self.base_port}, indent=2
        )

    @classmethod
    def from_json(cls, text: str) -> ClusterLayout:
        raw = json.loads(text)
        return cls(
            cluster_id=str(raw["cluster_id"]), nodes=int(raw["nodes"]), base_port=int(raw["base_port"])
        )


def print_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes as unpadded URL-safe base64, as `StorageTool random-uuid` makes."""
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        # Like Kafka's own Uuid.randomUuid: an id starting with "-" would be read as an option by the formatter.
        if not candidate.startswith("-"):
            return candidate


def client_port(base_port: int, node_id: int) -> int:
    return base_port + 10 * (node_id - 1)


def controller_port(base_port: int, node_id: int) -> int:
    return client_port(base_port, node_id) + 1


def bootstrap_for(base_port: int, nodes: int) -> str:
    return ",".join(f"{LOCALHOST}:{client_port(base_port, i)}" for i in range(1, nodes + 1))


def read_layout(data_dir: Path) -> ClusterLayout | None:
    path = data_dir / LAYOUT_FILE_NAME
    if not path.exists():
        return None
    try:
        return ClusterLayout.from_json(path.read_text(encoding="utf-8"))
    except (ValueError, KeyError, TypeError) as error:
        raise BrokerError(
            f"{path} is damaged ({error}); delete {data_dir} to start a fresh local cluster"
        ) from error


def server_properties(
    *, node_id: int, nodes: int, base_port: int, node_dir: Path
) -> dict[str, str]:
    """The server.properties of one combined broker+controller node of an `nodes`-node local cluster."""
    replication = min(nodes, 3)
    # With 3 replicas, 2 in sync lets one node go down without stopping acks=all producers.
    min_insync = max(1, replication - 1)
    voters = ",".join(f"{i}@{LOCALHOST}:{controller_port(base_port, i)}" for i in range(1, nodes + 1))
    client = f"{LOCALHOST}:{client_port(base_port, node_id)}"
    controller = f"{LOCALHOST}:{controller_port(base_port, node_id)}"
    return {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{client},CONTROLLER://{controller}",
        "advertised.listeners": f"PLAINTEXT://{client}",
        "controller.listener.names": "CONTROLLER",
        # Transaction markers travel between brokers on this listener; it must not be CONTROLLER.
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(node_dir / "data"),
        "num.partitions": "1",
        "default.replication.factor": str(replication),
        "min.insync.replicas": str(min_insync),
        # Fewer internal partitions make the first group join and first transaction much faster.
        "offsets.topic.num.partitions": str(nodes),
        "offsets.topic.replication.factor": str(replication),
        "transaction.state.log.num.partitions": str(nodes),
        "transaction.state.log.replication.factor": str(replication),
        "transaction.state.log.min.isr": str(min_insync),
        "share.coordinator.state.topic.replication.factor": str(replication),
        "share.coordinator.state.topic.min.isr": str(min_insync),
        "group.initial.rebalance.delay.ms": "0",
        # Lets tests use short consumer session timeouts for fast failover.
        "group.min.session.timeout.ms": "1000",
        "auto.create.topics.enable": "true",
        "num.network.threads": "2",
        "num.io.threads": "2",
    }


def render_properties(properties: dict[str, str]) -> str:
    lines = ["# Written by `rollwatch broker start`; rewritten on every start, so edits here are lost."]
    lines += [f"{key}={value}" for key, value in properties.items()]
    return "\n".join(lines) + "\n"


def find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise BrokerError(f"`java` was not found on PATH; Kafka needs it: {JAVA_PACKAGE_HINT}")
    return found


def java_major_version(java: str) -> int:
    try:
        result = subprocess.run(  # noqa: S603 - the java binary found on PATH, fixed arguments
            [java, "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise BrokerError(f"could not run `{java} -version` ({error}); {JAVA_PACKAGE_HINT}") from error
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if match is None:
        raise BrokerError(f"could not read the Java version from `{java} -version`; {JAVA_PACKAGE_HINT}")
    major = int(match.group(1))
    # Java 8 and older report themselves as "1.8.0_x".
    if major == 1 and match.group(2):
        major = int(match.group(2))
    return major


def check_java() -> str:
    """The java binary to use; raises BrokerError when it is missing or older than Kafka 4 needs."""
    java = find_java()
    major = java_major_version(java)
    if major < MINIMUM_JAVA_VERSION:
        raise BrokerError(
            f"{java} is Java {major}, but Kafka 4 brokers need Java {MINIMUM_JAVA_VERSION} or newer; "
            f"{JAVA_PACKAGE_HINT} (and put it first on PATH or set JAVA_HOME)"
        )
    return java


def kafka_version_of_pom(pom_text: str) -> str:
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom_text)
    return match.group(1).strip() if match else "unknown"


def jar_dir_for(cache_dir: Path, pom_path: Path = POM_PATH) -> Path:
    """Where the jars for this exact pom live; a changed pom gets a new folder, so bumps refetch."""
    pom_bytes = pom_path.read_bytes()
    digest = hashlib.sha256(pom_bytes).hexdigest()[:16]
    version = kafka_version_of_pom(pom_bytes.decode("utf-8"))
    return cache_dir / f"kafka-{version}-{digest}" / "libs"


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def fetch_jars(
    cache_dir: Path = DEFAULT_CACHE_DIR, *, pom_path: Path = POM_PATH, progress: Progress = print_progress
) -> Path:
    """The folder holding the broker's jars, running Maven only when this pom's jars are not cached yet."""
    libs = jar_dir_for(cache_dir, pom_path)
    complete_marker = libs.parent / "complete"
    if complete_marker.exists() and any(libs.glob("kafka_*.jar")):
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            f"`mvn` was not found on PATH; it is needed once to fetch the Kafka jars into {cache_dir}: "
            f"{MAVEN_PACKAGE_HINT}"
        )
    version = kafka_version_of_pom(pom_path.read_text(encoding="utf-8"))
    progress(
        f"Fetching Apache Kafka {version} jars from Maven Central into {libs.parent} (first start only)..."
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    # A private staging folder, renamed into place when complete, so two concurrent first starts
    # cannot see each other's half-copied jars.
    staging = cache_dir / f".staging-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        shutil.copyfile(pom_path, staging / "pom.xml")
        command = [
            mvn, "-B", "-q", "-f", str(staging / "pom.xml"), DEPENDENCY_PLUGIN,
            "-DincludeScope=runtime", f"-DoutputDirectory={staging / 'libs'}",
        ]
        started = time.monotonic()
        try:
            result = subprocess.run(  # noqa: S603 - mvn found on PATH, arguments built here
                command, capture_output=True, text=True, cwd=staging, timeout=900, check=False
            )
        except subprocess.TimeoutExpired as error:
            raise BrokerError(
                "Maven took over 15 minutes to fetch the Kafka jars; check access to Maven Central "
                "(https://repo.maven.apache.org) or proxy settings in ~/.m2/settings.xml"
            ) from error
        if result.returncode != 0 or not any((staging / "libs").glob("kafka_*.jar")):
            raise BrokerError(
                "Maven could not fetch the Kafka jars; check access to Maven Central "
                "(https://repo.maven.apache.org) or proxy settings in ~/.m2/settings.xml. Maven said:\n"
                + _tail(result.stdout + "\n" + result.stderr)
            )
        (staging / "complete").write_text(f"{version}\n", encoding="utf-8")
        libs.parent.parent.mkdir(parents=True, exist_ok=True)
        try:
            staging.rename(libs.parent)
        except OSError:
            # Another process finished first; its copy is just as good.
            if not (libs.parent / "complete").exists():
                raise
        jar_count = len(list(libs.glob("*.jar")))
        progress(f"Fetched {jar_count} jars in {time.monotonic() - started:.0f} s.")
        return libs
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def port_is_free(port: int) -> bool:
    """True when a server could listen on 127.0.0.1:port now (mirrors the SO_REUSEADDR the JVM uses)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOCALHOST, port))
        except OSError:
            return False
    return True


def find_free_base_port(nodes: int = 1, low: int = 20000, high: int = 32000) -> int:
    """A base port whose client and controller ports for `nodes` nodes are all free right now.

    The default range sits below Linux's ephemeral ports, so outgoing connections cannot grab a
    port between this check and the broker binding it; random picks keep parallel runs apart.
    """
    generator = random.SystemRandom()
    for _ in range(500):
        base = generator.randrange(low, high - 10 * nodes)
        ports = [port for i in range(1, nodes + 1) for port in (client_port(base, i), controller_port(base, i))]
        if all(port_is_free(port) for port in ports):
            return base
    raise BrokerError(f"found no free ports for {nodes} Kafka node(s) between {low} and {high}")


def port_accepts_connections(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((LOCALHOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        # A zombie still answers kill(0) but is not a running broker.
        state = stat.read_text(encoding="utf-8").rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


def _process_start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22), or None if unknown."""
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()[19]
    return None


def owner_record(pid: int) -> str:
    """What a node's owner file holds: the pid and its start time, so that a recycled pid is not taken for it."""
    return f"{pid} {_process_start_time(pid) or ''}".strip()


def owner_alive(record: str) -> bool:
    """Whether the process an owner file names still runs; a record that cannot be read counts as alive."""
    pid_text, _, started = record.strip().partition(" ")
    try:
        pid = int(pid_text)
    except ValueError:
        return True
    if not _process_alive(pid):
        return False
    now = _process_start_time(pid)
    return not started or now is None or now == started


def _process_runs_config(pid: int, config_path: Path) -> bool:
    """Guards against a recycled pid: the process must be a Kafka JVM started with this node's config."""
    cmdline_path = Path(f"/proc/{pid}/cmdline")
    if not cmdline_path.parent.exists():
        return _process_alive(pid)
    try:
        arguments = cmdline_path.read_bytes().split(b"\0")
    except OSError:
        return False
    return b"kafka.Kafka" in arguments and str(config_path).encode() in arguments


@contextlib.contextmanager
def _quiet_kafka_client_logs() -> Iterator[None]:
    """Readiness probes fail on purpose until the broker is up; their client-side errors are noise."""
    client_logger = logging.getLogger("kafka")
    previous = client_logger.level
    client_logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        client_logger.setLevel(previous)


def live_broker_ids(bootstrap_servers: str, timeout: float = 5.0) -> set[int]:
    """Ids of the unfenced brokers the cluster reports, or an empty set when it cannot be reached."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    timeout_ms = max(1000, int(timeout * 1000))
    with _quiet_kafka_client_logs():
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=bootstrap_servers,
                client_id="rollwatch-broker-launcher",
                request_timeout_ms=timeout_ms,
                bootstrap_timeout_ms=timeout_ms,
            )
        except (KafkaError, OSError):
            return set()
        try:
            description: dict[str, Any] = admin.describe_cluster()
        except (KafkaError, OSError):
            return set()
        finally:
            admin.close()
    return {
        int(broker["broker_id"])
        for broker in description.get("brokers", [])
        if not broker.get("is_fenced", False)
    }


class LocalCluster:
    """A local Apache Kafka KRaft cluster whose nodes are JVMs running from the cached Maven jars.

    Node i (1-based) listens for clients on base_port + 10*(i-1) and for the controller quorum on
    the port after that, on 127.0.0.1. Everything for node i lives under data_dir/node-i.
    """

    def __init__(
        self,
        data_dir: Path,
        nodes: int = 1,
        base_port: int = 9092,
        cache_dir: Path = DEFAULT_CACHE_DIR,
        heap: str = "512m",
        progress: Progress = print_progress,
    ) -> None:
        if not 1 <= nodes <= MAX_NODES:
            raise BrokerError(f"a local cluster has 1 to {MAX_NODES} nodes, not {nodes}")
        highest_port = controller_port(base_port, nodes)
        if base_port < 1024 or highest_port > 65535:
            raise BrokerError(
                f"ports {base_port}..{highest_port} are out of range; choose --port between 1024 and "
                f"{65535 - 10 * (nodes - 1) - 1}"
            )
        if not re.fullmatch(r"\d+[kKmMgG]?", heap):
            raise BrokerError(f"heap size {heap!r} is not a Java size such as 512m or 1g")
        self.data_dir = Path(data_dir).absolute()
        self.nodes = nodes
        self.base_port = base_port
        self.cache_dir = Path(cache_dir).expanduser()
        self.heap = heap
        self.progress = progress
        self._processes: dict[int, subprocess.Popen[bytes]] = {}

    @classmethod
    def for_data_dir(
        cls,
        data_dir: Path,
        *,
        nodes: int | None = None,
        base_port: int | None = None,
        default_base_port: int = 9092,
        cache_dir: Path = DEFAULT_CACHE_DIR,
        heap: str = "512m",
        progress: Progress = print_progress,
    ) -> LocalCluster:
        """The cluster in data_dir with its recorded shape, unless nodes or base_port say otherwise."""
        layout = read_layout(Path(data_dir))
        return cls(
            data_dir,
            nodes=nodes if nodes is not None else (layout.nodes if layout else 1),
            base_port=(
                base_port if base_port is not None else (layout.base_port if layout else default_base_port)
            ),
            cache_dir=cache_dir,
            heap=heap,
            progress=progress,
        )

    # ----- paths and shape

    @property
    def bootstrap_servers(self) -> str:
        return bootstrap_for(self.base_port, self.nodes)

    @property
    def layout_path(self) -> Path:
        return self.data_dir / LAYOUT_FILE_NAME

    def node_dir(self, node_id: int) -> Path:
        return self.data_dir / f"node-{node_id}"

    def config_path(self, node_id: int) -> Path:
        return self.node_dir(node_id) / "server.properties"

    def log_dir(self, node_id: int) -> Path:
        return self.node_dir(node_id) / "logs"

    def server_log_path(self, node_id: int) -> Path:
        return self.log_dir(node_id) / "server.log"

    def pid_path(self, node_id: int) -> Path:
        return self.node_dir(node_id) / "kafka.pid"

    def owner_path(self, node_id: int) -> Path:
        return self.node_dir(node_id) / OWNER_FILE_NAME

    def meta_properties_path(self, node_id: int) -> Path:
        return self.node_dir(node_id) / "data" / "meta.properties"

    def node_properties(self, node_id: int) -> dict[str, str]:
        return server_properties(
            node_id=node_id, nodes=self.nodes, base_port=self.base_port, node_dir=self.node_dir(node_id)
        )

    def _recorded_or_own_layout(self) -> tuple[int, int]:
        layout = read_layout(self.data_dir)
        return (layout.nodes, layout.base_port) if layout else (self.nodes, self.base_port)

    def _check_node_id(self, node_id: int) -> None:
        if not 1 <= node_id <= self.nodes:
            raise BrokerError(f"node {node_id} does not exist; this cluster has nodes 1..{self.nodes}")

    # ----- process bookkeeping

    def running_pid(self, node_id: int) -> int | None:
        """The pid of this node's broker JVM if it is running, judged by its pid file and /proc."""
        process = self._processes.get(node_id)
        if process is not None:
            if process.poll() is None:
                # Our own child: alive, even in the instant between fork and exec when /proc still shows
                # this Python process's command line rather than the JVM's.
                return process.pid
            del self._processes[node_id]
        try:
            pid = int(self.pid_path(node_id).read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return None
        if _process_alive(pid) and _process_runs_config(pid, self.config_path(node_id)):
            return pid
        return None

    def status(self) -> list[NodeStatus]:
        nodes, base_port = self._recorded_or_own_layout()
        statuses = []
        for node_id in range(1, nodes + 1):
            pid = self.running_pid(node_id)
            port = client_port(base_port, node_id)
            statuses.append(
                NodeStatus(
                    node_id=node_id,
                    client_port=port,
                    controller_port=controller_port(base_port, node_id),
                    pid=pid,
                    running=pid is not None,
                    accepting_connections=pid is not None and port_accepts_connections(port),
                    log_path=self.server_log_path(node_id),
                )
            )
        return statuses

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialises start and stop on one data dir across processes."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with (self.data_dir / ".lock").open("a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    # ----- start

    def start(self, timeout: float = 90.0, *, die_with_this_process: bool = False) -> str:
        """Starts every node that is not running and waits until all serve clients; returns the bootstrap.

        With `die_with_this_process` the nodes started get SIGTERM when this process ends, however it ends
        (Linux only; start them from the main thread, since the signal comes when the forking thread ends),
        and a later start stops any that outlived it. Otherwise they run until stopped."""
        with self._locked():
            self._stop_orphans()
            java = check_java()
            layout = self._settle_layout()
            if layout is None:
                bootstrap = self.bootstrap_servers
                self.progress(f"Kafka is already running at {bootstrap} (data dir {self.data_dir}).")
                self._wait_until_ready(set(), time.monotonic() + timeout)
                return bootstrap
            to_start = [i for i in range(1, self.nodes + 1) if self.running_pid(i) is None]
            self._check_ports_free(to_start)
            self._check_cluster_id(layout.cluster_id)
            self._write_layout(layout)
            libs = fetch_jars(self.cache_dir, progress=self.progress)
            for node_id in range(1, self.nodes + 1):
                self._write_config(node_id)
            self._format_unformatted(java, libs, layout.cluster_id, to_start)
            deadline = time.monotonic() + timeout
            for node_id in to_start:
                self._launch(java, libs, node_id, die_with_this_process=die_with_this_process)
            try:
                self._wait_until_ready(set(to_start), deadline)
            except BrokerError:
                self._terminate(to_start, timeout=30.0)
                raise
            return self.bootstrap_servers

    def _settle_layout(self) -> ClusterLayout | None:
        """The layout to start with, or None when every recorded node is already running."""
        recorded = read_layout(self.data_dir)
        if recorded is None:
            return ClusterLayout(cluster_id=new_cluster_id(), nodes=self.nodes, base_port=self.base_port)
        if recorded.nodes != self.nodes:
            raise BrokerError(
                f"{self.data_dir} holds a {recorded.nodes}-node cluster, not a {self.nodes}-node one; "
                f"start it with --nodes {recorded.nodes}, or use another --data-dir, "
                f"or delete {self.data_dir} to start afresh"
            )
        running = [i for i in range(1, recorded.nodes + 1) if self.running_pid(i) is not None]
        if running:
            # Live nodes keep the ports they were started with, whatever was asked for now.
            if recorded.base_port != self.base_port:
                self.progress(
                    f"Ignoring port {self.base_port}: the cluster in {self.data_dir} is running on "
                    f"port {recorded.base_port}."
                )
            self.base_port = recorded.base_port
            if len(running) == recorded.nodes:
                return None
        return ClusterLayout(cluster_id=recorded.cluster_id, nodes=self.nodes, base_port=self.base_port)

    def _check_ports_free(self, node_ids: list[int]) -> None:
        for node_id in node_ids:
            for role, port in (
                ("client", client_port(self.base_port, node_id)),
                ("controller", controller_port(self.base_port, node_id)),
            ):
                if not port_is_free(port):
                    raise BrokerError(
                        f"port {port} ({role} port of node {node_id}) on {LOCALHOST} is already in use by "
                        f"another program; choose free ports with --port N (node i listens on "
                        f"N+10*(i-1) and the port after it), or stop the program using port {port}"
                    )

    def _check_cluster_id(self, cluster_id: str) -> None:
        for node_id in range(1, self.nodes + 1):
            formatted_for = self._formatted_cluster_id(node_id)
            if formatted_for is not None and formatted_for != cluster_id:
                raise BrokerError(
                    f"{self.node_dir(node_id)} was formatted for Kafka cluster {formatted_for}, but "
                    f"{self.layout_path} names cluster {cluster_id}; use another --data-dir, "
                    f"or delete {self.data_dir} to start afresh (its topics are lost)"
                )

    def _formatted_cluster_id(self, node_id: int) -> str | None:
        path = self.meta_properties_path(node_id)
        if not path.exists():
            return None
        for line in path.read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "cluster.id":
                return value.strip()
        raise BrokerError(f"{path} has no cluster.id; delete {self.data_dir} to start afresh")

    def _write_layout(self, layout: ClusterLayout) -> None:
        staging = self.layout_path.with_suffix(".tmp")
        staging.write_text(layout.to_json() + "\n", encoding="utf-8")
        staging.replace(self.layout_path)

    def _write_config(self, node_id: int) -> None:
        self.log_dir(node_id).mkdir(parents=True, exist_ok=True)
        (self.node_dir(node_id) / "data").mkdir(parents=True, exist_ok=True)
        self.config_path(node_id).write_text(
            render_properties(self.node_properties(node_id)), encoding="utf-8"
        )

    def _java_command(self, java: str, libs: Path, node_id: int, main_class: str) -> list[str]:
        return [
            java,
            f"-Xmx{self.heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG_PATH}",
            f"-Dkafka.logs.dir={self.log_dir(node_id)}",
            "-cp",
            str(libs / "*"),
            main_class,
        ]

    def _format_unformatted(self, java: str, libs: Path, cluster_id: str, node_ids: list[int]) -> None:
        pending = [i for i in node_ids if self._formatted_cluster_id(i) is None]
        if not pending:
            return
        node_list = ", ".join(map(str, pending))
        self.progress(f"Formatting storage of node(s) {node_list} for cluster {cluster_id}...")
        # Static quorum (controller.quorum.voters): format takes neither --standalone nor
        # --initial-controllers, and every node gets the same cluster id.
        formatters: dict[int, subprocess.Popen[str]] = {}
        for node_id in pending:
            command = [
                *self._java_command(java, libs, node_id, "kafka.tools.StorageTool"),
                "format", "--cluster-id", cluster_id, "--config", str(self.config_path(node_id)),
                "--ignore-formatted",
            ]
            formatters[node_id] = subprocess.Popen(  # noqa: S603 - java and arguments built here
                command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                cwd=self.node_dir(node_id), stdin=subprocess.DEVNULL,
            )
        failures = []
        for node_id, formatter in formatters.items():
            try:
                output, _ = formatter.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                formatter.kill()
                output, _ = formatter.communicate()
            if formatter.returncode != 0:
                failures.append(f"node {node_id}:\n{_tail(output or '')}")
        if failures:
            raise BrokerError("formatting Kafka storage failed:\n" + "\n".join(failures))

    def _launch(self, java: str, libs: Path, node_id: int, *, die_with_this_process: bool = False) -> None:
        command = [*self._java_command(java, libs, node_id, "kafka.Kafka"), str(self.config_path(node_id))]
        console_log = self.log_dir(node_id) / "console.log"
        if die_with_this_process:
            self.owner_path(node_id).write_text(owner_record(os.getpid()) + "\n", encoding="utf-8")
        else:
            self.owner_path(node_id).unlink(missing_ok=True)
        with console_log.open("ab") as console:
            process = subprocess.Popen(  # noqa: S603 - java and arguments built here
                command, stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.node_dir(node_id), start_new_session=True,
                # SIGTERM, not SIGKILL: the node's controlled shutdown leaves its logs clean for the next start.
                preexec_fn=dies_with_parent(signal.SIGTERM) if die_with_this_process else None,
            )
        self._processes[node_id] = process
        self.pid_path(node_id).write_text(f"{process.pid}\n", encoding="utf-8")
        self.progress(
            f"Started Kafka node {node_id} (pid {process.pid}) on {LOCALHOST}:"
            f"{client_port(self.base_port, node_id)}; log: {self.server_log_path(node_id)}"
        )

    def _wait_until_ready(self, launched: set[int], deadline: float) -> None:
        """Waits until the cluster reports every node as a live broker, failing fast if a node dies."""
        wanted = set(range(1, self.nodes + 1))
        started = time.monotonic()
        announced = False
        while True:
            for node_id in sorted(launched):
                if self.running_pid(node_id) is None:
                    raise BrokerError(
                        f"Kafka node {node_id} exited during start-up.\n{self._log_excerpt(node_id)}"
                    )
            live: set[int] = set()
            if any(port_accepts_connections(client_port(self.base_port, i)) for i in wanted):
                remaining = deadline - time.monotonic()
                live = live_broker_ids(self.bootstrap_servers, timeout=max(1.0, min(5.0, remaining)))
                if wanted <= live:
                    if launched or announced:
                        elapsed = time.monotonic() - started
                        self.progress(f"Kafka is ready at {self.bootstrap_servers} after {elapsed:.0f} s.")
                    return
            if time.monotonic() >= deadline:
                lagging = sorted(wanted - live)
                raise BrokerError(
                    f"Kafka did not serve clients within the start timeout (node(s) "
                    f"{', '.join(map(str, lagging))} not ready).\n{self._log_excerpt(lagging[0])}"
                )
            if not announced:
                self.progress(f"Waiting for {len(wanted)} Kafka node(s) to serve clients...")
                announced = True
            time.sleep(0.5)

    def _log_excerpt(self, node_id: int, lines: int = 25) -> str:
        for path in (self.server_log_path(node_id), self.log_dir(node_id) / "console.log"):
            if path.exists() and path.stat().st_size > 0:
                text = path.read_text(encoding="utf-8", errors="replace")
                return f"Last lines of {path}:\n{_tail(text, lines)}\n(full log: {path})"
        return f"Node {node_id} wrote no log; look in {self.log_dir(node_id)}"

    # ----- stop

    def stop_orphans(self) -> list[int]:
        """Stops the running nodes whose owner (see `start`) has ended; returns their ids."""
        with self._locked():
            return self._stop_orphans()

    def _stop_orphans(self) -> list[int]:
        nodes, _ = self._recorded_or_own_layout()
        orphans: list[int] = []
        for node_id in range(1, nodes + 1):
            try:
                record = self.owner_path(node_id).read_text(encoding="utf-8")
            except OSError:
                continue
            pid = self.running_pid(node_id)
            if pid is None:
                self.owner_path(node_id).unlink(missing_ok=True)
            elif not owner_alive(record):
                self.progress(
                    f"Stopping Kafka node {node_id} (pid {pid}): the process that started it for itself "
                    f"(pid {record.split()[0]}) has ended."
                )
                orphans.append(node_id)
        if orphans:
            self._terminate(orphans, timeout=30.0)
        return orphans

    def stop(self, timeout: float = 60.0) -> None:
        """Stops every node with SIGTERM (a controlled shutdown) and waits; SIGKILL only after timeout."""
        with self._locked():
            nodes, base_port = self._recorded_or_own_layout()
            self.nodes, self.base_port = nodes, base_port
            running = [i for i in range(1, nodes + 1) if self.running_pid(i) is not None]
            if not running:
                self.progress(f"No Kafka node is running in {self.data_dir}.")
                return
            self.progress(f"Stopping Kafka node(s) {', '.join(map(str, running))}...")
            self._terminate(running, timeout)
            self.progress("Kafka stopped.")

    def stop_node(self, node_id: int, timeout: float = 60.0) -> None:
        """Stops one node (controlled shutdown), leaving the others running; for failover tests."""
        self._check_node_id(node_id)
        with self._locked():
            if self.running_pid(node_id) is None:
                self.progress(f"Kafka node {node_id} is not running.")
                return
            self.progress(f"Stopping Kafka node {node_id}...")
            self._terminate([node_id], timeout)

    def start_node(self, node_id: int, timeout: float = 90.0) -> None:
        """Starts one stopped node of an already formatted cluster and waits until it serves clients."""
        self._check_node_id(node_id)
        with self._locked():
            if self.running_pid(node_id) is not None:
                self.progress(f"Kafka node {node_id} is already running.")
                return
            layout = read_layout(self.data_dir)
            if layout is None or self._formatted_cluster_id(node_id) is None:
                raise BrokerError(f"node {node_id} in {self.data_dir} was never started; run start() first")
            java = check_java()
            self._check_ports_free([node_id])
            libs = fetch_jars(self.cache_dir, progress=self.progress)
            self._write_config(node_id)
            deadline = time.monotonic() + timeout
            self._launch(java, libs, node_id)
            try:
                self._wait_until_ready({node_id}, deadline)
            except BrokerError:
                self._terminate([node_id], timeout=30.0)
                raise

    def _terminate(self, node_ids: list[int], timeout: float) -> None:
        # All nodes get SIGTERM together: each broker's controlled shutdown runs while every
        # controller is still up, so no node waits on a quorum that has already gone.
        pids = {i: pid for i in node_ids if (pid := self.running_pid(i)) is not None}
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        remaining = dict(pids)
        while remaining and time.monotonic() < deadline:
            self._reap_children()
            remaining = {i: pid for i, pid in remaining.items() if _process_alive(pid)}
            if remaining:
                time.sleep(0.2)
        for node_id, pid in remaining.items():
            message = (
                f"Kafka node {node_id} (pid {pid}) did not shut down within {timeout:.0f} s; killing it. "
                f"Its next start will recover its logs, which can take longer."
            )
            logger.warning(message)
            self.progress(f"WARNING: {message}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        kill_deadline = time.monotonic() + 10
        while remaining and time.monotonic() < kill_deadline:
            self._reap_children()
            remaining = {i: pid for i, pid in remaining.items() if _process_alive(pid)}
            if remaining:
                time.sleep(0.1)
        for node_id in node_ids:
            self.pid_path(node_id).unlink(missing_ok=True)
            self.owner_path(node_id).unlink(missing_ok=True)
            process = self._processes.pop(node_id, None)
            if process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=1)

    def _reap_children(self) -> None:
        for process in self._processes.values():
            process.poll()
