"""Compact, versioned JSON for per-child state in changelog-backed tables (no pickle: changelogs are data)."""

from __future__ import annotations

from datetime import date
from typing import Any

import msgspec

from processors.records import AlertChild, EHEMethod, EventType, Ground, Rule
from processors.state import Case, ChildState, Deadline, NoticeEntry, Removal, RollEntry, StatusEntry

STATE_VERSION = 1


def _removal(r: Removal) -> list[Any]:
    return [
        r.event_id,
        r.school_urn,
        r.school_name,
        r.school_la,
        r.effective_date.isoformat(),
        r.ground.value,
        r.destination_la,
    ]


def _removal_from(v: list[Any]) -> Removal:
    return Removal(v[0], v[1], v[2], v[3], date.fromisoformat(v[4]), Ground(v[5]), v[6])


def encode_state(state: ChildState) -> bytes:
    document: dict[str, Any] = {"v": STATE_VERSION, "upn": state.upn}
    if state.child is not None:
        document["child"] = [state.child.forename, state.child.surname, state.child.date_of_birth.isoformat()]
    if state.rolls:
        document["rolls"] = [
            [e.event_type.value, e.school_urn, e.effective_date.isoformat(), e.seq, e.event_id] for e in state.rolls
        ]
    if state.notices:
        document["notices"] = [
            [n.notification_id, n.la_code, n.method.value, n.received_on.isoformat()] for n in state.notices
        ]
    if state.status is not None:
        s = state.status
        document["status"] = [s.la_code, s.child_protection_plan, s.looked_after, s.school_attendance_order]
    if state.case is not None:
        c = state.case
        document["case"] = [
            c.case_id,
            _removal(c.opened_by),
            c.opened_on.isoformat(),
            c.opening_rule.value,
            list(c.holders),
            list(c.social_care_alerted),
        ]
    if state.deadlines:
        document["deadlines"] = [
            [d.rule.value, _removal(d.removal), d.window_start.isoformat(), d.due.isoformat()] for d in state.deadlines
        ]
    if state.seen_ids:
        document["seen"] = sorted(state.seen_ids)
    if state.closed_case_ids:
        document["closed"] = list(state.closed_case_ids)
    return msgspec.json.encode(document)


def decode_state(data: bytes) -> ChildState:
    d = msgspec.json.decode(data)
    if d.get("v") != STATE_VERSION:
        raise ValueError(f"child state version {d.get('v')!r} is not {STATE_VERSION}; upgrade the worker")
    child = d.get("child")
    status = d.get("status")
    case = d.get("case")
    return ChildState(
        upn=d["upn"],
        child=AlertChild(child[0], child[1], date.fromisoformat(child[2])) if child else None,
        rolls=tuple(
            RollEntry(EventType(t), urn, date.fromisoformat(on), seq, eid)
            for t, urn, on, seq, eid in d.get("rolls", ())
        ),
        notices=tuple(
            NoticeEntry(nid, la, EHEMethod(m), date.fromisoformat(on)) for nid, la, m, on in d.get("notices", ())
        ),
        status=StatusEntry(status[0], status[1], status[2], status[3]) if status else None,
        case=Case(
            case_id=case[0],
            opened_by=_removal_from(case[1]),
            opened_on=date.fromisoformat(case[2]),
            opening_rule=Rule(case[3]),
            holders=tuple(case[4]),
            social_care_alerted=tuple(case[5]),
        )
        if case
        else None,
        deadlines=tuple(
            Deadline(Rule(r), _removal_from(rem), date.fromisoformat(start), date.fromisoformat(due))
            for r, rem, start, due in d.get("deadlines", ())
        ),
        seen_ids=frozenset(d.get("seen", ())),
        closed_case_ids=tuple(d.get("closed", ())),
    )
