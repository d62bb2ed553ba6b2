"""The register's tables (SQLAlchemy ORM) and the mapping between an alert row and an Alert."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import JSON, Date, DateTime, ForeignKey, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from processors.records import Alert
from schemas.mapping import from_fields, load_schema, to_fields


class CaseStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class DeliveryOutcome(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    #: Not delivered and never retried again: a 4xx other than 429, or the retry budget spent.
    DEAD_LETTERED = "dead_lettered"


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
    forename: Mapped[str | None] = mapped_column(String(200))
    surname: Mapped[str | None] = mapped_column(String(200))
    date_of_birth: Mapped[date | None] = mapped_column(Date)


class CaseRow(Base):
    """A CME case. Opening details stay empty until an opening alert arrives, because alert topics of
    different LAs (and case actions) are consumed in no fixed order."""

    __tablename__ = "cases"
    case_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    #: None on a case opened by a referral without a UPN, until an officer links it to a child.
    upn: Mapped[str | None] = mapped_column(String(13), index=True)
    referral_id: Mapped[str | None] = mapped_column(String(36), index=True)
    opened_on: Mapped[date | None] = mapped_column(Date, index=True)
    opening_rule: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(10), index=True)
    closed_on: Mapped[date | None] = mapped_column(Date)
    closing_reason: Mapped[str | None] = mapped_column(Text)
    closed_by: Mapped[str | None] = mapped_column(String(200))
    closing_action_id: Mapped[str | None] = mapped_column(String(36))
    #: The closing officer's reason code (CloseReason); closing_reason holds their note.
    close_reason: Mapped[str | None] = mapped_column(String(40))
    assignee: Mapped[str | None] = mapped_column(String(200))
    assigned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    assigned_by: Mapped[str | None] = mapped_column(String(200))


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
    upn: Mapped[str | None] = mapped_column(ForeignKey("children.upn"), index=True)
    child_forename: Mapped[str | None] = mapped_column(String(200))
    child_surname: Mapped[str | None] = mapped_column(String(200))
    child_date_of_birth: Mapped[date | None] = mapped_column(Date)
    school_urn: Mapped[str | None] = mapped_column(String(6))
    case_id: Mapped[str | None] = mapped_column(ForeignKey("cases.case_id", ondelete="CASCADE"), index=True)
    raised_on: Mapped[date] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(Text)
    trigger_event_ids: Mapped[list[str]] = mapped_column(JSON)
    referral_id: Mapped[str | None] = mapped_column(String(36), index=True)


class ReferralRow(Base):
    """A referral as received on cme.referrals: personal data that only the referral LA's CME officer sees."""

    __tablename__ = "referrals"
    referral_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    la_code: Mapped[str] = mapped_column(String(3), index=True)
    received_on: Mapped[date] = mapped_column(Date)
    upn: Mapped[str | None] = mapped_column(String(13), index=True)
    forename: Mapped[str] = mapped_column(String(200))
    surname: Mapped[str] = mapped_column(String(200))
    date_of_birth: Mapped[date | None] = mapped_column(Date)
    postcode: Mapped[str | None] = mapped_column(String(20))
    concern: Mapped[str] = mapped_column(String(30))
    details: Mapped[str | None] = mapped_column(Text)
    agency: Mapped[str] = mapped_column(String(30))
    referrer_name: Mapped[str | None] = mapped_column(String(200))
    referrer_contact: Mapped[str | None] = mapped_column(String(254))


class EnquiryRow(Base):
    """One reasonable enquiry an officer recorded on a case (a NOTE case action)."""

    __tablename__ = "case_enquiries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    action_id: Mapped[str] = mapped_column(String(36), unique=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.case_id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    outcome: Mapped[str] = mapped_column(Text)
    note: Mapped[str] = mapped_column(Text)
    by: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    la_code: Mapped[str | None] = mapped_column(String(3))


class CaseLinkRow(Base):
    """A case without a UPN linked by an officer to a child's UPN (a LINK case action)."""

    __tablename__ = "case_links"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    action_id: Mapped[str] = mapped_column(String(36), unique=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.case_id", ondelete="CASCADE"), index=True)
    upn: Mapped[str] = mapped_column(String(13))
    note: Mapped[str] = mapped_column(Text)
    by: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    la_code: Mapped[str | None] = mapped_column(String(3))


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


class AuditEventRow(Base):
    """One view of a child's personal data: who, as which LA and role, which case or child, when, through what."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    principal: Mapped[str] = mapped_column(String(200))
    la_code: Mapped[str] = mapped_column(String(3), index=True)
    role: Mapped[str] = mapped_column(String(20))
    channel: Mapped[str] = mapped_column(String(30))
    case_id: Mapped[str | None] = mapped_column(String(36))
    upn: Mapped[str | None] = mapped_column(String(13))
    #: What was done or asked, without personal data: an action's kind, or how a regional lookup searched.
    detail: Mapped[str | None] = mapped_column(String(200))


TABLES = (ChildRow, CaseRow, CaseHolderRow, AlertRow, DeliveryRow)
#: The case-work tables, counted apart so the original counts keep their shape.
CASEWORK_TABLES = (ReferralRow, EnquiryRow, CaseLinkRow)


def insert_for(session: Session) -> Any:
    """The dialect's INSERT that knows ON CONFLICT, so upserts are single race-free statements."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


#: The alert's nested `child` record is kept in columns of its own, `child_<field>`.
_NESTED = "child"
_ALERT_FIELDS = load_schema("Alert")["fields"]
_TOP_FIELDS = tuple(field["name"] for field in _ALERT_FIELDS if field["name"] != _NESTED)
_CHILD_FIELDS = tuple(
    field["name"]
    for field in next(
        branch for branch in next(f for f in _ALERT_FIELDS if f["name"] == _NESTED)["type"] if branch != "null"
    )["fields"]
)


def alert_from_row(row: AlertRow) -> Alert:
    """The alert an alerts row holds, through the one field mapping of schemas.mapping."""
    fields = {name: getattr(row, name) for name in _TOP_FIELDS}
    child = {name: getattr(row, f"{_NESTED}_{name}") for name in _CHILD_FIELDS}
    # A pupil known only from registers has no name on the alert.
    fields[_NESTED] = None if all(value is None for value in child.values()) else child
    return cast(Alert, from_fields(Alert, fields))


def alert_values(alert: Alert) -> dict[str, Any]:
    """An alerts row's values for an alert: its fields as schemas.mapping gives them, the child's flattened."""
    fields = to_fields(alert)
    child = fields.pop(_NESTED)
    values = {key: value.value if isinstance(value, StrEnum) else value for key, value in fields.items()}
    named = child[1] if isinstance(child, tuple) else child
    values.update({f"{_NESTED}_{name}": None if named is None else named[name] for name in _CHILD_FIELDS})
    values["trigger_event_ids"] = list(alert.trigger_event_ids)
    return values

