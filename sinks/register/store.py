"""The Register: one engine and its sessions, over which the writer, queries, retention and delivery log run."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime

from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from processors.records import Alert, Recipient, Rule, Severity
from sinks.register import audit, deliveries, lookup, queries, retention, writer
from sinks.register.audit import AuditEvent
from sinks.register.deliveries import DeliveryRecord, PendingDelivery
from sinks.register.engine import check_schema, create_register_engine
from sinks.register.lookup import LookupResult, PossibleMatch
from sinks.register.queries import (
    TREND_WEEKS,
    CaseDetails,
    CaseQuery,
    CaseSummary,
    LARegisterView,
    LATrends,
    ReferralRecord,
)
from sinks.register.retention import PurgeReport, RetentionPolicy
from sinks.register.schema import DeliveryOutcome
from sinks.register.writer import BatchResult, RegisterItem


class Register:
    """The CME register over any SQLAlchemy engine (SQLite or PostgreSQL); each public call is one
    transaction. Blocking: async callers run it in a thread (asyncio.to_thread)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def from_url(cls, url: str) -> Register:
        return cls(create_register_engine(url))

    def close(self) -> None:
        self.engine.dispose()

    # writing

    def record(self, batch: Sequence[RegisterItem], webhook_las: Iterable[str] = ()) -> BatchResult:
        return writer.record(self._sessions, batch, webhook_las)

    def record_delivery(
        self,
        alert_id: str,
        channel: str,
        outcome: DeliveryOutcome,
        attempts: int,
        last_error: str | None,
        delivered_at: datetime | None,
    ) -> None:
        deliveries.record_delivery(self._sessions, alert_id, channel, outcome, attempts, last_error, delivered_at)

    # reading

    def alert(self, alert_id: str) -> Alert | None:
        return queries.alert(self._sessions, alert_id)

    def alerts(self, case_id: str | None = None, la_code: str | None = None) -> list[Alert]:
        return queries.alerts(self._sessions, case_id, la_code)

    def case(self, case_id: str) -> CaseSummary | None:
        return queries.case(self._sessions, case_id)

    def case_details(self, case_id: str) -> CaseDetails | None:
        return queries.case_details(self._sessions, case_id)

    def cases(self, query: CaseQuery | None = None) -> list[CaseSummary]:
        return queries.cases(self._sessions, query)

    def la_register_view(
        self, la_code: str, severity: Severity | None, rule: Rule | None, alert_limit: int,
        recipient: Recipient | None = None,
    ) -> LARegisterView:
        return queries.la_register_view(self._sessions, la_code, severity, rule, alert_limit, recipient)

    def la_trends(
        self, la_code: str, today: date, recipient: Recipient | None = None, weeks: int = TREND_WEEKS
    ) -> LATrends:
        return queries.la_trends(self._sessions, la_code, today, recipient, weeks)

    def deliveries(self, alert_ids: Iterable[str] | None = None) -> list[DeliveryRecord]:
        return deliveries.deliveries(self._sessions, alert_ids)

    def pending_deliveries(self, la_code: str, channel: str, limit: int) -> list[PendingDelivery]:
        return deliveries.pending_deliveries(self._sessions, la_code, channel, limit)

    def counts(self) -> dict[str, int]:
        return queries.counts(self._sessions)

    def casework_counts(self) -> dict[str, int]:
        return queries.casework_counts(self._sessions)

    def referral(self, referral_id: str) -> ReferralRecord | None:
        return queries.referral(self._sessions, referral_id)

    def recent_referrals(self, la_code: str, limit: int = 20) -> list[ReferralRecord]:
        return queries.recent_referrals(self._sessions, la_code, limit)

    # regional enquiries and possible matches

    def lookup(self, asking_la: str, upn: str | None = None, surname: str | None = None,
               date_of_birth: date | None = None) -> list[LookupResult]:
        return lookup.lookup(self._sessions, asking_la, upn, surname, date_of_birth)

    def possible_matches(self, case_id: str, la_code: str) -> list[PossibleMatch]:
        return lookup.possible_matches(self._sessions, case_id, la_code)

    # audit

    def record_audit(self, events: Sequence[AuditEvent]) -> None:
        audit.record_events(self._sessions, events)

    def audit_events(self, la_code: str | None = None, since: datetime | None = None) -> list[AuditEvent]:
        return audit.audit_events(self._sessions, la_code, since)

    # retention

    def purge(self, today: date, policy: RetentionPolicy, dry_run: bool = True) -> PurgeReport:
        return retention.purge(self._sessions, today, policy, dry_run)


def open_register(url: str) -> Register:
    """The register at `url`, after checking its schema is this release's; never creates or changes it."""
    engine = create_register_engine(url)
    try:
        check_schema(engine, url)
    except Exception:
        engine.dispose()
        raise
    return Register(engine)
