"""`rollwatch cases list|show|close|note|assign|link`: an officer's view of the CME register, and case work as
events on case.actions."""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
import textwrap
from datetime import date
from typing import Any

from cli.arguments import iso_day
from config.settings import Settings
from processors.records import CloseReason, EnquiryKind, Rule, Severity


def _option(member: CloseReason | EnquiryKind) -> str:
    """An enum symbol as a command-line choice: LOCATED_AT_SCHOOL is located-at-school."""
    return member.value.lower().replace("_", "-")


CLOSE_REASON_CHOICES = {_option(member): member for member in CloseReason}
ENQUIRY_KIND_CHOICES = {_option(member): member for member in EnquiryKind}

EPILOG = textwrap.dedent(
    """\
    examples:
      rollwatch cases list --la 330 --status open
      rollwatch cases list --severity IMMEDIATE --since 2025-01-01 --json
      rollwatch cases show 6f1c...e2
      rollwatch cases close 6f1c...e2 --reason-code left-england-confirmed --note "On roll in Wales" --by "A. Officer"
      rollwatch cases note 6f1c...e2 --kind home-visit --outcome "No answer" --note "Card left" --by "A. Officer"
      rollwatch cases assign 6f1c...e2 --to "B. Officer" --by "A. Officer"
      rollwatch cases link 6f1c...e2 A331200001001 --by "A. Officer"
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
    listing.add_argument("--since", type=iso_day, metavar="YYYY-MM-DD", help="opened on or after this date")
    listing.add_argument("--until", type=iso_day, metavar="YYYY-MM-DD", help="opened on or before this date")
    listing.add_argument("--json", action="store_true", help="one JSON object a line instead of a table")
    listing.add_argument("--by", help="who is looking, for the audit trail (default: your OS user name)")
    listing.set_defaults(handler=run_list)

    show = actions.add_parser(
        "show", help="one case: the child, its LAs, its alerts and their deliveries", description="Show one case."
    )
    show.add_argument("case_id", metavar="CASE", help="the case id, as `cases list` shows it")
    show.add_argument("--json", action="store_true", help="one JSON object instead of text")
    show.add_argument("--by", help="who is looking, for the audit trail (default: your OS user name)")
    show.add_argument(
        "--show-contact", action="store_true",
        help="also show the referrer's name and contact and the postcode given (audited as such)",
    )
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
    close.add_argument(
        "--reason-code", choices=list(CLOSE_REASON_CHOICES), help="why the case ends, from the fixed list"
    )
    close.add_argument("--note", help="the closing note: what was found (with --reason-code)")
    close.add_argument(
        "--reason", help="why the case is closed, in words only (recorded with reason code other)"
    )
    close.add_argument("--by", required=True, help="who is closing it: your name or user id")
    close.add_argument("--la", metavar="CODE", help="your LA, when more than one LA holds the case")
    close.set_defaults(handler=run_close)

    note = actions.add_parser(
        "note",
        help="record a reasonable enquiry made on a case",
        description="Publishes a NOTE case action: the enquiry's kind, its outcome and a note (at most 2,000 "
        "characters); `register sync` records it on the case.",
    )
    note.add_argument("case_id", metavar="CASE", help="the case id, as `cases list` shows it")
    note.add_argument("--kind", required=True, choices=list(ENQUIRY_KIND_CHOICES), help="what was done")
    note.add_argument("--outcome", required=True, help="what the enquiry found, in a line")
    note.add_argument("--note", required=True, help="the enquiry's note, at most 2,000 characters")
    note.add_argument("--by", required=True, help="who made the enquiry: your name or user id")
    note.add_argument("--la", metavar="CODE", help="your LA, when more than one LA holds the case")
    note.set_defaults(handler=run_note)

    assign = actions.add_parser(
        "assign", help="assign an open case to an officer", description="Publishes an ASSIGN case action."
    )
    assign.add_argument("case_id", metavar="CASE", help="the case id, as `cases list` shows it")
    assign.add_argument("--to", required=True, help="the officer the case is assigned to")
    assign.add_argument("--by", required=True, help="who assigns it: your name or user id")
    assign.add_argument("--la", metavar="CODE", help="your LA, when more than one LA holds the case")
    assign.set_defaults(handler=run_assign)

    link = actions.add_parser(
        "link",
        help="link a referral case without a UPN to the child's UPN",
        description="Checks the case is an open referral case without a UPN and the UPN is valid, then publishes "
        "a LINK case action: the child's next ADDED roll event closes the case (CHILD_LOCATED).",
    )
    link.add_argument("case_id", metavar="CASE", help="the case id, as `cases list` shows it")
    link.add_argument("upn", metavar="UPN", help="the child's unique pupil number")
    link.add_argument("--by", required=True, help="who links it: your name or user id")
    link.add_argument("--la", metavar="CODE", help="your LA, when more than one LA holds the case")
    link.set_defaults(handler=run_link)


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


def audit_cases(
    register: Any, by: str | None, channel: str, shown: list[Any], la_code: str | None, detail: str | None = None
) -> None:
    """One audit row per case shown and LA holding it (or the LA asked for), written before anything is printed."""
    from sinks.register.audit import CLI_ROLE, events_for

    principal = principal_of(by)
    events = []
    for summary in shown:
        las = [la_code] if la_code is not None else list(summary.holders) or ["---"]
        for la in las:
            events.extend(events_for(
                principal, la, CLI_ROLE, channel, [(summary.case_id, summary.upn)], detail=detail
            ))
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
        "close_reason": summary.close_reason,
        "closed_by": summary.closed_by,
        "referral_id": summary.referral_id,
        "assignee": summary.assignee,
        "assigned_by": summary.assigned_by,
        "assigned_at": None if summary.assigned_at is None else summary.assigned_at.isoformat(),
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
            summary.upn or "-",
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

    matches: list[Any] = []
    try:
        details = register.case_details(args.case_id)
        if details is not None:
            summary = details.summary
            if summary.upn is None:
                for la in summary.holders:
                    matches.extend(register.possible_matches(summary.case_id, la))
            audit_cases(register, args.by, CLI_CASES_SHOW, [summary], None,
                        detail="shown with referrer contact" if args.show_contact else None)
    finally:
        register.close()
    if details is None:
        return _fail(f"no case {args.case_id} in the register; `rollwatch cases list` shows the case ids")
    summary, alerts, deliveries = details.summary, details.alerts, details.deliveries
    referral = details.referral
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
        document["enquiries"] = [
            {"kind": e.kind, "outcome": e.outcome, "note": e.note, "by": e.by, "at": e.at.isoformat(),
             "la_code": e.la_code}
            for e in details.enquiries
        ]
        document["links"] = [
            {"upn": link.upn, "by": link.by, "at": link.at.isoformat(), "la_code": link.la_code}
            for link in details.links
        ]
        document["referral"] = None if referral is None else referral_to_json(referral, args.show_contact)
        document["possible_matches"] = [match_to_json(match) for match in matches]
        sys.stdout.write(json.dumps(document, ensure_ascii=False, indent=2) + "\n")
        return 0
    child = summary.child
    print(f"case      {summary.case_id}")
    if child:
        print(f"child     {child.surname}, {child.forename} (born {child.date_of_birth.isoformat()})")
    elif referral is not None:
        born = f" (born {referral.date_of_birth.isoformat()})" if referral.date_of_birth else ""
        print(f"child     {referral.surname}, {referral.forename}{born}, as referred")
    else:
        print("child     (no alert received yet)")
    print(f"UPN       {summary.upn or '(none: a referral case)'}")
    print(f"status    {summary.status.value}")
    print(f"opened    {_iso(summary.opened_on) or '?'} by {summary.opening_rule or '?'}")
    print(f"held by   {', '.join(summary.holders) or '-'}")
    print(f"severity  {summary.severity or '-'}")
    if summary.assignee:
        at = summary.assigned_at.date().isoformat() if summary.assigned_at else "?"
        print(f"assigned  {summary.assignee} (by {summary.assigned_by} on {at})")
    if summary.closed_on is not None:
        code = f" [{summary.close_reason}]" if summary.close_reason else ""
        print(f"closed    {summary.closed_on.isoformat()} by {summary.closed_by}{code}: {summary.closing_reason}")
    for link in details.links:
        print(f"linked    to UPN {link.upn} by {link.by} on {link.at.date().isoformat()}")
    if referral is not None:
        print(f"\nreferral {referral.referral_id}, received {referral.received_on.isoformat()} by LA "
              f"{referral.la_code}: {referral.concern}, from {referral.agency}")
        if referral.details:
            print(f"  {referral.details}")
        if args.show_contact:
            print(f"  postcode given: {referral.postcode or '-'}")
            print(f"  referrer: {referral.referrer_name or '(no name)'}, {referral.referrer_contact or '(no contact)'}")
        elif referral.referrer_name or referral.referrer_contact:
            print("  referrer's name and contact: held; --show-contact shows them")
        else:
            print("  referred anonymously")
    if summary.upn is None and summary.status.value == "open":
        print(f"\npossible matches ({len(matches)}):")
        for match in matches:
            print(f"  {match.upn}  {match.surname}, {match.forename} (born {match.date_of_birth.isoformat()})  "
                  f"similarity {match.score:.0f}")
    print(f"\nenquiries ({len(details.enquiries)}):")
    for enquiry in details.enquiries:
        print(f"  {enquiry.at.date().isoformat()}  {enquiry.kind:<27} by {enquiry.by}: {enquiry.outcome}")
        print(f"      {enquiry.note}")
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


def referral_to_json(referral: Any, with_contact: bool) -> dict[str, Any]:
    """A referral as `cases show --json` gives it: the referrer's name and contact and the postcode only when
    asked for."""
    document = {
        "referral_id": referral.referral_id, "la_code": referral.la_code,
        "received_on": referral.received_on.isoformat(), "upn": referral.upn, "forename": referral.forename,
        "surname": referral.surname, "date_of_birth": _iso(referral.date_of_birth), "concern": referral.concern,
        "details": referral.details, "agency": referral.agency,
        "anonymous": not referral.referrer_name and not referral.referrer_contact,
    }
    if with_contact:
        document.update(
            postcode=referral.postcode, referrer_name=referral.referrer_name,
            referrer_contact=referral.referrer_contact,
        )
    return document


def match_to_json(match: Any) -> dict[str, Any]:
    return {
        "upn": match.upn, "forename": match.forename, "surname": match.surname,
        "date_of_birth": match.date_of_birth.isoformat(), "score": match.score,
    }


def _act(args: argparse.Namespace, settings: Settings, channel: str, build: Any, words: tuple[str, ...]) -> int:
    """Checks the words given, the broker and the case, then publishes the action `build(summary)` makes and
    audits it; every refusal is one line on stderr and exit code 1."""
    from cli.failures import require_kafka
    from sinks.register.actions import ActionRefused, publish_case_action
    from sinks.register.engine import RegisterNotReady

    for option, value in [("--by", args.by), *zip(words[1::2], words[::2], strict=True)]:
        if value is not None and not str(value).strip():
            return _fail(f"{option} must say something: the register records who did what on a case and why")
    if args.la is not None and not re.fullmatch(r"\d{3}", args.la):
        return _fail("--la takes a 3-digit LA code such as 330")
    try:
        # The action is a Kafka record: with the broker out of reach, refuse it before touching the register.
        require_kafka(settings)
        register = _open(settings)
    except RegisterNotReady as error:
        return _fail(str(error))
    try:
        summary = register.case(args.case_id)
        try:
            action = build(summary)
        except ActionRefused as error:
            return _fail(str(error))
        topic = publish_case_action(settings, action)
        from sinks.register.audit import CLI_ROLE, events_for

        register.record_audit(events_for(
            args.by.strip(), action.la_code or "---", CLI_ROLE, channel, [(action.case_id, action.upn)],
            detail=f"{action.action.value} {action.action_id}",
        ))
    finally:
        register.close()
    print(f"{action.action.value.lower()} on case {action.case_id}: sent to {topic} (action {action.action_id}); "
          "`rollwatch register sync` records it")
    return 0


def run_close(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.register.actions import closing_action
    from sinks.register.audit import CLI_CASES_CLOSE

    if args.reason_code is None and args.reason is None:
        return _fail("say why the case ends: --reason-code CODE --note TEXT (or --reason TEXT)")
    if args.reason_code is not None and not (args.note or args.reason or "").strip():
        return _fail("--note must say something: the register records who closed a case and why")
    code = CloseReason.OTHER if args.reason_code is None else CLOSE_REASON_CHOICES[args.reason_code]
    note = args.note if args.note is not None else args.reason
    return _act(
        args, settings, CLI_CASES_CLOSE,
        lambda summary: closing_action(summary, args.case_id, note, args.by, close_reason=code, la_code=args.la),
        (note, "--note"),
    )


def run_note(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.register.actions import note_action
    from sinks.register.audit import CLI_CASES_NOTE

    kind = ENQUIRY_KIND_CHOICES[args.kind]
    return _act(
        args, settings, CLI_CASES_NOTE,
        lambda summary: note_action(summary, args.case_id, kind, args.outcome, args.note, args.by, args.la),
        (args.outcome, "--outcome", args.note, "--note"),
    )


def run_assign(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.register.actions import assign_action
    from sinks.register.audit import CLI_CASES_ASSIGN

    return _act(
        args, settings, CLI_CASES_ASSIGN,
        lambda summary: assign_action(summary, args.case_id, args.to, args.by, args.la),
        (args.to, "--to"),
    )


def run_link(args: argparse.Namespace, settings: Settings) -> int:
    from processors.identifiers import upn_problems
    from sinks.register.actions import link_action
    from sinks.register.audit import CLI_CASES_LINK

    problems = upn_problems(args.upn.strip().upper(), "UPN")
    if problems:
        # Before the broker is asked anything: a mistyped UPN is the likeliest error.
        return _fail(f"cannot link case {args.case_id}: {problems[0].message}")
    return _act(
        args, settings, CLI_CASES_LINK,
        lambda summary: link_action(summary, args.case_id, args.upn, args.by, args.la),
        (),
    )
