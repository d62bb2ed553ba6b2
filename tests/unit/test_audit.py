"""The audit trail on a SQLite register: `cases list/show` and webhook deliveries leave rows, `audit list` shows
them, retention purges them, and a register at the first schema migrates to it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import inspect

from cli.main import main
from processors.records import Alert, AlertChild, Recipient, Rule, Severity
from sinks.register import DeliveryOutcome, MemoryDeliveryLog, Register, RetentionPolicy, migrate
from sinks.register.audit import AuditEvent, audit_webhook_delivery, events_for
from sinks.register.engine import head_revision

UPN = "A331200001001"
CASE = "11111111-1111-5111-8111-111111111111"
CHILD = AlertChild("Amelia", "Okafor", date(2014, 5, 2))


def opening_alert(recipient: Recipient = Recipient.CME_OFFICER, number: int = 1) -> Alert:
    return Alert(
        alert_id=f"aaaaaaaa-0000-5000-8000-{number:012d}", rule=Rule.MISSING_NO_DESTINATION, recipient=recipient,
        la_code="331", severity=Severity.HIGH, upn=UPN, child=CHILD, school_urn="140201",
        raised_on=date(2025, 3, 3), reason="Removed from roll with no known destination.", case_id=CASE,
    )


@pytest.fixture
def register_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path}/register.db"
    monkeypatch.setenv("ROLLWATCH_DATABASE_URL", url)
    register = Register.from_url(url)
    migrate(register.engine)
    register.record([opening_alert()])
    register.close()
    yield url


def audit_rows(url: str, la: str = "331") -> list[AuditEvent]:
    register = Register.from_url(url)
    try:
        return register.audit_events(la)
    finally:
        register.close()


def test_cases_show_and_list_leave_rows_and_audit_list_shows_them(
    register_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cases", "show", CASE, "--by", "A. Officer"]) == 0
    assert main(["cases", "list", "--la", "331", "--json"]) == 0
    capsys.readouterr()
    rows = audit_rows(register_url)
    assert [(row.principal, row.role, row.channel, row.case_id, row.upn) for row in rows] == [
        ("A. Officer", "register", "cli cases show", CASE, UPN),
        (rows[1].principal, "register", "cli cases list", CASE, UPN),
    ]
    assert rows[1].principal.startswith("os ")
    assert all(row.at.tzinfo is not None and row.at.date() == datetime.now(tz=UTC).date() for row in rows)

    assert main(["audit", "list", "--la", "331", "--since", "2025-01-01", "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(item["principal"], item["channel"], item["case_id"]) for item in listed] == [
        ("A. Officer", "cli cases show", CASE), (rows[1].principal, "cli cases list", CASE),
    ]
    assert main(["audit", "list", "--la", "331", "--since", "2025-01-01"]) == 0
    table = capsys.readouterr().out
    assert "A. Officer" in table and "cli cases show" in table and "2 event(s)" in table
    # Another LA's trail, or one from after the views, is empty.
    assert main(["audit", "list", "--la", "332", "--since", "2025-01-01"]) == 0
    assert "no audit events" in capsys.readouterr().out
    assert main(["audit", "list", "--la", "331", "--since", "2999-01-01", "--json"]) == 0
    assert capsys.readouterr().out == ""


def test_a_missing_case_is_not_audited(register_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cases", "show", "99999999-9999-5999-8999-999999999999"]) == 1
    assert audit_rows(register_url) == []


def test_a_delivered_webhook_leaves_one_row_under_the_recipients_role(register_url: str) -> None:
    register = Register.from_url(register_url)
    try:
        audit_webhook_delivery(register, "331", opening_alert(Recipient.SOCIAL_CARE, 2), DeliveryOutcome.DELIVERED)
        audit_webhook_delivery(register, "331", opening_alert(), DeliveryOutcome.DEAD_LETTERED)
        # The in-memory delivery log keeps no audit trail and is left alone.
        audit_webhook_delivery(MemoryDeliveryLog(), "331", opening_alert(), DeliveryOutcome.DELIVERED)
        rows = register.audit_events("331")
    finally:
        register.close()
    assert [(row.principal, row.role, row.channel, row.case_id, row.upn) for row in rows] == [
        ("webhook LA 331", "social-care", "webhook", CASE, UPN)
    ]


def test_retention_purges_audit_rows_past_their_las_period(register_url: str) -> None:
    register = Register.from_url(register_url)
    try:
        old = datetime(2018, 3, 1, 12, tzinfo=UTC)
        recent = datetime(2024, 3, 1, 12, tzinfo=UTC)
        for la in ("331", "332"):
            register.record_audit(events_for("A. Officer", la, "cme-officer", "dashboard", [(CASE, UPN)], at=old))
            register.record_audit(events_for("A. Officer", la, "cme-officer", "dashboard", [(CASE, UPN)], at=recent))
        policy = RetentionPolicy(default_years=6, years_by_la={"332": 10})
        dry = register.purge(date(2025, 3, 14), policy, dry_run=True)
        assert dry.audit_events == 1
        assert len(register.audit_events()) == 4
        report = register.purge(date(2025, 3, 14), policy, dry_run=False)
        assert report.audit_events == 1
        assert [(row.la_code, row.at.year) for row in register.audit_events()] == [
            ("332", 2018), ("331", 2024), ("332", 2024),
        ]
    finally:
        register.close()


def test_a_register_at_the_first_schema_gains_the_audit_table(tmp_path: Path) -> None:
    register = Register.from_url(f"sqlite:///{tmp_path}/old.db")
    try:
        assert migrate(register.engine, "0001") == "0001"
        # Written as that release wrote it: this release's models know columns the first schema lacks.
        with register.engine.begin() as connection:
            connection.exec_driver_sql(
                "INSERT INTO children VALUES (?, 'Amelia', 'Okafor', '2014-05-02')", (UPN,)
            )
            connection.exec_driver_sql(
                "INSERT INTO cases (case_id, upn, status) VALUES (?, ?, 'open')", (CASE, UPN)
            )
            connection.exec_driver_sql(
                "INSERT INTO alerts VALUES ('aaaaaaaa-0000-5000-8000-000000000001', 'MISSING_NO_DESTINATION', "
                "'CME_OFFICER', '331', 'HIGH', ?, 'Amelia', 'Okafor', '2014-05-02', '140201', ?, '2025-03-03', "
                "'Removed.', '[]')",
                (UPN, CASE),
            )
        assert "audit_events" not in inspect(register.engine).get_table_names()
        assert migrate(register.engine) == head_revision()
        assert register.counts()["alerts"] == 1
        register.record_audit(events_for("t", "331", "cme-officer", "dashboard", [(CASE, UPN)]))
        assert len(register.audit_events("331")) == 1
    finally:
        register.close()
