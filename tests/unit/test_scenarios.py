"""Every scenario, the shared worked examples and our own, replayed in-process against its expected alerts."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from processors.calendar import default_calendar
from processors.config import RuleConfig
from processors.records import Alert
from processors.timeline import memory_timeline
from replay.run import replay
from tests.scenarios.attendance import ATTENDANCE_SCENARIOS
from tests.scenarios.catalogue import SCENARIOS
from tests.scenarios.referrals import REFERRAL_SCENARIOS
from tests.shared import SHARED_SCENARIOS

SHARED = SHARED_SCENARIOS
SHARED_FILES = sorted([*SHARED.glob("*.jsonl"), *SHARED.glob("v2/*.jsonl")])


def run(lines: list[str]) -> list[Alert]:
    alerts: list[Alert] = []
    replay(lines, memory_timeline(RuleConfig(default_calendar())), alerts.append)
    return alerts


def keys(alerts: list[Alert]) -> Counter[tuple[str, str, str, str]]:
    return Counter((str(a.rule), str(a.recipient), a.la_code, a.upn) for a in alerts)


def test_shared_scenarios_are_present() -> None:
    assert len(SHARED_FILES) >= 6, f"expected the worked examples in {SHARED}"


@pytest.mark.parametrize("path", SHARED_FILES, ids=lambda p: p.stem)
def test_shared_scenario(path: Path) -> None:
    expected = json.loads(path.with_name(path.stem + ".expected.json").read_text())
    alerts = run(path.read_text().splitlines())
    assert keys(alerts) == Counter(tuple(e) for e in expected)
    assert len({a.alert_id for a in alerts}) == len(alerts)


@pytest.mark.parametrize("scenario", [*SCENARIOS, *ATTENDANCE_SCENARIOS, *REFERRAL_SCENARIOS], ids=lambda s: s.name)
def test_own_scenario(scenario: object) -> None:
    from tests.scenarios.builder import Scenario

    assert isinstance(scenario, Scenario)
    alerts = run(scenario.lines())
    assert keys(alerts) == Counter(scenario.expected), scenario.story
    assert len({a.alert_id for a in alerts}) == len(alerts)


def test_there_are_at_least_thirty_own_scenarios_covering_every_rule() -> None:
    from processors.records import Rule

    assert len(SCENARIOS) >= 30 and len(ATTENDANCE_SCENARIOS) >= 30 and len(REFERRAL_SCENARIOS) >= 15
    covered = {rule for s in [*SCENARIOS, *ATTENDANCE_SCENARIOS, *REFERRAL_SCENARIOS] for rule, *_ in s.expected}
    assert covered == {str(rule) for rule in Rule}


def test_own_scenarios_apply_every_record_they_hold_unless_they_test_refusals() -> None:
    # A referral scenario whose case action were refused would still pass on its alerts alone.
    for scenario in REFERRAL_SCENARIOS:
        stats = replay(scenario.lines(), memory_timeline(RuleConfig(default_calendar())), lambda alert: None)
        assert not stats.dead_letters, (scenario.name, stats.dead_letters)
