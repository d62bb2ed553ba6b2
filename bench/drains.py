"""What the pipeline benchmark measures with: workers and bare agents drained, alert latency probed."""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from kafka.structs import TopicPartition

from bench.datasets import (
    BENCH_LA,
    children_added,
    publish_all,
    removal_without_destination,
)
from bench.kafkaprobe import AlertListener, GroupProbe, committed_records, create_topic, end_offsets, input_partitions
from bench.processes import ChildProcess, ProcessGroup, cpu_seconds, free_port, machine_busy_seconds, running
from config.settings import Settings
from processors.records import ATTENDANCE_REGISTERS, ROLL_EVENTS, Recipient, alert_topic

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


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


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
    #: The interpreter of the `peer` phase's Quix Streams app (None: .venv-peer, made on first use).
    peer_python: str | None = None
    #: Marks in the attendance phase's generated file (at least).
    marks: int = 2_000_000


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
              extra_env: dict[str, str] | None = None, *, partitions: list[TopicPartition] | None = None,
              python: str = sys.executable, also_done: Callable[[], bool] | None = None) -> Drain:
        """Runs `members` of `module` in one group until it has committed every record of `partitions` (all
        input topics by default) that was there when it started, and `also_done` holds (the worker's own
        topics drained too)."""
        targets = end_offsets(settings, input_partitions(settings) if partitions is None else partitions)
        name = settings.app_id
        environment = {**dict(self.options.faust_environment), **(extra_env or {})}
        children = [
            ChildProcess(f"{name}[{m}]", module, self.for_member(settings, m), self.workdir / f"{name}-{m}.log",
                         environment, python=python)
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
                # A broker stopped from outside would leave the probe reading nothing until the long timeout.
                if self.broker_pid is not None and not running(self.broker_pid):
                    raise RuntimeError(f"the broker (pid {self.broker_pid}) exited while {name} drained its input")
                if (
                    steady_start is None and members > 1 and settled_at_done is None
                    and probe.stable_members() >= members
                ):
                    settled_at_done = done
                started = done > 0 if members == 1 else settled_at_done is not None and done > settled_at_done
                if steady_start is None and (started or done >= probe.total):
                    steady_start = (now, done, self.cpu_snapshot(children))
                if done >= probe.total and (also_done is None or also_done()):
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

    def drain_attendance(self, topic_prefix: str) -> Drain:
        """One worker drains pre-published registers: done once its mark batches are applied too."""
        from bench.attendance import batches_drained

        settings = self.settings(self.next_name("attendance"), topic_prefix)
        progress(f"draining registers with 1 worker, group {settings.app_id}...")
        done = batches_drained(settings, settings.app_id)
        return self.drain(settings, 1, "cli.main", ["worker"], also_done=done)

    def drain_peer_registers(self, topic_prefix: str, python: str) -> Drain:
        """The Quix Streams peer drains the same registers: per mark, its pupil's entry read and written in
        RocksDB; one output per register, exactly once."""
        return self.drain_peer(topic_prefix, python, ATTENDANCE_REGISTERS, "registers", "AttendanceRegister")

    def drain_peer(
        self, topic_prefix: str, python: str, topic: str = ROLL_EVENTS, kind: str = "roll-events",
        schema: str = "RollEvent",
    ) -> Drain:
        """The Quix Streams peer (bench/peer.py) drains what the worker drained, on the same broker (the roll
        events by default): decode, per-UPN state in RocksDB, one output record each, exactly once, at the
        worker's commit interval."""
        settings = self.settings(self.next_name(f"peer-{kind}"), topic_prefix)
        input_topic = settings.topic(topic)
        output_topic = f"{topic_prefix}bench.peer-output.{settings.app_id}"
        create_topic(settings, output_topic)
        progress(f"draining {input_topic} with the Quix Streams peer, group {settings.app_id}...")
        arguments = [
            "--bootstrap", self.bootstrap, "--input-topic", input_topic, "--output-topic", output_topic,
            "--kind", kind, "--schema", schema, "--group", settings.app_id,
            "--state-dir", str(settings.data_dir / "quix-state"),
            "--commit-interval", f"{self.options.commit_interval:g}",
        ]
        partitions = [TopicPartition(input_topic, p) for p in range(settings.topic_partitions)]
        drained = self.drain(settings, 1, "bench.peer", arguments, partitions=partitions, python=python)
        progress(f"  {drained.rate:,.0f} records/s steady, {drained.cpu_per_record * 1e6:,.0f} us CPU a record "
                 f"({drained.startup_seconds:.1f} s start-up); reading its output back...")
        # One output per input, committed: else the peer's figure would be for less work than it claims.
        outputs = committed_records(settings, output_topic)
        if outputs != drained.records:
            raise RuntimeError(f"the peer committed {outputs:,} output records for {drained.records:,} inputs")
        progress(f"  {outputs:,} output records, one per input")
        return drained

    # ----- latency

    def latency(self, *, broker_warm: bool) -> LatencyResult:
        from cli.commands.publish import connection_of
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
            with InputPublisher(connection_of(settings)) as publisher:
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

    def attendance_memory(self) -> tuple[Drain, int]:
        """One worker on the RocksDB store takes in a register mark for each of `children` distinct pupils (a
        school day of 1,000-pupil registers); its peak RSS, and the attendance states read back afterwards."""
        from bench.datasets import attendance_registers
        from streams.topics import ensure_worker_topics

        settings = self.settings("attendance-rocksdb", "bench.attendance-rocksdb.", store="rocksdb://")
        ensure_worker_topics(settings)
        count = self.options.children
        progress(f"attendance memory: publishing registers marking {count:,} distinct pupils...")
        published = publish_all(settings, attendance_registers(count), progress)
        progress(f"  {published.records:,} registers in {published.seconds:.1f} s")
        from bench.attendance import batches_drained

        done = batches_drained(settings, settings.app_id)
        drained = self.drain(settings, 1, "cli.main", ["worker"], also_done=done)
        progress("  checking the RocksDB state...")
        return drained, count_rocksdb_children(settings.data_dir, "attendance")

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


def count_rocksdb_children(data_dir: Path, table: str = "children") -> int:
    """Keys in every partition of one of the worker's tables (`children` by default), read back from RocksDB
    after it stopped."""
    from rocksdict import AccessType, Options, Rdict

    total = 0
    for path in sorted(data_dir.rglob(f"{table}-*.db")):
        database = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            total += sum(1 for _ in database.keys())  # noqa: SIM118 - an Rdict iterates keys only so
        finally:
            database.close()
    return total
