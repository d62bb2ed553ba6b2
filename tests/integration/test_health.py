"""/health and /ready of real worker processes: ready with partitions, not ready without, not ready once the
broker has gone while the process lives on."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from localbroker.launcher import LocalCluster
from streams.topics import ensure_worker_topics
from tests.integration.workers import WorkerProcess

pytestmark = pytest.mark.integration

#: /health of a worker that has dead-lettered nothing.
ALIVE = {"status": "alive", "dead_lettered": {}, "deadline_checks_failed": 0}

NOT_REACHED = -1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get_json(port: int, path: str) -> tuple[int, Any]:
    """Status and JSON body of a GET on the worker; NOT_REACHED while nothing listens yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return NOT_REACHED, None


def wait_until(condition: Callable[[], bool], timeout: float, what: str, *workers: WorkerProcess) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        for worker in workers:
            assert worker.alive(), f"worker died while waiting for {what}:\n{worker.log()}"
        if time.monotonic() > deadline:
            logs = "\n".join(worker.log() for worker in workers)
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{logs}")
        time.sleep(0.5)


def worker_settings(bootstrap: str, app_id: str, data_dir: Path, port: int) -> Settings:
    return Settings(
        bootstrap_servers=bootstrap, topic_prefix=f"{app_id}.", app_id=app_id, topic_partitions=1,
        data_dir=data_dir, web_enabled=True, web_port=port, broker_session_timeout=10,
        broker_rebalance_timeout=10, broker_heartbeat_interval=1, broker_commit_interval=0.2, log_level="WARNING",
    )


def test_health_and_ready_in_both_states(
    start_local_cluster: Callable[[int], LocalCluster], tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    cluster = start_local_cluster(1)
    app_id = unique_name("health")
    first_port, second_port = free_port(), free_port()
    first_settings = worker_settings(cluster.bootstrap_servers, app_id, tmp_path / "first", first_port)
    ensure_worker_topics(first_settings)
    first = WorkerProcess(first_settings, tmp_path / "first.log").start()
    second: WorkerProcess | None = None
    try:
        wait_until(lambda: get_json(first_port, "/ready")[0] == 200, 120, "the first worker to be ready", first)
        assert get_json(first_port, "/ready") == (200, {"ready": True, "reasons": []})
        assert get_json(first_port, "/health") == (200, ALIVE)

        # One partition, two workers: the second one owns nothing to process, so it is alive but not ready.
        second = WorkerProcess(
            worker_settings(cluster.bootstrap_servers, app_id, tmp_path / "second", second_port),
            tmp_path / "second.log",
        ).start()
        wait_until(lambda: get_json(second_port, "/health")[0] == 200, 60, "the second worker's web server", second)

        def second_idle_first_ready() -> bool:
            status, body = get_json(second_port, "/ready")
            return (
                status == 503
                and body["reasons"] == ["no input partitions assigned"]
                and get_json(first_port, "/ready")[0] == 200
            )

        wait_until(second_idle_first_ready, 120, "the rebalance to leave the partition with the first worker",
                   first, second)
        status, body = get_json(second_port, "/ready")
        assert (status, body["ready"]) == (503, False)

        cluster.stop()

        def first_sees_broker_gone() -> bool:
            status, body = get_json(first_port, "/ready")
            return status == 503 and any(reason.startswith("broker unreachable") for reason in body["reasons"])

        wait_until(first_sees_broker_gone, 60, "/ready to report the broker unreachable", first)
        assert get_json(first_port, "/health") == (200, ALIVE)
        assert first.alive()
    finally:
        first.stop()
        if second is not None:
            second.stop()
