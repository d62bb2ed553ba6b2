"""The topics the worker creates before it starts: inputs, changelogs, and (by default) every output topic."""

from __future__ import annotations

from config.settings import Settings
from processors.identifiers import CURRENT_LA_CODES
from processors.records import INPUT_TOPICS
from streams.topics import output_topics, worker_topics


def test_every_current_la_gets_its_three_alert_topics_and_every_input_its_dead_letter_topic() -> None:
    settings = Settings(topic_prefix="t.", alert_topics_up_front=True)
    outputs = output_topics(settings)
    assert len(outputs) == 3 * len(CURRENT_LA_CODES) + len(INPUT_TOPICS)
    assert {"t.la.330.alerts.cme-officer", "t.la.330.alerts.social-care", "t.la.330.alerts.ehe-service"} <= set(outputs)
    assert {f"t.{name}.dlq" for name in INPUT_TOPICS} <= set(outputs)
    assert all(name.startswith("t.") for name in outputs)
    assert set(outputs) <= set(worker_topics(settings))


def test_without_them_up_front_the_worker_creates_only_what_it_reads_and_keeps_state_in() -> None:
    settings = Settings(topic_prefix="t.", alert_topics_up_front=False)
    assert not set(output_topics(settings)) & set(worker_topics(settings))
    assert {f"t.{name}" for name in INPUT_TOPICS} <= set(worker_topics(settings))
