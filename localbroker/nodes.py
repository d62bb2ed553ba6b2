"""Processes and ports of local Kafka nodes: free ports, live processes, their owners, which brokers answer."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from localbroker.config import LOCALHOST, BrokerError, client_port, controller_port


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
