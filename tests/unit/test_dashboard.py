"""The LA dashboard's roles, sign-in, sessions, filters, ordering, escaping, JSON and audit, over in-memory SQLite."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from config.settings import DashboardCredential, DashboardGrant, Settings
from processors.records import Alert, AlertChild, Recipient, Rule, Severity
from sinks.register import Register, RegisterNotReady, migrate
from web.dashboard import (
    SESSION_COOKIE,
    DashboardAccess,
    DashboardFilters,
    FilterError,
    LADashboard,
    RegisterReader,
    Sessions,
    bearer_token,
    page_url,
    session_id_of,
)

COVENTRY, DUDLEY, WOLVERHAMPTON = "331", "332", "336"
#: token id -> (LA, role, the token itself); the dashboard is configured with hashes only.
TOKENS = {
    "cov-cme": (COVENTRY, "cme-officer", "coventry-token-0123456789"),
    "cov-sc": (COVENTRY, "social-care", "coventry-social-care-0123"),
    "cov-ehe": (COVENTRY, "ehe-service", "coventry-ehe-service-0123"),
    "dud-cme": (DUDLEY, "cme-officer", "dudley-token-0123456789ab"),
}
CREDENTIALS = {
    token_id: DashboardCredential(la=la, role=role, sha256=hashlib.sha256(token.encode()).hexdigest())
    for token_id, (la, role, token) in TOKENS.items()
}
OFFICER_TOKEN = {COVENTRY: TOKENS["cov-cme"][2], DUDLEY: TOKENS["dud-cme"][2]}
NOW = datetime(2025, 3, 14, 9, 30, tzinfo=ZoneInfo("Europe/London"))

AMELIA = AlertChild("Amelia", "Okafor", date(2014, 5, 2))
BRANDON = AlertChild("Brandon", "Szymański", date(2013, 11, 20))
CHLOE = AlertChild("Chloé", "O'Neill", date(2015, 1, 9))
MALLORY = AlertChild("<script>alert(1)</script>", 'Tables"; DROP', date(2012, 2, 29))
DANIEL = AlertChild("Daniel", "Protected", date(2013, 6, 1))
UPN_AMELIA, UPN_BRANDON, UPN_CHLOE, UPN_MALLORY = "A331200001001", "B332200001002", "C331200001003", "D331200001004"
UPN_DANIEL = "E331200001005"
CASE_AMELIA = "11111111-1111-5111-8111-111111111111"
CASE_BRANDON = "22222222-2222-5222-8222-222222222222"
CASE_SHARED = "33333333-3333-5333-8333-333333333333"
CASE_CLOSED = "44444444-4444-5444-8444-444444444444"
CASE_PROTECTED = "55555555-5555-5555-8555-555555555555"


def make_alert(
    number: int,
    rule: Rule,
    la: str,
    upn: str,
    child: AlertChild,
    raised_on: date,
    severity: Severity = Severity.HIGH,
    case_id: str | None = None,
    recipient: Recipient = Recipient.CME_OFFICER,
    school: str = "140201",
) -> Alert:
    return Alert(
        alert_id=f"aaaaaaaa-0000-5000-8000-{number:012d}",
        rule=rule,
        recipient=recipient,
        la_code=la,
        severity=severity,
        upn=upn,
        child=child,
        school_urn=school,
        raised_on=raised_on,
        reason=f"Reason {number}: removed from roll with no known destination.",
        case_id=case_id,
    )


ALERTS = [
    make_alert(1, Rule.MISSING_NO_DESTINATION, COVENTRY, UPN_AMELIA, AMELIA, date(2025, 3, 3), case_id=CASE_AMELIA),
    make_alert(2, Rule.MISSING_NO_DESTINATION, DUDLEY, UPN_BRANDON, BRANDON, date(2025, 3, 5), case_id=CASE_BRANDON,
               school="141999"),
    make_alert(3, Rule.TRANSITION_NOT_COMPLETED, COVENTRY, UPN_CHLOE, CHLOE, date(2025, 3, 10), case_id=CASE_SHARED),
    make_alert(4, Rule.TRANSITION_NOT_COMPLETED, WOLVERHAMPTON, UPN_CHLOE, CHLOE, date(2025, 3, 10),
               case_id=CASE_SHARED),
    make_alert(5, Rule.EHE_NOTIFIED, COVENTRY, UPN_CHLOE, CHLOE, date(2025, 3, 12), severity=Severity.INFO,
               recipient=Recipient.EHE_SERVICE),
    make_alert(6, Rule.MISSING_NO_DESTINATION, COVENTRY, UPN_MALLORY, MALLORY, date(2025, 2, 26),
               severity=Severity.IMMEDIATE, case_id=CASE_CLOSED),
    make_alert(7, Rule.CHILD_LOCATED, COVENTRY, UPN_MALLORY, MALLORY, date(2025, 3, 7), severity=Severity.INFO,
               case_id=CASE_CLOSED),
    make_alert(8, Rule.MISSING_NO_DESTINATION, COVENTRY, UPN_DANIEL, DANIEL, date(2025, 3, 11),
               severity=Severity.IMMEDIATE, case_id=CASE_PROTECTED, recipient=Recipient.SOCIAL_CARE),
]


@pytest.fixture
def register() -> Iterator[Register]:
    opened = Register.from_url("sqlite://")
    migrate(opened.engine)
    opened.record(ALERTS)
    yield opened
    opened.close()


@pytest.fixture
def dashboard(register: Register) -> LADashboard:
    return LADashboard(DashboardAccess(CREDENTIALS), lambda: register, refresh_seconds=30, alert_limit=200,
                       clock=lambda: NOW)


def with_token(la: str) -> dict[str, str]:
    """The headers of a machine client holding the LA's CME officer token."""
    return bearer(OFFICER_TOKEN[la])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def table_upns(body: str, table: str) -> list[str]:
    section = re.search(rf'<table class="{table}">(.*?)</table>', body, re.S)
    return re.findall(r'<tr data-upn="([^"]+)"', section.group(1)) if section else []


# --- access ------------------------------------------------------------------------------------------------


async def test_no_credentials_show_the_sign_in_form_and_no_child(dashboard: LADashboard) -> None:
    reply = await dashboard.page(COVENTRY, {}, {})
    assert reply.status == 401
    for child in (AMELIA, CHLOE, BRANDON):
        assert child.surname not in reply.body
    assert '<form class="sign-in" method="post" action="/la/331/sign-in">' in reply.body
    assert 'type="password" name="token"' in reply.body
    json_reply = await dashboard.cases_json(COVENTRY, {}, {})
    assert json_reply.status == 401
    assert json_reply.headers["WWW-Authenticate"] == 'Bearer realm="rollwatch LA 331"'


async def test_another_las_token_is_refused(dashboard: LADashboard) -> None:
    reply = await dashboard.page(COVENTRY, with_token(DUDLEY), {})
    assert reply.status == 401
    assert "Amelia" not in reply.body
    json_reply = await dashboard.cases_json(COVENTRY, with_token(DUDLEY), {})
    assert json_reply.status == 401
    assert json.loads(json_reply.body)["error"] == "Sign-in required"


async def test_an_la_without_a_token_has_no_page(dashboard: LADashboard) -> None:
    reply = await dashboard.page(WOLVERHAMPTON, with_token(COVENTRY), {})
    assert reply.status == 401


async def test_a_token_in_the_url_is_refused(dashboard: LADashboard) -> None:
    for answer in (dashboard.page, dashboard.cases_json):
        reply = await answer(COVENTRY, {}, {"token": OFFICER_TOKEN[COVENTRY]})
        assert reply.status == 400
        assert "Amelia" not in reply.body and OFFICER_TOKEN[COVENTRY] not in reply.body


async def test_each_token_shows_its_own_children_only(dashboard: LADashboard) -> None:
    coventry = await dashboard.page(COVENTRY, with_token(COVENTRY), {})
    assert coventry.status == 200
    assert "Amelia Okafor" in coventry.body
    assert UPN_AMELIA in coventry.body
    assert "Brandon" not in coventry.body and UPN_BRANDON not in coventry.body
    dudley = await dashboard.page(DUDLEY, with_token(DUDLEY), {})
    assert dudley.status == 200
    assert "Brandon Szymański" in dudley.body
    assert "Amelia" not in dudley.body and "Chlo" not in dudley.body and UPN_AMELIA not in dudley.body


async def test_bearer_header_is_accepted_in_any_case(dashboard: LADashboard) -> None:
    token = OFFICER_TOKEN[DUDLEY]
    reply = await dashboard.page(DUDLEY, {"authorization": f"bearer {token}"}, {})
    assert reply.status == 200
    assert "Brandon" in reply.body
    basic = await dashboard.page(DUDLEY, {"Authorization": f"Basic {token}"}, {})
    assert basic.status == 401


def test_token_checks() -> None:
    access = DashboardAccess(CREDENTIALS)
    assert bearer_token({"Authorization": "Bearer  abc "}) == "abc"
    assert bearer_token({"Authorization": "Bearer "}) is None
    assert bearer_token({}) is None
    officer = access.by_token("coventry-token-0123456789", COVENTRY)
    assert officer is not None and (officer.name, officer.role) == ("token cov-cme", "cme-officer")
    assert access.by_token("coventry-token-012345678", COVENTRY) is None
    assert access.by_token(None, COVENTRY) is None
    assert access.by_token("coventry-token-0123456789", "330") is None


# --- roles -------------------------------------------------------------------------------------------------


async def test_a_cme_officer_never_sees_social_care_or_ehe_alerts(dashboard: LADashboard) -> None:
    page = await dashboard.page(COVENTRY, with_token(COVENTRY), {})
    assert "Daniel" not in page.body and UPN_DANIEL not in page.body
    assert "Social care" not in page.body and "EHE service" not in page.body
    payload = json.loads((await dashboard.cases_json(COVENTRY, with_token(COVENTRY), {})).body)
    assert payload["role"] == "cme-officer"
    assert {alert["recipient"] for alert in payload["alerts"]} == {"CME_OFFICER"}
    assert UPN_DANIEL not in json.dumps(payload)


async def test_social_care_sees_its_alerts_and_the_cases_of_protected_children(dashboard: LADashboard) -> None:
    payload = json.loads((await dashboard.cases_json(COVENTRY, bearer(TOKENS["cov-sc"][2]), {})).body)
    assert payload["role"] == "social-care"
    assert [alert["upn"] for alert in payload["alerts"]] == [UPN_DANIEL]
    assert [case["upn"] for case in payload["open_cases"]] == [UPN_DANIEL]
    page = await dashboard.page(COVENTRY, bearer(TOKENS["cov-sc"][2]), {})
    assert "Daniel Protected" in page.body and "Amelia" not in page.body


async def test_the_ehe_service_sees_its_notices_only(dashboard: LADashboard) -> None:
    payload = json.loads((await dashboard.cases_json(COVENTRY, bearer(TOKENS["cov-ehe"][2]), {})).body)
    assert [(alert["upn"], alert["rule"]) for alert in payload["alerts"]] == [(UPN_CHLOE, "EHE_NOTIFIED")]
    assert payload["open_cases"] == []


# --- sign-in and sessions ----------------------------------------------------------------------------------


def cookie_of(reply_headers: dict[str, str]) -> dict[str, str]:
    return {"Cookie": reply_headers["Set-Cookie"].split(";", 1)[0]}


async def test_sign_in_exchanges_the_token_for_a_strict_httponly_session(dashboard: LADashboard) -> None:
    signed_in = await dashboard.sign_in(COVENTRY, {"token": OFFICER_TOKEN[COVENTRY]})
    assert signed_in.status == 303 and signed_in.headers["Location"] == "/la/331/"
    cookie = signed_in.headers["Set-Cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/la/331/"):
        assert attribute in cookie
    assert "Secure" not in cookie
    session_id = session_id_of(cookie_of(signed_in.headers))
    assert session_id is not None and len(session_id) >= 22 and OFFICER_TOKEN[COVENTRY] not in cookie
    page = await dashboard.page(COVENTRY, cookie_of(signed_in.headers), {})
    assert page.status == 200 and "Amelia Okafor" in page.body
    assert OFFICER_TOKEN[COVENTRY] not in page.body
    assert 'action="/la/331/sign-out"' in page.body
    # The session opens its own LA's page only.
    assert (await dashboard.page(DUDLEY, cookie_of(signed_in.headers), {})).status == 401
    signed_out = await dashboard.sign_out(COVENTRY, cookie_of(signed_in.headers))
    assert signed_out.status == 303 and "Max-Age=0" in signed_out.headers["Set-Cookie"]
    assert (await dashboard.page(COVENTRY, cookie_of(signed_in.headers), {})).status == 401


async def test_sign_in_over_tls_or_when_told_sets_a_secure_cookie(register: Register) -> None:
    dashboard = LADashboard(DashboardAccess(CREDENTIALS), lambda: register, clock=lambda: NOW)
    over_tls = await dashboard.sign_in(COVENTRY, {"token": OFFICER_TOKEN[COVENTRY]}, secure=True)
    assert over_tls.headers["Set-Cookie"].endswith("; Secure")
    told = LADashboard(DashboardAccess(CREDENTIALS), lambda: register, clock=lambda: NOW, secure_cookie=True)
    assert (await told.sign_in(COVENTRY, {"token": OFFICER_TOKEN[COVENTRY]})).headers["Set-Cookie"].endswith("Secure")


async def test_a_wrong_token_is_refused_on_the_form(dashboard: LADashboard) -> None:
    for token in (OFFICER_TOKEN[DUDLEY], "", "x" * 40):
        reply = await dashboard.sign_in(COVENTRY, {"token": token})
        assert reply.status == 401 and "Set-Cookie" not in reply.headers
        assert "does not open this LA" in reply.body


def test_sessions_expire() -> None:
    now = [0.0]
    sessions = Sessions(lifetime=60, clock=lambda: now[0])
    access = DashboardAccess(CREDENTIALS)
    principal = access.by_token(OFFICER_TOKEN[COVENTRY], COVENTRY)
    assert principal is not None
    session_id = sessions.open(principal)
    assert sessions.principal(session_id) == principal
    now[0] = 61
    assert sessions.principal(session_id) is None
    assert sessions.principal("made-up") is None


async def test_a_trusted_proxys_user_and_groups_open_the_page_only_when_configured(register: Register) -> None:
    headers = {"X-Forwarded-User": "a.officer@coventry.gov.uk", "X-Forwarded-Groups": "staff, cme-331"}
    plain = LADashboard(DashboardAccess(CREDENTIALS), lambda: register, clock=lambda: NOW)
    assert (await plain.page(COVENTRY, headers, {})).status == 401
    groups = {"cme-331": DashboardGrant(la=COVENTRY, role="cme-officer")}
    proxied = LADashboard(DashboardAccess(CREDENTIALS, groups), lambda: register, clock=lambda: NOW)
    reply = await proxied.page(COVENTRY, headers, {})
    assert reply.status == 200 and "Amelia Okafor" in reply.body
    assert "proxy a.officer@coventry.gov.uk" in reply.body
    assert (await proxied.page(DUDLEY, headers, {})).status == 401
    events = register.audit_events(COVENTRY)
    assert events and {event.principal for event in events} == {"proxy a.officer@coventry.gov.uk"}


# --- audit -------------------------------------------------------------------------------------------------


async def test_each_view_leaves_one_audit_row_per_case_and_child_shown(
    dashboard: LADashboard, register: Register
) -> None:
    assert register.audit_events(COVENTRY) == []
    await dashboard.page(COVENTRY, with_token(COVENTRY), {})
    page_events = register.audit_events(COVENTRY)
    assert {(event.case_id, event.upn) for event in page_events if event.channel == "dashboard"} == {
        (CASE_SHARED, UPN_CHLOE), (CASE_AMELIA, UPN_AMELIA), (CASE_CLOSED, UPN_MALLORY),
    }
    # The page's trend charts are a view too: one row, naming no case and no child, as they show counts only.
    assert [(event.case_id, event.upn) for event in page_events if event.channel == "dashboard-trends"] == [
        (None, None)
    ]
    assert {(event.principal, event.role) for event in page_events} == {("token cov-cme", "cme-officer")}
    await dashboard.cases_json(COVENTRY, bearer(TOKENS["cov-sc"][2]), {})
    json_events = register.audit_events(COVENTRY)[len(page_events):]
    assert [(event.channel, event.role, event.upn) for event in json_events] == [
        ("dashboard-json", "social-care", UPN_DANIEL)
    ]
    assert all(event.at.tzinfo is not None for event in json_events)
    # A refused request shows nothing and records nothing.
    await dashboard.page(COVENTRY, with_token(DUDLEY), {})
    assert len(register.audit_events(COVENTRY)) == len(page_events) + 1


async def test_malformed_la_is_404(dashboard: LADashboard) -> None:
    reply = await dashboard.page("33", with_token(COVENTRY), {})
    assert reply.status == 404


async def test_register_not_ready_is_503_and_retried(register: Register) -> None:
    calls: list[int] = []

    def open_reader() -> RegisterReader:
        calls.append(1)
        if len(calls) == 1:
            raise RegisterNotReady("sqlite:// has no register tables")
        return register

    dashboard = LADashboard(DashboardAccess(CREDENTIALS), open_reader, clock=lambda: NOW)
    first = await dashboard.page(COVENTRY, with_token(COVENTRY), {})
    assert first.status == 503
    second = await dashboard.page(COVENTRY, with_token(COVENTRY), {})
    assert second.status == 200
    assert "Amelia" in second.body


# --- what the page shows -----------------------------------------------------------------------------------


async def test_open_cases_newest_first_with_holders_and_closed_cases_left_out(dashboard: LADashboard) -> None:
    reply = await dashboard.page(COVENTRY, with_token(COVENTRY), {})
    assert table_upns(reply.body, "cases") == [UPN_CHLOE, UPN_AMELIA]
    shared_row = re.search(rf'<tr data-upn="{UPN_CHLOE}">.*?</tr>', reply.body, re.S)
    assert shared_row is not None
    assert "<td>336</td>" in shared_row.group(0)  # also held by Wolverhampton
    assert "TRANSITION_NOT_COMPLETED" in shared_row.group(0)
    assert "9 Jan 2015" in shared_row.group(0)
    assert "10 Mar 2025" in shared_row.group(0)


async def test_recent_alerts_newest_first(dashboard: LADashboard) -> None:
    reply = await dashboard.page(COVENTRY, with_token(COVENTRY), {})
    assert table_upns(reply.body, "alerts") == [UPN_CHLOE, UPN_MALLORY, UPN_AMELIA, UPN_MALLORY]
    assert "Recent alerts" in reply.body and "(4)" in reply.body


async def test_filters_by_severity_and_rule(dashboard: LADashboard) -> None:
    info = await dashboard.page(COVENTRY, with_token(COVENTRY), {"severity": "INFO"})
    assert table_upns(info.body, "alerts") == [UPN_MALLORY]
    assert table_upns(info.body, "cases") == []
    assert '<option value="INFO" selected>' in info.body
    rule = await dashboard.page(COVENTRY, with_token(COVENTRY), {"rule": "missing_no_destination"})
    assert table_upns(rule.body, "alerts") == [UPN_AMELIA, UPN_MALLORY]
    assert table_upns(rule.body, "cases") == [UPN_AMELIA]
    both = await dashboard.page(COVENTRY, with_token(COVENTRY), {"severity": "HIGH", "rule": "EHE_NOTIFIED"})
    assert table_upns(both.body, "alerts") == []
    assert "No alerts match." in both.body


async def test_unknown_filter_is_400(dashboard: LADashboard) -> None:
    reply = await dashboard.page(COVENTRY, with_token(COVENTRY), {"severity": "URGENT"})
    assert reply.status == 400
    assert "unknown severity" in reply.body
    with pytest.raises(FilterError):
        DashboardFilters.from_query({"rule": "NOT_A_RULE"})
    assert DashboardFilters.from_query({"rule": " ", "severity": ""}) == DashboardFilters()


async def test_filters_survive_links_form_and_refresh_without_any_token(dashboard: LADashboard) -> None:
    token = OFFICER_TOKEN[COVENTRY]
    reply = await dashboard.page(COVENTRY, bearer(token), {"severity": "HIGH"})
    assert token not in reply.body and "token=" not in reply.body
    assert '<meta http-equiv="refresh" content="30">' in reply.body
    assert 'href="/la/331/cases.json?severity=HIGH"' in reply.body
    assert 'href="/la/331/"' in reply.body
    assert page_url(COVENTRY, DashboardFilters(rule=Rule.EHE_NOTIFIED)) == "/la/331/?rule=EHE_NOTIFIED"


async def test_a_header_token_is_never_copied_into_the_page(dashboard: LADashboard) -> None:
    token = OFFICER_TOKEN[COVENTRY]
    reply = await dashboard.page(COVENTRY, {"Authorization": f"Bearer {token}"}, {})
    assert reply.status == 200
    assert token not in reply.body


async def test_everything_from_the_register_is_escaped(dashboard: LADashboard) -> None:
    reply = await dashboard.page(COVENTRY, with_token(COVENTRY), {})
    assert "<script" not in reply.body
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Tables&quot;; DROP" in reply.body
    assert "Chloé O&#x27;Neill" in reply.body


async def test_security_headers(dashboard: LADashboard) -> None:
    reply = await dashboard.page(COVENTRY, with_token(COVENTRY), {})
    assert reply.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert reply.headers["Cache-Control"] == "no-store"
    assert reply.headers["Referrer-Policy"] == "no-referrer"


async def test_alert_limit_shows_the_newest_and_says_so(register: Register) -> None:
    dashboard = LADashboard(DashboardAccess(CREDENTIALS), lambda: register, alert_limit=2, clock=lambda: NOW)
    reply = await dashboard.page(COVENTRY, with_token(COVENTRY), {})
    assert table_upns(reply.body, "alerts") == [UPN_CHLOE, UPN_MALLORY]
    assert "(newest 2 of 4)" in reply.body


async def test_json_variant(dashboard: LADashboard) -> None:
    reply = await dashboard.cases_json(COVENTRY, with_token(COVENTRY), {"severity": "HIGH"})
    assert reply.status == 200 and reply.content_type == "application/json"
    payload = json.loads(reply.body)
    assert payload["la_code"] == COVENTRY and payload["la_name"] == "Coventry"
    assert payload["filters"] == {"severity": "HIGH"}
    assert [case["upn"] for case in payload["open_cases"]] == [UPN_CHLOE, UPN_AMELIA]
    assert payload["open_cases"][0]["holders"] == [COVENTRY, WOLVERHAMPTON]
    assert payload["open_cases"][1] | {"case_id": None} == {
        "case_id": None, "upn": UPN_AMELIA, "forename": "Amelia", "surname": "Okafor", "date_of_birth": "2014-05-02",
        "school_urn": "140201", "opened_on": "2025-03-03", "opening_rule": "MISSING_NO_DESTINATION",
        "severity": "HIGH", "reason": "Reason 1: removed from roll with no known destination.",
        "holders": [COVENTRY], "alert_count": 1,
    }
    assert [alert["upn"] for alert in payload["alerts"]] == [UPN_CHLOE, UPN_AMELIA]
    assert payload["alerts_total"] == 2
    assert all(alert["upn"] != UPN_BRANDON for alert in payload["alerts"])


async def test_no_personal_data_in_logs(register: Register, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    dashboard = LADashboard(DashboardAccess(CREDENTIALS), lambda: register, clock=lambda: NOW)
    await dashboard.page(COVENTRY, with_token(COVENTRY), {})
    await dashboard.sign_in(COVENTRY, {"token": OFFICER_TOKEN[COVENTRY]})
    await dashboard.sign_in(COVENTRY, {"token": OFFICER_TOKEN[DUDLEY]})
    await dashboard.page(COVENTRY, {}, {})
    logged = caplog.text
    for child in (AMELIA, CHLOE, MALLORY):
        assert child.surname not in logged and child.forename not in logged
    for _la, _role, token in TOKENS.values():
        assert token not in logged


# --- settings ----------------------------------------------------------------------------------------------


def test_tokens_from_the_environment_are_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    digest = hashlib.sha256(b"x" * 32).hexdigest()
    monkeypatch.setenv(
        "ROLLWATCH_DASHBOARD_TOKENS", json.dumps({"cov-1": {"la": "331", "role": "social-care", "sha256": digest}})
    )
    settings = Settings()
    assert settings.dashboard_tokens["cov-1"] == DashboardCredential(la="331", role="social-care", sha256=digest)


@pytest.mark.parametrize(
    ("tokens", "problem"),
    [
        ({"331": "coventry-token-0123456789"}, "hashlib.sha256"),
        ({"t": {"la": "Coventry", "role": "cme-officer", "sha256": "0" * 64}}, "three-digit"),
        ({"t": {"la": "331", "role": "head-teacher", "sha256": "0" * 64}}, "cme-officer"),
        ({"t": {"la": "331", "role": "cme-officer", "sha256": "abc"}}, "64 hex digits"),
    ],
)
def test_unsound_tokens_are_refused(tokens: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem) as raised:
        Settings(dashboard_tokens=tokens)
    assert "coventry-token-0123456789" not in str(raised.value).split("input_value")[0]


def test_trusted_proxy_groups_are_off_by_default() -> None:
    assert Settings().dashboard_trusted_proxy_groups == {}
    grants = Settings(dashboard_trusted_proxy_groups={"cme-331": {"la": "331", "role": "cme-officer"}})
    assert grants.dashboard_trusted_proxy_groups["cme-331"] == DashboardGrant(la="331", role="cme-officer")


WEBHOOK_SECRET = "whsec_" + "A" * 43


def test_tokens_reach_a_child_process_environment_intact(monkeypatch: pytest.MonkeyPatch) -> None:
    webhooks = {"330": {"url": "https://x", "secret": WEBHOOK_SECRET}}
    credential = {"la": "331", "role": "cme-officer", "sha256": "a" * 64}
    settings = Settings(dashboard_tokens={"t": credential}, webhooks=webhooks)
    for name, value in settings.as_environment().items():
        monkeypatch.setenv(name, value)
    rebuilt = Settings()
    assert rebuilt.dashboard_tokens["t"] == DashboardCredential(la="331", role="cme-officer", sha256="a" * 64)
    assert rebuilt.webhooks["330"].secret.get_secret_value() == WEBHOOK_SECRET


async def test_an_attendance_alert_about_a_pupil_known_only_from_registers_shows_without_a_name(
    register: Register, dashboard: LADashboard
) -> None:
    unnamed = replace(
        make_alert(9, Rule.ABSENCE_ENQUIRIES_DUE, COVENTRY, "V330317124071", AMELIA, date(2025, 3, 12),
                   severity=Severity.MEDIUM),
        child=None,
        reason="Absent without authorisation from Canley Primary (URN 140201) for 10 school days in a row.",
    )
    register.record([unnamed])
    reply = await dashboard.page(COVENTRY, with_token(COVENTRY), {})
    assert "V330317124071" in table_upns(reply.body, "alerts")
    assert "ABSENCE_ENQUIRIES_DUE" in reply.body and "name not yet known" in reply.body
    assert [a.child for a in register.alerts() if a.upn == "V330317124071"] == [None]
