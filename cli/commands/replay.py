"""`rollwatch replay FILE`: the detection engine in-process over a replay file, alerts to stdout."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from config.rules import build_rule_config
from config.settings import Settings
from processors.records import Alert
from replay.run import ReplayStats, relax_garbage_collection, replay
from schemas.jsonformat import alert_to_line


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="run the rules in-process over a replay file and print alerts as JSON Lines",
        description=(
            "Reads a replay file (JSON Lines, one {topic, value} record a line, clock ticks included), "
            "applies exactly the worker's validation and rules in file order with no broker, and writes "
            "each alert as one JSON line to stdout. Invalid lines (not UTF-8, not JSON, not a valid record) "
            "are counted per error code on stderr and never stop the run; a UTF-8 byte-order mark at the "
            "start of a line is ignored. Deterministic: the same file always gives the same alerts and "
            "counts, whatever --jobs."
        ),
    )
    parser.add_argument("file", type=Path, help="replay file; '-' reads standard input")
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="processes to spread children over (default: one per core; standard input uses one); the output "
        "and the counts are the same, byte for byte, for any value",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress or summary on stderr")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from processors.timeline import memory_timeline
    from replay.parallel import parallel_replay

    if args.jobs < 1:
        print("rollwatch replay: --jobs must be at least 1", file=sys.stderr)
        return 2
    config = build_rule_config(settings)
    out = sys.stdout.buffer
    relax_garbage_collection()

    def on_alert(alert: Alert) -> None:
        out.write(alert_to_line(alert) + b"\n")

    def on_alert_line(line: bytes) -> None:
        out.write(line + b"\n")

    def on_progress(stats: ReplayStats) -> None:
        if not args.quiet:
            print(f"replay: {stats.records:,} records, {stats.alerts:,} alerts, "
                  f"{stats.per_second:,.0f} records/s", file=sys.stderr)

    if str(args.file) == "-":
        # Standard input can be read only once, so it is replayed in this one process.
        stats = replay(sys.stdin.buffer, memory_timeline(config), on_alert, on_progress)
    elif not args.file.is_file():
        print(f"rollwatch replay: no such file: {args.file}", file=sys.stderr)
        return 2
    elif args.jobs == 1:
        with args.file.open("rb") as stream:
            stats = replay(stream, memory_timeline(config), on_alert, on_progress)
    else:
        stats = parallel_replay(args.file, config, args.jobs, on_alert_line, 0 if args.quiet else 100_000)
    out.flush()
    if not args.quiet:
        print(
            f"replay: {stats.records:,} records, {stats.applied:,} applied, "
            f"{sum(stats.dead_letters.values()):,} dead-lettered, {stats.alerts:,} alerts in "
            f"{stats.seconds:.2f} s ({stats.per_second:,.0f} records/s, {args.jobs} process(es))",
            file=sys.stderr,
        )
        for code, count in sorted(stats.dead_letters.items()):
            print(f"replay: dead-lettered {code}: {count:,}", file=sys.stderr)
    return 0
