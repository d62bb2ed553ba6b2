"""Per-child state as stored in changelog-backed tables: versioned MessagePack, never pickle (changelogs are data)."""

from __future__ import annotations

from datetime import date
from typing import Any

import msgspec

from processors.attendance import AttendanceState
from processors.records import AlertChild, EHEMethod, EventType, Ground, Rule
from processors.state import Case, ChildState, Deadline, NoticeEntry, Removal, RollEntry, StatusEntry

#: The version written now: a 0x02 byte, then the state as MessagePack, each Struct an array of its fields
#: in order (msgspec's array_like), sets sorted so that equal states encode to equal bytes.
STATE_VERSION = 2
_VERSION_2 = b"\x02"

_encode_v2 = msgspec.msgpack.Encoder(order="deterministic").encode
_decode_v2 = msgspec.msgpack.Decoder(ChildState).decode
_decode_attendance = msgspec.msgpack.Decoder(AttendanceState).decode
_ATTENDANCE_VERSION = b"\x01"


def encode_attendance(state: AttendanceState) -> bytes:
    """A child's attendance state: a 0x01 byte, then MessagePack, each Struct an array of its fields."""
    return _ATTENDANCE_VERSION + _encode_v2(state)


def decode_attendance(data: bytes) -> AttendanceState:
    if data[:1] != _ATTENDANCE_VERSION:
        raise ValueError(
            f"attendance state starts with byte {data[:1].hex() or 'none'}, not a version this worker reads (1); "
            "upgrade the worker"
        )
    return _decode_attendance(memoryview(data)[1:])


def encode_state(state: ChildState) -> bytes:
    return _VERSION_2 + _encode_v2(state)


def decode_state(data: bytes, upn: str | None = None) -> ChildState:
    """A stored state of either version: tables hold what earlier releases wrote until each child is
    written again. `upn` is the table key it was stored under, for early states that did not carry it."""
    if data[:1] == _VERSION_2:
        return _decode_v2(memoryview(data)[1:])
    if data[:1] == b"{":
        return _decode_v1(data, upn)
    raise ValueError(
        f"child state starts with byte {data[:1].hex() or 'none'}, not a version this worker reads (1 or "
        f"{STATE_VERSION}); upgrade the worker"
    )


def _decode_v1(data: bytes, upn: str | None) -> ChildState:
    """Version 1: a JSON document, written by releases before version 2."""
    d = msgspec.json.decode(data)
    if d.get("v") != 1:
        raise ValueError(f"child state version {d.get('v')!r} is not one this worker reads; upgrade the worker")
    upn = d.get("upn") or upn
    if not isinstance(upn, str):
        raise ValueError("child state of version 1 names no UPN, and none was given from its table key")
    child = d.get("child")
    status = d.get("status")
    case = d.get("case")
    return ChildState(
        upn=upn,
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


def _removal_from(v: list[Any]) -> Removal:
    return Removal(v[0], v[1], v[2], v[3], date.fromisoformat(v[4]), Ground(v[5]), v[6])
