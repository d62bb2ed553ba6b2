"""Builds replay-format scenario records by hand: short helpers so each scenario reads like a story."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHECK_LETTERS = "ABCDEFGHJKLMNPQRTUVWXYZ"
_ids = itertools.count(1)


def upn(la: str, serial: int) -> str:
    """A valid permanent UPN allocated by `la`, unique per serial."""
    body = f"{la}{serial:09d}"
    total = sum(int(ch) * weight for ch, weight in zip(body, range(2, 14), strict=True))
    return CHECK_LETTERS[total % 23] + body


def school(urn: str, laestab: str, name: str = "", special: bool = False) -> dict[str, Any]:
    return {"urn": urn, "laestab": laestab, "name": name or f"School {urn}", "special": special}


# A few schools across the West Midlands, by LA.
COV_A = school("140201", "3312201", "Canley Primary")
COV_B = school("140202", "3312202", "Coundon Court")
BHM_A = school("103001", "3304001", "Small Heath School")
DUD_A = school("140301", "3324001", "Dudley Wood Academy")
WAL_SPECIAL = school("140610", "3357001", "Oakwood Special School", special=True)
STAFF_A = school("124001", "8604001", "Cannock Chase High")


def next_id() -> str:
    return f"00000000-0000-4000-8000-{next(_ids):012d}"


def roll(
    kind: str,
    pupil: str,
    at: dict[str, Any],
    on: str,
    *,
    ground: str | None = None,
    destination: dict[str, Any] | None = None,
    standard: bool = False,
    event_id: str | None = None,
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "event_id": event_id or next_id(),
        "event_type": kind,
        "upn": pupil,
        "child": {"forename": "Test", "surname": "Child", "date_of_birth": "2014-05-01"},
        "school": at,
        "effective_date": on,
        "recorded_at": f"{on}T09:00:00Z",
        "standard_transition": standard,
        "source_system": "SCENARIO",
    }
    if ground is not None:
        value["ground"] = ground
    if destination is not None:
        value["destination"] = destination
    return {"topic": "roll.events", "value": value}


def added(pupil: str, at: dict[str, Any], on: str, **kw: Any) -> dict[str, Any]:
    return roll("ADDED", pupil, at, on, **kw)


def removed(pupil: str, at: dict[str, Any], on: str, ground: str, **kw: Any) -> dict[str, Any]:
    return roll("REMOVED", pupil, at, on, ground=ground, **kw)


def to_school(target: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "SCHOOL", "school_urn": target["urn"], "school_laestab": target["laestab"]}


def to_la(la: str) -> dict[str, Any]:
    return {"kind": "OTHER_LA", "la_code": la}


UNKNOWN: dict[str, Any] = {"kind": "UNKNOWN"}
ABROAD: dict[str, Any] = {"kind": "ABROAD"}


def tick(day: str) -> dict[str, Any]:
    return {"topic": "clock.ticks", "value": {"today": day}}


def status(
    pupil: str, la: str, *, cp: bool = False, lac: bool = False, sao: bool = False, at: str = "2025-01-02"
) -> dict[str, Any]:
    return {
        "topic": "safeguarding.status",
        "value": {
            "upn": pupil,
            "la_code": la,
            "child_protection_plan": cp,
            "looked_after": lac,
            "school_attendance_order": sao,
            "updated_at": f"{at}T08:00:00Z",
        },
    }


def ehe(pupil: str, la: str, method: str, on: str, school_urn: str | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {
        "notification_id": next_id(),
        "upn": pupil,
        "la_code": la,
        "method": method,
        "received_on": on,
    }
    if school_urn:
        value["school_urn"] = school_urn
    return {"topic": "ehe.notifications", "value": value}


Expected = tuple[str, str, str, str]


@dataclass
class Scenario:
    name: str
    story: str
    records: list[dict[str, Any]]
    expected: list[Expected] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [json.dumps(record) for record in self.records]

    def write(self, folder: Path) -> Path:
        """Writes NAME.jsonl and NAME.expected.json in the shared scenarios' format."""
        path = folder / f"{self.name}.jsonl"
        path.write_text("\n".join(self.lines()) + "\n", encoding="utf-8")
        expected = [list(e) for e in self.expected]
        (folder / f"{self.name}.expected.json").write_text(json.dumps(expected, indent=1) + "\n")
        return path
