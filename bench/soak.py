"""`python -m bench.soak`: a year published through a worker killed and a broker restarted, alerts checked by id."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import FrameType
from typing import Any

from kafka import KafkaConsumer
from kafka.errors import KafkaError
from kafka.structs import TopicPartition

from bench.kafkaprobe import end_offsets, input_partitions
from bench.processes import ROOT, ChildProcess, ProcessGroup, free_port
from bench.report import Figure, render_table
from cli.commands.publish import connection_of
from config.settings import Settings
from localbroker.launcher import LocalCluster
from processors.records import CLOCK_TICKS, Alert
from rollwatch_client.ordering import AppliedOffsets
from schemas.codec import AvroCodec
from schemas.jsonfields import alert_to_json
from streams.topics import ensure_worker_topics

#: About 9 minutes on 2 shared cores with the default kills and broker restart: waits at each switch of topic,
#: restarts and rebalances take most of it, so half as many pupils still take 7.
DEFAULT_PUPILS = 200_000
DEFAULT_KILLS = 5
POLL_SECONDS = 0.5
PROGRESS_SECONDS = 15.0
#: Longest the worker may take to apply the rest once everything is published, seconds.
CATCH_UP_SECONDS = 600.0
#: Seconds `rollwatch publish --ordered` waits for the worker at a switch of topic: a kill, a restart and a
#: rebalance, or a broker restart, all fit in it.
PUBLISH_WAIT_SECONDS = 600
#: A worker that keeps exiting by itself (a crash loop) ends the run after this many exits.
MAX_UNEXPECTED_EXITS = 10
#: Shorter group timeouts than the defaults, so a killed worker's partitions move to its successor in seconds.
GROUP_TIMEOUTS: dict[str, object] = {
    "broker_session_timeout": 6.0,
    "broker_heartbeat_interval": 1.0,
    "broker_rebalance_timeout": 10.0,
}


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=(
            "Generates a year of input, publishes it with `rollwatch publish --ordered` to one `rollwatch "
            "worker` (exactly_once) on a local Kafka of its own, SIGKILLs and restarts the worker --kills times "
            "at random (seeded) moments and restarts the broker once (with --nodes 3: stops one node and starts "
            "it again later), then reads every alert with a read_committed consumer and compares them by "
            "alert_id with `rollwatch replay` of the same file. Exits 1 if any alert is missing, extra or "
            "duplicated, or differs from the replay's."
        ),
    )
    parser.add_argument("--pupils", type=int, default=DEFAULT_PUPILS,
                        help=f"pupils of the generated year ({DEFAULT_PUPILS:,}: about 9 minutes on 2 cores)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and of the kill moments (0)")
    parser.add_argument("--from", dest="start", default="2024-09-01", help="first day of the data (2024-09-01)")
    parser.add_argument("--to", dest="end", default="2025-08-31", help="last day of the data (2025-08-31)")
    parser.add_argument("--kills", type=int, default=DEFAULT_KILLS, help=f"SIGKILLs of the worker ({DEFAULT_KILLS})")
    parser.add_argument("--nodes", type=int, choices=(1, 3), default=1,
                        help="Kafka nodes: 1 (restarted once) or 3 (replication 3, min ISR 2; one node stopped "
                        "and started again)")
    parser.add_argument("--store", choices=("memory", "rocksdb"), default="memory", help="worker table store (memory)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of every topic (4)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, data) afterwards")
    return parser


@dataclass
class Events:
    kills: int = 0
    #: Every worker exit the soak did not cause, with its exit code and log.
    unexpected_exits: list[str] = field(default_factory=list)
    broker: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Comparison:
    expected: int
    read: int
    missing: int
    extra: int
    duplicated: int
    different: int

    @property
    def clean(self) -> bool:
        return self.missing == self.extra == self.duplicated == self.different == 0


class CrashLoop(RuntimeError):
    """The worker keeps exiting by itself: restarting it again would only repeat that."""


def run_quietly(arguments: list[str], stdout: Any = subprocess.DEVNULL) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ROLLWATCH_")}
    subprocess.run([sys.executable, "-m", "cli.main", *arguments], cwd=ROOT, env=env, stdout=stdout, check=True)


def expected_messages(path: Path, partitions: int) -> tuple[int, int]:
    """Lines of the file, and the messages they make: each clock tick goes to every partition."""
    lines = ticks = 0
    tick_marker = f'"topic": "{CLOCK_TICKS}"'
    with path.open(encoding="utf-8") as lines_of_file:
        for line in lines_of_file:
            if line.strip():
                lines += 1
                ticks += tick_marker in line
    return lines, lines + ticks * (partitions - 1)


def replayed_alerts(path: Path, workdir: Path) -> list[dict[str, Any]]:
    output = workdir / "replay-alerts.jsonl"
    with output.open("wb") as out:
        run_quietly(["replay", str(path), "--quiet"], stdout=out)
    with output.open(encoding="utf-8") as alerts:
        return [json.loads(line) for line in alerts if line.strip()]


def read_alerts(settings: Settings, timeout: float = 300.0) -> list[dict[str, Any]]:
    """Every committed alert on the alert topics of the settings' prefix, read to the end."""
    codec = AvroCodec()
    pattern = re.compile("^" + re.escape(settings.topic_prefix) + r"la\..+")
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_list, isolation_level="read_committed", enable_auto_commit=False,
    )
    found: list[dict[str, Any]] = []
    try:
        topics = sorted(name for name in consumer.topics() if pattern.match(name))
        partitions = [
            TopicPartition(topic, partition)
            for topic in topics
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = {tp: end for tp, end in consumer.end_offsets(partitions).items() if end > 0}
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the alert topics could not be read to their end within {timeout:.0f} s")
            for messages in consumer.poll(timeout_ms=500).values():
                found.extend(alert_to_json(codec.decode(message.value, Alert)) for message in messages)
    finally:
        consumer.close()
    return found


def compare(expected: list[dict[str, Any]], read: list[dict[str, Any]]) -> Comparison:
    wanted = {alert["alert_id"]: alert for alert in expected}
    seen = Counter(alert["alert_id"] for alert in read)
    different = {
        alert["alert_id"] for alert in read
        if alert["alert_id"] in wanted
        and json.dumps(alert, sort_keys=True) != json.dumps(wanted[alert["alert_id"]], sort_keys=True)
    }
    return Comparison(
        expected=len(expected),
        read=len(read),
        missing=len(set(wanted) - set(seen)),
        extra=len(set(seen) - set(wanted)),
        duplicated=sum(count - 1 for count in seen.values() if count > 1),
        different=len(different),
    )


def exit_reason(worker: ChildProcess) -> str:
    """Faust's "Crashed reason=..." if the log has one (the lines after it are the shutdown), else its last line."""
    text = worker.log_tail(200_000)
    crashes = re.findall(r"Crashed reason=(.*)", text)
    if crashes:
        return crashes[-1].strip()[:200]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else "(empty log)"


def exits_summary(exits: list[str], shown: int = 3) -> str:
    more = f"; and {len(exits) - shown} more" if len(exits) > shown else ""
    return "; ".join(exits[:shown]) + more


class Soak:
    """One run: the broker, the worker (as many lives as it takes), the publisher, and the schedule."""

    def __init__(self, args: argparse.Namespace, workdir: Path, cluster: LocalCluster, processes: ProcessGroup,
                 settings: Settings) -> None:
        self.args = args
        self.workdir = workdir
        self.cluster = cluster
        self.processes = processes
        self.settings = settings
        self.random = random.Random(args.seed)
        self.events = Events()
        self.worker: ChildProcess | None = None
        self.lives = 0

    def start_worker(self) -> None:
        self.lives += 1
        self.worker = ChildProcess(f"worker-{self.lives}", "cli.main", self.settings,
                                   self.workdir / f"worker-{self.lives}.log", {})
        self.processes.start(self.worker, "worker")

    def kill_worker(self) -> None:
        assert self.worker is not None  # noqa: S101 - started before the schedule runs
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait(timeout=30)
        self.events.kills += 1

    def progress_counts(self) -> tuple[int, int] | None:
        """Messages on the input topics, and how many the worker's group has committed; None if unreadable."""
        partitions = input_partitions(self.settings)
        applied = None
        try:
            ends = end_offsets(self.settings, partitions)
            applied = AppliedOffsets(connection_of(self.settings), self.settings.app_id)
            committed = applied.committed(partitions)
        except KafkaError:
            return None
        finally:
            if applied is not None:
                with contextlib.suppress(KafkaError):
                    applied.close()
        return sum(ends.values()), sum(min(committed.get(tp, 0), end) for tp, end in ends.items())

    def broker_schedule(self) -> list[tuple[float, str]]:
        if self.args.nodes == 1:
            return [(self.random.uniform(0.3, 0.7), "restart")]
        node = self.random.randint(1, 3)
        return [(self.random.uniform(0.25, 0.45), f"stop {node}"), (self.random.uniform(0.6, 0.8), f"start {node}")]

    def broker_event(self, what: str) -> None:
        started = time.monotonic()
        if what == "restart":
            progress("restarting the broker (stop, then start on the same data dir)...")
            self.cluster.stop()
            self.cluster.start(timeout=180)
        else:
            verb, node = what.split()
            progress(f"{'stopping' if verb == 'stop' else 'starting'} Kafka node {node}...")
            if verb == "stop":
                self.cluster.stop_node(int(node))
            else:
                self.cluster.start_node(int(node), timeout=180)
        self.events.broker.append(f"{what} ({time.monotonic() - started:.0f} s)")
        progress(f"  broker {what}: done in {time.monotonic() - started:.0f} s")

    def publish(self, path: Path, messages: int) -> int:
        """Runs the ordered publish to the end through the schedule of kills and broker events; its exit code."""
        kill_points = sorted(self.random.uniform(0.05, 0.95) for _ in range(self.args.kills))
        schedule = sorted([(point, "kill") for point in kill_points] + self.broker_schedule())
        progress("schedule (fractions of the messages sent): "
                 + ", ".join(f"{what} at {point:.2f}" for point, what in schedule))
        publisher = ChildProcess("publish", "cli.main", self.settings, self.workdir / "publish.log", {})
        self.processes.start(publisher, "publish", str(path), "--ordered", "--wait-timeout",
                             str(PUBLISH_WAIT_SECONDS), "--quiet")
        last_report = time.monotonic()
        sent = applied = 0
        while publisher.alive() or schedule:
            counts = self.progress_counts()
            if counts is not None:
                sent, applied = counts
            if schedule and (sent >= schedule[0][0] * messages or not publisher.alive()):
                _point, what = schedule.pop(0)
                if what == "kill":
                    time.sleep(self.random.uniform(0.0, 2.0))
                    self.kill_worker()
                    progress(f"killed the worker (SIGKILL) at {sent:,} of {messages:,} messages sent; kills done "
                             f"{self.events.kills} of {self.args.kills}")
                    time.sleep(self.random.uniform(0.0, 3.0))
                    self.start_worker()
                else:
                    self.broker_event(what)
            self.check_worker()
            now = time.monotonic()
            if now - last_report >= PROGRESS_SECONDS:
                progress(f"sent {sent:,} of {messages:,} messages, worker committed {applied:,}; kills done "
                         f"{self.events.kills} of {self.args.kills}; broker events {len(self.events.broker)}")
                last_report = now
            time.sleep(POLL_SECONDS)
        code = publisher.wait(timeout=30)
        if code != 0:
            progress(f"WARNING: publish exited with {code}; the end of its log:\n{publisher.log_tail(1500)}")
        return code

    def check_worker(self) -> None:
        """A worker that exited by itself is noted, with the end of its log, and started again."""
        assert self.worker is not None  # noqa: S101 - started before the schedule runs
        if self.worker.alive():
            return
        code = self.worker.process.returncode if self.worker.process else None
        self.events.unexpected_exits.append(f"{self.worker.name} exited with {code}: {exit_reason(self.worker)}")
        progress(f"WARNING: {self.worker.name} exited by itself with {code}; the end of its log:\n"
                 f"{self.worker.log_tail(1500)}")
        if len(self.events.unexpected_exits) >= MAX_UNEXPECTED_EXITS:
            raise CrashLoop(f"the worker exited by itself {len(self.events.unexpected_exits)} times; the last log "
                            f"is {self.worker.log_path}")
        self.start_worker()

    def catch_up(self, messages: int) -> bool:
        progress("waiting for the worker to commit every input message...")
        deadline = time.monotonic() + CATCH_UP_SECONDS
        last_report = time.monotonic()
        while time.monotonic() < deadline:
            self.check_worker()
            counts = self.progress_counts()
            if counts is not None and counts[0] >= messages and counts[1] >= counts[0]:
                progress(f"  caught up: {counts[1]:,} messages committed, lag 0")
                return True
            if counts is not None and time.monotonic() - last_report >= PROGRESS_SECONDS:
                progress(f"  {counts[1]:,} of {counts[0]:,} committed")
                last_report = time.monotonic()
            time.sleep(POLL_SECONDS)
        return False


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    from localbroker.nodes import find_free_base_port

    args = build_parser().parse_args(argv)
    for day in (args.start, args.end):
        try:
            date.fromisoformat(day)
        except ValueError:
            raise SystemExit(f"bench.soak: {day!r} is not a date YYYY-MM-DD") from None
    if args.pupils < 1 or args.kills < 0 or args.partitions < 1:
        raise SystemExit("bench.soak: --pupils and --partitions must be at least 1, --kills at least 0")
    for name in [name for name in os.environ if name.startswith("ROLLWATCH_")]:
        del os.environ[name]
    workdir = Path(tempfile.mkdtemp(prefix="rollwatch-soak-"))
    keep = args.keep
    processes = ProcessGroup()
    cluster: LocalCluster | None = None
    previous = {signum: signal.signal(signum, _interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    wall_started = time.monotonic()
    progress(f"soak: {args.pupils:,} pupils {args.start}..{args.end}, {args.kills} kills, {args.nodes} node(s), "
             f"{args.store} store, seed {args.seed}; working in {workdir}")
    try:
        path = workdir / "year.jsonl"
        progress("generating the year with `rollwatch generate`...")
        run_quietly(["generate", "--pupils", str(args.pupils), "--seed", str(args.seed), "--from", args.start,
                     "--to", args.end, "--output", str(path), "--quiet"])
        lines, messages = expected_messages(path, args.partitions)
        progress(f"  {lines:,} records ({messages:,} messages, a tick going to every partition)")
        progress("replaying it in-process with `rollwatch replay` for the expected alerts...")
        expected = replayed_alerts(path, workdir)
        progress(f"  {len(expected):,} alerts expected")

        cluster = LocalCluster(workdir / "kafka", nodes=args.nodes, base_port=find_free_base_port(args.nodes),
                               cache_dir=Settings().broker_cache_dir, progress=progress)
        bootstrap = cluster.start(timeout=180)
        run = uuid.uuid4().hex[:8]
        settings = Settings(
            bootstrap_servers=bootstrap, topic_prefix=f"soak{run}.", app_id=f"soak-{run}",
            topic_partitions=args.partitions, topic_replication_factor=3 if args.nodes == 3 else 1,
            store=f"{args.store}://", processing_guarantee="exactly_once", data_dir=workdir / "worker",
            web_port=free_port(), **GROUP_TIMEOUTS,  # type: ignore[arg-type]
        )
        ensure_worker_topics(settings)
        soak = Soak(args, workdir, cluster, processes, settings)
        soak.start_worker()
        progress(f"worker started; publishing {lines:,} records with `rollwatch publish --ordered`...")
        crash_loop = ""
        try:
            publish_code = soak.publish(path, messages)
            caught_up = soak.catch_up(messages)
        except CrashLoop as error:
            crash_loop, publish_code, caught_up = str(error), -1, False
            progress(f"giving up: {crash_loop}")
        progress("reading every alert (read_committed)...")
        read = read_alerts(settings)
        result = compare(expected, read)
        wall = time.monotonic() - wall_started
        events = soak.events
        figures = [
            Figure("records published", f"{lines:,}", f"{messages:,} messages; {args.pupils:,} pupils, "
                   f"{args.start}..{args.end}, seed {args.seed}"),
            Figure("publish exit code", str(publish_code)),
            Figure("worker SIGKILLs", f"{events.kills} of {args.kills}"),
            Figure("worker exits of its own", str(len(events.unexpected_exits)),
                   exits_summary(events.unexpected_exits)),
            Figure("broker restarts" if args.nodes == 1 else "node stops/starts", str(len(events.broker)),
                   "; ".join(events.broker)),
            Figure("caught up (lag 0)", "yes" if caught_up else "NO", crash_loop),
            Figure("alerts expected (replay)", f"{result.expected:,}"),
            Figure("alerts read (read_committed)", f"{result.read:,}"),
            Figure("missing / extra / duplicated", f"{result.missing} / {result.extra} / {result.duplicated}"),
            Figure("same id, different content", str(result.different)),
            Figure("wall time", f"{wall / 60:,.1f} min"),
        ]
        print()
        print(f"Rollwatch soak ({args.nodes} node(s), replication {settings.topic_replication_factor}, "
              f"{args.partitions} partitions, {args.store} store, exactly_once; {os.cpu_count()} cores)")
        print(render_table(figures))
        ok = result.clean and caught_up and publish_code == 0
        print("\nOK: every alert exactly once." if ok else "\nFAILED: see the figures above.")
        if not ok:
            keep = True
        return 0 if ok else 1
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
            progress(f"kept {workdir} (logs of the worker's lives, the publisher and the broker are there)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
