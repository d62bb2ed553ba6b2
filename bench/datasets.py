"""The benchmark's inputs: a generated replay file, crafted roll events, and publishing them as Avro."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path

from cli.commands.publish import connection_of
from config.settings import Settings
from generator.generate import generate_lines
from generator.options import GeneratorOptions
from processors.identifiers import upn_check_letter
from processors.records import Child, EventType, Ground, InputRecord, RollEvent, School
from rollwatch_client.publisher import InputPublisher
from schemas.jsonformat import parse_line

#: Two school years give each child several records, as a year of live traffic would.
DATASET_START = date(2024, 9, 1)
DATASET_END = date(2026, 8, 31)
#: Replay lines the generator writes per pupil over DATASET_START..DATASET_END (measured: about 0.85);
#: a lower figure asks for a few more pupils than needed, and the surplus lines are cut off.
LINES_PER_PUPIL = 0.75

#: A made-up school in Birmingham (LA 330) that the crafted events name.
BENCH_SCHOOL = School(urn="199001", laestab="3302999", name="Benchmark Primary School", special=False)
BENCH_LA = BENCH_SCHOOL.la_code
#: Crafted children are invented: the same placeholder name for all, and no postcode.
BENCH_CHILD = Child(forename="Bench", surname="Child", date_of_birth=date(2016, 3, 1))
BENCH_SOURCE = "ROLLWATCH-BENCH"

Progress = Callable[[str], None]


def generate_replay_file(path: Path, records: int, seed: int = 0) -> int:
    """Writes the first `records` lines of a generated two-year replay file; returns the lines written."""
    pupils = math.ceil(records / LINES_PER_PUPIL)
    while True:
        written = 0
        options = GeneratorOptions(pupils=pupils, seed=seed, start=DATASET_START, end=DATASET_END)
        with path.open("w", encoding="utf-8") as out:
            for line in generate_lines(options):
                out.write(line if line.endswith("\n") else line + "\n")
                written += 1
                if written >= records:
                    return written
        pupils = math.ceil(pupils * 1.3)


def bench_upn(index: int) -> str:
    """A valid permanent UPN allocated by LA 330, different for every index below 10**9."""
    body = f"{BENCH_LA}{index:09d}"
    return upn_check_letter(body) + body


def child_added(index: int, recorded_at: datetime) -> RollEvent:
    """An ADDED at the bench school for child `index`: each one leaves a new child in the worker's state."""
    return RollEvent(
        event_id=str(uuid.uuid4()),
        event_type=EventType.ADDED,
        upn=bench_upn(index),
        child=BENCH_CHILD,
        school=BENCH_SCHOOL,
        effective_date=recorded_at.date(),
        recorded_at=recorded_at,
        source_system=BENCH_SOURCE,
    )


def removal_without_destination(index: int, recorded_at: datetime) -> RollEvent:
    """A REMOVED (moved away, destination unknown) of a child on no other roll: MISSING_NO_DESTINATION fires
    at once, so each such event yields exactly one alert to the bench school's CME officer."""
    return replace(child_added(index, recorded_at), event_type=EventType.REMOVED, ground=Ground.G_MOVED_AWAY)


def records_of_file(path: Path) -> Iterator[InputRecord]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield parse_line(line)[1]


def attendance_registers(count: int, per_register: int = 1000) -> Iterator[InputRecord]:
    """Registers of one school day marking `count` distinct pupils, `per_register` a school, most present and
    one in twenty absent without authorisation (so they keep days of their own)."""
    from processors.records import AttendanceMark, AttendanceRegister, School

    recorded_at = datetime.now(tz=UTC)
    day = date(2025, 3, 3)
    for first in range(0, count, per_register):
        number = first // per_register
        school = School(f"{200000 + number:06d}", f"{BENCH_LA}{4000 + number % 5000:04d}", "Bench School", False)
        marks = tuple(
            AttendanceMark(bench_upn(index), *(("N", "N") if index % 20 == 0 else ("/", "\\")))
            for index in range(first, min(first + per_register, count))
        )
        yield AttendanceRegister(str(uuid.uuid4()), school, day, recorded_at, marks)


def children_added(count: int, first_index: int = 0) -> Iterator[InputRecord]:
    recorded_at = datetime.now(tz=UTC)
    for index in range(first_index, first_index + count):
        yield child_added(index, recorded_at)


@dataclass(frozen=True)
class Published:
    records: int
    messages: int
    seconds: float


def publish_all(
    settings: Settings, records: Iterable[InputRecord], progress: Progress, every: int = 200_000
) -> Published:
    """Validates, Avro-encodes and sends each record with the MIS publisher SDK (a tick goes to every
    partition, so messages can exceed records), then waits until the broker has acknowledged them all."""
    import time

    started = time.perf_counter()
    count = 0
    with InputPublisher(connection_of(settings)) as publisher:
        for record in records:
            publisher.publish(record)
            count += 1
            if count % every == 0:
                rate = count / (time.perf_counter() - started)
                progress(f"  published {count:,} records ({rate:,.0f}/s)")
        publisher.flush()
        messages = sum(publisher.sent.values())
    return Published(count, messages, time.perf_counter() - started)
