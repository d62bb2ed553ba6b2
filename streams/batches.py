"""Registers split into per-partition mark batches: the batch topic's encoding, its partitioner, sink and ledger."""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any, Protocol

import msgspec
from aiokafka.partitioner import murmur2
from faust.types import TableT

from processors.records import AttendanceMark, AttendanceRegister, MarkBatch, School
from streams.runtime.tablewrites import ChangelogWrites

#: A batch as stored on the batch topic: a 0x01 version byte, then MessagePack (the topic is the worker's own,
#: read only by the worker, so it needs no schema registry; the version byte leaves room to change it).
_BATCH_VERSION = b"\x01"
#: Several registers' batches for one partition, joined as their transaction commits: a 0x02 byte, then a
#: MessagePack array of the batches.
_JOINED_VERSION = b"\x02"
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(MarkBatch).decode
_decode_joined = msgspec.msgpack.Decoder(list[MarkBatch]).decode

#: Namespace of the ids given to a dead-lettered mark's one-mark register, so that a republished mark is not
#: taken for the register it came from (which the worker has already applied).
MARK_NAMESPACE = uuid.UUID("0b7e1c52-3d4a-5f6e-8a9b-1c2d3e4f5a6b")


def encode_batch(batch: MarkBatch) -> bytes:
    return _BATCH_VERSION + _encode(batch)


def decode_batch(data: bytes) -> MarkBatch:
    if data[:1] != _BATCH_VERSION:
        raise ValueError(f"mark batch starts with byte {data[:1].hex() or 'none'}, not a version this worker reads")
    return _decode(memoryview(data)[1:])


def decode_batches(data: bytes) -> list[MarkBatch]:
    """The batches of a message on the batch topic: one, or several joined."""
    if data[:1] == _JOINED_VERSION:
        return _decode_joined(memoryview(data)[1:])
    return [decode_batch(data)]


def join_batches(values: Sequence[bytes]) -> bytes:
    """Encoded batches for one partition as one message. A MessagePack array is its length, then its items
    one after the other, so each batch's own encoding goes in as it is, encoded once."""
    if len(values) == 1:
        return values[0]
    for value in values:
        if value[:1] != _BATCH_VERSION:
            raise ValueError(f"mark batch starts with byte {value[:1].hex() or 'none'}, not one this worker joins")
    count = len(values)
    if count < 16:
        header = bytes((0x90 | count,))
    elif count < 0x10000:
        header = struct.pack(">BH", 0xDC, count)
    else:
        header = struct.pack(">BI", 0xDD, count)
    return b"".join([_JOINED_VERSION, header, *(memoryview(value)[1:] for value in values)])


def partitioner(partitions: int) -> Callable[[str], int]:
    """The partition Kafka's default partitioner gives a UPN key (murmur2, as the MIS client and the worker's
    producers use), so that a child's marks join the partition holding its roll events and state. Children
    come back every school day: the partitions of the last quarter of a million are remembered (a bound, so
    that a region's children do not all stay in memory twice)."""
    known: dict[str, int] = {}

    def partition_of(upn: str) -> int:
        partition = known.get(upn)
        if partition is None:
            if len(known) >= 250_000:
                known.clear()
            partition = known[upn] = (murmur2(upn.encode()) & 0x7FFFFFFF) % partitions
        return partition

    return partition_of


def _one_mark(
    register_id: str, school: School, day: date, recorded_at: datetime, mark: AttendanceMark, index: int
) -> AttendanceRegister:
    """What a refused mark's dead letter carries: the mark alone, as a register of its own that can be
    republished once corrected, under an id derived from the register and the mark's index."""
    mark_id = str(uuid.uuid5(MARK_NAMESPACE, f"{register_id}|{index}"))
    return AttendanceRegister(mark_id, school, day, recorded_at, (mark,))


def one_mark_register(register: AttendanceRegister, index: int) -> AttendanceRegister:
    """The register of the mark at `index` of a register."""
    return _one_mark(
        register.register_id, register.school, register.date, register.recorded_at, register.marks[index], index
    )


def batch_register(batch: MarkBatch, index: int) -> AttendanceRegister:
    """The register of the mark of a batch that was at `index` of its register."""
    mark = batch.marks[batch.indexes.index(index)]
    return _one_mark(batch.register_id, batch.school, batch.date, batch.recorded_at, mark, index)


class BatchSink(Protocol):
    """Where a register's batches go: one message per partition holding its children."""

    def send(self, partition: int, key: bytes, value: bytes) -> None: ...


class OutboxBatchSink:
    """Stages each batch in the register's outbox, so batches, the ledger entry and the register's offset
    commit together (exactly once); the batches of a transaction's registers for one partition are joined."""

    def __init__(self, outbox: Any, topic: str) -> None:
        self.outbox = outbox
        self.topic = topic

    def send(self, partition: int, key: bytes, value: bytes) -> None:
        # A transaction's batches for one partition go out as one message: one event to apply them by.
        self.outbox.stage(self.topic, key, value, partition, join=join_batches)


class MemoryBatchSink:
    def __init__(self) -> None:
        self.sent: list[tuple[int, bytes, bytes]] = []

    def send(self, partition: int, key: bytes, value: bytes) -> None:
        self.sent.append((partition, key, value))


class TableRegisterLedger:
    """Register ids already split, in a changelog-backed table written in the register's partition."""

    def __init__(self, table: TableT, writes: ChangelogWrites) -> None:
        self.table = table
        self.writes = writes

    def admit(self, register_id: str) -> bool:
        key = register_id.encode()
        if self.table.data.get(key) is not None:
            return False
        self.writes.set(self.table, key, b"1")
        return True
