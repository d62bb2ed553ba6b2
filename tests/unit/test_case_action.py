"""Case actions: the Avro and replay JSON contract, validation, and what closing a case does to the worker."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from processors.apply import apply_checked
from processors.calendar import default_calendar
from processors.config import RuleConfig
from processors.records import CASE_ACTIONS, INPUT_TOPICS, CaseAction, CaseActionType, ClockTick, Rule
from processors.timeline import memory_timeline
from processors.validation import ProblemCode, validate
from schemas.codec import AvroCodec, load_schema
from schemas.errors import CodecError, CodecErrorCode
from schemas.jsonfields import record_to_json, record_to_line, topic_of
from schemas.jsonformat import parse_line
from sinks.alerts import MemoryAlertSink, MemoryDeadLetterSink
from streams.handler import RECORD_TYPES, RecordHandler
from tests.scenarios.builder import COV_A, UNKNOWN, added, removed, upn

CODEC = AvroCodec()
PUPIL = upn("331", 770_001)
CASE_ID = "6f1c2d3e-4b5a-5c6d-8e7f-0a1b2c3d4e5f"
ACTION = CaseAction(
    action_id="0b6f7a1c-2d3e-4f50-8a9b-c0d1e2f30405",
    upn=PUPIL,
    case_id=CASE_ID,
    action=CaseActionType.CLOSE,
    reason="Family confirmed the child is on roll at a school in Wales",
    by="A. Officer",
    at=datetime(2025, 3, 12, 10, 30, 15, 250000, tzinfo=UTC),
)


def action(**changes: object) -> CaseAction:
    return dataclasses.replace(ACTION, **changes)  # type: ignore[arg-type]


# --- Avro ------------------------------------------------------------------------------------------------


def test_codec_round_trips_a_case_action() -> None:
    assert CODEC.decode(CODEC.encode(ACTION), CaseAction) == ACTION


def test_a_case_action_is_not_decoded_as_another_record() -> None:
    with pytest.raises(CodecError) as raised:
        CODEC.decode(CODEC.encode(ACTION), ClockTick)
    assert raised.value.code == CodecErrorCode.WRONG_RECORD_TYPE


def test_schema_matches_the_record_and_documents_every_field() -> None:
    schema = load_schema("CaseAction")

    assert schema["namespace"] == "uk.rollwatch" and schema["doc"]
    assert [f["name"] for f in schema["fields"]] == [f.name for f in dataclasses.fields(CaseAction)]
    assert all(f.get("doc") for f in schema["fields"])
    kinds = {f["name"]: f["type"] for f in schema["fields"]}
    assert kinds["action"]["symbols"] == [member.value for member in CaseActionType]
    assert kinds["action"]["doc"]
    assert kinds["at"] == {"type": "long", "logicalType": "timestamp-micros"}


# --- replay JSON -----------------------------------------------------------------------------------------


def test_case_actions_is_an_input_topic_the_worker_consumes() -> None:
    assert CASE_ACTIONS in INPUT_TOPICS
    assert RECORD_TYPES[CASE_ACTIONS] is CaseAction


def test_replay_line_round_trips_a_case_action() -> None:
    line = record_to_line(CASE_ACTIONS, ACTION)

    assert json.loads(line)["value"]["at"] == "2025-03-12T10:30:15.250000Z"
    assert parse_line(line) == (CASE_ACTIONS, ACTION)
    assert topic_of(ACTION) == CASE_ACTIONS


def test_replay_line_keeps_a_non_utc_offset() -> None:
    summer = action(at=datetime(2025, 6, 2, 9, 0, tzinfo=timezone(timedelta(hours=1))))

    assert record_to_json(summer)["at"] == "2025-06-02T09:00:00+01:00"
    assert parse_line(record_to_line(CASE_ACTIONS, summer))[1] == summer


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"action": "REOPEN"}, CodecErrorCode.BAD_FIELD, "action"),
        ({"at": "half past ten"}, CodecErrorCode.BAD_FIELD, "at"),
        ({"by": None}, CodecErrorCode.MISSING_FIELD, "by"),
    ],
)
def test_replay_line_problems_name_the_field(change: dict[str, object], code: CodecErrorCode, field: str) -> None:
    value = record_to_json(ACTION) | change
    with pytest.raises(CodecError) as raised:
        parse_line(json.dumps({"topic": CASE_ACTIONS, "value": value}))
    assert raised.value.code == code
    assert field in raised.value.message


# --- validation ------------------------------------------------------------------------------------------


def test_a_complete_case_action_is_valid() -> None:
    assert validate(ACTION) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"action_id": "not-a-uuid"}, [(ProblemCode.EVENT_ID_FORMAT, "action_id")]),
        ({"case_id": "CASE-17"}, [(ProblemCode.EVENT_ID_FORMAT, "case_id")]),
        ({"upn": PUPIL[:-1] + "0"}, [(ProblemCode.UPN_CHECK_LETTER, "upn")]),
        ({"reason": "  "}, [(ProblemCode.TEXT_EMPTY, "reason")]),
        ({"reason": "", "by": ""}, [(ProblemCode.TEXT_EMPTY, "reason"), (ProblemCode.TEXT_EMPTY, "by")]),
        ({"at": datetime(1989, 12, 31, tzinfo=UTC)}, [(ProblemCode.DATE_IMPLAUSIBLE, "at")]),
    ],
)
def test_invalid_case_actions_are_named(changes: dict[str, object], expected: list[tuple[ProblemCode, str]]) -> None:
    problems = validate(action(**changes))
    assert [(problem.code, problem.field) for problem in problems] == expected


# --- what a closed case changes in the worker --------------------------------------------------------------


def run(records: list[object]) -> list[tuple[Rule, str | None]]:
    timeline = memory_timeline(RuleConfig(default_calendar()))
    alerts = []
    for record in records:
        if isinstance(record, dict):
            record = parse_line(json.dumps(record))[1]
        alerts.extend(apply_checked(timeline, record))  # type: ignore[arg-type]
    return [(alert.rule, alert.case_id) for alert in alerts]


MISSING = removed(PUPIL, COV_A, "2025-03-04", "G_MOVED_AWAY", destination=UNKNOWN)
FOUND = added(PUPIL, COV_A, "2025-03-10")


def opened_case_id() -> str:
    [(rule, case_id)] = run([MISSING])
    assert rule is Rule.MISSING_NO_DESTINATION and case_id is not None
    return case_id


def test_without_a_close_the_child_is_located() -> None:
    case_id = opened_case_id()

    assert run([MISSING, FOUND]) == [(Rule.MISSING_NO_DESTINATION, case_id), (Rule.CHILD_LOCATED, case_id)]


def test_a_closed_case_raises_no_child_located_on_a_later_added() -> None:
    case_id = opened_case_id()
    close = action(case_id=case_id)

    assert run([MISSING, close, FOUND]) == [(Rule.MISSING_NO_DESTINATION, case_id)]


def test_closing_another_case_id_leaves_the_open_case_alone() -> None:
    case_id = opened_case_id()

    alerts = run([MISSING, action(), FOUND])

    assert alerts == [(Rule.MISSING_NO_DESTINATION, case_id), (Rule.CHILD_LOCATED, case_id)]


def test_the_worker_applies_a_case_action_message_and_dead_letters_a_blank_one() -> None:
    timeline = memory_timeline(RuleConfig(default_calendar()))
    alerts, letters = MemoryAlertSink(), MemoryDeadLetterSink()
    handler = RecordHandler(CODEC, lambda _partition: timeline, alerts, letters, RECORD_TYPES)
    case_id = opened_case_id()
    apply_checked(timeline, parse_line(json.dumps(MISSING))[1])

    blank = asyncio.run(handler.handle(CASE_ACTIONS, 0, 7, PUPIL.encode(), CODEC.encode(action(by=" "))))
    closed = asyncio.run(handler.handle(CASE_ACTIONS, 0, 8, PUPIL.encode(), CODEC.encode(action(case_id=case_id))))
    later = apply_checked(timeline, parse_line(json.dumps(FOUND))[1])

    assert not blank.applied and [letter.error_code for letter in letters.letters] == [ProblemCode.TEXT_EMPTY]
    assert closed.applied and alerts.alerts == []
    assert later == ()
