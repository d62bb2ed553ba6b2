"""The delivery log: which alerts await each channel (the webhook), and how each delivery went."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from processors.records import Alert
from sinks.register.schema import AlertRow, DeliveryOutcome, DeliveryRow, alert_from_row, insert_for

WEBHOOK_CHANNEL = "webhook"


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


def record_delivery(
    sessions: sessionmaker[Session],
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
    with sessions.begin() as session:
        statement = insert_for(session)(DeliveryRow).values(alert_id=alert_id, channel=channel, **values)
        session.execute(statement.on_conflict_do_update(index_elements=["alert_id", "channel"], set_=values))


def pending_deliveries(
    sessions: sessionmaker[Session], la_code: str, channel: str, limit: int
) -> list[PendingDelivery]:
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
    with sessions() as session:
        return [PendingDelivery(alert_from_row(row), attempts) for row, attempts in session.execute(statement)]


def deliveries(sessions: sessionmaker[Session], alert_ids: Iterable[str] | None = None) -> list[DeliveryRecord]:
    """Every delivery, or those of the given alerts, by alert and channel."""
    statement = select(DeliveryRow).order_by(DeliveryRow.alert_id, DeliveryRow.channel)
    if alert_ids is not None:
        statement = statement.where(DeliveryRow.alert_id.in_(list(alert_ids)))
    with sessions() as session:
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
