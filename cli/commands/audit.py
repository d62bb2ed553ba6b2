"""`rollwatch audit list`: who viewed which child's record in the CME register, for an LA's governance review."""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime, time
from typing import Any

from cli.arguments import iso_day
from config.settings import Settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "audit",
        help="the audit trail: every view of a child's personal data",
        description="Read the register's audit trail (ROLLWATCH_DATABASE_URL).",
    )
    actions = parser.add_subparsers(dest="audit_action", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list",
        help="one LA's audit events from a date on, oldest first",
        description="One LA's audit events from a date on (UTC), oldest first: when, who, as which role, "
        "through what, which case and UPN.",
    )
    listing.add_argument("--la", metavar="CODE", required=True, help="3-digit LA code")
    listing.add_argument("--since", type=iso_day, metavar="YYYY-MM-DD", required=True, help="from this date on (UTC)")
    listing.add_argument("--json", action="store_true", help="one JSON object a line instead of a table")
    listing.set_defaults(handler=run_list)


def _fail(message: str) -> int:
    print(f"rollwatch audit: {message}", file=sys.stderr)
    return 1


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    from cli.failures import require_database
    from sinks.register.engine import RegisterNotReady
    from sinks.register.store import open_register

    if not re.fullmatch(r"\d{3}", args.la):
        return _fail("--la takes a 3-digit LA code such as 330")
    require_database(settings)
    try:
        register = open_register(settings.database_url)
    except RegisterNotReady as error:
        return _fail(str(error))
    try:
        events = register.audit_events(args.la, datetime.combine(args.since, time.min, tzinfo=UTC))
    finally:
        register.close()
    if args.json:
        for event in events:
            sys.stdout.write(json.dumps(event.as_json(), ensure_ascii=False) + "\n")
        return 0
    if not events:
        print(f"no audit events for LA {args.la} since {args.since.isoformat()}")
        return 0
    headers = ["WHEN (UTC)", "WHO", "ROLE", "THROUGH", "CASE", "UPN", "WHAT"]
    rows = [
        [
            event.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"), event.principal, event.role, event.channel,
            event.case_id or "-", event.upn or "-", event.detail or "-",
        ]
        for event in events
    ]
    widths = [max([len(header), *(len(row[i]) for row in rows)]) for i, header in enumerate(headers)]
    for row in [headers, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    print(f"{len(events)} event(s)")
    return 0
