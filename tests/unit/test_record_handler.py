"""The worker's per-message path without Kafka: decode, validate, apply, and dead letters in their shape."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from processors.calendar import default_calendar
from processors.config import RuleConfig
from processors.records import (
    ATTENDANCE_REGISTERS,
    CASE_ACTIONS,
    CLOCK_TICKS,
    EHE_NOTIFICATIONS,
    ROLL_EVENTS,
    SAFEGUARDING_STATUS,
    AttendanceRegister,
    CaseAction,
    ClockTick,
    EHENotification,
    Ground,
    InputRecord,
    RollEvent,
    Rule,
)
from processors.timeline import memory_timeline
from processors.validation import ProblemCode
from schemas.codec import AvroCodec
from sinks.alerts import MemoryAlertSink, MemoryDeadLetterSink
from streams.handler import RECORD_TYPES, RecordHandler
from tests.unit.test_validation import REMOVED, WIRE_BAD_RECORDS

CODEC = AvroCodec()
MISSING = replace(REMOVED, ground=Ground.G_MOVED_AWAY, destination=None)
TOPIC_OF = {
    RollEvent: ROLL_EVENTS, EHENotification: EHE_NOTIFICATIONS, ClockTick: CLOCK_TICKS, CaseAction: CASE_ACTIONS,
    AttendanceRegister: ATTENDANCE_REGISTERS,
}


def topic_for(record: InputRecord) -> str:
    return TOPIC_OF.get(type(record), SAFEGUARDING_STATUS)


def make_handler() -> tuple[RecordHandler, MemoryAlertSink, MemoryDeadLetterSink]:
    timeline = memory_timeline(RuleConfig(default_calendar()))
    alerts, letters = MemoryAlertSink(), MemoryDeadLetterSink()
    return RecordHandler(CODEC, lambda _partition: timeline, alerts, letters, RECORD_TYPES), alerts, letters


@pytest.mark.parametrize(
    ("record", "code"), [(r, c) for _, r, c in WIRE_BAD_RECORDS], ids=[n for n, _, _ in WIRE_BAD_RECORDS]
)
def test_each_invalid_record_becomes_a_dead_letter_with_its_code(record: InputRecord, code: ProblemCode) -> None:
    handler, alerts, letters = make_handler()
    raw = CODEC.encode(record)
    topic = topic_for(record)
    result = asyncio.run(handler.handle(topic, 3, 41, b"key", raw))
    assert not result.applied
    assert alerts.alerts == []
    [letter] = letters.letters
    assert (letter.raw, letter.source_topic, letter.partition, letter.offset) == (raw, topic, 3, 41)
    assert letter.error_code == code
    assert code in letter.message
    # the dead letter itself survives the wire format
    assert CODEC.decode(CODEC.encode(letter), type(letter)) == letter


def test_undecodable_bytes_are_dead_lettered_and_the_next_record_still_applies() -> None:
    handler, alerts, letters = make_handler()
    first = asyncio.run(handler.handle(ROLL_EVENTS, 0, 7, None, b"not avro at all"))
    assert first.error_code == "BAD_MARKER"
    assert letters.letters[0].raw == b"not avro at all"
    second = asyncio.run(handler.handle(ROLL_EVENTS, 0, 8, None, CODEC.encode(MISSING)))
    assert second.applied
    assert [a.rule for a in alerts.alerts] == [Rule.MISSING_NO_DESTINATION]


def test_a_record_on_the_wrong_topic_is_dead_lettered() -> None:
    handler, _alerts, letters = make_handler()
    result = asyncio.run(handler.handle(CLOCK_TICKS, 0, 1, None, CODEC.encode(REMOVED)))
    assert result.error_code == "WRONG_RECORD_TYPE"
    assert letters.letters[0].source_topic == CLOCK_TICKS


def test_a_date_past_every_configured_school_year_still_alerts() -> None:
    handler, alerts, letters = make_handler()
    late = replace(MISSING, effective_date=date(2029, 3, 6), recorded_at=datetime(2029, 3, 6, 9, tzinfo=UTC))
    late = replace(late, child=replace(late.child, date_of_birth=date(2018, 1, 1)))
    result = asyncio.run(handler.handle(ROLL_EVENTS, 0, 1, None, CODEC.encode(late)))
    assert result.applied and letters.letters == []
    assert [(a.rule, a.raised_on) for a in alerts.alerts] == [(Rule.MISSING_NO_DESTINATION, date(2029, 3, 6))]


def test_a_valid_removal_raises_its_alert() -> None:
    handler, alerts, letters = make_handler()
    result = asyncio.run(handler.handle(ROLL_EVENTS, 0, 1, None, CODEC.encode(MISSING)))
    assert result.applied and letters.letters == []
    assert [(a.rule, a.recipient, a.la_code) for a in alerts.alerts] == [
        (Rule.MISSING_NO_DESTINATION, "CME_OFFICER", "331")
    ]
    assert result.alerts == 1
