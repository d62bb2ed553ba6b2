"""Webhook pieces without a network: Standard Webhooks signing, answers judged, Retry-After, backoff, capped reads."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from standardwebhooks import Webhook

from config.settings import Settings
from sinks.webhook import (
    MAX_RESPONSE_BYTES,
    RetryPolicy,
    judge_response,
    parse_retry_after,
    read_capped,
    signature,
    signed_headers,
    verify_signature,
)

KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(bytes(range(1, 33))).decode()
ALERT_ID = "bbbbbbbb-0000-5000-8000-000000000001"
BODY = b'{"alert_id":"a-1","reason":"left with no destination"}'
SIGNED_AT = 1_741_078_800  # 2025-03-04 09:00:00 UTC


def test_the_signature_is_hmac_sha256_of_id_dot_timestamp_dot_body_in_base64() -> None:
    digest = hmac.new(KEY, f"{ALERT_ID}.1741078800.".encode() + BODY, hashlib.sha256).digest()

    assert signature(SECRET, ALERT_ID, SIGNED_AT, BODY) == "v1," + base64.b64encode(digest).decode()


def test_the_headers_are_the_standard_webhooks_ones_and_the_library_verifies_them() -> None:
    now = int(time.time())
    headers = signed_headers(SECRET, ALERT_ID, BODY, now)

    assert headers["webhook-id"] == ALERT_ID
    assert headers["webhook-timestamp"] == str(now)
    assert headers["webhook-signature"].startswith("v1,")
    assert not any(name.lower().startswith("x-rollwatch") for name in headers)
    assert Webhook(SECRET).verify(BODY, headers) == {"alert_id": "a-1", "reason": "left with no destination"}
    assert verify_signature(SECRET, headers, BODY)


def genuine(at: int | None = None) -> dict[str, str]:
    return signed_headers(SECRET, ALERT_ID, BODY, int(time.time()) if at is None else at)


def changed(headers: dict[str, str], name: str, value: str | None) -> dict[str, str]:
    headers = dict(headers)
    if value is None:
        del headers[name]
    else:
        headers[name] = value
    return headers


# Each case builds its headers when it runs: timestamps taken at collection would age while the rest of a long
# test session runs, and a request "from the future" would come into the tolerance window.
@pytest.mark.parametrize(
    ("secret", "make_headers", "body"),
    [
        (OTHER_SECRET, lambda: genuine(), BODY),
        (SECRET, lambda: genuine(), BODY + b" "),
        (SECRET, lambda: changed(genuine(), "webhook-id", "bbbbbbbb-0000-5000-8000-000000000002"), BODY),
        (SECRET, lambda: changed(genuine(), "webhook-timestamp", str(int(time.time()) + 1)), BODY),
        (SECRET, lambda: genuine(int(time.time()) - 400), BODY),
        (SECRET, lambda: genuine(int(time.time()) + 400), BODY),
        (SECRET, lambda: changed(genuine(), "webhook-timestamp", None), BODY),
        (SECRET, lambda: changed(genuine(), "webhook-signature", None), BODY),
        (SECRET, lambda: changed(genuine(), "webhook-id", None), BODY),
        (SECRET, lambda: changed(genuine(), "webhook-timestamp", "soon"), BODY),
    ],
    ids=["wrong secret", "body changed", "id changed", "timestamp changed", "too old", "from the future",
         "no timestamp", "no signature", "no id", "garbled timestamp"],
)
def test_anything_else_fails_verification(
    secret: str, make_headers: Callable[[], dict[str, str]], body: bytes
) -> None:
    assert not verify_signature(secret, make_headers(), body)


def endpoint(url: str, secret: str = SECRET) -> dict[str, object]:
    return {"330": {"url": url, "secret": secret}}


@pytest.mark.parametrize(
    "url",
    ["https://cms.example/hook", "http://127.0.0.1:8080/hook", "http://127.9.9.9/x", "http://[::1]:9000/hook",
     "http://localhost:8000/hook", "http://LOCALHOST/hook"],
)
def test_https_anywhere_and_http_only_to_loopback(url: str) -> None:
    assert Settings(webhooks=endpoint(url)).webhooks["330"].url == url  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    ["http://cms.example/hook", "http://10.0.0.5/hook", "http://128.0.0.1/hook", "http://localhost.evil.example/",
     "http://[::2]/hook", "ftp://cms.example/hook", "https:///nohost"],
)
def test_any_other_url_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="https://"):
        Settings(webhooks=endpoint(url))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "secret",
    ["s3cret-for-LA-331", base64.b64encode(KEY).decode(), "whsec_" + base64.b64encode(bytes(16)).decode(),
     "whsec_" + base64.b64encode(bytes(65)).decode(), "whsec_not base64!"],
    ids=["plain text", "no prefix", "too short", "too long", "not base64"],
)
def test_a_secret_must_be_a_standard_webhooks_one(secret: str) -> None:
    with pytest.raises(ValidationError, match="whsec_") as raised:
        Settings(webhooks=endpoint("https://cms.example/hook", secret))  # type: ignore[arg-type]
    assert secret not in str(raised.value.errors(include_input=False))


def test_a_configured_secret_signs_what_the_library_verifies() -> None:
    settings = Settings(webhooks=endpoint("https://cms.example/hook", f" {SECRET}\n"))  # type: ignore[arg-type]
    secret = settings.webhooks["330"].secret.get_secret_value()
    now = int(time.time())

    assert secret == SECRET
    Webhook(secret).verify(BODY, signed_headers(secret, ALERT_ID, BODY, now))


class EndlessBody:
    """A response body that never ends, counting what is taken from it."""

    def __init__(self) -> None:
        self.taken = 0

    async def read(self, n: int = -1) -> bytes:
        assert 0 < n <= MAX_RESPONSE_BYTES, "a read must be bounded"
        self.taken += n
        return b"x" * n


class ShortBody:
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read(self, n: int = -1) -> bytes:
        chunk, self.data = self.data[:n], self.data[n:]
        return chunk


def test_a_response_body_is_read_only_up_to_the_cap() -> None:
    body = EndlessBody()

    assert asyncio.run(read_capped(body)) == MAX_RESPONSE_BYTES
    assert body.taken == MAX_RESPONSE_BYTES
    assert asyncio.run(read_capped(ShortBody(b"stored"))) == len(b"stored")


@pytest.mark.parametrize(
    ("status", "delivered", "retryable"),
    [
        (200, True, False), (202, True, False), (204, True, False),
        (500, False, True), (502, False, True), (503, False, True), (504, False, True),
        (429, False, True), (408, False, True),
        (400, False, False), (401, False, False), (403, False, False), (404, False, False), (410, False, False),
        (422, False, False), (301, False, False),
    ],
)
def test_answers_are_judged(status: int, delivered: bool, retryable: bool) -> None:
    result = judge_response(status, None)

    assert (result.delivered, result.retryable) == (delivered, retryable)
    assert (result.error is None) == delivered
    if not delivered:
        assert f"HTTP {status}" in (result.error or "")


def test_a_429_carries_its_retry_after() -> None:
    assert judge_response(429, "7").retry_after == 7.0
    assert judge_response(400, "7").retryable is False


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    now = datetime(2025, 3, 4, 9, 0, 0, tzinfo=UTC)

    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after("Tue, 04 Mar 2025 09:00:30 GMT", now) == 30.0
    assert parse_retry_after("Tue, 04 Mar 2025 08:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_backoff_doubles_within_its_jitter_band_up_to_the_cap() -> None:
    policy = RetryPolicy(backoff_initial=1.0, backoff_max=10.0)
    rng = random.Random(7)

    for failed, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (12, 10.0)]:
        waits = [policy.backoff(failed, rng) for _ in range(200)]
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits)
        assert max(waits) - min(waits) > ceiling / 4  # jittered, not fixed


def test_retry_after_wins_over_a_shorter_backoff_but_is_capped() -> None:
    policy = RetryPolicy(backoff_initial=1.0, backoff_max=10.0, retry_after_max=60.0)
    rng = random.Random(1)

    assert policy.wait_before_retry(1, 30.0, rng) == 30.0
    assert policy.wait_before_retry(1, 3600.0, rng) == 60.0
    assert 0.5 <= policy.wait_before_retry(1, 0.0, rng) <= 1.0
