"""The register's trend query: alerts per ISO week by rule and open cases at each week's end, scoped as the
dashboard's lists are (one LA, one role), over SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

import pytest

from processors.records import Alert, AlertChild, Recipient, Rule, Severity
from sinks.register import LATrends, Register, migrate
from sinks.register.queries import TREND_WEEKS

COVENTRY, DUDLEY = "331", "332"
#: A Friday; the twelve weeks run from Monday 23 Dec 2024 to this week, Monday 10 Mar 2025.
TODAY = date(2025, 3, 14)
CHILD = AlertChild("Amelia", "Okafor", date(2014, 5, 2))
MONDAYS = tuple(date(2024, 12, 23) + timedelta(weeks=index) for index in range(12))


def case_id(letter: str) -> str:
    return f"{letter * 8}-0000-5000-8000-000000000000"


def alert(
    number: int, raised_on: date, rule: Rule = Rule.MISSING_NO_DESTINATION, la: str = COVENTRY,
    recipient: Recipient = Recipient.CME_OFFICER, case: str | None = None,
) -> Alert:
    return Alert(
        alert_id=f"bbbbbbbb-0000-5000-8000-{number:012d}", rule=rule, recipient=recipient, la_code=la,
        severity=Severity.IMMEDIATE if recipient is Recipient.SOCIAL_CARE else Severity.HIGH,
        upn=f"A331{number:09d}", child=CHILD, school_urn="140201", raised_on=raised_on,
        reason=f"Reason {number}.", case_id=None if case is None else case_id(case),
    )


ALERTS = [
    # Case a: opened before the window and still open, so open at every week's end.
    alert(1, date(2024, 12, 10), case="a"),
    # Case d: opened and closed before the window.
    alert(2, date(2024, 11, 1), case="d"),
    alert(3, date(2024, 12, 1), Rule.CHILD_LOCATED, case="d"),
    # The day before the window, its first day, and the day after today.
    alert(4, date(2024, 12, 22)),
    alert(5, date(2024, 12, 23), Rule.TRANSITION_NOT_COMPLETED),
    alert(6, date(2025, 3, 15)),
    # Case b: opened in the week of 6 Jan, closed on Sunday 16 Feb, so not open at that week's end.
    alert(7, date(2025, 1, 8), case="b"),
    alert(8, date(2025, 2, 16), Rule.CHILD_LOCATED, case="b"),
    # Case c: opened on Sunday 9 Mar, the last day of its week; case g: opened today.
    alert(9, date(2025, 3, 9), case="c"),
    alert(10, date(2025, 3, 14), case="g"),
    # Coventry's social care: case f, which Coventry's CME officer does not hold.
    alert(11, date(2025, 2, 3), recipient=Recipient.SOCIAL_CARE, case="f"),
    # Coventry's EHE service.
    alert(12, date(2025, 3, 5), Rule.EHE_NOTIFIED, recipient=Recipient.EHE_SERVICE),
    # Dudley's officer: case e.
    alert(13, date(2025, 1, 1), la=DUDLEY, case="e"),
]


def weekly(**counts: int) -> tuple[int, ...]:
    """Twelve weekly counts, zero but for the weeks named `w<index>`."""
    return tuple(counts.get(f"w{index}", 0) for index in range(12))


@pytest.fixture(scope="module")
def register() -> Iterator[Register]:
    opened = Register.from_url("sqlite://")
    migrate(opened.engine)
    opened.record(ALERTS)
    yield opened
    opened.close()


def test_weeks_are_the_twelve_iso_weeks_to_today(register: Register) -> None:
    trends = register.la_trends(COVENTRY, TODAY, Recipient.CME_OFFICER)
    assert TREND_WEEKS == 12
    assert trends.weeks == MONDAYS
    assert all(monday.isoweekday() == 1 for monday in trends.weeks)
    assert trends.week_ends[0] == date(2024, 12, 29)
    assert trends.week_ends[-1] == TODAY  # the current week has not ended


def test_a_cme_officer_counts_the_las_officer_alerts_by_rule_and_week(register: Register) -> None:
    trends = register.la_trends(COVENTRY, TODAY, Recipient.CME_OFFICER)
    # In Rule order; the social-care, EHE and Dudley alerts, and those outside the weeks, are not counted.
    assert trends.alerts == {
        Rule.MISSING_NO_DESTINATION: weekly(w2=1, w10=1, w11=1),
        Rule.TRANSITION_NOT_COMPLETED: weekly(w0=1),
        Rule.CHILD_LOCATED: weekly(w7=1),
    }
    assert trends.alerts_total == 5


def test_open_cases_are_those_opened_by_and_not_closed_by_each_weeks_end(register: Register) -> None:
    trends = register.la_trends(COVENTRY, TODAY, Recipient.CME_OFFICER)
    #                          a  a  ab ab ab ab ab a  a  a  ac acg
    assert trends.open_cases == (1, 1, 2, 2, 2, 2, 2, 1, 1, 1, 2, 3)


def test_social_care_sees_its_alerts_and_the_cases_of_children_it_was_alerted_about(register: Register) -> None:
    trends = register.la_trends(COVENTRY, TODAY, Recipient.SOCIAL_CARE)
    assert trends.alerts == {Rule.MISSING_NO_DESTINATION: weekly(w6=1)}
    assert trends.open_cases == weekly(w6=1, w7=1, w8=1, w9=1, w10=1, w11=1)


def test_the_ehe_service_sees_its_notices_and_works_no_cases(register: Register) -> None:
    trends = register.la_trends(COVENTRY, TODAY, Recipient.EHE_SERVICE)
    assert trends.alerts == {Rule.EHE_NOTIFIED: weekly(w10=1)}
    assert trends.open_cases is None


def test_another_la_sees_only_its_own(register: Register) -> None:
    trends = register.la_trends(DUDLEY, TODAY, Recipient.CME_OFFICER)
    assert trends.alerts == {Rule.MISSING_NO_DESTINATION: weekly(w1=1)}
    assert trends.open_cases == (0,) + (1,) * 11
    nobody = register.la_trends("336", TODAY, Recipient.CME_OFFICER)
    assert nobody.alerts == {} and nobody.alerts_total == 0 and nobody.open_cases == (0,) * 12


def test_the_trends_never_count_more_than_the_lists_show(register: Register) -> None:
    """The same scoping as the dashboard's lists: every alert counted is one the role's list holds."""
    for la, recipient in [(COVENTRY, role) for role in Recipient] + [(DUDLEY, Recipient.CME_OFFICER)]:
        trends = register.la_trends(la, TODAY, recipient)
        listed = register.la_register_view(la, None, None, 1000, recipient)
        in_weeks = [item for item in listed.alerts if MONDAYS[0] <= item.raised_on <= TODAY]
        assert trends.alerts_total == len(in_weeks), (la, recipient)
        if trends.open_cases is not None:
            assert trends.open_cases[-1] == len(listed.cases), (la, recipient)
        else:
            assert listed.cases == []


def test_fewer_weeks_and_a_sunday(register: Register) -> None:
    one = register.la_trends(COVENTRY, TODAY, Recipient.CME_OFFICER, weeks=1)
    assert one.weeks == (date(2025, 3, 10),)
    assert one.alerts == {Rule.MISSING_NO_DESTINATION: (1,)} and one.open_cases == (3,)
    sunday = register.la_trends(COVENTRY, date(2025, 3, 9), Recipient.CME_OFFICER, weeks=2)
    assert sunday.weeks == (date(2025, 2, 24), date(2025, 3, 3))
    assert sunday.week_ends == (date(2025, 3, 2), date(2025, 3, 9))
    assert sunday.alerts == {Rule.MISSING_NO_DESTINATION: (0, 1)} and sunday.open_cases == (1, 2)
    with pytest.raises(ValueError, match="at least 1"):
        register.la_trends(COVENTRY, TODAY, Recipient.CME_OFFICER, weeks=0)


def test_social_care_list_filters_still_apply_through_the_shared_scope(register: Register) -> None:
    immediate = register.la_register_view(COVENTRY, Severity.IMMEDIATE, None, 10, Recipient.SOCIAL_CARE)
    assert [item.summary.case_id for item in immediate.cases] == [case_id("f")]
    assert register.la_register_view(COVENTRY, Severity.HIGH, None, 10, Recipient.SOCIAL_CARE).cases == []
    by_rule = register.la_register_view(COVENTRY, None, Rule.EXCLUDED_NO_PROVISION, 10, Recipient.SOCIAL_CARE)
    assert by_rule.cases == []


def test_the_dataclass_totals() -> None:
    trends = LATrends(TODAY, MONDAYS[:2], {Rule.CHILD_LOCATED: (2, 3)}, None)
    assert trends.alerts_total == 5
    assert trends.week_ends == (date(2024, 12, 29), date(2025, 1, 5))
