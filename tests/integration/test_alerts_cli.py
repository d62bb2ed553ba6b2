"""`rollwatch alerts` on a real broker: what it prints on stderr after a normal run is its summary, no library ERROR."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from config.settings import Settings
from processors.records import Recipient, alert_topic
from schemas.codec import AvroCodec
from tests.integration.test_webhook import alert
from tests.integration.workers import ROOT, worker_env

pytestmark = pytest.mark.integration


def test_a_normal_run_ends_with_its_summary_and_no_error_line(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    prefix = unique_name("alertscli") + "."
    settings = Settings(bootstrap_servers=kafka_bootstrap, topic_prefix=prefix, log_level="INFO")
    topic = settings.topic(alert_topic("330", Recipient.CME_OFFICER))
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    codec = AvroCodec()
    for number in range(3):
        producer.send(topic, key=b"W330215224052", value=codec.encode(alert(number, "330")))
    producer.flush()
    producer.close()

    # The consumer refreshes its metadata every 5 s, so an idle stop after 5 s closes it during a refresh:
    # kafka-python logged the cancelled request as `ERROR kafka.cluster: Metadata refresh: failed Cancelled`.
    for _ in range(2):
        printed = subprocess.run(
            [sys.executable, "-m", "cli.main", "alerts", "--from-beginning", "--idle-seconds", "5"],
            cwd=ROOT, env=worker_env(settings), capture_output=True, text=True, timeout=120, check=False,
        )
        assert printed.returncode == 0, printed.stderr
        assert len([json.loads(line) for line in printed.stdout.splitlines()]) == 3
        loud = [line for line in printed.stderr.splitlines() if " ERROR " in line or " WARNING " in line]
        assert not loud, printed.stderr
        assert printed.stderr.splitlines()[-1] == "alerts: 3 printed", printed.stderr
