"""`rollwatch publish` against a real Kafka broker: what is read back and decoded equals the file."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from cli.commands.publish import connection_of
from cli.main import main
from config.settings import Settings
from generator.generate import write_replay
from generator.options import GeneratorOptions
from processors.records import (
    CLOCK_TICKS,
    EHE_NOTIFICATIONS,
    INPUT_TOPICS,
    ROLL_EVENTS,
    SAFEGUARDING_STATUS,
    ClockTick,
    EHENotification,
    InputRecord,
    RollEvent,
    SafeguardingStatus,
)
from rollwatch_client.publisher import InputPublisher
from schemas.codec import AvroCodec
from schemas.jsonfields import record_to_line
from schemas.jsonformat import parse_line
from streams.topics import TopicLayoutError, ensure_input_topics
from tests.shared import SHARED_SCENARIOS

pytestmark = pytest.mark.integration

SCENARIOS = sorted(SHARED_SCENARIOS.glob("*.jsonl"))
PARTITIONS = 3
READ_TIMEOUT_S = 60.0
PUBLISHED_TOPICS = (ROLL_EVENTS, EHE_NOTIFICATIONS, SAFEGUARDING_STATUS, CLOCK_TICKS)


@pytest.fixture
def publish_env(kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("ROLLWATCH_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("ROLLWATCH_TOPIC_PARTITIONS", str(PARTITIONS))
    return kafka_bootstrap


def read_topic(bootstrap: str, topic: str) -> list[tuple[int, bytes | None, bytes]]:
    """Every message of `topic` as (partition, key, value), partition by partition in offset order."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        assert len(partitions) == PARTITIONS, f"{topic} has partitions {partitions}"
        assigned = [TopicPartition(topic, partition) for partition in partitions]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        ends = consumer.end_offsets(assigned)
        messages: dict[int, list[tuple[int, bytes | None, bytes]]] = defaultdict(list)
        deadline = time.monotonic() + READ_TIMEOUT_S
        while any(consumer.position(tp) < ends[tp] for tp in assigned):
            assert time.monotonic() < deadline, f"timed out reading {topic}"
            for tp, batch in consumer.poll(timeout_ms=500).items():
                messages[tp.partition] += [(tp.partition, message.key, message.value) for message in batch]
        return [message for partition in partitions for message in messages[partition]]
    finally:
        consumer.close()


def file_records(path: Path) -> list[tuple[str, InputRecord]]:
    return [parse_line(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda path: path.stem)
def test_publish_scenario_reads_back_equal(
    scenario: Path, publish_env: str, unique_name: Callable[[str], str], capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = unique_name("publish") + "."
    assert main(["publish", str(scenario), "--topic-prefix", prefix]) == 0
    assert "publish: sent" in capsys.readouterr().err
    codec = AvroCodec()
    expected = file_records(scenario)
    partition_of_upn: dict[str, set[int]] = defaultdict(set)

    for topic in PUBLISHED_TOPICS:
        wanted = [record for record_topic, record in expected if record_topic == topic]
        messages = read_topic(publish_env, prefix + topic)
        got = [(partition, key, codec.decode_any(value)) for partition, key, value in messages]
        if topic == CLOCK_TICKS:
            for partition in range(PARTITIONS):
                ticks = [record for part, key, record in got if part == partition]
                assert ticks == wanted, f"partition {partition} must hold every tick, in file order"
                assert all(key is None for part, key, _ in got)
            continue
        assert sorted(record_to_line(topic, record) for _, _, record in got) == sorted(
            record_to_line(topic, record) for record in wanted
        )
        by_upn: dict[str, list[InputRecord]] = defaultdict(list)
        for partition, key, record in got:
            assert isinstance(record, RollEvent | EHENotification | SafeguardingStatus)
            assert key == record.upn.encode()
            by_upn[record.upn].append(record)
            partition_of_upn[record.upn].add(partition)
        for upn, records in by_upn.items():
            assert records == [record for record in wanted if getattr(record, "upn", None) == upn], (
                "a child's records keep their file order"
            )
    assert all(len(partitions) == 1 for partitions in partition_of_upn.values()), "co-partitioned by UPN"


def test_skip_invalid_sends_the_rest_and_writes_rejects(
    tmp_path: Path, publish_env: str, unique_name: Callable[[str], str]
) -> None:
    lines = [line for line in SCENARIOS[0].read_text(encoding="utf-8").splitlines() if line.strip()]
    bad = json.loads(lines[0])
    bad["value"]["upn"] = "Y330215124052"
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join([json.dumps(bad), *lines]) + "\n", encoding="utf-8")
    prefix = unique_name("skip") + "."
    rejects = tmp_path / "rejected.jsonl"
    assert main(["publish", str(path), "--skip-invalid", "--rejects", str(rejects), "--topic-prefix", prefix]) == 0
    [rejected] = [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    assert rejected["line"] == 1 and rejected["reasons"][0].startswith("UPN_CHECK_LETTER")
    codec = AvroCodec()
    sent = [codec.decode(value, RollEvent) for _, _, value in read_topic(publish_env, prefix + ROLL_EVENTS)]
    # Compared as JSON objects: the file's keys need not be in the order the writer puts them.
    assert [json.loads(record_to_line(ROLL_EVENTS, record)) for record in sent] == [
        json.loads(line) for line in lines if json.loads(line)["topic"] == ROLL_EVENTS
    ]


def test_generated_file_publishes_every_record_under_the_settings_prefix(
    tmp_path: Path, publish_env: str, unique_name: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "generated.jsonl"
    options = GeneratorOptions(pupils=3_000, seed=4, start=date(2025, 3, 3), end=date(2025, 3, 21))
    with path.open("w", encoding="utf-8") as out:
        summary = write_replay(options, out)
    prefix = unique_name("generated") + "."
    monkeypatch.setenv("ROLLWATCH_TOPIC_PREFIX", prefix)
    assert main(["publish", str(path), "--quiet"]) == 0
    for topic, count in summary.per_topic.items():
        copies = PARTITIONS if topic == CLOCK_TICKS else 1
        assert len(read_topic(publish_env, prefix + topic)) == count * copies, topic
    codec = AvroCodec()
    ticks = [codec.decode(value, ClockTick) for _, _, value in read_topic(publish_env, prefix + CLOCK_TICKS)]
    assert ticks[: summary.per_topic[CLOCK_TICKS]] == [
        record for topic, record in file_records(path) if topic == CLOCK_TICKS
    ]


def test_ensure_input_topics_creates_co_partitioned_topics_once(
    publish_env: str, unique_name: Callable[[str], str]
) -> None:
    prefix = unique_name("topics") + "."
    settings = Settings()
    first = ensure_input_topics(settings, topic_prefix=prefix)
    assert set(first.created) == {prefix + topic for topic in INPUT_TOPICS} and first.existing == ()
    again = ensure_input_topics(settings, topic_prefix=prefix)
    assert again.created == () and set(again.existing) == set(first.created)
    admin = KafkaAdminClient(bootstrap_servers=publish_env)
    try:
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, prefix + SAFEGUARDING_STATUS)])
    finally:
        admin.close()
    assert configs["topic"][prefix + SAFEGUARDING_STATUS]["cleanup.policy"]["value"] == "compact"
    with pytest.raises(TopicLayoutError, match=f"must all have {PARTITIONS + 1} partitions"):
        ensure_input_topics(settings.model_copy(update={"topic_partitions": PARTITIONS + 1}), topic_prefix=prefix)


def test_sdk_publish_returns_futures_naming_the_offsets_written(
    publish_env: str, unique_name: Callable[[str], str]
) -> None:
    prefix = unique_name("sdk") + "."
    settings = Settings()
    ensure_input_topics(settings, topic_prefix=prefix)
    status = next(record for _, record in file_records(SCENARIOS[1]) if isinstance(record, SafeguardingStatus))
    with InputPublisher(connection_of(settings), topic_prefix=prefix) as publisher:
        [status_future] = publisher.publish(status)
        tick_futures = publisher.publish(ClockTick(today=date(2025, 3, 5)))
        publisher.flush()
        written = status_future.get(timeout=30)
        assert (written.topic, written.offset) == (prefix + SAFEGUARDING_STATUS, 0)
        assert sorted(future.get(timeout=30).partition for future in tick_futures) == list(range(PARTITIONS))
        assert publisher.sent[prefix + CLOCK_TICKS] == PARTITIONS
    [(partition, key, value)] = read_topic(publish_env, prefix + SAFEGUARDING_STATUS)
    assert (partition, key) == (written.partition, status.upn.encode())
    assert AvroCodec().decode(value, SafeguardingStatus) == status
