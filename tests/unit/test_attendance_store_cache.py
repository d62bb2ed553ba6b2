"""The attendance table keeps states decoded, and reads the store again whenever its value has changed."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from processors.attendance import AttendanceState, SchoolMarks
from streams.statecodec import encode_attendance
from streams.tables import TableAttendanceStore


class Writes:
    def set(self, table: Any, key: bytes, value: bytes) -> None:
        table.data[key] = value


def state(first: int) -> AttendanceState:
    return AttendanceState("A334567890123", (SchoolMarks("140501", "334", first),))


def test_a_state_is_decoded_once_while_its_stored_value_stays() -> None:
    table = SimpleNamespace(data={})
    store = TableAttendanceStore(table, Writes())  # type: ignore[arg-type]
    assert store.get("A334567890123") is None
    store.put(state(1))
    assert store.get("A334567890123") is store.get("A334567890123") == state(1)


def test_a_value_changed_in_the_store_behind_it_is_read_again() -> None:
    table = SimpleNamespace(data={})
    store = TableAttendanceStore(table, Writes())  # type: ignore[arg-type]
    store.put(state(1))
    table.data[b"A334567890123"] = encode_attendance(state(2))  # a rollback to the last commit, say
    assert store.get("A334567890123") == state(2)
    del table.data[b"A334567890123"]
    assert store.get("A334567890123") is None


def test_the_cache_is_bounded() -> None:
    table = SimpleNamespace(data={})
    store = TableAttendanceStore(table, Writes())  # type: ignore[arg-type]
    store.CACHED_STATES = 3
    for n in range(10):
        store.put(AttendanceState(f"A33456789{n:04d}"))
    assert len(store.cache) <= 3
    assert store.get("A334567890000") == AttendanceState("A334567890000")
