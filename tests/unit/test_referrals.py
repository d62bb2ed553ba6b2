"""Referrals and case work in the worker: validation, the referral rules, and CLOSE, NOTE, ASSIGN, LINK."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime

import pytest

from processors.apply import apply_record, check
from processors.calendar import default_calendar
from processors.config import RuleConfig
from processors.failures import Rejected
from processors.identifiers import ProblemCode
from processors.records import (
    CaseAction,
    CaseActionType,
    CaseEnquiry,
    CloseReason,
    CMEReferral,
    EnquiryKind,
    Recipient,
    ReferralChild,
    ReferralConcern,
    Referrer,
    ReferrerAgency,
    Rule,
    Severity,
)
from processors.rules import alert_id, referral_case_id
from processors.timeline import MemoryChildStore, Timeline, memory_timeline
from processors.validation import validate
from schemas.jsonformat import parse_line
from tests.scenarios.builder import BHM_A, COV_A, added, removed, status, upn

PUPIL = upn("331", 771_001)
RID = "00000000-0000-4000-b000-00000000a001"
REFERRAL = CMEReferral(
    referral_id=RID,
    received_on=date(2025, 3, 3),
    la_code="331",
    upn=PUPIL,
    child=ReferralChild("Amir", "Khan", date(2014, 5, 1), "CV1 1AA"),
    concern=ReferralConcern.NOT_IN_SCHOOL,
    referrer=Referrer(ReferrerAgency.HEALTH, "Nurse Jones", "07700 900123"),
    details="Seen at home on school days.\nMother says no school place.",
)
ACTION = CaseAction(
    action_id="00000000-0000-4000-c000-00000000a001",
    upn=None,
    case_id=referral_case_id(RID),
    action=CaseActionType.CLOSE,
    reason="Left England: family confirmed the move to Scotland",
    by="officer.331",
    at=datetime(2025, 3, 12, 10, 0, tzinfo=UTC),
    referral_id=RID,
    la_code="331",
)


def referral(**changes: object) -> CMEReferral:
    return dataclasses.replace(REFERRAL, **changes)  # type: ignore[arg-type]


def case_action(**changes: object) -> CaseAction:
    return dataclasses.replace(ACTION, **changes)  # type: ignore[arg-type]


def codes(record: CMEReferral | CaseAction) -> list[str]:
    return [str(problem.code) for problem in validate(record)]


def timeline() -> Timeline:
    return memory_timeline(RuleConfig(default_calendar()))


def record_of(line: dict[str, object]) -> object:
    import json

    return parse_line(json.dumps(line))[1]


# --- validation: referrals -----------------------------------------------------------------------------------


def test_a_full_referral_and_an_anonymous_one_without_upn_or_birth_date_are_valid() -> None:
    anonymous = referral(upn=None, child=ReferralChild("A", "B"), referrer=Referrer(ReferrerAgency.PUBLIC),
                         details=None)

    assert codes(REFERRAL) == [] and codes(anonymous) == []
    assert anonymous.referrer.anonymous and not REFERRAL.referrer.anonymous


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"referral_id": "R-1"}, "EVENT_ID_FORMAT"),
        ({"la_code": "999"}, "LA_CODE_UNKNOWN"),
        ({"la_code": "33"}, "LA_CODE_UNKNOWN"),
        ({"upn": "Q330317324074"}, "UPN_CHECK_LETTER"),
        ({"upn": "not a upn"}, "UPN_FORMAT"),
        ({"received_on": date(1989, 12, 31)}, "DATE_IMPLAUSIBLE"),
        ({"received_on": date(2101, 1, 1)}, "DATE_IMPLAUSIBLE"),
        ({"child": ReferralChild(" ", "Khan")}, "TEXT_EMPTY"),
        ({"child": ReferralChild("Amir", "")}, "TEXT_EMPTY"),
        ({"child": ReferralChild("A" * 101, "Khan")}, "TEXT_TOO_LONG"),
        ({"child": ReferralChild("Amir", "Khan\x00")}, "TEXT_INVALID"),
        ({"child": ReferralChild("Amir", "Khan", postcode="CV1 1AA CV1 1AA")}, "TEXT_TOO_LONG"),
        ({"child": ReferralChild("Amir", "Khan", date(2026, 1, 1))}, "DATE_IMPLAUSIBLE"),
        ({"child": ReferralChild("Amir", "Khan", date(1995, 1, 1))}, "DATE_IMPLAUSIBLE"),
        ({"details": "x" * 2001}, "TEXT_TOO_LONG"),
        ({"details": "bell\x07"}, "TEXT_INVALID"),
        ({"referrer": Referrer(ReferrerAgency.POLICE, contact="x" * 255)}, "TEXT_TOO_LONG"),
        ({"referrer": Referrer(ReferrerAgency.POLICE, name="N" * 201)}, "TEXT_TOO_LONG"),
    ],
)
def test_a_bad_referral_is_refused_with_a_code(changes: dict[str, object], code: str) -> None:
    assert code in codes(referral(**changes))


def test_a_blank_referrer_name_and_contact_are_read_as_an_anonymous_referral() -> None:
    blank = referral(referrer=Referrer(ReferrerAgency.PUBLIC, name="  ", contact=""))
    assert codes(blank) == []
    assert blank.referrer.anonymous
    [alert] = apply_record(timeline(), blank).alerts
    assert "anonymous" in alert.reason


def test_details_of_exactly_2000_characters_over_several_lines_are_valid() -> None:
    assert codes(referral(details=("line\n" * 400)[:2000])) == []


def test_refusals_never_quote_the_childs_or_referrers_details() -> None:
    bad = referral(child=ReferralChild("Amir" * 30, "Khan", date(2026, 1, 1)),
                   referrer=Referrer(ReferrerAgency.HEALTH, "Nurse Jones" * 30, "07700 900123"))
    text = " ".join(problem.message for problem in validate(bad))

    assert "Amir" not in text and "Jones" not in text and "07700" not in text and "2026" not in text


# --- validation: case actions ---------------------------------------------------------------------------------


def test_each_action_with_what_it_needs_is_valid_and_an_old_close_without_reason_code_too() -> None:
    old_close = case_action(upn=PUPIL, referral_id=None, la_code=None)
    note = case_action(action=CaseActionType.NOTE, enquiry=CaseEnquiry(EnquiryKind.HOME_VISIT, "nobody home"),
                       reason="Visited twice.\nNeighbours say the family moved.")
    assign = case_action(action=CaseActionType.ASSIGN, assignee="officer.331.b")
    link = case_action(action=CaseActionType.LINK, upn=PUPIL)
    close = case_action(close_reason=CloseReason.LEFT_ENGLAND_CONFIRMED)

    assert [codes(a) for a in (old_close, note, assign, link, close)] == [[], [], [], [], []]


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"upn": None, "referral_id": None}, "ACTION_INCOMPLETE"),
        ({"referral_id": "r-1"}, "EVENT_ID_FORMAT"),
        ({"la_code": "000"}, "LA_CODE_UNKNOWN"),
        ({"action": CaseActionType.NOTE}, "ACTION_INCOMPLETE"),
        ({"action": CaseActionType.NOTE, "enquiry": CaseEnquiry(EnquiryKind.OTHER, " ")}, "TEXT_EMPTY"),
        ({"action": CaseActionType.NOTE, "enquiry": CaseEnquiry(EnquiryKind.OTHER, "x"), "reason": "y" * 2001},
         "TEXT_TOO_LONG"),
        ({"action": CaseActionType.ASSIGN}, "ACTION_INCOMPLETE"),
        ({"action": CaseActionType.ASSIGN, "assignee": ""}, "TEXT_EMPTY"),
        ({"action": CaseActionType.LINK}, "ACTION_INCOMPLETE"),
        ({"action": CaseActionType.LINK, "upn": PUPIL, "la_code": None}, "ACTION_INCOMPLETE"),
        ({"action": CaseActionType.LINK, "upn": PUPIL, "referral_id": None}, "ACTION_INCOMPLETE"),
        ({"close_reason": CloseReason.DIED, "action": CaseActionType.ASSIGN, "assignee": "b"},
         "ACTION_FIELD_MISPLACED"),
        ({"enquiry": CaseEnquiry(EnquiryKind.OTHER, "x")}, "ACTION_FIELD_MISPLACED"),
        ({"assignee": "b"}, "ACTION_FIELD_MISPLACED"),
    ],
)
def test_a_case_action_missing_what_its_kind_needs_is_refused_with_a_code(
    changes: dict[str, object], code: str
) -> None:
    assert code in codes(case_action(**changes))


def test_every_new_problem_code_is_a_stable_problem_code() -> None:
    assert {"ACTION_INCOMPLETE", "ACTION_FIELD_MISPLACED"} <= {str(code) for code in ProblemCode}


def test_a_refused_referral_is_rejected_with_every_problem() -> None:
    with pytest.raises(Rejected) as refused:
        check(referral(la_code="999", details="x" * 2001))
    assert refused.value.code == "LA_CODE_UNKNOWN" and "TEXT_TOO_LONG" in refused.value.message


# --- the rules -----------------------------------------------------------------------------------------------


def test_referral_not_on_roll_alert_fields() -> None:
    [alert] = apply_record(timeline(), REFERRAL).alerts

    assert (alert.rule, alert.recipient, alert.la_code, alert.severity) == (
        Rule.REFERRAL_NOT_ON_ROLL, Recipient.CME_OFFICER, "331", Severity.HIGH)
    assert alert.upn == PUPIL and alert.referral_id == RID and alert.trigger_event_ids == (RID,)
    assert alert.raised_on == date(2025, 3, 3) and alert.school_urn is None
    assert alert.case_id == referral_case_id(RID)
    assert alert.alert_id == alert_id(Rule.REFERRAL_NOT_ON_ROLL, Recipient.CME_OFFICER, "331", PUPIL, RID)
    assert alert.child is not None and alert.child.forename == "Amir"


def test_the_reason_names_the_agency_and_the_enquiries_but_never_the_referrer() -> None:
    [named] = apply_record(timeline(), REFERRAL).alerts
    [anonymous] = apply_record(timeline(), referral(referrer=Referrer(ReferrerAgency.PUBLIC))).alerts

    assert "health practitioner" in named.reason and "Lost Pupil Database" in named.reason
    assert "other LAs" in named.reason and "reasonable enquiries" in named.reason
    assert "Nurse Jones" not in named.reason and "07700" not in named.reason and "Amir" not in named.reason
    assert "anonymous" in anonymous.reason and "member of the public" in anonymous.reason


def test_a_referral_without_upn_keys_its_alert_and_case_by_the_referral_id() -> None:
    line = timeline()
    [alert] = apply_record(line, referral(upn=None, child=ReferralChild("Amir", "Khan"))).alerts
    state = line.children.get(RID)

    assert alert.upn is None and alert.referral_id == RID and alert.key == RID and alert.child is None
    assert alert.alert_id == alert_id(Rule.REFERRAL_NOT_ON_ROLL, Recipient.CME_OFFICER, "331", RID, RID)
    assert "no date of birth" in alert.reason
    assert state is not None and state.by_referral and state.case is not None
    assert state.case.case_id == referral_case_id(RID) and state.case.holders == ("331",)


def test_a_referral_applied_again_is_ignored() -> None:
    line = timeline()
    first = apply_record(line, REFERRAL)
    again = apply_record(line, referral(received_on=date(2025, 3, 4)))

    assert first.new and first.alerts and not again.new and again.alerts == ()


def test_on_roll_alert_goes_to_every_schools_la_with_the_latest_added_school() -> None:
    line = timeline()
    for record in (added(PUPIL, BHM_A, "2025-01-13"), added(PUPIL, COV_A, "2025-01-06")):
        apply_record(line, record_of(record))  # type: ignore[arg-type]
    alerts = apply_record(line, REFERRAL).alerts

    assert sorted((a.rule, a.la_code, a.severity) for a in alerts) == [
        (Rule.REFERRAL_ON_ROLL, "330", Severity.INFO), (Rule.REFERRAL_ON_ROLL, "331", Severity.INFO)]
    assert {a.school_urn for a in alerts} == {BHM_A["urn"]}
    assert all(a.case_id is None and a.referral_id == RID for a in alerts)
    assert line.children.get(PUPIL).case is None  # type: ignore[union-attr]


def test_protected_not_on_roll_is_immediate_for_everyone_and_counts_as_the_social_care_alert() -> None:
    line = timeline()
    apply_record(line, record_of(status(PUPIL, "336", cp=True)))  # type: ignore[arg-type]
    alerts = apply_record(line, referral(concern=ReferralConcern.EDUCATION_UNSUITABLE)).alerts
    case = line.children.get(PUPIL).case  # type: ignore[union-attr]

    assert sorted((a.recipient, a.la_code) for a in alerts) == [
        (Recipient.CME_OFFICER, "331"), (Recipient.EHE_SERVICE, "331"), (Recipient.SOCIAL_CARE, "336")]
    assert {a.severity for a in alerts} == {Severity.IMMEDIATE}
    assert case is not None and case.social_care_alerted == ("336",) and case.holders == ("331",)


# --- case actions in the worker --------------------------------------------------------------------------------


def test_notes_and_assignments_change_no_state_and_raise_nothing() -> None:
    line = timeline()
    apply_record(line, referral(upn=None))
    before = line.children.get(RID)
    note = case_action(action=CaseActionType.NOTE, enquiry=CaseEnquiry(EnquiryKind.OTHER, "called"))
    assign = case_action(action=CaseActionType.ASSIGN, assignee="officer.331.b")

    results = [apply_record(line, record) for record in (note, assign, note)]

    assert all(r.new and r.alerts == () and not r.changes for r in results)
    assert line.children.get(RID) is before


def test_an_officer_closes_a_referral_case_without_upn_by_its_referral_id() -> None:
    line = timeline()
    opened = apply_record(line, referral(upn=None))
    closed = apply_record(line, ACTION)
    state = line.children.get(RID)

    assert opened.changes.cases_opened == ("331",) and closed.changes.cases_closed == ("331",)
    assert state is not None and state.case is None and state.closed_case_ids == (referral_case_id(RID),)
    assert apply_record(line, referral(upn=None)).alerts == ()


def test_link_gives_the_child_the_referral_case_which_the_next_added_closes() -> None:
    line = timeline()
    apply_record(line, referral(upn=None))
    link = case_action(action=CaseActionType.LINK, upn=PUPIL)
    linked = apply_record(line, link)
    child = line.children.get(PUPIL)
    [located] = apply_record(line, record_of(added(PUPIL, COV_A, "2025-03-17"))).alerts  # type: ignore[arg-type]

    assert linked.alerts == () and not linked.changes  # counted open where the referral opened it
    assert child is not None and child.case is not None and child.case.case_id == referral_case_id(RID)
    assert child.case.referral_id == RID and child.case.holders == ("331",) and child.case.opened_by is None
    assert (located.rule, located.la_code, located.case_id) == (Rule.CHILD_LOCATED, "331", referral_case_id(RID))
    assert "after a referral" in located.reason
    assert apply_record(line, link).new is False


def test_link_into_an_open_case_adds_the_holder_and_the_linked_case_ends_with_it() -> None:
    line = timeline()
    apply_record(line, record_of(removed(PUPIL, BHM_A, "2025-03-04", "I_CONTINUOUS_ABSENCE")))  # type: ignore[arg-type]
    apply_record(line, case_action(action=CaseActionType.LINK, upn=PUPIL))
    case = line.children.get(PUPIL).case  # type: ignore[union-attr]
    alerts = apply_record(line, record_of(added(PUPIL, COV_A, "2025-03-17"))).alerts  # type: ignore[arg-type]
    state = line.children.get(PUPIL)

    assert case is not None and case.holders == ("330", "331") and case.linked == (referral_case_id(RID),)
    assert sorted(a.la_code for a in alerts if a.rule is Rule.CHILD_LOCATED) == ["330", "331"]
    assert state is not None and referral_case_id(RID) in state.closed_case_ids


def test_a_referral_case_for_a_child_is_closed_by_any_added_even_one_dated_earlier() -> None:
    line = timeline()
    apply_record(line, referral(received_on=date(2025, 3, 10)))
    alerts = apply_record(line, record_of(added(PUPIL, COV_A, "2024-09-02"))).alerts  # type: ignore[arg-type]

    assert [a.rule for a in alerts] == [Rule.CHILD_LOCATED]


def test_states_of_referrals_without_upn_and_of_children_live_apart_in_the_store() -> None:
    store = MemoryChildStore()
    line = memory_timeline(RuleConfig(default_calendar()))
    line.children = store
    apply_record(line, referral(upn=None))
    apply_record(line, referral(referral_id="00000000-0000-4000-b000-00000000a002"))

    assert set(store.states) == {RID, PUPIL}
    assert store.states[RID].by_referral and not store.states[PUPIL].by_referral


# --- stored state ---------------------------------------------------------------------------------------------


def test_a_referral_case_state_round_trips_and_states_stored_before_referrals_still_read() -> None:
    import msgspec

    from streams.statecodec import decode_state, encode_state

    line = timeline()
    apply_record(line, record_of(removed(PUPIL, BHM_A, "2025-03-04", "I_CONTINUOUS_ABSENCE")))  # type: ignore[arg-type]
    apply_record(line, case_action(action=CaseActionType.LINK, upn=PUPIL))
    apply_record(line, referral(upn=None))
    child, by_referral = line.children.get(PUPIL), line.children.get(RID)
    assert child is not None and by_referral is not None

    assert decode_state(encode_state(child)) == child and decode_state(encode_state(by_referral)) == by_referral
    # As a release before referrals wrote it: no by_referral, a case without referral_id and linked, roll
    # entries without their school's LA.
    old = msgspec.msgpack.decode(encode_state(child)[1:])
    old = old[:9]
    old[2] = [entry[:5] for entry in old[2]]
    old[5] = old[5][:6]
    read = decode_state(b"\x02" + msgspec.msgpack.encode(old))
    assert read.by_referral is False and read.rolls[0].school_la == ""
    assert read.case is not None and read.case.linked == () and read.case.referral_id is None
    assert read.case.holders == child.case.holders  # type: ignore[union-attr]
