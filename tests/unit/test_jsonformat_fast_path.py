"""The compiled line decoder against the field-by-field reader: same record, or the same error, for any line."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from schemas.errors import CodecError
from schemas.jsonformat import parse_line, parse_line_by_fields
from tests.unit.test_jsonformat import REMOVAL_LINE

# The removal line of the format tests, with a destination that fills every destination field.
ROLL_LINE: dict[str, Any] = {
    "topic": REMOVAL_LINE["topic"],
    "value": {
        **REMOVAL_LINE["value"],
        "event_id": "8d3c1f0e-2b1a-4c55-9a57-6a5f9d1e2c11",
        "destination": {"kind": "OTHER_LA", "school_urn": "150001", "school_laestab": "3304001", "la_code": "330"},
    },
}
EHE_LINE: dict[str, Any] = {
    "topic": "ehe.notifications",
    "value": {
        "notification_id": "n-1", "upn": "W330215224052", "la_code": "333", "method": "WRITTEN",
        "received_on": "2025-03-04", "school_urn": "140401",
    },
}
STATUS_LINE: dict[str, Any] = {
    "topic": "safeguarding.status",
    "value": {
        "upn": "W330215224052", "la_code": "333", "child_protection_plan": True, "looked_after": False,
        "school_attendance_order": False, "social_worker": {"name": "Sam Worker", "email": "sam@la333.example.org"},
        "updated_at": "2025-03-04T09:00:00+01:00",
    },
}
TICK_LINE: dict[str, Any] = {"topic": "clock.ticks", "value": {"today": "2025-03-04"}}
ACTION_LINE: dict[str, Any] = {
    "topic": "case.actions",
    "value": {
        "action_id": "a-1", "upn": "W330215224052", "case_id": "c-1", "action": "CLOSE",
        "reason": "found at a school in Wales", "by": "officer@la333.example.org", "at": "2025-03-05T10:00:00Z",
    },
}
REFERRAL_LINE: dict[str, Any] = {
    "topic": "cme.referrals",
    "value": {
        "referral_id": "00000000-0000-4000-b000-000000000001", "received_on": "2025-01-15", "la_code": "336",
        "upn": "W330215224052",
        "child": {"forename": "Zo\u00eb", "surname": "O'Connor", "date_of_birth": "2013-02-21", "postcode": "B66 1AA"},
        "concern": "EDUCATION_UNSUITABLE", "details": "Seen at home\non school days.",
        "referrer": {"agency": "HEALTH", "name": "A Nurse", "contact": "hv@example.org"},
    },
}
NOTE_LINE: dict[str, Any] = {
    "topic": "case.actions",
    "value": {
        "action_id": "a-2", "case_id": "c-1", "action": "NOTE", "reason": "two calls, no answer",
        "by": "officer@la333.example.org", "at": "2025-03-05T10:00:00Z",
        "referral_id": "00000000-0000-4000-b000-000000000001",
        "enquiry": {"kind": "FAMILY_CONTACTED", "outcome": "no answer"},
        "close_reason": "OTHER", "assignee": "officer2", "la_code": "333",
    },
}
LINES = [ROLL_LINE, EHE_LINE, STATUS_LINE, TICK_LINE, ACTION_LINE, REFERRAL_LINE, NOTE_LINE]

# Values a sender might put in any field: every JSON type, empty and odd strings, near-miss dates and times.
ODD_VALUES: list[Any] = [
    None, True, False, 0, 1, -1, 1.5, "", " ", "x", [], {}, ["a"], {"a": 1},
    "2025-03-04", "2025-3-4", "2025-02-30", "20250304", "2025-03-04 ", "04/03/2025",
    "2025-03-04T09:00:00Z", "2025-03-04T09:00:00", "2025-03-04T09:00:00+01:00", "2025-03-04T09:00:00-05:30",
    "2025-03-04T09:00:00.123456Z", "2025-03-04T09:00:00.1234567Z", "2025-03-04T09:00Z", "2025-03-04T09Z",
    "2025-03-04 09:00:00Z", "2025-03-04t09:00:00z", "2025-03-04T24:00:00Z", "2025-03-04T23:59:60Z",
    "2025-03-04T09:00:00+00:00", "2025-03-04T09:00:00+0100", "2025-03-04T09:00:00+01", "2025-03-04T09:00:00+25:00",
    "2025-03-04T09:00:00.Z", "2025-03-04T09:00:00,5Z", "+2025-03-04", "2025-W10-2", "2025-063",
    "ADDED", "REMOVED", "added", "WRITTEN", "CLOSE", "UNKNOWN", "F_HOME_EDUCATION", "SCHOOL",
    "true", "null", "\u00e9", "\ud83d\ude00", "\ud800", "x\udfff",
]


def _leaves(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*path, key)
            yield from _leaves(item, (*path, key))


def _with(line: dict[str, Any], path: tuple[str, ...], new_value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(line)
    target = changed
    for key in path[:-1]:
        target = target[key]
    if new_value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = new_value
    return changed


def _outcome(parse: Any, text: str | bytes) -> tuple[str, ...]:
    try:
        topic, record = parse(text)
    except CodecError as error:
        return ("error", str(error.code), str(error))
    # repr, not ==: equal datetimes may still differ in their offset, which the alerts' text would show.
    return ("record", topic, repr(record))


def _variants() -> Iterator[str]:
    for line in LINES:
        yield json.dumps(line)
        for path in _leaves(line):
            yield json.dumps(_with(line, path, ...))
            for odd in ODD_VALUES:
                yield json.dumps(_with(line, path, odd))
        yield json.dumps({**line, "extra": 1})
        yield json.dumps({"value": line["value"], "topic": line["topic"]})
        yield json.dumps(line)[:-1]
    yield from ["", "null", "[]", "{}", '{"topic": "roll.events"}', '{"topic": 5, "value": {}}', "\u00ff", "{,}"]


def test_the_variants_cover_both_paths() -> None:
    outcomes = [_outcome(parse_line_by_fields, text)[0] for text in _variants()]
    assert outcomes.count("record") > 100
    assert outcomes.count("error") > 1000


def test_fast_decoder_gives_the_same_record_or_the_same_error_as_the_field_reader() -> None:
    disagreements = [
        (text, _outcome(parse_line, text), _outcome(parse_line_by_fields, text))
        for text in _variants()
        if _outcome(parse_line, text) != _outcome(parse_line_by_fields, text)
    ]
    assert disagreements == []


@pytest.mark.parametrize("line", LINES, ids=[line["topic"] for line in LINES])
def test_bytes_and_text_lines_parse_alike(line: dict[str, Any]) -> None:
    text = json.dumps(line, ensure_ascii=False)
    assert _outcome(parse_line, text.encode()) == _outcome(parse_line, text) == _outcome(parse_line_by_fields, text)


def test_invalid_utf8_is_bad_json() -> None:
    outcome = _outcome(parse_line, b'{"topic": "clock.ticks", "value": {"today": "\xff"}}')
    assert outcome[:2] == ("error", "BAD_JSON")
