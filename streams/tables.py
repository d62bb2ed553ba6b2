"""The worker's state in changelog-backed tables: child states, deadlines, business clocks and partition totals."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Protocol

import faust
import msgspec
from faust.types import TableT

from config.settings import Settings
from processors.attendance import AttendanceState
from processors.state import ChildState
from processors.timeline import Changes
from streams.runtime.tablewrites import ChangelogWrites
from streams.statecodec import decode_attendance, decode_state, encode_attendance, encode_state

log = logging.getLogger(__name__)
_encode_json = msgspec.json.Encoder().encode


class TableChildStore:
    """Child states in a changelog-backed table keyed by UPN.

    The tables here are read and written through their stores (`table.data`), as ChangelogWrites writes
    them: a read through the table would only add Faust's per-key statistics and, for a key not there yet
    (every new child), a KeyError raised and caught."""

    def __init__(self, table: TableT, writes: ChangelogWrites) -> None:
        self.table = table
        self.writes = writes

    def get(self, upn: str) -> ChildState | None:
        raw = self.table.data.get(upn.encode())
        return decode_state(raw, upn) if raw is not None else None

    def put(self, state: ChildState) -> None:
        self.writes.set(self.table, state.upn.encode(), encode_state(state))


class TableAttendanceStore:
    """Children's attendance states in a changelog-backed table keyed by UPN."""

    #: States kept decoded: a pupil is marked every school day, mostly present, which leaves the state as it
    #: was. Each is used only while the stored value is the one it was decoded from (or encoded to).
    CACHED_STATES = 65_536

    def __init__(self, table: TableT, writes: ChangelogWrites) -> None:
        self.table = table
        self.writes = writes
        self.cache: dict[bytes, tuple[bytes, AttendanceState]] = {}

    def get(self, upn: str) -> AttendanceState | None:
        key = upn.encode()
        raw = self.table.data.get(key)
        if raw is None:
            return None
        cached = self.cache.get(key)
        if cached is not None and (cached[0] is raw or cached[0] == raw):
            return cached[1]
        state = decode_attendance(raw)
        self._keep(key, raw, state)
        return state

    def put(self, state: AttendanceState) -> None:
        key = state.upn.encode()
        raw = encode_attendance(state)
        self.writes.set(self.table, key, raw)
        self._keep(key, raw, state)

    def _keep(self, key: bytes, raw: bytes, state: AttendanceState) -> None:
        if len(self.cache) >= self.CACHED_STATES:
            self.cache.clear()
        self.cache[key] = (raw, state)


class TablePresentDays:
    """One partition's pupils marked simply present, per school and day, as `<partition>|<URN>|<day ordinal>`
    keys holding the sorted UPNs; and each school's latest register day, under `<partition>|<URN>|latest`.
    Written once a batch, read when a child's absence run, admission or removal is judged."""

    #: Days whose pupils are kept decoded: a judgement walks a few weeks of one school. Each is used only
    #: while the stored value is the one it was decoded from (another worker may have owned the partition).
    CACHED_DAYS = 256

    def __init__(self, table: TableT, partition: int, writes: ChangelogWrites | None) -> None:
        self.table = table
        self.prefix = f"{partition}|"
        self.writes = writes
        self.cache: dict[bytes, tuple[bytes, frozenset[str]]] = {}

    def _pupils(self, key: bytes) -> frozenset[str]:
        raw = self.table.data.get(key)
        if not raw:
            return frozenset()
        cached = self.cache.get(key)
        if cached is not None and cached[0] == raw:
            return cached[1]
        pupils = frozenset(raw.decode().split(","))
        if len(self.cache) >= self.CACHED_DAYS:
            self.cache.clear()
        self.cache[key] = (raw, pupils)
        return pupils

    def present(self, school_urn: str, ordinal: int, upn: str) -> bool:
        return upn in self._pupils(f"{self.prefix}{school_urn}|{ordinal}".encode())

    def latest(self, school_urn: str) -> int | None:
        raw = self.table.data.get(f"{self.prefix}{school_urn}|latest".encode())
        return int(raw) if raw else None

    def add(self, school_urn: str, ordinal: int, upns: Iterable[str]) -> None:
        if self.writes is None:
            raise RuntimeError("present days read for a report cannot be written")
        names = set(upns)
        if names:
            key = f"{self.prefix}{school_urn}|{ordinal}".encode()
            known = self._pupils(key)
            if not names <= known:
                pupils = known | names
                raw = ",".join(sorted(pupils)).encode()
                self.writes.set(self.table, key, raw)
                self.cache[key] = (raw, frozenset(pupils))
        latest = self.latest(school_urn)
        if latest is None or ordinal > latest:
            self.writes.set(self.table, f"{self.prefix}{school_urn}|latest".encode(), str(ordinal).encode())


class TableDeadlineIndex:
    """Pending deadlines of one partition as `<partition>|<due date>|<UPN>` keys in a table; the partition
    prefix keeps each partition's index apart in a worker that owns several."""

    def __init__(self, table: TableT, partition: int, writes: ChangelogWrites) -> None:
        self.table = table
        self.prefix = f"{partition}|".encode()
        self.writes = writes
        #: The keys due_before last found, per child, for discard_due_before to delete without a second scan.
        self.found: dict[str, list[bytes]] = {}

    def add(self, due: date, upn: str) -> None:
        self.writes.set(self.table, self.prefix + f"{due.isoformat()}|{upn}".encode(), b"1")

    def due_before(self, business_date: date) -> list[str]:
        limit = business_date.isoformat().encode()
        start = len(self.prefix)
        self.found = {}
        for key in list(self.table.keys()):
            if key.startswith(self.prefix) and key[start : start + 10] < limit:
                # A key that is not UTF-8 names no child: checked as one that has gone, it is then deleted.
                self.found.setdefault(key[start + 11 :].decode(errors="replace"), []).append(key)
        return sorted(self.found)

    def discard_due_before(self, business_date: date, upn: str) -> None:
        for key in self.found.pop(upn, ()):
            self.writes.delete(self.table, key)


class TableBusinessClock:
    """One partition's business date in a table keyed by partition number."""

    def __init__(self, table: TableT, partition: int, writes: ChangelogWrites | None = None) -> None:
        self.table = table
        self.key = str(partition).encode()
        self.writes = writes

    def get(self) -> date | None:
        raw = self.table.data.get(self.key)
        return date.fromisoformat(raw.decode()) if raw is not None else None

    def set(self, today: date) -> None:
        if self.writes is None:
            raise RuntimeError("a business clock read for a report cannot be moved")
        self.writes.set(self.table, self.key, today.isoformat().encode())


@dataclass(frozen=True)
class PartitionTotals:
    """Open cases per holding LA and pending deadlines of one partition, kept alongside its state so that
    they survive restarts and move with the partition."""

    open_cases: dict[str, int] = field(default_factory=dict)
    pending_deadlines: int = 0

    def plus(self, changes: Changes) -> PartitionTotals:
        pending = self.pending_deadlines + changes.deadlines_added - changes.deadlines_ended
        if not changes.cases_opened and not changes.cases_closed:
            # Most changes are deadlines alone: the cases' counts are shared, never changed in place.
            return PartitionTotals(self.open_cases, pending)
        open_cases = dict(self.open_cases)
        for la_code in changes.cases_opened:
            open_cases[la_code] = open_cases.get(la_code, 0) + 1
        for la_code in changes.cases_closed:
            open_cases[la_code] = open_cases.get(la_code, 0) - 1
        return PartitionTotals({la: n for la, n in sorted(open_cases.items()) if n}, pending)

    def encode(self) -> bytes:
        return _encode_json({"open_cases": self.open_cases, "pending_deadlines": self.pending_deadlines})

    @classmethod
    def decode(cls, raw: bytes) -> PartitionTotals:
        plain = msgspec.json.decode(raw)
        return cls(dict(plain["open_cases"]), int(plain["pending_deadlines"]))


class PartitionCounts(Protocol):
    def add(self, partition: int, changes: Changes) -> None: ...

    def get(self, partition: int) -> PartitionTotals: ...


class TablePartitionCounts:
    """Each partition's totals under its partition number in a changelog-backed table."""

    def __init__(self, table: TableT, writes: ChangelogWrites) -> None:
        self.table = table
        self.writes = writes
        #: Per partition, the stored value last read or written and its decoded totals: most records that
        #: change the totals find them as this worker last wrote them, and skip decoding them again.
        self.decoded: dict[int, tuple[bytes, PartitionTotals]] = {}

    def add(self, partition: int, changes: Changes) -> None:
        totals = self.get(partition).plus(changes)
        raw = totals.encode()
        self.writes.set(self.table, str(partition).encode(), raw)
        self.decoded[partition] = (raw, totals)

    def get(self, partition: int) -> PartitionTotals:
        raw = self.table.data.get(str(partition).encode())
        if raw is None:
            return PartitionTotals()
        known = self.decoded.get(partition)
        if known is not None and known[0] == raw:
            return known[1]
        totals = PartitionTotals.decode(raw)
        self.decoded[partition] = (raw, totals)
        return totals


class MemoryPartitionCounts:
    def __init__(self) -> None:
        self.totals: dict[int, PartitionTotals] = {}

    def add(self, partition: int, changes: Changes) -> None:
        self.totals[partition] = self.get(partition).plus(changes)

    def get(self, partition: int) -> PartitionTotals:
        return self.totals.get(partition, PartitionTotals())


def discard_local_tables(app: faust.App, settings: Settings) -> bool:
    """Under exactly_once on RocksDB, removes the table files an earlier run left, so that the tables are
    rebuilt from their changelogs, which hold committed writes only; returns whether there were any.

    A record's table writes reach RocksDB at once and its changelog records only at its transaction's
    commit. A run that ended between the two (a crash, a kill, a stop whose last commit did not happen) left
    files holding the state of records whose offsets were never committed, event ids included; read again
    against those files, the records would count their own alerts as already raised, and raise nothing."""
    if settings.processing_guarantee != "exactly_once" or not settings.store.startswith("rocksdb"):
        return False
    tables = Path(app.conf.tabledir)
    if not tables.exists():
        return False
    shutil.rmtree(tables)
    log.info("Rebuilding the tables from their changelogs: removed the RocksDB files of an earlier run, which "
             "may hold writes of records whose transaction never committed")
    return True

