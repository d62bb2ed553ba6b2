"""Storing alerts, case actions and referrals in the register: children, cases, holders, alerts, case work."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from processors.cases import CHILD_LOCATED_REASON, action_closes_case, closes_case, holds_case, opens_case
from processors.records import Alert, CaseAction, CaseActionType, CMEReferral
from sinks.register.deliveries import WEBHOOK_CHANNEL
from sinks.register.schema import (
    AlertRow,
    CaseHolderRow,
    CaseLinkRow,
    CaseRow,
    CaseStatus,
    ChildRow,
    DeliveryOutcome,
    DeliveryRow,
    EnquiryRow,
    ReferralRow,
    alert_values,
    insert_for,
)

LONDON = ZoneInfo("Europe/London")
#: `closed_by` of a case the engine closed itself (CHILD_LOCATED), as opposed to an officer.
ENGINE_CLOSER = "rollwatch"


@dataclass
class BatchResult:
    alerts_new: int = 0
    alerts_duplicate: int = 0
    cases_touched: int = 0
    cases_closed: int = 0
    actions_ignored: int = 0
    actions_recorded: int = 0
    referrals_new: int = 0


#: What one register transaction takes: the alert topics', case.actions' and cme.referrals' records.
RegisterItem = Alert | CaseAction | CMEReferral


class RegisterWriter(Protocol):
    def record(self, batch: Sequence[RegisterItem], webhook_las: Iterable[str] = ()) -> BatchResult: ...


def record(
    sessions: sessionmaker[Session], batch: Sequence[RegisterItem], webhook_las: Iterable[str] = ()
) -> BatchResult:
    """Applies a batch of alerts, case actions and referrals in one transaction; applying it again changes
    nothing.

    An alert is stored once (by alert_id) and shapes its case; a CHILD_LOCATED or CLOSE action closes the
    case unless it is already closed (the first closure recorded stands). NOTE, ASSIGN and LINK actions are
    recorded once each by action id; the latest assignment stands. A referral is stored once by referral id.
    A new alert for an LA in `webhook_las` gets a pending webhook delivery in the same transaction, so none
    is lost on a crash.
    """
    result = BatchResult()
    webhook = frozenset(webhook_las)
    with sessions.begin() as session:
        insert = insert_for(session)
        referrals = list({item.referral_id: item for item in batch if isinstance(item, CMEReferral)}.values())
        if referrals:
            result.referrals_new = len(session.execute(
                insert(ReferralRow)
                .values([_referral_values(referral) for referral in referrals])
                .on_conflict_do_nothing(index_elements=["referral_id"])
                .returning(ReferralRow.referral_id)
            ).scalars().all())
        alerts = list({item.alert_id: item for item in batch if isinstance(item, Alert)}.values())
        children = {alert.upn: alert.child for alert in alerts if alert.child is not None and alert.upn is not None}
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
        # A pupil known only from registers gets a row without a name, which a later named alert fills in.
        unnamed = sorted({alert.upn for alert in alerts if alert.child is None and alert.upn} - set(children))
        if unnamed:
            statement = insert(ChildRow).values([{"upn": upn} for upn in unnamed])
            session.execute(statement.on_conflict_do_nothing(index_elements=["upn"]))
        case_ids = {item.case_id for item in batch if not isinstance(item, CMEReferral) and item.case_id is not None}
        links = _load_links(session, {
            item.upn for item in batch if item.upn is not None and (
                (isinstance(item, Alert) and closes_case(item.rule))
                or (isinstance(item, CaseAction) and action_closes_case(item)))
        })
        case_ids |= {case_id for linked in links.values() for case_id in linked}
        cases = _load_cases(session, case_ids)
        holders = _load_holders(session, case_ids)
        known_holders = set(holders)
        for item in batch:
            if isinstance(item, Alert):
                _shape_case(session, item, cases, holders, result, links)
            elif isinstance(item, CaseAction):
                _apply_action(session, item, cases, result, links)
        result.cases_touched = len(case_ids)
        session.flush()
        # After the cases: with no relationship() between them, the flush would not order these after.
        session.add_all(
            CaseHolderRow(case_id=case_id, la_code=la_code) for case_id, la_code in sorted(holders - known_holders)
        )
        session.flush()
        _record_case_work(session, [item for item in batch if isinstance(item, CaseAction)], result)
        if alerts:
            inserted = session.execute(
                insert(AlertRow)
                .values([alert_values(alert) for alert in alerts])
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


def _load_cases(session: Session, case_ids: set[str]) -> dict[str, CaseRow]:
    if not case_ids:
        return {}
    rows = session.scalars(select(CaseRow).where(CaseRow.case_id.in_(case_ids)).with_for_update())
    return {row.case_id: row for row in rows}


def _load_holders(session: Session, case_ids: set[str]) -> set[tuple[str, str]]:
    if not case_ids:
        return set()
    rows = session.execute(select(CaseHolderRow.case_id, CaseHolderRow.la_code).where(
        CaseHolderRow.case_id.in_(case_ids)
    ))
    return {(row.case_id, row.la_code) for row in rows}


def _load_links(session: Session, upns: set[str]) -> dict[str, list[str]]:
    """The referral cases linked to each of these children, oldest link first."""
    links: dict[str, list[str]] = {}
    if upns:
        rows = session.execute(select(CaseLinkRow.upn, CaseLinkRow.case_id).where(
            CaseLinkRow.upn.in_(upns)
        ).order_by(CaseLinkRow.at))
        for row in rows:
            links.setdefault(row.upn, []).append(row.case_id)
    return links


def _close_linked(row: CaseRow, links: dict[str, list[str]], cases: dict[str, CaseRow], result: BatchResult) -> None:
    """Closes the open referral cases linked to the child whose case `row` just closed, as the worker ends them
    with it (docs/decisions/015): the same day, reason and closer."""
    for case_id in links.get(row.upn or "", ()):
        linked = cases.get(case_id)
        if linked is None or linked is row or linked.status != CaseStatus.OPEN:
            continue
        linked.status = CaseStatus.CLOSED.value
        linked.closed_on, linked.closing_reason, linked.closed_by = row.closed_on, row.closing_reason, row.closed_by
        linked.close_reason, linked.closing_action_id = row.close_reason, row.closing_action_id
        result.cases_closed += 1


def _case_row(
    session: Session, cases: dict[str, CaseRow], case_id: str, upn: str | None, referral_id: str | None
) -> CaseRow:
    row = cases.get(case_id)
    if row is None:
        row = CaseRow(case_id=case_id, upn=upn, referral_id=referral_id, status=CaseStatus.OPEN.value)
        session.add(row)
        cases[case_id] = row
    elif row.referral_id is None and referral_id is not None:
        row.referral_id = referral_id
    return row


def _shape_case(
    session: Session,
    alert: Alert,
    cases: dict[str, CaseRow],
    holders: set[tuple[str, str]],
    result: BatchResult,
    links: dict[str, list[str]],
) -> None:
    if alert.case_id is None:
        return
    row = _case_row(session, cases, alert.case_id, alert.upn, alert.referral_id)
    # The removal that opened the case is the first one, whatever order the LAs' topics arrive in.
    if opens_case(alert.rule) and (row.opened_on is None or alert.raised_on < row.opened_on):
        row.opened_on = alert.raised_on
        row.opening_rule = alert.rule.value
    if holds_case(alert.rule, alert.recipient):
        holders.add((alert.case_id, alert.la_code))
    if closes_case(alert.rule) and row.status == CaseStatus.OPEN:
        row.status = CaseStatus.CLOSED.value
        row.closed_on = alert.raised_on
        row.closing_reason = CHILD_LOCATED_REASON
        row.closed_by = ENGINE_CLOSER
        result.cases_closed += 1
        # The child is on roll: the worker has closed its case and every referral case linked into it.
        _close_linked(row, links, cases, result)


def _apply_action(
    session: Session, action: CaseAction, cases: dict[str, CaseRow], result: BatchResult,
    links: dict[str, list[str]],
) -> None:
    # A LINK's UPN is the child's the case is linked to, not the case's own: the case row keeps none until
    # the link is applied below.
    own_upn = None if action.action is CaseActionType.LINK else action.upn
    row = _case_row(session, cases, action.case_id, own_upn, action.referral_id)
    if action.action is CaseActionType.ASSIGN:
        # The latest assignment stands, whatever order the actions arrive in; a repeat changes nothing.
        assigned_at = None if row.assigned_at is None else _aware(row.assigned_at)
        if assigned_at is None or action.at >= assigned_at:
            row.assignee = action.assignee
            row.assigned_at = action.at
            row.assigned_by = action.by
        return
    if action.action is CaseActionType.LINK:
        if row.upn is None and action.upn is not None:
            row.upn = action.upn
            links.setdefault(action.upn, []).append(row.case_id)
        return
    if not action_closes_case(action) or row.status != CaseStatus.OPEN:
        if action.action is CaseActionType.CLOSE:
            result.actions_ignored += 1
        return
    row.status = CaseStatus.CLOSED.value
    row.closed_on = action.at.astimezone(LONDON).date()
    row.closing_reason = action.reason
    row.close_reason = None if action.close_reason is None else action.close_reason.value
    row.closed_by = action.by
    row.closing_action_id = action.action_id
    result.cases_closed += 1
    if row.case_id not in links.get(row.upn or "", ()):
        # The child's own case: the worker ends the referral cases linked into it too. A linked referral's
        # case closed on its own leaves the child's case open.
        _close_linked(row, links, cases, result)


def _record_case_work(session: Session, actions: Sequence[CaseAction], result: BatchResult) -> None:
    """Enquiries and links, one row per action id: a redelivered action adds nothing."""
    insert = insert_for(session)
    enquiries = [
        {
            "action_id": action.action_id, "case_id": action.case_id, "kind": action.enquiry.kind.value,
            "outcome": action.enquiry.outcome, "note": action.reason, "by": action.by, "at": action.at,
            "la_code": action.la_code,
        }
        for action in actions
        if action.action is CaseActionType.NOTE and action.enquiry is not None
    ]
    links = [
        {
            "action_id": action.action_id, "case_id": action.case_id, "upn": action.upn, "note": action.reason,
            "by": action.by, "at": action.at, "la_code": action.la_code,
        }
        for action in actions
        if action.action is CaseActionType.LINK and action.upn is not None
    ]
    for model, rows in ((EnquiryRow, enquiries), (CaseLinkRow, links)):
        if rows:
            stored = session.execute(
                insert(model).values(rows).on_conflict_do_nothing(index_elements=["action_id"]).returning(model.id)
            ).scalars().all()
            result.actions_recorded += len(stored)


def _referral_values(referral: CMEReferral) -> dict[str, object]:
    child, referrer = referral.child, referral.referrer
    return {
        "referral_id": referral.referral_id, "la_code": referral.la_code, "received_on": referral.received_on,
        "upn": referral.upn, "forename": child.forename, "surname": child.surname,
        "date_of_birth": child.date_of_birth, "postcode": child.postcode, "concern": referral.concern.value,
        "details": referral.details, "agency": referrer.agency.value, "referrer_name": referrer.name,
        "referrer_contact": referrer.contact,
    }


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; every action time is written in UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class MemoryRegisterWriter:
    """Keeps every batch it is given, for unit tests of the feed and the consumer loop."""

    def __init__(self) -> None:
        self.batches: list[list[RegisterItem]] = []

    def record(self, batch: Sequence[RegisterItem], webhook_las: Iterable[str] = ()) -> BatchResult:
        self.batches.append(list(batch))
        return BatchResult(alerts_new=sum(1 for item in batch if isinstance(item, Alert)))
