"""The LA's CME register in SQL: children, cases, alerts and deliveries, fed idempotently from the alert stream."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    case,
    create_engine,
    delete,
    event,
    exists,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool

from processors.records import Alert, AlertChild, CaseAction, CaseActionType, Recipient, Rule, Severity
from processors.validation import validate
from schemas.codec import AvroCodec
from schemas.errors import CodecError

log = logging.getLogger(__name__)
LONDON = ZoneInfo("Europe/London")

#: Rules whose alerts open a case or add holders to it (design.md, "Cases").
CASE_OPENING_RULES = frozenset({
    Rule.MISSING_NO_DESTINATION, Rule.TRANSITION_NOT_COMPLETED, Rule.TRANSFER_NOT_STARTED,
    Rule.EHE_NOT_CONFIRMED, Rule.EXCLUDED_NO_PROVISION,
})
CHILD_LOCATED_REASON = "child located"
#: `closed_by` of a case the engine closed itself (CHILD_LOCATED), as opposed to an officer.
ENGINE_CLOSER = "rollwatch"
WEBHOOK_CHANNEL = "webhook"
#: Most urgent first, as in the Severity enum: rank 0 is IMMEDIATE.
SEVERITY_RANK = {severity: rank for rank, severity in enumerate(Severity)}
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


class CaseStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class DeliveryOutcome(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    #: Not delivered and never retried again: a 4xx other than 429, or the retry budget spent.
    DEAD_LETTERED = "dead_lettered"


# --- schema ----------------------------------------------------------------------------------------------

# Fixed constraint names, so migrations can refer to them identically on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ChildRow(Base):
    """Only what an officer needs to identify the child: no address, no postcode."""

    __tablename__ = "children"
    upn: Mapped[str] = mapped_column(String(13), primary_key=True)
    forename: Mapped[str] = mapped_column(String(200))
    surname: Mapped[str] = mapped_column(String(200))
    date_of_birth: Mapped[date] = mapped_column(Date)


class CaseRow(Base):
    """A CME case. Opening details stay empty until an opening alert arrives, because alert topics of
    different LAs (and case actions) are consumed in no fixed order."""

    __tablename__ = "cases"
    case_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    upn: Mapped[str] = mapped_column(String(13), index=True)
    opened_on: Mapped[date | None] = mapped_column(Date, index=True)
    opening_rule: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(10), index=True)
    closed_on: Mapped[date | None] = mapped_column(Date)
    closing_reason: Mapped[str | None] = mapped_column(Text)
    closed_by: Mapped[str | None] = mapped_column(String(200))
    closing_action_id: Mapped[str | None] = mapped_column(String(36))


class CaseHolderRow(Base):
    """One LA holding a case: every LA whose CME officer an opening alert of the case went to."""

    __tablename__ = "case_holders"
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.case_id", ondelete="CASCADE"), primary_key=True)
    la_code: Mapped[str] = mapped_column(String(3), primary_key=True, index=True)


class AlertRow(Base):
    """Every field of an Alert, the child's details as they were when it was raised."""

    __tablename__ = "alerts"
    alert_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    rule: Mapped[str] = mapped_column(String(40))
    recipient: Mapped[str] = mapped_column(String(20))
    la_code: Mapped[str] = mapped_column(String(3), index=True)
    severity: Mapped[str] = mapped_column(String(10))
    upn: Mapped[str] = mapped_column(ForeignKey("children.upn"), index=True)
    child_forename: Mapped[str] = mapped_column(String(200))
    child_surname: Mapped[str] = mapped_column(String(200))
    child_date_of_birth: Mapped[date] = mapped_column(Date)
    school_urn: Mapped[str] = mapped_column(String(6))
    case_id: Mapped[str | None] = mapped_column(ForeignKey("cases.case_id", ondelete="CASCADE"), index=True)
    raised_on: Mapped[date] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(Text)
    trigger_event_ids: Mapped[list[str]] = mapped_column(JSON)


class DeliveryRow(Base):
    """How an alert fared on one delivery channel; `dead_lettered` rows carry the reason in last_error."""

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("alert_id", "channel", name="uq_deliveries_alert_id_channel"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.alert_id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(20))
    outcome: Mapped[str] = mapped_column(String(20), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# --- engine and migrations -------------------------------------------------------------------------------


def create_register_engine(url: str) -> Engine:
    """An engine for the register. SQLite gets foreign keys on (as PostgreSQL has them), a busy timeout and
    WAL, so `register sync`, `deliver` and `cases` can share one file."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    database = parsed.database or ""
    in_memory = database in ("", ":memory:")
    if in_memory:
        # One shared connection, or every thread and session would see its own empty database.
        engine = create_engine(url, connect_args={"check_same_thread": False}, poolclass=StaticPool)
    else:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    return engine


def _alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def migrate(engine: Engine, revision: str = "head") -> str | None:
    """Brings the register's schema up to `revision` (all migrations by default); returns the revision now
    applied. Works from an installed package: no alembic.ini, the scripts ship as package data."""
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    from alembic import command

    with engine.begin() as connection:
        command.upgrade(_alembic_config(connection), revision)
    return current_revision(engine)


def head_revision() -> str | None:
    """The newest migration this release ships."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


class RegisterNotReady(Exception):
    """The database has no register yet, or an older schema than this release needs."""


def open_register(url: str) -> Register:
    """The register at `url`, after checking its schema is this release's; never creates or changes it."""
    engine = create_register_engine(url)
    try:
        applied = current_revision(engine)
    except Exception:
        engine.dispose()
        raise
    wanted = head_revision()
    if applied != wanted:
        engine.dispose()
        where = make_url(url).render_as_string(hide_password=True)
        state = "has no register tables" if applied is None else f"is at schema revision {applied}"
        raise RegisterNotReady(f"{where} {state}, this release needs {wanted}: run `rollwatch register migrate`")
    return Register(engine)


def current_revision(engine: Engine) -> str | None:
    # Reading the revision is routine for every command; alembic would announce its set-up at INFO each time.
    alembic_log = logging.getLogger("alembic")
    level = alembic_log.level
    alembic_log.setLevel(logging.WARNING)
    try:
        from alembic.runtime.migration import MigrationContext

        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        alembic_log.setLevel(level)


# --- what the register hands out -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaseSummary:
    """A case as an officer sees it in a list: who, which LAs, since when, how urgent, where it stands."""

    case_id: str
    upn: str
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


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    alert_id: str
    channel: str
    outcome: DeliveryOutcome
    attempts: int
    last_error: str | None
    delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    alert: Alert
    attempts: int


@dataclass(frozen=True, slots=True)
class CaseQuery:
    """Filters of `rollwatch cases list`; None means any. since/until bound the opening date, both included."""

    la_code: str | None = None
    status: CaseStatus | None = None
    rule: Rule | None = None
    severity: Severity | None = None
    since: date | None = None
    until: date | None = None


@dataclass
class BatchResult:
    alerts_new: int = 0
    alerts_duplicate: int = 0
    cases_touched: int = 0
    cases_closed: int = 0
    actions_ignored: int = 0


@dataclass(frozen=True, slots=True)
class PurgeItem:
    case_id: str | None
    upn: str
    la_codes: tuple[str, ...]
    ended_on: date
    kept_until: date
    alerts: int


@dataclass
class PurgeReport:
    cases: list[PurgeItem] = field(default_factory=list)
    caseless_alerts: list[PurgeItem] = field(default_factory=list)
    children: int = 0

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


class DeliveryLog(Protocol):
    """Where the webhook deliverer finds its work and records how each delivery went."""

    def pending_deliveries(self, la_code: str, channel: str, limit: int) -> list[PendingDelivery]: ...

    def record_delivery(
        self,
        alert_id: str,
        channel: str,
        outcome: DeliveryOutcome,
        attempts: int,
        last_error: str | None,
        delivered_at: datetime | None,
    ) -> None: ...


# --- the repository --------------------------------------------------------------------------------------


def _insert_for(session: Session) -> Any:
    """The dialect's INSERT that knows ON CONFLICT, so upserts are single race-free statements."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _alert_from_row(row: AlertRow) -> Alert:
    return Alert(
        alert_id=row.alert_id,
        rule=Rule(row.rule),
        recipient=Recipient(row.recipient),
        la_code=row.la_code,
        severity=Severity(row.severity),
        upn=row.upn,
        child=AlertChild(row.child_forename, row.child_surname, row.child_date_of_birth),
        school_urn=row.school_urn,
        raised_on=row.raised_on,
        reason=row.reason,
        trigger_event_ids=tuple(row.trigger_event_ids),
        case_id=row.case_id,
    )


def _severity_rank_expression() -> Any:
    return case(
        *[(AlertRow.severity == severity.value, rank) for severity, rank in SEVERITY_RANK.items()],
        else_=len(SEVERITY_RANK),
    )


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

    def record(self, batch: Sequence[Alert | CaseAction], webhook_las: Iterable[str] = ()) -> BatchResult:
        """Applies a batch of alerts and case actions in one transaction; applying it again changes nothing.

        An alert is stored once (by alert_id) and shapes its case; a CHILD_LOCATED or CLOSE action closes the
        case unless it is already closed (the first closure recorded stands). A new alert for an LA in
        `webhook_las` gets a pending webhook delivery in the same transaction, so none is lost on a crash.
        """
        result = BatchResult()
        webhook = frozenset(webhook_las)
        with self._sessions.begin() as session:
            insert = _insert_for(session)
            alerts = list({item.alert_id: item for item in batch if isinstance(item, Alert)}.values())
            children = {alert.upn: alert.child for alert in alerts}
            if children:
                statement = insert(ChildRow).values([
                    {"upn": upn, "forename": c.forename, "surname": c.surname, "date_of_birth": c.date_of_birth}
                    for upn, c in children.items()
                ])
                session.execute(statement.on_conflict_do_update(
                    index_elements=["upn"],
                    set_={
                        "forename": statement.excluded.forename,
                        "surname": statement.excluded.surname,
                        "date_of_birth": statement.excluded.date_of_birth,
                    },
                ))
            case_ids = {item.case_id for item in batch if item.case_id is not None}
            cases = self._load_cases(session, case_ids)
            holders = self._load_holders(session, case_ids)
            known_holders = set(holders)
            for item in batch:
                if isinstance(item, Alert):
                    self._shape_case(session, item, cases, holders, result)
                else:
                    self._apply_action(session, item, cases, result)
            result.cases_touched = len(case_ids)
            session.flush()
            # After the cases: with no relationship() between them, the flush would not order these after.
            session.add_all(
                CaseHolderRow(case_id=case_id, la_code=la_code) for case_id, la_code in sorted(holders - known_holders)
            )
            session.flush()
            if alerts:
                inserted = session.execute(
                    insert(AlertRow)
                    .values([self._alert_values(alert) for alert in alerts])
                    .on_conflict_do_nothing(index_elements=["alert_id"])
                    .returning(AlertRow.alert_id)
                ).scalars().all()
                new_ids = set(inserted)
                result.alerts_new = len(new_ids)
                result.alerts_duplicate = sum(1 for item in batch if isinstance(item, Alert)) - len(new_ids)
                deliveries = [
                    {"alert_id": alert.alert_id, "channel": WEBHOOK_CHANNEL,
                     "outcome": DeliveryOutcome.PENDING.value, "attempts": 0}
                    for alert in alerts
                    if alert.la_code in webhook and alert.alert_id in new_ids
                ]
                if deliveries:
                    session.execute(
                        insert(DeliveryRow).values(deliveries).on_conflict_do_nothing(
                            index_elements=["alert_id", "channel"]
                        )
                    )
        return result

    @staticmethod
    def _load_cases(session: Session, case_ids: set[str]) -> dict[str, CaseRow]:
        if not case_ids:
            return {}
        rows = session.scalars(select(CaseRow).where(CaseRow.case_id.in_(case_ids)).with_for_update())
        return {row.case_id: row for row in rows}

    @staticmethod
    def _load_holders(session: Session, case_ids: set[str]) -> set[tuple[str, str]]:
        if not case_ids:
            return set()
        rows = session.execute(select(CaseHolderRow.case_id, CaseHolderRow.la_code).where(
            CaseHolderRow.case_id.in_(case_ids)
        ))
        return {(row.case_id, row.la_code) for row in rows}

    @staticmethod
    def _case_row(session: Session, cases: dict[str, CaseRow], case_id: str, upn: str) -> CaseRow:
        row = cases.get(case_id)
        if row is None:
            row = CaseRow(case_id=case_id, upn=upn, status=CaseStatus.OPEN.value)
            session.add(row)
            cases[case_id] = row
        return row

    def _shape_case(
        self,
        session: Session,
        alert: Alert,
        cases: dict[str, CaseRow],
        holders: set[tuple[str, str]],
        result: BatchResult,
    ) -> None:
        if alert.case_id is None:
            return
        row = self._case_row(session, cases, alert.case_id, alert.upn)
        if alert.rule in CASE_OPENING_RULES and (row.opened_on is None or alert.raised_on < row.opened_on):
            row.opened_on = alert.raised_on
            row.opening_rule = alert.rule.value
        holds = alert.recipient is Recipient.CME_OFFICER and (
            alert.rule in CASE_OPENING_RULES or alert.rule is Rule.CHILD_LOCATED
        )
        if holds:
            holders.add((alert.case_id, alert.la_code))
        if alert.rule is Rule.CHILD_LOCATED and row.status == CaseStatus.OPEN:
            row.status = CaseStatus.CLOSED.value
            row.closed_on = alert.raised_on
            row.closing_reason = CHILD_LOCATED_REASON
            row.closed_by = ENGINE_CLOSER
            result.cases_closed += 1

    def _apply_action(
        self, session: Session, action: CaseAction, cases: dict[str, CaseRow], result: BatchResult
    ) -> None:
        row = self._case_row(session, cases, action.case_id, action.upn)
        if action.action is not CaseActionType.CLOSE or row.status != CaseStatus.OPEN:
            result.actions_ignored += 1
            return
        row.status = CaseStatus.CLOSED.value
        row.closed_on = action.at.astimezone(LONDON).date()
        row.closing_reason = action.reason
        row.closed_by = action.by
        row.closing_action_id = action.action_id
        result.cases_closed += 1

    @staticmethod
    def _alert_values(alert: Alert) -> dict[str, Any]:
        return {
            "alert_id": alert.alert_id,
            "rule": alert.rule.value,
            "recipient": alert.recipient.value,
            "la_code": alert.la_code,
            "severity": alert.severity.value,
            "upn": alert.upn,
            "child_forename": alert.child.forename,
            "child_surname": alert.child.surname,
            "child_date_of_birth": alert.child.date_of_birth,
            "school_urn": alert.school_urn,
            "case_id": alert.case_id,
            "raised_on": alert.raised_on,
            "reason": alert.reason,
            "trigger_event_ids": list(alert.trigger_event_ids),
        }

    def record_delivery(
        self,
        alert_id: str,
        channel: str,
        outcome: DeliveryOutcome,
        attempts: int,
        last_error: str | None,
        delivered_at: datetime | None,
    ) -> None:
        """Creates or updates the alert's delivery on `channel`."""
        values = {
            "outcome": outcome.value, "attempts": attempts, "last_error": last_error, "delivered_at": delivered_at,
        }
        with self._sessions.begin() as session:
            statement = _insert_for(session)(DeliveryRow).values(alert_id=alert_id, channel=channel, **values)
            session.execute(statement.on_conflict_do_update(index_elements=["alert_id", "channel"], set_=values))

    # reading

    def alert(self, alert_id: str) -> Alert | None:
        with self._sessions() as session:
            row = session.get(AlertRow, alert_id)
            return None if row is None else _alert_from_row(row)

    def alerts(self, case_id: str | None = None, la_code: str | None = None) -> list[Alert]:
        """Alerts, oldest first; of one case or one recipient LA when asked."""
        statement = select(AlertRow).order_by(AlertRow.raised_on, AlertRow.alert_id)
        if case_id is not None:
            statement = statement.where(AlertRow.case_id == case_id)
        if la_code is not None:
            statement = statement.where(AlertRow.la_code == la_code)
        with self._sessions() as session:
            return [_alert_from_row(row) for row in session.scalars(statement)]

    def case(self, case_id: str) -> CaseSummary | None:
        found = self._summaries(select(CaseRow).where(CaseRow.case_id == case_id))
        return found[0] if found else None

    def cases(self, query: CaseQuery | None = None) -> list[CaseSummary]:
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
            statement = statement.where(exists().where(
                CaseHolderRow.case_id == CaseRow.case_id, CaseHolderRow.la_code == query.la_code
            ))
        if query.severity is not None:
            most_urgent = (
                select(func.min(_severity_rank_expression()))
                .where(AlertRow.case_id == CaseRow.case_id)
                .scalar_subquery()
            )
            statement = statement.where(most_urgent == SEVERITY_RANK[query.severity])
        return self._summaries(statement)

    def _summaries(self, statement: Any) -> list[CaseSummary]:
        statement = statement.order_by(CaseRow.opened_on.desc().nulls_last(), CaseRow.case_id)
        with self._sessions() as session:
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
            upns = {row.upn for row in rows}
            children = {
                child.upn: AlertChild(child.forename, child.surname, child.date_of_birth)
                for child in session.scalars(select(ChildRow).where(ChildRow.upn.in_(upns)))
            }
        ranks = list(Severity)
        summaries = []
        for row in rows:
            rank, count = stats.get(row.case_id, (None, 0))
            summaries.append(CaseSummary(
                case_id=row.case_id,
                upn=row.upn,
                child=children.get(row.upn),
                holders=tuple(holders.get(row.case_id, ())),
                opened_on=row.opened_on,
                opening_rule=None if row.opening_rule is None else Rule(row.opening_rule),
                status=CaseStatus(row.status),
                severity=None if rank is None or rank >= len(ranks) else ranks[rank],
                alert_count=count,
                closed_on=row.closed_on,
                closing_reason=row.closing_reason,
                closed_by=row.closed_by,
            ))
        return summaries

    def deliveries(self, alert_ids: Iterable[str] | None = None) -> list[DeliveryRecord]:
        statement = select(DeliveryRow).order_by(DeliveryRow.alert_id, DeliveryRow.channel)
        if alert_ids is not None:
            statement = statement.where(DeliveryRow.alert_id.in_(list(alert_ids)))
        with self._sessions() as session:
            return [
                DeliveryRecord(
                    alert_id=row.alert_id,
                    channel=row.channel,
                    outcome=DeliveryOutcome(row.outcome),
                    attempts=row.attempts,
                    last_error=row.last_error,
                    delivered_at=row.delivered_at,
                )
                for row in session.scalars(statement)
            ]

    def pending_deliveries(self, la_code: str, channel: str, limit: int) -> list[PendingDelivery]:
        """The oldest pending deliveries of one LA's alerts on `channel`, in the order they were recorded."""
        statement = (
            select(AlertRow, DeliveryRow.attempts)
            .join(DeliveryRow, DeliveryRow.alert_id == AlertRow.alert_id)
            .where(
                DeliveryRow.channel == channel,
                DeliveryRow.outcome == DeliveryOutcome.PENDING.value,
                AlertRow.la_code == la_code,
            )
            .order_by(DeliveryRow.id)
            .limit(limit)
        )
        with self._sessions() as session:
            return [PendingDelivery(_alert_from_row(row), attempts) for row, attempts in session.execute(statement)]

    def counts(self) -> dict[str, int]:
        """Rows per table, for summaries and tests."""
        with self._sessions() as session:
            return {
                model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
                for model in (ChildRow, CaseRow, CaseHolderRow, AlertRow, DeliveryRow)
            }

    # retention

    def purge(self, today: date, policy: RetentionPolicy, dry_run: bool = True) -> PurgeReport:
        """Removes closed cases (with their alerts and deliveries) and alerts outside any case once their LA's
        retention period has passed, then children nothing refers to any more. Open cases are never purged.
        With dry_run, reports what would go and changes nothing."""
        report = PurgeReport()
        with self._sessions.begin() as session:
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
            if dry_run:
                # Deleting inside the transaction and rolling back counts exactly what a real run would.
                session.rollback()
        return report


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- feeding the register from Kafka messages ------------------------------------------------------------


def alert_topic_regex(topic_prefix: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(topic_prefix)}la\.\d{{3}}\.alerts\.[a-z-]+$")


@dataclass
class FeedStats:
    messages: int = 0
    alerts_new: int = 0
    alerts_duplicate: int = 0
    actions: int = 0
    cases_closed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def add(self, result: BatchResult) -> None:
        self.alerts_new += result.alerts_new
        self.alerts_duplicate += result.alerts_duplicate
        self.cases_closed += result.cases_closed


class RegisterWriter(Protocol):
    def record(self, batch: Sequence[Alert | CaseAction], webhook_las: Iterable[str] = ()) -> BatchResult: ...


class RegisterFeed:
    """Turns a batch of consumed messages (alert topics and case.actions) into one register transaction.

    Kafka-free, so the consumer loop stays a thin shell: decode, validate, record. A message that cannot be
    decoded, or a case action that fails validation, is skipped and counted by error code; it is already on
    its topic for anyone to inspect, and holding the register back for it would stall every LA.
    """

    def __init__(
        self,
        register: RegisterWriter,
        codec: AvroCodec,
        topic_prefix: str,
        case_actions_topic: str,
        webhook_las: Iterable[str] = (),
    ) -> None:
        self.register = register
        self.codec = codec
        self.alert_topics = alert_topic_regex(topic_prefix)
        self.case_actions_topic = case_actions_topic
        self.webhook_las = frozenset(webhook_las)
        self.stats = FeedStats()

    def handles(self, topic: str) -> bool:
        return topic == self.case_actions_topic or self.alert_topics.match(topic) is not None

    def feed(self, messages: Sequence[tuple[str, int, int, bytes]]) -> BatchResult:
        """Records (topic, partition, offset, value) messages in one transaction."""
        batch: list[Alert | CaseAction] = []
        for topic, partition, offset, value in messages:
            self.stats.messages += 1
            try:
                if topic == self.case_actions_topic:
                    action = self.codec.decode(value, CaseAction)
                    problems = validate(action)
                    if problems:
                        self._skip(str(problems[0].code), topic, partition, offset)
                        continue
                    batch.append(action)
                    self.stats.actions += 1
                else:
                    batch.append(self.codec.decode(value, Alert))
            except CodecError as error:
                self._skip(str(error.code), topic, partition, offset)
        if not batch:
            return BatchResult()
        result = self.register.record(batch, self.webhook_las)
        self.stats.add(result)
        return result

    def _skip(self, code: str, topic: str, partition: int, offset: int) -> None:
        log.warning("register skipped %s[%d]@%d: %s", topic, partition, offset, code)
        self.stats.skipped[code] = self.stats.skipped.get(code, 0) + 1


class MemoryRegisterWriter:
    """Keeps every batch it is given, for unit tests of the feed and the consumer loop."""

    def __init__(self) -> None:
        self.batches: list[list[Alert | CaseAction]] = []

    def record(self, batch: Sequence[Alert | CaseAction], webhook_las: Iterable[str] = ()) -> BatchResult:
        self.batches.append(list(batch))
        return BatchResult(alerts_new=sum(1 for item in batch if isinstance(item, Alert)))


class MemoryDeliveryLog:
    """Pending deliveries and outcomes in dicts, for unit tests of the webhook deliverer."""

    def __init__(self, alerts: Iterable[Alert] = ()) -> None:
        self.pending: dict[str, PendingDelivery] = {}
        self.outcomes: dict[str, DeliveryRecord] = {}
        for alert in alerts:
            self.add(alert)

    def add(self, alert: Alert) -> None:
        self.pending[alert.alert_id] = PendingDelivery(alert, 0)

    def pending_deliveries(self, la_code: str, channel: str, limit: int) -> list[PendingDelivery]:
        return [item for item in self.pending.values() if item.alert.la_code == la_code][:limit]

    def record_delivery(
        self,
        alert_id: str,
        channel: str,
        outcome: DeliveryOutcome,
        attempts: int,
        last_error: str | None,
        delivered_at: datetime | None,
    ) -> None:
        self.outcomes[alert_id] = DeliveryRecord(alert_id, channel, outcome, attempts, last_error, delivered_at)
        if outcome is DeliveryOutcome.PENDING:
            self.pending[alert_id] = PendingDelivery(self.pending[alert_id].alert, attempts)
        else:
            self.pending.pop(alert_id, None)


__all__ = [
    "Base",
    "BatchResult",
    "CaseQuery",
    "CaseStatus",
    "CaseSummary",
    "DeliveryLog",
    "DeliveryOutcome",
    "DeliveryRecord",
    "MemoryDeliveryLog",
    "MemoryRegisterWriter",
    "PendingDelivery",
    "PurgeReport",
    "Register",
    "RegisterFeed",
    "RegisterNotReady",
    "RetentionPolicy",
    "create_register_engine",
    "migrate",
    "open_register",
]
