"""Replay on several cores: children split by UPN across processes, clock ticks to all, output in file order."""

from __future__ import annotations

import heapq
import json
import multiprocessing
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from processors.config import RuleConfig
from processors.timeline import memory_timeline
from schemas.errors import CodecError
from schemas.jsonformat import alert_to_json, parse_line
from streams.replay import Rejected, ReplayStats, apply_checked

#: Lines handed to the shards at a time; large enough to amortise the pipes, small enough to stream.
CHUNK_LINES = 20_000

_TICK_MARK = '"clock.ticks"'
_UPN_MARK = '"upn"'

# A shard's answer for one line: its number, the dead-letter code or None, and (UPN, alert JSON) pairs.
LineResult = tuple[int, str | None, list[tuple[str, str]]]


def shard_of(line: str, shards: int) -> int | None:
    """The shard that owns a line's child, or None for a clock tick, which every shard must apply.

    Only the UPN's text is needed, so the line is searched rather than parsed; a line whose UPN cannot be
    found goes to shard 0, which dead-letters it exactly as a single process would."""
    if _TICK_MARK in line:
        return None
    at = line.find(_UPN_MARK)
    if at < 0:
        return 0
    start = line.find('"', at + len(_UPN_MARK) + 1)
    end = line.find('"', start + 1)
    if start < 0 or end < 0:
        return 0
    return zlib.crc32(line[start + 1 : end].encode()) % shards


def _shard_main(connection: Connection, config: RuleConfig) -> None:
    timeline = memory_timeline(config)
    dumps = json.dumps
    while True:
        chunk: list[tuple[int, str]] | None = connection.recv()
        if chunk is None:
            connection.close()
            return
        results: list[LineResult] = []
        for number, line in chunk:
            try:
                _topic, record = parse_line(line)
                alerts = apply_checked(timeline, record)
            except CodecError as error:
                results.append((number, str(error.code), []))
                continue
            except Rejected as error:
                results.append((number, error.code, []))
                continue
            results.append(
                (number, None, [(a.upn, dumps(alert_to_json(a), separators=(",", ":"))) for a in alerts])
            )
        connection.send(results)


@dataclass
class _Shard:
    process: Any
    connection: Connection


def _merge_line(answers: list[LineResult]) -> tuple[str | None, Iterator[tuple[str, str]]]:
    """One line's outcome from the shards that applied it. A tick's deadline alerts come from every shard,
    each in UPN order; merging by UPN gives exactly the order a single process produces."""
    if len(answers) == 1:
        return answers[0][1], iter(answers[0][2])
    return answers[0][1], heapq.merge(*(answer[2] for answer in answers), key=lambda pair: pair[0])


def parallel_replay(
    lines: Iterable[str],
    config: RuleConfig,
    jobs: int,
    on_alert_line: Callable[[str], None],
    on_progress: Callable[[ReplayStats], None] | None = None,
) -> ReplayStats:
    """Same output, byte for byte and in the same order, as the single-process replay of the same lines."""
    context = multiprocessing.get_context("fork")
    shards: list[_Shard] = []
    for _ in range(jobs):
        parent_end, child_end = context.Pipe()
        process = context.Process(target=_shard_main, args=(child_end, config), daemon=True)
        process.start()
        child_end.close()
        shards.append(_Shard(process, parent_end))
    stats = ReplayStats()
    started = time.perf_counter()
    dead_letters: Counter[str] = stats.dead_letters
    try:
        in_flight: list[int | None] | None = None
        for chunk in _chunks(lines):
            # Route this chunk while the shards work on the previous one; send it only once they have
            # answered, because a shard blocked writing a large answer does not read its pipe.
            owners, routed = _route(chunk, jobs)
            if in_flight is not None:
                _collect(shards, in_flight, stats, dead_letters, on_alert_line)
                if on_progress is not None:
                    stats.seconds = time.perf_counter() - started
                    on_progress(stats)
            for shard, batch in zip(shards, routed, strict=True):
                shard.connection.send(batch)
            in_flight = owners
        if in_flight is not None:
            _collect(shards, in_flight, stats, dead_letters, on_alert_line)
    finally:
        for shard in shards:
            shard.connection.send(None)
        for shard in shards:
            shard.process.join(timeout=30)
            shard.connection.close()
    stats.seconds = time.perf_counter() - started
    return stats


def _route(chunk: list[tuple[int, str]], jobs: int) -> tuple[list[int | None], list[list[tuple[int, str]]]]:
    routed: list[list[tuple[int, str]]] = [[] for _ in range(jobs)]
    owners: list[int | None] = []
    for number, line in chunk:
        owner = shard_of(line, jobs)
        owners.append(owner)
        if owner is None:
            for batch in routed:
                batch.append((number, line))
        else:
            routed[owner].append((number, line))
    return owners, routed


def _chunks(lines: Iterable[str]) -> Iterator[list[tuple[int, str]]]:
    chunk: list[tuple[int, str]] = []
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        chunk.append((number, line))
        if len(chunk) >= CHUNK_LINES:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _collect(
    shards: list[_Shard],
    owners: list[int | None],
    stats: ReplayStats,
    dead_letters: Counter[str],
    on_alert_line: Callable[[str], None],
) -> None:
    answers = [iter(shard.connection.recv()) for shard in shards]
    for owner in owners:
        line_answers = [next(a) for a in answers] if owner is None else [next(answers[owner])]
        code, alerts = _merge_line(line_answers)
        stats.records += 1
        if code is not None:
            dead_letters[code] += 1
            continue
        stats.applied += 1
        for _upn, alert_line in alerts:
            stats.alerts += 1
            on_alert_line(alert_line)
