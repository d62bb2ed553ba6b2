"""Record validation: one bad record per rule yields exactly that rule's code; valid records pass."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from processors.records import (
    AttendanceMark,
    AttendanceRegister,
    CaseAction,
    CaseActionType,
    Child,
    ClockTick,
    CloseReason,
    Destination,
    DestinationKind,
    EHEMethod,
    EHENotification,
    EventType,
    Ground,
    InputRecord,
    RollEvent,
    SafeguardingStatus,
    School,
    SocialWorker,
)
from processors.validation import Problem, ProblemCode, is_valid, validate
from tests.shared import SHARED_SCENARIOS

SCENARIOS = SHARED_SCENARIOS
FORENAME, SURNAME, POSTCODE = "Zebediah", "Quillfeather", "B15 2TT"
BORN = date(2014, 7, 16)

REMOVED = RollEvent(
    event_id="00000000-0000-0000-0000-c0ffee000001",
    event_type=EventType.REMOVED,
    upn="L330210024001",
    child=Child(FORENAME, SURNAME, BORN, POSTCODE),
    school=School(urn="140201", laestab="3312201", name="Canley Primary", special=False),
    effective_date=date(2025, 3, 4),
    recorded_at=datetime(2025, 3, 4, 9, 0, tzinfo=UTC),
    source_system="TESTMIS",
    ground=Ground.A_REGISTERED_ELSEWHERE,
    destination=Destination(
        DestinationKind.SCHOOL, school_urn="140202", school_laestab="3312202", la_code="331"
    ),
)
ADDED = replace(
    REMOVED,
    event_type=EventType.ADDED,
    ground=None,
    destination=None,
    event_id="7d1c2b0e-8f3a-4c55-9e21-0a1b2c3d4e5f",
)
NOTIFICATION = EHENotification(
    notification_id="00000000-0000-0000-0000-c0ffee000006",
    upn="X33021002400A",
    la_code="335",
    method=EHEMethod.WRITTEN,
    received_on=date(2025, 3, 3),
    school_urn="140601",
)
STATUS = SafeguardingStatus(
    upn="B801200005001",
    la_code="333",
    child_protection_plan=True,
    looked_after=False,
    school_attendance_order=False,
    updated_at=datetime(2025, 1, 2, 8, 0, tzinfo=UTC),
    social_worker=SocialWorker("A Worker", "sw333@example.org"),
)


def codes(record: InputRecord) -> list[ProblemCode]:
    return [problem.code for problem in validate(record)]


def moved_to(kind: DestinationKind, **fields: str) -> RollEvent:
    return replace(REMOVED, destination=Destination(kind, **fields))


@pytest.mark.parametrize(
    "record",
    [
        REMOVED,
        ADDED,
        NOTIFICATION,
        STATUS,
        ClockTick(date(2025, 3, 5)),
        replace(REMOVED, destination=None),
        replace(REMOVED, event_id="7D1C2B0E-8F3A-4C55-9E21-0A1B2C3D4E5F"),
        replace(REMOVED, standard_transition=True),
        moved_to(DestinationKind.SCHOOL, school_urn="140202"),
        moved_to(DestinationKind.SCHOOL, school_laestab="3312202"),
        moved_to(DestinationKind.SCHOOL, school_laestab="3304001"),  # another LA, la_code left out
        moved_to(DestinationKind.OTHER_LA, la_code="942"),
        moved_to(DestinationKind.ABROAD),
        moved_to(DestinationKind.UNKNOWN),
        replace(REMOVED, upn="X33021002400A"),  # temporary UPN
        replace(REMOVED, upn="R909200019001"),  # allocated in Cumbria, abolished 2023
        replace(NOTIFICATION, school_urn=None, method=EHEMethod.ORAL),
        replace(STATUS, social_worker=None, la_code="838"),
        replace(REMOVED, effective_date=date(2026, 3, 4)),  # a year ahead, just
        replace(REMOVED, effective_date=date(2023, 3, 5)),  # two years late, just
        replace(REMOVED, child=Child(FORENAME, SURNAME, date(2023, 3, 4))),  # 2 on the day
        replace(REMOVED, child=Child(FORENAME, SURNAME, date(1999, 3, 5))),  # 25 on the day
    ],
)
def test_valid_records_pass(record: InputRecord) -> None:
    assert validate(record) == []
    assert is_valid(record)


BAD_RECORDS: list[tuple[str, InputRecord, ProblemCode]] = [
    (
        "register of 5,001 marks",
        AttendanceRegister(
            "00000000-0000-4000-a000-000000000001", School("140201", "3312201", "Canley Primary", False),
            date(2025, 1, 13), datetime(2025, 1, 13, 9, 35, tzinfo=UTC),
            tuple(AttendanceMark("A330200001001", "/", "/") for _ in range(5001)),
        ),
        ProblemCode.REGISTER_TOO_LARGE,
    ),
    ("event id not a UUID", replace(REMOVED, event_id="evt-1"), ProblemCode.EVENT_ID_FORMAT),
    (
        "event id in braces",
        replace(REMOVED, event_id="{00000000-0000-0000-0000-c0ffee000001}"),
        ProblemCode.EVENT_ID_FORMAT,
    ),
    ("notification id not a UUID", replace(NOTIFICATION, notification_id="42"), ProblemCode.EVENT_ID_FORMAT),
    ("UPN short", replace(REMOVED, upn="L33021002400"), ProblemCode.UPN_FORMAT),
    ("UPN letter in digits", replace(REMOVED, upn="X80120000A001"), ProblemCode.UPN_FORMAT),
    ("UPN check letter", replace(REMOVED, upn="L330210024002"), ProblemCode.UPN_CHECK_LETTER),
    ("UPN check letter I", replace(REMOVED, upn="I330210024001"), ProblemCode.UPN_CHECK_LETTER),
    ("UPN check letter A for B", replace(REMOVED, upn="A801200005001"), ProblemCode.UPN_CHECK_LETTER),
    ("UPN LA 000", replace(REMOVED, upn="E000200005001"), ProblemCode.UPN_LA_UNKNOWN),
    ("EHE UPN check letter", replace(NOTIFICATION, upn="L330210024002"), ProblemCode.UPN_CHECK_LETTER),
    ("status UPN format", replace(STATUS, upn="330210024001"), ProblemCode.UPN_FORMAT),
    (
        "school URN 5 digits",
        replace(REMOVED, school=replace(REMOVED.school, urn="14020")),
        ProblemCode.URN_FORMAT,
    ),
    ("EHE school URN", replace(NOTIFICATION, school_urn="14060A"), ProblemCode.URN_FORMAT),
    ("destination URN", moved_to(DestinationKind.SCHOOL, school_urn="1402020"), ProblemCode.URN_FORMAT),
    (
        "LAESTAB 6 digits",
        replace(REMOVED, school=replace(REMOVED.school, laestab="331220")),
        ProblemCode.LAESTAB_FORMAT,
    ),
    (
        "destination LAESTAB",
        moved_to(DestinationKind.SCHOOL, school_laestab="331-202"),
        ProblemCode.LAESTAB_FORMAT,
    ),
    (
        "school LA not an LA",
        replace(REMOVED, school=replace(REMOVED.school, laestab="9992201")),
        ProblemCode.SCHOOL_LA_UNKNOWN,
    ),
    (
        "school LA abolished",
        replace(REMOVED, school=replace(REMOVED.school, laestab="9092201")),
        ProblemCode.SCHOOL_LA_UNKNOWN,
    ),
    (
        "destination school LA abolished",
        moved_to(DestinationKind.SCHOOL, school_laestab="9282202"),
        ProblemCode.SCHOOL_LA_UNKNOWN,
    ),
    ("EHE LA unknown", replace(NOTIFICATION, la_code="999"), ProblemCode.LA_CODE_UNKNOWN),
    ("EHE LA abolished", replace(NOTIFICATION, la_code="909"), ProblemCode.LA_CODE_UNKNOWN),
    ("EHE LA 4 digits", replace(NOTIFICATION, la_code="3350"), ProblemCode.LA_CODE_UNKNOWN),
    ("status LA unknown", replace(STATUS, la_code="33"), ProblemCode.LA_CODE_UNKNOWN),
    (
        "destination LA unknown",
        moved_to(DestinationKind.OTHER_LA, la_code="928"),
        ProblemCode.LA_CODE_UNKNOWN,
    ),
    ("removed without ground", replace(REMOVED, ground=None), ProblemCode.GROUND_MISSING),
    ("ground on added", replace(ADDED, ground=Ground.G_MOVED_AWAY), ProblemCode.GROUND_ON_ADDED),
    (
        "destination on added",
        replace(ADDED, destination=Destination(DestinationKind.UNKNOWN)),
        ProblemCode.DESTINATION_ON_ADDED,
    ),
    (
        "SCHOOL naming no school",
        moved_to(DestinationKind.SCHOOL, la_code="331"),
        ProblemCode.DESTINATION_INCONSISTENT,
    ),
    (
        "SCHOOL la_code disagrees with LAESTAB",
        moved_to(DestinationKind.SCHOOL, school_laestab="3312202", la_code="330"),
        ProblemCode.DESTINATION_INCONSISTENT,
    ),
    ("OTHER_LA without la_code", moved_to(DestinationKind.OTHER_LA), ProblemCode.DESTINATION_INCONSISTENT),
    (
        "OTHER_LA is the school's own LA",
        moved_to(DestinationKind.OTHER_LA, la_code="331"),
        ProblemCode.DESTINATION_INCONSISTENT,
    ),
    (
        "OTHER_LA naming a school",
        moved_to(DestinationKind.OTHER_LA, la_code="330", school_urn="140202"),
        ProblemCode.DESTINATION_INCONSISTENT,
    ),
    ("ABROAD with LA", moved_to(DestinationKind.ABROAD, la_code="330"), ProblemCode.DESTINATION_INCONSISTENT),
    (
        "UNKNOWN with school",
        moved_to(DestinationKind.UNKNOWN, school_urn="140202"),
        ProblemCode.DESTINATION_INCONSISTENT,
    ),
    (
        "effective date over a year ahead",
        replace(REMOVED, effective_date=date(2026, 3, 6)),
        ProblemCode.DATE_IMPLAUSIBLE,
    ),
    (
        "effective date over two years back",
        replace(REMOVED, effective_date=date(2023, 3, 1)),
        ProblemCode.DATE_IMPLAUSIBLE,
    ),
    (
        "child aged 1",
        replace(REMOVED, child=Child(FORENAME, SURNAME, date(2023, 3, 5))),
        ProblemCode.DATE_IMPLAUSIBLE,
    ),
    (
        "child aged 26",
        replace(REMOVED, child=Child(FORENAME, SURNAME, date(1999, 3, 4))),
        ProblemCode.DATE_IMPLAUSIBLE,
    ),
    (
        "birth after the change",
        replace(REMOVED, child=Child(FORENAME, SURNAME, date(2025, 6, 1))),
        ProblemCode.DATE_IMPLAUSIBLE,
    ),
    (
        "EHE received before 1990",
        replace(NOTIFICATION, received_on=date(1989, 12, 31)),
        ProblemCode.DATE_IMPLAUSIBLE,
    ),
    (
        "status updated before 1990",
        replace(STATUS, updated_at=datetime(1970, 1, 1, tzinfo=UTC)),
        ProblemCode.DATE_IMPLAUSIBLE,
    ),
    ("tick before 1990", ClockTick(date(1989, 12, 31)), ProblemCode.DATE_IMPLAUSIBLE),
    ("tick after 2100", ClockTick(date(2101, 1, 1)), ProblemCode.DATE_IMPLAUSIBLE),
    ("tick in year 9999", ClockTick(date(9999, 12, 31)), ProblemCode.DATE_IMPLAUSIBLE),
    (
        "recorded in year 9999",
        replace(REMOVED, recorded_at=datetime(9999, 12, 31, 23, 59, tzinfo=UTC)),
        ProblemCode.DATE_IMPLAUSIBLE,
    ),
    (
        "recorded in year 1",
        replace(REMOVED, recorded_at=datetime(1, 1, 1, tzinfo=UTC)),
        ProblemCode.DATE_IMPLAUSIBLE,
    ),
    ("effective in year 9999", replace(REMOVED, effective_date=date(9999, 12, 31)), ProblemCode.DATE_IMPLAUSIBLE),
    ("effective in year 1", replace(REMOVED, effective_date=date(1, 1, 1)), ProblemCode.DATE_IMPLAUSIBLE),
    (
        "born in year 1",
        replace(REMOVED, child=Child(FORENAME, SURNAME, date(1, 1, 1))),
        ProblemCode.DATE_IMPLAUSIBLE,
    ),
    (
        "born in year 9999",
        replace(REMOVED, child=Child(FORENAME, SURNAME, date(9999, 12, 31))),
        ProblemCode.DATE_IMPLAUSIBLE,
    ),
    (
        "a school name of a million characters",
        replace(REMOVED, school=replace(REMOVED.school, name="x" * 1_000_000)),
        ProblemCode.TEXT_TOO_LONG,
    ),
    ("a forename of 101 characters", replace(REMOVED, child=replace(REMOVED.child, forename="A" * 101)),
     ProblemCode.TEXT_TOO_LONG),
    ("a postcode of 11 characters", replace(REMOVED, child=replace(REMOVED.child, postcode="B15 2TT 999")),
     ProblemCode.TEXT_TOO_LONG),
    ("a long source system", replace(REMOVED, source_system="M" * 101), ProblemCode.TEXT_TOO_LONG),
    (
        "a social worker email of 255 characters",
        replace(STATUS, social_worker=SocialWorker("A Worker", "a" * 243 + "@example.org")),
        ProblemCode.TEXT_TOO_LONG,
    ),
    ("a surname with an unpaired surrogate", replace(REMOVED, child=replace(REMOVED.child, surname="Sm\ud800th")),
     ProblemCode.TEXT_INVALID),
    ("a school name with a NUL", replace(REMOVED, school=replace(REMOVED.school, name="Canley\x00Primary")),
     ProblemCode.TEXT_INVALID),
    (
        "case action with a blank reason",
        CaseAction(
            "0b6f7a1c-2d3e-4f50-8a9b-c0d1e2f30405", "L330210024001", "6f1c2d3e-4b5a-5c6d-8e7f-0a1b2c3d4e5f",
            CaseActionType.CLOSE, " ", "A. Officer", datetime(2025, 3, 12, 10, 30, tzinfo=UTC),
        ),
        ProblemCode.TEXT_EMPTY,
    ),
    (
        "case action naming neither a UPN nor a referral",
        CaseAction(
            "0b6f7a1c-2d3e-4f50-8a9b-c0d1e2f30405", None, "6f1c2d3e-4b5a-5c6d-8e7f-0a1b2c3d4e5f",
            CaseActionType.CLOSE, "Left England", "A. Officer", datetime(2025, 3, 12, 10, 30, tzinfo=UTC),
        ),
        ProblemCode.ACTION_INCOMPLETE,
    ),
    (
        "case action assigning with a close reason",
        CaseAction(
            "0b6f7a1c-2d3e-4f50-8a9b-c0d1e2f30405", "L330210024001", "6f1c2d3e-4b5a-5c6d-8e7f-0a1b2c3d4e5f",
            CaseActionType.ASSIGN, "Cover", "A. Officer", datetime(2025, 3, 12, 10, 30, tzinfo=UTC),
            assignee="B. Officer", close_reason=CloseReason.OTHER,
        ),
        ProblemCode.ACTION_FIELD_MISPLACED,
    ),
]

#: Those that can travel as Avro: an unpaired surrogate cannot be written as UTF-8, so only JSON brings one.
WIRE_BAD_RECORDS = [case for case in BAD_RECORDS if "unpaired surrogate" not in case[0]]

@pytest.mark.parametrize(
    ("record", "code"), [(r, c) for _, r, c in BAD_RECORDS], ids=[n for n, _, _ in BAD_RECORDS]
)
def test_each_rule_alone_yields_exactly_its_code(record: InputRecord, code: ProblemCode) -> None:
    assert set(codes(record)) == {code}
    assert not is_valid(record)


MARK_CODES = {ProblemCode.MARK_CODE_UNKNOWN, ProblemCode.MARK_UPN_REPEATED}


def test_every_code_has_a_bad_record() -> None:
    # A register's marks are judged one by one (test_marks_are_refused_one_by_one), not as a record.
    assert {code for _, _, code in BAD_RECORDS} == set(ProblemCode) - MARK_CODES


def test_marks_are_refused_one_by_one_and_the_others_apply() -> None:
    from processors.records import AttendanceMark, AttendanceRegister, School
    from processors.registers import check_marks
    from tests.scenarios.builder import upn

    good, other = upn("330", 1), upn("330", 2)
    register = AttendanceRegister(
        "00000000-0000-4000-a000-000000000009", School("140201", "3312201", "Canley Primary", False),
        date(2025, 1, 13), datetime(2025, 1, 13, 9, 35, tzinfo=UTC),
        (AttendanceMark(good, "/", "\\"), AttendanceMark(other, "H", "/"), AttendanceMark(good, "N", "N"),
         AttendanceMark("not-a-upn", "/", "/"), AttendanceMark(other, "/", "/")),
    )
    assert not validate(register)
    valid, refused = check_marks(register)
    assert [index for index, _mark in valid] == [0]
    assert [(r.index, r.code) for r in refused] == [
        (1, "MARK_CODE_UNKNOWN"), (2, "MARK_UPN_REPEATED"), (3, "UPN_FORMAT"), (4, "MARK_UPN_REPEATED")
    ]
    assert all("H" not in r.message.split(": ", 1)[0] for r in refused)


def test_dates_of_a_whole_removal_before_1990_are_implausible() -> None:
    old = replace(
        REMOVED,
        effective_date=date(1989, 3, 4),
        recorded_at=datetime(1989, 3, 4, 9, 0, tzinfo=UTC),
        child=Child(FORENAME, SURNAME, date(1980, 1, 1)),
    )
    problems = validate(old)
    assert [problem.field for problem in problems] == ["effective_date", "recorded_at", "child.date_of_birth"]
    # a date of birth is personal data: its problem names the field, never the date
    assert "1980" not in problems[2].message


def test_a_case_action_reason_of_2001_characters_is_too_long() -> None:
    action = CaseAction(
        "0b6f7a1c-2d3e-4f50-8a9b-c0d1e2f30405", "L330210024001", "6f1c2d3e-4b5a-5c6d-8e7f-0a1b2c3d4e5f",
        CaseActionType.CLOSE, "r" * 2001, "A. Officer", datetime(2025, 3, 12, 10, 30, tzinfo=UTC),
    )
    assert codes(action) == [ProblemCode.TEXT_TOO_LONG]
    assert codes(replace(action, reason="r" * 2000)) == []


def test_text_problems_never_quote_the_value() -> None:
    named = replace(REMOVED, child=replace(REMOVED.child, surname=SURNAME * 20))
    [problem] = validate(named)
    assert SURNAME not in problem.message


def test_every_problem_is_reported_not_just_the_first() -> None:
    broken = replace(
        REMOVED,
        event_id="nope",
        upn="L330210024002",
        school=School(urn="1", laestab="9990001", name="Nowhere", special=False),
        ground=None,
        destination=Destination(DestinationKind.ABROAD, la_code="330"),
        child=Child(FORENAME, SURNAME, date(2024, 1, 1)),
    )
    assert sorted(codes(broken)) == sorted(
        [
            ProblemCode.EVENT_ID_FORMAT,
            ProblemCode.UPN_CHECK_LETTER,
            ProblemCode.URN_FORMAT,
            ProblemCode.SCHOOL_LA_UNKNOWN,
            ProblemCode.DATE_IMPLAUSIBLE,
            ProblemCode.GROUND_MISSING,
            ProblemCode.DESTINATION_INCONSISTENT,
        ]
    )


def test_problems_name_their_field() -> None:
    bad = moved_to(DestinationKind.SCHOOL, school_urn="1402020", school_laestab="3312202", la_code="999")
    fields = {(problem.code, problem.field) for problem in validate(bad)}
    assert fields == {
        (ProblemCode.URN_FORMAT, "destination.school_urn"),
        (ProblemCode.LA_CODE_UNKNOWN, "destination.la_code"),
        (ProblemCode.DESTINATION_INCONSISTENT, "destination"),
    }


def test_messages_never_contain_personal_details() -> None:
    records = [r for _, r, _ in BAD_RECORDS] + [
        replace(REMOVED, child=Child(FORENAME, SURNAME, date(2024, 2, 29), POSTCODE), upn="L330210024002")
    ]
    for record in records:
        for problem in validate(record):
            for secret in (
                FORENAME,
                SURNAME,
                POSTCODE,
                "2014-07-16",
                "2024-02-29",
                "1999-03-04",
                "2023-03-05",
            ):
                assert secret not in problem.message, (problem.code, problem.message)
            assert problem.message.strip(), problem.code


def test_problem_is_a_frozen_value() -> None:
    problem = Problem(ProblemCode.UPN_FORMAT, "bad")
    assert problem.field is None
    with pytest.raises(AttributeError):
        problem.code = ProblemCode.URN_FORMAT  # type: ignore[misc]


def test_validate_refuses_a_non_record() -> None:
    with pytest.raises(TypeError, match="not an input record"):
        validate("roll.events")  # type: ignore[arg-type]


# The scenario files use the replay JSON of design.md; they are parsed here by hand so this test needs
# nothing but the domain records.


def _day(text: str) -> date:
    return date.fromisoformat(text)


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _record(topic: str, value: dict[str, Any]) -> InputRecord:
    if topic == "roll.events":
        child, school, dest = value["child"], value["school"], value.get("destination")
        return RollEvent(
            event_id=value["event_id"],
            event_type=EventType(value["event_type"]),
            upn=value["upn"],
            child=Child(
                child["forename"], child["surname"], _day(child["date_of_birth"]), child.get("postcode")
            ),
            school=School(school["urn"], school["laestab"], school["name"], school.get("special", False)),
            effective_date=_day(value["effective_date"]),
            recorded_at=_moment(value["recorded_at"]),
            source_system=value["source_system"],
            ground=Ground(value["ground"]) if value.get("ground") else None,
            destination=(
                Destination(
                    DestinationKind(dest["kind"]),
                    dest.get("school_urn"),
                    dest.get("school_laestab"),
                    dest.get("la_code"),
                )
                if dest
                else None
            ),
            standard_transition=value.get("standard_transition", False),
        )
    if topic == "ehe.notifications":
        return EHENotification(
            notification_id=value["notification_id"],
            upn=value["upn"],
            la_code=value["la_code"],
            method=EHEMethod(value["method"]),
            received_on=_day(value["received_on"]),
            school_urn=value.get("school_urn"),
        )
    if topic == "safeguarding.status":
        worker = value.get("social_worker")
        return SafeguardingStatus(
            upn=value["upn"],
            la_code=value["la_code"],
            child_protection_plan=value["child_protection_plan"],
            looked_after=value["looked_after"],
            school_attendance_order=value["school_attendance_order"],
            updated_at=_moment(value["updated_at"]),
            social_worker=SocialWorker(worker["name"], worker["email"]) if worker else None,
        )
    assert topic == "clock.ticks", topic
    return ClockTick(_day(value["today"]))


SCENARIO_FILES = sorted(SCENARIOS.glob("*.jsonl"))


def test_all_six_scenarios_are_present() -> None:
    assert len(SCENARIO_FILES) == 6


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=[path.stem for path in SCENARIO_FILES])
def test_scenario_records_are_valid(path: Path) -> None:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    assert lines
    for number, line in enumerate(lines, start=1):
        entry = json.loads(line)
        record = _record(entry["topic"], entry["value"])
        assert validate(record) == [], f"{path.name} line {number}"
