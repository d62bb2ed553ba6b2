"""Creates the worker's topics up front, co-partitioned, and waits until every partition has a leader."""

from __future__ import annotations

import contextlib
import logging
import time

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from processors.records import INPUT_TOPICS
from streams.kafkaclients import client_options
from streams.settings import Settings

log = logging.getLogger(__name__)

#: The worker's changelog-backed tables; Faust names their changelogs `<app id>-<table>-changelog`.
TABLES = ("children", "deadlines", "clocks", "totals")


class TopicLayoutError(RuntimeError):
    """An existing topic has a partition count that breaks co-partitioning."""


def worker_topics(settings: Settings) -> dict[str, dict[str, str]]:
    """Every topic the worker reads or keeps state in, with its topic configuration."""
    topics: dict[str, dict[str, str]] = {settings.topic(name): {} for name in INPUT_TOPICS}
    for table in TABLES:
        topics[f"{settings.app_id}-{table}-changelog"] = {"cleanup.policy": "compact"}
    return topics


def ensure_worker_topics(settings: Settings, timeout: float = 60.0) -> None:
    """Creating topics in advance spares the first rebalance a race with topic creation, and lets a
    mismatched partition count fail loudly before any record is applied."""
    admin = KafkaAdminClient(**client_options(settings))
    try:
        wanted = worker_topics(settings)
        existing = set(admin.list_topics())
        missing = [
            NewTopic(name, settings.topic_partitions, settings.topic_replication_factor, topic_configs=configs)
            for name, configs in wanted.items()
            if name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker created them first
                admin.create_topics(missing)
            log.info("created %d topics with %d partitions", len(missing), settings.topic_partitions)
        deadline = time.monotonic() + timeout
        while True:
            described = admin.describe_topics(sorted(wanted))
            wrong = [
                f"{t['name']} has {len(t['partitions'])}"
                for t in described
                if t["error_code"] == 0 and t["partitions"] and len(t["partitions"]) != settings.topic_partitions
            ]
            if wrong:
                raise TopicLayoutError(
                    f"topics must all have {settings.topic_partitions} partitions (ROLLWATCH_TOPIC_PARTITIONS) to be "
                    f"co-partitioned by UPN, but {', '.join(wrong)}; set the setting to match or recreate them"
                )
            ready = all(
                t["error_code"] == 0 and t["partitions"] and all(p["leader_id"] >= 0 for p in t["partitions"])
                for t in described
            )
            if ready:
                return
            if time.monotonic() > deadline:
                raise TopicLayoutError(f"the worker's topics have no partition leaders after {timeout:.0f} s")
            time.sleep(0.2)
    finally:
        admin.close()
