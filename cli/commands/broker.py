"""`rollwatch broker start|stop|status`: a local Apache Kafka cluster for development and tests."""

from __future__ import annotations

import argparse
import importlib.util
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from config.settings import Settings

if TYPE_CHECKING:
    from localbroker.launcher import LocalCluster

#: The local broker (localbroker/) is part of a source checkout, not of the Rollwatch container image.
NOT_INSTALLED = (
    "rollwatch broker: the local broker is a development tool, not installed in this image; "
    "point ROLLWATCH_BOOTSTRAP_SERVERS at your Kafka cluster instead"
)

EPILOG = textwrap.dedent(
    """\
    Kafka runs as local JVM processes (Java 17+) from jars that Maven fetches once into
    ROLLWATCH_BROKER_CACHE_DIR. Node i listens for clients on 127.0.0.1:PORT+10*(i-1) and for
    its controller quorum on the port after that. Data, configs and logs live under --data-dir,
    which also records the node count and ports, so `status`, `stop` and later starts need no flags.

    examples:
      rollwatch broker start                      one node on 127.0.0.1:9092
      rollwatch broker start --nodes 3 --port 19092 --data-dir .rollwatch/kafka-3
      rollwatch broker start --secure --data-dir .rollwatch/kafka-secure
      rollwatch broker status
      rollwatch broker stop
    """
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "broker",
        help="start, stop or inspect a local Apache Kafka cluster",
        description="Run a local Apache Kafka 4 (KRaft) cluster of 1 or 3 nodes for development and tests.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="broker_action", metavar="ACTION", required=True)

    start = actions.add_parser(
        "start",
        help="start the local cluster (fetching Kafka on first use) and print its bootstrap servers",
        description=(
            "Start every node of the local cluster that is not running and wait until all serve "
            "clients. Starting a cluster that is already running just reports where it is."
        ),
    )
    start.add_argument(
        "--nodes",
        type=int,
        choices=(1, 3),
        default=None,
        help=(
            "number of nodes: 1 (replication factor 1) or 3 (replication factor 3, min.insync.replicas 2). "
            "Default: the count recorded in --data-dir, else 1"
        ),
    )
    start.add_argument(
        "--secure",
        action="store_true",
        default=None,
        help=(
            "clients connect over SASL_SSL (SCRAM-SHA-512, a CA and broker certificate generated under "
            "--data-dir) and only what an ACL allows is allowed; writes the super user's settings to "
            "<data-dir>/admin.env. Default: as recorded in --data-dir, else plaintext with no authorizer"
        ),
    )
    stop = actions.add_parser(
        "stop",
        help="stop the local cluster gracefully",
        description=(
            "Stop every node with a controlled shutdown; a node still up after --timeout is killed."
        ),
    )
    status = actions.add_parser(
        "status",
        help="show which nodes run; exit status 0 only if all of them do",
        description="Show each node's process, address and log. Exit status 0 if every node runs, else 1.",
    )
    for action_parser in (start, stop, status):
        action_parser.add_argument(
            "--data-dir",
            type=Path,
            metavar="PATH",
            default=None,
            help="folder holding node data, configs and logs (default: ROLLWATCH_BROKER_DATA_DIR, "
            "which defaults to .rollwatch/kafka)",
        )
    start.add_argument(
        "--port",
        type=int,
        metavar="N",
        default=None,
        help="client port of node 1; node i uses PORT+10*(i-1) and the controller the port after it "
        "(default: the port recorded in --data-dir, else ROLLWATCH_BROKER_PORT, which defaults to 9092)",
    )
    for action_parser in (stop, status):
        action_parser.add_argument(
            "--port",
            type=int,
            metavar="N",
            default=None,
            help="accepted for symmetry with start; the ports recorded in --data-dir are used",
        )
    start.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        default=None,
        help="seconds to wait for the cluster to serve clients (default: ROLLWATCH_BROKER_START_TIMEOUT, 90)",
    )
    stop.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        default=60.0,
        help="seconds to wait for a controlled shutdown before killing a node (default: 60)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if importlib.util.find_spec("localbroker") is None:
        print(NOT_INSTALLED, file=sys.stderr)
        return 2
    from localbroker.launcher import BrokerError

    data_dir: Path = args.data_dir if args.data_dir is not None else settings.broker_data_dir
    try:
        if args.broker_action == "start":
            return _start(args, settings, data_dir)
        if args.broker_action == "stop":
            return _stop(args, settings, data_dir)
        return _status(settings, data_dir)
    except BrokerError as error:
        print(f"rollwatch broker {args.broker_action}: {error}", file=sys.stderr)
        return 1


def _cluster(
    settings: Settings, data_dir: Path, nodes: int | None, port: int | None, secure: bool | None = None
) -> LocalCluster:
    from localbroker.launcher import LocalCluster

    return LocalCluster.for_data_dir(
        data_dir,
        nodes=nodes,
        base_port=port,
        secure=secure,
        default_base_port=settings.broker_port,
        cache_dir=settings.broker_cache_dir,
        heap=settings.broker_heap,
    )


def _start(args: argparse.Namespace, settings: Settings, data_dir: Path) -> int:
    cluster = _cluster(settings, data_dir, args.nodes, args.port, args.secure)
    timeout = args.timeout if args.timeout is not None else settings.broker_start_timeout
    bootstrap = cluster.start(timeout=timeout)
    print(f"Kafka bootstrap servers: {bootstrap}")
    print("Point Rollwatch at it with:")
    if cluster.secure:
        print(f"  set -a; . {cluster.admin_env_path}; set +a    # the super user; keep this file private")
        print(f"Super user settings: {cluster.admin_env_path}")
    else:
        print(f"  export ROLLWATCH_BOOTSTRAP_SERVERS={bootstrap}")
    if cluster.nodes > 1:
        print(f"  export ROLLWATCH_TOPIC_REPLICATION_FACTOR={min(cluster.nodes, 3)}")
    print(f"Stop it with: rollwatch broker stop --data-dir {cluster.data_dir}")
    return 0


def _stop(args: argparse.Namespace, settings: Settings, data_dir: Path) -> int:
    from localbroker.config import read_layout

    if read_layout(data_dir) is None:
        print(f"No local Kafka cluster in {data_dir.absolute()}; nothing to stop.")
        return 0
    _cluster(settings, data_dir, None, None).stop(timeout=args.timeout)
    return 0


def _status(settings: Settings, data_dir: Path) -> int:
    from localbroker.config import read_layout

    if read_layout(data_dir) is None:
        print(f"No local Kafka cluster in {data_dir.absolute()}; start one with `rollwatch broker start`.")
        return 1
    cluster = _cluster(settings, data_dir, None, None)
    statuses = cluster.status()
    for node in statuses:
        if node.running:
            state = "running" if node.accepting_connections else "starting"
            print(
                f"node {node.node_id}: {state} (pid {node.pid}) on {node.address}, "
                f"controller port {node.controller_port}; log {node.log_path}"
            )
        else:
            print(f"node {node.node_id}: stopped ({node.address}); log {node.log_path}")
    running = sum(node.running for node in statuses)
    if running == len(statuses):
        print(f"Kafka is running at {cluster.bootstrap_servers}")
        return 0
    print(f"{running} of {len(statuses)} node(s) running in {cluster.data_dir}")
    return 1
