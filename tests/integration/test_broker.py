"""The local Kafka launcher against real brokers: round trips, restarts and the `rollwatch broker` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer

from localbroker.launcher import LocalCluster
from localbroker.nodes import find_free_base_port

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=10)
    try:
        futures = [producer.send(topic, key=b"key", value=value) for value in values]
        producer.flush(timeout=30)
        for future in futures:
            future.get(timeout=30)
    finally:
        producer.close(timeout=10)


def consume_all(bootstrap: str, topic: str, group: str, expected_count: int) -> list[bytes]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=20_000,
    )
    received: list[bytes] = []
    try:
        for record in consumer:
            received.append(record.value)
            if len(received) >= expected_count:
                break
    finally:
        consumer.close()
    return received


def test_producer_and_consumer_round_trip_on_the_session_broker(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("round-trip")
    values = [f"record-{i}".encode() for i in range(20)]

    produce(kafka_bootstrap, topic, values)

    assert consume_all(kafka_bootstrap, topic, unique_name("group"), len(values)) == values


def test_records_survive_a_cluster_restart(
    start_local_cluster: Callable[[int], LocalCluster], unique_name: Callable[[str], str]
) -> None:
    cluster = start_local_cluster(1)
    topic = unique_name("durable")
    values = [f"kept-{i}".encode() for i in range(25)]
    produce(cluster.bootstrap_servers, topic, values)

    cluster.stop()
    assert [node.running for node in cluster.status()] == [False]
    bootstrap = cluster.start()

    assert bootstrap == cluster.bootstrap_servers
    assert consume_all(bootstrap, topic, unique_name("group"), len(values)) == values


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "broker", *args],
        cwd=PROJECT_ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_cli_start_twice_reports_already_running_then_status_and_stop(tmp_path: Path) -> None:
    data_dir = tmp_path / "cli-kafka"
    port = find_free_base_port()
    bootstrap = f"127.0.0.1:{port}"
    try:
        first = run_cli("start", "--data-dir", str(data_dir), "--port", str(port))
        assert first.returncode == 0, first.stderr
        assert f"export ROLLWATCH_BOOTSTRAP_SERVERS={bootstrap}" in first.stdout

        second = run_cli("start", "--data-dir", str(data_dir), "--port", str(port))
        assert second.returncode == 0, second.stderr
        assert f"already running at {bootstrap}" in second.stderr
        assert "Started Kafka node" not in second.stderr

        status = run_cli("status", "--data-dir", str(data_dir))
        assert status.returncode == 0, status.stderr
        assert "node 1: running" in status.stdout
        assert f"Kafka is running at {bootstrap}" in status.stdout

        stop = run_cli("stop", "--data-dir", str(data_dir))
        assert stop.returncode == 0, stop.stderr
        assert "Kafka stopped." in stop.stderr

        after = run_cli("status", "--data-dir", str(data_dir))
        assert after.returncode == 1
        assert "node 1: stopped" in after.stdout
    finally:
        LocalCluster.for_data_dir(data_dir).stop()
