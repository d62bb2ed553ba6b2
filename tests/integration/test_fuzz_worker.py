"""A worker fed mutated and hostile messages stays up and applies or dead-letters every one of them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bench.fuzz import dead_letters_on_topics, mismatches, send, wait_until_consumed
from bench.mutations import Mutation, Mutator, seed_records
from bench.processes import free_port
from config.settings import Settings
from processors.records import ROLL_EVENTS
from streams.topics import ensure_worker_topics
from tests.integration.workers import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MESSAGES = 2_000


def fuzz_settings(kafka_bootstrap: str, name: str, tmp_path: Path) -> Settings:
    return Settings(
        bootstrap_servers=kafka_bootstrap, topic_prefix=f"{name}.", app_id=name, topic_partitions=2,
        data_dir=tmp_path / "worker", web_port=free_port(), log_level="WARNING",
        # The session broker is shared: only this test's own alert topics, as its first alerts need them.
        alert_topics_up_front=False,
    )


def test_a_worker_fed_mutated_messages_applies_or_dead_letters_each_and_stays_up(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    settings = fuzz_settings(kafka_bootstrap, unique_name("fuzz"), tmp_path)
    ensure_worker_topics(settings)
    # Big strings of 200 kB keep this test quick: a message near Kafka's 1 MB limit is the case below.
    mutator = Mutator(seed_records(pupils=2_000), seed=7, partitions=2, big_string_length=200_000)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        sent = send(settings, mutator.mutants(MESSAGES))
        outcome = wait_until_consumed(settings, sent, worker.alive, stall_seconds=45)
        assert worker.alive(), f"the worker died ({outcome.problem}):\n{worker.log()}"
        assert outcome.problem == "" and outcome.books is not None, f"{outcome.problem}\n{worker.log()}"
        dead_letters, undecodable = dead_letters_on_topics(settings)
        assert mismatches(sent, outcome.books, dead_letters, undecodable) == [], worker.log()
        assert sum(outcome.books.applied.values()) > 0 and sum(dead_letters.values()) > 0
    finally:
        worker.stop()


def test_a_message_near_the_size_limit_is_dead_lettered_without_stopping_the_worker(
    kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    settings = fuzz_settings(kafka_bootstrap, unique_name("fuzz-big"), tmp_path)
    ensure_worker_topics(settings)
    mutator = Mutator(seed_records(pupils=2_000), seed=7, partitions=2)
    mutants = [mutator.mutant(ROLL_EVENTS, mutation) for mutation in (Mutation.VALID, Mutation.BIG_STRING)]
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        sent = send(settings, mutants)
        outcome = wait_until_consumed(settings, sent, worker.alive, stall_seconds=30)
        assert worker.alive(), f"the worker died ({outcome.problem}):\n{worker.log()}"
        assert outcome.problem == "" and outcome.books is not None, f"{outcome.problem}\n{worker.log()}"
        dead_letters, undecodable = dead_letters_on_topics(settings)
        assert mismatches(sent, outcome.books, dead_letters, undecodable) == [], worker.log()
        assert outcome.books.applied[ROLL_EVENTS] == 1 and sum(dead_letters.values()) == 1
    finally:
        worker.stop()
