"""A Kafka node started for `rollwatch run` dies with the process that started it; one from `broker start` lives on."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from config.settings import Settings
from localbroker.launcher import LocalCluster
from localbroker.nodes import _process_alive

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

#: Starts node 1 in the data dir given, as `rollwatch run` (tied) or `rollwatch broker start` does, prints its
#: pid and waits to be killed.
PARENT = """
import sys, time
from pathlib import Path
from localbroker.launcher import LocalCluster
from localbroker.nodes import find_free_base_port
from config.settings import Settings
cluster = LocalCluster(Path(sys.argv[1]), base_port=find_free_base_port(), cache_dir=Settings().broker_cache_dir,
                       progress=lambda message: None)
cluster.start(timeout=120, die_with_this_process=sys.argv[2] == "tied")
print(cluster.running_pid(1), flush=True)
time.sleep(600)
"""


def start_node_in_a_parent(data_dir: Path, mode: str) -> tuple[subprocess.Popen[str], int]:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(data_dir), mode], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    line = parent.stdout.readline()
    assert line.strip().isdigit(), f"the parent did not start a node (exit status {parent.poll()})"
    return parent, int(line)


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not _process_alive(pid)


def test_a_node_started_for_run_dies_when_its_starter_is_killed(tmp_path: Path) -> None:
    data_dir = tmp_path / "kafka"
    parent, node_pid = start_node_in_a_parent(data_dir, "tied")
    try:
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        # SIGTERM: a controlled shutdown, a few seconds for one node.
        assert gone_within(node_pid, 30), f"Kafka node (pid {node_pid}) still running after its starter was killed"
    finally:
        LocalCluster.for_data_dir(data_dir, cache_dir=Settings().broker_cache_dir).stop(timeout=10)


def test_a_node_started_by_broker_start_outlives_its_starter(tmp_path: Path) -> None:
    data_dir = tmp_path / "kafka"
    parent, node_pid = start_node_in_a_parent(data_dir, "untied")
    cluster = LocalCluster.for_data_dir(data_dir, cache_dir=Settings().broker_cache_dir)
    try:
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        assert not gone_within(node_pid, 5)
        assert cluster.stop_orphans() == []
        assert cluster.running_pid(1) == node_pid
    finally:
        cluster.stop(timeout=30)
    assert gone_within(node_pid, 10)
