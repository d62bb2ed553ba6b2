"""Webhook pieces without a network: signing and verifying, answers judged, Retry-After, backoff with jitter."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from sinks.webhook import RetryPolicy, judge_response, parse_retry_after, signature, verify_signature

SECRET = "s3cret-for-LA-331"
BODY = b'{"alert_id":"a-1","reason":"left with no destination"}'
SIGNED_AT = 1_741_078_800  # 2025-03-04 09:00:00 UTC


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), b"1741078800." + BODY, hashlib.sha256).hexdigest()

    assert signature(SECRET, SIGNED_AT, BODY) == f"v1={expected}"


def test_a_fresh_genuine_request_verifies() -> None:
    assert verify_signature(SECRET, str(SIGNED_AT), signature(SECRET, SIGNED_AT, BODY), BODY, now=SIGNED_AT + 299)


@pytest.mark.parametrize(
    ("secret", "timestamp", "signed", "body", "now"),
    [
        ("another secret", str(SIGNED_AT), signature(SECRET, SIGNED_AT, BODY), BODY, SIGNED_AT),
        (SECRET, str(SIGNED_AT), signature(SECRET, SIGNED_AT, BODY), BODY + b" ", SIGNED_AT),
        (SECRET, str(SIGNED_AT + 1), signature(SECRET, SIGNED_AT, BODY), BODY, SIGNED_AT),
        (SECRET, str(SIGNED_AT), signature(SECRET, SIGNED_AT, BODY), BODY, SIGNED_AT + 301),
        (SECRET, str(SIGNED_AT), signature(SECRET, SIGNED_AT, BODY), BODY, SIGNED_AT - 301),
        (SECRET, None, signature(SECRET, SIGNED_AT, BODY), BODY, SIGNED_AT),
        (SECRET, str(SIGNED_AT), None, BODY, SIGNED_AT),
        (SECRET, "-1741078800", signature(SECRET, SIGNED_AT, BODY), BODY, SIGNED_AT),
    ],
    ids=["wrong secret", "body changed", "timestamp changed", "too old", "from the future", "no timestamp",
         "no signature", "garbled timestamp"],
)
def test_anything_else_fails_verification(
    secret: str, timestamp: str | None, signed: str | None, body: bytes, now: float
) -> None:
    assert not verify_signature(secret, timestamp, signed, body, now=now)


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
