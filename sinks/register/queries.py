"""Read views of the register: cases listed and shown, alerts, and one LA's dashboard data, as plain dataclasses."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, exists, func, or_, select
from sqlalchemy import case as sql_case
from sqlalchemy.orm import Session, sessionmaker

from processors.records import Alert, AlertChild, Recipient, Rule, Severity
from sinks.register.deliveries import DeliveryRecord, deliveries
from sinks.register.schema import (
    CASEWORK_TABLES,
    TABLES,
    AlertRow,
    CaseHolderRow,
    CaseLinkRow,
    CaseRow,
    CaseStatus,
    ChildRow,
    EnquiryRow,
    ReferralRow,
    alert_from_row,
)

#: Most urgent first, as in the Severity enum: rank 0 is IMMEDIATE.
SEVERITY_RANK = {severity: rank for rank, severity in enumerate(Severity)}
#: Cases are looked up in chunks of this many ids, to stay within SQLite's parameter limit.
ID_CHUNK = 500
#: ISO weeks the dashboard's trends cover, the current one included.
TREND_WEEKS = 12


@dataclass(frozen=True, slots=True)
class CaseSummary:
    """A case as an officer sees it in a list: who, which LAs, since when, how urgent, where it stands."""

    case_id: str
    upn: str | None
    child: AlertChild | None
    holders: tuple[str, ...]
    opened_on: date | None
    opening_rule: Rule | None
    status: CaseStatus
    severity: Severity | None
    alert_count: int
    closed_on: date | None = None
    closing_reason: str | None = None
    closed_by: str | None = None
    referral_id: str | None = None
    close_reason: str | None = None
    assignee: str | None = None
    assigned_at: datetime | None = None
    assigned_by: str | None = None


@dataclass(frozen=True, slots=True)
class EnquiryRecord:
    """One reasonable enquiry recorded on a case."""

    action_id: str
    kind: str
    outcome: str
    note: str
    by: str
    at: datetime
    la_code: str | None


@dataclass(frozen=True, slots=True)
class LinkRecord:
    """A referral case linked by an officer to a child's UPN."""

    action_id: str
    upn: str
    by: str
    at: datetime
    la_code: str | None


@dataclass(frozen=True, slots=True)
class ReferralRecord:
    """A referral as received. Personal data: only the referral LA's CME officer sees it."""

    referral_id: str
    la_code: str
    received_on: date
    upn: str | None
    forename: str
    surname: str
    date_of_birth: date | None
    postcode: str | None
    concern: str
    details: str | None
    agency: str
    referrer_name: str | None
    referrer_contact: str | None


@dataclass(frozen=True, slots=True)
class CaseQuery:
    """Filters of `rollwatch cases list`; None means any. since/until bound the opening date, both included."""

    la_code: str | None = None
    status: CaseStatus | None = None
    rule: Rule | None = None
    severity: Severity | None = None
    since: date | None = None
    until: date | None = None


@dataclass(frozen=True, slots=True)
class CaseDetails:
    """One case with its alerts (oldest first) and each alert's delivery, keyed by alert id."""

    summary: CaseSummary
    alerts: list[Alert]
    deliveries: dict[str, DeliveryRecord]
    enquiries: list[EnquiryRecord] = field(default_factory=list)
    links: list[LinkRecord] = field(default_factory=list)
    referral: ReferralRecord | None = None


@dataclass(frozen=True, slots=True)
class OpenCase:
    """An open case held by an LA, with the school and reason of the LA's first alert about it."""

    summary: CaseSummary
    school_urn: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class LARegisterView:
    """What one LA's dashboard shows: its open cases, its newest alerts and how many alerts match in all."""

    cases: list[OpenCase]
    alerts: list[Alert]
    alerts_total: int


@dataclass(frozen=True, slots=True)
class LATrends:
    """One LA's alerts and cases as one role may see them, per ISO week (Mondays, oldest first; the last is
    the current week, up to `today`): alerts raised each week by rule (only rules with any, in Rule order),
    and the cases open at each week's end. `open_cases` is None for a role that works no cases."""

    today: date
    weeks: tuple[date, ...]
    alerts: dict[Rule, tuple[int, ...]]
    open_cases: tuple[int, ...] | None

    @property
    def week_ends(self) -> tuple[date, ...]:
        """Each week's Sunday; today for the current week, whose end has not come yet."""
        return tuple(min(monday + timedelta(days=6), self.today) for monday in self.weeks)

    @property
    def alerts_total(self) -> int:
        return sum(sum(counts) for counts in self.alerts.values())


def _severity_rank_expression() -> Any:
    return sql_case(
        *[(AlertRow.severity == severity.value, rank) for severity, rank in SEVERITY_RANK.items()],
        else_=len(SEVERITY_RANK),
    )


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def alert(sessions: sessionmaker[Session], alert_id: str) -> Alert | None:
    with sessions() as session:
        row = session.get(AlertRow, alert_id)
        return None if row is None else alert_from_row(row)


def alerts(sessions: sessionmaker[Session], case_id: str | None = None, la_code: str | None = None) -> list[Alert]:
    """Alerts, oldest first; of one case or one recipient LA when asked."""
    statement = select(AlertRow).order_by(AlertRow.raised_on, AlertRow.alert_id)
    if case_id is not None:
        statement = statement.where(AlertRow.case_id == case_id)
    if la_code is not None:
        statement = statement.where(AlertRow.la_code == la_code)
    with sessions() as session:
        return [alert_from_row(row) for row in session.scalars(statement)]


def case(sessions: sessionmaker[Session], case_id: str) -> CaseSummary | None:
    found = _summaries(sessions, select(CaseRow).where(CaseRow.case_id == case_id))
    return found[0] if found else None


def case_details(sessions: sessionmaker[Session], case_id: str) -> CaseDetails | None:
    """The case, its alerts and their deliveries; None if the register has no such case."""
    summary = case(sessions, case_id)
    if summary is None:
        return None
    found = alerts(sessions, case_id=case_id)
    records = deliveries(sessions, (item.alert_id for item in found))
    with sessions() as session:
        enquiries = [
            EnquiryRecord(row.action_id, row.kind, row.outcome, row.note, row.by, _aware(row.at), row.la_code)
            for row in session.scalars(
                select(EnquiryRow).where(EnquiryRow.case_id == case_id).order_by(EnquiryRow.at, EnquiryRow.id)
            )
        ]
        links = [
            LinkRecord(row.action_id, row.upn, row.by, _aware(row.at), row.la_code)
            for row in session.scalars(
                select(CaseLinkRow).where(CaseLinkRow.case_id == case_id).order_by(CaseLinkRow.at, CaseLinkRow.id)
            )
        ]
    found_referral = None if summary.referral_id is None else referral(sessions, summary.referral_id)
    return CaseDetails(
        summary, found, {record.alert_id: record for record in records}, enquiries, links, found_referral
    )


def referral(sessions: sessionmaker[Session], referral_id: str) -> ReferralRecord | None:
    with sessions() as session:
        row = session.get(ReferralRow, referral_id)
        return None if row is None else referral_record(row)


def recent_referrals(sessions: sessionmaker[Session], la_code: str, limit: int) -> list[ReferralRecord]:
    """The LA's newest referrals, by the day received."""
    with sessions() as session:
        rows = session.scalars(
            select(ReferralRow).where(ReferralRow.la_code == la_code)
            .order_by(ReferralRow.received_on.desc(), ReferralRow.referral_id).limit(limit)
        )
        return [referral_record(row) for row in rows]


def referral_record(row: ReferralRow) -> ReferralRecord:
    return ReferralRecord(
        row.referral_id, row.la_code, row.received_on, row.upn, row.forename, row.surname, row.date_of_birth,
        row.postcode, row.concern, row.details, row.agency, row.referrer_name, row.referrer_contact,
    )


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; every action time is written in UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def cases(sessions: sessionmaker[Session], query: CaseQuery | None = None) -> list[CaseSummary]:
    """Cases matching every filter given, most recently opened first."""
    query = query or CaseQuery()
    statement = select(CaseRow)
    if query.status is not None:
        statement = statement.where(CaseRow.status == query.status.value)
    if query.rule is not None:
        statement = statement.where(CaseRow.opening_rule == query.rule.value)
    if query.since is not None:
        statement = statement.where(CaseRow.opened_on >= query.since)
    if query.until is not None:
        statement = statement.where(CaseRow.opened_on <= query.until)
    if query.la_code is not None:
        statement = statement.where(_held_by(query.la_code))
    if query.severity is not None:
        statement = statement.where(_most_urgent_is(query.severity))
    return _summaries(sessions, statement)


def _held_by(la_code: str) -> ColumnElement[bool]:
    return exists().where(CaseHolderRow.case_id == CaseRow.case_id, CaseHolderRow.la_code == la_code)


def _most_urgent_is(severity: Severity) -> ColumnElement[bool]:
    """The case's most urgent alert (of any LA) has this severity."""
    most_urgent = (
        select(func.min(_severity_rank_expression())).where(AlertRow.case_id == CaseRow.case_id).scalar_subquery()
    )
    return most_urgent == SEVERITY_RANK[severity]


def _alert_scope(la_code: str, recipient: Recipient | None) -> list[ColumnElement[bool]]:
    """The alerts an LA's dashboard role sees: the LA's own, and of those only its recipient's."""
    conditions = [AlertRow.la_code == la_code]
    if recipient is not None:
        conditions.append(AlertRow.recipient == recipient.value)
    return conditions


def _case_scope(la_code: str, recipient: Recipient | None) -> ColumnElement[bool] | None:
    """The cases an LA's dashboard role works, as a condition on cases; None when it works none. A CME officer
    (or no role) the cases the LA holds, social care the cases of children it was alerted about (protected
    children), whichever LAs hold them, the EHE service none."""
    if recipient is Recipient.EHE_SERVICE:
        return None
    if recipient is Recipient.SOCIAL_CARE:
        return exists().where(
            AlertRow.case_id == CaseRow.case_id,
            AlertRow.la_code == la_code,
            AlertRow.recipient == Recipient.SOCIAL_CARE.value,
        )
    return _held_by(la_code)


def _summaries(sessions: sessionmaker[Session], statement: Any) -> list[CaseSummary]:
    statement = statement.order_by(CaseRow.opened_on.desc().nulls_last(), CaseRow.case_id)
    with sessions() as session:
        rows: list[CaseRow] = list(session.scalars(statement))
        ids = [row.case_id for row in rows]
        if not ids:
            return []
        holders: dict[str, list[str]] = {}
        for case_id, la_code in session.execute(
            select(CaseHolderRow.case_id, CaseHolderRow.la_code)
            .where(CaseHolderRow.case_id.in_(ids))
            .order_by(CaseHolderRow.la_code)
        ):
            holders.setdefault(case_id, []).append(la_code)
        stats = {
            case_id: (rank, count)
            for case_id, rank, count in session.execute(
                select(AlertRow.case_id, func.min(_severity_rank_expression()), func.count())
                .where(AlertRow.case_id.in_(ids))
                .group_by(AlertRow.case_id)
            )
        }
        upns = {row.upn for row in rows if row.upn is not None}
        children = {
            child.upn: AlertChild(child.forename, child.surname, child.date_of_birth)
            for child in session.scalars(select(ChildRow).where(ChildRow.upn.in_(upns)))
            # A pupil known only from registers has no name yet.
            if child.forename is not None and child.surname is not None and child.date_of_birth is not None
        }
    ranks = list(Severity)
    summaries = []
    for row in rows:
        rank, count = stats.get(row.case_id, (None, 0))
        summaries.append(CaseSummary(
            case_id=row.case_id,
            upn=row.upn,
            child=None if row.upn is None else children.get(row.upn),
            holders=tuple(holders.get(row.case_id, ())),
            opened_on=row.opened_on,
            opening_rule=None if row.opening_rule is None else Rule(row.opening_rule),
            status=CaseStatus(row.status),
            severity=None if rank is None or rank >= len(ranks) else ranks[rank],
            alert_count=count,
            closed_on=row.closed_on,
            closing_reason=row.closing_reason,
            closed_by=row.closed_by,
            referral_id=row.referral_id,
            close_reason=row.close_reason,
            assignee=row.assignee,
            assigned_at=None if row.assigned_at is None else _aware(row.assigned_at),
            assigned_by=row.assigned_by,
        ))
    return summaries


def la_register_view(
    sessions: sessionmaker[Session],
    la_code: str,
    severity: Severity | None,
    rule: Rule | None,
    alert_limit: int,
    recipient: Recipient | None = None,
) -> LARegisterView:
    """The LA's open cases (most recently opened first) and its newest alerts (at most `alert_limit`), both
    filtered by severity and rule when given. With a recipient, only that recipient's alerts, and only the
    cases that recipient works (see _case_scope)."""
    scope = _case_scope(la_code, recipient)
    summaries = [] if scope is None else _open_cases_in(sessions, scope, rule, severity)
    conditions = _alert_scope(la_code, recipient)
    if severity is not None:
        conditions.append(AlertRow.severity == severity.value)
    if rule is not None:
        conditions.append(AlertRow.rule == rule.value)
    with sessions() as session:
        total = session.scalar(select(func.count()).select_from(AlertRow).where(*conditions)) or 0
        rows = session.scalars(
            select(AlertRow)
            .where(*conditions)
            .order_by(AlertRow.raised_on.desc(), AlertRow.alert_id.desc())
            .limit(alert_limit)
        )
        newest = [alert_from_row(row) for row in rows]
        first_alerts = _first_alerts_of_cases(
            session, la_code, [summary.case_id for summary in summaries], recipient
        )
    open_cases = [
        OpenCase(summary, *first_alerts.get(summary.case_id, (None, None))) for summary in summaries
    ]
    return LARegisterView(open_cases, newest, total)


def _open_cases_in(
    sessions: sessionmaker[Session], scope: ColumnElement[bool], rule: Rule | None, severity: Severity | None
) -> list[CaseSummary]:
    statement = select(CaseRow).where(CaseRow.status == CaseStatus.OPEN.value, scope)
    if rule is not None:
        statement = statement.where(CaseRow.opening_rule == rule.value)
    if severity is not None:
        statement = statement.where(_most_urgent_is(severity))
    return _summaries(sessions, statement)


def _first_alerts_of_cases(
    session: Session, la_code: str, case_ids: Sequence[str], recipient: Recipient | None = None
) -> dict[str, tuple[str | None, str]]:
    """School URN and reason of the LA's earliest alert of each case (to `recipient`, when given)."""
    found: dict[str, tuple[str | None, str]] = {}
    conditions = _alert_scope(la_code, recipient)
    for chunk in _chunks(case_ids, ID_CHUNK):
        rows = session.execute(
            select(AlertRow.case_id, AlertRow.school_urn, AlertRow.reason)
            .where(*conditions, AlertRow.case_id.in_(chunk))
            .order_by(AlertRow.raised_on, AlertRow.alert_id)
        )
        for case_id, school_urn, reason in rows:
            if case_id is not None and case_id not in found:
                found[case_id] = (school_urn, reason)
    return found


def la_trends(
    sessions: sessionmaker[Session],
    la_code: str,
    today: date,
    recipient: Recipient | None = None,
    weeks: int = TREND_WEEKS,
) -> LATrends:
    """The LA's alerts per ISO week by rule (by `raised_on`) and its open cases at each week's end, over the
    `weeks` weeks up to `today`, scoped to what `recipient` sees exactly as la_register_view scopes its lists.
    The page's severity and rule filters do not apply: trends show the role's whole workload."""
    if weeks < 1:
        raise ValueError(f"weeks must be at least 1, not {weeks}")
    first = today - timedelta(days=today.weekday(), weeks=weeks - 1)
    mondays = tuple(first + timedelta(weeks=index) for index in range(weeks))
    per_rule: dict[Rule, list[int]] = {}
    case_scope = _case_scope(la_code, recipient)
    with sessions() as session:
        # Grouped by day, bucketed into weeks here: SQLite and PostgreSQL name ISO weeks differently.
        for raised_on, rule, count in session.execute(
            select(AlertRow.raised_on, AlertRow.rule, func.count())
            .where(*_alert_scope(la_code, recipient), AlertRow.raised_on >= first, AlertRow.raised_on <= today)
            .group_by(AlertRow.raised_on, AlertRow.rule)
        ):
            per_rule.setdefault(Rule(rule), [0] * weeks)[(raised_on - first).days // 7] += count
        spans: list[tuple[date, date | None]] = []
        if case_scope is not None:
            rows = session.execute(
                select(CaseRow.opened_on, CaseRow.closed_on).where(
                    case_scope,
                    CaseRow.opened_on <= today,
                    or_(CaseRow.status == CaseStatus.OPEN.value, CaseRow.closed_on >= first),
                )
            )
            # A case without an opening date has had no opening alert yet: it belongs to no week.
            spans = [(opened_on, closed_on) for opened_on, closed_on in rows if opened_on is not None]
    trends = LATrends(today, mondays, {rule: tuple(per_rule[rule]) for rule in Rule if rule in per_rule}, None)
    if case_scope is None:
        return trends
    open_at_ends = tuple(
        sum(1 for opened_on, closed_on in spans if opened_on <= end and (closed_on is None or closed_on > end))
        for end in trends.week_ends
    )
    return LATrends(trends.today, trends.weeks, trends.alerts, open_at_ends)


def counts(sessions: sessionmaker[Session]) -> dict[str, int]:
    """Rows per table, for summaries and tests."""
    with sessions() as session:
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in TABLES
        }


def casework_counts(sessions: sessionmaker[Session]) -> dict[str, int]:
    """Rows of the referral and case-work tables."""
    with sessions() as session:
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in CASEWORK_TABLES
        }
