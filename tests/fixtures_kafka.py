"""Kafka fixtures shared by the integration and end-to-end tiers: one session broker, extra clusters, names."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from config.settings import Settings
from localbroker.launcher import BrokerError, LocalCluster
from localbroker.nodes import find_free_base_port

#: Another test run may take the ports between the free-port scan and the JVM binding them.
PORT_RACE_ATTEMPTS = 3


def start_cluster_on_free_ports(data_dir: Path, nodes: int = 1, timeout: float = 120.0) -> LocalCluster:
    """Starts a cluster in data_dir on ports that are free now, retrying if another process takes them."""
    cache_dir = Settings().broker_cache_dir
    last_error: BrokerError | None = None
    for _ in range(PORT_RACE_ATTEMPTS):
        cluster = LocalCluster(data_dir, nodes=nodes, base_port=find_free_base_port(nodes), cache_dir=cache_dir)
        try:
            cluster.start(timeout=timeout)
        except BrokerError as error:
            if "already in use" not in str(error):
                raise
            last_error = error
            continue
        return cluster
    raise AssertionError(f"could not find free ports for {nodes} Kafka node(s): {last_error}")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers ("127.0.0.1:port") of one single-node Kafka shared by the whole test session."""
    cluster = start_cluster_on_free_ports(tmp_path_factory.mktemp("session-kafka"))
    try:
        yield cluster.bootstrap_servers
    finally:
        cluster.stop()


@pytest.fixture
def start_local_cluster(tmp_path: Path) -> Iterator[Callable[[int], LocalCluster]]:
    """Starts extra, dedicated clusters (`start_local_cluster(nodes)`) on free ports; stops them afterwards."""
    started: list[LocalCluster] = []

    def start(nodes: int = 1) -> LocalCluster:
        cluster = start_cluster_on_free_ports(tmp_path / f"cluster-{len(started) + 1}", nodes=nodes)
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        cluster.stop()


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """Makes topic and group names no other test (or earlier run) uses: `unique_name("alerts")`."""

    def make(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:12]}"

    return make
