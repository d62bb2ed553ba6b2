"""The topic layout Rollwatch relies on: co-partitioned inputs, compacted state, created up front."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import partial
from typing import Any

from kafka import TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic, OffsetSpec
from kafka.errors import (
    CoordinatorLoadInProgressError,
    GroupIdNotFoundError,
    KafkaError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    TransactionalIdNotFoundError,
    UnknownTopicOrPartitionError,
)

from config.kafka import client_options
from config.settings import Settings
from processors.identifiers import CURRENT_LA_CODES
from processors.records import (
    INPUT_TOPICS,
    MARK_BATCHES_SUFFIX,
    SAFEGUARDING_STATUS,
    Recipient,
    alert_topic,
    dead_letter_topic,
)

log = logging.getLogger(__name__)

#: The worker's changelog-backed tables; Faust names their changelogs `<app id>-<table>-changelog`.
TABLES = ("children", "deadlines", "clocks", "totals", "registers", "attendance", "present")
#: Input topics where only the latest record per child matters (design.md: latest status wins).
COMPACTED_INPUTS = frozenset({SAFEGUARDING_STATUS})
COMPACT = {"cleanup.policy": "compact"}
#: Partitions one admin request names at most. kafka-python reads a request's whole answer in one step of its
#: network loop, and a ListOffsets request is retried whole while any one partition in it is not served yet:
#: every LA's alert topics in one request (nearly 1,900 partitions at 4 each) took 0.1-0.2 s a step on an idle
#: machine and 0.5-1.1 s on a busy one, logged as "blocking the event loop" at a worker's first start.
PARTITIONS_PER_REQUEST = 200
#: What describing a topic answers when it does not exist, or exists but this user may not see it: to the
#: user both are topics to create, as they are absent from a listing.
_ABSENT = frozenset({UnknownTopicOrPartitionError.errno, TopicAuthorizationFailedError.errno})


class TopicLayoutError(RuntimeError):
    """Topics that cannot be used as they are: a partition count that breaks co-partitioning, or none at all."""


@dataclass(frozen=True, slots=True)
class TopicReport:
    created: tuple[str, ...]
    existing: tuple[str, ...]


def input_topics(settings: Settings, prefix: str | None = None) -> dict[str, dict[str, str]]:
    """Every input topic with its configuration, under the settings' prefix unless another is given."""
    prefix = settings.topic_prefix if prefix is None else prefix
    return {f"{prefix}{name}": dict(COMPACT) if name in COMPACTED_INPUTS else {} for name in INPUT_TOPICS}


def ensure_input_topics(settings: Settings, *, topic_prefix: str | None = None) -> TopicReport:
    """Creates any missing input topic with `topic_partitions` partitions and `topic_replication_factor`.

    `topic_prefix` defaults to the settings' prefix. All input topics must have the same partition count,
    because the worker joins a child's records by partition number (co-partitioning); an existing topic with
    another count raises TopicLayoutError rather than being silently used."""
    return ensure_topics(settings, input_topics(settings, topic_prefix))


def output_topics(settings: Settings) -> dict[str, dict[str, str]]:
    """Every topic the worker may send a record's alerts or dead letters to: each input's `.dlq`, and the
    three alert topics of every current English LA (the only LAs an alert can be for)."""
    topics: dict[str, dict[str, str]] = {dead_letter_topic(name): {} for name in input_topics(settings)}
    for la_code in sorted(CURRENT_LA_CODES):
        for recipient in Recipient:
            topics[settings.topic(alert_topic(la_code, recipient))] = {}
    return topics


def copartitioned_topics(settings: Settings) -> dict[str, dict[str, str]]:
    """Every topic the worker reads or keeps state in, with its topic configuration: all partitioned alike,
    so that a child's records and state share a partition number."""
    topics = input_topics(settings)
    for table in TABLES:
        topics[f"{settings.app_id}-{table}-changelog"] = dict(COMPACT)
    # Registers' marks on their way to the children's partitions: read once, within moments, so kept a week.
    topics[mark_batches_topic(settings)] = {"retention.ms": str(7 * 24 * 3600 * 1000)}
    return topics


def mark_batches_topic(settings: Settings) -> str:
    """The worker's own topic of register marks split by child partition, named after its application."""
    return f"{settings.app_id}-{MARK_BATCHES_SUFFIX}"


def worker_topics(settings: Settings) -> dict[str, dict[str, str]]:
    """The co-partitioned topics, and the output topics when they are created up front."""
    topics = copartitioned_topics(settings)
    if settings.alert_topics_up_front:
        topics.update(output_topics(settings))
    return topics


def ensure_worker_topics(settings: Settings, timeout: float = 60.0) -> TopicReport:
    """Creating topics in advance spares the first rebalance a race with topic creation, and lets a
    mismatched partition count fail loudly before any record is applied. Output topics are keyed by UPN but
    read by LA consumers only, so an existing one may have any partition count (an LA's own choice)."""
    return ensure_topics(
        settings, worker_topics(settings), timeout, copartitioned=copartitioned_topics(settings), coordinators=True
    )


def ensure_topics(
    settings: Settings,
    wanted: dict[str, dict[str, str]],
    timeout: float = 60.0,
    copartitioned: Collection[str] | None = None,
    *,
    coordinators: bool = False,
) -> TopicReport:
    """Creates the missing topics with the settings' partition count and replication factor, then waits
    until every partition has a leader (every new one its replicas in sync, and serving), and, with
    `coordinators`, until the worker's group and transaction coordinators answer; an existing topic of
    `copartitioned` (by default all of them) with another partition count is refused."""
    must_match = set(wanted if copartitioned is None else copartitioned)
    batches = _batches(sorted(wanted), settings.topic_partitions)
    admin = KafkaAdminClient(**client_options(settings))
    try:
        # Only the wanted topics are described, never the whole cluster's, whose metadata may be far larger.
        existing = {
            topic["name"] for topic in _describe(admin, batches) if topic["error_code"] not in _ABSENT
        }
        missing = [name for name in wanted if name not in existing]
        if missing:
            for batch in _batches(missing, settings.topic_partitions):
                new = [
                    NewTopic(name, settings.topic_partitions, settings.topic_replication_factor,
                             topic_configs=wanted[name])
                    for name in batch
                ]
                try:
                    admin.create_topics(new)
                except TopicAlreadyExistsError:
                    pass  # another worker or publisher created them at the same moment
                except KafkaError as error:
                    raise TopicLayoutError(f"cannot create topics {', '.join(batch)}: {error}") from error
            log.info("created %d topics with %d partitions", len(missing), settings.topic_partitions)
        deadline = time.monotonic() + timeout
        while True:
            described = _describe(admin, batches)
            wrong = [
                f"{t['name']} has {len(t['partitions'])}"
                for t in described
                if t["name"] in must_match
                and t["error_code"] == 0
                and t["partitions"]
                and len(t["partitions"]) != settings.topic_partitions
            ]
            if wrong:
                raise TopicLayoutError(
                    f"topics must all have {settings.topic_partitions} partitions (ROLLWATCH_TOPIC_PARTITIONS) to be "
                    f"co-partitioned by UPN, but {', '.join(wrong)}; set the setting to match or recreate them"
                )
            if all(_has_leaders(t, in_sync=t["name"] in missing) for t in described):
                if missing:
                    created = set(missing)
                    _wait_for_leaders_to_serve(admin, [t for t in described if t["name"] in created], deadline)
                    if coordinators:
                        _wait_for_coordinators(admin, settings, deadline)
                return TopicReport(
                    created=tuple(name for name in wanted if name in missing),
                    existing=tuple(name for name in wanted if name not in missing),
                )
            if time.monotonic() > deadline:
                names = ", ".join(sorted(wanted))
                raise TopicLayoutError(f"topics {names} have no partition leaders after {timeout:.0f} s")
            time.sleep(0.2)
    finally:
        admin.close()


def _batches(names: list[str], partitions: int) -> list[list[str]]:
    """Topic names in groups of about PARTITIONS_PER_REQUEST partitions, for one admin request each."""
    size = max(1, PARTITIONS_PER_REQUEST // max(1, partitions))
    return [names[start : start + size] for start in range(0, len(names), size)]


def _describe(admin: KafkaAdminClient, batches: list[list[str]]) -> list[dict[str, Any]]:
    return [topic for batch in batches for topic in admin.describe_topics(batch)]


def wait_until_served(settings: Settings, names: Collection[str], timeout: float = 30.0) -> None:
    """Returns once every partition of the named topics, just created by someone else (the worker declaring
    an output topic as its first record arrives), has a leader with all its replicas in sync, and that
    leader serves it; a send before then is turned away and retried, with a warning each time."""
    admin = KafkaAdminClient(**client_options(settings))
    try:
        deadline = time.monotonic() + timeout
        while True:
            described = admin.describe_topics(sorted(names))
            if all(_has_leaders(topic, in_sync=True) for topic in described):
                _wait_for_leaders_to_serve(admin, described, deadline)
                return
            if time.monotonic() > deadline:
                listed = ", ".join(sorted(names))
                raise TopicLayoutError(f"topics {listed} have no partition leaders after {timeout:.0f} s")
            time.sleep(0.1)
    finally:
        admin.close()


def _has_leaders(topic: dict[str, Any], *, in_sync: bool) -> bool:
    """Whether every partition of a described topic has a leader and, if `in_sync`, every replica in sync: a
    new partition's followers join its ISR only after their first fetch, and a transactional or acks=all
    send meanwhile may be turned away with NotEnoughReplicas."""
    partitions = topic["partitions"]
    return (
        topic["error_code"] == 0
        and bool(partitions)
        and all(
            p["leader_id"] >= 0 and (not in_sync or len(p["isr_nodes"]) >= len(p["replica_nodes"]))
            for p in partitions
        )
    )


def _wait_for_coordinators(admin: KafkaAdminClient, settings: Settings, deadline: float) -> None:
    """Returns once the worker's group coordinator and its partitions' transaction coordinators answer. On a
    cluster no group or transaction has used yet, the first request for a coordinator makes the broker create
    `__consumer_offsets` or `__transaction_state` and load it: seconds on end (12 s on a fresh three-node
    cluster) in which a starting worker's transactional producers wait inside its first rebalance, long enough
    to miss heartbeats and join again, with warnings all along. Waiting here costs the same seconds, quietly."""
    # Faust names each input partition's transactional producer `<app id>-<group>-<partition>`; the
    # co-partitioned inputs are group 0.
    transactions = [f"{settings.app_id}-0-{partition}" for partition in range(settings.topic_partitions)]
    pending: list[Callable[[], object]] = [partial(_describe_group, admin, settings.app_id)]
    pending += [partial(admin.describe_transactions, [transaction]) for transaction in transactions]
    while pending:
        try:
            pending[0]()
        except (TransactionalIdNotFoundError, GroupIdNotFoundError):
            pass  # the coordinator answered: it knows nothing of this id yet
        except KafkaError as error:
            if not getattr(error, "retriable", False):
                log.info("not waiting for coordinators: %s", type(error).__name__)
                return
            if time.monotonic() > deadline:
                log.info("coordinators not ready before the deadline (%s); starting anyway", type(error).__name__)
                return
            time.sleep(0.2)
            continue
        pending.pop(0)


def _describe_group(admin: KafkaAdminClient, group: str) -> None:
    """Raises, as retriable, what the group's coordinator answered for it unless it answered for it."""
    error = admin.describe_groups([group])[group]["error"]
    if error is not None and GroupIdNotFoundError.__name__ not in error:
        raise CoordinatorLoadInProgressError(error)


def _wait_for_leaders_to_serve(admin: KafkaAdminClient, described: list[dict[str, Any]], deadline: float) -> None:
    """Returns once the leader of every partition answers for it. A broker names a new partition's leader in
    its metadata before that leader has made the partition's log, and hundreds of topics created at once
    (every LA's alert topics) keep it busy for seconds; a client sending meanwhile is turned away with
    NotLeaderForPartition on every try, and logs each."""
    partitions = [
        TopicPartition(topic["name"], partition["partition_index"])
        for topic in described
        for partition in topic["partitions"]
    ]
    remaining_ms = 0
    try:
        for start in range(0, len(partitions), PARTITIONS_PER_REQUEST):
            remaining_ms = max(int((deadline - time.monotonic()) * 1000), 1000)
            batch = partitions[start : start + PARTITIONS_PER_REQUEST]
            admin.list_partition_offsets(dict.fromkeys(batch, OffsetSpec.LATEST), timeout_ms=remaining_ms)
    except KafkaError as error:
        raise TopicLayoutError(
            f"new topics' partition leaders did not serve them within {remaining_ms / 1000:.0f} s ({error}); "
            "check the brokers' logs"
        ) from error
