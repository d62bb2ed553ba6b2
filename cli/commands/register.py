"""`rollwatch register migrate|sync|deliver|purge`: keeps the LA's CME register in SQL and delivers its alerts."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import textwrap
from collections.abc import Callable
from datetime import date
from typing import TYPE_CHECKING, Any

from config.settings import Settings

if TYPE_CHECKING:
    from sinks.metrics import DeliveryMetrics, SyncMetrics

log = logging.getLogger(__name__)

EPILOG = textwrap.dedent(
    """\
    The register lives at ROLLWATCH_DATABASE_URL (an SQLite file by default, PostgreSQL in production).

    examples:
      rollwatch register migrate              create or upgrade the register's tables
      rollwatch register sync                 keep the register up to date with the alert topics
      rollwatch register sync --once          catch up, then stop (cron, tests)
      rollwatch register deliver              POST new alerts to each LA's webhook (ROLLWATCH_WEBHOOKS)
      rollwatch register purge --dry-run      list closed cases and alerts past their retention period
    """
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "register",
        help="the CME register: migrate, sync from the alert topics, deliver webhooks, purge",
        description="Keep each LA's register of children missing education in SQL, fed from the alert topics.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="register_action", metavar="ACTION", required=True)

    migrate = actions.add_parser(
        "migrate",
        help="create the register's tables, or upgrade them to this release",
        description="Apply every schema migration the database lacks; safe to run again.",
    )
    migrate.set_defaults(handler=run_migrate)

    sync = actions.add_parser(
        "sync",
        help="consume the alert topics and case.actions into the register",
        description=(
            "Consumes every la.<LA>.alerts.<recipient> topic and case.actions (read_committed) under the "
            "consumer group ROLLWATCH_REGISTER_GROUP and writes each batch in one transaction, then commits "
            "the offsets. Idempotent: an alert delivered twice is stored once. Alerts for LAs with a webhook "
            "get a pending delivery, which `register deliver` sends. Run one sync per register."
        ),
    )
    sync.add_argument("--once", action="store_true", help="stop once caught up with every topic")
    sync.add_argument(
        "--timeout", type=float, default=300.0, help="with --once: give up (exit 1) if not caught up by then, seconds"
    )
    sync.set_defaults(handler=run_sync)

    deliver = actions.add_parser(
        "deliver",
        help="POST pending alerts to each LA's webhook, with retries; outcomes go into the register",
        description=(
            "One worker per LA in ROLLWATCH_WEBHOOKS sends that LA's pending alerts, oldest first, signed with "
            "HMAC-SHA256 (see README). 5xx, 429 and timeouts are retried with backoff; other 4xx and a spent "
            "retry budget dead-letter the delivery in the register."
        ),
    )
    deliver.add_argument("--once", action="store_true", help="stop when no LA has anything pending")
    deliver.set_defaults(handler=run_deliver)

    purge = actions.add_parser(
        "purge",
        help="remove closed cases and old alerts past their LA's retention period",
        description=(
            "Closed cases (with their alerts and deliveries) go once the longest retention period of the LAs "
            "holding them has passed since closure; alerts outside any case once their LA's period has passed "
            "since they were raised. Open cases are never purged. Periods: ROLLWATCH_RETENTION_YEARS (default "
            "6) and ROLLWATCH_RETENTION_YEARS_BY_LA."
        ),
    )
    purge.add_argument("--dry-run", action="store_true", help="list what would go; change nothing")
    purge.add_argument(
        "--today", type=date.fromisoformat, default=None, metavar="YYYY-MM-DD", help="judge as of this date"
    )
    purge.set_defaults(handler=run_purge)


def _fail(message: str) -> int:
    print(f"rollwatch register: {message}", file=sys.stderr)
    return 1


def run_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from cli.failures import require_database
    from sinks.register.engine import migrate_url

    require_database(settings)
    where, revision = migrate_url(settings.database_url)
    print(f"register at {where} is at schema revision {revision}")
    return 0


def run_sync(args: argparse.Namespace, settings: Settings) -> int:
    from cli.failures import require_database, require_kafka
    from sinks.register.engine import RegisterNotReady
    from sinks.register.feed import consume_into_register

    require_database(settings)
    require_kafka(settings)
    recorder, stop_metrics = serve_sync_metrics(settings)
    try:
        outcome = consume_into_register(settings, args.once, args.timeout, recorder)
    except RegisterNotReady as error:
        return _fail(str(error))
    finally:
        stop_metrics()
    stats = outcome.stats
    skipped = ", ".join(f"{code} {count}" for code, count in sorted(stats.skipped.items())) or "none"
    print(
        f"register sync: {stats.messages} messages in {outcome.batches} batches; {stats.alerts_new} new alerts, "
        f"{stats.alerts_duplicate} already held, {stats.actions} case actions, {stats.cases_closed} cases closed; "
        f"skipped: {skipped}",
        file=sys.stderr,
    )
    if args.once and not outcome.caught_up:
        return _fail(f"not caught up after {args.timeout:g} s")
    return 0


def run_deliver(args: argparse.Namespace, settings: Settings) -> int:
    from cli.failures import require_database
    from sinks.register.engine import RegisterNotReady
    from sinks.register.store import open_register
    from sinks.webhook import Endpoint, RetryPolicy, WebhookDispatcher

    if not settings.webhooks:
        print("rollwatch register deliver: no LA has a webhook (set ROLLWATCH_WEBHOOKS); nothing to do",
              file=sys.stderr)
        return 0
    require_database(settings)
    try:
        register = open_register(settings.database_url)
    except RegisterNotReady as error:
        return _fail(str(error))
    policy = RetryPolicy(
        max_attempts=settings.webhook_max_attempts,
        backoff_initial=settings.webhook_backoff_initial,
        backoff_max=settings.webhook_backoff_max,
        retry_after_max=settings.webhook_retry_after_max,
        timeout=settings.webhook_timeout,
    )
    endpoints = {
        la: Endpoint(la, endpoint.url, endpoint.secret.get_secret_value()) for la, endpoint in settings.webhooks.items()
    }
    recorder, stop_metrics = serve_delivery_metrics(settings)
    dispatcher = WebhookDispatcher(
        register, endpoints, policy, settings.webhook_batch_size, settings.webhook_poll_interval, recorder=recorder
    )
    try:
        results = asyncio.run(dispatcher.run(once=args.once))
    except KeyboardInterrupt:
        results = dispatcher.results
    finally:
        register.close()
        stop_metrics()
    delivered = sum(1 for result in results if result.outcome.value == "delivered")
    print(
        f"register deliver: {delivered} delivered, {len(results) - delivered} dead-lettered",
        file=sys.stderr,
    )
    return 0


def serve_delivery_metrics(settings: Settings) -> tuple[DeliveryMetrics | None, Callable[[], None]]:
    """Delivery counters on their own registry, served on ROLLWATCH_DELIVER_METRICS_PORT when one is set."""
    if not settings.deliver_metrics_port:
        return None, lambda: None
    from prometheus_client import CollectorRegistry, start_http_server

    from sinks.metrics import DeliveryMetrics

    registry = CollectorRegistry()
    server, thread = start_http_server(settings.deliver_metrics_port, settings.web_host, registry)
    log.info("delivery metrics on http://%s:%d/metrics", settings.web_host, settings.deliver_metrics_port)

    def stop() -> None:
        server.shutdown()
        thread.join(timeout=5)

    return DeliveryMetrics(registry), stop


def serve_sync_metrics(settings: Settings) -> tuple[SyncMetrics | None, Callable[[], None]]:
    """Lag and last success of `register sync` on their own registry, served on ROLLWATCH_SYNC_METRICS_PORT
    when one is set."""
    if not settings.sync_metrics_port:
        return None, lambda: None
    import time

    from prometheus_client import CollectorRegistry, start_http_server

    from sinks.metrics import SyncMetrics

    registry = CollectorRegistry()
    metrics = SyncMetrics(registry, started=time.time())
    server, thread = start_http_server(settings.sync_metrics_port, settings.web_host, registry)
    log.info("register sync metrics on http://%s:%d/metrics", settings.web_host, settings.sync_metrics_port)

    def stop() -> None:
        server.shutdown()
        thread.join(timeout=5)

    return metrics, stop


def run_purge(args: argparse.Namespace, settings: Settings) -> int:
    from cli.failures import require_database
    from sinks.register.engine import RegisterNotReady
    from sinks.register.retention import RetentionPolicy
    from sinks.register.store import open_register

    require_database(settings)
    try:
        register = open_register(settings.database_url)
    except RegisterNotReady as error:
        return _fail(str(error))
    today = args.today or date.today()  # noqa: DTZ011 - retention counts whole days, in local time
    policy = RetentionPolicy(settings.retention_years, settings.retention_years_by_la)
    try:
        report = register.purge(today, policy, dry_run=args.dry_run)
    finally:
        register.close()
    verb = "would remove" if args.dry_run else "removed"
    if report.cases:
        print(f"{'CASE':<36}  {'UPN':<13}  {'LAS':<11}  {'CLOSED':<10}  {'KEPT UNTIL':<10}  ALERTS")
        for item in report.cases:
            print(
                f"{item.case_id or '':<36}  {item.upn:<13}  {','.join(item.la_codes) or '-':<11}  "
                f"{item.ended_on.isoformat():<10}  {item.kept_until.isoformat():<10}  {item.alerts}"
            )
    print(
        f"register purge as of {today.isoformat()}: {verb} {len(report.cases)} closed cases, "
        f"{report.alert_count} alerts ({len(report.caseless_alerts)} outside any case) and "
        f"{report.children} children; open cases are never purged"
    )
    return 0
