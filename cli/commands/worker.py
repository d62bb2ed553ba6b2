"""`rollwatch worker`: runs the detection engine against Kafka until stopped, and within a bound once asked to stop."""

from __future__ import annotations

import argparse
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from config.settings import Settings

_FAUST_LEVELS = {"DEBUG": "debug", "INFO": "info", "WARNING": "warn", "ERROR": "error"}

#: Exit status of a worker whose stop outran ROLLWATCH_SHUTDOWN_TIMEOUT (EX_TEMPFAIL: its work is read again).
STOP_TIMEOUT_EXIT_CODE = 75

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run the stream worker: input topics in, alerts to each LA's topics",
        description=(
            "Consumes roll.events, ehe.notifications, safeguarding.status and clock.ticks (co-partitioned by "
            "UPN), applies the rules per child with changelog-backed state, and sends alerts to "
            "la.<LA>.alerts.<recipient> topics; records that fail decoding or validation go to <topic>.dlq. "
            "Start several workers with the same ROLLWATCH_APP_ID to share the partitions. Stop with Ctrl-C or "
            "SIGTERM: a stop that takes longer than ROLLWATCH_SHUTDOWN_TIMEOUT seconds (a broker gone, say) "
            f"ends the process at once with status {STOP_TIMEOUT_EXIT_CODE}."
        ),
    )
    parser.set_defaults(handler=run)


class StopDeadline:
    """Ends the process `timeout` seconds after a stop began, unless the process has ended first.

    A thread, not the event loop: what holds a stop up may be the loop itself. Ending the process there is
    safe under both guarantees, since a worker commits offsets only after what they cover has been sent,
    so the next worker reads again whatever was not committed."""

    def __init__(self, timeout: float, exit_process: Callable[[int], object] = os._exit) -> None:
        self.timeout = timeout
        self.exit_process = exit_process
        self.reason: str | None = None
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def start(self, reason: str) -> None:
        """Starts the countdown (once: a second signal does not extend it)."""
        with self._lock:
            if self._timer is not None:
                return
            self.reason = reason
            self._timer = threading.Timer(self.timeout, self._expire)
            self._timer.daemon = True
            self._timer.name = "stop-deadline"
            self._timer.start()

    def _expire(self) -> None:
        logger.critical(
            "Worker did not stop within %.1f s of %s (ROLLWATCH_SHUTDOWN_TIMEOUT); exiting now with status %d. "
            "Nothing committed is lost: what was not committed is read again by the next worker.",
            self.timeout, self.reason, STOP_TIMEOUT_EXIT_CODE,
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        self.exit_process(STOP_TIMEOUT_EXIT_CODE)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from cli.failures import require_kafka

    # Faust retries an absent broker for minutes, logging all the while: check before even importing it.
    require_kafka(settings)
    from config.rules import build_rule_config
    from replay.run import relax_garbage_collection
    from streams.runtime.stopping import worker_class
    from streams.tables import discard_local_tables
    from streams.topics import ensure_worker_topics
    from streams.worker import build_worker

    topics = ensure_worker_topics(settings)
    relax_garbage_collection()
    app = build_worker(settings, build_rule_config(settings), topics.created + topics.existing)
    discard_local_tables(app, settings)
    worker = worker_class(StopDeadline(settings.shutdown_timeout))(
        app, loglevel=_FAUST_LEVELS[settings.log_level], quiet=True
    )
    worker.execute_from_commandline()
    return 0
