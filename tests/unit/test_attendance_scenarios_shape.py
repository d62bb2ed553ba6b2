"""The attendance scenarios' shape only: enough of them, distinct names and pupils, known rules, valid lines.

Whether the rules raise the listed alerts is for the scenario replay tests once the attendance rules exist.
"""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from tests.scenarios.attendance import ATTENDANCE_SCENARIOS
from tests.scenarios.builder import Scenario

ATTENDANCE_RULES = {
    "ABSENCE_ENQUIRIES_DUE",
    "NOT_RETURNED_FROM_LEAVE",
    "ABSENCE_REMOVAL_UNSUPPORTED",
    "NO_SHOW_AFTER_ADMISSION",
}
V1_RULES = {
    "MISSING_NO_DESTINATION",
    "TRANSITION_NOT_COMPLETED",
    "TRANSFER_NOT_STARTED",
    "MOVED_OUT_OF_AREA",
    "EHE_NOTIFIED",
    "EHE_NOT_CONFIRMED",
    "EHE_CONSENT_REQUIRED",
    "EHE_PROTECTED_CHILD",
    "ORAL_EHE_INDICATION",
    "EXCLUDED_NO_PROVISION",
    "CHILD_LOCATED",
    "OPEN_CASE_PROTECTED",
}
RECIPIENTS = {"CME_OFFICER", "SOCIAL_CARE", "EHE_SERVICE"}
TOPICS = {"roll.events", "ehe.notifications", "safeguarding.status", "clock.ticks", "attendance.registers"}


def pupils(scenario: Scenario) -> set[str]:
    """Every UPN a scenario's records name."""
    found: set[str] = set()
    for record in scenario.records:
        value = record["value"]
        if record["topic"] == "attendance.registers":
            found.update(mark["upn"] for mark in value["marks"])
        elif "upn" in value:
            found.add(value["upn"])
    return found


def test_there_are_at_least_32_scenarios() -> None:
    assert len(ATTENDANCE_SCENARIOS) >= 32


def test_names_are_unique_and_numbered() -> None:
    names = [s.name for s in ATTENDANCE_SCENARIOS]
    assert len(set(names)) == len(names)
    for name in names:
        assert re.fullmatch(r"a\d{2}_[a-z0-9_]+", name), name


def test_no_pupil_appears_in_two_scenarios() -> None:
    owners = Counter(pupil for s in ATTENDANCE_SCENARIOS for pupil in pupils(s))
    assert [pupil for pupil, count in owners.items() if count > 1] == []


@pytest.mark.parametrize("scenario", ATTENDANCE_SCENARIOS, ids=lambda s: s.name)
def test_scenario_shape(scenario: Scenario) -> None:
    assert scenario.story.strip(), "every scenario tells its story"
    assert scenario.records, "every scenario has records"
    for rule, recipient, la_code, pupil in scenario.expected:
        assert rule in ATTENDANCE_RULES | V1_RULES, rule
        assert recipient in RECIPIENTS, recipient
        assert re.fullmatch(r"\d{3}", la_code), la_code
        assert pupil in pupils(scenario), f"{pupil} is not one of the scenario's pupils"
    for line in scenario.lines():
        record = json.loads(line)
        assert set(record) == {"topic", "value"}
        assert record["topic"] in TOPICS, record["topic"]
        assert isinstance(record["value"], dict)


def test_every_attendance_rule_is_expected_somewhere() -> None:
    expected = {rule for s in ATTENDANCE_SCENARIOS for rule, *_ in s.expected}
    assert expected >= ATTENDANCE_RULES
