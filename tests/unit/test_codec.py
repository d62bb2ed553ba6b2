"""The Avro single-object codec: round trips, the wire header, the .avsc contract and every error code."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime, timedelta, timezone
from enum import StrEnum
from importlib import resources
from typing import Any

import pytest

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
from schemas.codec import HEADER_LENGTH, SINGLE_OBJECT_MARKER, AvroCodec, AvroRecord, load_schema
from schemas.errors import CodecError, CodecErrorCode

FORENAME = "Zoë-Marie"
SURNAME = "O'Connor"
BIRTH_DATE = date(2014, 8, 17)
POSTCODE = "B66 1AA"


def removal(**changes: Any) -> RollEvent:
    """A removal with every optional field filled in."""
    event = RollEvent(
        event_id="00000000-0000-0000-0000-c0ffee000002",
        event_type=EventType.REMOVED,
        upn="W330215224052",
        child=Child(forename=FORENAME, surname=SURNAME, date_of_birth=BIRTH_DATE, postcode=POSTCODE),
        school=School(urn="140401", laestab="3334101", name="Smethwick High", special=True),
        effective_date=date(2025, 3, 4),
        recorded_at=datetime(2025, 3, 4, 9, 0, 0, 123456, tzinfo=UTC),
        source_system="TESTMIS",
        ground=Ground.A_REGISTERED_ELSEWHERE,
        destination=Destination(
            kind=DestinationKind.SCHOOL, school_urn="150001", school_laestab="3304001", la_code="330"
        ),
        standard_transition=True,
    )
    return dataclasses.replace(event, **changes)


def admission() -> RollEvent:
    """An admission with every optional field left out."""
    return RollEvent(
        event_id="00000000-0000-0000-0000-c0ffee000003",
        event_type=EventType.ADDED,
        upn="W330215224052",
        child=Child(forename=FORENAME, surname=SURNAME, date_of_birth=BIRTH_DATE),
        school=School(urn="150001", laestab="3304001", name="Perry Beeches", special=False),
        effective_date=date(2025, 3, 6),
        recorded_at=datetime(2025, 3, 6, 9, 0, tzinfo=timezone(timedelta(hours=1))),
        source_system="OTHERMIS",
    )


def sample_records() -> list[AvroRecord]:
    """One or more instances of every record the codec handles, optional fields both set and absent."""
    return [
        removal(),
        admission(),
        removal(ground=Ground.O_PERMANENTLY_EXCLUDED, destination=Destination(kind=DestinationKind.UNKNOWN)),
        EHENotification(
            notification_id="n-1",
            upn="W330215224052",
            la_code="333",
            method=EHEMethod.WRITTEN,
            received_on=date(2025, 3, 3),
            school_urn="140401",
        ),
        EHENotification(
            notification_id="n-2",
            upn="W330215224052",
            la_code="333",
            method=EHEMethod.ORAL,
            received_on=date(2025, 3, 3),
        ),
        SafeguardingStatus(
            upn="W330215224052",
            la_code="333",
            child_protection_plan=True,
            looked_after=False,
            school_attendance_order=True,
            updated_at=datetime(2025, 1, 2, 8, 0, tzinfo=UTC),
            social_worker=SocialWorker(name="A Worker", email="sw333@example.org"),
        ),
        SafeguardingStatus(
            upn="W330215224052",
            la_code="333",
            child_protection_plan=False,
            looked_after=True,
            school_attendance_order=False,
            updated_at=datetime(2025, 1, 2, 8, 0, tzinfo=UTC),
        ),
        ClockTick(today=date(2025, 1, 31)),
        Alert(
            alert_id="7d9f3a52-0000-5000-8000-000000000001",
            rule=Rule.MISSING_NO_DESTINATION,
            recipient=Recipient.SOCIAL_CARE,
            la_code="333",
            severity=Severity.IMMEDIATE,
            upn="W330215224052",
            child=AlertChild(forename=FORENAME, surname=SURNAME, date_of_birth=BIRTH_DATE),
            school_urn="140401",
            raised_on=date(2025, 3, 4),
            reason="Removed on ground I with no known destination while on a child protection plan.",
            trigger_event_ids=("00000000-0000-0000-0000-c0ffee000002", "n-1"),
            case_id="case-1",
        ),
        Alert(
            alert_id="7d9f3a52-0000-5000-8000-000000000002",
            rule=Rule.EHE_NOTIFIED,
            recipient=Recipient.EHE_SERVICE,
            la_code="333",
            severity=Severity.INFO,
            upn="W330215224052",
            child=AlertChild(forename=FORENAME, surname=SURNAME, date_of_birth=BIRTH_DATE),
            school_urn="140401",
            raised_on=date(2025, 3, 4),
            reason="Removed for home education.",
        ),
        AttendanceRegister(
            register_id="00000000-0000-4000-a000-000000000001",
            school=School(urn="140401", laestab="3334001", name="Sample School", special=False),
            date=date(2025, 1, 13),
            recorded_at=datetime(2025, 1, 13, 9, 35, tzinfo=UTC),
            marks=(AttendanceMark("W330215224052", "/", "\\"), AttendanceMark("W330215224052", "N", "C1")),
        ),
        AttendanceRegister(
            register_id="00000000-0000-4000-a000-000000000002",
            school=School(urn="140401", laestab="3334001", name="Sample School", special=False),
            date=date(2025, 1, 11),
            recorded_at=datetime(2025, 1, 13, 9, 35, tzinfo=UTC),
            marks=(),
        ),
        Alert(
            alert_id="7d9f3a52-0000-5000-8000-000000000003",
            rule=Rule.ABSENCE_ENQUIRIES_DUE,
            recipient=Recipient.CME_OFFICER,
            la_code="333",
            severity=Severity.MEDIUM,
            upn="W330215224052",
            child=None,
            school_urn="140401",
            raised_on=date(2025, 1, 29),
            reason="Absent without authorisation for 10 school days in a row.",
            trigger_event_ids=("00000000-0000-4000-a000-000000000001",),
        ),
        Alert(
            alert_id="7d9f3a52-0000-5000-8000-000000000004",
            rule=Rule.REFERRAL_NOT_ON_ROLL,
            recipient=Recipient.CME_OFFICER,
            la_code="336",
            severity=Severity.HIGH,
            upn=None,
            child=None,
            school_urn=None,
            raised_on=date(2025, 1, 15),
            reason="Referred by a member of the public, who asked to stay anonymous.",
            trigger_event_ids=("00000000-0000-4000-b000-000000000001",),
            case_id="00000000-0000-5000-8000-00000000ca5e",
            referral_id="00000000-0000-4000-b000-000000000001",
        ),
        CMEReferral(
            referral_id="00000000-0000-4000-b000-000000000001",
            received_on=date(2025, 1, 15),
            la_code="336",
            upn="W330215224052",
            child=ReferralChild(forename=FORENAME, surname=SURNAME, date_of_birth=BIRTH_DATE, postcode=POSTCODE),
            concern=ReferralConcern.EDUCATION_UNSUITABLE,
            referrer=Referrer(agency=ReferrerAgency.HEALTH, name="A Nurse", contact="hv@example.org"),
            details="Seen at home on school days.\nSays she goes to a 'tuition centre'.",
        ),
        CMEReferral(
            referral_id="00000000-0000-4000-b000-000000000002",
            received_on=date(2025, 1, 16),
            la_code="330",
            upn=None,
            child=ReferralChild(forename=FORENAME, surname=SURNAME),
            concern=ReferralConcern.NOT_IN_SCHOOL,
            referrer=Referrer(agency=ReferrerAgency.PUBLIC),
        ),
        CaseAction(
            action_id="00000000-0000-4000-c000-000000000001",
            upn="W330215224052",
            case_id="00000000-0000-5000-8000-00000000ca5e",
            action=CaseActionType.CLOSE,
            reason="Confirmed on roll in Wales.",
            by="officer.336",
            at=datetime(2025, 2, 3, 10, 30, tzinfo=UTC),
        ),
        CaseAction(
            action_id="00000000-0000-4000-c000-000000000002",
            upn=None,
            case_id="00000000-0000-5000-8000-00000000ca5e",
            action=CaseActionType.NOTE,
            reason="Phoned the family twice; no answer.",
            by="officer.336",
            at=datetime(2025, 2, 3, 10, 30, tzinfo=UTC),
            referral_id="00000000-0000-4000-b000-000000000002",
            enquiry=CaseEnquiry(kind=EnquiryKind.FAMILY_CONTACTED, outcome="no answer"),
            la_code="336",
        ),
        CaseAction(
            action_id="00000000-0000-4000-c000-000000000003",
            upn="W330215224052",
            case_id="00000000-0000-5000-8000-00000000ca5e",
            action=CaseActionType.CLOSE,
            reason="Family moved to Leeds; handed over.",
            by="officer.336",
            at=datetime(2025, 2, 4, 10, 30, tzinfo=UTC),
            referral_id="00000000-0000-4000-b000-000000000002",
            close_reason=CloseReason.MOVED_TO_OTHER_LA,
            assignee=None,
            la_code="336",
        ),
        DeadLetter(
            raw=b"\xc3\x01\x00\xff not avro",
            source_topic="roll.events",
            partition=7,
            offset=2**40,
            error_code="BAD_BODY",
            message="RollEvent body is not valid Avro",
        ),
    ]


@pytest.fixture(scope="module")
def codec() -> AvroCodec:
    return AvroCodec()


@pytest.mark.parametrize("record", sample_records(), ids=lambda record: type(record).__name__)
def test_every_record_round_trips(codec: AvroCodec, record: AvroRecord) -> None:
    data = codec.encode(record)

    decoded = codec.decode(data, type(record))

    assert decoded == record
    assert type(decoded) is type(record)
    assert codec.decode_any(data) == record


def test_decoded_values_have_domain_types(codec: AvroCodec) -> None:
    decoded = codec.decode(codec.encode(removal()), RollEvent)

    assert type(decoded.event_type) is EventType
    assert type(decoded.ground) is Ground
    assert decoded.destination is not None
    assert type(decoded.destination.kind) is DestinationKind
    assert type(decoded.effective_date) is date
    assert decoded.recorded_at.tzinfo is not None
    assert decoded.recorded_at.utcoffset() == timedelta(0)


def test_timestamp_with_offset_decodes_as_the_same_instant_in_utc(codec: AvroCodec) -> None:
    event = admission()

    decoded = codec.decode(codec.encode(event), RollEvent)

    assert decoded.recorded_at == datetime(2025, 3, 6, 8, 0, tzinfo=UTC)
    assert decoded.recorded_at.tzinfo == UTC


def test_message_is_marker_then_fingerprint_then_body(codec: AvroCodec) -> None:
    data = codec.encode(ClockTick(today=date(1970, 1, 3)))

    assert data[:2] == SINGLE_OBJECT_MARKER == b"\xc3\x01"
    assert data[2:HEADER_LENGTH] == codec.fingerprint(ClockTick)
    # Body: the date as days since 1970-01-01 (2), zig-zag varint encoded (4).
    assert data[HEADER_LENGTH:] == b"\x04"


def test_each_record_type_has_its_own_fingerprint(codec: AvroCodec) -> None:
    record_types = {type(record) for record in sample_records()}

    fingerprints = {codec.fingerprint(record_type) for record_type in record_types}

    assert len(record_types) == 9
    assert len(fingerprints) == 9
    assert all(len(fingerprint) == 8 for fingerprint in fingerprints)


def test_decode_accepts_memoryview_and_bytearray(codec: AvroCodec) -> None:
    data = codec.encode(removal())

    assert codec.decode(bytearray(data), RollEvent) == removal()
    assert codec.decode(memoryview(data), RollEvent) == removal()


# The .avsc files are the public contract: they must match records.py field for field and symbol for symbol.

SCHEMA_FOR_TYPE = {
    "RollEvent": RollEvent,
    "EHENotification": EHENotification,
    "SafeguardingStatus": SafeguardingStatus,
    "ClockTick": ClockTick,
    "CaseAction": CaseAction,
    "AttendanceRegister": AttendanceRegister,
    "CMEReferral": CMEReferral,
    "Alert": Alert,
    "DeadLetter": DeadLetter,
}
NESTED_TYPES: dict[str, type] = {
    "Child": Child,
    "School": School,
    "Destination": Destination,
    "SocialWorker": SocialWorker,
    "AlertChild": AlertChild,
    "AttendanceMark": AttendanceMark,
    "ReferralChild": ReferralChild,
    "Referrer": Referrer,
    "CaseEnquiry": CaseEnquiry,
}
ENUM_TYPES: dict[str, type[StrEnum]] = {
    "EventType": EventType,
    "Ground": Ground,
    "DestinationKind": DestinationKind,
    "EHEMethod": EHEMethod,
    "Rule": Rule,
    "Recipient": Recipient,
    "Severity": Severity,
    "CaseActionType": CaseActionType,
    "CloseReason": CloseReason,
    "EnquiryKind": EnquiryKind,
    "ReferralConcern": ReferralConcern,
    "ReferrerAgency": ReferrerAgency,
}


def named_types(schema: Any, found: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    if isinstance(schema, list):
        for branch in schema:
            named_types(branch, found)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum"):
            found[schema["name"]] = schema
        for field in schema.get("fields", []):
            named_types(field["type"], found)
        if schema.get("type") == "array":
            named_types(schema["items"], found)
    return found


def test_schema_directory_holds_exactly_one_file_per_record() -> None:
    files = {entry.name for entry in resources.files("schemas").iterdir() if entry.name.endswith(".avsc")}

    assert files == {f"{name}.avsc" for name in SCHEMA_FOR_TYPE}


@pytest.mark.parametrize("record_name", sorted(SCHEMA_FOR_TYPE))
def test_schema_matches_domain_record(record_name: str) -> None:
    schema = load_schema(record_name)
    types = named_types(schema, {})
    expected_types = {record_name: SCHEMA_FOR_TYPE[record_name]} | NESTED_TYPES

    assert schema["namespace"] == "uk.rollwatch"
    for name, definition in types.items():
        assert definition.get("doc"), f"{name} has no doc"
        if definition["type"] == "enum":
            assert definition["symbols"] == [member.value for member in ENUM_TYPES[name]]
            continue
        domain_fields = {field.name for field in dataclasses.fields(expected_types[name])}
        assert {field["name"] for field in definition["fields"]} == domain_fields, name
        for field in definition["fields"]:
            assert field.get("doc"), f"{name}.{field['name']} has no doc"
            if isinstance(field["type"], list):
                assert field["type"][0] == "null" and field["default"] is None, f"{name}.{field['name']}"


def test_dates_and_timestamps_use_logical_types() -> None:
    roll = {field["name"]: field["type"] for field in load_schema("RollEvent")["fields"]}
    status = {field["name"]: field["type"] for field in load_schema("SafeguardingStatus")["fields"]}

    assert roll["effective_date"] == {"type": "int", "logicalType": "date"}
    assert roll["recorded_at"] == {"type": "long", "logicalType": "timestamp-micros"}
    assert status["updated_at"] == {"type": "long", "logicalType": "timestamp-micros"}
    standard_transition = next(
        field for field in load_schema("RollEvent")["fields"] if field["name"] == "standard_transition"
    )
    assert standard_transition["type"] == "boolean" and standard_transition["default"] is False


# Error codes.


def raised(call: Any, *args: Any) -> CodecError:
    with pytest.raises(CodecError) as caught:
        call(*args)
    return caught.value


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc3\x01\x00", b"\xc3\x02" + bytes(9), b'{"event_id": "x"}', b"\x00\xc3\x01" + bytes(9)],
    ids=["empty", "header-too-short", "wrong-version", "json", "confluent-framing"],
)
def test_bad_marker(codec: AvroCodec, data: bytes) -> None:
    error = raised(codec.decode, data, RollEvent)

    assert error.code == CodecErrorCode.BAD_MARKER
    assert "single-object" in error.message


def test_unknown_schema(codec: AvroCodec) -> None:
    data = codec.encode(removal())
    unknown = data[:2] + bytes(8) + data[HEADER_LENGTH:]

    error = raised(codec.decode, unknown, RollEvent)

    assert error.code == CodecErrorCode.UNKNOWN_SCHEMA
    assert "0000000000000000" in error.message
    assert "register_writer_schema" in error.message


def test_registering_a_schema_of_a_foreign_record_is_unknown_schema(codec: AvroCodec) -> None:
    foreign = {"type": "record", "name": "Invoice", "namespace": "uk.rollwatch", "fields": []}

    error = raised(codec.register_writer_schema, foreign)

    assert error.code == CodecErrorCode.UNKNOWN_SCHEMA
    assert "uk.rollwatch.Invoice" in error.message


def test_truncated_body_is_bad_body(codec: AvroCodec) -> None:
    data = codec.encode(removal())

    error = raised(codec.decode, data[:-5], RollEvent)

    assert error.code == CodecErrorCode.BAD_BODY


def test_trailing_bytes_are_bad_body(codec: AvroCodec) -> None:
    data = codec.encode(ClockTick(today=date(2025, 1, 31)))

    error = raised(codec.decode, data + b"\x00", ClockTick)

    assert error.code == CodecErrorCode.BAD_BODY
    assert "1 bytes left over" in error.message


def test_body_of_another_record_under_a_valid_fingerprint_is_bad_body(codec: AvroCodec) -> None:
    tick = codec.encode(ClockTick(today=date(2025, 1, 31)))
    roll = codec.encode(removal())
    forged = roll[:HEADER_LENGTH] + tick[HEADER_LENGTH:]

    error = raised(codec.decode, forged, RollEvent)

    assert error.code == CodecErrorCode.BAD_BODY


def test_decoding_as_the_wrong_type_is_wrong_record_type(codec: AvroCodec) -> None:
    data = codec.encode(ClockTick(today=date(2025, 1, 31)))

    error = raised(codec.decode, data, RollEvent)

    assert error.code == CodecErrorCode.WRONG_RECORD_TYPE
    assert "ClockTick" in error.message and "RollEvent" in error.message


def test_encoding_a_non_record_is_wrong_record_type(codec: AvroCodec) -> None:
    error = raised(codec.encode, Child(forename=FORENAME, surname=SURNAME, date_of_birth=BIRTH_DATE))

    assert error.code == CodecErrorCode.WRONG_RECORD_TYPE


def test_encoding_a_badly_typed_field_is_bad_field_without_personal_data(codec: AvroCodec) -> None:
    # fastavro's own message for this quotes the offending value: the date of birth.
    child = Child(forename=FORENAME, surname=SURNAME, date_of_birth="17/08/2014", postcode=POSTCODE)  # type: ignore[arg-type]

    error = raised(codec.encode, removal(child=child))

    assert error.code == CodecErrorCode.BAD_FIELD
    assert "RollEvent" in error.message
    assert error.__cause__ is None and error.__suppress_context__
    for personal in (FORENAME, SURNAME, "17/08/2014", POSTCODE):
        assert personal not in str(error)


def test_encoding_none_in_a_required_field_is_bad_field(codec: AvroCodec) -> None:
    error = raised(codec.encode, removal(upn=None))

    assert error.code == CodecErrorCode.BAD_FIELD


def test_incompatible_writer_schema(codec: AvroCodec) -> None:
    # A writer that made `today` a string cannot be read as the current int date.
    writer = {
        "type": "record",
        "name": "ClockTick",
        "namespace": "uk.rollwatch",
        "fields": [{"name": "today", "type": "string"}],
    }
    fingerprint = codec.register_writer_schema(writer)
    data = SINGLE_OBJECT_MARKER + fingerprint + b"\x142025-01-31"

    error = raised(codec.decode, data, ClockTick)

    assert error.code == CodecErrorCode.INCOMPATIBLE_SCHEMA


def test_error_is_a_value_error_with_code_and_message() -> None:
    error = CodecError(CodecErrorCode.BAD_BODY, "what to do")

    assert isinstance(error, ValueError)
    assert str(error) == "BAD_BODY: what to do"


def test_schema_files_are_valid_json() -> None:
    for name in SCHEMA_FOR_TYPE:
        text = resources.files("schemas").joinpath(f"{name}.avsc").read_text(encoding="utf-8")
        assert json.loads(text)["name"] == name
