"""Referral intake and case work through a real worker, a real broker and headless Chromium: the officer's form
and the partner endpoint publish to cme.referrals, the worker raises the alerts, `register sync` stores them, the
pages and the `cases` commands work the cases through case.actions until the child's roll event closes them."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pytest

from config.settings import PartnerCredential, Settings
from processors.cases import CHILD_LOCATED_REASON
from processors.records import CASE_ACTIONS, CME_REFERRALS, CaseAction, CaseActionType, CMEReferral, Rule
from processors.rules import referral_case_id
from sinks.register import Register, create_register_engine, migrate
from sinks.register.queries import CaseSummary
from sinks.register.schema import CaseStatus
from sinks.register.writer import LONDON
from streams.topics import ensure_worker_topics
from tests.integration.casework_flow import (
    alert_about,
    open_cases,
    post_json,
    published,
    send,
    sync_until,
    worker_caught_up,
)
from tests.integration.test_dashboard_browser import (
    ARTIFACTS,
    COVENTRY,
    CREDENTIALS,
    DUDLEY,
    TOKENS,
    Browser,
    browser,
    free_port,
    png_size,
    sign_in,
    wait_for_dashboard,
)
from tests.integration.workers import ROOT, WorkerProcess, worker_env
from tests.scenarios.builder import COV_A, COV_B, added, removed, upn
from tests.scenarios.referrals import referral

pytestmark = pytest.mark.integration
__all__ = ["browser"]

PARTNER_TOKEN = "coventry-health-partner-token-5e8a1f"
PARTNERS = {"health": PartnerCredential(la=COVENTRY, sha256=hashlib.sha256(PARTNER_TOKEN.encode()).hexdigest())}
#: A child Coventry knows: removed from a Coventry school with no known destination, so the worker opens a case.
UPN = "G331200001001"


@dataclass
class Server:
    base_url: str
    settings: Settings
    worker: WorkerProcess


def amelia(line: dict[str, Any]) -> dict[str, Any]:
    """A roll event about the child, with the name and birth date her schools hold."""
    line["value"]["child"] = {"forename": "Amelia", "surname": "Okafor", "date_of_birth": "2014-05-02"}
    return line


def case_of(register: Register, upn_of: str) -> CaseSummary | None:
    return next((case for case in register.cases() if case.upn == upn_of), None)


@pytest.fixture(scope="module")
def server(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("casework")
    run_id = uuid.uuid4().hex[:8]
    database_url = f"sqlite:///{tmp}/register.db"
    migrate(create_register_engine(database_url))
    port = free_port()
    settings = Settings(
        bootstrap_servers=kafka_bootstrap, topic_prefix=f"case{run_id}.", app_id=f"case-{run_id}",
        data_dir=tmp / "worker", database_url=database_url, web_enabled=True, web_port=port,
        dashboard_tokens=CREDENTIALS, partner_tokens=PARTNERS, register_group=f"case-register-{run_id}",
        broker_commit_interval=0.1, broker_session_timeout=10, broker_rebalance_timeout=10, log_level="WARNING",
    )
    ensure_worker_topics(settings)
    worker = WorkerProcess(settings, tmp / "worker.log").start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for_dashboard(base_url, worker)
        send(settings, amelia(removed(UPN, COV_A, "2025-03-03", "I_CONTINUOUS_ABSENCE")))
        sync_until(settings, lambda register: case_of(register, UPN), "the child's MISSING_NO_DESTINATION case")
        yield Server(base_url, settings, worker)
        assert worker.alive(), worker.log()
    finally:
        worker.stop()


PARTNER_REFERRAL = {
    "child": {"forename": "Noah", "surname": "Bright", "date_of_birth": "2013-06-01"},
    "concern": "NOT_IN_SCHOOL",
    "details": "Not in school since the family moved.",
    "referrer": {"agency": "HOUSING", "name": "K. Jones", "contact": "k.jones@example.org"},
}


def post_referral(server: Server, la: str, token: str, document: object) -> tuple[int, dict[str, object]]:
    return post_json(server.base_url, f"/la/{la}/referrals", token, json.dumps(document).encode())


def test_the_partner_endpoint_sends_a_referral_the_worker_alerts_on(server: Server) -> None:
    status, answer = post_referral(server, COVENTRY, PARTNER_TOKEN, PARTNER_REFERRAL)
    assert status == 201, answer
    referral_id = str(answer["referral_id"])
    # The worker decides: the LA's CME officer is told, keyed by the referral id as there is no UPN.
    key, alert = alert_about(server.settings, COVENTRY, referral_id)
    assert (alert.rule, alert.upn, alert.referral_id, key) == (
        Rule.REFERRAL_NOT_ON_ROLL, None, referral_id, referral_id.encode(),
    )
    assert alert.case_id == referral_case_id(referral_id) and "k.jones" not in alert.reason
    sent_before = len(published(server.settings, CME_REFERRALS, CMEReferral))
    assert post_referral(server, DUDLEY, PARTNER_TOKEN, PARTNER_REFERRAL)[0] == 403
    assert post_referral(server, COVENTRY, TOKENS[COVENTRY], PARTNER_REFERRAL)[0] == 401
    status, answer = post_referral(server, COVENTRY, PARTNER_TOKEN, {"child": {}, "referrer": {"agency": "X"}})
    assert status == 400
    assert {(p["code"], p["field"]) for p in answer["problems"]} >= {  # type: ignore[union-attr,index]
        ("FIELD_MISSING", "child.forename"), ("FIELD_INVALID", "referrer.agency"), ("FIELD_MISSING", "concern"),
    }
    status, answer = post_referral(server, COVENTRY, PARTNER_TOKEN, {**PARTNER_REFERRAL, "upn": "A331200001002"})
    assert status == 400 and [p["code"] for p in answer["problems"]] == ["UPN_CHECK_LETTER"]  # type: ignore[index,union-attr]
    assert post_referral(server, COVENTRY, PARTNER_TOKEN, {**PARTNER_REFERRAL, "details": "x" * 17_000})[0] == 413
    assert len(published(server.settings, CME_REFERRALS, CMEReferral)) == sent_before, "a refused referral was sent"


async def submitted(browser: Browser, marker: str) -> str:
    """The page a form's submission leads to, once it has loaded."""
    deadline = time.monotonic() + 60
    while True:
        # While the answer loads there is no document to read yet.
        page = await browser.evaluate("document.documentElement.outerHTML")
        if isinstance(page, str) and marker in page:
            return page
        assert time.monotonic() < deadline, str(page)[-2000:]
        await asyncio.sleep(0.2)


async def screenshot(browser: Browser, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / name
    shot.unlink(missing_ok=True)
    data = base64.b64decode(str((await browser.call("Page.captureScreenshot", format="png"))["data"]))
    shot.write_bytes(data)
    assert png_size(data) == (1280, 900) and len(data) > 20_000, len(data)


async def test_a_referral_from_the_form_is_alerted_linked_and_closed_by_the_childs_roll_event(
    server: Server, browser: Browser
) -> None:
    base, settings = server.base_url, server.settings
    await sign_in(browser, base, COVENTRY, TOKENS[COVENTRY])
    form = await browser.open(f"{base}/la/{COVENTRY}/referral", "take a referral")
    assert 'name="csrf"' in form
    fields = {"forename": "Amelia", "surname": "Okafour", "date_of_birth": "2014-05-02", "postcode": "cv3 4cc",
              "details": "Seen at the clinic in school hours; no school place.", "agency": "HEALTH",
              "referrer_name": "H. Visitor", "referrer_contact": "01234 567890"}
    await browser.evaluate("".join(
        f"document.querySelector('[name={name}]').value = {json.dumps(value)};" for name, value in fields.items()
    ) + "document.querySelector('form.referral').submit(); true")
    page = await submitted(browser, "referral-id")
    referral_id = page.split('class="referral-id">', 1)[1].split("<", 1)[0]
    await screenshot(browser, "dashboard-referral-331.png")
    case_id = referral_case_id(referral_id)

    # The worker raises REFERRAL_NOT_ON_ROLL; `register sync` stores it with the referral.
    case = sync_until(settings, lambda register: register.case(case_id), "the referral's case")
    assert (case.upn, case.opening_rule, case.referral_id, case.holders) == (
        None, Rule.REFERRAL_NOT_ON_ROLL, referral_id, (COVENTRY,),
    )
    listed = await browser.open(f"{base}/la/{COVENTRY}/referral", "take a referral")
    assert f'data-referral="{referral_id}"' in listed and "CV3 4CC" not in listed
    view = await browser.open(f"{base}/la/{COVENTRY}/cases/{case_id}", "case")
    assert "none: a referral case" in view and "Okafour" in view and "01234 567890" in view
    assert "postcode given CV3 4CC" in view and "no school place" in view
    assert f'<tr data-upn="{UPN}">' in view  # the known child of the same birth date and a close name
    await screenshot(browser, "dashboard-referral-case-331.png")

    # Linked to the child: a LINK on case.actions, applied by the worker and recorded by the register.
    await browser.evaluate(f"document.querySelector('tr[data-upn=\"{UPN}\"] form.link').submit(); true")
    deadline = time.monotonic() + 60
    while not (links := [action for _, action in published(settings, CASE_ACTIONS, CaseAction)
                         if action.action is CaseActionType.LINK and action.case_id == case_id]):
        assert time.monotonic() < deadline, "no LINK action reached case.actions"
    assert [(link.upn, link.referral_id, link.la_code, link.by) for link in links] == [
        (UPN, referral_id, COVENTRY, "token 331-cme"),
    ]
    worker_caught_up(settings)
    sync_until(settings, lambda register: register.case(case_id).upn == UPN, "the link")  # type: ignore[union-attr]
    linked = await browser.open(f"{base}/la/{COVENTRY}/cases/{case_id}", "case")
    assert f"to UPN {UPN}" in linked and "Possible matches" not in linked and "Close the case" in linked

    # The child's ADDED: CHILD_LOCATED closes the child's case and, with it, the referral's.
    # Dated the day the form took the referral, so the case closes no earlier than it opened.
    send(settings, amelia(added(UPN, COV_B, datetime.now(tz=LONDON).date().isoformat())))
    closed = sync_until(
        settings, lambda register: (c := register.case(case_id)) and c.status is CaseStatus.CLOSED and c,
        "the referral's case closed",
    )
    assert (closed.closing_reason, closed.closed_by) == (CHILD_LOCATED_REASON, "rollwatch")
    register = Register.from_url(settings.database_url)
    try:
        child_case = case_of(register, UPN)
        assert child_case is not None and child_case.status is CaseStatus.CLOSED
    finally:
        register.close()
    shown = await browser.open(f"{base}/la/{COVENTRY}/cases/{case_id}", "case")
    assert "Amelia Okafor, born 2 May 2014" in shown
    day = closed.closed_on
    assert day is not None and f"closed, closed {day.day} {day:%b %Y} by rollwatch: {CHILD_LOCATED_REASON}" in shown
    assert "Close the case" not in shown
    await screenshot(browser, "dashboard-referral-case-closed-331.png")

    # A regional search from Dudley's officer finds Coventry's case for the child, and nothing else about it.
    await sign_in(browser, base, DUDLEY, TOKENS[DUDLEY])
    found = await browser.open(f"{base}/la/{DUDLEY}/search?upn={UPN}", "regional search")
    assert "Coventry (331)" in found and "Okafor" not in found and "Okafour" not in found
    # Dudley's officer cannot open Coventry's case.
    assert "No such case" in await browser.open(f"{base}/la/{DUDLEY}/cases/{case_id}", "No such case")


def rollwatch(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=worker_env(settings),
        capture_output=True, text=True, timeout=120, check=False,
    )


def referral_case(server: Server) -> str:
    """A referral without a UPN sent to cme.referrals, once the register holds the case the worker opened."""
    rid = str(uuid.uuid4())
    send(server.settings, referral(None, COVENTRY, "2025-03-05", rid=rid))
    case_id = referral_case_id(rid)
    sync_until(server.settings, lambda register: register.case(case_id), "the referral's case")
    return case_id


def test_cases_link_through_kafka_then_the_childs_added_closes_the_case(server: Server) -> None:
    settings, child = server.settings, upn(COVENTRY, 990_001)
    case_id = referral_case(server)
    linked = rollwatch(settings, "cases", "link", case_id, child, "--by", "officer.331")
    assert linked.returncode == 0, linked.stderr
    worker_caught_up(settings)
    sync_until(settings, lambda register: register.case(case_id).upn == child, "the link")  # type: ignore[union-attr]
    send(settings, added(child, COV_A, "2025-03-17"))
    sync_until(settings, lambda register: register.case(case_id).status is CaseStatus.CLOSED,  # type: ignore[union-attr]
               "the case closed")
    shown = rollwatch(settings, "cases", "show", case_id, "--json", "--by", "officer.331")
    assert shown.returncode == 0, shown.stderr
    case = json.loads(shown.stdout)
    assert (case["status"], case["upn"], case["closing_reason"], case["closed_on"]) == (
        "closed", child, CHILD_LOCATED_REASON, date(2025, 3, 17).isoformat(),
    )


def test_cases_close_ends_a_referral_case_without_a_upn_in_the_worker_and_the_register(server: Server) -> None:
    settings = server.settings
    case_id = referral_case(server)
    worker_caught_up(settings)
    before = open_cases(server.base_url, COVENTRY)
    closed = rollwatch(settings, "cases", "close", case_id, "--reason-code", "left-england-confirmed",
                       "--note", "On roll in Wales", "--by", "officer.331")
    assert closed.returncode == 0, closed.stderr
    ((key, action),) = [(k, a) for k, a in published(settings, CASE_ACTIONS, CaseAction) if a.case_id == case_id]
    assert action.upn is None and action.referral_id is not None and key == action.referral_id.encode()
    # Keyed by the referral id, the CLOSE reaches the referral's own state: its case is no longer counted open.
    worker_caught_up(settings)
    assert open_cases(server.base_url, COVENTRY) == before - 1
    case = sync_until(
        settings, lambda register: (c := register.case(case_id)) and c.status is CaseStatus.CLOSED and c,
        "the case closed",
    )
    assert (case.close_reason, case.closed_by, case.closing_reason) == (
        "LEFT_ENGLAND_CONFIRMED", "officer.331", "On roll in Wales",
    )


def test_the_readme_example_request_works_as_written(server: Server) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = next(part for part in readme.split("```")[1::2] if "curl -X POST" in part)
    *command, answer_line = block.strip().splitlines()
    example_answer = json.loads(answer_line.replace("5d0f...", "x"))
    shell = "\n".join(command).replace("http://127.0.0.1:6066", server.base_url)
    ran = subprocess.run(["bash", "-c", shell], env={"PATH": "/usr/bin:/bin", "PARTNER_TOKEN": PARTNER_TOKEN},
                         capture_output=True, text=True, timeout=60, check=False)
    assert ran.returncode == 0, ran.stderr
    answer = json.loads(ran.stdout)
    assert set(answer) == set(example_answer) and answer["la_code"] == example_answer["la_code"] == COVENTRY
    assert alert_about(server.settings, COVENTRY, answer["referral_id"])[1].rule is Rule.REFERRAL_NOT_ON_ROLL
