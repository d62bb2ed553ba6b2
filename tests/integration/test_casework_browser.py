"""Referral intake and regional search through a real worker, a real broker and headless Chromium: the partner
endpoint over HTTP and the officer's form publish to cme.referrals, `register sync` stores them, the pages show them."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest

from config.settings import PartnerCredential, Settings
from processors.records import (
    CASE_ACTIONS,
    CME_REFERRALS,
    Alert,
    AlertChild,
    CaseAction,
    CaseActionType,
    CMEReferral,
    Recipient,
    ReferralChild,
    ReferralConcern,
    Referrer,
    ReferrerAgency,
    Rule,
    Severity,
)
from schemas.codec import AvroCodec
from sinks.register import Register, create_register_engine, migrate
from sinks.register.feed import consume_into_register
from streams.topics import ensure_worker_topics
from tests.integration.test_dashboard_browser import (
    ARTIFACTS,
    COVENTRY,
    CREDENTIALS,
    DUDLEY,
    TOKENS,
    Browser,
    browser,
    free_port,
    http_status,
    png_size,
    sign_in,
)
from tests.integration.workers import WorkerProcess

pytestmark = pytest.mark.integration
__all__ = ["browser"]

PARTNER_TOKEN = "coventry-health-partner-token-5e8a1f"
PARTNERS = {"health": PartnerCredential(la=COVENTRY, sha256=hashlib.sha256(PARTNER_TOKEN.encode()).hexdigest())}
UPN = "G331200001001"
REFERRAL_ID = "33333333-3333-4333-8333-333333333333"
CASE_REFERRAL = "22222222-2222-5222-8222-222222222222"


@dataclass
class Server:
    base_url: str
    settings: Settings
    worker: WorkerProcess


@pytest.fixture(scope="module")
def server(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("casework")
    run_id = uuid.uuid4().hex[:8]
    database_url = f"sqlite:///{tmp}/register.db"
    engine = create_register_engine(database_url)
    migrate(engine)
    register = Register(engine)
    register.record([Alert(
        alert_id="aaaaaaaa-0000-5000-8000-000000000001", rule=Rule.MISSING_NO_DESTINATION,
        recipient=Recipient.CME_OFFICER, la_code=COVENTRY, severity=Severity.HIGH, upn=UPN,
        child=AlertChild("Amelia", "Okafor", date(2014, 5, 2)), school_urn="140201", raised_on=date(2025, 3, 3),
        reason="Removed with no known destination.", case_id="11111111-1111-5111-8111-111111111111",
    ), CMEReferral(
        referral_id=REFERRAL_ID, received_on=date(2025, 3, 10), la_code=COVENTRY, upn=None,
        child=ReferralChild("Amelia", "Okafour", date(2014, 5, 2)), concern=ReferralConcern.NOT_IN_SCHOOL,
        referrer=Referrer(ReferrerAgency.HEALTH, "H. Visitor", "01234 567890"),
    ), Alert(
        # What the worker raises for that referral: a case with no UPN, keyed by the referral id.
        alert_id="aaaaaaaa-0000-5000-8000-000000000002", rule=Rule.REFERRAL_NOT_ON_ROLL,
        recipient=Recipient.CME_OFFICER, la_code=COVENTRY, severity=Severity.HIGH, upn=None, child=None,
        school_urn=None, raised_on=date(2025, 3, 10), reason="Referred; on roll at no school.",
        trigger_event_ids=(REFERRAL_ID,), case_id=CASE_REFERRAL, referral_id=REFERRAL_ID,
    )])
    register.close()
    port = free_port()
    settings = Settings(
        bootstrap_servers=kafka_bootstrap, topic_prefix=f"case{run_id}.", app_id=f"case-{run_id}",
        data_dir=tmp / "worker", database_url=database_url, web_enabled=True, web_port=port,
        dashboard_tokens=CREDENTIALS, partner_tokens=PARTNERS, register_group=f"case-register-{run_id}",
        broker_session_timeout=10, broker_rebalance_timeout=10, log_level="WARNING",
    )
    ensure_worker_topics(settings)
    worker = WorkerProcess(settings, tmp / "worker.log").start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert worker.alive(), worker.log()
            try:
                if http_status(f"{base_url}/la/{COVENTRY}/") == 401:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"the dashboard never answered:\n{worker.log()}"
            time.sleep(0.5)
        yield Server(base_url, settings, worker)
    finally:
        worker.stop()


def post_referral(server: Server, la: str, token: str, document: object) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(  # noqa: S310 - a local test server
        f"{server.base_url}/la/{la}/referrals", data=json.dumps(document).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:  # noqa: S310 - a local test server
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def published_referrals(settings: Settings) -> dict[str, tuple[bytes, CMEReferral]]:
    """Every referral on the deployment's cme.referrals, by id, with its message key."""
    return {
        referral.referral_id: (key, referral)
        for key, referral in published(settings, CME_REFERRALS, CMEReferral)
    }


def published(settings: Settings, name: str, kind: type[Any]) -> list[tuple[bytes, Any]]:
    """Every (key, record) on one of the deployment's input topics."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False)
    try:
        topic = settings.topic(name)
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        found: list[tuple[bytes, Any]] = []
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < ends[tp] for tp in partitions) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                found.extend((record.key, AvroCodec().decode(record.value, kind)) for record in records)
        return found
    finally:
        consumer.close()


PARTNER_REFERRAL = {
    "child": {"forename": "Noah", "surname": "Bright", "date_of_birth": "2013-06-01"},
    "concern": "NOT_IN_SCHOOL",
    "details": "Not in school since the family moved.",
    "referrer": {"agency": "HOUSING", "name": "K. Jones", "contact": "k.jones@example.org"},
}


def test_the_partner_endpoint_publishes_to_cme_referrals_over_http(server: Server) -> None:
    status, answer = post_referral(server, COVENTRY, PARTNER_TOKEN, PARTNER_REFERRAL)
    assert status == 201, answer
    referral_id = str(answer["referral_id"])
    key, referral = published_referrals(server.settings)[referral_id]
    assert key == referral_id.encode()  # no UPN: keyed by the referral id
    assert (referral.la_code, referral.child.surname, referral.child.date_of_birth, referral.concern.value) == (
        COVENTRY, "Bright", date(2013, 6, 1), "NOT_IN_SCHOOL",
    )
    assert referral.referrer.contact == "k.jones@example.org"
    assert post_referral(server, DUDLEY, PARTNER_TOKEN, PARTNER_REFERRAL)[0] == 403
    assert post_referral(server, COVENTRY, TOKENS[COVENTRY], PARTNER_REFERRAL)[0] == 401
    status, answer = post_referral(server, COVENTRY, PARTNER_TOKEN, {"child": {}, "referrer": {"agency": "X"}})
    assert status == 400 and {p["code"] for p in answer["problems"]} == {"FIELD_MISSING", "FIELD_INVALID"}  # type: ignore[union-attr,index]
    big = {**PARTNER_REFERRAL, "details": "x" * 17_000}
    assert post_referral(server, COVENTRY, PARTNER_TOKEN, big)[0] == 413


async def test_the_officers_form_sends_a_referral_the_register_then_shows(server: Server, browser: Browser) -> None:
    base = server.base_url
    await sign_in(browser, base, COVENTRY, TOKENS[COVENTRY])
    form = await browser.open(f"{base}/la/{COVENTRY}/referral", "take a referral")
    assert 'name="csrf"' in form
    fields = {"forename": "Maisie", "surname": "Thornbury", "date_of_birth": "2015-02-11", "postcode": "CV3 4CC",
              "details": "Phoned in by a neighbour: not seen going to school since half term."}
    fill = "".join(f"document.querySelector('[name={name}]').value = {json.dumps(value)};"
                   for name, value in fields.items())
    await browser.evaluate(
        fill + "document.querySelector('[name=agency]').value = 'PUBLIC';"
        "document.querySelector('form.referral').submit(); true"
    )
    deadline = time.monotonic() + 60
    while True:
        # While the form's answer loads there is no document to read yet.
        page = await browser.evaluate("document.documentElement.outerHTML")
        if isinstance(page, str) and "referral-id" in page:
            break
        assert time.monotonic() < deadline, str(page)[-2000:]
        await asyncio.sleep(0.3)
    referral_id = page.split('class="referral-id">', 1)[1].split("<", 1)[0]
    _, referral = published_referrals(server.settings)[referral_id]
    assert (referral.child.surname, referral.child.postcode, referral.referrer.anonymous) == (
        "Thornbury", "CV3 4CC", True,
    )
    # The register sync stores what the form sent; the officer's page then lists it.
    outcome = consume_into_register(server.settings, once=True, timeout=60)
    assert outcome.caught_up and outcome.stats.referrals >= 1
    listed = await browser.open(f"{base}/la/{COVENTRY}/referral", "take a referral")
    assert f'data-referral="{referral_id}"' in listed and "Thornbury" in listed

    # A regional search from Dudley's officer finds Coventry's case for the child, and nothing else about it.
    await sign_in(browser, base, DUDLEY, TOKENS[DUDLEY])
    found = await browser.open(f"{base}/la/{DUDLEY}/search?upn={UPN}", "regional search")
    assert "Coventry (331)" in found and "URN 140201" in found and "Okafor" not in found

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard-referral-331.png"
    shot.unlink(missing_ok=True)
    # Coventry's session cookie (scoped to /la/331/) is still the browser's.
    await browser.open(f"{base}/la/{COVENTRY}/referral", "take a referral")
    captured = await browser.call("Page.captureScreenshot", format="png")
    data = base64.b64decode(str(captured["data"]))
    shot.write_bytes(data)
    assert png_size(data) == (1280, 900) and len(data) > 20_000, len(data)


async def test_the_case_view_links_a_referral_case_to_a_possible_match(server: Server, browser: Browser) -> None:
    base = server.base_url
    await sign_in(browser, base, COVENTRY, TOKENS[COVENTRY])
    page = await browser.open(f"{base}/la/{COVENTRY}/cases/{CASE_REFERRAL}", "case")
    assert f'<tr data-upn="{UPN}">' in page and "01234 567890" in page and "Okafour" in page
    await browser.evaluate("document.querySelector('table.matches form.link').submit(); true")
    deadline = time.monotonic() + 60
    while True:
        links = [action for _, action in published(server.settings, CASE_ACTIONS, CaseAction)
                 if action.action is CaseActionType.LINK and action.case_id == CASE_REFERRAL]
        if links:
            break
        assert time.monotonic() < deadline, "no LINK action reached case.actions"
        await asyncio.sleep(0.5)
    (link,) = links
    assert (link.upn, link.referral_id, link.la_code, link.by) == (UPN, REFERRAL_ID, COVENTRY, "token 331-cme")
    assert consume_into_register(server.settings, once=True, timeout=60).caught_up
    linked = await browser.open(f"{base}/la/{COVENTRY}/cases/{CASE_REFERRAL}", "case")
    assert f"to UPN {UPN}" in linked and "Possible matches" not in linked
    # Dudley's officer cannot open Coventry's case.
    await sign_in(browser, base, DUDLEY, TOKENS[DUDLEY])
    assert "No such case" in await browser.open(f"{base}/la/{DUDLEY}/cases/{CASE_REFERRAL}", "No such case")
