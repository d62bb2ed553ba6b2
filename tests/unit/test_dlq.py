"""`rollwatch dlq`: ids, --since, topic selection, list lines without personal data, replacement files."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from cli.commands.dlq import (
    DeadLetterMetrics,
    DlqError,
    Entry,
    LetterId,
    count_lines,
    counts,
    dlq_topics,
    entry_line,
    parse_since,
    read_replacements,
    replay_line,
    selected,
    show_text,
)
from config.settings import Settings
from processors.records import DeadLetter
from schemas.codec import AvroCodec
from schemas.jsonfields import record_to_json
from tests.unit.test_validation import REMOVED

SETTINGS = Settings(topic_prefix="t1.")
CODEC = AvroCodec()
WHEN = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)


def entry(offset: int = 3, code: str = "DATE_IMPLAUSIBLE", raw: bytes | None = None, when: datetime = WHEN) -> Entry:
    letter = DeadLetter(
        CODEC.encode(REMOVED) if raw is None else raw, "t1.roll.events", 0, 40 + offset, code, "a date is implausible"
    )
    return Entry(LetterId("t1.roll.events.dlq", 0, offset), int(when.timestamp() * 1000), REMOVED.upn.encode(), letter)


def test_an_id_reads_back_from_its_text() -> None:
    letter_id = LetterId.parse("t1.roll.events.dlq:2:17")
    assert letter_id == LetterId("t1.roll.events.dlq", 2, 17)
    assert str(letter_id) == "t1.roll.events.dlq:2:17"


@pytest.mark.parametrize("text", ["roll.events:0:1", "roll.events.dlq:x:1", "roll.events.dlq:1", "", "a.dlq:1:-2"])
def test_what_is_not_an_id_is_refused(text: str) -> None:
    with pytest.raises(DlqError, match="is not a dead letter id"):
        LetterId.parse(text)


def test_since_takes_a_date_a_timestamp_or_an_age() -> None:
    assert parse_since("2026-12-01") == datetime(2026, 12, 1, tzinfo=UTC)
    assert parse_since("2026-12-01T10:00:00Z") == datetime(2026, 12, 1, 10, tzinfo=UTC)
    assert parse_since("2026-12-01T10:00:00") == datetime(2026, 12, 1, 10, tzinfo=UTC)
    assert abs(parse_since("7d") - (datetime.now(UTC) - timedelta(days=7))) < timedelta(seconds=5)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_since("last tuesday")


def test_topics_are_every_inputs_dlq_or_the_one_named_under_the_prefix() -> None:
    every = dlq_topics(SETTINGS)
    assert len(every) == 7 and all(t.startswith("t1.") and t.endswith(".dlq") for t in every)
    for name in ("roll.events", "roll.events.dlq", "t1.roll.events", "t1.roll.events.dlq"):
        assert dlq_topics(SETTINGS, name) == ["t1.roll.events.dlq"]
    with pytest.raises(DlqError, match="not an input topic"):
        dlq_topics(SETTINGS, "la.331.alerts.cme-officer")


def test_a_list_line_names_no_child_unless_asked() -> None:
    line = entry_line(entry(), SETTINGS)
    assert line == (
        "t1.roll.events.dlq:0:3  2026-12-07T09:30:00Z  t1.roll.events:0:43  DATE_IMPLAUSIBLE  a date is implausible"
    )
    for personal in (REMOVED.child.forename, REMOVED.child.surname, REMOVED.upn):
        assert personal not in line
    shown = entry_line(entry(), SETTINGS, show=True)
    assert REMOVED.child.surname in shown and json.dumps(record_to_json(REMOVED), ensure_ascii=False) in shown
    undecodable = entry_line(entry(raw=b"\xc3\x01" + b"\xff" * 64), SETTINGS, show=True)
    assert undecodable.endswith("raw 66 bytes: c301" + "ff" * 30 + "...")


def test_counts_by_topic_and_code_and_filters() -> None:
    old = entry(1, when=WHEN - timedelta(days=3))
    entries = [old, entry(2), entry(3, code="BAD_MARKER")]
    assert counts(entries) == Counter(
        {("t1.roll.events.dlq", "DATE_IMPLAUSIBLE"): 2, ("t1.roll.events.dlq", "BAD_MARKER"): 1}
    )
    assert selected(entries, "DATE_IMPLAUSIBLE", WHEN - timedelta(days=1)) == [entries[1]]
    assert count_lines(counts(entries)) == [
        "t1.roll.events.dlq BAD_MARKER              1",
        "t1.roll.events.dlq DATE_IMPLAUSIBLE        2",
        "total                                      3",
    ]
    assert count_lines(Counter()) == ["no dead letters"]


def test_show_gives_the_raw_bytes_and_the_record_as_a_replay_line() -> None:
    text = show_text(SETTINGS, entry(), None)
    assert f"raw ({len(CODEC.encode(REMOVED))} bytes): {CODEC.encode(REMOVED).hex()}" in text
    assert replay_line(SETTINGS, entry().letter, REMOVED) in text
    assert json.loads(replay_line(SETTINGS, entry().letter, REMOVED))["topic"] == "roll.events"
    assert "(does not decode)" in show_text(SETTINGS, entry(raw=b"junk"), None)


def test_a_replacement_file_gives_one_valid_record_per_id(tmp_path: Path) -> None:
    path = tmp_path / "fixed.jsonl"
    path.write_text(replay_line(SETTINGS, entry().letter, REMOVED) + "\n\n")
    assert read_replacements(path, [entry()], SETTINGS) == [REMOVED]
    with pytest.raises(DlqError, match="1 records for 2 dead letters"):
        read_replacements(path, [entry(1), entry(2)], SETTINGS)
    bad = dict(record_to_json(REMOVED), upn="A000000000000")
    path.write_text(json.dumps({"topic": "roll.events", "value": bad}) + "\n")
    with pytest.raises(DlqError, match="line 1 is not valid: UPN_") as refused:
        read_replacements(path, [entry()], SETTINGS)
    assert "A000000000000" not in str(refused.value)
    path.write_text(json.dumps({"topic": "clock.ticks", "value": {"today": "2025-03-04"}}) + "\n")
    with pytest.raises(DlqError, match=r"is a clock\.ticks record"):
        read_replacements(path, [entry()], SETTINGS)


def test_the_gauge_holds_the_latest_counts_only() -> None:
    registry = CollectorRegistry()
    metrics = DeadLetterMetrics(registry)
    metrics.update(Counter({("t1.roll.events.dlq", "BAD_MARKER"): 2, ("t1.clock.ticks.dlq", "DATE_IMPLAUSIBLE"): 1}))
    metrics.update(Counter({("t1.roll.events.dlq", "BAD_MARKER"): 1}))
    text = generate_latest(registry).decode()
    assert 'rollwatch_dead_letters{error_code="BAD_MARKER",topic="t1.roll.events.dlq"} 1.0' in text
    assert "clock.ticks" not in text
