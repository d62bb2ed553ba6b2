"""The MIS client installed alone, in a fresh virtual environment, publishes to a real Kafka."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from config.settings import Settings
from processors.records import ROLL_EVENTS, RollEvent
from schemas.codec import AvroCodec
from schemas.jsonfields import record_to_json
from streams.topics import ensure_input_topics
from tests.unit.test_publish_cli import scenario_roll_events

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
#: What the application needs and an MIS integrator must not have to install.
APPLICATION_ONLY = ("faust", "pydantic", "msgspec", "sqlalchemy")
INSTALL_TIMEOUT_S = 240

PUBLISH_SCRIPT = textwrap.dedent(
    """\
    import json, sys
    from rollwatch_client.connection import KafkaConnection
    from rollwatch_client.publisher import InvalidRecordError, RollEventPublisher
    from schemas.jsonfields import record_from_json

    bootstrap, prefix, valid_path, invalid_path = sys.argv[1:]
    valid = record_from_json("roll.events", json.load(open(valid_path)))
    invalid = record_from_json("roll.events", json.load(open(invalid_path)))
    with RollEventPublisher(KafkaConnection(bootstrap, topic_prefix=prefix)) as publisher:
        try:
            publisher.publish(invalid)
        except InvalidRecordError as error:
            print("refused:", ",".join(sorted(problem.code for problem in error.problems)))
        else:
            sys.exit("an invalid record was sent")
        publisher.publish(valid)
    print("sent:", publisher.sent)
    """
)


def read_all(bootstrap: str, topic: str, timeout: float = 60.0) -> list[tuple[bytes | None, bytes]]:
    """Every message of `topic` up to its end now, as (key, value)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        partitions = [TopicPartition(topic, partition) for partition in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        found: list[tuple[bytes | None, bytes]] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            assert time.monotonic() < deadline, f"timed out reading {topic}"
            for batch in consumer.poll(timeout_ms=500).values():
                found += [(message.key, message.value) for message in batch]
        return found
    finally:
        consumer.close()


def test_the_client_installs_alone_and_publishes_a_valid_roll_event(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    # Nothing of the repository may reach the fresh environment except through the installed package.
    environment = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "VIRTUAL_ENV")}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(ROOT / "clients/python")],
        check=True, timeout=INSTALL_TIMEOUT_S, env=environment,
    )
    for module in APPLICATION_ONLY:
        probe = subprocess.run(
            [str(python), "-c", f"import {module}"], capture_output=True, cwd=tmp_path, env=environment, timeout=60
        )
        assert probe.returncode != 0, f"{module} was installed with the client"

    prefix = unique_name("client") + "."
    ensure_input_topics(Settings(bootstrap_servers=kafka_bootstrap, topic_partitions=2), topic_prefix=prefix)
    event = scenario_roll_events()[0]
    broken = replace(event, upn="Y330215124052", school=replace(event.school, urn="12"))
    (tmp_path / "valid.json").write_text(json.dumps(record_to_json(event)))
    (tmp_path / "invalid.json").write_text(json.dumps(record_to_json(broken)))
    (tmp_path / "publish.py").write_text(PUBLISH_SCRIPT)
    run = subprocess.run(
        [str(python), "publish.py", kafka_bootstrap, prefix, "valid.json", "invalid.json"],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "refused: UPN_CHECK_LETTER,URN_FORMAT" in run.stdout
    assert "sent: 1" in run.stdout

    [(key, value)] = read_all(kafka_bootstrap, prefix + ROLL_EVENTS)
    assert key == event.upn.encode()
    assert AvroCodec().decode(value, RollEvent) == event
