"""`rollwatch generate`: write a synthetic, seeded replay file of West Midlands roll, EHE and status records."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from datetime import date
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from config.settings import Settings
from generator.generate import write_replay
from generator.options import DEFAULT_END, DEFAULT_START, GenerationSummary, GeneratorOptions, GeneratorOptionsError

#: Runs at least this large show a progress bar on stderr.
PROGRESS_FROM_PUPILS = 50_000

EPILOG = textwrap.dedent(
    """\
    The output is the replay JSON Lines format (one {"topic", "value"} record a line, in date order, a
    clock.ticks line closing each school day), so it feeds `rollwatch replay` and `rollwatch publish`.
    The same options always give the same bytes. Every record is invented: names, UPNs, schools.

    examples:
      rollwatch generate --pupils 10000 --seed 7 --output year.jsonl
      rollwatch generate --pupils 1000000 --from 2025-07-01 --to 2025-09-30 --output summer.jsonl
      rollwatch generate --pupils 20000 --attendance --from 2025-01-06 --to 2025-03-31 --output spring.jsonl
    """
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="write a synthetic replay file (seeded, deterministic) for tests, demos and load",
        description=(
            "Simulate the 14 West Midlands LAs day by day: schools, pupils with valid UPNs, in-year moves, "
            "EHE, child protection and looked-after statuses at roughly national rates, exclusions, "
            "deaths, the July transitions and September starts, and a clock tick each school day."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--pupils", type=int, default=10_000, help="pupils on roll across the region (10000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same file (0)")
    parser.add_argument(
        "--from",
        dest="start",
        type=date.fromisoformat,
        default=None,
        help=f"first day, YYYY-MM-DD ({DEFAULT_START.isoformat()})",
    )
    parser.add_argument(
        "--to",
        dest="end",
        type=date.fromisoformat,
        default=None,
        help=f"last day, YYYY-MM-DD (31 August ending the --from school year; {DEFAULT_END.isoformat()})",
    )
    parser.add_argument(
        "--attendance",
        action="store_true",
        help="also write daily attendance registers (attendance.registers), one per school per school day "
        "with a mark for every pupil on roll; large: about 190 marks per pupil per year",
    )
    parser.add_argument("--output", type=Path, default=None, help="file to write (default: standard output)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary on stderr")
    parser.set_defaults(handler=run)


def _end_of_school_year(day: date) -> date:
    return date(day.year if day.month <= 8 else day.year + 1, 8, 31)


def run(args: argparse.Namespace, settings: Settings) -> int:
    del settings  # generation needs no broker, store or LA configuration
    start: date = args.start or DEFAULT_START
    end: date = args.end or _end_of_school_year(start)
    options = GeneratorOptions(pupils=args.pupils, seed=args.seed, start=start, end=end, attendance=args.attendance)
    show_progress = not args.quiet and args.pupils >= PROGRESS_FROM_PUPILS
    began = time.perf_counter()
    try:
        if args.output is None:
            summary = _write(options, sys.stdout, show_progress)
        else:
            with args.output.open("w", encoding="utf-8", newline="\n") as out:
                summary = _write(options, out, show_progress)
    except GeneratorOptionsError as error:
        print(f"rollwatch generate: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader (`| head`, say) went away: stop quietly, and keep the interpreter's final flush of
        # stdout from raising again on the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    seconds = time.perf_counter() - began
    if not args.quiet:
        topics = ", ".join(f"{topic} {count:,}" for topic, count in sorted(summary.per_topic.items()))
        print(
            f"generate: {summary.lines:,} lines ({topics}) for {args.pupils:,} pupils, "
            f"{start.isoformat()} to {end.isoformat()}, in {seconds:.1f} s "
            f"({summary.lines / max(seconds, 1e-9):,.0f} lines/s)",
            file=sys.stderr,
        )
        if options.attendance:
            print(
                f"generate: {summary.registers:,} attendance registers, {summary.marks:,} marks "
                f"({summary.marks / max(seconds, 1e-9):,.0f} marks/s)",
                file=sys.stderr,
            )
    return 0


def _write(options: GeneratorOptions, out: TextIO, show_progress: bool) -> GenerationSummary:
    total_days = (options.end - options.start).days + 1
    with tqdm(total=total_days, unit="day", file=sys.stderr, disable=not show_progress) as bar:
        last_seen: list[date] = []

        def on_chunk(day: date, lines: int) -> None:
            if not last_seen or last_seen[0] != day:
                last_seen[:] = [day]
                bar.update(1)
                bar.set_postfix(lines=f"{lines:,}", refresh=False)

        return write_replay(options, out, on_day=on_chunk)
