"""`python -m bench.fuzz`: mutated input messages sent straight to a worker's topics, and its books checked."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import textwrap
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from bench.kafkaprobe import end_offsets, input_partitions
from bench.mutations import BIG_STRING_EVERY, BIG_STRING_LENGTH, MAX_REQUEST_BYTES, Mutant, Mutator, seed_records
from bench.processes import ChildProcess, ProcessGroup, free_port
from bench.report import Figure, render_table
from cli.commands.publish import connection_of
from config.kafka import client_options
from config.settings import Settings
from processors.records import (
    INPUT_TOPICS,
    DeadLetter,
    dead_letter_topic,
)
from rollwatch_client.ordering import AppliedOffsets
from schemas.codec import AvroCodec

DEFAULT_RECORDS = 100_000
#: Pupils of the generated half-term whose records are the valid starting points (a few thousand lines).
STALL_SECONDS = 180.0
POLL_SECONDS = 1.0
PROGRESS_SECONDS = 10.0

#: Share of messages each input topic gets: the roll events most, as in live traffic, but every topic plenty.


@dataclass
class Sent:
    by_topic: Counter[str] = field(default_factory=Counter)
    by_mutation: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.by_topic.values())


def send(settings: Settings, mutants: Iterable[Mutant], progress: Callable[[str], None] | None = None) -> Sent:
    """Sends every mutant as is (no validation) with an idempotent producer; raises if any send failed."""
    sent = Sent()
    failures: list[BaseException] = []
    started = time.perf_counter()
    producer = KafkaProducer(
        **client_options(settings),
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        max_request_size=MAX_REQUEST_BYTES,
        allow_auto_create_topics=False,
    )
    try:
        for mutant in mutants:
            future = producer.send(
                settings.topic(mutant.topic), value=mutant.value, key=mutant.key, partition=mutant.partition
            )
            future.add_errback(failures.append)
            sent.by_topic[mutant.topic] += 1
            sent.by_mutation[mutant.mutation] += 1
            if progress is not None and sent.total % 20_000 == 0:
                progress(f"  sent {sent.total:,} messages")
        producer.flush(timeout=300)
    finally:
        producer.close(timeout=30)
    sent.seconds = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} message(s) were not accepted by Kafka; first: {failures[0]!r}")
    return sent


@dataclass
class Books:
    """The worker's counters from /metrics, by input topic (no prefix)."""

    consumed: Counter[str] = field(default_factory=Counter)
    applied: Counter[str] = field(default_factory=Counter)
    dead_lettered: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Register marks refused on their own: on the .dlq topic too, while their register counts as applied.
    marks_dead_lettered: Counter[tuple[str, str]] = field(default_factory=Counter)

    def dead_lettered_on(self, topic: str) -> int:
        return sum(count for (name, _code), count in self.dead_lettered.items() if name == topic)


def read_books(web_port: int, topic_prefix: str, host: str = "127.0.0.1") -> Books:
    with urllib.request.urlopen(f"http://{host}:{web_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    books = Books()

    def topic_of(labels: dict[str, str]) -> str:
        name = labels.get("topic", "")
        return name.removeprefix(topic_prefix)

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            count = round(sample.value)
            if family.name == "rollwatch_records_consumed":
                books.consumed[topic_of(sample.labels)] += count
            elif family.name == "rollwatch_records_applied":
                books.applied[topic_of(sample.labels)] += count
            elif family.name == "rollwatch_records_dead_lettered":
                books.dead_lettered[(topic_of(sample.labels), sample.labels.get("error_code", ""))] += count
            elif family.name == "rollwatch_marks_dead_lettered":
                books.marks_dead_lettered[(topic_of(sample.labels), sample.labels.get("error_code", ""))] += count
    return books


def committed_lag(settings: Settings) -> int:
    """Input messages not yet committed by the worker's group."""
    partitions = input_partitions(settings)
    ends = end_offsets(settings, partitions)
    applied = AppliedOffsets(connection_of(settings), settings.app_id)
    try:
        committed = applied.committed(partitions)
    finally:
        applied.close()
    return sum(max(end - committed.get(tp, 0), 0) for tp, end in ends.items())


@dataclass
class Outcome:
    books: Books | None
    #: Why the wait ended early: the worker exited, or made no progress; empty when it caught up.
    problem: str = ""
    seconds: float = 0.0


def wait_until_consumed(
    settings: Settings,
    sent: Sent,
    alive: Callable[[], bool],
    progress: Callable[[str], None] | None = None,
    stall_seconds: float = STALL_SECONDS,
) -> Outcome:
    """Waits until the worker's counters reach what was sent and its group has committed every input."""
    started = last_change = last_report = time.monotonic()
    books: Books | None = None
    seen = (-1, -1)
    while True:
        now = time.monotonic()
        if not alive():
            return Outcome(books, "the worker exited", now - started)
        try:
            books = read_books(settings.web_port, settings.topic_prefix, settings.web_host)
        except OSError:
            books_total = -1  # the web server is not up yet
        else:
            books_total = sum(books.consumed.values())
        lag = committed_lag(settings)
        if (books_total, lag) != seen:
            seen, last_change = (books_total, lag), now
        if books_total >= sent.total and lag == 0:
            return Outcome(books, "", now - started)
        if now - last_change > stall_seconds:
            return Outcome(books, f"no progress for {stall_seconds:.0f} s", now - started)
        if progress is not None and now - last_report >= PROGRESS_SECONDS:
            progress(f"  worker consumed {max(books_total, 0):,} of {sent.total:,}; {lag:,} not yet committed")
            last_report = now
        time.sleep(POLL_SECONDS)


def dead_letters_on_topics(settings: Settings, timeout: float = 120.0) -> tuple[Counter[tuple[str, str]], int]:
    """Dead letters committed to every `.dlq` topic, by source topic (no prefix) and code; and undecodable ones."""
    codec = AvroCodec()
    found: Counter[tuple[str, str]] = Counter()
    undecodable = 0
    consumer = KafkaConsumer(
        **client_options(settings),
        isolation_level="read_committed",
        enable_auto_commit=False,
        max_partition_fetch_bytes=MAX_REQUEST_BYTES,
        fetch_max_bytes=8 * MAX_REQUEST_BYTES,
    )
    try:
        partitions = [
            TopicPartition(settings.topic(dead_letter_topic(name)), partition)
            for name in INPUT_TOPICS
            for partition in sorted(consumer.partitions_for_topic(settings.topic(dead_letter_topic(name))) or ())
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the dead-letter topics could not be read to their end within {timeout:.0f} s")
            for messages in consumer.poll(timeout_ms=500).values():
                for message in messages:
                    try:
                        letter = codec.decode(message.value, DeadLetter)
                    except Exception:  # counted and reported: never a reason to stop counting
                        undecodable += 1
                        continue
                    found[(letter.source_topic.removeprefix(settings.topic_prefix), letter.error_code)] += 1
    finally:
        consumer.close()
    return found, undecodable


def mismatches(sent: Sent, books: Books, dead_letters: Counter[tuple[str, str]], undecodable: int) -> list[str]:
    """Every way the worker's books disagree with what was sent and what is on the dead-letter topics."""
    problems = []
    for topic in INPUT_TOPICS:
        expected = sent.by_topic.get(topic, 0)
        consumed, applied, dead = books.consumed[topic], books.applied[topic], books.dead_lettered_on(topic)
        if not consumed == applied + dead == expected:
            problems.append(f"{topic}: sent {expected:,}, consumed {consumed:,}, applied {applied:,} + "
                            f"dead-lettered {dead:,} = {applied + dead:,}")
    metric_letters = +(books.dead_lettered + books.marks_dead_lettered)
    if +dead_letters != metric_letters:
        for key in sorted(set(metric_letters) | set(dead_letters)):
            if metric_letters[key] != dead_letters[key]:
                problems.append(f"{key[0]} {key[1]}: {metric_letters[key]:,} dead-lettered by the metric, "
                                f"{dead_letters[key]:,} on the .dlq topic")
    if undecodable:
        problems.append(f"{undecodable:,} messages on the .dlq topics are not decodable dead letters")
    return problems


# ----- the command


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fuzz",
        description=(
            "Sends mutated messages (bit flips, truncations, random bytes, garbage bodies behind valid headers, "
            "records of the wrong type, huge lengths, valid records with hostile field values, and some valid "
            "ones) straight to the input topics of one `rollwatch worker` on a local Kafka of its own, then "
            "checks that the worker is still alive and that, per topic, consumed = applied + dead-lettered = "
            "sent, and that the .dlq topics hold as many dead letters as its metrics say. Exits 1 on any "
            "mismatch or if the worker died."
        ),
    )
    parser.add_argument("--records", type=int, default=DEFAULT_RECORDS, help=f"messages to send ({DEFAULT_RECORDS:,})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mutations and of the generated records (0)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of every topic (4)")
    parser.add_argument("--store", choices=("memory", "rocksdb"), default="memory", help="worker table store (memory)")
    parser.add_argument(
        "--big-string-length", type=int, default=BIG_STRING_LENGTH,
        help=f"characters of the big strings put in one message in {BIG_STRING_EVERY:,} ({BIG_STRING_LENGTH:,})",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, data) afterwards")
    return parser


def fuzz_settings(bootstrap: str, workdir: Path, partitions: int, store: str, **overrides: object) -> Settings:
    run = uuid.uuid4().hex[:8]
    values: dict[str, object] = {
        "bootstrap_servers": bootstrap,
        "topic_prefix": f"fuzz{run}.",
        "app_id": f"fuzz-{run}",
        "topic_partitions": partitions,
        "store": f"{store}://",
        "processing_guarantee": "exactly_once",
        "data_dir": workdir / "worker",
        "web_enabled": True,
        "web_port": free_port(),
        "log_level": "WARNING",
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


def figures_of(sent: Sent, outcome: Outcome, dead_letters: Counter[tuple[str, str]] | None,
               worker_alive: bool, exit_code: int | None) -> list[Figure]:
    send_rate = sent.total / sent.seconds if sent.seconds > 0 else 0.0
    figures = [Figure("messages sent", f"{sent.total:,}", f"in {sent.seconds:,.1f} s ({send_rate:,.0f}/s)")]
    books = outcome.books or Books()
    for topic in INPUT_TOPICS:
        figures.append(Figure(
            topic, f"sent {sent.by_topic[topic]:,}, consumed {books.consumed[topic]:,}, applied "
            f"{books.applied[topic]:,}, dead-lettered {books.dead_lettered_on(topic):,}",
        ))
    if dead_letters is not None:
        figures.append(Figure("dead letters on the .dlq topics", f"{sum(dead_letters.values()):,}"))
    consumed = sum(books.consumed.values())
    rate = consumed / outcome.seconds if outcome.seconds > 0 else 0.0
    figures.append(Figure("wall time, first send to all consumed", f"{outcome.seconds:,.1f} s",
                          f"{rate:,.0f} records/s"))
    figures.append(Figure("worker alive at the end", "yes" if worker_alive else f"NO (exit code {exit_code})"))
    return figures


def breakdown(sent: Sent, books: Books | None) -> str:
    """Messages sent by mutation and dead letters by topic and code, wrapped for a terminal."""
    mutations = ", ".join(f"{name} {count:,}" for name, count in sent.by_mutation.most_common())
    sections = [("messages by mutation", mutations)]
    letters = sorted((books or Books()).dead_lettered.items())
    for topic in INPUT_TOPICS:
        codes = ", ".join(f"{code} {count:,}" for (name, code), count in letters if name == topic and count)
        sections.append((f"{topic} dead letters by code", codes or "none"))
    return "\n".join(textwrap.fill(text, 110, initial_indent=f"{title}: ", subsequent_indent="    ")
                     for title, text in sections)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    from localbroker.launcher import LocalCluster
    from localbroker.nodes import find_free_base_port

    args = build_parser().parse_args(argv)
    if args.records < 1 or args.partitions < 1:
        raise SystemExit("bench.fuzz: --records and --partitions must be at least 1")
    for name in [name for name in os.environ if name.startswith("ROLLWATCH_")]:
        del os.environ[name]
    workdir = Path(tempfile.mkdtemp(prefix="rollwatch-fuzz-"))
    keep = args.keep
    processes = ProcessGroup()
    cluster: LocalCluster | None = None
    previous = {signum: signal.signal(signum, _interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    progress(f"fuzz: {args.records:,} messages, seed {args.seed}; working in {workdir}")
    try:
        cluster = LocalCluster(workdir / "kafka", nodes=1, base_port=find_free_base_port(1),
                               cache_dir=Settings().broker_cache_dir, progress=progress)
        bootstrap = cluster.start(timeout=120)
        settings = fuzz_settings(bootstrap, workdir, args.partitions, args.store)
        from streams.topics import ensure_worker_topics

        ensure_worker_topics(settings)
        progress("generating the valid records to mutate...")
        records = seed_records(seed=args.seed)
        progress("  " + ", ".join(f"{topic} {len(found):,}" for topic, found in records.items()))
        worker = ChildProcess("worker", "cli.main", settings, workdir / "worker.log", {})
        processes.start(worker, "worker")
        progress(f"worker started (pid {worker.pid}, metrics on port {settings.web_port}); sending...")
        started = time.monotonic()
        mutator = Mutator(records, args.seed, args.partitions, args.big_string_length)
        sent = send(settings, mutator.mutants(args.records), progress)
        progress(f"sent {sent.total:,} messages in {sent.seconds:,.1f} s; waiting for the worker...")
        outcome = wait_until_consumed(settings, sent, worker.alive, progress)
        outcome.seconds = time.monotonic() - started
        alive = worker.alive()
        exit_code = None if alive else worker.process.returncode if worker.process else None
        dead_letters: Counter[tuple[str, str]] | None = None
        problems: list[str] = []
        if outcome.problem:
            problems.append(outcome.problem)
        if alive and not outcome.problem and outcome.books is not None:
            dead_letters, undecodable = dead_letters_on_topics(settings)
            problems += mismatches(sent, outcome.books, dead_letters, undecodable)
        print()
        print(f"Rollwatch fuzz ({args.records:,} messages, seed {args.seed}, {args.partitions} partitions, "
              f"{args.store} store, exactly_once; {os.cpu_count()} cores)")
        print(render_table(figures_of(sent, outcome, dead_letters, alive, exit_code)))
        print(breakdown(sent, outcome.books))
        if not alive:
            print(f"\nTHE WORKER DIED (exit code {exit_code}). The end of its log ({worker.log_path}):")
            print(worker.log_tail(6000))
            keep = True
        if problems:
            print("\nMISMATCHES:")
            for problem in problems:
                print(f"  {problem}")
            keep = True
            return 1
        print("\nOK: the worker stayed up and consumed = applied + dead-lettered = sent on every topic.")
        return 0
    except KeyboardInterrupt:
        progress("interrupted: stopping everything this run started")
        return 130
    except BaseException:
        keep = True
        raise
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            processes.stop_all()
            if cluster is not None:
                cluster.stop()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if keep:
            progress(f"kept {workdir} (the worker's and the broker's logs are there)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
