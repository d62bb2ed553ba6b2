"""Each record's fields, mapped once: a domain record to the plain fields its Avro schema names, and back.

The Avro codec writes and reads these fields; the replay JSON format writes and reads them by walking the same
schemas (schemas/jsonfields.py); so a field is named and converted in one place."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, cast

from processors.records import (
    Alert,
    AlertChild,
    AttendanceMark,
    AttendanceRegister,
    CaseAction,
    CaseActionType,
    CaseEnquiry,
    Child,
    ClockTick,
    CloseReason,
    CMEReferral,
    DeadLetter,
    Destination,
    DestinationKind,
    EHEMethod,
    EHENotification,
    EnquiryKind,
    EventType,
    Ground,
    Recipient,
    ReferralChild,
    ReferralConcern,
    Referrer,
    ReferrerAgency,
    RollEvent,
    Rule,
    SafeguardingStatus,
    School,
    Severity,
    SocialWorker,
)

NAMESPACE = "uk.rollwatch"

AvroDict = dict[str, Any]
AvroRecord = (
    RollEvent
    | EHENotification
    | SafeguardingStatus
    | ClockTick
    | CaseAction
    | AttendanceRegister
    | CMEReferral
    | Alert
    | DeadLetter
)

# Naming the union branch of an optional nested record (fastavro's tuple notation) saves fastavro from
# trying the datum against each branch, a third of the cost of encoding a RollEvent.
_DESTINATION_BRANCH = f"{NAMESPACE}.Destination"
_SOCIAL_WORKER_BRANCH = f"{NAMESPACE}.SocialWorker"
_ALERT_CHILD_BRANCH = f"{NAMESPACE}.AlertChild"
_CLOSE_REASON_BRANCH = f"{NAMESPACE}.CloseReason"
_CASE_ENQUIRY_BRANCH = f"{NAMESPACE}.CaseEnquiry"

# Enum lookups by symbol: a dict hit is several times cheaper than calling the enum class.
_EVENT_TYPES = {member.value: member for member in EventType}
_GROUNDS = {member.value: member for member in Ground}
_DESTINATION_KINDS = {member.value: member for member in DestinationKind}
_EHE_METHODS = {member.value: member for member in EHEMethod}
_RULES = {member.value: member for member in Rule}
_RECIPIENTS = {member.value: member for member in Recipient}
_SEVERITIES = {member.value: member for member in Severity}
_CASE_ACTION_TYPES = {member.value: member for member in CaseActionType}
_CLOSE_REASONS = {member.value: member for member in CloseReason}
_ENQUIRY_KINDS = {member.value: member for member in EnquiryKind}
_CONCERNS = {member.value: member for member in ReferralConcern}
_AGENCIES = {member.value: member for member in ReferrerAgency}


def _school_to_avro(school: School) -> AvroDict:
    return {"urn": school.urn, "laestab": school.laestab, "name": school.name, "special": school.special}


def _school_from_avro(school: AvroDict) -> School:
    return School(urn=school["urn"], laestab=school["laestab"], name=school["name"], special=school["special"])


def _roll_event_to_avro(event: RollEvent) -> AvroDict:
    child = event.child
    destination = event.destination
    return {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "upn": event.upn,
        "child": {
            "forename": child.forename,
            "surname": child.surname,
            "date_of_birth": child.date_of_birth,
            "postcode": child.postcode,
        },
        "school": _school_to_avro(event.school),
        "effective_date": event.effective_date,
        "recorded_at": event.recorded_at,
        "ground": event.ground,
        "destination": None
        if destination is None
        else (
            _DESTINATION_BRANCH,
            {
                "kind": destination.kind,
                "school_urn": destination.school_urn,
                "school_laestab": destination.school_laestab,
                "la_code": destination.la_code,
            },
        ),
        "standard_transition": event.standard_transition,
        "source_system": event.source_system,
    }


def _roll_event_from_avro(fields: AvroDict) -> RollEvent:
    child = fields["child"]
    ground = fields["ground"]
    destination = fields["destination"]
    return RollEvent(
        event_id=fields["event_id"],
        event_type=_EVENT_TYPES[fields["event_type"]],
        upn=fields["upn"],
        child=Child(
            forename=child["forename"],
            surname=child["surname"],
            date_of_birth=child["date_of_birth"],
            postcode=child["postcode"],
        ),
        school=_school_from_avro(fields["school"]),
        effective_date=fields["effective_date"],
        recorded_at=fields["recorded_at"],
        source_system=fields["source_system"],
        ground=None if ground is None else _GROUNDS[ground],
        destination=None
        if destination is None
        else Destination(
            kind=_DESTINATION_KINDS[destination["kind"]],
            school_urn=destination["school_urn"],
            school_laestab=destination["school_laestab"],
            la_code=destination["la_code"],
        ),
        standard_transition=fields["standard_transition"],
    )


def _ehe_notification_to_avro(notification: EHENotification) -> AvroDict:
    return {
        "notification_id": notification.notification_id,
        "upn": notification.upn,
        "la_code": notification.la_code,
        "school_urn": notification.school_urn,
        "method": notification.method,
        "received_on": notification.received_on,
    }


def _ehe_notification_from_avro(fields: AvroDict) -> EHENotification:
    return EHENotification(
        notification_id=fields["notification_id"],
        upn=fields["upn"],
        la_code=fields["la_code"],
        method=_EHE_METHODS[fields["method"]],
        received_on=fields["received_on"],
        school_urn=fields["school_urn"],
    )


def _safeguarding_status_to_avro(status: SafeguardingStatus) -> AvroDict:
    worker = status.social_worker
    return {
        "upn": status.upn,
        "la_code": status.la_code,
        "child_protection_plan": status.child_protection_plan,
        "looked_after": status.looked_after,
        "school_attendance_order": status.school_attendance_order,
        "social_worker": None
        if worker is None
        else (_SOCIAL_WORKER_BRANCH, {"name": worker.name, "email": worker.email}),
        "updated_at": status.updated_at,
    }


def _safeguarding_status_from_avro(fields: AvroDict) -> SafeguardingStatus:
    worker = fields["social_worker"]
    return SafeguardingStatus(
        upn=fields["upn"],
        la_code=fields["la_code"],
        child_protection_plan=fields["child_protection_plan"],
        looked_after=fields["looked_after"],
        school_attendance_order=fields["school_attendance_order"],
        updated_at=fields["updated_at"],
        social_worker=None if worker is None else SocialWorker(name=worker["name"], email=worker["email"]),
    )


def _clock_tick_to_avro(tick: ClockTick) -> AvroDict:
    return {"today": tick.today}


def _clock_tick_from_avro(fields: AvroDict) -> ClockTick:
    return ClockTick(today=fields["today"])


def _case_action_to_avro(action: CaseAction) -> AvroDict:
    return {
        "action_id": action.action_id,
        "upn": action.upn,
        "case_id": action.case_id,
        "action": action.action,
        "reason": action.reason,
        "by": action.by,
        "at": action.at,
        "referral_id": action.referral_id,
        "close_reason": None if action.close_reason is None else (_CLOSE_REASON_BRANCH, action.close_reason),
        "enquiry": None
        if action.enquiry is None
        else (_CASE_ENQUIRY_BRANCH, {"kind": action.enquiry.kind, "outcome": action.enquiry.outcome}),
        "assignee": action.assignee,
        "la_code": action.la_code,
    }


def _case_action_from_avro(fields: AvroDict) -> CaseAction:
    return CaseAction(
        action_id=fields["action_id"],
        upn=fields["upn"],
        case_id=fields["case_id"],
        action=_CASE_ACTION_TYPES[fields["action"]],
        reason=fields["reason"],
        by=fields["by"],
        at=fields["at"],
        referral_id=fields.get("referral_id"),
        close_reason=None if fields.get("close_reason") is None else _CLOSE_REASONS[fields["close_reason"]],
        enquiry=None
        if (enquiry := fields.get("enquiry")) is None
        else CaseEnquiry(kind=_ENQUIRY_KINDS[enquiry["kind"]], outcome=enquiry["outcome"]),
        assignee=fields.get("assignee"),
        la_code=fields.get("la_code"),
    )


def _referral_to_avro(referral: CMEReferral) -> AvroDict:
    child, referrer = referral.child, referral.referrer
    return {
        "referral_id": referral.referral_id,
        "received_on": referral.received_on,
        "la_code": referral.la_code,
        "upn": referral.upn,
        "child": {
            "forename": child.forename,
            "surname": child.surname,
            "date_of_birth": child.date_of_birth,
            "postcode": child.postcode,
        },
        "concern": referral.concern,
        "details": referral.details,
        "referrer": {"agency": referrer.agency, "name": referrer.name, "contact": referrer.contact},
    }


def _referral_from_avro(fields: AvroDict) -> CMEReferral:
    child, referrer = fields["child"], fields["referrer"]
    return CMEReferral(
        referral_id=fields["referral_id"],
        received_on=fields["received_on"],
        la_code=fields["la_code"],
        upn=fields["upn"],
        child=ReferralChild(
            forename=child["forename"],
            surname=child["surname"],
            date_of_birth=child["date_of_birth"],
            postcode=child["postcode"],
        ),
        concern=_CONCERNS[fields["concern"]],
        details=fields["details"],
        referrer=Referrer(agency=_AGENCIES[referrer["agency"]], name=referrer["name"], contact=referrer["contact"]),
    )


def _attendance_register_to_avro(register: AttendanceRegister) -> AvroDict:
    return {
        "register_id": register.register_id,
        "school": _school_to_avro(register.school),
        "date": register.date,
        "recorded_at": register.recorded_at,
        "marks": [{"upn": mark.upn, "am": mark.am, "pm": mark.pm} for mark in register.marks],
    }


def _attendance_register_from_avro(fields: AvroDict) -> AttendanceRegister:
    return AttendanceRegister(
        register_id=fields["register_id"],
        school=_school_from_avro(fields["school"]),
        date=fields["date"],
        recorded_at=fields["recorded_at"],
        marks=tuple([AttendanceMark(mark["upn"], mark["am"], mark["pm"]) for mark in fields["marks"]]),
    )


def _alert_to_avro(alert: Alert) -> AvroDict:
    child = alert.child
    return {
        "alert_id": alert.alert_id,
        "rule": alert.rule,
        "recipient": alert.recipient,
        "la_code": alert.la_code,
        "severity": alert.severity,
        "upn": alert.upn,
        "child": None
        if child is None
        else (
            _ALERT_CHILD_BRANCH,
            {"forename": child.forename, "surname": child.surname, "date_of_birth": child.date_of_birth},
        ),
        "school_urn": alert.school_urn,
        "case_id": alert.case_id,
        "raised_on": alert.raised_on,
        "reason": alert.reason,
        "trigger_event_ids": alert.trigger_event_ids,
        "referral_id": alert.referral_id,
    }


def _alert_from_avro(fields: AvroDict) -> Alert:
    child = fields["child"]
    return Alert(
        alert_id=fields["alert_id"],
        rule=_RULES[fields["rule"]],
        recipient=_RECIPIENTS[fields["recipient"]],
        la_code=fields["la_code"],
        severity=_SEVERITIES[fields["severity"]],
        upn=fields["upn"],
        child=None
        if child is None
        else AlertChild(forename=child["forename"], surname=child["surname"], date_of_birth=child["date_of_birth"]),
        school_urn=fields["school_urn"],
        raised_on=fields["raised_on"],
        reason=fields["reason"],
        trigger_event_ids=tuple(fields["trigger_event_ids"]),
        case_id=fields["case_id"],
        referral_id=fields.get("referral_id"),
    )


def _dead_letter_to_avro(letter: DeadLetter) -> AvroDict:
    return {
        "raw": letter.raw,
        "source_topic": letter.source_topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "error_code": letter.error_code,
        "message": letter.message,
    }


def _dead_letter_from_avro(fields: AvroDict) -> DeadLetter:
    return DeadLetter(
        raw=fields["raw"],
        source_topic=fields["source_topic"],
        partition=fields["partition"],
        offset=fields["offset"],
        error_code=fields["error_code"],
        message=fields["message"],
    )


@dataclass(frozen=True, slots=True)
class RecordMapping:
    record_type: type[AvroRecord]
    to_avro: Callable[[Any], AvroDict]
    from_avro: Callable[[AvroDict], AvroRecord]


MAPPINGS: Mapping[str, RecordMapping] = {
    f"{NAMESPACE}.RollEvent": RecordMapping(RollEvent, _roll_event_to_avro, _roll_event_from_avro),
    f"{NAMESPACE}.EHENotification": RecordMapping(
        EHENotification, _ehe_notification_to_avro, _ehe_notification_from_avro
    ),
    f"{NAMESPACE}.SafeguardingStatus": RecordMapping(
        SafeguardingStatus, _safeguarding_status_to_avro, _safeguarding_status_from_avro
    ),
    f"{NAMESPACE}.ClockTick": RecordMapping(ClockTick, _clock_tick_to_avro, _clock_tick_from_avro),
    f"{NAMESPACE}.CaseAction": RecordMapping(CaseAction, _case_action_to_avro, _case_action_from_avro),
    f"{NAMESPACE}.AttendanceRegister": RecordMapping(
        AttendanceRegister, _attendance_register_to_avro, _attendance_register_from_avro
    ),
    f"{NAMESPACE}.CMEReferral": RecordMapping(CMEReferral, _referral_to_avro, _referral_from_avro),
    f"{NAMESPACE}.Alert": RecordMapping(Alert, _alert_to_avro, _alert_from_avro),
    f"{NAMESPACE}.DeadLetter": RecordMapping(DeadLetter, _dead_letter_to_avro, _dead_letter_from_avro),
}


def load_schema(record_name: str) -> AvroDict:
    """The current schema of a record (e.g. "RollEvent") as a plain dict, read from its `.avsc` file."""
    text = resources.files(__package__).joinpath(f"{record_name}.avsc").read_text(encoding="utf-8")
    return cast(AvroDict, json.loads(text))


def history_schemas() -> list[AvroDict]:
    """Earlier versions of the records' schemas that messages still in the topics were written with
    (`history/<Record>.<version>.avsc`), which every codec reads."""
    folder = resources.files(__package__).joinpath("history")
    if not folder.is_dir():
        return []
    return [
        cast(AvroDict, json.loads(entry.read_text(encoding="utf-8")))
        for entry in sorted(folder.iterdir(), key=lambda item: item.name)
        if entry.name.endswith(".avsc")
    ]


_BY_TYPE: Mapping[type, RecordMapping] = {mapping.record_type: mapping for mapping in MAPPINGS.values()}
_NAME_OF_TYPE: Mapping[type, str] = {m.record_type: name.rsplit(".", 1)[1] for name, m in MAPPINGS.items()}


def to_fields(record: AvroRecord) -> AvroDict:
    """The record's fields as its schema names them, every optional one present (None when absent)."""
    return _BY_TYPE[type(record)].to_avro(record)


def from_fields(record_type: type[AvroRecord], fields: AvroDict) -> AvroRecord:
    """The record of `record_type` whose fields these are (the inverse of `to_fields`)."""
    return _BY_TYPE[record_type].from_avro(fields)


def schema_name(record_type: type[AvroRecord]) -> str:
    """The name of the record's schema file in this package, without `.avsc` (e.g. "RollEvent")."""
    return _NAME_OF_TYPE[record_type]
