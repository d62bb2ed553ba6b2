"""Webhook delivery against a real local HTTP server that verifies with the Standard Webhooks library, fails,
delays, rejects and answers without end on purpose."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pytest
from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from processors.records import Alert, AlertChild, Recipient, Rule, Severity
from schemas.jsonfields import alert_to_json
from sinks.register import DeliveryOutcome, MemoryDeliveryLog, Register, create_register_engine, migrate
from sinks.webhook import ID_HEADER, MAX_RESPONSE_BYTES, Endpoint, RetryPolicy, WebhookDispatcher

pytestmark = pytest.mark.integration

SECRETS = {la: "whsec_" + base64.b64encode(la.encode() * 8).decode() for la in ("330", "331", "332")}
FAST = RetryPolicy(max_attempts=4, backoff_initial=0.01, backoff_max=0.05, retry_after_max=5.0, timeout=2.0)


def alert(number: int, la: str) -> Alert:
    return Alert(
        alert_id=f"bbbbbbbb-0000-5000-8000-{number:012d}",
        rule=Rule.MISSING_NO_DESTINATION,
        recipient=Recipient.CME_OFFICER,
        la_code=la,
        severity=Severity.HIGH,
        upn="W330215224052",
        child=AlertChild("Zoë-Marie", "O'Connor", date(2014, 8, 17)),
        school_urn="140201",
        raised_on=date(2025, 3, 4),
        reason="Removed on ground G with no known destination.",
        trigger_event_ids=("00000000-0000-4000-8000-000000000001",),
        case_id="11111111-1111-5111-8111-111111111111",
    )


@dataclass
class Received:
    la: str
    alert_id: str
    at: float
    verified: bool
    body: dict[str, object]
    status: int


Behaviour = Callable[["Receiver", str, int], Awaitable[web.Response]]


async def ok(_receiver: Receiver, _la: str, _count: int) -> web.Response:
    return web.Response(status=200)


def failing_first(times: int, status: int, headers: dict[str, str] | None = None) -> Behaviour:
    async def behave(_receiver: Receiver, _la: str, count: int) -> web.Response:
        return web.Response(status=status, headers=headers) if count <= times else web.Response(status=200)

    return behave


def always(status: int) -> Behaviour:
    async def behave(_receiver: Receiver, _la: str, _count: int) -> web.Response:
        return web.Response(status=status)

    return behave


def slow(seconds: float) -> Behaviour:
    async def behave(_receiver: Receiver, _la: str, _count: int) -> web.Response:
        await asyncio.sleep(seconds)
        return web.Response(status=200)

    return behave


@dataclass
class Receiver:
    """A case-management system per LA at /<LA>: verifies every signature as a real receiver must (401 if
    it fails), then answers as its behaviour says."""

    base: str = ""
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    async def handle(self, request: web.Request) -> web.Response:
        la = request.match_info["la"]
        body = await request.read()
        try:
            Webhook(SECRETS[la]).verify(body, dict(request.headers))
            verified = True
        except WebhookVerificationError:
            verified = False
        count = 1 + sum(1 for r in self.received if r.la == la)
        response = (
            await self.behaviours.get(la, ok)(self, la, count) if verified else web.Response(status=401)
        )
        self.received.append(Received(
            la, request.headers.get(ID_HEADER, ""), time.monotonic() - self.started, verified,
            json.loads(body), response.status,
        ))
        return response

    def endpoint(self, la: str, secret: str | None = None) -> Endpoint:
        return Endpoint(la, f"{self.base}/{la}", secret or SECRETS[la])

    def of(self, la: str) -> list[Received]:
        return [r for r in self.received if r.la == la]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    app = web.Application()
    app.router.add_post("/{la}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield server
    await runner.cleanup()


async def deliver(
    receiver: Receiver, alerts: list[Alert], policy: RetryPolicy = FAST, endpoints: dict[str, Endpoint] | None = None
) -> MemoryDeliveryLog:
    log = MemoryDeliveryLog(alerts)
    endpoints = endpoints or {la: receiver.endpoint(la) for la in {a.la_code for a in alerts}}
    receiver.started = time.monotonic()
    await WebhookDispatcher(log, endpoints, policy, batch_size=10).run(once=True)
    return log


async def test_a_failing_endpoint_is_retried_until_it_takes_the_alert(receiver: Receiver) -> None:
    receiver.behaviours["331"] = failing_first(2, 503)
    sent = alert(1, "331")

    log = await deliver(receiver, [sent])

    outcome = log.outcomes[sent.alert_id]
    assert (outcome.outcome, outcome.attempts, outcome.last_error) == (DeliveryOutcome.DELIVERED, 3, None)
    assert outcome.delivered_at is not None
    assert [r.status for r in receiver.received] == [503, 503, 200]
    assert all(r.verified and r.alert_id == sent.alert_id for r in receiver.received)
    assert receiver.received[-1].body == alert_to_json(sent)


async def test_after_the_retry_budget_the_alert_is_dead_lettered_with_the_reason(receiver: Receiver) -> None:
    receiver.behaviours["331"] = always(500)

    log = await deliver(receiver, [alert(1, "331")], RetryPolicy(3, 0.01, 0.02, timeout=2.0))

    outcome = log.outcomes[alert(1, "331").alert_id]
    assert (outcome.outcome, outcome.attempts) == (DeliveryOutcome.DEAD_LETTERED, 3)
    assert outcome.last_error == "gave up after 3 attempts; last: HTTP 500"
    assert len(receiver.received) == 3 and log.pending == {}


async def test_a_client_error_is_not_retried(receiver: Receiver) -> None:
    receiver.behaviours["331"] = always(422)

    log = await deliver(receiver, [alert(1, "331")])

    outcome = log.outcomes[alert(1, "331").alert_id]
    assert (outcome.outcome, outcome.attempts) == (DeliveryOutcome.DEAD_LETTERED, 1)
    assert outcome.last_error == "HTTP 422: the endpoint rejected the alert; not retried"
    assert len(receiver.received) == 1


async def test_a_wrong_secret_fails_the_receivers_check_and_is_not_retried(receiver: Receiver) -> None:
    log = await deliver(receiver, [alert(1, "331")], endpoints={"331": receiver.endpoint("331", SECRETS["330"])})

    [request] = receiver.received
    assert (request.verified, request.status) == (False, 401)
    assert log.outcomes[alert(1, "331").alert_id].outcome is DeliveryOutcome.DEAD_LETTERED


async def test_429_retry_after_is_honoured(receiver: Receiver) -> None:
    receiver.behaviours["331"] = failing_first(1, 429, {"Retry-After": "1"})

    log = await deliver(receiver, [alert(1, "331")])

    first, second = receiver.received
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 0.95  # the backoff alone would have waited 0.01 s
    assert log.outcomes[alert(1, "331").alert_id].attempts == 2


async def test_a_timeout_is_retried_and_then_dead_lettered(receiver: Receiver) -> None:
    receiver.behaviours["331"] = slow(1.5)

    log = await deliver(receiver, [alert(1, "331")], RetryPolicy(2, 0.01, 0.02, timeout=0.3))

    outcome = log.outcomes[alert(1, "331").alert_id]
    assert (outcome.outcome, outcome.attempts) == (DeliveryOutcome.DEAD_LETTERED, 2)
    assert outcome.last_error == "gave up after 2 attempts; last: timed out after 0.3s"


async def test_a_slow_la_does_not_delay_another_la(receiver: Receiver) -> None:
    receiver.behaviours["331"] = slow(1.0)
    receiver.behaviours["332"] = always(503)
    alerts = [alert(1, "331"), alert(2, "331"), alert(3, "332"), alert(4, "330"), alert(5, "330"), alert(6, "330")]

    started = time.monotonic()
    log = await deliver(receiver, alerts, RetryPolicy(4, 0.3, 1.0, timeout=5.0))
    elapsed = time.monotonic() - started

    fast_la = receiver.of("330")
    assert [r.status for r in fast_la] == [200, 200, 200]
    assert max(r.at for r in fast_la) < 0.5  # done while 331 was still on its first alert
    assert elapsed >= 2.0  # 331's two alerts, one after the other
    assert {a: o.outcome for a, o in log.outcomes.items()} == {
        alert(1, "331").alert_id: DeliveryOutcome.DELIVERED,
        alert(2, "331").alert_id: DeliveryOutcome.DELIVERED,
        alert(3, "332").alert_id: DeliveryOutcome.DEAD_LETTERED,
        alert(4, "330").alert_id: DeliveryOutcome.DELIVERED,
        alert(5, "330").alert_id: DeliveryOutcome.DELIVERED,
        alert(6, "330").alert_id: DeliveryOutcome.DELIVERED,
    }
    assert [r.alert_id for r in receiver.of("331")] == [alert(1, "331").alert_id, alert(2, "331").alert_id]


async def test_outcomes_are_recorded_in_the_register_and_a_restart_resumes_the_budget(
    receiver: Receiver, tmp_path: Path
) -> None:
    engine = create_register_engine(f"sqlite:///{tmp_path}/register.db")
    migrate(engine)
    register = Register(engine)
    good, rejected, resumed = alert(1, "330"), alert(2, "331"), alert(3, "332")
    register.record([good, rejected, resumed], webhook_las={"330", "331", "332"})
    # An earlier run already spent three of 332's four attempts.
    register.record_delivery(resumed.alert_id, "webhook", DeliveryOutcome.PENDING, 3, "HTTP 503", None)
    receiver.behaviours["331"] = always(400)
    receiver.behaviours["332"] = always(503)
    endpoints = {la: receiver.endpoint(la) for la in ("330", "331", "332")}

    await WebhookDispatcher(register, endpoints, FAST).run(once=True)

    outcomes = {record.alert_id: record for record in register.deliveries()}
    assert outcomes[good.alert_id].outcome is DeliveryOutcome.DELIVERED
    assert outcomes[good.alert_id].delivered_at is not None
    assert outcomes[rejected.alert_id].outcome is DeliveryOutcome.DEAD_LETTERED
    assert "HTTP 400" in (outcomes[rejected.alert_id].last_error or "")
    assert (outcomes[resumed.alert_id].outcome, outcomes[resumed.alert_id].attempts) == (
        DeliveryOutcome.DEAD_LETTERED, 4,
    )
    assert len(receiver.of("332")) == 1
    register.close()


async def test_an_endless_response_body_is_not_read_whole() -> None:
    sent = 0
    finished = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        chunk = b"x" * 65536
        try:
            while sent < 1 << 30:
                await response.write(chunk)
                sent += len(chunk)
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            finished.set()
        return response

    app = web.Application()
    app.router.add_post("/endless", endless)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/endless"
        log = MemoryDeliveryLog([alert(1, "330")])
        policy = RetryPolicy(max_attempts=1, timeout=20.0)

        await asyncio.wait_for(
            WebhookDispatcher(log, {"330": Endpoint("330", url, SECRETS["330"])}, policy).run(once=True), 20.0
        )
        await asyncio.wait_for(finished.wait(), 20.0)

        assert log.outcomes[alert(1, "330").alert_id].outcome is DeliveryOutcome.DELIVERED
        # What the server got out before the dropped connection stopped it: the cap plus socket buffers.
        assert MAX_RESPONSE_BYTES <= sent < 64 * 1024 * 1024
    finally:
        await runner.cleanup()
