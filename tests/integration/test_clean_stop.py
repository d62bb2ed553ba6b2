"""A worker stops soon after SIGTERM: with its broker gone within the shutdown timeout, with it up gracefully."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from cli.commands.publish import connection_of
from cli.commands.worker import STOP_TIMEOUT_EXIT_CODE
from config.settings import Settings
from localbroker.launcher import LocalCluster
from processors.records import ClockTick
from rollwatch_client.ordering import AppliedOffsets, OrderedSender
from rollwatch_client.publisher import InputPublisher
from streams.topics import ensure_worker_topics
from tests.integration.workers import WorkerProcess

pytestmark = pytest.mark.integration

#: What docker-compose (and most supervisors) give a container between SIGTERM and SIGKILL.
SUPERVISOR_GRACE_SECONDS = 10.0


def worker_settings(bootstrap: str, tmp: Path, **overrides: object) -> Settings:
    run_id = uuid.uuid4().hex[:8]
    settings = Settings(
        bootstrap_servers=bootstrap, topic_prefix=f"cs{run_id}.", app_id=f"cs-{run_id}", topic_partitions=2,
        broker_commit_interval=0.1, data_dir=tmp / "worker", web_enabled=False, broker_session_timeout=6,
        broker_heartbeat_interval=1, broker_rebalance_timeout=10, log_level="INFO", alert_topics_up_front=False,
    )
    return settings.model_copy(update=overrides)


def start_consuming_worker(settings: Settings, log_path: Path) -> WorkerProcess:
    """A worker that has applied a clock tick on every partition: assigned, consuming and committing."""
    ensure_worker_topics(settings)
    worker = WorkerProcess(settings, log_path).start()
    with InputPublisher(connection_of(settings)) as publisher:
        applied = AppliedOffsets(connection_of(settings), settings.app_id)
        try:
            ordered = OrderedSender(publisher.producer.flush, applied, timeout=120)
            ordered.sent(publisher.publish(ClockTick(today=date(2025, 3, 3))))
            ordered.barrier()
        finally:
            applied.close()
    assert worker.alive(), worker.log()
    return worker


def seconds_to_stop(worker: WorkerProcess, limit: float) -> float:
    """Sends SIGTERM and returns how long the worker took to exit (fails past `limit`, killing it)."""
    assert worker.process is not None
    started = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    deadline = started + limit
    while worker.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    if worker.alive():
        worker.kill()
        pytest.fail(f"the worker was still running {limit:.0f} s after SIGTERM:\n{worker.log()}")
    return elapsed


def kill_brokers(cluster: LocalCluster) -> None:
    """SIGKILL every node: a broker lost outright (host gone, OOM kill), with nothing said to its clients."""
    for node in cluster.status():
        if node.pid is not None:
            os.kill(node.pid, signal.SIGKILL)
    cluster.stop(timeout=10)
    time.sleep(1)


def test_worker_stops_within_the_grace_period_when_its_broker_is_gone(
    start_local_cluster: Callable[[int], LocalCluster], tmp_path: Path
) -> None:
    cluster = start_local_cluster(1)
    worker = start_consuming_worker(worker_settings(cluster.bootstrap_servers, tmp_path), tmp_path / "worker.log")
    try:
        kill_brokers(cluster)
        elapsed = seconds_to_stop(worker, SUPERVISOR_GRACE_SECONDS + 60)
        assert elapsed < SUPERVISOR_GRACE_SECONDS, f"stopped after {elapsed:.1f} s:\n{worker.log()}"
    finally:
        worker.kill()


def test_a_stop_that_outruns_the_shutdown_timeout_ends_the_process(
    start_local_cluster: Callable[[int], LocalCluster], tmp_path: Path
) -> None:
    cluster = start_local_cluster(1)
    # Shorter than the second Faust's own stop sleeps at its end: the deadline always comes first.
    settings = worker_settings(cluster.bootstrap_servers, tmp_path, shutdown_timeout=0.5)
    worker = start_consuming_worker(settings, tmp_path / "worker.log")
    try:
        kill_brokers(cluster)
        elapsed = seconds_to_stop(worker, SUPERVISOR_GRACE_SECONDS + 60)
        log = worker.log()
        assert worker.process is not None
        assert worker.process.returncode == STOP_TIMEOUT_EXIT_CODE, log
        assert "Worker did not stop within 0.5 s of SIGTERM" in log, log
        assert elapsed < 5, f"stopped after {elapsed:.1f} s:\n{log}"
    finally:
        worker.kill()


def test_worker_with_its_broker_up_stops_gracefully(
    start_local_cluster: Callable[[int], LocalCluster], tmp_path: Path
) -> None:
    cluster = start_local_cluster(1)
    settings = worker_settings(cluster.bootstrap_servers, tmp_path)
    worker = start_consuming_worker(settings, tmp_path / "worker.log")
    try:
        elapsed = seconds_to_stop(worker, 60)
        log = worker.log()
        assert worker.process is not None
        assert worker.process.returncode == 0, log
        assert "Worker did not stop within" not in log, log
        assert elapsed < SUPERVISOR_GRACE_SECONDS, f"stopped after {elapsed:.1f} s:\n{log}"
    finally:
        worker.kill()
