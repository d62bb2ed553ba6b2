"""Alert and case ids stay exactly what design.md defines: uuid5 over the documented name."""

from __future__ import annotations

import random
import uuid

import pytest

from processors.records import Recipient, Rule
from processors.rules import ALERT_NAMESPACE, CASE_NAMESPACE, alert_id, uuid5_text


def _names() -> list[str]:
    chance = random.Random(7)
    alphabet = "abcXYZ0189|-_ éøł€\U0001d518"
    names = ["", "|", "MISSING_NO_DESTINATION|CME_OFFICER|331|J336631523466|126377|2024-09-30"]
    names += ["".join(chance.choice(alphabet) for _ in range(chance.randint(1, 120))) for _ in range(2_000)]
    return names


@pytest.mark.parametrize("namespace", [ALERT_NAMESPACE, CASE_NAMESPACE, uuid.NAMESPACE_DNS])
def test_uuid5_text_is_the_standard_library_uuid5(namespace: uuid.UUID) -> None:
    for name in _names():
        assert uuid5_text(namespace, name) == str(uuid.uuid5(namespace, name)), name


def test_alert_id_is_uuid5_of_the_documented_name() -> None:
    got = alert_id(Rule.MISSING_NO_DESTINATION, Recipient.CME_OFFICER, "331", "J336631523466", "126377|2024-09-30")

    name = "MISSING_NO_DESTINATION|CME_OFFICER|331|J336631523466|126377|2024-09-30"
    assert got == str(uuid.uuid5(ALERT_NAMESPACE, name))
    assert uuid.UUID(got).version == 5
