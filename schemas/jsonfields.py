"""Input records and alerts to and from plain JSON objects, field by field, with structural checks."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Any, TypeVar, cast
from zoneinfo import ZoneInfo

from processors.records import (
    INPUT_RECORD_TYPES,
    Alert,
    InputRecord,
)
from schemas.errors import CodecError, CodecErrorCode
from schemas.mapping import from_fields, load_schema, schema_name, to_fields

JsonObject = dict[str, Any]
E = TypeVar("E", bound=str)

_ZERO_OFFSET = timedelta(0)


# Field readers. `path` is the dotted location of the enclosing object ("" at the top of a record) and
# `context` names the record kind; messages name the field and the problem but never quote the value, which
# may be a child's name, date of birth or postcode.


def _where(context: str, path: str, key: str) -> str:
    return f"{context} field '{path}{key}'"


def _missing(context: str, path: str, key: str) -> CodecError:
    return CodecError(CodecErrorCode.MISSING_FIELD, f"{_where(context, path, key)} is required but absent or null")


def _bad(context: str, path: str, key: str, problem: str) -> CodecError:
    return CodecError(CodecErrorCode.BAD_FIELD, f"{_where(context, path, key)} {problem}")


def _object(obj: JsonObject, key: str, context: str, path: str) -> JsonObject:
    value = obj.get(key)
    if value is None:
        raise _missing(context, path, key)
    if type(value) is not dict:
        raise _bad(context, path, key, "must be a JSON object")
    return value


def _optional_object(obj: JsonObject, key: str, context: str, path: str) -> JsonObject | None:
    value = obj.get(key)
    if value is None or type(value) is dict:
        return value
    raise _bad(context, path, key, "must be a JSON object or null")


# A JSON escape such as \ud800 can put a lone UTF-16 surrogate in a string. No UTF-8 text holds one, so the
# compiled decoder, the Avro codec and any alert reader would refuse it; this reader refuses it too.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(value: str, key: str, context: str, path: str) -> str:
    if not value.isascii() and _LONE_SURROGATE.search(value) is not None:
        raise _bad(context, path, key, "holds a lone surrogate escape (\\ud800-\\udfff), which is not text")
    return value


def _string(obj: JsonObject, key: str, context: str, path: str) -> str:
    value = obj.get(key)
    if type(value) is str:
        return _text(value, key, context, path)
    if value is None:
        raise _missing(context, path, key)
    raise _bad(context, path, key, "must be a string")



def _boolean(obj: JsonObject, key: str, context: str, path: str) -> bool:
    value = obj.get(key)
    if type(value) is bool:
        return value
    if value is None:
        raise _missing(context, path, key)
    raise _bad(context, path, key, "must be true or false")


_LONDON = ZoneInfo("Europe/London")
_BEYOND_MICROSECONDS = re.compile(r"[.,][0-9]{6}([0-9])")
_ONE_MICROSECOND = timedelta(microseconds=1)


def _date(obj: JsonObject, key: str, context: str, path: str) -> date:
    value = obj.get(key)
    if type(value) is str and len(value) == 10 and value[4] == "-" and value[7] == "-":
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    elif value is None:
        raise _missing(context, path, key)
    raise _bad(context, path, key, "must be a calendar date written YYYY-MM-DD")


def _timestamp(obj: JsonObject, key: str, context: str, path: str) -> datetime:
    value = obj.get(key)
    if type(value) is str:
        # RFC 3339 allows a lower-case t and z; fromisoformat does not.
        text = value.replace("t", "T").replace("z", "Z")
        try:
            parsed = datetime.fromisoformat(text)
            beyond = _BEYOND_MICROSECONDS.search(text)
            if beyond is not None and beyond.group(1) >= "5":
                # fromisoformat drops digits past the microsecond; round half up, as the compiled decoder does.
                parsed += _ONE_MICROSECOND
        except (ValueError, OverflowError):  # rounding up the last microsecond of year 9999 overflows
            parsed = None
        if parsed is not None:
            # A timestamp without an offset is an MIS's local time: in England, Europe/London.
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=_LONDON)
    elif value is None:
        raise _missing(context, path, key)
    raise _bad(context, path, key, "must be an ISO-8601 timestamp, e.g. 2025-03-04T09:00:00Z")


def _symbol(obj: JsonObject, key: str, symbols: Mapping[str, E], context: str, path: str) -> E:
    value = obj.get(key)
    member = symbols.get(value) if type(value) is str else None
    if member is not None:
        return member
    if value is None:
        raise _missing(context, path, key)
    raise _bad(context, path, key, f"must be one of {', '.join(symbols)}")



_TOPIC_RECORDS: Mapping[str, type[InputRecord]] = INPUT_RECORD_TYPES
_RECORD_TOPICS: Mapping[type, str] = {record_type: topic for topic, record_type in _TOPIC_RECORDS.items()}


#: Each record's schema, which says what its fields are.
_SCHEMAS: Mapping[type, JsonObject] = {
    record_type: load_schema(schema_name(record_type)) for record_type in (*_TOPIC_RECORDS.values(), Alert)
}


# The Avro schemas say what each field is; the JSON form follows them: a date is `YYYY-MM-DD`, a timestamp
# ISO-8601, an enum its symbol, an optional field omitted or null. Reading checks each field with the readers
# above (so every refusal names its field) and hands the fields to schemas.mapping, which builds the record.


def _read_field(obj: JsonObject, field: JsonObject, context: str, path: str) -> Any:
    key = field["name"]
    kind = field["type"]
    optional = isinstance(kind, list)
    if optional:
        kind = next(branch for branch in kind if branch != "null")
        if obj.get(key) is None:
            return None
    elif obj.get(key) is None and "default" in field:
        return field["default"]
    if kind == "string":
        return _string(obj, key, context, path)
    if kind == "boolean":
        return _boolean(obj, key, context, path)
    if kind.get("logicalType") == "date":
        return _date(obj, key, context, path)
    if kind.get("logicalType", "").startswith("timestamp"):
        return _timestamp(obj, key, context, path)
    if kind["type"] == "enum":
        return _symbol(obj, key, _enum_symbols(tuple(kind["symbols"])), context, path)
    if kind["type"] == "array":
        items = obj.get(key)
        if items is None:
            raise _missing(context, path, key)
        item_kind = kind["items"]
        if item_kind == "string":
            if type(items) is not list or not all(type(item) is str for item in items):
                raise _bad(context, path, key, "must be a list of strings")
            return items
        if type(items) is not list:
            raise _bad(context, path, key, "must be a list of objects")
        read = []
        for position, item in enumerate(items):
            if type(item) is not dict:
                raise _bad(context, path, f"{key}[{position}]", "must be an object")
            read.append(_read_record(item, item_kind, context, f"{path}{key}[{position}]."))
        return read
    nested = _optional_object(obj, key, context, path) if optional else _object(obj, key, context, path)
    return _read_record(nested or {}, kind, context, f"{path}{key}.")


@cache
def _enum_symbols(symbols: tuple[str, ...]) -> dict[str, str]:
    return {symbol: symbol for symbol in symbols}


def _read_record(obj: JsonObject, schema: JsonObject, context: str, path: str) -> JsonObject:
    return {field["name"]: _read_field(obj, field, context, path) for field in schema["fields"]}


def _write_record(fields: JsonObject, schema: JsonObject, keep_nulls: bool) -> JsonObject:
    result: JsonObject = {}
    for field in schema["fields"]:
        key = field["name"]
        value = fields[key]
        if value is None:
            if keep_nulls:
                result[key] = None
            continue
        kind = field["type"]
        if isinstance(kind, list):
            kind = next(branch for branch in kind if branch != "null")
            if isinstance(value, tuple):
                # fastavro's (branch name, value) notation for an optional record or enum.
                value = value[1]
        if isinstance(kind, str):
            result[key] = value
        elif kind.get("logicalType") == "date":
            result[key] = value.isoformat()
        elif kind.get("logicalType", "").startswith("timestamp"):
            result[key] = _timestamp_text(value, key)
        elif kind["type"] == "enum":
            result[key] = value.value if isinstance(value, StrEnum) else value
        elif kind["type"] == "array":
            items = kind["items"]
            result[key] = list(value) if items == "string" else [_write_record(v, items, keep_nulls) for v in value]
        else:
            result[key] = _write_record(value, kind, keep_nulls)
    return result


def record_from_json(topic: str, value: Any) -> InputRecord:
    """The input record of `topic` whose plain-JSON form is `value` (the inverse of `record_to_json`)."""
    record_type = _TOPIC_RECORDS.get(topic)
    if record_type is None:
        raise CodecError(
            CodecErrorCode.UNKNOWN_TOPIC,
            f"topic {topic[:80]!r} is not an input topic; use one of {', '.join(_TOPIC_RECORDS)}",
        )
    if type(value) is not dict:
        raise CodecError(CodecErrorCode.BAD_JSON, f"the {topic} 'value' must be a JSON object")
    return cast(InputRecord, from_fields(record_type, _read_record(value, _SCHEMAS[record_type], topic, "")))


def _timestamp_text(value: datetime, field_name: str) -> str:
    offset = value.utcoffset()
    if offset is None:
        raise CodecError(
            CodecErrorCode.BAD_FIELD,
            f"field '{field_name}' holds a datetime without a timezone; make it aware",
        )
    if offset == _ZERO_OFFSET:
        return value.replace(tzinfo=None).isoformat() + "Z"
    return value.isoformat()


def topic_of(record: InputRecord) -> str:
    """The input topic a record belongs on."""
    topic = _RECORD_TOPICS.get(type(record))
    if topic is None:
        raise CodecError(
            CodecErrorCode.WRONG_RECORD_TYPE,
            f"a {type(record).__name__} is not an input record; expected RollEvent, EHENotification, "
            "SafeguardingStatus, ClockTick, CaseAction, AttendanceRegister or CMEReferral",
        )
    return topic


def record_to_json(record: InputRecord) -> JsonObject:
    """The plain-JSON form of an input record: None optionals omitted, keys in the schema's order."""
    topic_of(record)
    return _write_record(to_fields(record), _SCHEMAS[type(record)], keep_nulls=False)


def record_to_line(topic: str, record: InputRecord) -> str:
    """One replay line for `record` on `topic` (the inverse of `parse_line`), without a newline."""
    expected_topic = topic_of(record)
    if topic != expected_topic:
        raise CodecError(
            CodecErrorCode.WRONG_RECORD_TYPE,
            f"a {type(record).__name__} belongs on {expected_topic}, not {topic[:80]!r}",
        )
    return json.dumps({"topic": topic, "value": record_to_json(record)}, ensure_ascii=False)


def alert_to_json(alert: Alert) -> JsonObject:
    """The plain-JSON form of an alert, every field present (case_id null when there is no case)."""
    return _write_record(to_fields(alert), _SCHEMAS[Alert], keep_nulls=True)


def alert_from_json(value: Any) -> Alert:
    """The alert whose plain-JSON form is `value` (the inverse of `alert_to_json`)."""
    if type(value) is not dict:
        raise CodecError(CodecErrorCode.BAD_JSON, "an alert must be a JSON object")
    return cast(Alert, from_fields(Alert, _read_record(value, _SCHEMAS[Alert], "alert", "")))
