"""Case work over in-memory SQLite: referral intake (form and partner endpoint), case view and link, regional
search, the `cases note|assign|close|link` and `lookup` commands, and what each leaves in the audit trail."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from cli.main import main
from config.settings import DashboardCredential, PartnerCredential
from processors.identifiers import CURRENT_LA_CODES
from processors.records import (
    Alert,
    AlertChild,
    CaseAction,
    CaseActionType,
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
from sinks.register import Register, migrate
from sinks.register.intake import read_referral
from sinks.register.lookup import name_similarity
from sinks.register.regions import Region, region_of, same_region_las
from web.casework import MAX_BODY, Casework, PartnerAccess, Publishers
from web.dashboard import DashboardAccess, LADashboard

COVENTRY, DUDLEY, CAMDEN = "331", "332", "202"
UPN_AMELIA, UPN_OTHER = "G331200001001", "K331200001003"
AMELIA = AlertChild("Amelia", "Okafor", date(2014, 5, 2))
CASE_AMELIA = "11111111-1111-5111-8111-111111111111"
CASE_REFERRAL = "22222222-2222-5222-8222-222222222222"
REFERRAL_ID = "33333333-3333-4333-8333-333333333333"
TOKENS = {"cme": "coventry-officer-token-0123456789", "care": "coventry-care-token-0123456789",
          "dudley": "dudley-officer-token-0123456789"}
CREDENTIALS = {
    "cme": DashboardCredential(la=COVENTRY, role="cme-officer",
                               sha256=hashlib.sha256(TOKENS["cme"].encode()).hexdigest()),
    "care": DashboardCredential(la=COVENTRY, role="social-care",
                                sha256=hashlib.sha256(TOKENS["care"].encode()).hexdigest()),
    "dudley": DashboardCredential(la=DUDLEY, role="cme-officer",
                                  sha256=hashlib.sha256(TOKENS["dudley"].encode()).hexdigest()),
}
PARTNER_TOKEN = "health-visitors-token-0123456789"
PARTNERS = {"health": PartnerCredential(la=COVENTRY, sha256=hashlib.sha256(PARTNER_TOKEN.encode()).hexdigest())}
TODAY = date(2025, 3, 12)


def opening_alert(number: int, la: str, upn: str, child: AlertChild, case_id: str, raised_on: date) -> Alert:
    return Alert(
        alert_id=f"aaaaaaaa-0000-5000-8000-{number:012d}", rule=Rule.MISSING_NO_DESTINATION,
        recipient=Recipient.CME_OFFICER, la_code=la, severity=Severity.HIGH, upn=upn, child=child,
        school_urn="140201", raised_on=raised_on, reason="Removed with no known destination.", case_id=case_id,
    )


def referral(forename: str = "Amelia", surname: str = "Okafour") -> CMEReferral:
    return CMEReferral(
        referral_id=REFERRAL_ID, received_on=date(2025, 3, 10), la_code=COVENTRY, upn=None,
        child=ReferralChild(forename, surname, date(2014, 5, 2), "CV1 1AA"), concern=ReferralConcern.NOT_IN_SCHOOL,
        referrer=Referrer(ReferrerAgency.HEALTH, "H. Visitor", "01234 567890"), details="Seen at the clinic.",
    )


def referral_alert() -> Alert:
    return Alert(
        alert_id="aaaaaaaa-0000-5000-8000-000000000099", rule=Rule.REFERRAL_NOT_ON_ROLL,
        recipient=Recipient.CME_OFFICER, la_code=COVENTRY, severity=Severity.HIGH, upn=None, child=None,
        school_urn=None, raised_on=date(2025, 3, 10), reason="Referred; on roll at no school.",
        trigger_event_ids=(REFERRAL_ID,), case_id=CASE_REFERRAL, referral_id=REFERRAL_ID,
    )


def contents() -> list[Any]:
    return [
        opening_alert(1, COVENTRY, UPN_AMELIA, AMELIA, CASE_AMELIA, date(2025, 3, 3)),
        # A Camden (London) case for the same child: outside the West Midlands, never shown to Coventry.
        opening_alert(2, CAMDEN, UPN_AMELIA, AMELIA, "44444444-4444-5444-8444-444444444444", date(2024, 1, 5)),
        referral(), referral_alert(),
    ]


@pytest.fixture
def register() -> Iterator[Register]:
    opened = Register.from_url("sqlite://")
    migrate(opened.engine)
    opened.record(contents())
    yield opened
    opened.close()


class Sent:
    def __init__(self) -> None:
        self.referrals: list[CMEReferral] = []
        self.actions: list[CaseAction] = []


@pytest.fixture
def sent() -> Sent:
    return Sent()


@pytest.fixture
def casework(register: Register, sent: Sent) -> Casework:
    dashboard = LADashboard(DashboardAccess(CREDENTIALS), lambda: register)
    return Casework(dashboard, Publishers(sent.referrals.append, sent.actions.append),
                    PartnerAccess(PARTNERS, per_minute=5), today=lambda: TODAY)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def partner_headers(token: str = PARTNER_TOKEN) -> dict[str, str]:
    return {**bearer(token), "Content-Type": "application/json"}


PARTNER_REFERRAL = {
    "child": {"forename": "Noah", "surname": "Bright", "date_of_birth": "2013-06-01", "postcode": "cv2 2bb"},
    "concern": "NOT_IN_SCHOOL",
    "details": "Family says he has not been in school since they moved.",
    "referrer": {"agency": "HOUSING", "name": "K. Jones", "contact": "k.jones@example.org"},
}


# --- regions, intake rules, name similarity ---------------------------------------------------------------


def test_every_current_la_is_in_one_of_the_nine_regions() -> None:
    assert {code for code in CURRENT_LA_CODES if region_of(code) is None} == set()
    assert {region_of(code) for code in CURRENT_LA_CODES} == set(Region)
    assert region_of(COVENTRY) is Region.WEST_MIDLANDS and region_of(CAMDEN) is Region.LONDON
    assert DUDLEY in same_region_las(COVENTRY) and CAMDEN not in same_region_las(COVENTRY)
    assert same_region_las("999") == frozenset()


def test_a_submission_is_read_into_a_referral_or_its_problems() -> None:
    found, problems = read_referral(PARTNER_REFERRAL, COVENTRY, TODAY)
    assert problems == [] and found is not None
    # The endpoint takes the text as sent: a postcode in lower case is still a postcode on the topic.
    assert (found.la_code, found.received_on, found.child.postcode) == (COVENTRY, TODAY, "cv2 2bb")
    anonymous = {**PARTNER_REFERRAL, "referrer": {"agency": "PUBLIC"}}
    found, problems = read_referral(anonymous, COVENTRY, TODAY)
    assert problems == [] and found is not None and found.referrer.anonymous
    bad = {"child": {"surname": "Bright", "date_of_birth": "1 June"}, "concern": "LOST", "upn": "A331200001002",
           "referrer": {"agency": "HOUSING"}, "la_code": DUDLEY}
    found, problems = read_referral(bad, COVENTRY, TODAY)
    assert found is None
    assert {(problem.code, problem.field) for problem in problems} == {
        ("FIELD_INVALID", "la_code"), ("FIELD_MISSING", "child.forename"),
        ("FIELD_INVALID", "child.date_of_birth"), ("FIELD_INVALID", "concern"),
    }
    # Past the shape, the topic's own rules: a UPN whose check letter is wrong, an overlong account.
    found, problems = read_referral({**PARTNER_REFERRAL, "upn": "A331200001002", "details": "x" * 2001},
                                    COVENTRY, TODAY)
    assert found is None and {problem.code for problem in problems} >= {"UPN_CHECK_LETTER", "TEXT_TOO_LONG"}


def test_close_names_score_high_and_different_names_low() -> None:
    assert name_similarity("Amelia", "Okafor", "Amelia", "Okafour") >= 90
    assert name_similarity("Okafor", "Amelia", "Amelia", "Okafor") == 100  # forename and surname swapped
    assert name_similarity("Amelia", "Okafor", "Harry", "Whitfield") < 60


# --- partner endpoint -------------------------------------------------------------------------------------


async def test_the_partner_endpoint_takes_a_referral_and_answers_with_its_id(
    casework: Casework, register: Register, sent: Sent
) -> None:
    body = json.dumps(PARTNER_REFERRAL).encode()
    reply = await casework.partner_referral(COVENTRY, partner_headers(), body, len(body))
    assert reply.status == 201, reply.body
    answer = json.loads(reply.body)
    assert [item.referral_id for item in sent.referrals] == [answer["referral_id"]]
    assert sent.referrals[0].child.surname == "Bright" and sent.referrals[0].la_code == COVENTRY
    audit = register.audit_events(COVENTRY)
    assert [(event.principal, event.channel) for event in audit] == [("partner health", "partner referral")]
    assert "Bright" not in (audit[0].detail or "")


@pytest.mark.parametrize(
    ("headers", "la", "status"),
    [
        ({}, COVENTRY, 401),
        (partner_headers("not-a-known-token-0123456789"), COVENTRY, 401),
        (partner_headers(), DUDLEY, 403),
        ({**bearer(PARTNER_TOKEN), "Content-Type": "text/plain"}, COVENTRY, 415),
        # A dashboard token is not a partner credential.
        ({**bearer(TOKENS["cme"]), "Content-Type": "application/json"}, COVENTRY, 401),
    ],
)
async def test_the_partner_endpoint_refuses_wrong_credentials_and_types(
    casework: Casework, sent: Sent, headers: dict[str, str], la: str, status: int
) -> None:
    body = json.dumps(PARTNER_REFERRAL).encode()
    reply = await casework.partner_referral(la, headers, body, len(body))
    assert reply.status == status and sent.referrals == []
    assert "Bright" not in reply.body


async def test_the_partner_endpoint_lists_every_problem_and_bounds_size_and_rate(
    casework: Casework, sent: Sent
) -> None:
    body = json.dumps({"child": {"forename": "Noah"}, "concern": "LOST", "referrer": {}}).encode()
    reply = await casework.partner_referral(COVENTRY, partner_headers(), body, len(body))
    assert reply.status == 400
    assert {(p["code"], p["field"]) for p in json.loads(reply.body)["problems"]} == {
        ("FIELD_MISSING", "child.surname"), ("FIELD_INVALID", "concern"), ("FIELD_MISSING", "referrer.agency"),
    }
    assert (await casework.partner_referral(COVENTRY, partner_headers(), b"{", 1)).status == 400
    big = b" " * (MAX_BODY + 1)
    assert (await casework.partner_referral(COVENTRY, partner_headers(), big, len(big))).status == 413
    # Five a minute in this fixture: the fifth request so far is still admitted, the sixth is not.
    assert (await casework.partner_referral(COVENTRY, partner_headers(), b"[]", 2)).status == 400
    assert (await casework.partner_referral(COVENTRY, partner_headers(), b"[]", 2)).status == 400
    limited = await casework.partner_referral(COVENTRY, partner_headers(), b"[]", 2)
    assert limited.status == 429 and limited.headers["Retry-After"] == "60"
    assert sent.referrals == []


# --- referral form ----------------------------------------------------------------------------------------


def form_for(casework: Casework, headers: dict[str, str], **fields: str) -> dict[str, str]:
    principal, _ = casework.dashboard.principal(COVENTRY, headers)
    assert principal is not None
    return {"csrf": casework.csrf_token(principal, headers), **fields}


async def test_the_referral_form_is_the_cme_officers_only_and_sends_a_valid_referral(
    casework: Casework, register: Register, sent: Sent
) -> None:
    officer = bearer(TOKENS["cme"])
    page = await casework.referral_form(COVENTRY, officer)
    assert page.status == 200 and 'name="csrf"' in page.body
    assert "Okafour" in page.body  # the referral received, listed for the officer
    assert (await casework.referral_form(COVENTRY, bearer(TOKENS["care"]))).status == 403
    assert (await casework.referral_form(COVENTRY, bearer(TOKENS["dudley"]))).status == 401
    assert (await casework.referral_form(COVENTRY, {})).status == 401
    fields = {"forename": "Noah", "surname": "Bright", "date_of_birth": "2013-06-01", "concern": "NOT_IN_SCHOOL",
              "agency": "PUBLIC"}
    forged = await casework.submit_referral_form(COVENTRY, officer, {**fields, "csrf": "0" * 64})
    assert forged.status == 403 and sent.referrals == []
    reply = await casework.submit_referral_form(COVENTRY, officer, form_for(casework, officer, **fields))
    assert reply.status == 201
    (taken,) = sent.referrals
    assert taken.referral_id in reply.body and taken.referrer.anonymous and taken.received_on == TODAY
    refused = await casework.submit_referral_form(
        COVENTRY, officer, form_for(casework, officer, **{**fields, "surname": "", "concern": "LOST"})
    )
    assert refused.status == 400 and 'data-code="FIELD_MISSING"' in refused.body and len(sent.referrals) == 1
    assert ("dashboard referral", f"referral {taken.referral_id} taken") in [
        (event.channel, event.detail) for event in register.audit_events(COVENTRY)
    ]


# --- case view, link, search ------------------------------------------------------------------------------


async def test_a_referral_case_shows_its_referral_and_possible_matches_and_links(
    casework: Casework, register: Register, sent: Sent
) -> None:
    officer = bearer(TOKENS["cme"])
    page = await casework.case_page(COVENTRY, CASE_REFERRAL, officer)
    assert page.status == 200
    assert "Seen at the clinic." in page.body and "01234 567890" in page.body
    assert f'<tr data-upn="{UPN_AMELIA}">' in page.body and "Link to this child" in page.body
    # Another LA's officer, or another role, sees nothing of it.
    assert (await casework.case_page(DUDLEY, CASE_REFERRAL, bearer(TOKENS["dudley"]))).status == 404
    assert (await casework.case_page(COVENTRY, CASE_REFERRAL, bearer(TOKENS["care"]))).status == 403
    refused = await casework.link_case(COVENTRY, CASE_REFERRAL, officer,
                                       form_for(casework, officer, upn="A331200001002"))
    assert refused.status == 400 and sent.actions == []
    reply = await casework.link_case(COVENTRY, CASE_REFERRAL, officer, form_for(casework, officer, upn=UPN_AMELIA))
    assert reply.status == 303 and reply.headers["Location"] == f"/la/{COVENTRY}/cases/{CASE_REFERRAL}"
    (action,) = sent.actions
    assert (action.action, action.upn, action.referral_id, action.case_id, action.la_code, action.key) == (
        CaseActionType.LINK, UPN_AMELIA, REFERRAL_ID, CASE_REFERRAL, COVENTRY, UPN_AMELIA,
    )
    register.record([action])
    linked = await casework.case_page(COVENTRY, CASE_REFERRAL, officer)
    assert f"to UPN {UPN_AMELIA}" in linked.body and "Possible matches" not in linked.body
    channels = [event.channel for event in register.audit_events(COVENTRY)]
    assert channels.count("dashboard case") == 2 and channels.count("dashboard link") == 1


async def test_the_regional_search_answers_within_the_region_and_is_audited(
    casework: Casework, register: Register
) -> None:
    officer = bearer(TOKENS["dudley"])
    page = await casework.search(DUDLEY, officer, {"upn": UPN_AMELIA})
    assert page.status == 200
    assert "Coventry (331)" in page.body and "URN 140201" in page.body
    assert "Camden" not in page.body and "Okafor" not in page.body and CASE_AMELIA not in page.body
    by_name = await casework.search(DUDLEY, officer, {"surname": "okafor", "dob": "2014-05-02"})
    assert "Coventry (331)" in by_name.body and UPN_AMELIA not in by_name.body
    nothing = await casework.search(DUDLEY, officer, {"surname": "okafor", "dob": "2014-05-03"})
    assert "No LA of the West Midlands region" in nothing.body
    assert (await casework.search(DUDLEY, officer, {"surname": "okafor", "dob": "May"})).status == 400
    assert (await casework.search(COVENTRY, bearer(TOKENS["care"]), {"upn": UPN_AMELIA})).status == 403
    events = [(e.principal, e.channel, e.upn, e.detail) for e in register.audit_events(DUDLEY)]
    assert events == [
        ("token dudley", "dashboard lookup", UPN_AMELIA, "lookup by UPN: found"),
        ("token dudley", "dashboard lookup", UPN_AMELIA, "lookup by surname and date of birth: found"),
        ("token dudley", "dashboard lookup", None, "lookup by surname and date of birth: none"),
    ]


# --- command line -----------------------------------------------------------------------------------------


@pytest.fixture
def register_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[CaseAction]]]:
    """A register file with the cases above; publishing to case.actions is captured, the broker check skipped."""
    url = f"sqlite:///{tmp_path}/register.db"
    monkeypatch.setenv("ROLLWATCH_DATABASE_URL", url)
    opened = Register.from_url(url)
    migrate(opened.engine)
    opened.record(contents())
    opened.close()
    published: list[CaseAction] = []
    monkeypatch.setattr("cli.failures.require_kafka", lambda *args, **kwargs: None)
    monkeypatch.setattr("sinks.register.actions.publish_case_action",
                        lambda settings, action: published.append(action) or "case.actions")
    yield url, published


def apply(url: str, actions: list[CaseAction]) -> Register:
    register = Register.from_url(url)
    register.record(actions)
    return register


def test_case_work_from_the_command_line_lands_in_the_register_and_shows(
    register_url: tuple[str, list[CaseAction]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, published = register_url
    assert main(["cases", "note", CASE_REFERRAL, "--kind", "home-visit", "--outcome", "No answer",
                 "--note", "Card left at the door.", "--by", "A. Officer"]) == 0
    assert main(["cases", "assign", CASE_REFERRAL, "--to", "B. Officer", "--by", "A. Officer"]) == 0
    assert main(["cases", "link", CASE_REFERRAL, UPN_AMELIA.lower(), "--by", "A. Officer"]) == 0
    assert main(["cases", "close", CASE_AMELIA, "--reason-code", "left-england-confirmed",
                 "--note", "On roll in Wales.", "--by", "A. Officer", "--la", COVENTRY]) == 0
    capsys.readouterr()
    note, assign, link, close = published
    assert (note.action, note.enquiry and note.enquiry.kind, note.key, note.la_code) == (
        CaseActionType.NOTE, EnquiryKind.HOME_VISIT, REFERRAL_ID, COVENTRY)
    assert (assign.assignee, link.upn, link.key) == ("B. Officer", UPN_AMELIA, UPN_AMELIA)
    assert (close.close_reason, close.reason) == (CloseReason.LEFT_ENGLAND_CONFIRMED, "On roll in Wales.")
    register = apply(url, published)
    try:
        channels = [(e.channel, e.detail) for e in register.audit_events(COVENTRY)]
    finally:
        register.close()
    assert [channel for channel, _ in channels] == [
        "cli cases note", "cli cases assign", "cli cases link", "cli cases close"
    ]
    assert channels[0][1] == f"NOTE {note.action_id}"

    assert main(["cases", "show", CASE_REFERRAL, "--by", "A. Officer"]) == 0
    shown = capsys.readouterr().out
    assert "HOME_VISIT" in shown and "Card left at the door." in shown and "B. Officer" in shown
    assert f"linked    to UPN {UPN_AMELIA}" in shown and "Seen at the clinic." in shown
    assert "01234 567890" not in shown and "--show-contact" in shown
    assert main(["cases", "show", CASE_REFERRAL, "--json", "--show-contact", "--by", "A. Officer"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["referral"]["referrer_contact"] == "01234 567890"
    assert document["assignee"] == "B. Officer" and document["enquiries"][0]["kind"] == "HOME_VISIT"
    assert main(["cases", "show", CASE_AMELIA, "--json", "--by", "A. Officer"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert (document["status"], document["close_reason"]) == ("closed", "LEFT_ENGLAND_CONFIRMED")


def test_the_old_close_reason_still_closes_as_other(
    register_url: tuple[str, list[CaseAction]], capsys: pytest.CaptureFixture[str]
) -> None:
    _, published = register_url
    assert main(["cases", "close", CASE_AMELIA, "--reason", "Moved to Wales", "--by", "A. Officer"]) == 0
    assert (published[0].close_reason, published[0].reason) == (CloseReason.OTHER, "Moved to Wales")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["link", CASE_REFERRAL, "A331200001002", "--by", "x"], "check letter"),
        (["link", CASE_AMELIA, UPN_OTHER, "--by", "x"], "already the case of UPN"),
        (["link", "99999999-9999-5999-8999-999999999999", UPN_OTHER, "--by", "x"], "no such case"),
        (["note", CASE_AMELIA, "--kind", "home-visit", "--outcome", " ", "--note", "n", "--by", "x"],
         "--outcome must say something"),
        (["note", CASE_AMELIA, "--kind", "home-visit", "--outcome", "o", "--note", "n" * 2001, "--by", "x"],
         "at most 2,000"),
        (["assign", CASE_AMELIA, "--to", "B", "--by", " "], "--by must say something"),
        (["close", CASE_AMELIA, "--by", "x"], "say why the case ends"),
        (["close", CASE_AMELIA, "--reason-code", "died", "--by", "x"], "--note must say something"),
    ],
)
def test_case_work_is_refused_in_one_line(
    register_url: tuple[str, list[CaseAction]], capsys: pytest.CaptureFixture[str], arguments: list[str],
    message: str,
) -> None:
    _, published = register_url
    assert main(["cases", *arguments]) == 1
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1 and published == []


def test_lookup_answers_for_the_region_and_is_audited(
    register_url: tuple[str, list[CaseAction]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = register_url
    assert main(["lookup", "--la", DUDLEY, "--upn", UPN_AMELIA, "--by", "D. Officer"]) == 0
    out = capsys.readouterr().out
    assert "LA 331 Coventry: open, opened 2025-03-03" in out and "URN 140201" in out and "LA 202" not in out
    assert main(["lookup", "--la", CAMDEN, "--surname", "Okafor", "--dob", "2014-05-02", "--json", "--by", "C"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    found = json.loads(line)
    assert found["upn"] is None and [la["la_code"] for la in found["las"]] == [CAMDEN]
    assert main(["lookup", "--la", DUDLEY, "--upn", "A331200001002", "--by", "D"]) == 1
    assert main(["lookup", "--la", DUDLEY, "--surname", "Okafor", "--by", "D"]) == 1
    assert main(["lookup", "--la", "999", "--upn", UPN_AMELIA, "--by", "D"]) == 1
    register = Register.from_url(url)
    try:
        audited = [(e.principal, e.la_code, e.channel, e.upn) for e in register.audit_events()]
    finally:
        register.close()
    assert audited == [("D. Officer", DUDLEY, "cli lookup", UPN_AMELIA), ("C", CAMDEN, "cli lookup", UPN_AMELIA)]


# --- register sync of cme.referrals -----------------------------------------------------------------------


def test_the_register_feed_stores_referrals_once_and_skips_invalid_ones(register: Register) -> None:
    from dataclasses import replace

    from schemas.codec import AvroCodec
    from sinks.register.feed import RegisterFeed

    codec = AvroCodec()
    feed = RegisterFeed(register, codec, "t.", "t.case.actions", referrals_topic="t.cme.referrals")
    assert feed.handles("t.cme.referrals") and not feed.handles("t.cme.referrals.dlq")
    fresh = replace(referral(), referral_id="66666666-6666-4666-8666-666666666666", upn=UPN_OTHER)
    bad = replace(referral(), referral_id="77777777-7777-4777-8777-777777777777", upn="A331200001002")
    messages = [("t.cme.referrals", 0, offset, codec.encode(item)) for offset, item in enumerate([fresh, bad])]
    assert feed.feed(messages).referrals_new == 1
    assert feed.feed(messages).referrals_new == 0
    assert feed.stats.skipped == {"UPN_CHECK_LETTER": 2} and feed.stats.referrals == 2
    stored = register.referral(fresh.referral_id)
    assert stored is not None and (stored.upn, stored.la_code) == (UPN_OTHER, COVENTRY)
    assert register.referral(bad.referral_id) is None


def test_purge_keeps_a_referral_while_its_case_is_kept(register: Register) -> None:
    from dataclasses import replace

    from sinks.register import RetentionPolicy

    caseless = replace(referral(), referral_id="88888888-8888-4888-8888-888888888888", received_on=date(2018, 1, 5))
    register.record([caseless])
    report = register.purge(date(2025, 3, 12), RetentionPolicy(), dry_run=False)
    assert report.referrals == 1
    assert register.referral(caseless.referral_id) is None and register.referral(REFERRAL_ID) is not None


async def test_enquiries_assignment_and_closing_from_the_case_view(
    casework: Casework, register: Register, sent: Sent
) -> None:
    officer = bearer(TOKENS["cme"])
    page = await casework.case_page(COVENTRY, CASE_AMELIA, officer)
    assert 'value="HOME_VISIT"' in page.body and 'value="LEFT_ENGLAND_CONFIRMED"' in page.body
    forms = [
        {"work": "note", "kind": "SCHOOL_CONTACTED", "outcome": "Not on roll", "note": "Rang the office."},
        {"work": "assign", "to": "B. Officer"},
        {"work": "close", "close_reason": "LOCATED_AT_SCHOOL", "note": "On roll at Hillside."},
    ]
    for fields in forms:
        reply = await casework.case_work(COVENTRY, CASE_AMELIA, officer, form_for(casework, officer, **fields))
        assert reply.status == 303, reply.body
    assert [action.action for action in sent.actions] == [
        CaseActionType.NOTE, CaseActionType.ASSIGN, CaseActionType.CLOSE
    ]
    assert all(action.by == "token cme" and action.la_code == COVENTRY for action in sent.actions)
    bad = await casework.case_work(COVENTRY, CASE_AMELIA, officer,
                                   form_for(casework, officer, work="note", kind="GUESSED", outcome="o", note="n"))
    assert bad.status == 400 and len(sent.actions) == 3
    assert (await casework.case_work(COVENTRY, CASE_AMELIA, bearer(TOKENS["care"]), {"work": "assign"})).status == 403
    register.record(sent.actions)
    shown = await casework.case_page(COVENTRY, CASE_AMELIA, officer)
    assert "Rang the office." in shown.body and "B. Officer" in shown.body and "LOCATED_AT_SCHOOL" in shown.body
    assert 'name="work" value="note"' not in shown.body  # closed: no more case-work forms
    assert [event.detail.split()[0] for event in register.audit_events(COVENTRY)
            if event.channel == "dashboard case work" and event.detail] == ["NOTE", "ASSIGN", "CLOSE"]
