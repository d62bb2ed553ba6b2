"""`rollwatch lookup`: a regional enquiry, which LAs of the asking LA's region hold or held a case for a child."""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from typing import Any

from cli.arguments import iso_day
from config.settings import Settings

EPILOG = textwrap.dedent(
    """\
    examples:
      rollwatch lookup --la 331 --upn A331200001001 --by "A. Officer"
      rollwatch lookup --la 331 --surname Okafor --dob 2014-05-02 --by "A. Officer" --json
    """
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "lookup",
        help="which LAs of your region hold or held a CME case for a child",
        description=(
            "A regional enquiry: the LAs of your LA's region that hold or held a CME case for the child, with the "
            "case's dates, and the last school the pipeline saw in the region; nothing else. Every enquiry is "
            "written to the audit trail (who asked, for which LA, about whom, when)."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--la", required=True, metavar="CODE", help="your LA's 3-digit code: sets the region")
    parser.add_argument("--upn", help="the child's unique pupil number")
    parser.add_argument("--surname", help="the child's surname (with --dob), when the UPN is not known")
    parser.add_argument("--dob", type=iso_day, metavar="YYYY-MM-DD", help="the child's date of birth (with --surname)")
    parser.add_argument("--by", required=True, help="who is asking: your name or user id, for the audit trail")
    parser.add_argument("--json", action="store_true", help="one JSON object a line instead of text")
    parser.set_defaults(handler=run_lookup)


def _fail(message: str) -> int:
    print(f"rollwatch lookup: {message}", file=sys.stderr)
    return 1


def result_to_json(result: Any, show_upn: bool) -> dict[str, Any]:
    """A lookup result, as little as an officer needs to phone the right LA: no case ids, names or notes."""
    return {
        "upn": result.upn if show_upn else None,
        "las": [
            {
                "la_code": holding.la_code, "la_name": holding.la_name, "status": holding.status,
                "opened_on": None if holding.opened_on is None else holding.opened_on.isoformat(),
                "closed_on": None if holding.closed_on is None else holding.closed_on.isoformat(),
            }
            for holding in result.holdings
        ],
        "last_school_urn": result.last_school_urn,
        "last_school_seen_on": None if result.last_school_seen_on is None else result.last_school_seen_on.isoformat(),
    }


def run_lookup(args: argparse.Namespace, settings: Settings) -> int:
    from cli.commands.cases import _open
    from processors.identifiers import upn_problems
    from sinks.register.audit import CLI_LOOKUP, CLI_ROLE
    from sinks.register.engine import RegisterNotReady
    from sinks.register.lookup import audit_lookup
    from sinks.register.regions import region_of

    if not re.fullmatch(r"\d{3}", args.la) or region_of(args.la) is None:
        return _fail("--la takes your LA's 3-digit code, an English LA such as 330")
    if not args.by.strip():
        return _fail("--by must say something: the audit trail records who asked")
    upn = None if args.upn is None else args.upn.strip().upper()
    if upn is not None:
        if args.surname is not None or args.dob is not None:
            return _fail("give --upn, or --surname with --dob, not both")
        problems = upn_problems(upn, "--upn")
        if problems:
            return _fail(problems[0].message)
    elif args.surname is None or not args.surname.strip() or args.dob is None:
        return _fail("give --upn, or --surname with --dob")
    try:
        register = _open(settings)
    except RegisterNotReady as error:
        return _fail(str(error))
    try:
        results = register.lookup(args.la, upn=upn, surname=args.surname, date_of_birth=args.dob)
        audit_lookup(register, args.by.strip(), args.la, CLI_ROLE, CLI_LOOKUP, upn, results)
    finally:
        register.close()
    region = region_of(args.la)
    if args.json:
        for result in results:
            sys.stdout.write(json.dumps(result_to_json(result, upn is not None), ensure_ascii=False) + "\n")
        return 0
    if not results:
        print(f"no LA of the {region} region holds or held a case for that child")
        return 0
    for number, result in enumerate(results, 1):
        print(f"UPN {upn}" if upn is not None else f"child {number} of {len(results)}")
        for holding in result.holdings:
            opened = holding.opened_on.isoformat() if holding.opened_on else "?"
            closed = f", closed {holding.closed_on.isoformat()}" if holding.closed_on else ""
            print(f"  LA {holding.la_code} {holding.la_name}: {holding.status}, opened {opened}{closed}")
        if result.last_school_urn:
            seen = result.last_school_seen_on.isoformat() if result.last_school_seen_on else "?"
            print(f"  last school seen: URN {result.last_school_urn} ({seen})")
    return 0
