"""A three-node local cluster keeps accepting and serving acks=all writes after losing one node."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from localbroker.launcher import LocalCluster

pytestmark = [pytest.mark.integration, pytest.mark.failover]


def produce_acknowledged(producer: KafkaProducer, topic: str, values: list[bytes]) -> None:
    futures = [producer.send(topic, value=value) for value in values]
    producer.flush(timeout=60)
    for future in futures:
        future.get(timeout=60)


def partition_leader(bootstrap: str, topic: str) -> int:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        description: list[dict[str, Any]] = admin.describe_topics([topic])
    finally:
        admin.close()
    return int(description[0]["partitions"][0]["leader_id"])


def test_one_node_down_still_produces_and_consumes_every_record(
    start_local_cluster: Callable[[int], LocalCluster], unique_name: Callable[[str], str]
) -> None:
    cluster = start_local_cluster(3)
    bootstrap = cluster.bootstrap_servers
    topic = unique_name("failover")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics(
            {topic: {"num_partitions": 1, "replication_factor": 3, "configs": {"min.insync.replicas": "2"}}},
            wait_for_metadata=True,
        )
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=20, request_timeout_ms=20_000)
    before = [f"before-{i}".encode() for i in range(30)]
    after = [f"after-{i}".encode() for i in range(30)]
    try:
        produce_acknowledged(producer, topic, before)
        # Stopping the partition leader forces a leader election, the harder case for clients.
        cluster.stop_node(partition_leader(bootstrap, topic))
        assert sum(node.running for node in cluster.status()) == 2

        produce_acknowledged(producer, topic, after)
    finally:
        producer.close(timeout=10)

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=unique_name("failover-group"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=30_000,
    )
    received: list[bytes] = []
    try:
        for record in consumer:
            received.append(record.value)
            if len(received) >= len(before) + len(after):
                break
    finally:
        consumer.close()

    assert received == before + after
    cluster.stop()
    assert not any(node.running for node in cluster.status())
