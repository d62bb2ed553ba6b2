"""Replay scenarios for the referral rules of design.md "Rules (v2)" and the officers' actions on their cases."""

# Expected alerts are (rule, recipient, LA, UPN), each once; an alert about a referral without a UPN has None for
# the UPN. Dates fall in the spring term of 2024/25; LA codes: 330 Birmingham, 331 Coventry, 332 Dudley, 336
# Wolverhampton, 860 Staffordshire.

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from processors.rules import referral_case_id
from tests.scenarios.builder import (
    BHM_A,
    COV_A,
    COV_B,
    DUD_A,
    UNKNOWN,
    Scenario,
    added,
    removed,
    status,
    upn,
)

RNOR, ROR = "REFERRAL_NOT_ON_ROLL", "REFERRAL_ON_ROLL"
MND, LOCATED, OCP = "MISSING_NO_DESTINATION", "CHILD_LOCATED", "OPEN_CASE_PROTECTED"
CME, SC, EHE = "CME_OFFICER", "SOCIAL_CARE", "EHE_SERVICE"
REFERRAL_RULES = frozenset({RNOR, ROR})

REFERRAL_SCENARIOS: list[Scenario] = []
_referral_serials = itertools.count(1)
_action_serials = itertools.count(1)


def referral_id() -> str:
    return f"00000000-0000-4000-b000-{next(_referral_serials):012d}"


def referral(
    pupil: str | None,
    la: str,
    on: str,
    concern: str = "NOT_IN_SCHOOL",
    agency: str = "HEALTH",
    *,
    anonymous: bool = False,
    date_of_birth: str | None = "2014-05-01",
    rid: str | None = None,
) -> dict[str, Any]:
    """A referral to LA `la`, received on `on`; `pupil` None for one that gives no UPN."""
    child: dict[str, Any] = {"forename": "Test", "surname": "Child"}
    if date_of_birth is not None:
        child["date_of_birth"] = date_of_birth
    referrer: dict[str, Any] = {"agency": agency}
    if not anonymous:
        referrer |= {"name": "A Practitioner", "contact": "practitioner@example.org"}
    value: dict[str, Any] = {
        "referral_id": rid or referral_id(),
        "received_on": on,
        "la_code": la,
        "child": child,
        "concern": concern,
        "details": "Seen at home during school hours.\nThe family say the child has no school place.",
        "referrer": referrer,
    }
    if pupil is not None:
        value["upn"] = pupil
    return {"topic": "cme.referrals", "value": value}


def action(
    kind: str,
    case_id: str,
    *,
    pupil: str | None = None,
    rid: str | None = None,
    la: str = "331",
    at: str = "2025-03-12T10:00:00Z",
    **fields: Any,
) -> dict[str, Any]:
    """An officer's action on a case; `fields` adds close_reason, enquiry or assignee."""
    value: dict[str, Any] = {
        "action_id": f"00000000-0000-4000-c000-{next(_action_serials):012d}",
        "case_id": case_id,
        "action": kind,
        "reason": f"{kind.lower()} recorded in the scenario",
        "by": "officer.331",
        "at": at,
        "la_code": la,
        **fields,
    }
    if pupil is not None:
        value["upn"] = pupil
    if rid is not None:
        value["referral_id"] = rid
    return {"topic": "case.actions", "value": value}


def scenario(story: str) -> Callable[[Callable[[str], Scenario]], Callable[[str], Scenario]]:
    """Registers a scenario builder under the next `rNN_` name, with a UPN of its own."""

    def add(build: Callable[[str], Scenario]) -> Callable[[str], Scenario]:
        built = build(upn("331", 970_000 + len(REFERRAL_SCENARIOS)))
        built.name = f"r{len(REFERRAL_SCENARIOS) + 1:02d}_{build.__name__}"
        built.story = story
        REFERRAL_SCENARIOS.append(built)
        return build

    return add


@scenario("A health visitor refers a child on no school's roll; the child's ADDED later closes the case.")
def referral_then_added(p: str) -> Scenario:
    return Scenario("", "", [
        referral(p, "331", "2025-03-03"),
        added(p, COV_A, "2025-03-10"),
    ], [(RNOR, CME, "331", p), (LOCATED, CME, "331", p)])


@scenario("Birmingham holds a case after a removal with no destination; a referral to Coventry joins it, and "
          "the child's ADDED tells both.")
def referral_joins_case_held_by_other_la(p: str) -> Scenario:
    return Scenario("", "", [
        removed(p, BHM_A, "2025-03-04", "G_MOVED_AWAY", destination=UNKNOWN),
        referral(p, "331", "2025-03-06", "NEW_TO_AREA", "HOUSING"),
        added(p, COV_A, "2025-03-10"),
    ], [(MND, CME, "330", p), (RNOR, CME, "331", p), (LOCATED, CME, "330", p), (LOCATED, CME, "331", p)])


@scenario("A child on a Wolverhampton protection plan is referred to Coventry: IMMEDIATE to Coventry's CME "
          "officer and to Wolverhampton's social care.")
def protected_child_referred(p: str) -> Scenario:
    return Scenario("", "", [
        status(p, "336", cp=True),
        referral(p, "331", "2025-03-03", agency="POLICE"),
    ], [(RNOR, CME, "331", p), (RNOR, SC, "336", p)])


@scenario("A referral opens a case; the child then becomes looked after: OPEN_CASE_PROTECTED to social care.")
def referral_case_then_looked_after(p: str) -> Scenario:
    return Scenario("", "", [
        referral(p, "331", "2025-03-03"),
        status(p, "336", lac=True, at="2025-03-05"),
    ], [(RNOR, CME, "331", p), (OCP, SC, "336", p)])


@scenario("Social care had the referral's own alert, so a later status from the same LA raises no "
          "OPEN_CASE_PROTECTED.")
def referral_social_care_alert_counts_for_the_case(p: str) -> Scenario:
    return Scenario("", "", [
        status(p, "336", cp=True),
        referral(p, "331", "2025-03-03"),
        status(p, "336", cp=True, lac=True, at="2025-03-05"),
    ], [(RNOR, CME, "331", p), (RNOR, SC, "336", p)])


@scenario("A member of the public refers a child anonymously: valid, and alerted like any other.")
def anonymous_public_referral(p: str) -> Scenario:
    return Scenario("", "", [referral(p, "331", "2025-03-03", agency="PUBLIC", anonymous=True)],
                    [(RNOR, CME, "331", p)])


@scenario("The intake sends the same referral twice (same referral id): the second is ignored.")
def resent_referral_ignored(p: str) -> Scenario:
    rid = referral_id()
    return Scenario("", "", [
        referral(p, "331", "2025-03-03", rid=rid),
        referral(p, "331", "2025-03-03", rid=rid),
    ], [(RNOR, CME, "331", p)])


@scenario("A referral gives no UPN: it has a case of its own, and its alert has no UPN.")
def referral_without_upn(p: str) -> Scenario:
    return Scenario("", "", [
        referral(None, "331", "2025-03-03", "NOT_IN_SCHOOL", "VOLUNTARY"),
        added(p, COV_A, "2025-03-10"),
    ], [(RNOR, CME, "331", None)])


@scenario("An officer records enquiries on a referral's case without a UPN, assigns it, and closes it; the "
          "same referral sent again after the close is still ignored.")
def referral_without_upn_worked_and_closed(p: str) -> Scenario:
    rid = referral_id()
    case = referral_case_id(rid)
    return Scenario("", "", [
        referral(None, "331", "2025-03-03", rid=rid, date_of_birth=None),
        action("NOTE", case, rid=rid, enquiry={"kind": "LOST_PUPIL_DATABASE_CHECKED", "outcome": "not found"}),
        action("ASSIGN", case, rid=rid, assignee="officer.331.b"),
        action("CLOSE", case, rid=rid, close_reason="LEFT_ENGLAND_CONFIRMED"),
        referral(None, "331", "2025-03-03", rid=rid, date_of_birth=None),
    ], [(RNOR, CME, "331", None)])


@scenario("An officer links a referral without a UPN to the child's UPN; the child's ADDED then closes the "
          "case with CHILD_LOCATED to the LA that held it.")
def link_then_added_closes(p: str) -> Scenario:
    rid = referral_id()
    return Scenario("", "", [
        referral(None, "331", "2025-03-03", rid=rid),
        action("LINK", referral_case_id(rid), pupil=p, rid=rid),
        added(p, COV_B, "2025-03-17"),
    ], [(RNOR, CME, "331", None), (LOCATED, CME, "331", p)])


@scenario("A referral without a UPN is linked to a child whose case Birmingham holds: Coventry joins it, and "
          "the ADDED tells both.")
def link_to_child_with_open_case(p: str) -> Scenario:
    rid = referral_id()
    return Scenario("", "", [
        removed(p, BHM_A, "2025-03-04", "I_CONTINUOUS_ABSENCE"),
        referral(None, "331", "2025-03-05", rid=rid),
        action("LINK", referral_case_id(rid), pupil=p, rid=rid),
        added(p, COV_A, "2025-03-17"),
    ], [(MND, CME, "330", p), (RNOR, CME, "331", None), (LOCATED, CME, "330", p), (LOCATED, CME, "331", p)])


@scenario("A school reports a child taught at an unregistered setting: the EHE service is told as well.")
def education_unsuitable(p: str) -> Scenario:
    return Scenario("", "", [referral(p, "331", "2025-03-03", "EDUCATION_UNSUITABLE", "SCHOOL")],
                    [(RNOR, CME, "331", p), (RNOR, EHE, "331", p)])


@scenario("A protected child's education is reported unsuitable: IMMEDIATE to the CME officer, the EHE "
          "service and social care.")
def protected_education_unsuitable(p: str) -> Scenario:
    return Scenario("", "", [
        status(p, "860", lac=True),
        referral(p, "331", "2025-03-03", "EDUCATION_UNSUITABLE", "SOCIAL_CARE"),
    ], [(RNOR, CME, "331", p), (RNOR, EHE, "331", p), (RNOR, SC, "860", p)])


@scenario("A child dual-registered at schools in Birmingham and Dudley is referred to Coventry: INFO to all "
          "three LAs' CME officers.")
def on_roll_in_two_other_las(p: str) -> Scenario:
    return Scenario("", "", [
        added(p, BHM_A, "2025-01-06"),
        added(p, DUD_A, "2025-01-13"),
        referral(p, "331", "2025-03-03", "NOT_ATTENDING"),
    ], [(ROR, CME, "331", p), (ROR, CME, "330", p), (ROR, CME, "332", p)])


@scenario("A child on roll at a Coventry school is referred to Coventry: INFO to Coventry's CME officer only, "
          "protected or not, and no case opens.")
def on_roll_in_the_referral_la(p: str) -> Scenario:
    return Scenario("", "", [
        status(p, "336", cp=True),
        added(p, COV_A, "2025-01-06"),
        referral(p, "331", "2025-03-03", "NOT_ATTENDING", "HEALTH"),
        added(p, COV_B, "2025-03-10"),
    ], [(ROR, CME, "331", p)])


@scenario("A referral after the child's REMOVED (no destination): the child is on no roll, so Coventry's "
          "referral joins the case its removal opened; one CHILD_LOCATED when found.")
def referral_after_removed_joins_case(p: str) -> Scenario:
    return Scenario("", "", [
        added(p, COV_A, "2025-01-06"),
        removed(p, COV_A, "2025-03-04", "G_MOVED_AWAY", destination=UNKNOWN),
        referral(p, "331", "2025-03-06"),
        added(p, DUD_A, "2025-03-17"),
    ], [(MND, CME, "331", p), (RNOR, CME, "331", p), (LOCATED, CME, "331", p)])


@scenario("A child who left one school and joined another is referred: on roll at the second school only, in "
          "Birmingham, so Coventry and Birmingham are told.")
def on_roll_after_moving_school(p: str) -> Scenario:
    return Scenario("", "", [
        added(p, COV_A, "2025-01-06"),
        removed(p, COV_A, "2025-02-03", "A_REGISTERED_ELSEWHERE", destination={"kind": "SCHOOL",
                "school_urn": BHM_A["urn"], "school_laestab": BHM_A["laestab"]}),
        added(p, BHM_A, "2025-02-04"),
        referral(p, "331", "2025-03-03", "NOT_ATTENDING"),
    ], [("MOVED_OUT_OF_AREA", CME, "330", p), (ROR, CME, "331", p), (ROR, CME, "330", p)])


@scenario("A case a referral opened closes on any ADDED applied while it is open, even one dated before the "
          "referral (a school's late entry).")
def referral_case_closed_by_an_earlier_dated_added(p: str) -> Scenario:
    return Scenario("", "", [
        referral(p, "331", "2025-03-10"),
        added(p, COV_A, "2025-01-06"),
    ], [(RNOR, CME, "331", p), (LOCATED, CME, "331", p)])


@scenario("Once located, the child is on roll: a new referral (new id) raises REFERRAL_ON_ROLL and opens no "
          "case.")
def new_referral_after_located(p: str) -> Scenario:
    return Scenario("", "", [
        referral(p, "331", "2025-03-03"),
        added(p, COV_A, "2025-03-10"),
        referral(p, "331", "2025-03-20", "NOT_ATTENDING", "YOUTH_JUSTICE"),
        status(p, "331", cp=True, at="2025-03-21"),
    ], [(RNOR, CME, "331", p), (LOCATED, CME, "331", p), (ROR, CME, "331", p)])


@scenario("An anonymous referral gives neither UPN nor date of birth: its alert names no child, and an officer "
          "closes its case.")
def anonymous_referral_without_upn_or_birth_date(p: str) -> Scenario:
    rid = referral_id()
    return Scenario("", "", [
        referral(None, "332", "2025-03-03", "OTHER", "PUBLIC", anonymous=True, date_of_birth=None, rid=rid),
        action("CLOSE", referral_case_id(rid), rid=rid, la="332", close_reason="OTHER"),
    ], [(RNOR, CME, "332", None)])


@scenario("A referral to Coventry for a child closed by an officer's CLOSE: the closed case stays closed, and "
          "the child's next ADDED raises nothing.")
def officer_closes_referral_case_with_upn(p: str) -> Scenario:
    rid = referral_id()
    return Scenario("", "", [
        referral(p, "331", "2025-03-03", rid=rid),
        action("CLOSE", referral_case_id(rid), pupil=p, close_reason="HOME_EDUCATION_CONFIRMED"),
        added(p, COV_A, "2025-03-17"),
    ], [(RNOR, CME, "331", p)])


@scenario("A referral that gives no date of birth opens a case; the child then goes on a protection plan: "
          "OPEN_CASE_PROTECTED to social care (an alert naming no child), and the child's ADDED tells social "
          "care too.")
def referral_case_without_birth_date_then_protected(p: str) -> Scenario:
    return Scenario("", "", [
        referral(p, "331", "2025-03-03", date_of_birth=None),
        status(p, "336", cp=True, at="2025-03-04"),
        added(p, COV_A, "2025-03-10"),
    ], [(RNOR, CME, "331", p), (OCP, SC, "336", p), (LOCATED, CME, "331", p), (LOCATED, SC, "336", p)])
