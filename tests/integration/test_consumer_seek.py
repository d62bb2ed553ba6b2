"""After a rebalance, a partition never committed is read again from its start, not from where fetching got to."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka import KafkaProducer

from streams.runtime.consumer import seek_to_committed_or_start
from tests.integration.test_outbox_metadata import create_topics


async def fetched_then_sought(
    bootstrap: str, unique_name: Callable[[str], str], seek: Callable[[AIOKafkaConsumer, str], Awaitable[Any]]
) -> list[bytes]:
    """Fetches the two records of a new input topic and of a changelog without committing, seeks with
    `seek(consumer, changelog_topic)`, and returns what is fetched next."""
    topic, changelog = unique_name("roll.events"), unique_name("children-changelog")
    create_topics(bootstrap, topic, changelog)
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for value in (b"first", b"second"):
        producer.send(topic, value, partition=0)
        producer.send(changelog, value, partition=0)
    producer.flush()
    producer.close()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=unique_name("group"), enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, 0), TopicPartition(changelog, 0)]
        consumer.assign(partitions)
        fetched: list[bytes] = []
        while len(fetched) < 4:
            batch = await consumer.getmany(timeout_ms=5000)
            fetched.extend(record.value for records in batch.values() for record in records)
        # Faust dropped these unprocessed (a rebalance began meanwhile) and now seeks to committed offsets.
        await seek(consumer, changelog)
        again = await consumer.getmany(timeout_ms=1000)
        return [record.value for record in again.get(TopicPartition(topic, 0), [])] + [
            b"changelog:" + record.value for record in again.get(TopicPartition(changelog, 0), [])
        ]
    finally:
        await consumer.stop()


async def test_aiokafka_alone_leaves_a_never_committed_partition_past_its_dropped_records(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    async def aiokafka_seek(consumer: AIOKafkaConsumer, _changelog: str) -> Any:
        return await consumer.seek_to_committed()

    assert await fetched_then_sought(kafka_bootstrap, unique_name, aiokafka_seek) == []


async def test_input_partitions_never_committed_are_read_again_from_the_start_and_changelogs_left_alone(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    async def rollwatch_seek(consumer: AIOKafkaConsumer, changelog: str) -> Any:
        return await seek_to_committed_or_start(consumer, {changelog})

    assert await fetched_then_sought(kafka_bootstrap, unique_name, rollwatch_seek) == [b"first", b"second"]
