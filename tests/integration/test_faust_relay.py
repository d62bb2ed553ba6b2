"""A Faust agent from the app factory consumes from one topic and produces to another on the real broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def wait_for_topics(admin: KafkaAdminClient, names: set[str], timeout: float = 30.0) -> None:
    """Topic creation is asynchronous: wait until every partition has a leader before a worker subscribes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described = admin.describe_topics(sorted(names))
        if all(t["error_code"] == 0 and t["partitions"] and all(p["leader_id"] >= 0 for p in t["partitions"])
               for t in described):
            return
        time.sleep(0.2)
    raise AssertionError(f"topics {sorted(names)} have no leader after {timeout} s")


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_agent_relays_a_record(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path, guarantee: str
) -> None:
    source, target = unique_name("relay-in"), unique_name("relay-out")
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(source, 1, 1), NewTopic(target, 1, 1)])
    wait_for_topics(admin, {source, target})
    admin.close()
    env = {
        **os.environ,
        "ROLLWATCH_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ROLLWATCH_APP_ID": unique_name("relay-app"),
        "ROLLWATCH_TOPIC_PARTITIONS": "1",
        "ROLLWATCH_PROCESSING_GUARANTEE": guarantee,
        "ROLLWATCH_DATA_DIR": str(tmp_path / "worker"),
        "ROLLWATCH_BROKER_SESSION_TIMEOUT": "10",
        "ROLLWATCH_BROKER_REBALANCE_TIMEOUT": "10",
        "RELAY_SOURCE": source,
        "RELAY_TARGET": target,
    }
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.relay_app", "worker", "--without-web", "-l", "warn"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        producer.send(source, key=b"L330210024001", value=b"roll change").get(timeout=30)
        producer.close()
        consumer = KafkaConsumer(
            target, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
            isolation_level="read_committed", consumer_timeout_ms=2000,
        )
        received = []
        deadline = time.monotonic() + 90
        while not received and time.monotonic() < deadline:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            received = [(m.key, m.value) for m in consumer]
        consumer.close()
        assert received == [(b"L330210024001", b"roll change")], (tmp_path / "worker.log").read_text()
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        log.close()
