"""`rollwatch cases list|show|close`: an officer's view of the CME register, and closing a case as an event."""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
import textwrap
from datetime import date
from typing import Any

from config.settings import Settings
from processors.records import Rule, Severity

EPILOG = textwrap.dedent(
    """\
    examples:
      rollwatch cases list --la 330 --status open
      rollwatch cases list --severity IMMEDIATE --since 2025-01-01 --json
      rollwatch cases show 6f1c...e2
      rollwatch cases close 6f1c...e2 --reason "Family confirmed on roll in Wales" --by "A. Officer"
    """
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "cases",
        help="list, show and close CME cases in the register",
        description="Read the CME register (ROLLWATCH_DATABASE_URL) and act on cases.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="cases_action", metavar="ACTION", required=True)

    listing = actions.add_parser(
        "list",
        help="cases matching every filter given, most recently opened first",
        description="Cases matching every filter given, most recently opened first.",
    )
    listing.add_argument("--la", metavar="CODE", help="3-digit code of an LA holding the case")
    listing.add_argument("--status", choices=("open", "closed"), help="open or closed")
    listing.add_argument("--rule", choices=[rule.value for rule in Rule], help="the rule that opened the case")
    listing.add_argument(
        "--severity",
        choices=[severity.value for severity in Severity],
        help="the case's severity: the most urgent of its alerts",
    )
    listing.add_argument("--since", type=_day, metavar="YYYY-MM-DD", help="opened on or after this date")
    listing.add_argument("--until", type=_day, metavar="YYYY-MM-DD", help="opened on or before this date")
    listing.add_argument("--json", action="store_true", help="one JSON object a line instead of a table")
    listing.add_argument("--by", help="who is looking, for the audit trail (default: your OS user name)")
    listing.set_defaults(handler=run_list)

    show = actions.add_parser(
        "show", help="one case: the child, its LAs, its alerts and their deliveries", description="Show one case."
    )
    show.add_argument("case_id", metavar="CASE", help="the case id, as `cases list` shows it")
    show.add_argument("--json", action="store_true", help="one JSON object instead of text")
    show.add_argument("--by", help="who is looking, for the audit trail (default: your OS user name)")
    show.set_defaults(handler=run_show)

    close = actions.add_parser(
        "close",
        help="close an open case: publishes a case action the worker and the register apply",
        description=(
            "Checks the case is in the register and open, then publishes a CLOSE case action to case.actions "
            "(keyed by UPN, acks=all). The worker then stops watching for the child (no CHILD_LOCATED for "
            "this case) and `register sync` records who closed it, when and why."
        ),
    )
    close.add_argument("case_id", metavar="CASE", help="the case id, as `cases list` shows it")
    close.add_argument("--reason", required=True, help="why the case is closed, for the register and audit")
    close.add_argument("--by", required=True, help="who is closing it: your name or user id")
    close.set_defaults(handler=run_close)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date written YYYY-MM-DD") from None


def _fail(message: str) -> int:
    print(f"rollwatch cases: {message}", file=sys.stderr)
    return 1


def _open(settings: Settings) -> Any:
    from cli.failures import require_database
    from sinks.register.store import open_register

    require_database(settings)
    return open_register(settings.database_url)


def principal_of(by: str | None) -> str:
    """Who the audit trail names: --by when given, else the OS user running the command."""
    if by and by.strip():
        return by.strip()
    try:
        return f"os {getpass.getuser()}"
    except (KeyError, OSError):
        return "os unknown"


def audit_cases(register: Any, by: str | None, channel: str, shown: list[Any], la_code: str | None) -> None:
    """One audit row per case shown and LA holding it (or the LA asked for), written before anything is printed."""
    from sinks.register.audit import CLI_ROLE, events_for

    principal = principal_of(by)
    events = []
    for summary in shown:
        las = [la_code] if la_code is not None else list(summary.holders) or ["---"]
        for la in las:
            events.extend(events_for(principal, la, CLI_ROLE, channel, [(summary.case_id, summary.upn)]))
    register.record_audit(events)


def _iso(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


def case_to_json(summary: Any) -> dict[str, Any]:
    child = summary.child
    return {
        "case_id": summary.case_id,
        "upn": summary.upn,
        "child": None if child is None else {
            "forename": child.forename, "surname": child.surname, "date_of_birth": child.date_of_birth.isoformat(),
        },
        "status": summary.status.value,
        "holders": list(summary.holders),
        "opened_on": _iso(summary.opened_on),
        "opening_rule": None if summary.opening_rule is None else summary.opening_rule.value,
        "severity": None if summary.severity is None else summary.severity.value,
        "alert_count": summary.alert_count,
        "closed_on": _iso(summary.closed_on),
        "closing_reason": summary.closing_reason,
        "closed_by": summary.closed_by,
    }


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(header), *(len(row[i]) for row in rows)]) for i, header in enumerate(headers)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in [headers, *rows]]
    return "\n".join(lines)


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.register.engine import RegisterNotReady
    from sinks.register.queries import CaseQuery
    from sinks.register.schema import CaseStatus

    if args.la is not None and not re.fullmatch(r"\d{3}", args.la):
        return _fail("--la takes a 3-digit LA code such as 330")
    query = CaseQuery(
        la_code=args.la,
        status=None if args.status is None else CaseStatus(args.status),
        rule=None if args.rule is None else Rule(args.rule),
        severity=None if args.severity is None else Severity(args.severity),
        since=args.since,
        until=args.until,
    )
    try:
        register = _open(settings)
    except RegisterNotReady as error:
        return _fail(str(error))
    from sinks.register.audit import CLI_CASES_LIST

    try:
        found = register.cases(query)
        audit_cases(register, args.by, CLI_CASES_LIST, found, args.la)
    finally:
        register.close()
    if args.json:
        for summary in found:
            sys.stdout.write(json.dumps(case_to_json(summary), ensure_ascii=False) + "\n")
        return 0
    if not found:
        print("no cases match")
        return 0
    rows = [
        [
            summary.case_id,
            summary.status.value,
            _iso(summary.opened_on) or "?",
            summary.opening_rule.value if summary.opening_rule else "?",
            summary.severity.value if summary.severity else "-",
            ",".join(summary.holders) or "-",
            summary.upn,
            f"{summary.child.surname}, {summary.child.forename}" if summary.child else "?",
            str(summary.alert_count),
        ]
        for summary in found
    ]
    print(_table(["CASE", "STATUS", "OPENED", "RULE", "SEVERITY", "LAS", "UPN", "CHILD", "ALERTS"], rows))
    print(f"{len(found)} case(s)")
    return 0


def run_show(args: argparse.Namespace, settings: Settings) -> int:
    from schemas.jsonfields import alert_to_json
    from sinks.register.engine import RegisterNotReady

    try:
        register = _open(settings)
    except RegisterNotReady as error:
        return _fail(str(error))
    from sinks.register.audit import CLI_CASES_SHOW

    try:
        details = register.case_details(args.case_id)
        if details is not None:
            audit_cases(register, args.by, CLI_CASES_SHOW, [details.summary], None)
    finally:
        register.close()
    if details is None:
        return _fail(f"no case {args.case_id} in the register; `rollwatch cases list` shows the case ids")
    summary, alerts, deliveries = details.summary, details.alerts, details.deliveries
    if args.json:
        document = case_to_json(summary)
        document["alerts"] = []
        for alert in alerts:
            entry = alert_to_json(alert)
            delivery = deliveries.get(alert.alert_id)
            entry["delivery"] = None if delivery is None else {
                "channel": delivery.channel,
                "outcome": delivery.outcome.value,
                "attempts": delivery.attempts,
                "last_error": delivery.last_error,
                "delivered_at": None if delivery.delivered_at is None else delivery.delivered_at.isoformat(),
            }
            document["alerts"].append(entry)
        sys.stdout.write(json.dumps(document, ensure_ascii=False, indent=2) + "\n")
        return 0
    child = summary.child
    print(f"case      {summary.case_id}")
    print(f"child     {child.surname}, {child.forename} (born {child.date_of_birth.isoformat()})" if child else
          "child     (no alert received yet)")
    print(f"UPN       {summary.upn}")
    print(f"status    {summary.status.value}")
    print(f"opened    {_iso(summary.opened_on) or '?'} by {summary.opening_rule or '?'}")
    print(f"held by   {', '.join(summary.holders) or '-'}")
    print(f"severity  {summary.severity or '-'}")
    if summary.closed_on is not None:
        print(f"closed    {summary.closed_on.isoformat()} by {summary.closed_by}: {summary.closing_reason}")
    print(f"\nalerts ({len(alerts)}):")
    for alert in alerts:
        delivery = deliveries.get(alert.alert_id)
        sent = "" if delivery is None else f"  [webhook {delivery.outcome.value}, {delivery.attempts} attempt(s)]"
        print(f"  {alert.raised_on.isoformat()}  {alert.rule.value:<24} {alert.severity.value:<9} "
              f"{alert.recipient.value:<11} LA {alert.la_code}{sent}")
        print(f"      {alert.reason}")
        if delivery is not None and delivery.last_error:
            print(f"      delivery problem: {delivery.last_error}")
    return 0


def run_close(args: argparse.Namespace, settings: Settings) -> int:
    from cli.failures import require_kafka
    from sinks.register.actions import CloseRefused, closing_action, closing_words, publish_case_action
    from sinks.register.engine import RegisterNotReady

    try:
        reason, by = closing_words(args.reason, args.by)
        # The closing is a Kafka record: with the broker out of reach, refuse it before touching the register.
        require_kafka(settings)
        register = _open(settings)
    except (CloseRefused, RegisterNotReady) as error:
        return _fail(str(error))
    try:
        summary = register.case(args.case_id)
    finally:
        register.close()
    try:
        action = closing_action(summary, args.case_id, reason, by)
    except CloseRefused as error:
        return _fail(str(error))
    topic = publish_case_action(settings, action)
    print(f"closing case {action.case_id}: sent to {topic} (action {action.action_id}); the worker stops watching "
          "for the child and `rollwatch register sync` records the closure")
    return 0
