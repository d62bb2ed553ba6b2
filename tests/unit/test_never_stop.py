"""No record stops the worker: poison records, failing rules, unreadable states and ticks that meet one."""

from __future__ import annotations

import asyncio
import json
import weakref
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest
from faust.streams import _current_event
from prometheus_client import CollectorRegistry

from processors.calendar import default_calendar
from processors.config import RuleConfig
from processors.records import CLOCK_TICKS, ROLL_EVENTS, ClockTick, EventType, Ground, RollEvent, Rule
from processors.state import MAX_ROLL_ENTRIES, ChildState
from processors.timeline import MemoryChildStore, MemoryClock, MemoryDeadlineIndex, Timeline, memory_timeline
from schemas.codec import AvroCodec
from sinks.alerts import MemoryAlertSink, MemoryDeadLetterSink
from sinks.metrics import MemoryMetrics, Metrics
from streams.handler import DEADLINE_CHECK_FAILED, RECORD_TYPES, RecordHandler
from streams.runtime.tablewrites import ChangelogWrites
from streams.statecodec import decode_state
from tests.unit.test_outbox import Event, FakeProducer, fake_table, outbox_with
from tests.unit.test_validation import REMOVED

CODEC = AvroCodec()
CONFIG = RuleConfig(default_calendar())
MISSING = replace(REMOVED, ground=Ground.G_MOVED_AWAY, destination=None)
# A move to a named school: its TRANSITION_NOT_COMPLETED deadline falls due ten school days later.
MOVING = REMOVED
OTHER_CHILD = "A334210025903"


def handler_for(timeline: Timeline, metrics: Any = None) -> tuple[RecordHandler, MemoryAlertSink, MemoryDeadLetterSink]:
    alerts, letters = MemoryAlertSink(), MemoryDeadLetterSink()
    return RecordHandler(CODEC, lambda _p: timeline, alerts, letters, RECORD_TYPES, metrics), alerts, letters


def handle(handler: RecordHandler, topic: str, value: bytes | None, offset: int = 1, key: bytes | None = None) -> Any:
    return asyncio.run(handler.handle(topic, 0, offset, key, value))


def test_a_far_future_recorded_at_is_dead_lettered_and_the_next_record_still_alerts() -> None:
    # The record a producer other than the SDK can send: validation once overflowed on it and crashed the worker.
    handler, alerts, letters = handler_for(memory_timeline(CONFIG))
    poison = CODEC.encode(replace(MISSING, recorded_at=datetime(9999, 12, 31, 23, 59, tzinfo=UTC)))
    assert handle(handler, ROLL_EVENTS, poison).error_code == "DATE_IMPLAUSIBLE"
    assert letters.letters[0].raw == poison
    assert handle(handler, ROLL_EVENTS, CODEC.encode(MISSING), offset=2).applied
    assert [a.rule for a in alerts.alerts] == [Rule.MISSING_NO_DESTINATION]


def test_a_rule_that_fails_dead_letters_its_record_as_unprocessable_and_the_worker_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import processors.timeline as timeline_module

    def broken_rule(*_args: Any) -> Any:
        raise ZeroDivisionError("division by zero while judging 'Zebediah'")

    timeline = memory_timeline(CONFIG)
    metrics = MemoryMetrics()
    handler, alerts, letters = handler_for(timeline, metrics)
    monkeypatch.setitem(timeline_module._APPLY, RollEvent, broken_rule)
    result = handle(handler, ROLL_EVENTS, CODEC.encode(MISSING))
    assert result.error_code == "UNPROCESSABLE"
    [letter] = letters.letters
    assert "ZeroDivisionError" in letter.message
    assert "Zebediah" not in letter.message  # quoted values never reach a dead letter's message
    assert timeline.children.get(MISSING.upn) is None  # refused whole: nothing of it was kept
    monkeypatch.undo()
    assert handle(handler, ROLL_EVENTS, CODEC.encode(MISSING), offset=2).applied
    assert [a.rule for a in alerts.alerts] == [Rule.MISSING_NO_DESTINATION]
    assert metrics.dead_lettered[ROLL_EVENTS, "UNPROCESSABLE"] == 1
    assert metrics.consumed[ROLL_EVENTS] == 2


def test_a_child_state_that_does_not_decode_dead_letters_the_record_not_the_worker() -> None:
    class Corrupt(MemoryChildStore):
        def get(self, upn: str) -> ChildState | None:
            return decode_state(b"\x07garbage", upn)

    handler, _alerts, letters = handler_for(Timeline(Corrupt(), MemoryDeadlineIndex(), MemoryClock(), CONFIG))
    assert handle(handler, ROLL_EVENTS, CODEC.encode(MISSING)).error_code == "UNPROCESSABLE"
    assert "upgrade the worker" in letters.letters[0].message


@pytest.mark.parametrize("value", [None, b"", b"\xc3\x01", b"\xc3\x01" + b"\xff" * 40, b"\x00" * 1000])
def test_a_tombstone_or_junk_never_crashes_the_handler(value: bytes | None) -> None:
    handler, _alerts, letters = handler_for(memory_timeline(CONFIG))
    result = handle(handler, ROLL_EVENTS, value)
    assert not result.applied and result.error_code
    assert letters.letters[0].raw == (value or b"")
    assert CODEC.decode(CODEC.encode(letters.letters[0]), type(letters.letters[0])) == letters.letters[0]


def test_a_sink_failing_after_state_was_written_leaves_the_state_as_it_was() -> None:
    class FailingAlerts(MemoryAlertSink):
        async def send(self, alert: Any) -> None:
            raise ValueError("cannot encode")

    producer = FakeProducer()
    outbox, _lock, _driver = outbox_with(producer)
    writes = ChangelogWrites(outbox)
    table = fake_table({b"unrelated": b"kept"})

    class TableStore(MemoryChildStore):
        def put(self, state: ChildState) -> None:
            super().put(state)
            writes.set(table, state.upn.encode(), b"state")

    store = TableStore()
    timeline = Timeline(store, MemoryDeadlineIndex(), MemoryClock(), CONFIG)
    letters = MemoryDeadLetterSink()
    handler = RecordHandler(CODEC, lambda _p: timeline, FailingAlerts(), letters, RECORD_TYPES, writes=outbox)
    event = Event(2)
    _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    result = asyncio.run(handler.handle(ROLL_EVENTS, 2, 5, None, CODEC.encode(MISSING)))
    assert result.error_code == "UNPROCESSABLE"
    assert table.data == {b"unrelated": b"kept"}  # the changelog-backed table: its write was undone
    # nothing the record wrote goes out: only its dead letter (in a sink of its own here)
    assert [len(pending) for pending in outbox.pending.values()] in ([], [0])
    assert [letter.error_code for letter in letters.letters] == ["UNPROCESSABLE"]


def test_outbox_discard_undoes_the_records_writes_in_reverse_order() -> None:
    outbox, _lock, _driver = outbox_with(FakeProducer())
    writes = ChangelogWrites(outbox)
    table = fake_table({b"a": b"1"})
    event = Event(2)
    _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    writes.set(table, b"a", b"2")
    writes.set(table, b"a", b"3")
    writes.set(table, b"b", b"new")
    writes.delete(table, b"a")
    outbox.discard()
    assert table.data == {b"a": b"1"}
    assert outbox.staged == []


def test_an_old_child_state_without_its_upn_reads_by_its_table_key() -> None:
    stored = json.dumps({"v": 1, "rolls": [["ADDED", "140201", "2025-01-06", 1, "e1"]]}).encode()
    state = decode_state(stored, "L330210024001")
    assert state.upn == "L330210024001"
    assert [entry.event_type for entry in state.rolls] == [EventType.ADDED]
    with pytest.raises(ValueError, match="names no UPN"):
        decode_state(stored)


def test_one_unreadable_child_at_a_tick_is_dead_lettered_and_every_other_child_due_gets_its_alerts() -> None:
    class OneCorrupt(MemoryChildStore):
        broken = True

        def get(self, upn: str) -> ChildState | None:
            if upn == MOVING.upn and self.broken:
                raise ValueError("child state starts with byte 07, not a version this worker reads")
            return super().get(upn)

    store = OneCorrupt()
    index = MemoryDeadlineIndex()
    timeline = Timeline(store, index, MemoryClock(), CONFIG)
    metrics = MemoryMetrics()
    handler, alerts, letters = handler_for(timeline, metrics)
    other = replace(MOVING, upn=OTHER_CHILD, event_id="00000000-0000-0000-0000-c0ffee0000aa")
    store.broken = False
    assert handle(handler, ROLL_EVENTS, CODEC.encode(MOVING)).applied
    assert handle(handler, ROLL_EVENTS, CODEC.encode(other), offset=2).applied
    store.broken = True

    tick = CODEC.encode(ClockTick(date(2025, 3, 20)))
    assert handle(handler, CLOCK_TICKS, tick, offset=3).applied
    assert [(a.rule, a.upn) for a in alerts.alerts] == [(Rule.TRANSITION_NOT_COMPLETED, OTHER_CHILD)]
    [letter] = letters.letters
    assert (letter.error_code, letter.source_topic, letter.raw) == (DEADLINE_CHECK_FAILED, CLOCK_TICKS, tick)
    assert MOVING.upn not in letter.message
    assert index.due_before(date(2025, 3, 21)) == [MOVING.upn]  # its deadline is kept for the next tick
    assert timeline.clock.get() == date(2025, 3, 20)
    assert metrics.unchecked[CLOCK_TICKS] == 1

    store.broken = False  # the cause is fixed (a newer release reads the state): the next tick raises it
    assert handle(handler, CLOCK_TICKS, CODEC.encode(ClockTick(date(2025, 3, 21))), offset=4).applied
    assert [(a.rule, a.upn, a.raised_on) for a in alerts.alerts[1:]] == [
        (Rule.TRANSITION_NOT_COMPLETED, MOVING.upn, date(2025, 3, 21))
    ]
    assert index.due_before(date(2025, 12, 31)) == []


def test_a_child_flooded_with_roll_changes_is_capped_not_grown_past_a_message() -> None:
    timeline = memory_timeline(CONFIG)
    handler, _alerts, letters = handler_for(timeline)
    added = replace(MISSING, event_type=EventType.ADDED, ground=None, destination=None)
    for n in range(MAX_ROLL_ENTRIES + 5):
        day = date(2025, 1, 1).toordinal() + n % 300
        event = replace(
            added,
            event_id=f"00000000-0000-4000-8000-{n:012d}",
            school=replace(added.school, urn=f"{140000 + n // 300:06d}"),
            effective_date=date.fromordinal(day),
            recorded_at=datetime.fromordinal(day).replace(tzinfo=UTC),
        )
        handle(handler, ROLL_EVENTS, CODEC.encode(event), offset=n)
    state = timeline.children.get(MISSING.upn)
    assert state is not None and len(state.rolls) == MAX_ROLL_ENTRIES
    assert {letter.error_code for letter in letters.letters} == {"STATE_LIMIT"}
    assert len(letters.letters) == 5


def test_health_shows_what_was_dead_lettered() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.record_dead_lettered(ROLL_EVENTS, "UNPROCESSABLE")
    metrics.record_dead_lettered(ROLL_EVENTS, "BAD_MARKER")
    metrics.record_dead_lettered(ROLL_EVENTS, "UNPROCESSABLE")
    metrics.deadline_check_failed(CLOCK_TICKS)
    assert metrics.health() == {
        "dead_lettered": {"BAD_MARKER": 1, "UNPROCESSABLE": 2},
        "deadline_checks_failed": 1,
    }



def test_a_dead_letter_of_a_record_near_kafkas_size_limit_is_cut_to_fit_and_says_so() -> None:
    from processors.records import DeadLetter
    from sinks.kafka import MAX_DEAD_LETTER_BYTES, bounded_dead_letter

    raw = b"\xc3\x01" + b"x" * 1_048_000
    encoded = bounded_dead_letter(CODEC, DeadLetter(raw, ROLL_EVENTS, 0, 7, "TEXT_TOO_LONG", "too long"))
    assert len(encoded) <= MAX_DEAD_LETTER_BYTES
    letter = CODEC.decode(encoded, DeadLetter)
    assert raw.startswith(letter.raw) and len(letter.raw) > 900_000
    assert (letter.offset, letter.error_code) == (7, "TEXT_TOO_LONG")
    assert "1,048,002" in letter.message and letter.message.startswith("too long")
    small = DeadLetter(b"abc", ROLL_EVENTS, 0, 8, "BAD_MARKER", "short")
    assert CODEC.decode(bounded_dead_letter(CODEC, small), DeadLetter) == small
