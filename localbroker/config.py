"""A local cluster's shape: ports, node configuration, the layout file, and the error every launcher step raises."""

from __future__ import annotations

import base64
import json
import logging
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
SCRAM_MECHANISM = "SCRAM-SHA-512"
#: The secure cluster's super user, created at format time; its settings go to <data-dir>/admin.env.
ADMIN_USER = "admin"
ADMIN_ENV_FILE_NAME = "admin.env"
TLS_DIR_NAME = "tls"

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
    secure: bool = False

    def to_json(self) -> str:
        return json.dumps(
            {"cluster_id": self.cluster_id, "nodes": self.nodes, "base_port": self.base_port, "secure": self.secure},
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> ClusterLayout:
        raw = json.loads(text)
        return cls(
            cluster_id=str(raw["cluster_id"]),
            nodes=int(raw["nodes"]),
            base_port=int(raw["base_port"]),
            secure=bool(raw.get("secure", False)),
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


def internal_port(base_port: int, node_id: int) -> int:
    """A secure node's PLAINTEXT listener for its peers (and the launcher's readiness probe)."""
    return client_port(base_port, node_id) + 2


def bootstrap_for(base_port: int, nodes: int, port: Callable[[int, int], int] = client_port) -> str:
    return ",".join(f"{LOCALHOST}:{port(base_port, i)}" for i in range(1, nodes + 1))


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


def secure_server_properties(
    *, node_id: int, nodes: int, base_port: int, node_dir: Path, keystore: Path
) -> dict[str, str]:
    """A node's properties with clients on SASL_SSL (SCRAM-SHA-512) and the authorizer denying by default.

    Peers and controllers stay on PLAINTEXT on 127.0.0.1: KRaft's controller cannot bootstrap over SCRAM
    (KAFKA-15513), and StandardAuthorizer must let the nodes' own principal, User:ANONYMOUS there, do anything.
    """
    properties = server_properties(node_id=node_id, nodes=nodes, base_port=base_port, node_dir=node_dir)
    client = f"{LOCALHOST}:{client_port(base_port, node_id)}"
    internal = f"{LOCALHOST}:{internal_port(base_port, node_id)}"
    controller = f"{LOCALHOST}:{controller_port(base_port, node_id)}"
    properties.update(
        {
            "listeners": f"CLIENTS://{client},CONTROLLER://{controller},INTERNAL://{internal}",
            "advertised.listeners": f"CLIENTS://{client},INTERNAL://{internal}",
            "inter.broker.listener.name": "INTERNAL",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,CLIENTS:SASL_SSL",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(keystore),
            "ssl.client.auth": "none",
            "sasl.enabled.mechanisms": SCRAM_MECHANISM,
            "listener.name.clients.sasl.enabled.mechanisms": SCRAM_MECHANISM,
            "listener.name.clients.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:ANONYMOUS;User:{ADMIN_USER}",
            # Clients that authenticate wrongly learn it at once rather than after a back-off.
            "connection.failed.authentication.delay.ms": "0",
        }
    )
    return properties


def render_properties(properties: dict[str, str]) -> str:
    lines = ["# Written by `rollwatch broker start`; rewritten on every start, so edits here are lost."]
    lines += [f"{key}={value}" for key, value in properties.items()]
    return "\n".join(lines) + "\n"
