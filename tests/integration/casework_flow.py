"""Helpers for case work through a real worker: publish inputs, wait for the worker and the register, read alerts."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

from cli.commands.publish import connection_of
from config.settings import Settings
from processors.records import INPUT_TOPICS, Alert, Recipient, alert_topic
from rollwatch_client.ordering import AppliedOffsets
from schemas.codec import AvroCodec
from schemas.jsonformat import parse_line
from sinks.register import Register
from sinks.register.actions import publish_record
from sinks.register.feed import consume_into_register

T = TypeVar("T")


def send(settings: Settings, line: dict[str, Any]) -> None:
    """Publishes one replay-format record to its input topic, keyed as the SDK keys it."""
    topic, record = parse_line(json.dumps(line))
    key = getattr(record, "key", None) or record.upn  # type: ignore[union-attr]
    publish_record(settings, settings.topic(topic), key, record)


def worker_caught_up(settings: Settings, timeout: float = 120) -> None:
    """Waits until the worker has applied every record on its input topics so far, so the next one sent to
    another topic is applied after them."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_list)
    try:
        partitions = [
            TopicPartition(settings.topic(name), p)
            for name in INPUT_TOPICS for p in consumer.partitions_for_topic(settings.topic(name)) or ()
        ]
        ends = {tp: offset for tp, offset in consumer.end_offsets(partitions).items() if offset > 0}
    finally:
        consumer.close()
    applied = AppliedOffsets(connection_of(settings), settings.app_id)
    try:
        applied.wait_for(ends, timeout=timeout)
    finally:
        applied.close()


def sync_until(settings: Settings, found: Callable[[Register], T | None], what: str, timeout: float = 120) -> T:
    """Runs `register sync --once` until `found` sees what the worker was to raise; returns what it saw."""
    deadline = time.monotonic() + timeout
    while True:
        assert consume_into_register(settings, once=True, timeout=30).caught_up
        register = Register.from_url(settings.database_url)
        try:
            seen = found(register)
        finally:
            register.close()
        if seen is not None and seen is not False:
            return seen
        assert time.monotonic() < deadline, f"the register never showed {what}"


def alert_about(settings: Settings, la: str, referral_id: str, timeout: float = 90) -> tuple[bytes, Alert]:
    """The first alert about a referral on the LA's CME officer topic, with its key, as the LA's consumer reads
    it (committed transactions only)."""
    from kafka import KafkaConsumer, TopicPartition

    topic = settings.topic(alert_topic(la, Recipient.CME_OFFICER))
    codec = AvroCodec()
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_list, isolation_level="read_committed",
                             enable_auto_commit=False, metadata_max_age_ms=1000)
    deadline = time.monotonic() + timeout
    try:
        # The worker creates an LA's alert topic with its first alert there.
        while not consumer.partitions_for_topic(topic):
            assert time.monotonic() < deadline, f"{topic} never appeared"
            consumer.poll(timeout_ms=200)
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    alert = codec.decode(record.value, Alert)
                    if alert.referral_id == referral_id:
                        return record.key, alert
        raise AssertionError(f"no alert about referral {referral_id} on {topic}")
    finally:
        consumer.close()


def open_cases(base_url: str, la: str) -> int:
    """The worker's rollwatch_open_cases gauge for one LA, summed over its partitions."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{base_url}/metrics", timeout=30) as reply:  # noqa: S310 - a local test server
        text = reply.read().decode()
    return int(sum(
        sample.value for family in text_string_to_metric_families(text) if family.name == "rollwatch_open_cases"
        for sample in family.samples if sample.labels.get("la_code") == la
    ))


def post_json(base_url: str, path: str, token: str, body: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(  # noqa: S310 - a local test server
        f"{base_url}{path}", data=body, method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:  # noqa: S310 - a local test server
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def published(settings: Settings, name: str, kind: type[Any]) -> list[tuple[bytes, Any]]:
    """Every (key, record) on one of the deployment's input topics."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False)
    try:
        topic = settings.topic(name)
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        found: list[tuple[bytes, Any]] = []
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < ends[tp] for tp in partitions) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                found.extend((record.key, AvroCodec().decode(record.value, kind)) for record in records)
        return found
    finally:
        consumer.close()
