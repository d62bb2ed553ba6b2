"""Per-child state in changelogs: every field survives a round trip, and states written earlier still read."""

from __future__ import annotations

import json
from datetime import date

import pytest
from msgspec.structs import replace

from processors.calendar import default_calendar
from processors.config import RuleConfig
from processors.records import AlertChild
from processors.state import ChildState
from processors.timeline import MemoryChildStore, MemoryClock, MemoryDeadlineIndex, Timeline
from streams.generator import GeneratorOptions, generate_lines
from streams.replay import replay
from streams.statecodec import decode_state, encode_state


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


def test_a_state_written_with_ascii_escapes_reads_the_same(states: list[ChildState]) -> None:
    state = replace(next(s for s in states if s.child is not None), child=AlertChild("Zoë", "Ó Sé", date(2014, 2, 3)))
    escaped = json.dumps(json.loads(encode_state(state)), separators=(",", ":")).encode()
    assert b"\\u00eb" in escaped
    assert decode_state(escaped) == state


def test_a_state_of_another_version_is_refused_with_what_to_do() -> None:
    with pytest.raises(ValueError, match="upgrade the worker"):
        decode_state(b'{"v":2,"upn":"A123456789012"}')
