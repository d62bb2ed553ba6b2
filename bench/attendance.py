"""The bench's attendance phase: a generated file of registers drained by one worker, and by the Quix peer."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from config.settings import Settings
from generator.generate import generate_lines
from generator.options import GeneratorOptions
from rollwatch_client.ordering import AppliedOffsets

#: At least this many marks in the generated file (the issue's figure is for 2,000,000 or more).
DEFAULT_MARKS = 2_000_000
QUICK_MARKS = 200_000
#: Marks a pupil gets in the bench's school year (190 school days, a few days off roll): sizes the population.
MARKS_PER_PUPIL = 185
DATASET_FROM = "2024-09-01"
DATASET_TO = "2025-08-31"


@dataclass(frozen=True)
class AttendanceFile:
    lines: int
    registers: int
    marks: int


def generate_attendance_file(path: Path, marks: int, seed: int = 0) -> AttendanceFile:
    """Writes a generated school year with daily registers holding at least `marks` marks."""
    from datetime import date

    pupils = math.ceil(marks / MARKS_PER_PUPIL)
    while True:
        options = GeneratorOptions(
            pupils=pupils, seed=seed, start=date.fromisoformat(DATASET_FROM), end=date.fromisoformat(DATASET_TO),
            attendance=True,
        )
        lines = registers = counted = 0
        with path.open("w", encoding="utf-8") as out:
            for line in generate_lines(options):
                out.write(line if line.endswith("\n") else line + "\n")
                lines += 1
                if '"attendance.registers"' in line[:40]:
                    registers += 1
                    counted += len(json.loads(line)["value"]["marks"])
        if counted >= marks:
            return AttendanceFile(lines, registers, counted)
        pupils = math.ceil(pupils * marks / max(counted, 1) * 1.05)


def batches_drained(settings: Settings, group: str) -> Callable[[], bool]:
    """Whether the group has applied every batch on the worker's mark-batches topic written so far."""
    from cli.commands.publish import connection_of

    return AppliedOffsets(connection_of(settings), group).batches_applied
