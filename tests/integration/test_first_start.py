"""A worker's first start against topics, a group and transactions no one has used: no warning burst."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from config.settings import Settings
from tests.integration.workers import ROOT, WorkerProcess, worker_env
from tests.shared import SHARED_SCENARIOS

pytestmark = pytest.mark.integration

SCENARIOS = ("p01_missing_no_destination", "p02_child_protection_missing")
#: What a partition or coordinator not ready yet looks like in aiokafka's, kafka-python's and Faust's logs.
NOT_READY = re.compile(
    r"NotEnoughReplicas|NotLeader|LeaderNotAvailable|NotCoordinator|CoordinatorNotAvailable|CoordinatorLoadInProgress"
    r"|Heartbeat failed|Task timed out|Invalid state transition",
    re.IGNORECASE,
)
#: A log line at WARNING or above, in the worker's text format or Faust's.
LOUD = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b")


def test_a_first_start_logs_no_warnings_about_partitions_or_coordinators_not_ready(
    kafka_bootstrap: str, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    app_id = unique_name("first")
    settings = Settings(
        bootstrap_servers=kafka_bootstrap, topic_prefix=f"{app_id}.", app_id=app_id, topic_partitions=4,
        data_dir=tmp_path / "worker", web_enabled=False, broker_commit_interval=0.1, broker_session_timeout=10,
        broker_heartbeat_interval=1, broker_rebalance_timeout=10, log_level="INFO", alert_topics_up_front=False,
    )
    lines = [line for name in SCENARIOS for line in (SHARED_SCENARIOS / f"{name}.jsonl").read_text().splitlines()]
    scenario_file = tmp_path / "scenarios.jsonl"
    scenario_file.write_text("\n".join(line for line in lines if line) + "\n")
    # The worker creates its own topics: nothing of this app id exists before it starts.
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        published = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "rollwatch"), "publish", "--ordered", "--quiet", str(scenario_file)],
            cwd=ROOT, env=worker_env(settings), capture_output=True, timeout=240, check=False,
        )
        assert published.returncode == 0, published.stderr.decode() + worker.log()
        assert worker.alive(), worker.log()
    finally:
        worker.stop()
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert "Ready" in log, log[-6000:]
    burst = [line for line in log.splitlines() if LOUD.search(line) and NOT_READY.search(line)]
    assert not burst, "\n".join(burst)
