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
from sqlalchemy import Engine, inspect, text

from cli.main import main
from config.settings import DashboardCredential
from processors.records import (
    Alert,
    AlertChild,
    CaseAction,
    CaseActionType,
    CaseEnquiry,
    CloseReason,
    CMEReferral,
    EnquiryKind,
    Recipient,
    ReferralChild,
    ReferralConcern,
    Referrer,
    ReferrerAgency,
    Rule,
    Severity,
)
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


REFERRAL = "44444444-4444-4444-8444-444444444444"
CASE_R = "55555555-5555-5555-8555-555555555555"


def referral(la: str = "331", forename: str = "Zoe Marie", surname: str = "OConnor") -> CMEReferral:
    return CMEReferral(
        referral_id=REFERRAL, received_on=date(2025, 3, 10), la_code=la, upn=None,
        child=ReferralChild(forename, surname, date(2014, 8, 17), "CV1 1AA"), concern=ReferralConcern.NOT_IN_SCHOOL,
        referrer=Referrer(ReferrerAgency.HEALTH, "H. Visitor", "01234 567890"), details="Seen at the clinic.",
    )


def referral_alert(number: int = 90, la: str = "331") -> Alert:
    return Alert(
        alert_id=f"aaaaaaaa-0000-5000-8000-{number:012d}", rule=Rule.REFERRAL_NOT_ON_ROLL,
        recipient=Recipient.CME_OFFICER, la_code=la, severity=Severity.HIGH, upn=None, child=None, school_urn=None,
        raised_on=date(2025, 3, 10), reason="Referred; on roll at no school.", trigger_event_ids=(REFERRAL,),
        case_id=CASE_R, referral_id=REFERRAL,
    )


def case_work(
    number: int, kind: CaseActionType, case_id: str = CASE_R, upn: str | None = None, **fields: object
) -> CaseAction:
    base: dict[str, object] = {
        "action_id": f"dddddddd-0000-4000-8000-{number:012d}", "upn": upn, "case_id": case_id, "action": kind,
        "reason": "Visited the address; nobody home.", "by": "A. Officer",
        "at": datetime(2025, 3, 11, 10, number % 60, tzinfo=UTC),
        "referral_id": REFERRAL if case_id == CASE_R else None, "la_code": "331",
    }
    base.update(fields)
    return CaseAction(**base)  # type: ignore[arg-type]


def note(case_id: str = CASE_R, number: int = 1) -> CaseAction:
    return case_work(number, CaseActionType.NOTE, case_id, enquiry=CaseEnquiry(EnquiryKind.HOME_VISIT, "No answer"))


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
        assert migrate(engine) == head_revision() == "0004"
        assert migrate(engine) == "0004"  # a second run changes nothing
        with engine.connect() as connection:
            differences = compare_metadata(
                MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata
            )
        assert differences == []
        assert set(inspect(engine).get_table_names()) == {
            "alembic_version", "children", "cases", "case_holders", "alerts", "deliveries", "audit_events",
            "referrals", "case_enquiries", "case_links",
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


def _old_rows(engine: Engine, revision: str) -> None:
    """A child, a case held by LA 331 and its alert, written as the release at `revision` wrote them (this
    release's models know columns the older schemas lack)."""
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO children VALUES (:upn, 'Amelia', 'Okafor', :born)"),
            {"upn": UPN_A, "born": date(2014, 5, 2)},
        )
        connection.execute(
            text("INSERT INTO cases (case_id, upn, opened_on, opening_rule, status) "
                 "VALUES (:case, :upn, :opened, 'MISSING_NO_DESTINATION', 'open')"),
            {"case": CASE_1, "upn": UPN_A, "opened": date(2025, 3, 3)},
        )
        connection.execute(text("INSERT INTO case_holders VALUES (:case, '331')"), {"case": CASE_1})
        connection.execute(
            text("INSERT INTO alerts VALUES ('aaaaaaaa-0000-5000-8000-000000000001', 'MISSING_NO_DESTINATION', "
                 "'CME_OFFICER', '331', 'HIGH', :upn, 'Amelia', 'Okafor', :born, '140201', :case, :raised, "
                 "'Removed.', '[]')"),
            {"upn": UPN_A, "born": date(2014, 5, 2), "case": CASE_1, "raised": date(2025, 3, 3)},
        )
        if revision >= "0002":
            connection.execute(
                text("INSERT INTO audit_events (at, principal, la_code, role, channel, case_id, upn) "
                     "VALUES (:at, 'A. Officer', '331', 'register', 'cli cases show', :case, :upn)"),
                {"at": datetime(2025, 3, 4, tzinfo=UTC), "case": CASE_1, "upn": UPN_A},
            )


@pytest.mark.parametrize("revision", ["0001", "0003"])
def test_an_older_register_with_data_migrates_to_this_release_and_keeps_its_rows(
    register_url: str, revision: str
) -> None:
    engine = create_register_engine(register_url)
    try:
        assert migrate(engine, revision) == revision
        _old_rows(engine, revision)
        assert migrate(engine) == "0004"
        register = Register(engine)
        assert register.counts() == {"children": 1, "cases": 1, "case_holders": 1, "alerts": 1, "deliveries": 0}
        assert len(register.audit_events("331")) == (1 if revision >= "0002" else 0)
        summary = register.case(CASE_1)
        assert summary is not None and summary.upn == UPN_A and summary.holders == ("331",)
        assert summary.referral_id is None and summary.assignee is None
        # The migrated register takes the new records: a referral case without a UPN and its case work.
        register.record([referral_alert(), note(CASE_R)])
        details = register.case_details(CASE_R)
        assert details is not None and details.summary.upn is None and details.summary.referral_id == REFERRAL
        assert [enquiry.kind for enquiry in details.enquiries] == ["HOME_VISIT"]
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


# --- referrals and case work -----------------------------------------------------------------------------


def test_a_referral_case_without_a_upn_and_its_case_work_are_recorded_once(register: Register) -> None:
    batch = [
        referral(), referral_alert(), note(),
        case_work(2, CaseActionType.ASSIGN, assignee="B. Officer", reason="assigned to B. Officer"),
        case_work(3, CaseActionType.ASSIGN, assignee="C. Officer", reason="assigned to C. Officer"),
    ]
    first = register.record(batch)
    assert (first.referrals_new, first.alerts_new, first.actions_recorded) == (1, 1, 1)
    again = register.record(batch)
    assert (again.referrals_new, again.alerts_new, again.actions_recorded) == (0, 0, 0)
    # An older assignment arriving late does not undo the newer one.
    register.record([case_work(2, CaseActionType.ASSIGN, assignee="B. Officer")])
    details = register.case_details(CASE_R)
    assert details is not None
    summary = details.summary
    assert (summary.upn, summary.referral_id, summary.holders, summary.status) == (None, REFERRAL, ("331",),
                                                                                   CaseStatus.OPEN)
    assert (summary.assignee, summary.assigned_by) == ("C. Officer", "A. Officer")
    assert [(e.kind, e.outcome, e.note) for e in details.enquiries] == [
        ("HOME_VISIT", "No answer", "Visited the address; nobody home.")
    ]
    assert details.referral is not None and details.referral.referrer_contact == "01234 567890"
    assert details.alerts[0].upn is None and details.alerts[0].referral_id == REFERRAL
    assert register.casework_counts() == {"referrals": 1, "case_enquiries": 1, "case_links": 0}


def test_closing_with_a_reason_code_and_linking_a_referral_case(register: Register) -> None:
    register.record([referral(), referral_alert()])
    register.record([case_work(4, CaseActionType.LINK, upn=UPN_A, reason=f"linked to UPN {UPN_A}")] * 2)
    details = register.case_details(CASE_R)
    assert details is not None and details.summary.upn == UPN_A
    assert [(link.upn, link.by) for link in details.links] == [(UPN_A, "A. Officer")]
    register.record([case_work(5, CaseActionType.CLOSE, upn=UPN_A, close_reason=CloseReason.LOCATED_AT_SCHOOL,
                               reason="On roll at Hillside Primary.")])
    closed = register.case(CASE_R)
    assert closed is not None and closed.status is CaseStatus.CLOSED
    assert (closed.close_reason, closed.closing_reason) == ("LOCATED_AT_SCHOOL", "On roll at Hillside Primary.")


def test_lookup_answers_within_the_region_only(register: Register) -> None:
    # 331 Coventry and 330 Birmingham are West Midlands; 201 City of London is not.
    register.record([
        alert(1, Rule.MISSING_NO_DESTINATION, la="330"),
        alert(2, Rule.MISSING_NO_DESTINATION, la="201", case_id=CASE_2, raised_on=date(2025, 4, 1)),
    ])
    found = register.lookup("331", upn=UPN_A)
    assert [(h.la_code, h.status, h.opened_on) for r in found for h in r.holdings] == [
        ("330", "open", date(2025, 3, 4))
    ]
    assert found[0].last_school_urn == "140201" and found[0].last_school_seen_on == date(2025, 3, 4)
    by_name = register.lookup("331", surname="o'connor", date_of_birth=date(2014, 8, 17))
    assert [r.upn for r in by_name] == [UPN_A]
    london = register.lookup("202", upn=UPN_A)
    assert [h.la_code for r in london for h in r.holdings] == ["201"]
    assert register.lookup("331", surname="O'Connor", date_of_birth=date(2014, 8, 18)) == []


def test_possible_matches_are_the_las_children_of_that_birthday_with_a_close_name(register: Register) -> None:
    register.record([
        alert(1, Rule.MISSING_NO_DESTINATION),
        alert(2, Rule.MISSING_NO_DESTINATION, upn=UPN_B, child=AlertChild("Zoe", "Connors", date(2014, 8, 17)),
              case_id=CASE_2),
        alert(3, Rule.MISSING_NO_DESTINATION, la="330", upn=UPN_C, child=CHILD_A, case_id=CASE_3),
        referral(), referral_alert(),
    ])
    matches = register.possible_matches(CASE_R, "331")
    assert [match.upn for match in matches][:1] == [UPN_A]
    assert UPN_C not in [match.upn for match in matches]  # known to Birmingham only
    assert all(match.date_of_birth == date(2014, 8, 17) and match.score >= 80 for match in matches)
    assert register.possible_matches(CASE_1, "331") == []  # a case with a UPN needs none
