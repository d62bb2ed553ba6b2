"""Per-child state in changelogs: every field survives a round trip, and states written earlier still read."""

from __future__ import annotations

import json
import random
from datetime import date
from typing import Any

import pytest
from msgspec.structs import replace

from generator.generate import generate_lines
from generator.options import GeneratorOptions
from processors.calendar import default_calendar
from processors.config import RuleConfig
from processors.records import AlertChild
from processors.state import ChildState, Removal
from processors.timeline import MemoryChildStore, MemoryClock, MemoryDeadlineIndex, Timeline
from replay.run import replay
from streams.statecodec import STATE_VERSION, decode_state, encode_state


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


def encode_state_v1(state: ChildState) -> bytes:
    """A state as releases before version 2 wrote it (JSON, positional lists): tables may still hold some."""
    document: dict[str, Any] = {"v": 1, "upn": state.upn}
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
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.fixture(scope="module")
def states() -> list[ChildState]:
    """The states of a generated term: rolls, notices, statuses, open and closed cases, pending deadlines."""
    children = MemoryChildStore()
    timeline = Timeline(children, MemoryDeadlineIndex(), MemoryClock(), RuleConfig(default_calendar()))
    options = GeneratorOptions(pupils=20_000, seed=5, start=date(2025, 1, 6), end=date(2025, 3, 14))
    replay(generate_lines(options), timeline, lambda _alert: None)
    return list(children)


def test_every_field_of_every_state_survives_a_round_trip(states: list[ChildState]) -> None:
    assert any(s.case is not None for s in states) and any(s.deadlines for s in states)
    assert any(s.notices for s in states) and any(s.status is not None for s in states)
    assert any(s.closed_case_ids for s in states)
    for state in states:
        assert decode_state(encode_state(state)) == state


def as_version_1(state: ChildState) -> ChildState:
    """What version 1 kept of a state: roll changes without their school's LA (kept since referrals)."""
    return replace(state, rolls=tuple(replace(entry, school_la="") for entry in state.rolls))


def test_states_written_by_earlier_releases_still_read(states: list[ChildState]) -> None:
    for state in states:
        assert decode_state(encode_state_v1(state)) == as_version_1(state)


def test_equal_states_are_stored_as_equal_bytes_whatever_the_order_of_their_event_ids(
    states: list[ChildState],
) -> None:
    state = max(states, key=lambda s: len(s.seen_ids))
    assert len(state.seen_ids) > 3
    ids = sorted(state.seen_ids) + [f"{n:08d}-0000-4000-8000-000000000000" for n in range(40)]
    orders = [random.Random(seed).sample(ids, len(ids)) for seed in range(5)]
    stored = {encode_state(replace(state, seen_ids=frozenset(order))) for order in orders}
    assert len(stored) == 1
    assert encode_state(state)[0] == STATE_VERSION


def test_the_stored_form_is_smaller_than_the_version_1_json(states: list[ChildState]) -> None:
    assert sum(len(encode_state(s)) for s in states) < sum(len(encode_state_v1(s)) for s in states)


def test_a_version_1_state_written_with_ascii_escapes_reads_the_same(states: list[ChildState]) -> None:
    state = replace(next(s for s in states if s.child is not None), child=AlertChild("Zoë", "Ó Sé", date(2014, 2, 3)))
    assert decode_state(encode_state(state)) == state
    escaped = json.dumps(json.loads(encode_state_v1(state)), separators=(",", ":")).encode()
    assert b"\\u00eb" in escaped
    assert decode_state(escaped) == as_version_1(state)


@pytest.mark.parametrize("stored", [b'{"v":3,"upn":"A123456789012"}', b"\x03\x91\xadA123456789012", b""])
def test_a_state_of_another_version_is_refused_with_what_to_do(stored: bytes) -> None:
    with pytest.raises(ValueError, match="upgrade the worker"):
        decode_state(stored)
