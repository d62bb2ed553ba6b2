"""Replay on several cores: each process reads the file, applies its own children and every clock tick."""

from __future__ import annotations

import heapq
import json
import multiprocessing
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from processors.apply import apply_record
from processors.config import RuleConfig
from processors.failures import Rejected
from processors.timeline import memory_timeline
from replay.run import SETTLE_EVERY, UNPROCESSABLE, ReplayStats, is_blank, settle_garbage
from schemas.errors import CodecError
from schemas.jsonformat import alert_to_line, line_owner, parse_line


def shard_of(line: bytes, shards: int) -> int | None:
    """The shard that owns a line's child, or None for a clock tick, which every shard must apply.

    parse_line accepts a line only if line_owner reads the same child from it, so a line goes to the shard
    holding its child's state. A line that cannot be routed cannot be applied either: it goes to shard 0,
    which dead-letters it exactly as a single process would."""
    try:
        upn = line_owner(line)
    except CodecError:
        return 0
    if upn is None:
        return None
    return zlib.crc32(upn.encode("utf-8", "surrogatepass")) % shards


def _owner(shard: int, shards: int) -> Callable[[str], bool]:
    """Whether this shard holds a child, by the same hash as shard_of; remembered, as children recur daily."""
    known: dict[str, bool] = {}

    def owns(upn: str) -> bool:
        mine = known.get(upn)
        if mine is None:
            if len(known) > 2_000_000:
                known.clear()
            mine = known[upn] = zlib.crc32(upn.encode("utf-8", "surrogatepass")) % shards == shard
        return mine

    return owns


def _run_shard(path: Path, shard: int, shards: int, config: RuleConfig, out: Path, progress_every: int) -> None:
    """Applies this shard's children and every tick; writes `line<TAB>upn<TAB>alert` rows and a summary.

    A tick is counted (and, if bad, dead-lettered) by shard 0 only, so the totals add up to one process's."""
    timeline = memory_timeline(config)
    # A register concerns many children: every shard reads it and applies (or refuses) its own children's marks.
    timeline.owns = _owner(shard, shards)
    result = ReplayStats()
    started = time.perf_counter()
    parsed = 0
    # Bytes, not text: the decoder reads UTF-8 itself, and a shard skips most lines without decoding them.
    with path.open("rb") as stream, out.open("wb") as rows:
        for number, line in enumerate(stream):
            if is_blank(line):
                continue
            owner = shard_of(line, shards)
            if owner is not None and owner != shard:
                continue
            counts = owner is not None or shard == 0
            if counts:
                result.records += 1
            parsed += 1
            if parsed % SETTLE_EVERY == 0:
                settle_garbage()
            try:
                _topic, record = parse_line(line)
                applied = apply_record(timeline, record)
            except (CodecError, Rejected) as error:
                if counts:
                    result.dead_letters[str(error.code)] += 1
                continue
            except Exception:
                # As in the single-process replay: one line nobody foresaw is counted, never the end of the run.
                if counts:
                    result.dead_letters[UNPROCESSABLE] += 1
                continue
            if counts:
                result.applied += 1
            for refused in applied.refused_marks:
                result.dead_letters[refused.code] += 1
            for alert in applied.alerts:
                result.alerts += 1
                rows.write(b"%012d\t%s\t%s\n" % (number, alert.key.encode(), alert_to_line(alert)))
            if shard == 0 and progress_every and number and number % progress_every == 0:
                rate = number / (time.perf_counter() - started)
                print(f"replay: about {number:,} lines read, {rate:,.0f} lines/s", file=sys.stderr, flush=True)
    summary = {"records": result.records, "applied": result.applied, "alerts": result.alerts,
               "dead_letters": dict(result.dead_letters)}
    out.with_suffix(".summary").write_text(json.dumps(summary), encoding="utf-8")


def _rows(path: Path) -> Iterator[tuple[bytes, bytes, bytes]]:
    with path.open("rb") as rows:
        for row in rows:
            number, upn, alert = row.rstrip(b"\n").split(b"\t", 2)
            yield number, upn, alert


def parallel_replay(
    path: Path,
    config: RuleConfig,
    jobs: int,
    on_alert_line: Callable[[bytes], None],
    progress_every: int = 0,
) -> ReplayStats:
    """The same output, byte for byte and in the same order, as the single-process replay of the file.

    Every shard reads the whole file but parses only its own children's lines and the ticks, so nothing but
    alerts crosses between processes. Alerts are merged by line; a tick's deadline alerts come from every
    shard, each in UPN order, and merging by UPN gives exactly the order one process produces."""
    context = multiprocessing.get_context("fork")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rollwatch-replay-") as scratch:
        outputs = [Path(scratch) / f"shard-{i}.tsv" for i in range(jobs)]
        processes = [
            context.Process(target=_run_shard, args=(path, i, jobs, config, outputs[i], progress_every))
            for i in range(jobs)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        failed = [i for i, process in enumerate(processes) if process.exitcode != 0]
        if failed:
            raise RuntimeError(f"replay shard(s) {failed} failed; run with --jobs 1 to see the error")
        stats = ReplayStats()
        for output in outputs:
            summary = json.loads(output.with_suffix(".summary").read_text(encoding="utf-8"))
            stats.records += summary["records"]
            stats.applied += summary["applied"]
            stats.dead_letters.update(summary["dead_letters"])
        for _number, _upn, alert in heapq.merge(*(_rows(o) for o in outputs), key=lambda row: (row[0], row[1])):
            stats.alerts += 1
            on_alert_line(alert)
    stats.seconds = time.perf_counter() - started
    return stats
