"""The Faust application factory: one configured App per call, built from the settings, no module globals."""

from __future__ import annotations

import ssl
from collections.abc import Collection

import faust

from config.kafka import ssl_context
from config.settings import Settings
from streams.runtime.install import install_runtime
from streams.runtime.outbox import RecordOutbox


def broker_credentials(settings: Settings) -> faust.SASLCredentials | faust.SSLCredentials | None:
    """Translates the settings' security options into Faust credentials (None for PLAINTEXT)."""
    protocol = settings.security_protocol
    context: ssl.SSLContext | None = None
    if protocol in ("SSL", "SASL_SSL"):
        context = ssl_context(settings)
    if protocol.startswith("SASL"):
        password = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
        return faust.SASLCredentials(
            username=settings.sasl_username or "",
            password=password,
            mechanism=settings.sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


class RollwatchApp(faust.App):
    """A Faust App with the outbox that holds what each input record sends until its transaction commits."""

    outbox: RecordOutbox


def create_app(
    settings: Settings, *, app_id: str | None = None, known_topics: Collection[str] = ()
) -> RollwatchApp:
    """A Faust App tuned for real brokers: agent concurrency 1 (see kafka-notes), explicit timeouts,
    co-partitioned topics, nothing discovered or connected until the worker starts it.

    Its commits send what its `outbox` holds; `known_topics` are output topics known to exist (see
    RecordOutbox)."""
    app = RollwatchApp(
        app_id or settings.app_id,
        broker=settings.faust_broker_url,
        broker_credentials=broker_credentials(settings),
        autodiscover=False,
        store=settings.store,
        datadir=str(settings.data_dir),
        processing_guarantee=settings.processing_guarantee,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        topic_disable_leader=True,
        # Faust falls back to a round-robin assignor (which breaks exactly_once) when an app has neither
        # tables nor standbys; at least one standby keeps its co-partitioning assignor in every case.
        table_standby_replicas=max(settings.table_standby_replicas, 1)
        if settings.processing_guarantee == "exactly_once"
        else settings.table_standby_replicas,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.broker_session_timeout,
        broker_heartbeat_interval=settings.broker_heartbeat_interval,
        broker_rebalance_timeout=settings.broker_rebalance_timeout,
        broker_request_timeout=settings.broker_request_timeout,
        broker_commit_interval=settings.broker_commit_interval,
        producer_linger=settings.producer_linger,
        stream_recovery_delay=0.5,
        producer_acks=-1,
        web_enabled=settings.web_enabled,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        key_serializer="raw",
        value_serializer="raw",
        timezone="Europe/London",
    )
    app.outbox = RecordOutbox(app, known_topics=known_topics)
    install_runtime(
        app, app.outbox, fetch_max_wait=settings.fetch_max_wait, retry_backoff=settings.producer_retry_backoff
    )
    return app
