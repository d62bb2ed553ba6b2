"""The register's audit trail: who viewed or acted on which child's record, as which LA and role, when, how."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from processors.records import Alert, Recipient
from sinks.register.schema import AuditEventRow, DeliveryOutcome

DASHBOARD = "dashboard"
DASHBOARD_JSON = "dashboard-json"
#: The dashboard's trend charts: counts only, so their row names no case and no child.
DASHBOARD_TRENDS = "dashboard-trends"
CLI_CASES_LIST = "cli cases list"
CLI_CASES_SHOW = "cli cases show"
WEBHOOK = "webhook"
#: Case work and enquiries: each action taken, each regional lookup, each referral taken in.
CLI_CASES_CLOSE = "cli cases close"
CLI_CASES_NOTE = "cli cases note"
CLI_CASES_ASSIGN = "cli cases assign"
CLI_CASES_LINK = "cli cases link"
CLI_LOOKUP = "cli lookup"
DASHBOARD_CASE = "dashboard case"
DASHBOARD_LINK = "dashboard link"
DASHBOARD_CASE_WORK = "dashboard case work"
DASHBOARD_LOOKUP = "dashboard lookup"
DASHBOARD_REFERRAL = "dashboard referral"
PARTNER_REFERRAL = "partner referral"
CHANNELS = (
    DASHBOARD,
    DASHBOARD_JSON,
    DASHBOARD_TRENDS,
    CLI_CASES_LIST,
    CLI_CASES_SHOW,
    WEBHOOK,
    CLI_CASES_CLOSE,
    CLI_CASES_NOTE,
    CLI_CASES_ASSIGN,
    CLI_CASES_LINK,
    CLI_LOOKUP,
    DASHBOARD_CASE,
    DASHBOARD_LINK,
    DASHBOARD_CASE_WORK,
    DASHBOARD_LOOKUP,
    DASHBOARD_REFERRAL,
    PARTNER_REFERRAL,
)
#: The dashboard role whose work each recipient's alerts are; a webhook delivery is audited under it.
ROLE_OF_RECIPIENT = {
    Recipient.CME_OFFICER: "cme-officer",
    Recipient.SOCIAL_CARE: "social-care",
    Recipient.EHE_SERVICE: "ehe-service",
}
#: Principal and role of the command line: the OS user (or --by) with whatever the register lets it read.
CLI_ROLE = "register"


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One child's record (a case, or an alert's UPN) shown to or acted on by one principal; `detail` says what
    was done or how a lookup searched, never with personal data."""

    principal: str
    la_code: str
    role: str
    channel: str
    case_id: str | None
    upn: str | None
    at: datetime
    detail: str | None = None

    def as_json(self) -> dict[str, str | None]:
        return {
            "at": self.at.isoformat(),
            "principal": self.principal,
            "la_code": self.la_code,
            "role": self.role,
            "channel": self.channel,
            "case_id": self.case_id,
            "upn": self.upn,
            "detail": self.detail,
        }


def now_utc() -> datetime:
    return datetime.now(tz=UTC)


def events_for(
    principal: str, la_code: str, role: str, channel: str, shown: Iterable[tuple[str | None, str | None]],
    at: datetime | None = None, detail: str | None = None,
) -> list[AuditEvent]:
    """One event per distinct (case id, UPN) shown, in the order shown."""
    when = at or now_utc()
    seen: set[tuple[str | None, str | None]] = set()
    events = []
    for case_id, upn in shown:
        if (case_id, upn) in seen:
            continue
        seen.add((case_id, upn))
        events.append(AuditEvent(
            principal[:200], la_code, role, channel, case_id, upn, when, None if detail is None else detail[:200]
        ))
    return events


def record_events(sessions: sessionmaker[Session], events: Sequence[AuditEvent]) -> None:
    if not events:
        return
    with sessions.begin() as session:
        session.add_all(
            AuditEventRow(
                at=event.at, principal=event.principal, la_code=event.la_code, role=event.role,
                channel=event.channel, case_id=event.case_id, upn=event.upn, detail=event.detail,
            )
            for event in events
        )


def audit_events(sessions: sessionmaker[Session], la_code: str | None, since: datetime | None) -> list[AuditEvent]:
    """Audit events, oldest first; of one LA and from `since` on when asked."""
    statement = select(AuditEventRow).order_by(AuditEventRow.at, AuditEventRow.id)
    if la_code is not None:
        statement = statement.where(AuditEventRow.la_code == la_code)
    if since is not None:
        statement = statement.where(AuditEventRow.at >= since)
    with sessions() as session:
        return [
            AuditEvent(
                row.principal, row.la_code, row.role, row.channel, row.case_id, row.upn, _aware(row.at), row.detail
            )
            for row in session.scalars(statement)
        ]


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; every audit time is written in UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@runtime_checkable
class AuditLog(Protocol):
    def record_audit(self, events: Sequence[AuditEvent]) -> None: ...


def audit_webhook_delivery(deliveries: object, la_code: str, alert: Alert, outcome: DeliveryOutcome) -> None:
    """One audit row for an alert delivered to the LA's webhook; a delivery log that keeps no audit (the
    in-memory double) is left alone. Blocking: SQL."""
    if outcome is not DeliveryOutcome.DELIVERED or not isinstance(deliveries, AuditLog):
        return
    role = ROLE_OF_RECIPIENT.get(alert.recipient, alert.recipient.value)
    deliveries.record_audit(events_for(f"webhook LA {la_code}", la_code, role, WEBHOOK, [(alert.case_id, alert.upn)]))
