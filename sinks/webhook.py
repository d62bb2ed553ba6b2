"""Webhook delivery of alerts to LA case systems: Standard Webhooks signatures, retries per LA, outcomes kept."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

import aiohttp
from standardwebhooks import Webhook, WebhookVerificationError

from processors.records import Alert
from schemas.jsonformat import alert_to_line
from sinks.register.audit import audit_webhook_delivery
from sinks.register.deliveries import WEBHOOK_CHANNEL, DeliveryLog, PendingDelivery
from sinks.register.schema import DeliveryOutcome

log = logging.getLogger(__name__)

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
#: Most bytes of a receiver's answer that are read: only its status matters, and a receiver must not be able
#: to make the sender hold an unbounded body.
MAX_RESPONSE_BYTES = 64 * 1024
#: Statuses that mean "try again later"; every other 4xx means "never".
RETRYABLE_CLIENT_STATUSES = frozenset({408, 425, 429})


# --- signing ---------------------------------------------------------------------------------------------


def signature(secret: str, alert_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature value (`v1,<base64 HMAC-SHA256>` of id.timestamp.body) for a `whsec_` secret."""
    return Webhook(secret).sign(alert_id, datetime.fromtimestamp(timestamp, tz=UTC), body)


def verify_signature(secret: str, headers: Mapping[str, str], body: bytes) -> bool:
    """What a receiver checks (the README's "Webhooks into LA case systems"), with the scheme's own library: all
    three headers present, the timestamp within five minutes of now, and the signature the secret's over id,
    timestamp and the body as received."""
    try:
        Webhook(secret).verify(body, dict(headers), json_parse=False)
    except WebhookVerificationError:
        return False
    return True


def alert_body(alert: Alert) -> bytes:
    return alert_to_line(alert)


def signed_headers(secret: str, alert_id: str, body: bytes, timestamp: int) -> dict[str, str]:
    return {
        "Content-Type": "application/json; charset=utf-8",
        ID_HEADER: alert_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, alert_id, timestamp, body),
    }


class ResponseBody(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


async def read_capped(content: ResponseBody, limit: int = MAX_RESPONSE_BYTES) -> int:
    """Reads and drops at most `limit` bytes of a response body; returns how many were read."""
    total = 0
    while total < limit:
        chunk = await content.read(min(16 * 1024, limit - total))
        if not chunk:
            break
        total += len(chunk)
    return total


# --- retry policy ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 6
    backoff_initial: float = 1.0
    backoff_max: float = 300.0
    retry_after_max: float = 900.0
    timeout: float = 10.0

    def backoff(self, failed_attempts: int, rng: random.Random) -> float:
        """Wait before the next attempt after `failed_attempts` failures: exponential, capped, and jittered
        over its upper half so that many alerts failing together do not all come back at once."""
        ceiling = min(self.backoff_max, self.backoff_initial * 2 ** (failed_attempts - 1))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)

    def wait_before_retry(self, failed_attempts: int, retry_after: float | None, rng: random.Random) -> float:
        delay = self.backoff(failed_attempts, rng)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_after_max))
        return delay


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds asked for by a Retry-After header: delta-seconds or an HTTP date; None if absent or garbled."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(tz=UTC))).total_seconds())


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """One HTTP attempt: delivered, or failed and retryable or not, with a reason fit for the register."""

    delivered: bool
    retryable: bool
    error: str | None = None
    retry_after: float | None = None


def judge_response(status: int, retry_after: str | None) -> AttemptResult:
    if 200 <= status < 300:
        return AttemptResult(delivered=True, retryable=False)
    reason = f"HTTP {status}"
    if status >= 500 or status in RETRYABLE_CLIENT_STATUSES:
        return AttemptResult(False, True, reason, parse_retry_after(retry_after))
    return AttemptResult(False, False, f"{reason}: the endpoint rejected the alert; not retried")


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    alert_id: str
    outcome: DeliveryOutcome
    attempts: int
    last_error: str | None


# --- delivery --------------------------------------------------------------------------------------------


Sleep = Callable[[float], Awaitable[None]]


class DeliveryRecorder(Protocol):
    """Where delivery outcomes are counted (Prometheus in `rollwatch register deliver`)."""

    def delivery_finished(self, channel: str, la_code: str, outcome: str) -> None: ...

    def attempt_failed(self, channel: str, la_code: str) -> None: ...

    def pending_found(self, la_code: str, count: int) -> None: ...


@dataclass(frozen=True, slots=True)
class Endpoint:
    la_code: str
    url: str
    secret: str


class WebhookSender:
    """Delivers one alert to one endpoint, retrying as the policy says; knows nothing of the register."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        policy: RetryPolicy,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        self.policy = policy
        self.sleep = sleep
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self.clock = clock

    async def attempt(self, endpoint: Endpoint, alert: Alert) -> AttemptResult:
        body = alert_body(alert)
        headers = signed_headers(endpoint.secret, alert.alert_id, body, int(self.clock()))
        try:
            async with self.session.post(
                endpoint.url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.policy.timeout),
                allow_redirects=False,
            ) as response:
                # Reading the body lets the connection be reused; past the cap the connection is dropped instead.
                if await read_capped(response.content) >= MAX_RESPONSE_BYTES:
                    response.close()
                return judge_response(response.status, response.headers.get("Retry-After"))
        except TimeoutError:
            return AttemptResult(False, True, f"timed out after {self.policy.timeout:g}s")
        except aiohttp.ClientError as error:
            return AttemptResult(False, True, f"connection failed ({type(error).__name__})")

    async def deliver(
        self,
        endpoint: Endpoint,
        alert: Alert,
        attempts_before: int = 0,
        on_failed_attempt: Callable[[int, str], Awaitable[None]] | None = None,
    ) -> DeliveryResult:
        """Tries until delivered, a non-retryable answer, or the attempt budget (counting earlier runs'
        attempts) is spent."""
        attempts = attempts_before
        last_error: str | None = None
        while attempts < self.policy.max_attempts:
            result = await self.attempt(endpoint, alert)
            attempts += 1
            if result.delivered:
                return DeliveryResult(alert.alert_id, DeliveryOutcome.DELIVERED, attempts, None)
            last_error = result.error
            if not result.retryable:
                return DeliveryResult(alert.alert_id, DeliveryOutcome.DEAD_LETTERED, attempts, last_error)
            if attempts >= self.policy.max_attempts:
                break
            if on_failed_attempt is not None:
                await on_failed_attempt(attempts, last_error or "failed")
            await self.sleep(self.policy.wait_before_retry(attempts, result.retry_after, self.rng))
        reason = f"gave up after {attempts} attempts; last: {last_error}"
        return DeliveryResult(alert.alert_id, DeliveryOutcome.DEAD_LETTERED, attempts, reason)


class WebhookDispatcher:
    """One worker per LA with an endpoint, each fetching its LA's pending deliveries from the register (in a
    thread, off the event loop), delivering them in order and recording each outcome."""

    def __init__(
        self,
        deliveries: DeliveryLog,
        endpoints: Mapping[str, Endpoint],
        policy: RetryPolicy,
        batch_size: int = 50,
        poll_interval: float = 5.0,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        recorder: DeliveryRecorder | None = None,
    ) -> None:
        self.deliveries = deliveries
        self.endpoints = dict(endpoints)
        self.policy = policy
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.sleep = sleep
        self.rng = rng
        self.recorder = recorder
        self.results: list[DeliveryResult] = []

    async def run(self, once: bool = False) -> list[DeliveryResult]:
        """Runs every LA's worker; with `once`, each stops when its LA has nothing pending, else they poll
        until cancelled. Returns what was delivered or dead-lettered."""
        async with aiohttp.ClientSession() as session:
            sender = WebhookSender(session, self.policy, self.sleep, self.rng)
            await asyncio.gather(*(self._la_worker(sender, endpoint, once) for endpoint in self.endpoints.values()))
        return self.results

    async def _la_worker(self, sender: WebhookSender, endpoint: Endpoint, once: bool) -> None:
        while True:
            pending = await asyncio.to_thread(
                self.deliveries.pending_deliveries, endpoint.la_code, WEBHOOK_CHANNEL, self.batch_size
            )
            if self.recorder is not None:
                self.recorder.pending_found(endpoint.la_code, len(pending))
            if not pending:
                if once:
                    return
                await asyncio.sleep(self.poll_interval)
                continue
            for item in pending:
                await self._deliver(sender, endpoint, item)

    async def _deliver(self, sender: WebhookSender, endpoint: Endpoint, item: PendingDelivery) -> None:
        alert_id = item.alert.alert_id

        async def note_failure(attempts: int, error: str) -> None:
            if self.recorder is not None:
                self.recorder.attempt_failed(WEBHOOK_CHANNEL, endpoint.la_code)
            # Kept in the register as it happens, so a restart resumes the budget instead of starting over.
            await asyncio.to_thread(
                self.deliveries.record_delivery,
                alert_id, WEBHOOK_CHANNEL, DeliveryOutcome.PENDING, attempts, error, None,
            )

        result = await sender.deliver(endpoint, item.alert, item.attempts, note_failure)
        delivered_at = datetime.now(tz=UTC) if result.outcome is DeliveryOutcome.DELIVERED else None
        await asyncio.to_thread(
            self.deliveries.record_delivery,
            alert_id, WEBHOOK_CHANNEL, result.outcome, result.attempts, result.last_error, delivered_at,
        )
        self.results.append(result)
        await asyncio.to_thread(audit_webhook_delivery, self.deliveries, endpoint.la_code, item.alert, result.outcome)
        if self.recorder is not None:
            self.recorder.delivery_finished(WEBHOOK_CHANNEL, endpoint.la_code, result.outcome.value)
        # The alert id and LA identify the delivery; the alert's content is personal data and stays out.
        log.info(
            "webhook %s for LA %s: %s after %d attempt(s)%s",
            alert_id, endpoint.la_code, result.outcome.value, result.attempts,
            f" ({result.last_error})" if result.last_error else "",
        )


__all__ = [
    "ID_HEADER",
    "MAX_RESPONSE_BYTES",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "AttemptResult",
    "DeliveryRecorder",
    "DeliveryResult",
    "Endpoint",
    "RetryPolicy",
    "WebhookDispatcher",
    "WebhookSender",
    "alert_body",
    "judge_response",
    "parse_retry_after",
    "read_capped",
    "signature",
    "signed_headers",
    "verify_signature",
]
