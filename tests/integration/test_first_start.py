"""A worker's first start against topics, a group and transactions no one has used: no warning burst."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from config.settings import Settings
from streams.topics import PARTITIONS_PER_REQUEST, ensure_worker_topics
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
#: kafka-python's warning that one step of its network loop held that loop (and every other request) up.
BLOCKING = "blocking the event loop"


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
    burst = [line for line in log.splitlines() if LOUD.search(line) and (NOT_READY.search(line) or BLOCKING in line)]
    assert not burst, "\n".join(burst)


def test_creating_every_topic_up_front_never_holds_kafka_pythons_network_loop_up(
    kafka_bootstrap: str, unique_name: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's first start creates every LA's alert topics (nearly 1,900 partitions here) and waits until
    they are served, as `rollwatch worker` does before its event loop starts. kafka-python reads each answer in
    one step of its network loop: one request over every topic took 0.15 s a step on a quiet machine and
    0.5-1.1 s on a busy one. Each request must name a bounded number of partitions: that is checked here, as a
    step's time depends on the machine's load too (the worker test above checks for the warning itself)."""
    from kafka.admin import KafkaAdminClient

    sizes: dict[str, int] = {}

    def spy(name: str, count: Callable[[object], int]) -> None:
        method = getattr(KafkaAdminClient, name)

        def counted(self: KafkaAdminClient, request: object, *args: object, **kwargs: object) -> object:
            sizes[name] = max(sizes.get(name, 0), count(request))
            return method(self, request, *args, **kwargs)

        monkeypatch.setattr(KafkaAdminClient, name, counted)

    partitions = 4
    spy("create_topics", lambda topics: len(topics) * partitions)  # type: ignore[arg-type]
    spy("describe_topics", lambda topics: len(topics) * partitions)  # type: ignore[arg-type]
    spy("list_partition_offsets", len)  # type: ignore[arg-type]
    app_id = unique_name("upfront")
    settings = Settings(
        bootstrap_servers=kafka_bootstrap, topic_prefix=f"{app_id}.", app_id=app_id, topic_partitions=partitions,
        alert_topics_up_front=True,
    )
    report = ensure_worker_topics(settings)
    assert len(report.created) > 450 and not report.existing
    assert sizes.keys() == {"create_topics", "describe_topics", "list_partition_offsets"}
    assert max(sizes.values()) <= PARTITIONS_PER_REQUEST, sizes
    # A second start finds them all, and creates nothing.
    assert not ensure_worker_topics(settings).created
