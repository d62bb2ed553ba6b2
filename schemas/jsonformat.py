"""The replay JSON Lines format: lines parsed fast (msgspec) or field by field, routed by child, and alert lines."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import msgspec

from processors.records import (
    ATTENDANCE_REGISTERS,
    CASE_ACTIONS,
    CLOCK_TICKS,
    CME_REFERRALS,
    EHE_NOTIFICATIONS,
    ROLL_EVENTS,
    SAFEGUARDING_STATUS,
    Alert,
    AttendanceRegister,
    CaseAction,
    ClockTick,
    CMEReferral,
    EHENotification,
    InputRecord,
    RollEvent,
    SafeguardingStatus,
)
from schemas.errors import CodecError, CodecErrorCode
from schemas.jsonfields import alert_to_json, record_from_json


class _RollEventLine(msgspec.Struct, tag_field="topic", tag=ROLL_EVENTS):
    value: RollEvent


class _EHENotificationLine(msgspec.Struct, tag_field="topic", tag=EHE_NOTIFICATIONS):
    value: EHENotification


class _SafeguardingStatusLine(msgspec.Struct, tag_field="topic", tag=SAFEGUARDING_STATUS):
    value: SafeguardingStatus


class _ClockTickLine(msgspec.Struct, tag_field="topic", tag=CLOCK_TICKS):
    value: ClockTick


class _CaseActionLine(msgspec.Struct, tag_field="topic", tag=CASE_ACTIONS):
    value: CaseAction


class _AttendanceRegisterLine(msgspec.Struct, tag_field="topic", tag=ATTENDANCE_REGISTERS):
    value: AttendanceRegister


class _CMEReferralLine(msgspec.Struct, tag_field="topic", tag=CME_REFERRALS):
    value: CMEReferral


# Decodes a well-formed line straight into the record dataclasses in C. It accepts only what the field readers
# of schemas.jsonfields accept with the same result (tests/unit/test_jsonformat.py compares the two on valid
# and broken lines); anything it refuses, or a timestamp without an offset, takes the field readers' path,
# which gives the error its code and a message that names the field.
_FAST_LINE = msgspec.json.Decoder(
    _RollEventLine
    | _EHENotificationLine
    | _SafeguardingStatusLine
    | _ClockTickLine
    | _CaseActionLine
    | _AttendanceRegisterLine
    | _CMEReferralLine
)
_TOPIC_OF_LINE: Mapping[type, str] = {
    _RollEventLine: ROLL_EVENTS,
    _EHENotificationLine: EHE_NOTIFICATIONS,
    _SafeguardingStatusLine: SAFEGUARDING_STATUS,
    _ClockTickLine: CLOCK_TICKS,
    _CaseActionLine: CASE_ACTIONS,
    _AttendanceRegisterLine: ATTENDANCE_REGISTERS,
    _CMEReferralLine: CME_REFERRALS,
}


def _offset_missing(record: InputRecord) -> bool:
    kind = type(record)
    if kind is RollEvent:
        return record.recorded_at.tzinfo is None  # type: ignore[union-attr]
    if kind is SafeguardingStatus:
        return record.updated_at.tzinfo is None  # type: ignore[union-attr]
    if kind is CaseAction:
        return record.at.tzinfo is None  # type: ignore[union-attr]
    if kind is AttendanceRegister:
        return record.recorded_at.tzinfo is None  # type: ignore[union-attr]
    return False


def parse_line(line: str | bytes) -> tuple[str, InputRecord]:
    """One replay line `{"topic": ..., "value": {...}}` as its topic and input record.

    Raises CodecError, and nothing else, for any line that is not one: not UTF-8, not JSON, or not a record.
    A byte-order mark at the start of the line, as some editors write at the start of a file, is ignored."""
    try:
        decoded = _FAST_LINE.decode(line)
    except Exception:
        # Besides its own errors, the decoder raises UnicodeError on bytes that are not UTF-8 and on text
        # holding a lone surrogate: the field readers give each its code and message.
        return parse_line_by_fields(line)
    record: InputRecord = decoded.value
    if _offset_missing(record):
        return parse_line_by_fields(line)
    return _TOPIC_OF_LINE[type(decoded)], record


def parse_line_by_fields(line: str | bytes) -> tuple[str, InputRecord]:
    """parse_line field by field in Python: slower, and the source of every error's code and message."""
    try:
        return _parse_by_fields(line)
    except CodecError:
        raise
    except Exception as error:
        # Whatever a hostile line does to a reader, it is one bad line, refused with a code, never a crash.
        raise CodecError(CodecErrorCode.BAD_JSON, f"line could not be read ({type(error).__name__})") from None


_BOM = "\ufeff"


def _not_json(constant: str) -> float:
    raise CodecError(CodecErrorCode.BAD_JSON, "line is not valid JSON (NaN and Infinity are not JSON numbers)")


def _integer(digits: str) -> int | float:
    # Past Python's limit on digits int() refuses; a float (infinite) is what the compiled decoder reads.
    try:
        return int(digits)
    except ValueError:
        return float(digits)


def _parse_by_fields(line: str | bytes) -> tuple[str, InputRecord]:
    if isinstance(line, bytes):
        # Decoded here, strictly: json.loads would guess UTF-16 or UTF-32 from the bytes, which no shard's
        # router reads.
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise CodecError(CodecErrorCode.BAD_JSON, "line is not UTF-8 text") from None
    else:
        text = line
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise CodecError(CodecErrorCode.BAD_JSON, "line is not UTF-8 text (it holds a lone surrogate)") from None
    if text.startswith(_BOM):
        text = text[1:]
    try:
        envelope = json.loads(text, parse_constant=_not_json, parse_int=_integer)
    except (ValueError, RecursionError) as error:
        if isinstance(error, CodecError):
            raise
        raise CodecError(CodecErrorCode.BAD_JSON, "line is not valid JSON") from None
    if type(envelope) is not dict:
        raise CodecError(CodecErrorCode.BAD_JSON, 'line must be a JSON object {"topic": ..., "value": {...}}')
    topic = envelope.get("topic")
    if type(topic) is not str:
        raise CodecError(CodecErrorCode.BAD_JSON, "line needs a string 'topic' naming an input topic")
    if "value" not in envelope:
        raise CodecError(CodecErrorCode.BAD_JSON, "line needs a 'value' object holding the record")
    record = record_from_json(topic, envelope["value"])
    # Parallel replay sends each line to a shard by line_owner alone; a line it would read as another
    # child's (a repeated key read differently, say) is refused here, so every process count gives one result.
    owner: object
    try:
        owner = line_owner(text)
    except CodecError:
        owner = _NO_OWNER
    if owner != record_owner(record):
        raise CodecError(
            CodecErrorCode.BAD_JSON,
            "line's topic or UPN cannot be read unambiguously (a key written twice, or a value that is not "
            "plain JSON); write each key once",
        )
    return topic, record


class _Owner(msgspec.Struct):
    # Any value: a tick carrying a stray non-text "upn" is still a tick.
    upn: Any = None
    referral_id: Any = None


class _Route(msgspec.Struct):
    topic: str
    value: _Owner


# Reads only the topic and the UPN and skips the rest in C.
_ROUTE = msgspec.json.Decoder(_Route)
_NO_OWNER = object()


def line_owner(line: str | bytes) -> str | None:
    """The UPN of the child a replay line concerns (for a referral or case action without one, its referral
    id), or None for a tick or a register (which concern many), read from its topic and those ids only;
    raises CodecError when the line names none.

    The line is decoded as JSON (not searched for text), so a UPN written with escapes is still its child's and
    a field that merely mentions a topic cannot pass for one. For every line parse_line accepts, this is
    record_owner of its record."""
    try:
        route = _ROUTE.decode(line)
    except Exception:
        if isinstance(line, bytes) and line.startswith(b"\xef\xbb\xbf"):
            return line_owner(line[3:])
        if isinstance(line, str) and line.startswith(_BOM):
            return line_owner(line[1:])
        raise CodecError(CodecErrorCode.BAD_JSON, "line has no readable topic and value") from None
    if route.topic in _EVERY_CHILD:
        return None
    upn = route.value.upn
    if upn is None and route.topic in _KEYED_BY_REFERRAL:
        upn = route.value.referral_id
        if upn is None:
            # A case action naming neither: validation refuses it (ACTION_INCOMPLETE) wherever it is read.
            return None
    if type(upn) is not str:
        raise CodecError(CodecErrorCode.BAD_JSON, "line has no text 'upn' to route it by")
    return upn


#: Topics whose records concern many children: a tick every child, a register each child it marks (every
#: shard reads it and applies the marks of its own children).
_EVERY_CHILD = frozenset({CLOCK_TICKS, ATTENDANCE_REGISTERS})
#: Topics whose records without a UPN belong to the case of their referral, keyed by its referral id.
_KEYED_BY_REFERRAL = frozenset({CME_REFERRALS, CASE_ACTIONS})


def record_owner(record: InputRecord) -> str | None:
    """The UPN of the child a record concerns (else its referral id), or None for a record about many (a tick,
    a register)."""
    if type(record) in (ClockTick, AttendanceRegister):
        return None
    if type(record) in (CMEReferral, CaseAction) and record.upn is None:  # type: ignore[union-attr]
        return record.referral_id  # type: ignore[union-attr]
    return record.upn  # type: ignore[union-attr]


_encode_json = msgspec.json.Encoder().encode


def alert_to_line(alert: Alert) -> bytes:
    """One alerts JSON Lines line for `alert`: compact UTF-8 JSON, without a newline."""
    return _encode_json(alert_to_json(alert))
