"""A referral case linked to a child closes in the register when the worker ends it: with the child's case."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from processors.apply import apply_record
from processors.calendar import default_calendar
from processors.config import RuleConfig
from processors.records import CaseAction, CloseReason, CMEReferral, InputRecord, Rule
from processors.rules import referral_case_id
from processors.timeline import MemoryChildStore, memory_timeline
from schemas.jsonformat import parse_line
from sinks.register import Register, migrate
from sinks.register.actions import closing_action
from sinks.register.schema import CaseStatus
from tests.scenarios.builder import BHM_A, COV_A, added, removed, upn
from tests.scenarios.referrals import action, referral, referral_id

CHILD = upn("331", 980_001)


class Both:
    """The worker's rules in-process and a register fed what `register sync` would read from the topics."""

    def __init__(self, register: Register) -> None:
        self.timeline = memory_timeline(RuleConfig(default_calendar()))
        self.register = register
        self.fed: list[Any] = []

    def send(self, *records: InputRecord | dict[str, Any]) -> None:
        for given in records:
            record = parse_line(json.dumps(given))[1] if isinstance(given, dict) else given
            alerts = list(apply_record(self.timeline, record).alerts)
            # case.actions and cme.referrals are read by the register as well as the worker.
            items = [record, *alerts] if isinstance(record, CaseAction | CMEReferral) else alerts
            self.fed += items
            self.register.record(items)

    def worker_closed(self) -> set[str]:
        children = self.timeline.children
        assert isinstance(children, MemoryChildStore)
        return {case_id for state in children for case_id in state.closed_case_ids}

    def status(self, case_id: str) -> CaseStatus:
        summary = self.register.case(case_id)
        assert summary is not None, case_id
        return summary.status

    def child_case(self) -> str:
        state = self.timeline.children.get(CHILD)
        assert state is not None and state.case is not None
        return state.case.case_id

    def close(self, case_id: str) -> None:
        """An officer's close, built from the register's case as `rollwatch cases close` and the dashboard do."""
        self.send(closing_action(self.register.case(case_id), case_id, "closed in the test", "officer.331",
                                 close_reason=CloseReason.LOCATED_AT_SCHOOL, la_code="331"))

    def agree(self, *case_ids: str) -> None:
        closed = self.worker_closed()
        assert {case_id: self.status(case_id) is CaseStatus.CLOSED for case_id in case_ids} == {
            case_id: case_id in closed for case_id in case_ids
        }
        # A redelivery of everything the register read changes none of it.
        before = {case_id: self.register.case(case_id) for case_id in case_ids}
        self.register.record(self.fed)
        assert {case_id: self.register.case(case_id) for case_id in case_ids} == before


@pytest.fixture
def both() -> Iterator[Both]:
    register = Register.from_url("sqlite://")
    migrate(register.engine)
    yield Both(register)
    register.close()


def linked_into_open_case(both: Both) -> tuple[str, str]:
    """Birmingham's case for the child is open when Coventry links a referral without a UPN to it."""
    rid = referral_id()
    both.send(removed(CHILD, BHM_A, "2025-03-04", "I_CONTINUOUS_ABSENCE"), referral(None, "331", "2025-03-05", rid=rid))
    child_case, referral_case = both.child_case(), referral_case_id(rid)
    both.send(action("LINK", referral_case, pupil=CHILD, rid=rid))
    assert both.child_case() == child_case and both.status(referral_case) is CaseStatus.OPEN
    return child_case, referral_case


def test_child_located_closes_the_referral_case_linked_into_the_childs_case(both: Both) -> None:
    child_case, referral_case = linked_into_open_case(both)
    both.send(added(CHILD, COV_A, "2025-03-17"))
    (located,) = {a.case_id for a in both.fed if getattr(a, "rule", None) is Rule.CHILD_LOCATED}
    # The alert names the child's case; the register's link closes the referral's with it.
    assert located == child_case
    assert both.status(referral_case) is CaseStatus.CLOSED and both.status(child_case) is CaseStatus.CLOSED
    summary = both.register.case(referral_case)
    assert summary is not None and (summary.closing_reason, summary.closed_by) == ("child located", "rollwatch")
    both.agree(child_case, referral_case)


def test_a_referral_case_linked_to_a_child_with_no_case_is_closed_by_the_alert_itself(both: Both) -> None:
    rid = referral_id()
    referral_case = referral_case_id(rid)
    both.send(referral(None, "331", "2025-03-03", rid=rid), action("LINK", referral_case, pupil=CHILD, rid=rid))
    assert both.child_case() == referral_case
    both.send(added(CHILD, COV_A, "2025-03-17"))
    assert both.status(referral_case) is CaseStatus.CLOSED
    both.agree(referral_case)


def test_closing_the_childs_case_closes_the_linked_referral_case(both: Both) -> None:
    child_case, referral_case = linked_into_open_case(both)
    both.close(child_case)
    assert both.status(referral_case) is CaseStatus.CLOSED
    both.agree(child_case, referral_case)


def test_closing_the_linked_referral_case_leaves_the_childs_case_open_until_located(both: Both) -> None:
    child_case, referral_case = linked_into_open_case(both)
    both.close(referral_case)
    assert both.status(referral_case) is CaseStatus.CLOSED and both.status(child_case) is CaseStatus.OPEN
    both.agree(child_case, referral_case)
    both.send(added(CHILD, COV_A, "2025-03-17"))
    assert both.status(child_case) is CaseStatus.CLOSED
    summary = both.register.case(referral_case)
    assert summary is not None and summary.closed_by == "officer.331"  # the first closure stands
    both.agree(child_case, referral_case)
