"""The CME register on a real SQLite file and a real PostgreSQL 15: migrations, upserts, cases, purge, audit."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from cli.main import main
from config.settings import DashboardCredential
from processors.records import Alert, AlertChild, CaseAction, CaseActionType, Recipient, Rule, Severity
from sinks.register import (
    Base,
    CaseQuery,
    CaseStatus,
    DeliveryOutcome,
    Register,
    RegisterNotReady,
    RetentionPolicy,
    create_register_engine,
    head_revision,
    migrate,
    open_register,
    writer,
)

pytestmark = pytest.mark.integration

UPN_A, UPN_B, UPN_C = "W330215224052", "L330210024001", "B801200005001"
CHILD_A = AlertChild("Zoë-Marie", "O'Connor", date(2014, 8, 17))
CHILD_B = AlertChild("Zebediah", "Quillfeather", date(2013, 7, 16))
CASE_1 = "11111111-1111-5111-8111-111111111111"
CASE_2 = "22222222-2222-5222-8222-222222222222"
CASE_3 = "33333333-3333-5333-8333-333333333333"


def alert(
    number: int,
    rule: Rule,
    recipient: Recipient = Recipient.CME_OFFICER,
    la: str = "331",
    severity: Severity = Severity.HIGH,
    case_id: str | None = CASE_1,
    raised_on: date = date(2025, 3, 4),
    upn: str = UPN_A,
    child: AlertChild = CHILD_A,
) -> Alert:
    return Alert(
        alert_id=f"aaaaaaaa-0000-5000-8000-{number:012d}",
        rule=rule,
        recipient=recipient,
        la_code=la,
        severity=severity,
        upn=upn,
        child=child,
        school_urn="140201",
        raised_on=raised_on,
        reason=f"Reason {number}: left with no known destination.",
        trigger_event_ids=(f"00000000-0000-4000-8000-{number:012d}", "00000000-0000-4000-8000-999999999999"),
        case_id=case_id,
    )


def close(case_id: str, by: str = "A. Officer", at: datetime = datetime(2025, 3, 20, 23, 30, tzinfo=UTC)) -> CaseAction:
    return CaseAction(
        action_id=f"cccccccc-0000-4000-8000-{abs(hash((case_id, by))) % 10**12:012d}",
        upn=UPN_A,
        case_id=case_id,
        action=CaseActionType.CLOSE,
        reason="Family moved to Wales; on roll there",
        by=by,
        at=at,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def register_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/register.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def register(register_url: str) -> Iterator[Register]:
    engine = create_register_engine(register_url)
    migrate(engine)
    engine.dispose()
    opened = open_register(register_url)
    yield opened
    opened.close()


# --- migrations ------------------------------------------------------------------------------------------


def test_migrations_from_empty_build_exactly_the_models(register_url: str) -> None:
    engine = create_register_engine(register_url)
    try:
        assert inspect(engine).get_table_names() == []
        assert migrate(engine) == head_revision() == "0003"
        assert migrate(engine) == "0003"  # a second run changes nothing
        with engine.connect() as connection:
            differences = compare_metadata(
                MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata
            )
        assert differences == []
        assert set(inspect(engine).get_table_names()) == {
            "alembic_version", "children", "cases", "case_holders", "alerts", "deliveries", "audit_events",
        }
    finally:
        engine.dispose()


def test_an_unmigrated_database_is_refused_with_the_fix(register_url: str) -> None:
    with pytest.raises(RegisterNotReady, match="rollwatch register migrate"):
        open_register(register_url)


# --- alerts and idempotency ------------------------------------------------------------------------------


def test_every_alert_field_round_trips(register: Register) -> None:
    original = alert(1, Rule.MISSING_NO_DESTINATION, severity=Severity.IMMEDIATE)
    caseless = alert(2, Rule.EHE_NOTIFIED, Recipient.EHE_SERVICE, severity=Severity.INFO, case_id=None)

    register.record([original, caseless])

    assert register.alert(original.alert_id) == original
    assert register.alert(caseless.alert_id) == caseless
    assert register.alert("00000000-0000-0000-0000-000000000000") is None


def test_an_alert_delivered_twice_is_stored_once(register: Register) -> None:
    first = alert(1, Rule.MISSING_NO_DESTINATION)

    in_one_batch = register.record([first, first])
    again = register.record([first])

    assert (in_one_batch.alerts_new, in_one_batch.alerts_duplicate) == (1, 1)
    assert (again.alerts_new, again.alerts_duplicate) == (0, 1)
    assert register.counts() == {"children": 1, "cases": 1, "case_holders": 1, "alerts": 1, "deliveries": 0}
    assert register.alerts() == [first]


def test_a_batch_is_one_transaction(register: Register, monkeypatch: pytest.MonkeyPatch) -> None:
    good, bad = alert(1, Rule.MISSING_NO_DESTINATION), alert(2, Rule.MOVED_OUT_OF_AREA, case_id=None)
    real = writer.alert_values

    def failing(item: Alert) -> dict[str, object]:
        if item.alert_id == bad.alert_id:
            raise RuntimeError("disk full")
        return real(item)

    monkeypatch.setattr(writer, "alert_values", failing)
    with pytest.raises(RuntimeError):
        register.record([good, bad])

    assert register.counts() == {"children": 0, "cases": 0, "case_holders": 0, "alerts": 0, "deliveries": 0}


def test_the_childs_details_are_the_latest_received(register: Register) -> None:
    register.record([alert(1, Rule.MISSING_NO_DESTINATION)])
    renamed = dataclasses.replace(CHILD_A, surname="Connor")
    register.record([alert(2, Rule.OPEN_CASE_PROTECTED, Recipient.SOCIAL_CARE, "860", child=renamed)])

    summary = register.case(CASE_1)

    assert summary is not None and summary.child == renamed
    assert register.alert(alert(1, Rule.MISSING_NO_DESTINATION).alert_id).child == CHILD_A  # type: ignore[union-attr]


# --- cases -----------------------------------------------------------------------------------------------


def test_an_opening_alert_opens_a_case_held_by_the_officers_la(register: Register) -> None:
    register.record([
        alert(1, Rule.MISSING_NO_DESTINATION, severity=Severity.IMMEDIATE),
        alert(2, Rule.MISSING_NO_DESTINATION, Recipient.SOCIAL_CARE, "860", Severity.IMMEDIATE),
    ])

    summary = register.case(CASE_1)

    assert summary is not None
    assert (summary.upn, summary.child, summary.status) == (UPN_A, CHILD_A, CaseStatus.OPEN)
    assert (summary.opened_on, summary.opening_rule) == (date(2025, 3, 4), Rule.MISSING_NO_DESTINATION)
    assert summary.holders == ("331",)  # social care is told, but only CME officers' LAs hold a case
    assert (summary.severity, summary.alert_count) == (Severity.IMMEDIATE, 2)
    assert (summary.closed_on, summary.closing_reason, summary.closed_by) == (None, None, None)


def test_each_alerted_officers_la_holds_a_cross_la_case(register: Register) -> None:
    register.record([alert(1, Rule.TRANSITION_NOT_COMPLETED, la="331", raised_on=date(2025, 3, 19))])
    register.record([alert(2, Rule.TRANSITION_NOT_COMPLETED, la="332", raised_on=date(2025, 3, 19))])

    summary = register.case(CASE_1)

    assert summary is not None and summary.holders == ("331", "332")
    assert summary.opening_rule is Rule.TRANSITION_NOT_COMPLETED


def test_child_located_closes_the_case(register: Register) -> None:
    register.record([alert(1, Rule.MISSING_NO_DESTINATION)])
    register.record([alert(2, Rule.CHILD_LOCATED, severity=Severity.INFO, raised_on=date(2025, 3, 10))])

    summary = register.case(CASE_1)

    assert summary is not None and summary.status is CaseStatus.CLOSED
    assert (summary.closed_on, summary.closing_reason, summary.closed_by) == (
        date(2025, 3, 10), "child located", "rollwatch",
    )


def test_alerts_of_a_case_arriving_out_of_order_give_the_same_case(register: Register) -> None:
    # Alert topics of different LAs are consumed in no fixed order: the finding may come first.
    register.record([alert(2, Rule.CHILD_LOCATED, la="332", severity=Severity.INFO, raised_on=date(2025, 3, 24))])
    register.record([alert(1, Rule.TRANSITION_NOT_COMPLETED, la="331", raised_on=date(2025, 3, 19))])

    summary = register.case(CASE_1)

    assert summary is not None
    assert (summary.status, summary.closed_on) == (CaseStatus.CLOSED, date(2025, 3, 24))
    assert (summary.opened_on, summary.opening_rule) == (date(2025, 3, 19), Rule.TRANSITION_NOT_COMPLETED)
    assert summary.holders == ("331", "332")


def test_a_case_action_records_who_closed_the_case_when_and_why(register: Register) -> None:
    register.record([alert(1, Rule.MISSING_NO_DESTINATION)])

    result = register.record([close(CASE_1)])

    summary = register.case(CASE_1)
    assert result.cases_closed == 1
    assert summary is not None and summary.status is CaseStatus.CLOSED
    # 23:30 UTC on 20 March is still 20 March in London (GMT until the 30th).
    assert (summary.closed_on, summary.closed_by) == (date(2025, 3, 20), "A. Officer")
    assert summary.closing_reason == "Family moved to Wales; on roll there"


def test_the_first_closure_stands(register: Register) -> None:
    register.record([alert(1, Rule.MISSING_NO_DESTINATION), close(CASE_1, by="First Officer")])

    later = register.record([
        close(CASE_1, by="Second Officer"),
        alert(2, Rule.CHILD_LOCATED, severity=Severity.INFO, raised_on=date(2025, 4, 1)),
    ])

    summary = register.case(CASE_1)
    assert (later.cases_closed, later.actions_ignored) == (0, 1)
    assert summary is not None and (summary.closed_by, summary.closed_on) == ("First Officer", date(2025, 3, 20))


# --- queries ---------------------------------------------------------------------------------------------


@pytest.fixture
def three_cases(register: Register) -> Register:
    register.record([
        alert(1, Rule.MISSING_NO_DESTINATION, la="331", severity=Severity.HIGH, case_id=CASE_1,
              raised_on=date(2025, 1, 10)),
        alert(2, Rule.EHE_NOT_CONFIRMED, la="330", severity=Severity.MEDIUM, case_id=CASE_2,
              raised_on=date(2025, 2, 10), upn=UPN_B, child=CHILD_B),
        alert(3, Rule.EXCLUDED_NO_PROVISION, la="330", severity=Severity.HIGH, case_id=CASE_3,
              raised_on=date(2025, 3, 10), upn=UPN_C),
        alert(4, Rule.EXCLUDED_NO_PROVISION, Recipient.SOCIAL_CARE, "860", Severity.IMMEDIATE, case_id=CASE_3,
              raised_on=date(2025, 3, 10), upn=UPN_C),
        alert(5, Rule.EHE_NOTIFIED, Recipient.EHE_SERVICE, "330", Severity.INFO, case_id=None, upn=UPN_B,
              child=CHILD_B),
        close(CASE_1),
    ])
    return register


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (CaseQuery(), [CASE_3, CASE_2, CASE_1]),
        (CaseQuery(la_code="330"), [CASE_3, CASE_2]),
        (CaseQuery(la_code="860"), []),
        (CaseQuery(status=CaseStatus.OPEN), [CASE_3, CASE_2]),
        (CaseQuery(status=CaseStatus.CLOSED), [CASE_1]),
        (CaseQuery(rule=Rule.EHE_NOT_CONFIRMED), [CASE_2]),
        (CaseQuery(severity=Severity.IMMEDIATE), [CASE_3]),
        (CaseQuery(severity=Severity.HIGH), [CASE_1]),
        (CaseQuery(since=date(2025, 2, 10)), [CASE_3, CASE_2]),
        (CaseQuery(until=date(2025, 2, 9)), [CASE_1]),
        (CaseQuery(la_code="330", status=CaseStatus.OPEN, since=date(2025, 3, 1), until=date(2025, 3, 31)), [CASE_3]),
    ],
)
def test_case_filters(three_cases: Register, query: CaseQuery, expected: list[str]) -> None:
    assert [summary.case_id for summary in three_cases.cases(query)] == expected


def test_alerts_of_a_case_oldest_first(three_cases: Register) -> None:
    assert [a.alert_id[-1] for a in three_cases.alerts(case_id=CASE_3)] == ["3", "4"]
    assert {a.alert_id[-1] for a in three_cases.alerts(la_code="330")} == {"2", "3", "5"}


# --- deliveries ------------------------------------------------------------------------------------------


def test_new_alerts_of_webhook_las_get_a_pending_delivery_and_outcomes_are_recorded(register: Register) -> None:
    to_331, to_860 = alert(1, Rule.MISSING_NO_DESTINATION), alert(2, Rule.OPEN_CASE_PROTECTED, la="860")
    register.record([to_331, to_860], webhook_las={"331"})
    register.record([to_331], webhook_las={"331"})  # a redelivered alert is not sent again

    [pending] = register.pending_deliveries("331", "webhook", 10)
    assert (pending.alert, pending.attempts) == (to_331, 0)
    assert register.pending_deliveries("860", "webhook", 10) == []

    register.record_delivery(to_331.alert_id, "webhook", DeliveryOutcome.PENDING, 2, "HTTP 503", None)
    assert register.pending_deliveries("331", "webhook", 10)[0].attempts == 2
    sent_at = datetime(2025, 3, 4, 9, 0, 5, tzinfo=UTC)
    register.record_delivery(to_331.alert_id, "webhook", DeliveryOutcome.DELIVERED, 3, None, sent_at)

    [record] = register.deliveries()
    assert (record.outcome, record.attempts, record.last_error) == (DeliveryOutcome.DELIVERED, 3, None)
    assert record.delivered_at is not None and record.delivered_at.timestamp() == sent_at.timestamp()
    assert register.pending_deliveries("331", "webhook", 10) == []


def test_a_dead_letter_keeps_its_reason(register: Register) -> None:
    register.record([alert(1, Rule.MISSING_NO_DESTINATION)], webhook_las={"331"})

    register.record_delivery(
        alert(1, Rule.MISSING_NO_DESTINATION).alert_id, "webhook", DeliveryOutcome.DEAD_LETTERED, 1,
        "HTTP 400: the endpoint rejected the alert; not retried", None,
    )

    [record] = register.deliveries()
    assert record.outcome is DeliveryOutcome.DEAD_LETTERED and "HTTP 400" in (record.last_error or "")


# --- retention -------------------------------------------------------------------------------------------


def test_purge_removes_only_what_is_past_retention(register: Register) -> None:
    register.record([
        # Case 1: closed 2018-03-20, held by 331 (six years): goes after 2024-03-20.
        alert(1, Rule.MISSING_NO_DESTINATION, la="331", case_id=CASE_1, raised_on=date(2018, 3, 1)),
        close(CASE_1, at=datetime(2018, 3, 20, 12, tzinfo=UTC)),
        # Case 2: closed 2018-03-20 too, but also held by 330, whose period is ten years.
        alert(2, Rule.TRANSITION_NOT_COMPLETED, la="331", case_id=CASE_2, raised_on=date(2018, 3, 1), upn=UPN_B,
              child=CHILD_B),
        alert(3, Rule.TRANSITION_NOT_COMPLETED, la="330", case_id=CASE_2, raised_on=date(2018, 3, 1), upn=UPN_B,
              child=CHILD_B),
        alert(4, Rule.CHILD_LOCATED, la="331", case_id=CASE_2, raised_on=date(2018, 3, 20), upn=UPN_B,
              child=CHILD_B),
        # Case 3: opened in 2010 and still open: never purged.
        alert(5, Rule.EXCLUDED_NO_PROVISION, la="331", case_id=CASE_3, raised_on=date(2010, 1, 5), upn=UPN_C),
        # Alerts outside any case: one old, one recent.
        alert(6, Rule.EHE_NOTIFIED, Recipient.EHE_SERVICE, "331", Severity.INFO, case_id=None,
              raised_on=date(2017, 6, 1)),
        alert(7, Rule.EHE_NOTIFIED, Recipient.EHE_SERVICE, "331", Severity.INFO, case_id=None,
              raised_on=date(2024, 6, 1)),
    ], webhook_las={"331"})
    policy = RetentionPolicy(default_years=6, years_by_la={"330": 10})
    before = register.counts()

    dry = register.purge(date(2025, 6, 1), policy, dry_run=True)

    assert register.counts() == before
    assert [(item.case_id, item.kept_until) for item in dry.cases] == [(CASE_1, date(2024, 3, 20))]
    assert [(item.ended_on, item.kept_until) for item in dry.caseless_alerts] == [
        (date(2017, 6, 1), date(2023, 6, 1))
    ]
    assert (dry.alert_count, dry.children) == (2, 0)  # child A still has the 2024 alert

    done = register.purge(date(2025, 6, 1), policy, dry_run=False)

    assert done == dry
    assert register.case(CASE_1) is None
    assert [s.case_id for s in register.cases()] == [CASE_2, CASE_3]
    assert {a.alert_id[-1] for a in register.alerts()} == {"2", "3", "4", "5", "7"}
    assert {d.alert_id[-1] for d in register.deliveries()} == {"2", "4", "5", "7"}
    assert register.purge(date(2028, 3, 20), policy, dry_run=False).cases == []  # 330's ten years still run
    last_day_passed = register.purge(date(2028, 3, 21), policy, dry_run=False)
    assert [item.case_id for item in last_day_passed.cases] == [CASE_2]
    assert [s.case_id for s in register.cases()] == [CASE_3]  # open since 2010, and kept


def test_purge_removes_children_nothing_refers_to(register: Register) -> None:
    register.record([
        alert(1, Rule.MISSING_NO_DESTINATION, case_id=CASE_1, raised_on=date(2015, 3, 1)),
        close(CASE_1, at=datetime(2015, 3, 20, 12, tzinfo=UTC)),
    ])

    report = register.purge(date(2025, 1, 1), RetentionPolicy(), dry_run=False)

    assert (len(report.cases), report.alert_count, report.children) == (1, 1, 1)
    assert register.counts() == {"children": 0, "cases": 0, "case_holders": 0, "alerts": 0, "deliveries": 0}


def test_a_register_at_the_first_schema_migrates_to_this_release(register_url: str) -> None:
    engine = create_register_engine(register_url)
    try:
        assert migrate(engine, "0001") == "0001"
        Register(engine).record([alert(1, Rule.MISSING_NO_DESTINATION)])
        assert migrate(engine) == "0003"
        assert Register(engine).counts()["alerts"] == 1
        assert "audit_events" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


# --- trends ----------------------------------------------------------------------------------------------


def test_trends_count_alike_on_both_databases(register: Register) -> None:
    """The dashboard's trend query groups by day and compares dates; PostgreSQL must agree with SQLite."""
    from tests.unit import test_trends_query as seeded

    register.record(seeded.ALERTS)
    officer = register.la_trends(seeded.COVENTRY, seeded.TODAY, Recipient.CME_OFFICER)
    assert officer.alerts == {
        Rule.MISSING_NO_DESTINATION: seeded.weekly(w2=1, w10=1, w11=1),
        Rule.TRANSITION_NOT_COMPLETED: seeded.weekly(w0=1),
        Rule.CHILD_LOCATED: seeded.weekly(w7=1),
    }
    assert officer.open_cases == (1, 1, 2, 2, 2, 2, 2, 1, 1, 1, 2, 3)
    social_care = register.la_trends(seeded.COVENTRY, seeded.TODAY, Recipient.SOCIAL_CARE)
    assert social_care.open_cases == seeded.weekly(w6=1, w7=1, w8=1, w9=1, w10=1, w11=1)


# --- audit -----------------------------------------------------------------------------------------------


async def test_a_dashboard_view_and_cases_show_leave_audit_rows_that_audit_list_shows(
    register: Register, register_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from web.dashboard import DashboardAccess, LADashboard

    register.record([alert(1, Rule.MISSING_NO_DESTINATION), alert(2, Rule.MISSING_NO_DESTINATION,
                                                                 recipient=Recipient.SOCIAL_CARE, upn=UPN_B,
                                                                 child=CHILD_B, case_id=CASE_2)])
    token = "officer-token-of-coventry-0123456789"
    credential = DashboardCredential(la="331", role="cme-officer", sha256=hashlib.sha256(token.encode()).hexdigest())
    dashboard = LADashboard(DashboardAccess({"cov-1": credential}), lambda: register)
    reply = await dashboard.cases_json("331", {"Authorization": f"Bearer {token}"}, {})
    assert reply.status == 200 and UPN_B not in reply.body

    monkeypatch.setenv("ROLLWATCH_DATABASE_URL", register_url)
    assert main(["cases", "show", CASE_1, "--by", "A. Officer"]) == 0
    capsys.readouterr()
    rows = register.audit_events("331")
    assert [(row.principal, row.role, row.channel, row.case_id, row.upn) for row in rows] == [
        ("token cov-1", "cme-officer", "dashboard-json", CASE_1, UPN_A),
        ("A. Officer", "register", "cli cases show", CASE_1, UPN_A),
    ]
    assert main(["audit", "list", "--la", "331", "--since", "2020-01-01", "--json"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 2 and '"principal": "token cov-1"' in listed[0] and '"upn": "W330215224052"' in listed[1]

    purged = register.purge(date(2099, 1, 1), RetentionPolicy(), dry_run=False)
    assert purged.audit_events == 2 and register.audit_events() == []
