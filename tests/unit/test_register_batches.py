"""Registers through the record handler, no broker: split by child partition, bad marks dead-lettered alone,
each batch applied on its partition, a register sent twice split once."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from processors.calendar import default_calendar
from processors.config import RuleConfig
from processors.records import ATTENDANCE_REGISTERS, AttendanceMark, AttendanceRegister
from processors.registers import batch_of
from processors.timeline import MemoryRegisterLedger, memory_timeline
from schemas.codec import AvroCodec
from schemas.jsonformat import parse_line
from sinks.alerts import MemoryAlertSink, MemoryDeadLetterSink
from streams.batches import MemoryBatchSink, decode_batch, decode_batches, encode_batch, join_batches, partitioner
from streams.handler import RECORD_TYPES, RecordHandler, RegisterRoute
from tests.shared import SHARED_SCENARIOS

CODEC = AvroCodec()
BATCHES = "app-mark-batches"
PARTITIONS = 4


def registers() -> list[AttendanceRegister]:
    lines = (SHARED_SCENARIOS / "v2" / "p07_absence_enquiries_due.jsonl").read_text(encoding="utf-8").splitlines()
    return [parse_line(line)[1] for line in lines]  # type: ignore[misc]


def make() -> tuple[RecordHandler, MemoryBatchSink, MemoryDeadLetterSink, MemoryAlertSink]:
    timelines = {p: memory_timeline(RuleConfig(default_calendar())) for p in range(PARTITIONS)}
    ledger = MemoryRegisterLedger()
    sink, letters, alerts = MemoryBatchSink(), MemoryDeadLetterSink(), MemoryAlertSink()
    route = RegisterRoute(ATTENDANCE_REGISTERS, lambda: ledger, sink, BATCHES, partitioner(PARTITIONS))
    handler = RecordHandler(CODEC, timelines.__getitem__, alerts, letters, RECORD_TYPES, registers=route)
    return handler, sink, letters, alerts


def test_a_register_goes_to_its_childrens_partitions_and_its_batches_raise_the_alert() -> None:
    handler, sink, letters, alerts = make()
    for offset, register in enumerate(registers()):
        asyncio.run(handler.handle(ATTENDANCE_REGISTERS, 0, offset, b"140501", CODEC.encode(register)))
    upn = registers()[0].marks[0].upn
    assert {partition for partition, _key, _value in sink.sent} == {partitioner(PARTITIONS)(upn)}
    for offset, (partition, _key, value) in enumerate(sink.sent):
        asyncio.run(handler.handle(BATCHES, partition, offset, _key, value))
    assert [(a.rule.value, a.la_code, a.upn) for a in alerts.alerts] == [("ABSENCE_ENQUIRIES_DUE", "334", upn)]
    assert letters.letters == []


def test_bad_marks_are_dead_lettered_one_by_one_and_the_rest_sent_on() -> None:
    handler, sink, letters, _alerts = make()
    register = registers()[0]
    good = register.marks[0]
    register = replace(register, marks=(good, AttendanceMark(good.upn, "/", "/"), AttendanceMark("BAD", "/", "/")))
    asyncio.run(handler.handle(ATTENDANCE_REGISTERS, 1, 7, b"140501", CODEC.encode(register)))
    assert [(letter.error_code, letter.offset) for letter in letters.letters] == [
        ("MARK_UPN_REPEATED", 7), ("UPN_FORMAT", 7)
    ]
    single = CODEC.decode(letters.letters[0].raw, AttendanceRegister)
    assert single.marks == (register.marks[1],) and single.register_id != register.register_id
    assert f"of register {register.register_id}" in letters.letters[0].message
    [(_partition, _key, value)] = sink.sent
    assert decode_batch(value).marks == (good,) and decode_batch(value).indexes == (0,)


def test_a_register_sent_twice_is_split_once() -> None:
    handler, sink, _letters, _alerts = make()
    data = CODEC.encode(registers()[0])
    asyncio.run(handler.handle(ATTENDANCE_REGISTERS, 0, 0, b"140501", data))
    asyncio.run(handler.handle(ATTENDANCE_REGISTERS, 0, 1, b"140501", data))
    assert len(sink.sent) == 1


def test_a_register_that_is_not_one_is_dead_lettered_whole() -> None:
    handler, sink, letters, _alerts = make()
    asyncio.run(handler.handle(ATTENDANCE_REGISTERS, 0, 3, b"140501", b"not avro"))
    assert [letter.error_code for letter in letters.letters] == ["BAD_MARKER"]
    assert sink.sent == []


def test_batches_joined_into_one_message_are_applied_as_if_sent_one_by_one() -> None:
    handler, sink, letters, alerts = make()
    for offset, register in enumerate(registers()):
        asyncio.run(handler.handle(ATTENDANCE_REGISTERS, 0, offset, b"140501", CODEC.encode(register)))
    [partition] = {partition for partition, _key, _value in sink.sent}
    joined = join_batches([value for _partition, _key, value in sink.sent])
    assert decode_batches(joined) == [decode_batch(value) for _partition, _key, value in sink.sent]

    asyncio.run(handler.handle(BATCHES, partition, 0, b"key", joined))

    assert [(a.rule.value, a.la_code) for a in alerts.alerts] == [("ABSENCE_ENQUIRIES_DUE", "334")]
    assert letters.letters == []


def test_a_joined_message_of_many_batches_holds_them_all_in_order() -> None:
    register = registers()[0]
    encoded = [encode_batch(batch_of(replace(register, register_id=f"r{n}"), [(0, register.marks[0])]))
               for n in range(3)]
    for count in (2, 15, 16, 65_536):  # each size of MessagePack's array header
        joined = join_batches([encoded[n % 3] for n in range(count)])
        assert [batch.register_id for batch in decode_batches(joined)] == [f"r{n % 3}" for n in range(count)]
