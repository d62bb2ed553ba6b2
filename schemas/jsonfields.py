"""Input records and alerts to and from plain JSON objects, field by field, with structural checks."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from processors.records import (
    CASE_ACTIONS,
    CLOCK_TICKS,
    EHE_NOTIFICATIONS,
    ROLL_EVENTS,
    SAFEGUARDING_STATUS,
    Alert,
    AlertChild,
    CaseAction,
    CaseActionType,
    Child,
    ClockTick,
    Destination,
    DestinationKind,
    EHEMethod,
    EHENotification,
    EventType,
    Ground,
    InputRecord,
    Recipient,
    RollEvent,
    Rule,
    SafeguardingStatus,
    School,
    Severity,
    SocialWorker,
)
from schemas.errors import CodecError, CodecErrorCode

JsonObject = dict[str, Any]
E = TypeVar("E", bound=StrEnum)

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


def _optional_string(obj: JsonObject, key: str, context: str, path: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return value
    if type(value) is str:
        return _text(value, key, context, path)
    raise _bad(context, path, key, "must be a string or null")


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


def _optional_symbol(obj: JsonObject, key: str, symbols: Mapping[str, E], context: str, path: str) -> E | None:
    if obj.get(key) is None:
        return None
    return _symbol(obj, key, symbols, context, path)


def _symbols(enum_type: type[E]) -> dict[str, E]:
    return {member.value: member for member in enum_type}


_EVENT_TYPES = _symbols(EventType)
_GROUNDS = _symbols(Ground)
_DESTINATION_KINDS = _symbols(DestinationKind)
_EHE_METHODS = _symbols(EHEMethod)
_RULES = _symbols(Rule)
_RECIPIENTS = _symbols(Recipient)
_SEVERITIES = _symbols(Severity)
_CASE_ACTION_TYPES = _symbols(CaseActionType)

def _roll_event_from_json(value: JsonObject) -> RollEvent:
    ctx = ROLL_EVENTS
    child = _object(value, "child", ctx, "")
    school = _object(value, "school", ctx, "")
    destination = _optional_object(value, "destination", ctx, "")
    standard_transition = value.get("standard_transition")
    return RollEvent(
        event_id=_string(value, "event_id", ctx, ""),
        event_type=_symbol(value, "event_type", _EVENT_TYPES, ctx, ""),
        upn=_string(value, "upn", ctx, ""),
        child=Child(
            forename=_string(child, "forename", ctx, "child."),
            surname=_string(child, "surname", ctx, "child."),
            date_of_birth=_date(child, "date_of_birth", ctx, "child."),
            postcode=_optional_string(child, "postcode", ctx, "child."),
        ),
        school=School(
            urn=_string(school, "urn", ctx, "school."),
            laestab=_string(school, "laestab", ctx, "school."),
            name=_string(school, "name", ctx, "school."),
            special=_boolean(school, "special", ctx, "school."),
        ),
        effective_date=_date(value, "effective_date", ctx, ""),
        recorded_at=_timestamp(value, "recorded_at", ctx, ""),
        source_system=_string(value, "source_system", ctx, ""),
        ground=_optional_symbol(value, "ground", _GROUNDS, ctx, ""),
        destination=None if destination is None else _destination_from_json(destination),
        standard_transition=False if standard_transition is None else _boolean(value, "standard_transition", ctx, ""),
    )


def _destination_from_json(destination: JsonObject) -> Destination:
    ctx = ROLL_EVENTS
    return Destination(
        kind=_symbol(destination, "kind", _DESTINATION_KINDS, ctx, "destination."),
        school_urn=_optional_string(destination, "school_urn", ctx, "destination."),
        school_laestab=_optional_string(destination, "school_laestab", ctx, "destination."),
        la_code=_optional_string(destination, "la_code", ctx, "destination."),
    )


def _ehe_notification_from_json(value: JsonObject) -> EHENotification:
    ctx = EHE_NOTIFICATIONS
    return EHENotification(
        notification_id=_string(value, "notification_id", ctx, ""),
        upn=_string(value, "upn", ctx, ""),
        la_code=_string(value, "la_code", ctx, ""),
        method=_symbol(value, "method", _EHE_METHODS, ctx, ""),
        received_on=_date(value, "received_on", ctx, ""),
        school_urn=_optional_string(value, "school_urn", ctx, ""),
    )


def _safeguarding_status_from_json(value: JsonObject) -> SafeguardingStatus:
    ctx = SAFEGUARDING_STATUS
    worker = _optional_object(value, "social_worker", ctx, "")
    return SafeguardingStatus(
        upn=_string(value, "upn", ctx, ""),
        la_code=_string(value, "la_code", ctx, ""),
        child_protection_plan=_boolean(value, "child_protection_plan", ctx, ""),
        looked_after=_boolean(value, "looked_after", ctx, ""),
        school_attendance_order=_boolean(value, "school_attendance_order", ctx, ""),
        updated_at=_timestamp(value, "updated_at", ctx, ""),
        social_worker=None
        if worker is None
        else SocialWorker(
            name=_string(worker, "name", ctx, "social_worker."),
            email=_string(worker, "email", ctx, "social_worker."),
        ),
    )


def _clock_tick_from_json(value: JsonObject) -> ClockTick:
    return ClockTick(today=_date(value, "today", CLOCK_TICKS, ""))


def _case_action_from_json(value: JsonObject) -> CaseAction:
    ctx = CASE_ACTIONS
    return CaseAction(
        action_id=_string(value, "action_id", ctx, ""),
        upn=_string(value, "upn", ctx, ""),
        case_id=_string(value, "case_id", ctx, ""),
        action=_symbol(value, "action", _CASE_ACTION_TYPES, ctx, ""),
        reason=_string(value, "reason", ctx, ""),
        by=_string(value, "by", ctx, ""),
        at=_timestamp(value, "at", ctx, ""),
    )


_PARSERS: Mapping[str, Callable[[JsonObject], InputRecord]] = {
    ROLL_EVENTS: _roll_event_from_json,
    EHE_NOTIFICATIONS: _ehe_notification_from_json,
    SAFEGUARDING_STATUS: _safeguarding_status_from_json,
    CLOCK_TICKS: _clock_tick_from_json,
    CASE_ACTIONS: _case_action_from_json,
}


def record_from_json(topic: str, value: Any) -> InputRecord:
    """The input record of `topic` whose plain-JSON form is `value` (the inverse of `record_to_json`)."""
    parser = _PARSERS.get(topic)
    if parser is None:
        raise CodecError(
            CodecErrorCode.UNKNOWN_TOPIC,
            f"topic {topic[:80]!r} is not an input topic; use one of {', '.join(_PARSERS)}",
        )
    if type(value) is not dict:
        raise CodecError(CodecErrorCode.BAD_JSON, f"the {topic} 'value' must be a JSON object")
    return parser(value)

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


def _roll_event_to_json(event: RollEvent) -> JsonObject:
    child = event.child
    school = event.school
    child_json: JsonObject = {
        "forename": child.forename,
        "surname": child.surname,
        "date_of_birth": child.date_of_birth.isoformat(),
    }
    if child.postcode is not None:
        child_json["postcode"] = child.postcode
    result: JsonObject = {
        "event_id": event.event_id,
        "event_type": event.event_type.value,
        "upn": event.upn,
        "child": child_json,
        "school": {
            "urn": school.urn,
            "laestab": school.laestab,
            "name": school.name,
            "special": school.special,
        },
        "effective_date": event.effective_date.isoformat(),
        "recorded_at": _timestamp_text(event.recorded_at, "recorded_at"),
        "standard_transition": event.standard_transition,
        "source_system": event.source_system,
    }
    if event.ground is not None:
        result["ground"] = event.ground.value
    destination = event.destination
    if destination is not None:
        destination_json: JsonObject = {"kind": destination.kind.value}
        if destination.school_urn is not None:
            destination_json["school_urn"] = destination.school_urn
        if destination.school_laestab is not None:
            destination_json["school_laestab"] = destination.school_laestab
        if destination.la_code is not None:
            destination_json["la_code"] = destination.la_code
        result["destination"] = destination_json
    return result


def _ehe_notification_to_json(notification: EHENotification) -> JsonObject:
    result: JsonObject = {
        "notification_id": notification.notification_id,
        "upn": notification.upn,
        "la_code": notification.la_code,
        "method": notification.method.value,
        "received_on": notification.received_on.isoformat(),
    }
    if notification.school_urn is not None:
        result["school_urn"] = notification.school_urn
    return result


def _safeguarding_status_to_json(status: SafeguardingStatus) -> JsonObject:
    result: JsonObject = {
        "upn": status.upn,
        "la_code": status.la_code,
        "child_protection_plan": status.child_protection_plan,
        "looked_after": status.looked_after,
        "school_attendance_order": status.school_attendance_order,
    }
    if status.social_worker is not None:
        result["social_worker"] = {"name": status.social_worker.name, "email": status.social_worker.email}
    result["updated_at"] = _timestamp_text(status.updated_at, "updated_at")
    return result


def _clock_tick_to_json(tick: ClockTick) -> JsonObject:
    return {"today": tick.today.isoformat()}


def _case_action_to_json(action: CaseAction) -> JsonObject:
    return {
        "action_id": action.action_id,
        "upn": action.upn,
        "case_id": action.case_id,
        "action": action.action.value,
        "reason": action.reason,
        "by": action.by,
        "at": _timestamp_text(action.at, "at"),
    }


_TOPICS_AND_WRITERS: Mapping[type, tuple[str, Callable[[Any], JsonObject]]] = {
    RollEvent: (ROLL_EVENTS, _roll_event_to_json),
    EHENotification: (EHE_NOTIFICATIONS, _ehe_notification_to_json),
    SafeguardingStatus: (SAFEGUARDING_STATUS, _safeguarding_status_to_json),
    ClockTick: (CLOCK_TICKS, _clock_tick_to_json),
    CaseAction: (CASE_ACTIONS, _case_action_to_json),
}


def _topic_and_writer(record: object) -> tuple[str, Callable[[Any], JsonObject]]:
    entry = _TOPICS_AND_WRITERS.get(type(record))
    if entry is None:
        raise CodecError(
            CodecErrorCode.WRONG_RECORD_TYPE,
            f"a {type(record).__name__} is not an input record; expected RollEvent, EHENotification, "
            "SafeguardingStatus, ClockTick or CaseAction",
        )
    return entry


def topic_of(record: InputRecord) -> str:
    """The input topic a record belongs on."""
    return _topic_and_writer(record)[0]


def record_to_json(record: InputRecord) -> JsonObject:
    """The plain-JSON form of an input record: None optionals omitted, keys in a fixed order."""
    return _topic_and_writer(record)[1](record)


def record_to_line(topic: str, record: InputRecord) -> str:
    """One replay line for `record` on `topic` (the inverse of `parse_line`), without a newline."""
    expected_topic, writer = _topic_and_writer(record)
    if topic != expected_topic:
        raise CodecError(
            CodecErrorCode.WRONG_RECORD_TYPE,
            f"a {type(record).__name__} belongs on {expected_topic}, not {topic[:80]!r}",
        )
    return json.dumps({"topic": topic, "value": writer(record)}, ensure_ascii=False)


def alert_to_json(alert: Alert) -> JsonObject:
    """The plain-JSON form of an alert, every field present (case_id null when there is no case)."""
    child = alert.child
    return {
        "alert_id": alert.alert_id,
        "rule": alert.rule.value,
        "recipient": alert.recipient.value,
        "la_code": alert.la_code,
        "severity": alert.severity.value,
        "upn": alert.upn,
        "child": {
            "forename": child.forename,
            "surname": child.surname,
            "date_of_birth": child.date_of_birth.isoformat(),
        },
        "school_urn": alert.school_urn,
        "case_id": alert.case_id,
        "raised_on": alert.raised_on.isoformat(),
        "reason": alert.reason,
        "trigger_event_ids": list(alert.trigger_event_ids),
    }


def alert_from_json(value: Any) -> Alert:
    """The alert whose plain-JSON form is `value` (the inverse of `alert_to_json`)."""
    ctx = "alert"
    if type(value) is not dict:
        raise CodecError(CodecErrorCode.BAD_JSON, "an alert must be a JSON object")
    child = _object(value, "child", ctx, "")
    trigger_event_ids = value.get("trigger_event_ids")
    if trigger_event_ids is None:
        raise _missing(ctx, "", "trigger_event_ids")
    if type(trigger_event_ids) is not list or not all(type(item) is str for item in trigger_event_ids):
        raise _bad(ctx, "", "trigger_event_ids", "must be a list of strings")
    return Alert(
        alert_id=_string(value, "alert_id", ctx, ""),
        rule=_symbol(value, "rule", _RULES, ctx, ""),
        recipient=_symbol(value, "recipient", _RECIPIENTS, ctx, ""),
        la_code=_string(value, "la_code", ctx, ""),
        severity=_symbol(value, "severity", _SEVERITIES, ctx, ""),
        upn=_string(value, "upn", ctx, ""),
        child=AlertChild(
            forename=_string(child, "forename", ctx, "child."),
            surname=_string(child, "surname", ctx, "child."),
            date_of_birth=_date(child, "date_of_birth", ctx, "child."),
        ),
        school_urn=_string(value, "school_urn", ctx, ""),
        raised_on=_date(value, "raised_on", ctx, ""),
        reason=_string(value, "reason", ctx, ""),
        trigger_event_ids=tuple(trigger_event_ids),
        case_id=_optional_string(value, "case_id", ctx, ""),
    )
