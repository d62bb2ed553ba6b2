"""Local Kafka launcher: generated configs, jar caching and the errors users see, without a real JVM."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.main import main
from localbroker.config import BrokerError, ClusterLayout, new_cluster_id, server_properties
from localbroker.launcher import LocalCluster
from localbroker.nodes import find_free_base_port, owner_alive, owner_record, port_is_free
from localbroker.toolchain import fetch_jars, jar_dir_for

#: Stands in for `java`: answers -version, "formats" by writing meta.properties, and a broker that
#: dies at once after logging, so start-up failures can be tested in milliseconds.
FAKE_JAVA = textwrap.dedent(
    """\
    #!{python}
    import pathlib, sys
    args = sys.argv[1:]
    if args == ["-version"]:
        sys.stderr.write('openjdk version "{version}" 2025-04-15\\n')
        sys.exit(0)
    logs = pathlib.Path(next(a.split("=", 1)[1] for a in args if a.startswith("-Dkafka.logs.dir=")))
    if "kafka.tools.StorageTool" in args:
        config = pathlib.Path(args[args.index("--config") + 1])
        settings = dict(
            line.split("=", 1) for line in config.read_text().splitlines() if "=" in line and line[0] != "#"
        )
        data = pathlib.Path(settings["log.dirs"])
        data.mkdir(parents=True, exist_ok=True)
        (data / "meta.properties").write_text("cluster.id=" + args[args.index("--cluster-id") + 1] + "\\n")
        sys.exit(0)
    (logs / "server.log").write_text("INFO starting\\nERROR Exiting Kafka: simulated fatal error\\n")
    sys.exit(1)
    """
)


def install_fake_java(bin_dir: Path, version: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    java = bin_dir / "java"
    java.write_text(FAKE_JAVA.format(python=sys.executable, version=version))
    java.chmod(0o755)


@pytest.fixture
def fake_java(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Only a fake Java 17 on PATH: no JVM starts and no Maven is reachable."""
    bin_dir = tmp_path / "fake-bin"
    install_fake_java(bin_dir, "17.0.15")
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    return bin_dir


@pytest.fixture
def primed_cache(tmp_path: Path) -> Path:
    """A jar cache that looks complete for the shipped pom, so no Maven run is needed."""
    cache = tmp_path / "jar-cache"
    libs = jar_dir_for(cache)
    libs.mkdir(parents=True)
    (libs / "kafka_2.13-4.1.2.jar").write_bytes(b"not really a jar")
    (libs.parent / "complete").write_text("4.1.2\n")
    return cache


@pytest.fixture
def listening_socket() -> Iterator[socket.socket]:
    """A listening socket on a port whose neighbour below is free: a test may take that one as a base port.
    Any port the system hands out may have a busy neighbour (another process's connection), so look again."""
    for _attempt in range(50):
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.bind(("127.0.0.1", 0))
        if port_is_free(server.getsockname()[1] - 1):
            break
        server.close()
    else:
        pytest.fail("no port with a free neighbour below it in 50 tries")
    server.listen()
    yield server
    server.close()


def silent(message: str) -> None:
    del message


def test_single_node_config_is_a_combined_node_with_replication_one(tmp_path: Path) -> None:
    config = server_properties(node_id=1, nodes=1, base_port=19092, node_dir=tmp_path / "node-1")

    assert config["process.roles"] == "broker,controller"
    assert config["node.id"] == "1"
    assert config["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert config["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert config["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert config["inter.broker.listener.name"] == "PLAINTEXT"
    assert config["log.dirs"] == str(tmp_path / "node-1" / "data")
    for key in (
        "default.replication.factor",
        "min.insync.replicas",
        "offsets.topic.replication.factor",
        "offsets.topic.num.partitions",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "transaction.state.log.num.partitions",
        "share.coordinator.state.topic.replication.factor",
    ):
        assert config[key] == "1", key
    assert config["group.initial.rebalance.delay.ms"] == "0"
    assert config["group.min.session.timeout.ms"] == "1000"
    assert config["auto.create.topics.enable"] == "true"
    assert config["num.network.threads"] == config["num.io.threads"] == "2"


def test_three_node_config_replicates_three_ways_and_tolerates_one_loss(tmp_path: Path) -> None:
    configs = [
        server_properties(node_id=i, nodes=3, base_port=19092, node_dir=tmp_path / f"node-{i}") for i in (1, 2, 3)
    ]

    voters = "1@127.0.0.1:19093,2@127.0.0.1:19103,3@127.0.0.1:19113"
    assert {config["controller.quorum.voters"] for config in configs} == {voters}
    second = configs[1]
    assert second["node.id"] == "2"
    assert second["listeners"] == "PLAINTEXT://127.0.0.1:19102,CONTROLLER://127.0.0.1:19103"
    assert second["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19102"
    assert second["inter.broker.listener.name"] == "PLAINTEXT"
    assert second["default.replication.factor"] == "3"
    assert second["min.insync.replicas"] == "2"
    assert second["offsets.topic.replication.factor"] == "3"
    assert second["transaction.state.log.replication.factor"] == "3"
    assert second["transaction.state.log.min.isr"] == "2"
    assert len({config["log.dirs"] for config in configs}) == 3


def test_cluster_paths_and_bootstrap_follow_the_port_scheme(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path, nodes=3, base_port=19500, progress=silent)

    assert cluster.bootstrap_servers == "127.0.0.1:19500,127.0.0.1:19510,127.0.0.1:19520"
    assert cluster.node_properties(3)["log.dirs"] == str(tmp_path.absolute() / "node-3" / "data")
    assert cluster.server_log_path(2) == tmp_path.absolute() / "node-2" / "logs" / "server.log"


def test_cluster_id_is_16_bytes_of_unpadded_urlsafe_base64() -> None:
    cluster_id = new_cluster_id()

    assert len(cluster_id) == 22
    assert "=" not in cluster_id
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
    assert new_cluster_id() != cluster_id


def test_missing_java_names_the_debian_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("JAVA_HOME", raising=False)

    with pytest.raises(BrokerError, match=r"`java` was not found") as raised:
        LocalCluster(tmp_path / "kafka", base_port=find_free_base_port(), progress=silent).start(timeout=5)

    assert "openjdk-17-jre-headless" in str(raised.value)


def test_java_older_than_17_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_fake_java(tmp_path / "old-bin", "1.8.0_392")
    monkeypatch.setenv("PATH", str(tmp_path / "old-bin"))
    monkeypatch.delenv("JAVA_HOME", raising=False)

    with pytest.raises(BrokerError, match=r"Java 8, but Kafka 4 brokers need Java 17"):
        LocalCluster(tmp_path / "kafka", base_port=find_free_base_port(), progress=silent).start(timeout=5)


@pytest.mark.usefixtures("fake_java")
def test_missing_maven_is_reported_when_jars_are_not_cached(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match=r"`mvn` was not found") as raised:
        fetch_jars(tmp_path / "empty-cache", progress=silent)

    assert "apt-get install maven" in str(raised.value)


@pytest.mark.usefixtures("fake_java")
def test_cached_jars_are_reused_without_maven(primed_cache: Path) -> None:
    messages: list[str] = []

    libs = fetch_jars(primed_cache, progress=messages.append)

    assert libs == jar_dir_for(primed_cache)
    assert messages == []


def test_a_changed_pom_gets_its_own_cache_folder(tmp_path: Path) -> None:
    shipped = jar_dir_for(tmp_path)
    bumped_pom = tmp_path / "pom.xml"
    bumped_pom.write_text("<project><properties><kafka.version>4.2.0</kafka.version></properties></project>")

    bumped = jar_dir_for(tmp_path, bumped_pom)

    assert bumped != shipped
    assert "4.2.0" in bumped.parent.name
    assert "4.1.2" in shipped.parent.name


@pytest.mark.usefixtures("fake_java")
def test_client_port_in_use_names_the_port_and_the_flag(
    tmp_path: Path, primed_cache: Path, listening_socket: socket.socket
) -> None:
    port = listening_socket.getsockname()[1]

    with pytest.raises(BrokerError) as raised:
        LocalCluster(tmp_path / "kafka", base_port=port, cache_dir=primed_cache, progress=silent).start(timeout=5)

    message = str(raised.value)
    assert f"port {port} (client port of node 1)" in message
    assert "--port" in message


@pytest.mark.usefixtures("fake_java")
def test_controller_port_in_use_is_reported_too(
    tmp_path: Path, primed_cache: Path, listening_socket: socket.socket
) -> None:
    controller = listening_socket.getsockname()[1]
    if not port_is_free(controller - 1):
        pytest.fail(f"test setup: port {controller - 1} is unexpectedly busy; rerun")

    with pytest.raises(BrokerError, match=rf"port {controller} \(controller port of node 1\)"):
        LocalCluster(
            tmp_path / "kafka", base_port=controller - 1, cache_dir=primed_cache, progress=silent
        ).start(timeout=5)


@pytest.mark.usefixtures("fake_java")
def test_data_dir_formatted_for_another_cluster_is_refused(tmp_path: Path, primed_cache: Path) -> None:
    data_dir = tmp_path / "kafka"
    port = find_free_base_port()
    cluster = LocalCluster(data_dir, base_port=port, cache_dir=primed_cache, progress=silent)
    data_dir.mkdir()
    cluster.layout_path.write_text(ClusterLayout("recorded-cluster-id-00", 1, port).to_json())
    cluster.meta_properties_path(1).parent.mkdir(parents=True)
    cluster.meta_properties_path(1).write_text("version=1\ncluster.id=other-cluster-id-0000\nnode.id=1\n")

    with pytest.raises(BrokerError) as raised:
        cluster.start(timeout=5)

    message = str(raised.value)
    assert "formatted for Kafka cluster other-cluster-id-0000" in message
    assert "--data-dir" in message
    assert f"delete {data_dir.absolute()}" in message


@pytest.mark.usefixtures("fake_java")
def test_node_count_differing_from_the_recorded_one_is_refused(tmp_path: Path, primed_cache: Path) -> None:
    data_dir = tmp_path / "kafka"
    data_dir.mkdir()
    (data_dir / "cluster.json").write_text(ClusterLayout("some-cluster-id-000000", 1, 19092).to_json())

    with pytest.raises(BrokerError, match=r"holds a 1-node cluster.*--nodes 1"):
        LocalCluster(data_dir, nodes=3, base_port=find_free_base_port(3), cache_dir=primed_cache).start(timeout=5)


def test_recorded_layout_supplies_nodes_and_port_when_not_given(tmp_path: Path) -> None:
    tmp_path.joinpath("cluster.json").write_text(ClusterLayout("some-cluster-id-000000", 3, 23000).to_json())

    recorded = LocalCluster.for_data_dir(tmp_path, progress=silent)
    overridden = LocalCluster.for_data_dir(tmp_path, base_port=24000, progress=silent)

    assert (recorded.nodes, recorded.base_port) == (3, 23000)
    assert (overridden.nodes, overridden.base_port) == (3, 24000)
    assert LocalCluster.for_data_dir(tmp_path / "fresh", default_base_port=25000).base_port == 25000


@pytest.mark.usefixtures("fake_java")
def test_node_that_dies_at_start_shows_its_log_tail_and_path(tmp_path: Path, primed_cache: Path) -> None:
    cluster = LocalCluster(
        tmp_path / "kafka", base_port=find_free_base_port(), cache_dir=primed_cache, progress=silent
    )

    with pytest.raises(BrokerError) as raised:
        cluster.start(timeout=20)

    message = str(raised.value)
    assert "Kafka node 1 exited during start-up" in message
    assert "simulated fatal error" in message
    assert str(cluster.server_log_path(1)) in message
    assert cluster.meta_properties_path(1).read_text().startswith("cluster.id=")
    assert [node.running for node in cluster.status()] == [False]


@pytest.mark.usefixtures("fake_java")
def test_cli_reports_a_taken_port_on_stderr_with_exit_code_1(
    tmp_path: Path,
    primed_cache: Path,
    listening_socket: socket.socket,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = listening_socket.getsockname()[1]
    monkeypatch.setenv("ROLLWATCH_BROKER_CACHE_DIR", str(primed_cache))

    exit_code = main(["broker", "start", "--data-dir", str(tmp_path / "kafka"), "--port", str(port)])

    captured = capsys.readouterr()
    assert exit_code == 1
    assert f"port {port}" in captured.err
    assert "--port" in captured.err
    assert captured.out == ""


def test_cli_status_of_an_empty_data_dir_says_nothing_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_code = main(["broker", "status", "--data-dir", str(tmp_path / "nothing")])

    assert exit_code == 1
    assert "No local Kafka cluster" in capsys.readouterr().out


def test_cluster_ids_never_start_with_a_dash() -> None:
    from localbroker.config import new_cluster_id

    ids = [new_cluster_id() for _ in range(3000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


class StandInNode:
    """A long-lived process that /proc shows as node 1's Kafka JVM (`kafka.Kafka` and its config in argv)."""

    def __init__(self, cluster: LocalCluster) -> None:
        cluster.node_dir(1).mkdir(parents=True, exist_ok=True)
        cluster.layout_path.write_text(ClusterLayout("id", cluster.nodes, cluster.base_port).to_json())
        self.process = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)", "kafka.Kafka", str(cluster.config_path(1))]
        )
        cluster.pid_path(1).write_text(f"{self.process.pid}\n")

    def ended(self) -> bool:
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return False
        return True

    def end(self) -> None:
        self.process.kill()
        self.process.wait()


def ended_process_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_node_whose_owner_has_ended_is_stopped_as_an_orphan(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "kafka", base_port=find_free_base_port(), progress=silent)
    node = StandInNode(cluster)
    try:
        cluster.owner_path(1).write_text(f"{ended_process_pid()}\n")
        assert cluster.running_pid(1) == node.process.pid

        assert cluster.stop_orphans() == [1]

        assert node.ended()
        assert not cluster.owner_path(1).exists()
        assert cluster.running_pid(1) is None
    finally:
        node.end()


def test_a_node_whose_owner_runs_or_that_has_no_owner_is_left_running(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "kafka", base_port=find_free_base_port(), progress=silent)
    node = StandInNode(cluster)
    try:
        cluster.owner_path(1).write_text(owner_record(os.getpid()) + "\n")
        assert cluster.stop_orphans() == []
        # Started by `rollwatch broker start`: meant to outlive the command that started it.
        cluster.owner_path(1).unlink()
        assert cluster.stop_orphans() == []
        assert cluster.running_pid(1) == node.process.pid
    finally:
        node.end()


def test_an_owner_record_names_a_pid_and_its_start_time_so_a_reused_pid_is_no_owner() -> None:
    record = owner_record(os.getpid())
    pid, started = record.split()

    assert int(pid) == os.getpid()
    assert owner_alive(record)
    assert not owner_alive(f"{pid} {int(started) + 1}")
    assert not owner_alive(str(ended_process_pid()))
