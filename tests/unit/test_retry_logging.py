"""aiokafka's retries of a partition not ready yet: INFO while brief, a WARNING once they have lasted."""

from __future__ import annotations

import logging

from streams.runtime.retries import GRACE_SECONDS, BriefRetriesAtInfo


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def retry(partition: str, error: str) -> logging.LogRecord:
    # The exact call aiokafka's sender makes for a produce request it sends again.
    return logging.LogRecord(
        "aiokafka.producer.sender", logging.WARNING, __file__, 1,
        "Got error produce response on topic-partition %s, retrying. Error: %s",
        (partition, f"<class 'aiokafka.errors.{error}'>"), None,
    )


def test_brief_retries_are_info_and_lasting_ones_warn() -> None:
    clock = Clock()
    brief = BriefRetriesAtInfo(clock)
    first = retry("TopicPartition(topic='t', partition=0)", "NotEnoughReplicasError")
    assert brief.filter(first) and first.levelname == "INFO"
    clock.now += GRACE_SECONDS / 2
    again = retry("TopicPartition(topic='t', partition=0)", "NotLeaderForPartitionError")
    assert brief.filter(again) and again.levelno == logging.INFO
    clock.now += GRACE_SECONDS
    lasting = retry("TopicPartition(topic='t', partition=0)", "NotEnoughReplicasError")
    assert brief.filter(lasting) and lasting.levelno == logging.WARNING
    # Another partition has a run of its own, and a run that ended long ago starts afresh.
    other = retry("TopicPartition(topic='t', partition=1)", "NotEnoughReplicasError")
    assert brief.filter(other) and other.levelno == logging.INFO
    clock.now += GRACE_SECONDS * 3
    later = retry("TopicPartition(topic='t', partition=0)", "NotEnoughReplicasError")
    assert brief.filter(later) and later.levelno == logging.INFO


def test_other_errors_and_lines_keep_their_level() -> None:
    brief = BriefRetriesAtInfo(Clock())
    refused = retry("TopicPartition(topic='t', partition=0)", "TopicAuthorizationFailedError")
    assert brief.filter(refused) and refused.levelno == logging.WARNING
    other = logging.LogRecord(
        "aiokafka.producer.sender", logging.WARNING, __file__, 1, "Got error produce response: %s", ("x",), None
    )
    assert brief.filter(other) and other.levelno == logging.WARNING
