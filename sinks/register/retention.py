"""Retention: removing closed cases, old alerts and old audit events once their LAs' retention periods have passed."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time

from sqlalchemy import delete, exists, func, select
from sqlalchemy.orm import Session, sessionmaker

from sinks.register.schema import AlertRow, AuditEventRow, CaseHolderRow, CaseRow, CaseStatus, ChildRow, ReferralRow


@dataclass(frozen=True, slots=True)
class PurgeItem:
    case_id: str | None
    upn: str | None
    la_codes: tuple[str, ...]
    ended_on: date
    kept_until: date
    alerts: int


@dataclass
class PurgeReport:
    cases: list[PurgeItem] = field(default_factory=list)
    caseless_alerts: list[PurgeItem] = field(default_factory=list)
    children: int = 0
    audit_events: int = 0
    referrals: int = 0

    @property
    def alert_count(self) -> int:
        return sum(item.alerts for item in self.cases) + sum(item.alerts for item in self.caseless_alerts)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Years a closed case, or an alert outside any case, stays in the register, per LA."""

    default_years: int = 6
    years_by_la: Mapping[str, int] = field(default_factory=dict)

    def years_for(self, la_codes: Iterable[str]) -> int:
        """A case held by several LAs stays until the longest of their periods has passed."""
        return max((self.years_by_la.get(la, self.default_years) for la in la_codes), default=self.default_years)


def add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def purge(sessions: sessionmaker[Session], today: date, policy: RetentionPolicy, dry_run: bool = True) -> PurgeReport:
    """Removes closed cases (with their alerts and deliveries) and alerts outside any case once their LA's
    retention period has passed, then children nothing refers to any more. Open cases are never purged.
    With dry_run, reports what would go and changes nothing."""
    report = PurgeReport()
    with sessions.begin() as session:
        holders: dict[str, list[str]] = {}
        for case_id, la_code in session.execute(
            select(CaseHolderRow.case_id, CaseHolderRow.la_code)
            .join(CaseRow, CaseRow.case_id == CaseHolderRow.case_id)
            .where(CaseRow.status == CaseStatus.CLOSED.value)
        ):
            holders.setdefault(case_id, []).append(la_code)
        alert_counts: dict[str | None, int] = {
            case_id: count
            for case_id, count in session.execute(
                select(AlertRow.case_id, func.count())
                .where(AlertRow.case_id.is_not(None))
                .group_by(AlertRow.case_id)
            )
        }
        for row in session.scalars(
            select(CaseRow)
            .where(CaseRow.status == CaseStatus.CLOSED.value, CaseRow.closed_on.is_not(None))
            .order_by(CaseRow.closed_on, CaseRow.case_id)
        ):
            closed_on = row.closed_on
            if closed_on is None:
                continue
            las = tuple(sorted(holders.get(row.case_id, ())))
            kept_until = add_years(closed_on, policy.years_for(las))
            if today > kept_until:
                alerts = alert_counts.get(row.case_id, 0)
                report.cases.append(PurgeItem(row.case_id, row.upn, las, closed_on, kept_until, alerts))
        caseless_ids: list[str] = []
        for alert_id, upn, la_code, raised_on in session.execute(
            select(AlertRow.alert_id, AlertRow.upn, AlertRow.la_code, AlertRow.raised_on)
            .where(AlertRow.case_id.is_(None))
            .order_by(AlertRow.raised_on, AlertRow.alert_id)
        ):
            kept_until = add_years(raised_on, policy.years_for([la_code]))
            if today > kept_until:
                caseless_ids.append(alert_id)
                report.caseless_alerts.append(PurgeItem(None, upn, (la_code,), raised_on, kept_until, 1))
        case_ids = [item.case_id for item in report.cases if item.case_id is not None]
        for chunk in _chunks(caseless_ids, 500):
            session.execute(delete(AlertRow).where(AlertRow.alert_id.in_(chunk)))
        # Alerts, holders and deliveries of a case go with it (ON DELETE CASCADE).
        for chunk in _chunks(case_ids, 500):
            session.execute(delete(CaseRow).where(CaseRow.case_id.in_(chunk)))
        orphans = delete(ChildRow).where(
            ~exists().where(AlertRow.upn == ChildRow.upn), ~exists().where(CaseRow.upn == ChildRow.upn)
        )
        report.children = session.execute(orphans).rowcount  # type: ignore[attr-defined]
        report.referrals = _purge_referrals(session, today, policy)
        report.audit_events = _purge_audit_events(session, today, policy)
        if dry_run:
            # Deleting inside the transaction and rolling back counts exactly what a real run would.
            session.rollback()
    return report


def _purge_referrals(session: Session, today: date, policy: RetentionPolicy) -> int:
    """Referrals past their LA's retention period (from the day received) that no remaining case refers to:
    a referral's case keeps it as long as the case is kept."""
    stale = [
        referral_id
        for referral_id, la_code, received_on in session.execute(
            select(ReferralRow.referral_id, ReferralRow.la_code, ReferralRow.received_on).where(
                ~exists().where(CaseRow.referral_id == ReferralRow.referral_id)
            )
        )
        if today > add_years(received_on, policy.years_for([la_code]))
    ]
    for chunk in _chunks(stale, 500):
        session.execute(delete(ReferralRow).where(ReferralRow.referral_id.in_(chunk)))
    return len(stale)


def _purge_audit_events(session: Session, today: date, policy: RetentionPolicy) -> int:
    """Audit events older than their LA's retention period; each LA's events go by its own period."""
    removed = 0
    las = list(session.scalars(select(AuditEventRow.la_code).distinct()))
    for la_code in las:
        years = policy.years_for([la_code])
        # Kept through the day `years` after the event, as a closed case is.
        cutoff = datetime.combine(add_years(today, -years), time.min, tzinfo=UTC)
        result = session.execute(
            delete(AuditEventRow).where(AuditEventRow.la_code == la_code, AuditEventRow.at < cutoff)
        )
        removed += result.rowcount  # type: ignore[attr-defined]
    return removed


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
