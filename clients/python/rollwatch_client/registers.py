"""Attendance marks from a CSV export, grouped into registers: one per school and day, at most 5,000 marks each."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from processors.attendance import SESSION_CODES
from processors.records import AttendanceMark, AttendanceRegister, School
from processors.validation import MAX_MARKS, mark_problems

#: The columns of a marks CSV, in the order they are documented; a header may list them in any order.
MARK_CSV_COLUMNS = ("school_urn", "school_laestab", "school_name", "date", "upn", "am", "pm")
#: Register ids of a CSV are derived from what the register holds, in this namespace, so that sending the
#: same file again sends the same registers, which the worker then ignores.
CSV_REGISTER_NAMESPACE = uuid.UUID("6f1d2c3b-4a59-5e7f-9b8c-2d3e4f5a6b7c")


def is_marks_header(header: Sequence[str]) -> bool:
    """True when a CSV header names the marks columns (and so the file holds marks, not roll events)."""
    return set(MARK_CSV_COLUMNS) <= {name.strip() for name in header}


@dataclass(frozen=True, slots=True)
class MarkRow:
    """One row of a marks CSV: its line number and cells by column name."""

    line: int
    cells: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class RegisterGroup:
    """A register built from consecutive rows of one school and day (`lines` are their line numbers), or the
    reasons one row cannot be a mark (`lines` is then that row alone)."""

    lines: tuple[int, ...]
    register: AttendanceRegister | None
    reasons: tuple[str, ...] = ()


def _row_reasons(row: MarkRow) -> tuple[str, ...]:
    cells = row.cells
    try:
        date.fromisoformat(cells["date"].strip())
    except ValueError:
        return ("BAD_FIELD (date): the date must be YYYY-MM-DD",)
    mark = AttendanceMark(cells["upn"].strip(), cells["am"].strip(), cells["pm"].strip())
    # A row is one mark: its columns are named as the CSV names them, not by a place in a register.
    return tuple(
        f"{p.code} ({(p.field or '').removeprefix('marks[0].')}): {p.message.replace('marks[0].', '')}"
        for p in mark_problems(mark, 0, SESSION_CODES)
    )


def registers_from_rows(rows: Iterable[MarkRow], recorded_at: datetime | None = None) -> Iterator[RegisterGroup]:
    """Consecutive rows of the same school and day become one register (a new one past 5,000 marks, or when
    a pupil comes again); each bad row is given back on its own, with its reasons, and left out."""
    stamp = recorded_at or datetime.now(tz=UTC)
    pending: list[MarkRow] = []
    named: set[str] = set()

    def flush() -> Iterator[RegisterGroup]:
        if pending:
            yield _group(pending, stamp)
            pending.clear()
            named.clear()

    for row in rows:
        reasons = _row_reasons(row)
        if reasons:
            yield RegisterGroup((row.line,), None, reasons)
            continue
        if pending:
            first = pending[0].cells
            same = all(first[c].strip() == row.cells[c].strip() for c in ("school_urn", "school_laestab", "date"))
            if not same or len(pending) >= MAX_MARKS or row.cells["upn"].strip() in named:
                yield from flush()
        pending.append(row)
        named.add(row.cells["upn"].strip())
    yield from flush()


def _group(rows: list[MarkRow], stamp: datetime) -> RegisterGroup:
    first = rows[0].cells
    school = School(
        urn=first["school_urn"].strip(),
        laestab=first["school_laestab"].strip(),
        name=first["school_name"].strip(),
        special=False,
    )
    day = date.fromisoformat(first["date"].strip())
    marks = tuple(AttendanceMark(r.cells["upn"].strip(), r.cells["am"].strip(), r.cells["pm"].strip()) for r in rows)
    digest = hashlib.sha256("\n".join(f"{m.upn},{m.am},{m.pm}" for m in marks).encode()).hexdigest()
    register_id = str(uuid.uuid5(CSV_REGISTER_NAMESPACE, f"{school.urn}|{school.laestab}|{day}|{digest}"))
    register = AttendanceRegister(register_id, school, day, stamp, marks)
    return RegisterGroup(tuple(r.line for r in rows), register)
