"""`rollwatch alerts`: reads LA alert topics and prints each alert as a JSON line, as a dashboard would."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from typing import Any

from config.settings import Settings
from processors.records import Alert, Recipient, alert_topic


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "alerts",
        help="print alerts from the la.<LA>.alerts.<recipient> topics as JSON Lines",
        description=(
            "Consumes alert topics (read_committed, so only alerts of committed transactions) and prints "
            "one JSON object a line with the Alert fields. Without --follow it stops once it has caught up."
        ),
    )
    parser.add_argument("--la", action="append", metavar="CODE", help="3-digit LA code (repeatable; default all)")
    parser.add_argument(
        "--recipient",
        action="append",
        choices=[r.value for r in Recipient],
        help="recipient (repeatable; default all)",
    )
    parser.add_argument("--from-beginning", action="store_true", help="start at the oldest retained alert")
    parser.add_argument("--follow", action="store_true", help="keep waiting for new alerts until Ctrl-C")
    parser.add_argument("--group", help="consumer group to commit progress under (default: none)")
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="without --follow: stop after this idle")
    parser.set_defaults(handler=run)


def topic_pattern(settings: Settings, las: list[str] | None, recipients: list[str] | None) -> str:
    la_part = "|".join(re.escape(la) for la in las) if las else r"\d{3}"
    rec_part = "|".join(Recipient(r).topic_suffix for r in recipients) if recipients else r"[a-z-]+"
    return rf"^{re.escape(settings.topic_prefix)}la\.({la_part})\.alerts\.({rec_part})$"


def run(args: argparse.Namespace, settings: Settings) -> int:
    from kafka import KafkaConsumer
    from kafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError

    from cli.failures import require_kafka
    from config.kafka import client_options, refusal_message
    from schemas.codec import AvroCodec
    from schemas.jsonformat import alert_to_line

    if args.la and not all(re.fullmatch(r"\d{3}", la) for la in args.la):
        print("rollwatch alerts: --la takes a 3-digit LA code such as 331", file=sys.stderr)
        return 2
    codec = AvroCodec()
    # A secured cluster refuses quietly: a pattern just matches fewer topics, and a refused login is
    # retried for half a minute. Reachability, the login and named topics are checked up front instead.
    named = [
        settings.topic(alert_topic(la, Recipient(recipient)))
        for la in args.la or ()
        for recipient in args.recipient or ()
    ]
    require_kafka(settings, named)
    # The refusal is reported below in one line; kafka-python would log it first at every retry.
    logging.getLogger("kafka.coordinator").addFilter(
        lambda record: not any(isinstance(arg, GroupAuthorizationFailedError) for arg in record.args or ())
    )
    consumer = KafkaConsumer(
        group_id=args.group,
        auto_offset_reset="earliest" if args.from_beginning else "latest",
        enable_auto_commit=args.group is not None,
        isolation_level="read_committed",
        consumer_timeout_ms=-1 if args.follow else int(args.idle_seconds * 1000),
        metadata_max_age_ms=5000,
        **client_options(settings),
    )
    consumer.subscribe(pattern=topic_pattern(settings, args.la, args.recipient))
    count = 0
    try:
        for message in consumer:
            alert = codec.decode(message.value, Alert)
            sys.stdout.buffer.write(alert_to_line(alert) + b"\n")
            sys.stdout.buffer.flush()
            count += 1
    except KeyboardInterrupt:
        pass
    except TopicAuthorizationFailedError as error:
        refused = [topic for arg in error.args for topic in (arg if isinstance(arg, set) else [arg])]
        topics = ", ".join(sorted(map(str, refused)))
        print(f"rollwatch alerts: {refusal_message('READ', 'topic', topics, settings)}", file=sys.stderr)
        return 2
    except GroupAuthorizationFailedError:
        print(f"rollwatch alerts: {refusal_message('READ', 'group', str(args.group), settings)}", file=sys.stderr)
        return 2
    finally:
        consumer.close()
    print(f"alerts: {count} printed", file=sys.stderr)
    return 0
