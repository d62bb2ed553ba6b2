"""`python -m bench.pipeline`: one run of the pipeline benchmark on a local broker of its own, with a table of
figures against the targets of issue 4.

Phases (all on a fresh single-node broker in a temporary directory, stopped at the end):
  throughput  a generated replay file, pre-published as Avro, drained by one worker and by a bare Faust agent
  peer        the same file's roll events drained by a Quix Streams app doing comparable work (bench/peer.py)
  scale       the same file drained by two workers sharing the partitions
  latency     a paced producer of roll events that each raise an immediate alert; event-to-alert percentiles
  memory      one worker on the RocksDB store taking in a new child per record, its peak RSS, its state checked
  replay      `rollwatch replay --jobs 1` and `--jobs 2` on the generated file
  attendance  a generated school year of daily registers (2,000,000 marks or more), pre-published, drained by
              one worker; with `peer`, also by the Quix Streams app keeping a RocksDB entry per pupil
  attendance-memory  one worker on the RocksDB store taking in a mark for each of --children distinct pupils,
              its peak RSS, the attendance states read back
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from bench.attendance import DEFAULT_MARKS, QUICK_MARKS, AttendanceFile, generate_attendance_file
from bench.datasets import (
    generate_replay_file,
    publish_all,
    records_of_file,
)
from bench.drains import BenchRun, Drain, LatencyResult, Options, percentile, progress
from bench.processes import ProcessGroup, peer_python
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

PHASES = ("throughput", "peer", "scale", "latency", "memory", "replay", "attendance", "attendance-memory")
DEFAULT_RECORDS = 1_000_000
QUICK_RECORDS = 50_000
DEFAULT_CHILDREN = 1_000_000
QUICK_CHILDREN = 50_000
DEFAULT_LATENCY_SECONDS = 30.0
QUICK_LATENCY_SECONDS = 10.0


TARGET_PIPELINE_RATIO = 0.8
TARGET_SCALE_RATIO = 1.7
TARGET_P99_SECONDS = 0.250
TARGET_RSS_BYTES = 500 * 1024 * 1024




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
        "--marks", type=int, default=None,
        help=f"attendance marks in the attendance phase's file ({DEFAULT_MARKS:,}; {QUICK_MARKS:,} with --quick)",
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
    parser.add_argument(
        "--peer-python", default=None, metavar="PATH",
        help="interpreter with quixstreams for the peer phase (default .venv-peer/bin/python, made on first use "
        "with `pip install --group bench`)",
    )
    parser.add_argument("--seed", type=int, default=0, help="generator seed (0)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, data) afterwards")
    return parser




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
        peer_python=args.peer_python,
        marks=args.marks or (QUICK_MARKS if args.quick else DEFAULT_MARKS),
    )


@dataclass
class Results:
    """What the phases measured, for the table."""

    records: int = 0
    messages: int = 0
    bare: list[Drain] = field(default_factory=list)
    one: list[Drain] = field(default_factory=list)
    two: list[Drain] = field(default_factory=list)
    #: The Quix Streams peer's drains of the roll events alone (the worker's drain all input topics).
    peer: list[Drain] = field(default_factory=list)
    latency: LatencyResult | None = None
    rocksdb: Drain | None = None
    rocksdb_children: int = 0
    replay: dict[int, float] = field(default_factory=dict)
    attendance_file: AttendanceFile | None = None
    attendance: list[Drain] = field(default_factory=list)
    attendance_peer: list[Drain] = field(default_factory=list)
    attendance_rocksdb: Drain | None = None
    attendance_states: int = 0


def run_phases(run: BenchRun, options: Options, peer_python: str | None = None) -> Results:
    from streams.topics import ensure_worker_topics

    results = Results()
    phases = set(options.phases)
    replay_file = run.workdir / "generated.jsonl"
    if phases & {"throughput", "peer", "scale", "replay"}:
        progress(f"generating {options.records:,} replay records (seed {options.seed})...")
        results.records = generate_replay_file(replay_file, options.records, options.seed)
        progress(f"  {results.records:,} lines in {replay_file}")
    if phases & {"throughput", "peer", "scale"}:
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
            if "peer" in phases and peer_python is not None:
                results.peer.append(run.drain_peer(prefix, peer_python))
            if "scale" in phases:
                results.two.append(run.drain_workers(prefix, 2))
    if "latency" in phases:
        results.latency = run.latency(broker_warm=bool(phases & {"throughput", "scale"}))
    if "memory" in phases:
        results.rocksdb, results.rocksdb_children = run.rocksdb_memory()
    if "replay" in phases:
        for jobs in (1, 2):
            results.replay[jobs] = run.replay(replay_file, jobs)
    if "attendance" in phases:
        attendance_phase(run, options, results, peer_python if "peer" in phases else None)
    if "attendance-memory" in phases:
        results.attendance_rocksdb, results.attendance_states = run.attendance_memory()
    return results


def attendance_phase(run: BenchRun, options: Options, results: Results, peer_python: str | None) -> None:
    from streams.topics import ensure_worker_topics

    path = run.workdir / "attendance.jsonl"
    progress(f"generating a school year with at least {options.marks:,} attendance marks (seed {options.seed})...")
    results.attendance_file = made = generate_attendance_file(path, options.marks, options.seed)
    progress(f"  {made.lines:,} lines, {made.registers:,} registers, {made.marks:,} marks")
    prefix = "bench.attendance."
    publishing = run.settings("publish-attendance", prefix)
    ensure_worker_topics(publishing)
    published = publish_all(publishing, records_of_file(path), progress)
    progress(f"  {published.messages:,} messages in {published.seconds:.1f} s")
    for _repetition in range(options.repeat):
        results.attendance.append(run.drain_attendance(prefix))
        progress(f"  {marks_rate(results.attendance[-1], made):,.0f} marks/s")
        if peer_python is not None:
            results.attendance_peer.append(run.drain_peer_registers(prefix, peer_python))
            progress(f"  peer: {registers_marks_rate(results.attendance_peer[-1], made):,.0f} marks/s")


TARGET_MARKS_PER_SECOND = 15_000


def marks_rate(drain: Drain, made: AttendanceFile) -> float:
    """Marks a second over the drain's steady window, taking the marks in proportion to the messages."""
    steady_marks = made.marks * drain.steady_records / max(drain.records, 1)
    return steady_marks / drain.steady_seconds if drain.steady_seconds > 0 else math.nan


def registers_marks_rate(drain: Drain, made: AttendanceFile) -> float:
    """The peer drains registers only: its messages are the registers."""
    steady_marks = made.marks * drain.steady_records / max(made.registers, 1)
    return steady_marks / drain.steady_seconds if drain.steady_seconds > 0 else math.nan


def attendance_figures(results: Results) -> list[Figure]:
    made = results.attendance_file
    if made is None or not results.attendance:
        return []
    best = max(results.attendance, key=lambda d: marks_rate(d, made))
    rate = marks_rate(best, made)
    cpu_per_mark = best.steady_cpu.group / max(made.marks * best.steady_records / max(best.records, 1), 1)
    figures = [Figure(
        f"attendance, 1 worker ({made.marks:,} marks in {made.registers:,} registers)", f"{rate:,.0f} marks/s",
        f"CPU {cpu_per_mark * 1e6:,.1f} us a mark; {best.records:,} input messages (registers and the year's "
        "other records), drained when the mark batches were applied too; "
        + drain_detail(results.attendance, Measured(tuple(d.rate for d in results.attendance))),
        at_least(rate, TARGET_MARKS_PER_SECOND, f">= {TARGET_MARKS_PER_SECOND:,} marks/s"),
    )]
    if results.attendance_peer:
        peer_best = max(registers_marks_rate(d, made) for d in results.attendance_peer)
        peer_cpu = min(d.steady_cpu.group / max(made.marks * d.steady_records / max(made.registers, 1), 1)
                       for d in results.attendance_peer)
        figures.append(Figure(
            "attendance, Quix Streams stateful peer", f"{peer_best:,.0f} marks/s",
            f"CPU {peer_cpu * 1e6:,.1f} us a mark; per mark its pupil's entry read and written in RocksDB, one "
            "output per register, exactly once",
        ))
        ratio = rate / peer_best
        figures.append(Figure(
            "attendance, Rollwatch / Quix Streams stateful", ratio_text(ratio), "marks/s, best run of each",
            at_least(ratio, 1.0, ">= 1.0x"),
        ))
    return figures


def figures_of(results: Results, options: Options) -> list[Figure]:
    figures: list[Figure] = []
    one = Measured(tuple(d.rate for d in results.one)) if results.one else None
    one_cpu = min(d.cpu_per_record for d in results.one) if results.one else math.nan
    if one is not None:
        figures.append(Figure(
            f"pipeline, 1 worker ({results.messages:,} messages)", rate_text(one.best),
            drain_detail(results.one, one),
        ))
    if results.peer and one is not None:
        figures.extend(peer_figures(results, one, one_cpu))
    figures.extend(attendance_figures(results))
    if results.attendance_rocksdb is not None:
        figures.append(Figure(
            f"peak RSS, RocksDB store, attendance of {options.children:,} pupils",
            megabytes(results.attendance_rocksdb.peak_rss[0]),
            f"a mark each, 1,000 a register, one in twenty absent; drained at "
            f"{rate_text(results.attendance_rocksdb.rate)} (registers); "
            f"{results.attendance_states:,} attendance states read back from the RocksDB files",
            at_most(
                float(results.attendance_rocksdb.peak_rss[0] or math.nan), TARGET_RSS_BYTES,
                f"<= {TARGET_RSS_BYTES // (1024 * 1024)} MB",
            ),
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


def peer_figures(results: Results, one: Measured, one_cpu: float) -> list[Figure]:
    peer = Measured(tuple(d.rate for d in results.peer))
    peer_cpu = min(d.cpu_per_record for d in results.peer)
    return [
        Figure(
            f"Quix Streams stateful, roll events ({results.peer[0].records:,} messages)", rate_text(peer.best),
            f"quixstreams exactly-once, Avro decode, per-UPN state in RocksDB, one output a record; "
            f"CPU {peer_cpu * 1000:.3f} s per 1,000 records (Rollwatch {one_cpu * 1000:.3f}); "
            + drain_detail(results.peer, peer),
        ),
        Figure(
            "Rollwatch / Quix Streams stateful", ratio_text(one.best / peer.best),
            "records/s, best run of each; the worker's over every input topic, the peer's over roll events",
        ),
        Figure(
            "Rollwatch / Quix Streams stateful, by CPU a record", ratio_text(peer_cpu / one_cpu),
            "the peer's CPU per record over the worker's (least of each)",
        ),
    ]


def ratio_text(ratio: float) -> str:
    return "n/a" if math.isnan(ratio) else f"{ratio:.2f}x"


def peer_ratio_line(results: Results) -> str | None:
    """The line under the table that compares the worker with its peer, when both ran."""
    if not results.peer or not results.one:
        return None
    ratio = max(d.rate for d in results.one) / max(d.rate for d in results.peer)
    return f"Rollwatch / Quix Streams stateful: {ratio_text(ratio)}"


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
    from localbroker.launcher import LocalCluster
    from localbroker.nodes import find_free_base_port

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
    # Before anything is started: making the peer's virtualenv takes a while the first time, and can fail.
    peer_interpreter = peer_python(options.peer_python, progress) if "peer" in options.phases else None
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
        results = run_phases(
            BenchRun(options, workdir, bootstrap, processes, cluster.running_pid(1)), options, peer_interpreter
        )
        print()
        print(f"Rollwatch pipeline benchmark ({time.monotonic() - started:,.0f} s; {os.cpu_count()} cores shared "
              f"with the broker; {options.partitions} partitions; exactly_once; commit interval "
              f"{options.commit_interval:g} s)")
        if options.faust_environment:
            print("Faust settings given: " + ", ".join(f"{name}={value}" for name, value in options.faust_environment))
        print(render_table(figures_of(results, options)))
        ratio_line = peer_ratio_line(results)
        if ratio_line is not None:
            print(ratio_line)
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
