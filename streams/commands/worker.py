"""`rollwatch worker`: runs the detection engine against Kafka until stopped."""

from __future__ import annotations

import argparse
from typing import Any

from streams.settings import Settings

_FAUST_LEVELS = {"DEBUG": "debug", "INFO": "info", "WARNING": "warn", "ERROR": "error"}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run the stream worker: input topics in, alerts to each LA's topics",
        description=(
            "Consumes roll.events, ehe.notifications, safeguarding.status and clock.ticks (co-partitioned by "
            "UPN), applies the rules per child with changelog-backed state, and sends alerts to "
            "la.<LA>.alerts.<recipient> topics; records that fail decoding or validation go to <topic>.dlq. "
            "Start several workers with the same ROLLWATCH_APP_ID to share the partitions. Stop with Ctrl-C."
        ),
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    import faust

    from streams.replay import relax_garbage_collection
    from streams.rulesetup import build_rule_config
    from streams.topics import ensure_worker_topics
    from streams.worker import build_worker, discard_local_tables

    topics = ensure_worker_topics(settings)
    relax_garbage_collection()
    app = build_worker(settings, build_rule_config(settings), topics.created + topics.existing)
    discard_local_tables(app, settings)
    worker = faust.Worker(app, loglevel=_FAUST_LEVELS[settings.log_level], quiet=True)
    worker.execute_from_commandline()
    return 0
