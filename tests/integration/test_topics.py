"""The worker's topics on a real broker: output topics created up front, and which counts must match."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kafka.admin import KafkaAdminClient, NewTopic

from config.settings import Settings
from streams.topics import TopicLayoutError, ensure_worker_topics, output_topics

pytestmark = pytest.mark.integration


def test_output_topics_are_created_up_front_and_an_existing_one_keeps_its_own_partition_count(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("upfront")
    settings = Settings(
        bootstrap_servers=kafka_bootstrap, topic_prefix=f"{name}.", app_id=name, topic_partitions=1,
        alert_topics_up_front=True,
    )
    # An LA that set up its own alert topic before the worker first started, with partitions of its choosing.
    own = settings.topic("la.330.alerts.cme-officer")
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(own, num_partitions=3, replication_factor=1)])

        report = ensure_worker_topics(settings)

        assert own in report.existing
        assert set(output_topics(settings)) <= set(report.created) | set(report.existing)
        assert set(output_topics(settings)) <= set(admin.list_topics())
        [described] = admin.describe_topics([own])
        assert len(described["partitions"]) == 3
    finally:
        admin.close()
    # Inputs and changelogs must still match the setting: they are co-partitioned by UPN.
    with pytest.raises(TopicLayoutError, match="must all have 2 partitions"):
        ensure_worker_topics(settings.model_copy(update={"topic_partitions": 2}))
