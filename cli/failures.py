"""Reachability checks for Kafka and the register's database, and the one line a command prints when either is down."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

from config.settings import Settings

#: Seconds for each probe step: a TCP connect per bootstrap server, the metadata request, the database login.
#: Nothing listening is refused at once; this bounds a server that answers slowly (a busy broker checking a
#: SCRAM login), kept under the 10 s in which a command must have said what is wrong.
PROBE_TIMEOUT = 7.0
#: Seconds for a secured cluster's TLS handshake and SCRAM exchange once TCP is known to answer: a refusal comes back
#: in well under a second, and a loaded broker still answers a good login inside this.
LOGIN_TIMEOUT = 9.0
#: Loggers that would narrate a failed connection at WARNING or ERROR, once per retry.
NOISY_LOGGERS = ("kafka", "aiokafka", "faust", "mode", "sqlalchemy", "alembic", "psycopg")


class Unreachable(Exception):
    """Kafka or the database could not be reached; the message is the one line the command prints."""


def _not_a_library(record: logging.LogRecord) -> bool:
    return record.name.partition(".")[0] not in NOISY_LOGGERS


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Silences the client libraries while a probe runs: the probe reports the failure itself, once.

    A filter on the output, not a level on the loggers, so that check_access's own logger filters still see
    the refusals they look for."""
    handlers = [*logging.getLogger().handlers, logging.lastResort]
    for handler in handlers:
        if handler is not None:
            handler.addFilter(_not_a_library)
    try:
        yield
    finally:
        for handler in handlers:
            if handler is not None:
                handler.removeFilter(_not_a_library)


def kafka_unreachable(servers: str, reason: str) -> Unreachable:
    return Unreachable(
        f"cannot reach Kafka at {servers} ({reason}); check ROLLWATCH_BOOTSTRAP_SERVERS and that the broker is running"
    )


def require_kafka(settings: Settings, read_topics: Sequence[str] = (), timeout: float = PROBE_TIMEOUT) -> None:
    """Raises Unreachable unless a bootstrap server accepts a TCP connection and answers a metadata request;
    on a secured cluster, also unless the login is accepted and `read_topics` may be read."""
    from config.kafka import tcp_refusal

    refused = tcp_refusal(settings.bootstrap_list, timeout)
    if refused is not None:
        raise kafka_unreachable(settings.bootstrap_servers, refused)
    if settings.security_protocol != "PLAINTEXT":
        # A secured listener that accepts TCP may still refuse the login; check_access tells which in one line.
        from config.kafka import KafkaAccessError, check_access

        try:
            with quiet_libraries():
                check_access(settings, read_topics, timeout=max(timeout, LOGIN_TIMEOUT))
        except KafkaAccessError as error:
            raise Unreachable(str(error)) from error
        return
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    from config.kafka import client_options

    try:
        with quiet_libraries():
            admin = KafkaAdminClient(
                client_id="rollwatch-probe",
                bootstrap_timeout_ms=int(timeout * 1000),
                request_timeout_ms=int(timeout * 1000),
                **client_options(settings),
            )
            admin.close()
    except (KafkaError, OSError) as error:
        raise kafka_unreachable(
            settings.bootstrap_servers, f"no Kafka metadata within {timeout:g} s: {type(error).__name__}"
        ) from error


def database_unreachable(url: str, reason: str) -> Unreachable:
    from sqlalchemy.engine import make_url

    where = make_url(url).render_as_string(hide_password=True)
    return Unreachable(
        f"cannot reach the database at {where} ({reason}); check ROLLWATCH_DATABASE_URL and that the database is "
        "running"
    )


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def require_database(settings: Settings, timeout: float = PROBE_TIMEOUT) -> None:
    """Raises Unreachable unless the register's database accepts a login (SQLite: its folder is usable)."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    url = settings.database_url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        # SQLite fails only on the file system, which the register reports itself; nothing to dial.
        return
    connect_args = {"connect_timeout": max(1, int(timeout))} if parsed.get_backend_name() == "postgresql" else {}
    try:
        with quiet_libraries():
            engine = create_engine(parsed, connect_args=connect_args)
            try:
                with engine.connect():
                    pass
            finally:
                engine.dispose()
    except SQLAlchemyError as error:
        raise database_unreachable(url, _first_line(error)) from error


#: Exceptions, by module and class name, that mean a service could not be reached after the probes passed.
_KAFKA_DOWN = {
    ("kafka.errors", "KafkaConnectionError"),
    ("aiokafka.errors", "KafkaConnectionError"),
    ("aiokafka.errors", "NoBrokersAvailable"),
}
_DATABASE_DOWN = {("sqlalchemy.exc", "OperationalError")}


def failure_line(error: BaseException, settings: Settings) -> str | None:
    """The one line for a connection failure that escaped the probes (the service went away later), or None.

    Matched by name along the class's bases, so that a library the command never loaded is not imported here."""
    if isinstance(error, Unreachable):
        return str(error)
    kinds = {(kind.__module__, kind.__name__) for kind in type(error).__mro__}
    if kinds & _KAFKA_DOWN:
        return str(kafka_unreachable(settings.bootstrap_servers, type(error).__name__))
    if kinds & _DATABASE_DOWN:
        return str(database_unreachable(settings.database_url, _first_line(error)))
    return None
