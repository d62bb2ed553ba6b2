"""Attendance registers as batches: a register's marks checked one by one and grouped by the child's partition."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from msgspec import Struct

from processors.attendance import SESSION_CODES
from processors.records import AttendanceMark, AttendanceRegister, MarkBatch
from processors.validation import mark_problems, repeated_mark


class MarkRejection(Struct, frozen=True, gc=False):
    """One mark of a register refused on its own: its index in the register, its code and why."""

    index: int
    upn: str
    code: str
    message: str


#: UPNs found valid: children come back every school day, and a UPN's check letter is worth working out once;
#: bounded, so that a region's children do not all stay in memory for it.
_VALID_UPNS: set[str] = set()
_MAX_REMEMBERED = 250_000


def check_marks(
    register: AttendanceRegister, owns: Callable[[str], bool] | None = None
) -> tuple[list[tuple[int, AttendanceMark]], list[MarkRejection]]:
    """The register's marks that may be applied (with their indexes), and those refused, each on its own;
    only the marks of children `owns` holds, when given (a pupil's marks all share an owner)."""
    valid: list[tuple[int, AttendanceMark]] = []
    refused: list[MarkRejection] = []
    named: set[str] = set()
    known = _VALID_UPNS
    for index, mark in enumerate(register.marks):
        upn = mark.upn
        if owns is not None and not owns(upn):
            continue
        if upn in known and mark.am in SESSION_CODES and mark.pm in SESSION_CODES and upn not in named:
            named.add(upn)
            valid.append((index, mark))
            continue
        problems = mark_problems(mark, index, SESSION_CODES)
        if not problems and upn in named:
            problems = [repeated_mark(index)]
        named.add(upn)
        if problems:
            message = "; ".join(f"{p.code}: {p.message}" for p in problems)
            refused.append(MarkRejection(index, upn, str(problems[0].code), message))
            continue
        valid.append((index, mark))
        if len(known) >= _MAX_REMEMBERED:
            known.clear()
        known.add(upn)
    return valid, refused


def batch_of(register: AttendanceRegister, marks: Iterable[tuple[int, AttendanceMark]]) -> MarkBatch:
    """The given marks of a register as one batch, in the register's order."""
    chosen = list(marks)
    return MarkBatch(
        register_id=register.register_id,
        school=register.school,
        date=register.date,
        recorded_at=register.recorded_at,
        marks=tuple([mark for _index, mark in chosen]),
        indexes=tuple([index for index, _mark in chosen]),
    )


def split_by_partition(
    register: AttendanceRegister, marks: Iterable[tuple[int, AttendanceMark]], partition_of: Callable[[str], int]
) -> dict[int, MarkBatch]:
    """One batch per partition that holds a child of the register, keyed by that partition."""
    # Marks and indexes gathered apart, as a batch holds them: no pair per mark to build and take apart again.
    groups: dict[int, tuple[list[AttendanceMark], list[int]]] = {}
    for index, mark in marks:
        partition = partition_of(mark.upn)
        group = groups.get(partition)
        if group is None:
            group = groups[partition] = ([], [])
        group[0].append(mark)
        group[1].append(index)
    return {
        partition: MarkBatch(
            register.register_id, register.school, register.date, register.recorded_at, tuple(chosen), tuple(indexes)
        )
        for partition, (chosen, indexes) in sorted(groups.items())
    }
