"""Feeding the register from consumed messages, retention arithmetic and the register's settings, without I/O."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from config.settings import Settings
from processors.records import Alert, AlertChild, CaseAction, CaseActionType, Recipient, Rule, Severity
from schemas.codec import AvroCodec
from sinks.register import (
    DeliveryOutcome,
    MemoryDeliveryLog,
    MemoryRegisterWriter,
    RegisterFeed,
    RetentionPolicy,
    add_years,
    alert_topic_regex,
)

CODEC = AvroCodec()
ALERT = Alert(
    alert_id="aaaaaaaa-0000-5000-8000-000000000001",
    rule=Rule.MISSING_NO_DESTINATION,
    recipient=Recipient.CME_OFFICER,
    la_code="331",
    severity=Severity.HIGH,
    upn="W330215224052",
    child=AlertChild("Zoë-Marie", "O'Connor", date(2014, 8, 17)),
    school_urn="140201",
    raised_on=date(2025, 3, 4),
    reason="Removed with no known destination.",
    trigger_event_ids=("00000000-0000-4000-8000-000000000001",),
    case_id="11111111-1111-5111-8111-111111111111",
)
ACTION = CaseAction(
    action_id="0b6f7a1c-2d3e-4f50-8a9b-c0d1e2f30405",
    upn="W330215224052",
    case_id="11111111-1111-5111-8111-111111111111",
    action=CaseActionType.CLOSE,
    reason="On roll in Wales",
    by="A. Officer",
    at=datetime(2025, 3, 12, 10, 0, tzinfo=UTC),
)
PREFIX = "test."


def make_feed() -> tuple[RegisterFeed, MemoryRegisterWriter]:
    writer = MemoryRegisterWriter()
    return RegisterFeed(writer, CODEC, PREFIX, PREFIX + "case.actions", webhook_las={"331"}), writer


def test_alert_topics_of_every_la_and_recipient_match_and_nothing_else() -> None:
    feed, _ = make_feed()

    assert feed.handles("test.la.331.alerts.cme-officer")
    assert feed.handles("test.la.860.alerts.social-care")
    assert feed.handles("test.case.actions")
    for topic in ("la.331.alerts.cme-officer", "test.la.331.alerts.cme-officer.dlq", "test.la.33.alerts.x",
                  "test.roll.events", "testXla.331.alerts.cme-officer"):
        assert not feed.handles(topic), topic
    assert alert_topic_regex("").match("la.331.alerts.ehe-service")


def test_one_batch_of_messages_is_one_register_write() -> None:
    feed, writer = make_feed()

    feed.feed([
        ("test.la.331.alerts.cme-officer", 0, 10, CODEC.encode(ALERT)),
        ("test.case.actions", 1, 3, CODEC.encode(ACTION)),
        ("test.la.331.alerts.cme-officer", 0, 11, CODEC.encode(ALERT)),
    ])

    assert writer.batches == [[ALERT, ACTION, ALERT]]
    assert (feed.stats.messages, feed.stats.actions, feed.stats.skipped) == (3, 1, {})


def test_undecodable_messages_and_invalid_actions_are_skipped_and_counted() -> None:
    feed, writer = make_feed()
    blank = CaseAction(ACTION.action_id, ACTION.upn, ACTION.case_id, ACTION.action, "", ACTION.by, ACTION.at)

    feed.feed([
        ("test.la.331.alerts.cme-officer", 0, 1, b"not avro"),
        ("test.la.331.alerts.cme-officer", 0, 2, CODEC.encode(ACTION)),  # a case action on an alert topic
        ("test.case.actions", 0, 1, CODEC.encode(blank)),
        ("test.la.331.alerts.cme-officer", 0, 3, CODEC.encode(ALERT)),
    ])

    assert writer.batches == [[ALERT]]
    assert feed.stats.skipped == {"BAD_MARKER": 1, "WRONG_RECORD_TYPE": 1, "TEXT_EMPTY": 1}


def test_a_batch_with_nothing_to_record_writes_nothing() -> None:
    feed, writer = make_feed()

    feed.feed([("test.la.331.alerts.cme-officer", 0, 1, b"\xc3\x01garbage")])

    assert writer.batches == []


@pytest.mark.parametrize(
    ("closed", "years", "kept_until"),
    [(date(2019, 3, 20), 6, date(2025, 3, 20)), (date(2020, 2, 29), 6, date(2026, 2, 28))],
)
def test_years_are_added_by_calendar(closed: date, years: int, kept_until: date) -> None:
    assert add_years(closed, years) == kept_until


def test_a_case_held_by_several_las_is_kept_for_the_longest_period() -> None:
    policy = RetentionPolicy(default_years=6, years_by_la={"330": 10, "331": 3})

    assert policy.years_for(["331"]) == 3
    assert policy.years_for(["331", "332"]) == 6
    assert policy.years_for(["330", "331"]) == 10
    assert policy.years_for([]) == 6


def test_memory_delivery_log_keeps_pending_until_an_outcome() -> None:
    log = MemoryDeliveryLog([ALERT])

    log.record_delivery(ALERT.alert_id, "webhook", DeliveryOutcome.PENDING, 2, "HTTP 503", None)
    assert log.pending_deliveries("331", "webhook", 5)[0].attempts == 2
    log.record_delivery(ALERT.alert_id, "webhook", DeliveryOutcome.DELIVERED, 3, None, datetime.now(tz=UTC))
    assert log.pending_deliveries("331", "webhook", 5) == []


SECRET = "whsec_" + "A" * 43


def test_register_and_webhook_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLWATCH_WEBHOOKS", f'{{"331": {{"url": "https://cms.example/hook", "secret": "{SECRET}"}}}}')
    monkeypatch.setenv("ROLLWATCH_RETENTION_YEARS_BY_LA", '{"330": 7}')

    settings = Settings()

    assert settings.webhooks["331"].url == "https://cms.example/hook"
    assert settings.webhooks["331"].secret.get_secret_value() == SECRET
    assert SECRET not in repr(settings.webhooks["331"].secret)
    assert settings.retention_years_by_la == {"330": 7}
    assert (settings.retention_years, settings.webhook_max_attempts) == (6, 6)


def test_a_webhook_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="https://"):
        Settings(webhooks={"331": {"url": "ftp://cms.example", "secret": SECRET}})  # type: ignore[dict-item]


def test_the_rules_and_the_register_share_one_definition_of_a_case() -> None:
    from processors import cases, rules
    from sinks.register import writer

    assert rules.CASE_RULES is cases.CASE_OPENING_RULES
    assert writer.opens_case is cases.opens_case and writer.holds_case is cases.holds_case
    assert cases.holds_case(Rule.TRANSFER_NOT_STARTED, Recipient.CME_OFFICER)
    assert cases.holds_case(Rule.CHILD_LOCATED, Recipient.CME_OFFICER)
    assert not cases.holds_case(Rule.MISSING_NO_DESTINATION, Recipient.SOCIAL_CARE)
    assert not cases.holds_case(Rule.MOVED_OUT_OF_AREA, Recipient.CME_OFFICER)
    assert cases.closes_case(Rule.CHILD_LOCATED) and not cases.closes_case(Rule.EHE_NOTIFIED)
    assert cases.action_closes_case(ACTION)


def test_closing_a_case_is_checked_before_anything_is_published() -> None:
    from sinks.register.actions import CloseRefused, closing_action
    from sinks.register.queries import CaseSummary
    from sinks.register.schema import CaseStatus

    summary = CaseSummary(
        case_id=ACTION.case_id, upn=ACTION.upn, child=ALERT.child, holders=("331",), opened_on=date(2025, 3, 4),
        opening_rule=Rule.MISSING_NO_DESTINATION, status=CaseStatus.OPEN, severity=Severity.HIGH, alert_count=1,
    )
    action = closing_action(summary, ACTION.case_id, " On roll in Wales ", "A. Officer", now=lambda: ACTION.at)
    assert (action.case_id, action.upn, action.action, action.reason, action.by, action.at) == (
        ACTION.case_id, ACTION.upn, CaseActionType.CLOSE, "On roll in Wales", "A. Officer", ACTION.at,
    )
    with pytest.raises(CloseRefused, match="no such case"):
        closing_action(None, "nope", "why", "who")
    with pytest.raises(CloseRefused, match="must say something"):
        closing_action(summary, ACTION.case_id, " ", "who")
    closed = CaseSummary(**{**{f: getattr(summary, f) for f in summary.__slots__}, "status": CaseStatus.CLOSED,
                            "closed_by": "rollwatch", "closing_reason": "child located"})
    with pytest.raises(CloseRefused, match=r"already closed by rollwatch \(child located\)"):
        closing_action(closed, ACTION.case_id, "why", "who")
