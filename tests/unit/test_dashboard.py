"""The LA dashboard's access rules, filters, ordering, escaping and JSON, over an in-memory SQLite register."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr, ValidationError

from config.settings import Settings
from processors.records import Alert, AlertChild, Recipient, Rule, Severity
from sinks.register import Register, RegisterNotReady, migrate
from web.dashboard import (
    DashboardFilters,
    FilterError,
    LADashboard,
    RegisterReader,
    page_url,
    presented_token,
    token_grants,
)

COVENTRY, DUDLEY, WOLVERHAMPTON = "331", "332", "336"
TOKENS = {COVENTRY: SecretStr("coventry-token-0123456789"), DUDLEY: SecretStr("dudley-token-0123456789ab")}
NOW = datetime(2025, 3, 14, 9, 30, tzinfo=ZoneInfo("Europe/London"))

AMELIA = AlertChild("Amelia", "Okafor", date(2014, 5, 2))
BRANDON = AlertChild("Brandon", "Szymański", date(2013, 11, 20))
CHLOE = AlertChild("Chloé", "O'Neill", date(2015, 1, 9))
MALLORY = AlertChild("<script>alert(1)</script>", 'Tables"; DROP', date(2012, 2, 29))
UPN_AMELIA, UPN_BRANDON, UPN_CHLOE, UPN_MALLORY = "A331200001001", "B332200001002", "C331200001003", "D331200001004"
CASE_AMELIA = "11111111-1111-5111-8111-111111111111"
CASE_BRANDON = "22222222-2222-5222-8222-222222222222"
CASE_SHARED = "33333333-3333-5333-8333-333333333333"
CASE_CLOSED = "44444444-4444-5444-8444-444444444444"


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
    return LADashboard(TOKENS, lambda: register, refresh_seconds=30, alert_limit=200, clock=lambda: NOW)


def with_token(la: str) -> dict[str, str]:
    return {"token": TOKENS[la].get_secret_value()}


def table_upns(body: str, table: str) -> list[str]:
    section = re.search(rf'<table class="{table}">(.*?)</table>', body, re.S)
    return re.findall(r'<tr data-upn="([^"]+)"', section.group(1)) if section else []


# --- access ------------------------------------------------------------------------------------------------


async def test_no_token_is_401_and_shows_no_child(dashboard: LADashboard) -> None:
    reply = await dashboard.page(COVENTRY, {}, {})
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"] == 'Bearer realm="rollwatch LA 331"'
    for child in (AMELIA, CHLOE, BRANDON):
        assert child.surname not in reply.body
    assert "Access token required" in reply.body


async def test_another_las_token_is_refused(dashboard: LADashboard) -> None:
    reply = await dashboard.page(COVENTRY, {}, with_token(DUDLEY))
    assert reply.status == 401
    assert "Amelia" not in reply.body
    json_reply = await dashboard.cases_json(COVENTRY, {}, with_token(DUDLEY))
    assert json_reply.status == 401
    assert json.loads(json_reply.body)["error"] == "Access token required"


async def test_an_la_without_a_token_has_no_page(dashboard: LADashboard) -> None:
    reply = await dashboard.page(WOLVERHAMPTON, {}, with_token(COVENTRY))
    assert reply.status == 401


async def test_each_token_shows_its_own_children_only(dashboard: LADashboard) -> None:
    coventry = await dashboard.page(COVENTRY, {}, with_token(COVENTRY))
    assert coventry.status == 200
    assert "Amelia Okafor" in coventry.body
    assert UPN_AMELIA in coventry.body
    assert "Brandon" not in coventry.body and UPN_BRANDON not in coventry.body
    dudley = await dashboard.page(DUDLEY, {}, with_token(DUDLEY))
    assert dudley.status == 200
    assert "Brandon Szymański" in dudley.body
    assert "Amelia" not in dudley.body and "Chlo" not in dudley.body and UPN_AMELIA not in dudley.body


async def test_bearer_header_is_accepted_in_any_case(dashboard: LADashboard) -> None:
    token = TOKENS[DUDLEY].get_secret_value()
    reply = await dashboard.page(DUDLEY, {"authorization": f"bearer {token}"}, {})
    assert reply.status == 200
    assert "Brandon" in reply.body
    basic = await dashboard.page(DUDLEY, {"Authorization": f"Basic {token}"}, {})
    assert basic.status == 401


def test_token_checks() -> None:
    assert presented_token({"Authorization": "Bearer  abc "}, {"token": "zzz"}) == "abc"
    assert presented_token({}, {"token": " xyz "}) == "xyz"
    assert presented_token({}, {"token": ""}) is None
    assert token_grants(TOKENS, COVENTRY, "coventry-token-0123456789")
    assert not token_grants(TOKENS, COVENTRY, "coventry-token-012345678")
    assert not token_grants(TOKENS, COVENTRY, None)
    assert not token_grants(TOKENS, "330", "coventry-token-0123456789")


async def test_malformed_la_is_404(dashboard: LADashboard) -> None:
    reply = await dashboard.page("33", {}, with_token(COVENTRY))
    assert reply.status == 404


async def test_register_not_ready_is_503_and_retried(register: Register) -> None:
    calls: list[int] = []

    def open_reader() -> RegisterReader:
        calls.append(1)
        if len(calls) == 1:
            raise RegisterNotReady("sqlite:// has no register tables")
        return register

    dashboard = LADashboard(TOKENS, open_reader, clock=lambda: NOW)
    first = await dashboard.page(COVENTRY, {}, with_token(COVENTRY))
    assert first.status == 503
    second = await dashboard.page(COVENTRY, {}, with_token(COVENTRY))
    assert second.status == 200
    assert "Amelia" in second.body


# --- what the page shows -----------------------------------------------------------------------------------


async def test_open_cases_newest_first_with_holders_and_closed_cases_left_out(dashboard: LADashboard) -> None:
    reply = await dashboard.page(COVENTRY, {}, with_token(COVENTRY))
    assert table_upns(reply.body, "cases") == [UPN_CHLOE, UPN_AMELIA]
    shared_row = re.search(rf'<tr data-upn="{UPN_CHLOE}">.*?</tr>', reply.body, re.S)
    assert shared_row is not None
    assert "<td>336</td>" in shared_row.group(0)  # also held by Wolverhampton
    assert "TRANSITION_NOT_COMPLETED" in shared_row.group(0)
    assert "9 Jan 2015" in shared_row.group(0)
    assert "10 Mar 2025" in shared_row.group(0)


async def test_recent_alerts_newest_first(dashboard: LADashboard) -> None:
    reply = await dashboard.page(COVENTRY, {}, with_token(COVENTRY))
    assert table_upns(reply.body, "alerts") == [UPN_CHLOE, UPN_CHLOE, UPN_MALLORY, UPN_AMELIA, UPN_MALLORY]
    assert "Recent alerts" in reply.body and "(5)" in reply.body


async def test_filters_by_severity_and_rule(dashboard: LADashboard) -> None:
    info = await dashboard.page(COVENTRY, {}, {**with_token(COVENTRY), "severity": "INFO"})
    assert table_upns(info.body, "alerts") == [UPN_CHLOE, UPN_MALLORY]
    assert table_upns(info.body, "cases") == []
    assert '<option value="INFO" selected>' in info.body
    rule = await dashboard.page(COVENTRY, {}, {**with_token(COVENTRY), "rule": "missing_no_destination"})
    assert table_upns(rule.body, "alerts") == [UPN_AMELIA, UPN_MALLORY]
    assert table_upns(rule.body, "cases") == [UPN_AMELIA]
    both = await dashboard.page(COVENTRY, {}, {**with_token(COVENTRY), "severity": "HIGH", "rule": "EHE_NOTIFIED"})
    assert table_upns(both.body, "alerts") == []
    assert "No alerts match." in both.body


async def test_unknown_filter_is_400(dashboard: LADashboard) -> None:
    reply = await dashboard.page(COVENTRY, {}, {**with_token(COVENTRY), "severity": "URGENT"})
    assert reply.status == 400
    assert "unknown severity" in reply.body
    with pytest.raises(FilterError):
        DashboardFilters.from_query({"rule": "NOT_A_RULE"})
    assert DashboardFilters.from_query({"rule": " ", "severity": ""}) == DashboardFilters()


async def test_token_and_filters_survive_links_form_and_refresh(dashboard: LADashboard) -> None:
    token = TOKENS[COVENTRY].get_secret_value()
    reply = await dashboard.page(COVENTRY, {}, {"token": token, "severity": "HIGH"})
    assert f'<input type="hidden" name="token" value="{token}">' in reply.body
    assert '<meta http-equiv="refresh" content="30">' in reply.body
    assert f'href="/la/331/cases.json?severity=HIGH&amp;token={token}"' in reply.body
    assert f'href="/la/331/?token={token}"' in reply.body
    assert page_url(COVENTRY, DashboardFilters(rule=Rule.EHE_NOTIFIED), None) == "/la/331/?rule=EHE_NOTIFIED"


async def test_a_header_token_is_never_copied_into_the_page(dashboard: LADashboard) -> None:
    token = TOKENS[COVENTRY].get_secret_value()
    reply = await dashboard.page(COVENTRY, {"Authorization": f"Bearer {token}"}, {})
    assert reply.status == 200
    assert token not in reply.body


async def test_everything_from_the_register_is_escaped(dashboard: LADashboard) -> None:
    reply = await dashboard.page(COVENTRY, {}, with_token(COVENTRY))
    assert "<script" not in reply.body
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Tables&quot;; DROP" in reply.body
    assert "Chloé O&#x27;Neill" in reply.body


async def test_security_headers(dashboard: LADashboard) -> None:
    reply = await dashboard.page(COVENTRY, {}, with_token(COVENTRY))
    assert reply.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert reply.headers["Cache-Control"] == "no-store"
    assert reply.headers["Referrer-Policy"] == "no-referrer"


async def test_alert_limit_shows_the_newest_and_says_so(register: Register) -> None:
    dashboard = LADashboard(TOKENS, lambda: register, alert_limit=2, clock=lambda: NOW)
    reply = await dashboard.page(COVENTRY, {}, with_token(COVENTRY))
    assert table_upns(reply.body, "alerts") == [UPN_CHLOE, UPN_CHLOE]
    assert "(newest 2 of 5)" in reply.body


async def test_json_variant(dashboard: LADashboard) -> None:
    reply = await dashboard.cases_json(COVENTRY, {}, {**with_token(COVENTRY), "severity": "HIGH"})
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
    dashboard = LADashboard(TOKENS, lambda: register, clock=lambda: NOW)
    await dashboard.page(COVENTRY, {}, with_token(COVENTRY))
    await dashboard.page(COVENTRY, {}, {})
    logged = caplog.text
    for child in (AMELIA, CHLOE, MALLORY):
        assert child.surname not in logged and child.forename not in logged
    assert TOKENS[COVENTRY].get_secret_value() not in logged


# --- settings ----------------------------------------------------------------------------------------------


def test_tokens_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLWATCH_DASHBOARD_TOKENS", json.dumps({"331": "x" * 16}))
    settings = Settings()
    assert settings.dashboard_tokens["331"].get_secret_value() == "x" * 16
    assert "x" * 16 not in repr(settings)


@pytest.mark.parametrize(
    ("tokens", "problem"),
    [({"331": "short"}, "shorter than 16"), ({"Coventry": "x" * 20}, "three-digit"), ({"33": "x" * 20}, "three")],
)
def test_unsound_tokens_are_refused(tokens: dict[str, str], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        Settings(dashboard_tokens=tokens)


WEBHOOK_SECRET = "whsec_" + "A" * 43


def test_tokens_reach_a_child_process_environment_intact(monkeypatch: pytest.MonkeyPatch) -> None:
    webhooks = {"330": {"url": "https://x", "secret": WEBHOOK_SECRET}}
    settings = Settings(dashboard_tokens={"331": "y" * 20}, webhooks=webhooks)  # type: ignore[arg-type]
    for name, value in settings.as_environment().items():
        monkeypatch.setenv(name, value)
    rebuilt = Settings()
    assert rebuilt.dashboard_tokens["331"].get_secret_value() == "y" * 20
    assert rebuilt.webhooks["330"].secret.get_secret_value() == WEBHOOK_SECRET
