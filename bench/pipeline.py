"""`python -m bench.pipeline`: one run of the pipeline benchmark on a local broker of its own, with a table of
figures against the targets of issue 4.

Phases (all on a fresh single-node broker in a temporary directory, stopped at the end):
  throughput  a generated replay file, pre-published as Avro, drained by one worker and by a bare Faust agent
  scale       the same file drained by two workers sharing the partitions
  latency     a paced producer of roll events that each raise an immediate alert; event-to-alert percentiles
  memory      one worker on the RocksDB store taking in a new child per record, its peak RSS, its state checked
  replay      `rollwatch replay --jobs 1` and `--jobs 2` on the generated file
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from bench.datasets import (
    BENCH_LA,
    children_added,
    generate_replay_file,
    publish_all,
    records_of_file,
    removal_without_destination,
)
from bench.kafkaprobe import AlertListener, GroupProbe, create_topic, end_offsets, input_partitions
from bench.processes import ChildProcess, ProcessGroup, cpu_seconds, free_port, machine_busy_seconds
from bench.report import (
    Figure,
    Measured,
    Target,
    at_least,
    at_most,
    megabytes,
    milliseconds,
    rate_text,
    render_table,
)
from config.settings import Settings
from processors.records import ROLL_EVENTS, Recipient, alert_topic

PHASES = ("throughput", "scale", "latency", "memory", "replay")
DEFAULT_RECORDS = 1_000_000
QUICK_RECORDS = 50_000
DEFAULT_CHILDREN = 1_000_000
QUICK_CHILDREN = 50_000
DEFAULT_LATENCY_SECONDS = 30.0
QUICK_LATENCY_SECONDS = 10.0
#: Index of the first crafted child of the latency phase's measured events (warm-up children come before).
MEASURED_FIRST_INDEX = 100_000_000
#: Longest warm-up at the latency phase's rate, waiting for the worker to keep up with it, seconds.
WARM_UP_LIMIT_SECONDS = 60.0
#: Shortest warm-up at that rate: long enough for a backlog to show if the worker cannot keep up, seconds.
WARM_UP_MIN_SECONDS = 5.0
#: Shortest warm-up when no earlier phase has loaded the broker: a freshly started broker's JVM compiles
#: its hot paths over its first half-minute or so of load, and until then a commit takes about twice as long.
COLD_BROKER_WARM_UP_SECONDS = 30.0
#: The worker keeps up once, at every check for this long, the newest alert was produced within
#: CAUGHT_UP_SECONDS of its event: one quick alert can come from a worker about to fall behind again.
KEEPS_UP_FOR_SECONDS = 5.0
CAUGHT_UP_SECONDS = 0.5
#: How often progress is polled from the broker while a group drains its input, seconds.
POLL_SECONDS = 0.25
#: Progress lines while a group drains its input come at most this often, seconds.
PROGRESS_SECONDS = 10.0

#: The summary line `rollwatch replay` ends with on stderr: "... in 9.99 s (123,456 records/s, 2 process(es))".
REPLAY_SUMMARY = re.compile(r"\(([\d,]+) records/s, \d+ process")

TARGET_PIPELINE_RATIO = 0.8
TARGET_SCALE_RATIO = 1.7
TARGET_P99_SECONDS = 0.250
TARGET_RSS_BYTES = 500 * 1024 * 1024


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pipeline",
        description=(
            "Benchmarks the Rollwatch pipeline on a local Kafka of its own (free ports, temporary directory): "
            "worker vs bare Faust agent throughput, two workers vs one, event-to-alert latency at a steady "
            "rate, peak RSS (memory store, and RocksDB with many children in state), and the in-process "
            "replay. Prints a table of figures against the targets. Never touches a running broker."
        ),
    )
    parser.add_argument(
        "--records", type=int, default=None,
        help=f"input records in the generated data set ({DEFAULT_RECORDS:,}; {QUICK_RECORDS:,} with --quick)",
    )
    parser.add_argument(
        "--children", type=int, default=None,
        help=f"children put in RocksDB state in the memory phase ({DEFAULT_CHILDREN:,}; "
        f"{QUICK_CHILDREN:,} with --quick)",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: small data, short latency phase")
    parser.add_argument(
        "--latency-seconds", type=float, default=None,
        help=f"length of the paced latency phase ({DEFAULT_LATENCY_SECONDS:.0f}; "
        f"{QUICK_LATENCY_SECONDS:.0f} with --quick)",
    )
    parser.add_argument("--rate", type=int, default=1000, help="events per second in the latency phase (1000)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of every topic (4; at least 2)")
    parser.add_argument(
        "--commit-interval", type=float, default=None,
        help="worker commit (transaction) interval in seconds (the Settings default, "
        f"{Settings.model_fields['broker_commit_interval'].default})",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of each throughput measurement (1)")
    parser.add_argument(
        "--phases", default=",".join(PHASES),
        help=f"comma-separated phases to run (default all: {','.join(PHASES)})",
    )
    parser.add_argument(
        "--faust-setting", action="append", default=[], metavar="NAME=VALUE",
        help="a Faust setting by its environment name (e.g. PRODUCER_LINGER=0.005) for every worker and the bare "
        "agent alike, to try a tuning before changing streams/app.py; repeatable",
    )
    parser.add_argument("--seed", type=int, default=0, help="generator seed (0)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, data) afterwards")
    return parser


@dataclass(frozen=True)
class Options:
    records: int
    children: int
    latency_seconds: float
    rate: int
    partitions: int
    commit_interval: float
    repeat: int
    phases: tuple[str, ...]
    seed: int
    keep: bool
    faust_environment: tuple[tuple[str, str], ...] = ()


def options_from(args: argparse.Namespace) -> Options:
    phases = tuple(name.strip() for name in args.phases.split(",") if name.strip())
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        raise SystemExit(f"bench.pipeline: unknown phase(s) {', '.join(unknown)}; choose from {', '.join(PHASES)}")
    if args.partitions < 2:
        raise SystemExit("bench.pipeline: --partitions must be at least 2, so two workers can share them")
    if args.repeat < 1 or args.rate < 1:
        raise SystemExit("bench.pipeline: --repeat and --rate must be at least 1")
    default_interval: float = Settings.model_fields["broker_commit_interval"].default
    faust_environment = []
    for setting in args.faust_setting:
        name, equals, value = setting.partition("=")
        if not equals or not re.fullmatch(r"[A-Z][A-Z0-9_]*", name) or name.startswith("ROLLWATCH_"):
            raise SystemExit(f"bench.pipeline: --faust-setting {setting!r} is not NAME=VALUE with a Faust setting name")
        faust_environment.append((name, value))
    return Options(
        records=args.records or (QUICK_RECORDS if args.quick else DEFAULT_RECORDS),
        children=args.children or (QUICK_CHILDREN if args.quick else DEFAULT_CHILDREN),
        latency_seconds=args.latency_seconds or (QUICK_LATENCY_SECONDS if args.quick else DEFAULT_LATENCY_SECONDS),
        rate=args.rate,
        partitions=args.partitions,
        commit_interval=args.commit_interval if args.commit_interval is not None else default_interval,
        repeat=args.repeat,
        phases=phases,
        seed=args.seed,
        keep=args.keep,
        faust_environment=tuple(faust_environment),
    )


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds: the measured group's processes, the broker, and the whole machine (others' work too)."""

    group: float
    broker: float
    machine: float


@dataclass(frozen=True)
class Drain:
    """One group draining pre-published input: the steady rate excludes start-up (joining the group, the
    first assignment, the first commit; with several members, up to the first commit after the group has
    settled with all of them and each has restored its tables), which is reported apart."""

    records: int
    steady_records: int
    steady_seconds: float
    startup_seconds: float
    total_seconds: float
    peak_rss: tuple[int | None, ...]
    #: CPU used over the steady window (the group's: all members together).
    steady_cpu: CpuUse

    @property
    def members(self) -> int:
        return len(self.peak_rss)

    @property
    def rate(self) -> float:
        return self.steady_records / self.steady_seconds if self.steady_seconds > 0 else math.nan

    @property
    def cpu_per_record(self) -> float:
        """CPU seconds per record: unlike the rate, barely moved by others sharing the machine's cores."""
        return self.steady_cpu.group / self.steady_records if self.steady_records > 0 else math.nan

    def cores(self, seconds: float) -> float:
        return seconds / self.steady_seconds if self.steady_seconds > 0 else math.nan


@dataclass
class LatencyResult:
    sent: int
    seconds: float
    produced: list[float] = field(default_factory=list)
    visible: list[float] = field(default_factory=list)
    #: From recorded_at to the event itself being read back from the input topic: the bench's own share.
    input_visible: list[float] = field(default_factory=list)
    worker_rss: int | None = None
    #: Whether the worker kept up with the rate before measuring began (else its backlog is in the figures).
    caught_up: bool = True
    warm_up_seconds: float = 0.0
    #: The worker's CPU use while events were sent, in cores: near 1.0 means it was saturated.
    worker_cpu: float = math.nan

    @property
    def missing(self) -> int:
        return self.sent - len(self.produced)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(math.ceil(fraction * len(ordered)), 1)
    return ordered[rank - 1]


class BenchRun:
    """One benchmark run against one broker; every child process goes through `processes`."""

    def __init__(
        self, options: Options, workdir: Path, bootstrap: str, processes: ProcessGroup, broker_pid: int | None
    ) -> None:
        self.options = options
        self.broker_pid = broker_pid
        self.workdir = workdir
        self.bootstrap = bootstrap
        self.processes = processes
        self.runs = 0

    def settings(self, name: str, topic_prefix: str, **overrides: object) -> Settings:
        """Default settings, except the broker, the names, the directories and the commit interval."""
        base = self.workdir / name
        base.mkdir(parents=True, exist_ok=True)
        values: dict[str, object] = {
            "bootstrap_servers": self.bootstrap,
            "topic_prefix": topic_prefix,
            "app_id": f"bench-{name}",
            "topic_partitions": self.options.partitions,
            "broker_commit_interval": self.options.commit_interval,
            "data_dir": base / "worker",
            "web_port": free_port(),
            "broker_data_dir": self.workdir / "kafka",
            "database_url": f"sqlite:///{base / 'register.db'}",
            **overrides,
        }
        return Settings(**values)  # type: ignore[arg-type]

    def cpu_snapshot(self, children: Sequence[ChildProcess]) -> CpuUse:
        broker = cpu_seconds(self.broker_pid) if self.broker_pid is not None else None
        return CpuUse(group_cpu_seconds(children), broker or 0.0, machine_busy_seconds())

    def for_member(self, settings: Settings, member: int) -> Settings:
        """A second worker of the same group needs its own data directory and web port."""
        data_dir = settings.data_dir / str(member)
        data_dir.mkdir(parents=True, exist_ok=True)
        return settings.model_copy(update={"data_dir": data_dir, "web_port": free_port()})

    def next_name(self, kind: str) -> str:
        self.runs += 1
        return f"{kind}-{self.runs}"

    # ----- draining pre-published input

    def drain(self, settings: Settings, members: int, module: str, arguments: Sequence[str],
              extra_env: dict[str, str] | None = None) -> Drain:
        targets = end_offsets(settings, input_partitions(settings))
        name = settings.app_id
        environment = {**dict(self.options.faust_environment), **(extra_env or {})}
        children = [
            ChildProcess(f"{name}[{m}]", module, self.for_member(settings, m), self.workdir / f"{name}-{m}.log",
                         environment)
            for m in range(members)
        ]
        probe = GroupProbe(settings, settings.app_id, targets)
        spawned = time.monotonic()
        try:
            for child in children:
                self.processes.start(child, *arguments)
            steady_start: tuple[float, int, CpuUse] | None = None
            # With several members, what was committed when the group first settled with all of them: each
            # member then restores its tables from the changelogs before it commits again.
            settled_at_done: int | None = None
            last_report = spawned
            timeout = 300 + probe.total / 200
            while True:
                now = time.monotonic()
                done = probe.committed()
                for child in children:
                    child.check_alive()
                    child.sample_peak_rss()
                if (
                    steady_start is None and members > 1 and settled_at_done is None
                    and probe.stable_members() >= members
                ):
                    settled_at_done = done
                started = done > 0 if members == 1 else settled_at_done is not None and done > settled_at_done
                if steady_start is None and (started or done >= probe.total):
                    steady_start = (now, done, self.cpu_snapshot(children))
                if done >= probe.total:
                    break
                if now - last_report >= PROGRESS_SECONDS:
                    progress(f"  {name}: {done:,} of {probe.total:,} records committed")
                    last_report = now
                if now - spawned > timeout:
                    raise RuntimeError(f"{name} did not drain its input within {timeout:.0f} s")
                time.sleep(POLL_SECONDS)
            finished = time.monotonic()
            finished_cpu = self.cpu_snapshot(children)
        finally:
            self.processes.stop(children)
            probe.close()
        assert steady_start is not None  # noqa: S101 - set at the latest on the poll that saw everything done
        start_time, start_done, start_cpu = steady_start
        used = CpuUse(
            finished_cpu.group - start_cpu.group,
            finished_cpu.broker - start_cpu.broker,
            finished_cpu.machine - start_cpu.machine,
        )
        return Drain(
            records=probe.total,
            steady_records=probe.total - start_done,
            steady_seconds=finished - start_time,
            startup_seconds=start_time - spawned,
            total_seconds=finished - spawned,
            peak_rss=tuple(child.peak_rss for child in children),
            steady_cpu=used,
        )

    def drain_workers(self, topic_prefix: str, members: int, **overrides: object) -> Drain:
        settings = self.settings(self.next_name(f"worker{members}"), topic_prefix, **overrides)
        progress(f"draining with {members} worker(s), group {settings.app_id}...")
        drained = self.drain(settings, members, "cli.main", ["worker"])
        progress(f"  {drained.rate:,.0f} records/s steady, {drained.cpu_per_record * 1e6:,.0f} us CPU a record "
                 f"({drained.startup_seconds:.1f} s start-up)")
        return drained

    def drain_bare_agent(self, topic_prefix: str) -> Drain:
        from bench.bare_agent import FORWARD_TOPIC_VARIABLE

        settings = self.settings(self.next_name("bare"), topic_prefix)
        forward_topic = f"{topic_prefix}bench.forwarded.{settings.app_id}"
        create_topic(settings, forward_topic)
        progress(f"draining with the bare Faust agent, group {settings.app_id}...")
        drained = self.drain(settings, 1, "bench.bare_agent", [], {FORWARD_TOPIC_VARIABLE: forward_topic})
        progress(f"  {drained.rate:,.0f} records/s steady, {drained.cpu_per_record * 1e6:,.0f} us CPU a record "
                 f"({drained.startup_seconds:.1f} s start-up)")
        return drained

    # ----- latency

    def latency(self, *, broker_warm: bool) -> LatencyResult:
        from rollwatch_client.publisher import InputPublisher

        from streams.topics import ensure_worker_topics

        settings = self.settings("latency", "bench.latency.")
        ensure_worker_topics(settings)
        alerts_topic = settings.topic(alert_topic(BENCH_LA, Recipient.CME_OFFICER))
        create_topic(settings, alerts_topic)
        worker = ChildProcess(
            "latency worker", "cli.main", settings, self.workdir / "latency-worker.log",
            dict(self.options.faust_environment),
        )
        listener = AlertListener(settings, alerts_topic)
        # Reading the input too tells a slow bench producer apart from a slow worker.
        input_listener = AlertListener(settings, settings.topic(ROLL_EVENTS))
        interval = 1.0 / self.options.rate
        try:
            # The worker first: children are forked before the listener's thread exists.
            self.processes.start(worker, "worker")
            listener.start()
            input_listener.start()
            with InputPublisher(settings) as publisher:
                progress("latency: warming up until the worker's first alerts arrive...")
                warm_up = 0
                first_alert_deadline = time.monotonic() + 180
                while not listener.arrivals:
                    worker.check_alive()
                    if time.monotonic() > first_alert_deadline:
                        raise RuntimeError(f"no alert within 180 s; worker log:\n{worker.log_tail()}")
                    publisher.publish(removal_without_destination(warm_up, datetime.now(tz=UTC)))
                    warm_up += 1
                    time.sleep(0.05)
                warm_up_min = WARM_UP_MIN_SECONDS if broker_warm else COLD_BROKER_WARM_UP_SECONDS
                progress(f"latency: sending {self.options.rate:,} events/s for at least {warm_up_min:.0f} s, until "
                         f"the worker keeps up (at most {WARM_UP_LIMIT_SECONDS:.0f} s)...")
                warm_sent: dict[str, float] = {}
                warm_started = time.monotonic()
                caught_up = False
                keeping_up_since: float | None = None
                for index in self.paced(self.options.rate, WARM_UP_LIMIT_SECONDS):
                    recorded_at = datetime.now(tz=UTC)
                    event = removal_without_destination(warm_up + index, recorded_at)
                    publisher.publish(event)
                    warm_sent[event.upn] = recorded_at.timestamp()
                    if index % (self.options.rate // 2 or 1) != 0:
                        continue
                    worker.check_alive()
                    latest = listener.arrivals[-1]
                    origin = warm_sent.get(latest.upn)
                    now = time.monotonic()
                    if origin is None or latest.produced_at - origin >= CAUGHT_UP_SECONDS:
                        keeping_up_since = None
                    elif keeping_up_since is None:
                        keeping_up_since = now
                    if (
                        keeping_up_since is not None
                        and now - keeping_up_since >= KEEPS_UP_FOR_SECONDS
                        and now - warm_started >= warm_up_min
                    ):
                        caught_up = True
                        break
                warm_up_seconds = time.monotonic() - warm_started
                if not caught_up:
                    progress(f"  the worker is still behind after {warm_up_seconds:.0f} s; measuring anyway")
                progress(f"latency: sending {self.options.rate:,} events/s for {self.options.latency_seconds:.0f} s...")
                sent_at: dict[str, float] = {}
                started = time.monotonic()
                started_cpu = worker.cpu_seconds() or 0.0
                for index in self.paced(self.options.rate, self.options.latency_seconds):
                    recorded_at = datetime.now(tz=UTC)
                    event = removal_without_destination(MEASURED_FIRST_INDEX + index, recorded_at)
                    publisher.publish(event)
                    sent_at[event.upn] = recorded_at.timestamp()
                publisher.flush()
                seconds = time.monotonic() - started
                worker_cpu = ((worker.cpu_seconds() or 0.0) - started_cpu) / seconds
            wait_until = time.monotonic() + 30 + 2 * self.options.commit_interval
            while time.monotonic() < wait_until:
                arrived = sum(1 for arrival in list(listener.arrivals) if arrival.upn in sent_at)
                if arrived >= len(sent_at):
                    break
                time.sleep(interval * 100)
            worker.sample_peak_rss()
        finally:
            listener.stop()
            input_listener.stop()
            self.processes.stop([worker])
        result = LatencyResult(
            sent=len(sent_at), seconds=seconds, worker_rss=worker.peak_rss, caught_up=caught_up,
            warm_up_seconds=warm_up_seconds, worker_cpu=worker_cpu,
        )
        seen: set[str] = set()
        for arrival in listener.arrivals:
            origin = sent_at.get(arrival.upn)
            if origin is None or arrival.upn in seen:
                continue
            seen.add(arrival.upn)
            result.produced.append(arrival.produced_at - origin)
            result.visible.append(arrival.received_at - origin)
        seen.clear()
        for arrival in input_listener.arrivals:
            origin = sent_at.get(arrival.upn)
            if origin is None or arrival.upn in seen:
                continue
            seen.add(arrival.upn)
            result.input_visible.append(arrival.received_at - origin)
        return result

    @staticmethod
    def paced(rate: int, seconds: float) -> Iterator[int]:
        """Yields 0, 1, 2... each at its slot of a steady `rate` per second, for `seconds`."""
        count = int(rate * seconds)
        started = time.monotonic()
        for index in range(count):
            delay = started + index / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            yield index

    # ----- RocksDB memory

    def rocksdb_memory(self) -> tuple[Drain, int]:
        from streams.topics import ensure_worker_topics

        settings = self.settings("rocksdb", "bench.rocksdb.", store="rocksdb://")
        ensure_worker_topics(settings)
        count = self.options.children
        progress(f"memory: publishing {count:,} ADDEDs of distinct children...")
        published = publish_all(settings, children_added(count), progress)
        progress(f"  {published.records:,} records in {published.seconds:.1f} s")
        progress(f"memory: draining them with one worker on the RocksDB store, group {settings.app_id}...")
        drained = self.drain(settings, 1, "cli.main", ["worker"])
        progress(f"  {drained.rate:,.0f} records/s steady; checking the RocksDB state...")
        return drained, count_rocksdb_children(settings.data_dir)

    # ----- replay

    def replay(self, path: Path, jobs: int) -> float:
        """Records per second that `rollwatch replay` reports for the file (alerts discarded)."""
        settings = self.settings(f"replay{jobs}", "bench.replay.")
        log_path = self.workdir / f"replay-{jobs}.log"
        child = ChildProcess(f"replay --jobs {jobs}", "cli.main", settings, log_path, {}, keep_stdout=False)
        progress(f"replay: rollwatch replay --jobs {jobs}...")
        self.processes.start(child, "replay", str(path), "--jobs", str(jobs))
        code = child.wait(timeout=3600)
        match = REPLAY_SUMMARY.search(child.log_tail())
        if code != 0 or match is None:
            raise RuntimeError(f"rollwatch replay --jobs {jobs} failed ({code}):\n{child.log_tail()}")
        rate = float(match.group(1).replace(",", ""))
        progress(f"  {rate:,.0f} records/s")
        return rate


def group_cpu_seconds(children: Sequence[ChildProcess]) -> float:
    return sum(child.cpu_seconds() or 0.0 for child in children)


def count_rocksdb_children(data_dir: Path) -> int:
    """Keys in every partition of the worker's `children` table, read back from RocksDB after it stopped."""
    from rocksdict import AccessType, Options, Rdict

    total = 0
    for path in sorted(data_dir.rglob("children-*.db")):
        database = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            total += sum(1 for _ in database.keys())  # noqa: SIM118 - an Rdict iterates keys only so
        finally:
            database.close()
    return total


@dataclass
class Results:
    """What the phases measured, for the table."""

    records: int = 0
    messages: int = 0
    bare: list[Drain] = field(default_factory=list)
    one: list[Drain] = field(default_factory=list)
    two: list[Drain] = field(default_factory=list)
    latency: LatencyResult | None = None
    rocksdb: Drain | None = None
    rocksdb_children: int = 0
    replay: dict[int, float] = field(default_factory=dict)


def run_phases(run: BenchRun, options: Options) -> Results:
    from streams.topics import ensure_worker_topics

    results = Results()
    phases = set(options.phases)
    replay_file = run.workdir / "generated.jsonl"
    if phases & {"throughput", "scale", "replay"}:
        progress(f"generating {options.records:,} replay records (seed {options.seed})...")
        results.records = generate_replay_file(replay_file, options.records, options.seed)
        progress(f"  {results.records:,} lines in {replay_file}")
    if phases & {"throughput", "scale"}:
        prefix = "bench.pipeline."
        publishing = run.settings("publish", prefix)
        ensure_worker_topics(publishing)
        progress(f"publishing the file to {prefix}* ({options.partitions} partitions) as Avro...")
        published = publish_all(publishing, records_of_file(replay_file), progress)
        results.messages = published.messages
        progress(f"  {published.messages:,} messages in {published.seconds:.1f} s "
                 f"({published.records / published.seconds:,.0f} records/s)")
        for repetition in range(options.repeat):
            if options.repeat > 1:
                progress(f"throughput run {repetition + 1} of {options.repeat}")
            if "throughput" in phases:
                results.bare.append(run.drain_bare_agent(prefix))
            results.one.append(run.drain_workers(prefix, 1))
            if "scale" in phases:
                results.two.append(run.drain_workers(prefix, 2))
    if "latency" in phases:
        results.latency = run.latency(broker_warm=bool(phases & {"throughput", "scale"}))
    if "memory" in phases:
        results.rocksdb, results.rocksdb_children = run.rocksdb_memory()
    if "replay" in phases:
        for jobs in (1, 2):
            results.replay[jobs] = run.replay(replay_file, jobs)
    return results


def figures_of(results: Results, options: Options) -> list[Figure]:
    figures: list[Figure] = []
    one = Measured(tuple(d.rate for d in results.one)) if results.one else None
    one_cpu = min(d.cpu_per_record for d in results.one) if results.one else math.nan
    if one is not None:
        figures.append(Figure(
            f"pipeline, 1 worker ({results.messages:,} messages)", rate_text(one.best),
            drain_detail(results.one, one),
        ))
    if results.bare and one is not None:
        bare = Measured(tuple(d.rate for d in results.bare))
        figures.append(Figure("bare Faust agent, forward only", rate_text(bare.best), drain_detail(results.bare, bare)))
        ratio = one.best / bare.best
        figures.append(Figure(
            "pipeline / bare agent", f"{ratio:.2f}x", "records/s, best run of each",
            at_least(ratio, TARGET_PIPELINE_RATIO, f">= {TARGET_PIPELINE_RATIO}x"),
        ))
        cpu_ratio = min(d.cpu_per_record for d in results.bare) / one_cpu
        figures.append(Figure(
            "pipeline / bare agent, by CPU a record", f"{cpu_ratio:.2f}x",
            "bare agent's CPU per record over the worker's (least of each): the same ratio, little moved by "
            "others' load",
            at_least(cpu_ratio, TARGET_PIPELINE_RATIO, f">= {TARGET_PIPELINE_RATIO}x"),
        ))
    if results.two and one is not None:
        two = Measured(tuple(d.rate for d in results.two))
        figures.append(Figure("pipeline, 2 workers", rate_text(two.best), drain_detail(results.two, two)))
        ratio = two.best / one.best
        figures.append(Figure(
            "2 workers / 1 worker", f"{ratio:.2f}x", "records/s, best run of each",
            at_least(ratio, TARGET_SCALE_RATIO, f">= {TARGET_SCALE_RATIO}x"),
        ))
    if results.latency is not None:
        figures.extend(latency_figures(results.latency, options))
    for label, drains in (("1 worker", results.one), ("2 workers", results.two)):
        if drains:
            peaks = [peak for d in drains for peak in d.peak_rss if peak is not None]
            figures.append(Figure(
                f"peak RSS per worker, {label}, memory store", megabytes(max(peaks) if peaks else None),
                f"after {results.messages:,} messages; each worker: "
                + ", ".join(megabytes(peak) for peak in drains[-1].peak_rss),
            ))
    if results.rocksdb is not None:
        figures.append(Figure(
            f"peak RSS, RocksDB store, {options.children:,} children", megabytes(results.rocksdb.peak_rss[0]),
            f"worker drained them at {rate_text(results.rocksdb.rate)}",
            at_most(
                float(results.rocksdb.peak_rss[0] or math.nan), TARGET_RSS_BYTES,
                f"<= {TARGET_RSS_BYTES // (1024 * 1024)} MB",
            ),
        ))
        figures.append(Figure(
            "children in RocksDB state after stop", f"{results.rocksdb_children:,}",
            "keys of the children table read back from the RocksDB files",
            Target(f"= {options.children:,}", results.rocksdb_children == options.children,
                   f"{options.children - results.rocksdb_children:,} missing"),
        ))
    for jobs, rate in sorted(results.replay.items()):
        figures.append(Figure(
            f"rollwatch replay --jobs {jobs} ({results.records:,} lines)", rate_text(rate), "",
            at_least(rate, 100_000, ">= 100,000 records/s"),
        ))
    return figures


def drain_detail(drains: Sequence[Drain], rates: Measured) -> str:
    cpu = ", ".join(f"{d.cpu_per_record * 1e6:,.0f}" for d in drains)
    startups = ", ".join(f"{d.startup_seconds:.1f}" for d in drains)
    cores = ", ".join(
        f"{d.cores(d.steady_cpu.group):.2f} + broker {d.cores(d.steady_cpu.broker):.2f} "
        f"(whole machine {d.cores(d.steady_cpu.machine):.2f} of {os.cpu_count()})"
        for d in drains
    )
    parts = [
        rates.spread(" records/s"),
        f"CPU a record {cpu} us (all members)",
        f"cores busy {cores}",
        f"start-up to first commit (excluded) {startups} s"
        if all(d.members == 1 for d in drains)
        else f"start-up to the first commit after the group settled and restored its tables (excluded) {startups} s",
    ]
    return "; ".join(part for part in parts if part)


def latency_figures(latency: LatencyResult, options: Options) -> list[Figure]:
    achieved = latency.sent / latency.seconds if latency.seconds > 0 else math.nan
    warm_up = (
        f"after {latency.warm_up_seconds:.0f} s of warm-up at that rate"
        if latency.caught_up
        else f"the worker had NOT caught up after {latency.warm_up_seconds:.0f} s of warm-up at that rate"
    )
    detail = (
        f"{latency.sent:,} events at {achieved:,.0f}/s for {latency.seconds:.0f} s {warm_up}, "
        f"{latency.missing:,} without an alert; worker CPU {latency.worker_cpu:.0%} of a core meanwhile; "
        f"commit interval {options.commit_interval:g} s"
    )
    figures = []
    for label, values, note in (
        ("produced", latency.produced, "recorded_at to the alert record's Kafka timestamp"),
        ("visible", latency.visible, "recorded_at to receipt by a read_committed consumer (after commit)"),
        ("input only", latency.input_visible, "recorded_at to the event read back from roll.events: the bench "
         "producer's own share, not the worker's"),
    ):
        p50, p95, p99 = (percentile(values, f) for f in (0.50, 0.95, 0.99))
        figures.append(Figure(
            f"event-to-alert, {label}: p50/p95/p99" if label != "input only" else "event to input topic: p50/p95/p99",
            f"{milliseconds(p50)} / {milliseconds(p95)} / {milliseconds(p99)}",
            f"{note}; {detail}" if label == "produced" else note,
            at_most(p99, TARGET_P99_SECONDS, f"p99 <= {TARGET_P99_SECONDS * 1000:.0f} ms")
            if label != "input only"
            else None,
        ))
    figures.append(Figure("peak RSS, latency worker", megabytes(latency.worker_rss)))
    return figures


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    from localbroker.launcher import LocalCluster, find_free_base_port

    arguments = list(sys.argv[1:] if argv is None else argv)
    options = options_from(build_parser().parse_args(arguments))
    command = shlex.join(["python", "-m", "bench.pipeline", *arguments])
    cache_dir = Settings().broker_cache_dir
    # The figures are for the default settings: a developer's ROLLWATCH_* variables must not leak into them.
    ignored = sorted(name for name in os.environ if name.startswith("ROLLWATCH_"))
    for name in ignored:
        del os.environ[name]
    if ignored:
        progress(f"ignoring {', '.join(ignored)}: the bench measures the default settings")
    workdir = Path(tempfile.mkdtemp(prefix="rollwatch-bench-"))
    keep = options.keep
    processes = ProcessGroup()
    cluster: LocalCluster | None = None
    # SIGINT explicitly too: a shell starts background jobs with it ignored, and Python then never raises.
    previous_handlers = {signum: signal.signal(signum, _interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    progress(f"bench: {command}; working in {workdir}; {os.cpu_count()} cores, load average "
             + " ".join(f"{load:.2f}" for load in os.getloadavg()))
    try:
        cluster = LocalCluster(
            workdir / "kafka", nodes=1, base_port=find_free_base_port(1), cache_dir=cache_dir, progress=progress
        )
        bootstrap = cluster.start(timeout=120)
        started = time.monotonic()
        results = run_phases(BenchRun(options, workdir, bootstrap, processes, cluster.running_pid(1)), options)
        print()
        print(f"Rollwatch pipeline benchmark ({time.monotonic() - started:,.0f} s; {os.cpu_count()} cores shared "
              f"with the broker; {options.partitions} partitions; exactly_once; commit interval "
              f"{options.commit_interval:g} s)")
        if options.faust_environment:
            print("Faust settings given: " + ", ".join(f"{name}={value}" for name, value in options.faust_environment))
        print(render_table(figures_of(results, options)))
        print(f"command: {command}")
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
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
        if keep:
            progress(f"kept {workdir} (logs of every process are there)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
