"""Replay over several processes writes exactly what the single-process replay writes, in the same order."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from generator.generate import generate_lines
from generator.options import GeneratorOptions
from processors.calendar import default_calendar
from processors.config import RuleConfig
from processors.records import Alert
from processors.timeline import memory_timeline
from replay.parallel import parallel_replay, shard_of
from replay.run import replay
from schemas.jsonformat import alert_to_line
from tests.scenarios.catalogue import SCENARIOS
from tests.shared import SHARED_SCENARIOS

SHARED = SHARED_SCENARIOS


def single(lines: list[str]) -> tuple[list[bytes], dict[str, int]]:
    alerts: list[Alert] = []
    stats = replay(lines, memory_timeline(RuleConfig(default_calendar())), alerts.append)
    return [alert_to_line(a) for a in alerts], dict(stats.dead_letters)


def parallel(lines: list[str], jobs: int, folder: Path) -> tuple[list[bytes], dict[str, int]]:
    path = folder / "replay.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out: list[bytes] = []
    stats = parallel_replay(path, RuleConfig(default_calendar()), jobs, out.append)
    single_stats = replay(lines, memory_timeline(RuleConfig(default_calendar())), lambda _alert: None)
    assert (stats.records, stats.applied, stats.alerts) == (
        single_stats.records, single_stats.applied, single_stats.alerts
    )
    return out, dict(stats.dead_letters)


@pytest.mark.parametrize("jobs", [2, 3])
def test_generated_year_gives_identical_output(jobs: int, tmp_path: Path) -> None:
    lines = list(generate_lines(GeneratorOptions(pupils=20_000, seed=5, start=date(2024, 9, 1),
                                                 end=date(2025, 8, 31))))
    expected = single(lines)
    assert len(expected[0]) > 100
    assert parallel(lines, jobs, tmp_path) == expected


def test_scenarios_and_bad_lines_give_identical_output(tmp_path: Path) -> None:
    lines = [line for s in SCENARIOS for line in s.lines()]
    lines += [line for p in sorted(SHARED.glob("*.jsonl")) for line in p.read_text().splitlines()]
    lines += ["not json", '{"topic": "roll.events", "value": {}}', '{"topic": "nowhere", "value": {"upn": "x"}}',
              '{"topic": "clock.ticks", "value": {"today": "someday"}}',
              # A tick with a stray field must still reach every shard, or deadlines stall in the others.
              '{"topic": "clock.ticks", "value": {"today": "2099-01-05", "upn": 7}}']
    expected = single(lines)
    assert expected[1], "the bad lines are dead-lettered"
    assert parallel(lines, 2, tmp_path) == expected


def test_ticks_go_to_every_shard_and_children_stay_on_one() -> None:
    tick = '{"topic": "clock.ticks", "value": {"today": "2025-03-05"}}'
    assert shard_of(tick.encode(), 4) is None
    line = '{"topic": "roll.events", "value": {"upn": "L330210024001", "event_id": "x"}}'
    other = '{"topic": "ehe.notifications", "value": {"notification_id": "y", "upn": "L330210024001"}}'
    assert shard_of(line.encode(), 4) == shard_of(other.encode(), 4) is not None
    assert shard_of(b"garbage", 4) == 0
    escaped = '{"topic": "roll.events", "value": {"upn": "\\u004c330210024001", "event_id": "z"}}'
    assert shard_of(escaped.encode(), 4) == shard_of(line.encode(), 4)
    named_like_a_tick = '{"topic": "roll.events", "value": {"upn": "L330210024001", "note": "clock.ticks"}}'
    assert shard_of(named_like_a_tick.encode(), 4) == shard_of(line.encode(), 4)
    stray_upn_on_tick = '{"topic": "clock.ticks", "value": {"today": "2025-01-06", "upn": 7}}'
    assert shard_of(stray_upn_on_tick.encode(), 4) is None


def test_referral_scenarios_give_identical_output_sharded_by_upn_or_referral_id(tmp_path: Path) -> None:
    from tests.scenarios.referrals import REFERRAL_SCENARIOS

    lines = [line for s in REFERRAL_SCENARIOS for line in s.lines()]
    lines += [p.read_text().strip() for p in sorted(SHARED.glob("v2/p09*.jsonl"))]
    expected = single(lines)
    assert len(expected[0]) > 30 and not expected[1]
    assert parallel(lines, 3, tmp_path) == expected
