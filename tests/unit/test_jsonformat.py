"""The replay JSON Lines format: scenario files, round trips, alerts and every structural error."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from processors.records import (
    CLOCK_TICKS,
    EHE_NOTIFICATIONS,
    ROLL_EVENTS,
    SAFEGUARDING_STATUS,
    Alert,
    ClockTick,
    DestinationKind,
    EHENotification,
    EventType,
    Ground,
    InputRecord,
    RollEvent,
    SafeguardingStatus,
)
from schemas.errors import CodecError, CodecErrorCode
from schemas.jsonfields import (
    alert_from_json,
    alert_to_json,
    record_from_json,
    record_to_json,
    record_to_line,
    topic_of,
)
from schemas.jsonformat import alert_to_line, parse_line
from tests.shared import SHARED_SCENARIOS
from tests.unit.test_codec import BIRTH_DATE, FORENAME, POSTCODE, SURNAME, admission, removal, sample_records

SCENARIOS = SHARED_SCENARIOS
SCENARIO_FILES = sorted(SCENARIOS.glob("*.jsonl"))

INPUT_RECORDS: list[InputRecord] = [
    record
    for record in sample_records()
    if isinstance(record, RollEvent | EHENotification | SafeguardingStatus | ClockTick)
]
ALERTS: list[Alert] = [record for record in sample_records() if isinstance(record, Alert)]

REMOVAL_LINE: dict[str, Any] = {
    "topic": "roll.events",
    "value": {
        "event_id": "e-1",
        "event_type": "REMOVED",
        "upn": "W330215224052",
        "child": {"forename": FORENAME, "surname": SURNAME, "date_of_birth": "2014-08-17", "postcode": POSTCODE},
        "school": {"urn": "140401", "laestab": "3334101", "name": "Smethwick High", "special": False},
        "effective_date": "2025-03-04",
        "recorded_at": "2025-03-04T09:00:00Z",
        "standard_transition": False,
        "source_system": "TESTMIS",
        "ground": "I_CONTINUOUS_ABSENCE",
        "destination": {"kind": "UNKNOWN"},
    },
}


def without_nulls(value: Any) -> Any:
    """The contract makes an omitted optional field and a null one the same thing."""
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return value


def line_with(path: str, new_value: Any) -> str:
    """REMOVAL_LINE with the value at dotted `path` replaced (or removed, for the sentinel `...`)."""
    envelope = copy.deepcopy(REMOVAL_LINE)
    *parents, leaf = path.split(".")
    target: Any = envelope
    for key in parents:
        target = target[key]
    if new_value is ...:
        del target[leaf]
    else:
        target[leaf] = new_value
    return json.dumps(envelope)


def raised(call: Any, *args: Any) -> CodecError:
    with pytest.raises(CodecError) as caught:
        call(*args)
    return caught.value


def test_scenario_files_exist() -> None:
    assert len(SCENARIO_FILES) >= 6


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=lambda path: path.name)
def test_every_scenario_line_parses_and_round_trips_to_an_equal_json_value(path: Path) -> None:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    for line in lines:
        topic, record = parse_line(line)
        written = record_to_line(topic, record)

        assert json.loads(written) == without_nulls(json.loads(line))
        assert parse_line(written) == (topic, record)
        assert topic_of(record) == topic
    assert lines


def test_a_removal_line_parses_to_the_domain_record() -> None:
    topic, record = parse_line(json.dumps(REMOVAL_LINE))

    assert topic == ROLL_EVENTS
    assert isinstance(record, RollEvent)
    assert record.event_type is EventType.REMOVED
    assert record.ground is Ground.I_CONTINUOUS_ABSENCE
    assert record.destination is not None and record.destination.kind is DestinationKind.UNKNOWN
    assert record.destination.school_urn is None
    assert record.child.date_of_birth == BIRTH_DATE
    assert record.child.postcode == POSTCODE
    assert record.recorded_at == datetime(2025, 3, 4, 9, 0, tzinfo=UTC)
    assert record.recorded_at.tzinfo is UTC


@pytest.mark.parametrize("record", INPUT_RECORDS, ids=lambda record: type(record).__name__)
def test_every_input_record_round_trips(record: InputRecord) -> None:
    topic = topic_of(record)

    assert parse_line(record_to_line(topic, record)) == (topic, record)
    assert record_from_json(topic, record_to_json(record)) == record


def test_omitted_and_null_optionals_mean_the_same() -> None:
    optional = ("ground", "destination", "standard_transition")
    nulls = copy.deepcopy(REMOVAL_LINE)
    nulls["value"].update(dict.fromkeys(optional))
    nulls["value"]["child"]["postcode"] = None
    omitted = copy.deepcopy(REMOVAL_LINE)
    for key in optional:
        del omitted["value"][key]
    del omitted["value"]["child"]["postcode"]

    from_nulls = parse_line(json.dumps(nulls))
    from_omitted = parse_line(json.dumps(omitted))

    assert from_nulls == from_omitted
    record = from_omitted[1]
    assert isinstance(record, RollEvent)
    assert record.ground is None and record.destination is None and record.standard_transition is False
    assert record.child.postcode is None


def test_output_omits_absent_optionals_and_keeps_a_fixed_key_order() -> None:
    value = record_to_json(admission())

    assert list(value) == [
        "event_id",
        "event_type",
        "upn",
        "child",
        "school",
        "effective_date",
        "recorded_at",
        "standard_transition",
        "source_system",
    ]
    assert list(value["child"]) == ["forename", "surname", "date_of_birth"]
    assert record_to_line(ROLL_EVENTS, admission()) == record_to_line(ROLL_EVENTS, admission())


def test_timestamps_keep_their_offset_and_utc_is_written_with_z() -> None:
    offset = record_to_json(admission())["recorded_at"]
    utc = record_to_json(removal())["recorded_at"]

    assert offset == "2025-03-06T09:00:00+01:00"
    assert utc == "2025-03-04T09:00:00.123456Z"
    record = record_from_json(ROLL_EVENTS, record_to_json(admission()))
    assert isinstance(record, RollEvent)
    assert record.recorded_at.utcoffset() == timedelta(hours=1)


def test_clock_tick_line() -> None:
    assert parse_line('{"topic": "clock.ticks", "value": {"today": "2025-01-31"}}') == (
        CLOCK_TICKS,
        ClockTick(today=date(2025, 1, 31)),
    )
    assert record_to_line(CLOCK_TICKS, ClockTick(today=date(2025, 1, 31))) == (
        '{"topic": "clock.ticks", "value": {"today": "2025-01-31"}}'
    )


@pytest.mark.parametrize("alert", ALERTS, ids=lambda alert: alert.rule.value)
def test_alert_round_trips(alert: Alert) -> None:
    value = alert_to_json(alert)

    assert alert_from_json(value) == alert
    assert alert_from_json(json.loads(alert_to_line(alert))) == alert
    assert list(value) == [
        "alert_id",
        "rule",
        "recipient",
        "la_code",
        "severity",
        "upn",
        "child",
        "school_urn",
        "case_id",
        "raised_on",
        "reason",
        "trigger_event_ids",
        "referral_id",
    ]
    assert isinstance(value["trigger_event_ids"], list)
    assert value["case_id"] == alert.case_id


def test_alert_without_case_writes_null_case_id() -> None:
    alert = next(alert for alert in ALERTS if alert.case_id is None)

    assert alert_to_json(alert)["case_id"] is None
    assert b'"case_id":null' in alert_to_line(alert)


# Errors: each code, and messages that name the field without echoing personal data.

PERSONAL = (FORENAME, SURNAME, "2014-08-17", "17/08/2014", "2014", POSTCODE)


def assert_no_personal_data(error: CodecError) -> None:
    for personal in PERSONAL:
        assert personal not in str(error)


@pytest.mark.parametrize(
    "line",
    [
        "",
        "not json",
        "[1, 2]",
        '{"topic": "roll.events"',
        '"roll.events"',
        '{"value": {}}',
        '{"topic": "roll.events"}',
        '{"topic": 3, "value": {}}',
        '{"topic": "roll.events", "value": [], "x": 1}',
        '{"topic": "roll.events", "value": []}',
    ],
)
def test_bad_json(line: str) -> None:
    error = raised(parse_line, line)

    assert error.code == CodecErrorCode.BAD_JSON


def test_unknown_topic() -> None:
    error = raised(parse_line, '{"topic": "la.333.alerts.cme-officer", "value": {}}')

    assert error.code == CodecErrorCode.UNKNOWN_TOPIC
    assert "la.333.alerts.cme-officer" in error.message
    assert all(topic in error.message for topic in (ROLL_EVENTS, EHE_NOTIFICATIONS, SAFEGUARDING_STATUS))


@pytest.mark.parametrize(
    ("path", "field_name"),
    [
        ("value.event_id", "event_id"),
        ("value.upn", "upn"),
        ("value.child", "child"),
        ("value.child.forename", "child.forename"),
        ("value.child.date_of_birth", "child.date_of_birth"),
        ("value.school.special", "school.special"),
        ("value.recorded_at", "recorded_at"),
        ("value.destination.kind", "destination.kind"),
        ("value.source_system", "source_system"),
    ],
)
def test_missing_field(path: str, field_name: str) -> None:
    for absent in (..., None):
        error = raised(parse_line, line_with(path, absent))

        assert error.code == CodecErrorCode.MISSING_FIELD
        assert f"'{field_name}'" in error.message
        assert_no_personal_data(error)


@pytest.mark.parametrize(
    ("path", "bad_value", "field_name", "problem"),
    [
        ("value.child.date_of_birth", "17/08/2014", "child.date_of_birth", "YYYY-MM-DD"),
        ("value.child.date_of_birth", "20140817", "child.date_of_birth", "YYYY-MM-DD"),
        ("value.child.date_of_birth", "2014-02-30", "child.date_of_birth", "YYYY-MM-DD"),
        ("value.child.forename", 12, "child.forename", "string"),
        ("value.child.postcode", ["B66", "1AA"], "child.postcode", "string"),
        # The Avro codec cannot encode a lone surrogate, so `rollwatch publish` refuses it as BAD_FIELD too.
        ("value.child.forename", "Zo\ud800", "child.forename", "lone surrogate"),
        ("value.child.postcode", "\udfffB66 1AA", "child.postcode", "lone surrogate"),
        ("value.event_type", "DELETED", "event_type", "ADDED, REMOVED"),
        ("value.ground", "F", "ground", "F_HOME_EDUCATION"),
        ("value.destination.kind", "school", "destination.kind", "SCHOOL"),
        ("value.school.special", "false", "school.special", "true or false"),
        ("value.standard_transition", 0, "standard_transition", "true or false"),
        ("value.recorded_at", "yesterday", "recorded_at", "ISO-8601"),
        ("value.effective_date", 20250304, "effective_date", "YYYY-MM-DD"),
        ("value.school", "Smethwick High", "school", "JSON object"),
        ("value.destination", "UNKNOWN", "destination", "JSON object"),
    ],
)
def test_bad_field(path: str, bad_value: Any, field_name: str, problem: str) -> None:
    error = raised(parse_line, line_with(path, bad_value))

    assert error.code == CodecErrorCode.BAD_FIELD
    assert f"'{field_name}'" in error.message
    assert problem in error.message
    assert_no_personal_data(error)


def test_unknown_fields_are_ignored_so_a_sender_ahead_of_us_loses_no_record() -> None:
    # Like Avro schema resolution: a field this release does not know is skipped, never a reason to
    # dead-letter a roll change (and with it, maybe, the only alert about a child).
    plain = parse_line(line_with("value.source_system", "TESTMIS"))
    extended = parse_line(line_with("value.notes", "sent from the new MIS module"))
    nested = parse_line(line_with("value.child.middle_name", "Ann"))
    assert plain == extended == nested
    enveloped = json.loads(line_with("value.source_system", "TESTMIS"))
    enveloped["partition_hint"] = 3
    assert parse_line(json.dumps(enveloped)) == plain


def test_other_input_topics_check_their_fields() -> None:
    ehe = raised(
        parse_line,
        '{"topic": "ehe.notifications", "value": {"notification_id": "n", "upn": "u", "la_code": "333", '
        '"method": "EMAIL", "received_on": "2025-03-03"}}',
    )
    status = raised(
        parse_line,
        '{"topic": "safeguarding.status", "value": {"upn": "u", "la_code": "333", "child_protection_plan": true, '
        '"looked_after": false, "updated_at": "2025-01-02T08:00:00Z"}}',
    )
    tick = raised(parse_line, '{"topic": "clock.ticks", "value": {"today": "31/01/2025"}}')

    assert (ehe.code, status.code, tick.code) == (
        CodecErrorCode.BAD_FIELD,
        CodecErrorCode.MISSING_FIELD,
        CodecErrorCode.BAD_FIELD,
    )
    assert "'method'" in ehe.message and "WRITTEN, ORAL" in ehe.message
    assert "'school_attendance_order'" in status.message
    assert "'today'" in tick.message


def test_alert_from_json_checks_fields() -> None:
    alert_json = alert_to_json(ALERTS[0])
    missing = raised(alert_from_json, {key: value for key, value in alert_json.items() if key != "reason"})
    bad_ids = raised(alert_from_json, alert_json | {"trigger_event_ids": "e-1"})
    bad_rule = raised(alert_from_json, alert_json | {"rule": "SOMETHING_ELSE"})
    not_object = raised(alert_from_json, [alert_json])

    assert missing.code == CodecErrorCode.MISSING_FIELD and "'reason'" in missing.message
    assert bad_ids.code == CodecErrorCode.BAD_FIELD and "'trigger_event_ids'" in bad_ids.message
    assert bad_rule.code == CodecErrorCode.BAD_FIELD and "MISSING_NO_DESTINATION" in bad_rule.message
    assert not_object.code == CodecErrorCode.BAD_JSON


def test_writing_a_record_to_the_wrong_topic_is_wrong_record_type() -> None:
    error = raised(record_to_line, EHE_NOTIFICATIONS, removal())
    not_input = raised(record_to_json, ALERTS[0])

    assert error.code == CodecErrorCode.WRONG_RECORD_TYPE
    assert "roll.events" in error.message
    assert not_input.code == CodecErrorCode.WRONG_RECORD_TYPE


def test_writing_a_naive_timestamp_is_bad_field() -> None:
    naive = removal(recorded_at=datetime(2025, 3, 4, 9, 0))  # noqa: DTZ001 - the naive value is the point

    error = raised(record_to_json, naive)

    assert error.code == CodecErrorCode.BAD_FIELD
    assert "'recorded_at'" in error.message


def test_a_timestamp_without_offset_is_local_time_in_england() -> None:
    from zoneinfo import ZoneInfo

    _topic, winter = parse_line(line_with("value.recorded_at", "2025-03-04T09:00:00"))
    _topic, summer = parse_line(line_with("value.recorded_at", "2025-07-04T09:00:00"))
    assert isinstance(winter, RollEvent) and isinstance(summer, RollEvent)
    assert winter.recorded_at == datetime(2025, 3, 4, 9, 0, tzinfo=UTC)
    assert summer.recorded_at == datetime(2025, 7, 4, 8, 0, tzinfo=UTC)
    assert summer.recorded_at.tzinfo == ZoneInfo("Europe/London")


# --- referrals (design.md, Rules (v2)) ---------------------------------------------------------------------

ANONYMOUS_REFERRAL = (
    '{"topic": "cme.referrals", "value": {"referral_id": "00000000-0000-4000-b000-000000000009", '
    '"received_on": "2025-01-20", "la_code": "330", "child": {"forename": "Amir", "surname": "Khan"}, '
    '"concern": "NOT_IN_SCHOOL", "referrer": {"agency": "PUBLIC"}}}'
)


def test_a_referral_line_without_upn_or_referrer_is_a_referral_owned_by_its_referral_id() -> None:
    from processors.records import CME_REFERRALS, CMEReferral, ReferralConcern, ReferrerAgency
    from schemas.jsonformat import line_owner, parse_line_by_fields, record_owner

    topic, record = parse_line(ANONYMOUS_REFERRAL)

    assert topic == CME_REFERRALS and isinstance(record, CMEReferral)
    assert record.upn is None and record.child.date_of_birth is None and record.details is None
    assert record.concern is ReferralConcern.NOT_IN_SCHOOL and record.referrer.agency is ReferrerAgency.PUBLIC
    assert record.referrer.anonymous
    assert line_owner(ANONYMOUS_REFERRAL) == record_owner(record) == record.key == record.referral_id
    assert parse_line_by_fields(ANONYMOUS_REFERRAL) == (topic, record)
    assert parse_line(record_to_line(topic, record)) == (topic, record)


def test_a_case_action_without_upn_is_owned_by_its_referral_id_and_one_with_a_upn_by_the_upn() -> None:
    from schemas.jsonformat import line_owner

    base = {"action_id": "a-1", "case_id": "c-1", "action": "CLOSE", "reason": "r", "by": "b",
            "at": "2025-03-05T10:00:00Z", "referral_id": "00000000-0000-4000-b000-000000000009"}
    by_referral = json.dumps({"topic": "case.actions", "value": base})
    linked = json.dumps({"topic": "case.actions", "value": {**base, "action": "LINK", "upn": "W330215224052"}})

    assert line_owner(by_referral) == "00000000-0000-4000-b000-000000000009"
    assert line_owner(linked) == "W330215224052"
    assert parse_line(by_referral)[1].key == "00000000-0000-4000-b000-000000000009"  # type: ignore[union-attr]


def test_referral_lines_check_their_fields() -> None:
    value = json.loads(ANONYMOUS_REFERRAL)
    bad_concern = copy.deepcopy(value)
    bad_concern["value"]["concern"] = "TRUANCY"
    no_forename = copy.deepcopy(value)
    del no_forename["value"]["child"]["forename"]
    bad_agency = copy.deepcopy(value)
    bad_agency["value"]["referrer"]["agency"] = "NEIGHBOUR"

    concern = raised(parse_line, json.dumps(bad_concern))
    forename = raised(parse_line, json.dumps(no_forename))
    agency = raised(parse_line, json.dumps(bad_agency))

    assert (concern.code, forename.code, agency.code) == (
        CodecErrorCode.BAD_FIELD, CodecErrorCode.MISSING_FIELD, CodecErrorCode.BAD_FIELD)
    assert "'concern'" in concern.message and "EDUCATION_UNSUITABLE" in concern.message
    assert "'child.forename'" in forename.message
    assert "'referrer.agency'" in agency.message and "TRUANCY" not in concern.message


def test_the_new_case_action_fields_round_trip_through_json() -> None:
    from processors.records import CASE_ACTIONS, CaseAction

    for record in sample_records():
        if isinstance(record, CaseAction):
            assert parse_line(record_to_line(CASE_ACTIONS, record)) == (CASE_ACTIONS, record)
