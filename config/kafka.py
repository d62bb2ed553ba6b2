"""Kafka client options from the settings: servers and security for both client libraries, and kafka-python's own."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Sequence
from typing import Any

from kafka import KafkaConsumer
from kafka.errors import AuthorizationError, Cancelled, SaslAuthenticationFailedError, TopicAuthorizationFailedError

from config.settings import Settings

#: kafka-python's own network client, which `_network_client` configures.
_NETWORK_CLIENT = KafkaConsumer.DEFAULT_CONFIG["kafka_client"]
#: kafka-python warns of "blocking the event loop" when one step of its network loop takes over 0.1 s. Reading
#: the metadata of every LA's alert topics (nearly 1,900 partitions at 4 each) takes about that long at each
#: refresh, harmlessly; a step of half a second would still be worth a warning.
SLOW_NETWORK_STEP_SECONDS = 0.5


def _network_client(**configs: Any) -> Any:
    return _NETWORK_CLIENT(slow_task_threshold_secs=SLOW_NETWORK_STEP_SECONDS, **configs)


def client_options(settings: Settings) -> dict[str, Any]:
    """Options for kafka-python's consumers, producers and admin clients."""
    return {**connection_options(settings), **network_options()}


def network_options() -> dict[str, Any]:
    """kafka-python options of Rollwatch's own beyond servers and security (the MIS client takes them too)."""
    quiet_cancelled_refresh()
    return {"kafka_client": _network_client}


def _not_a_cancelled_refresh(record: logging.LogRecord) -> bool:
    args = record.args if isinstance(record.args, tuple) else ()
    return not (str(record.msg).startswith("Metadata refresh: failed") and any(isinstance(a, Cancelled) for a in args))


def quiet_cancelled_refresh() -> None:
    """Keeps kafka-python from logging its own close as an ERROR. A client that closes cancels the metadata
    request it has in flight, and kafka-python then logs `Metadata refresh: failed Cancelled` at ERROR: a
    consumer refreshing every few seconds (`rollwatch alerts`) often closes during one. A connection lost or
    refused fails the request with another error, which is still logged."""
    logger = logging.getLogger("kafka.cluster")
    if _not_a_cancelled_refresh not in logger.filters:
        logger.addFilter(_not_a_cancelled_refresh)


def connection_options(settings: Settings) -> dict[str, Any]:
    """Servers and security, which aiokafka's clients take under the same names as kafka-python's."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_list,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password.get_secret_value() if settings.sasl_password else None
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl_context(settings)
    return options


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """Trusts the settings' CA and, for mutual TLS, presents their client certificate."""
    context = ssl.create_default_context(cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None)
    if settings.ssl_certfile is not None:
        context.load_cert_chain(
            str(settings.ssl_certfile), str(settings.ssl_keyfile) if settings.ssl_keyfile else None
        )
    return context


def _host_port(server: str) -> tuple[str, int]:
    host, _, port = server.strip().rpartition(":")
    return host.strip("[]") or "localhost", int(port) if port.isdigit() else 9092


def tcp_refusal(servers: Sequence[str], timeout: float) -> str | None:
    """Why no bootstrap server accepts a TCP connection (e.g. "connection refused"), or None if one does.

    kafka-python keeps retrying a refused connection until its timeout; this answers at once."""
    problems = []
    for server in servers:
        try:
            with socket.create_connection(_host_port(server), timeout=timeout):
                return None
        except OSError as error:
            problems.append((error.strerror or type(error).__name__).lower())
    return "; ".join(dict.fromkeys(problems))


class KafkaAccessError(Exception):
    """Kafka turned this principal away (wrong credentials, a missing ACL) or could not be reached; one line."""


def principal_of(settings: Settings) -> str:
    if settings.security_protocol.startswith("SASL") and settings.sasl_username:
        return f"user {settings.sasl_username}"
    if settings.ssl_certfile is not None:
        return f"the certificate in {settings.ssl_certfile}"
    return "an anonymous client"


def check_access(
    settings: Settings, read_topics: Sequence[str] = (), timeout: float = 5.0, write_topics: Sequence[str] = ()
) -> None:
    """Fails fast, with a message naming the cause, when the settings cannot log in or may not read a topic of
    `read_topics` or write one of `write_topics` (one that does not exist yet is left to whoever creates it).

    kafka-python retries a refused login until its bootstrap timeout and then only reports that it could not
    bootstrap; this connects once with a short timeout and tells a refused login from an unreachable cluster.
    """
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    refused = tcp_refusal(settings.bootstrap_list, timeout)
    if refused is not None:
        raise KafkaAccessError(
            f"cannot reach Kafka at {settings.bootstrap_servers} ({refused}); check ROLLWATCH_BOOTSTRAP_SERVERS and "
            "that the broker is running"
        )
    refusals: list[BaseException] = []
    refused_event = threading.Event()

    def note_refusal(record: logging.LogRecord) -> bool:
        found = [
            arg for arg in (record.args or ()) if isinstance(arg, SaslAuthenticationFailedError | AuthorizationError)
        ]
        if found:
            refusals.extend(found)
            refused_event.set()
        # The one-line message below says it all; kafka-python's own would repeat it at every retry.
        return False

    def refused_login(error: BaseException | None) -> KafkaAccessError:
        failure = KafkaAccessError(
            f"Kafka refused the login of {principal_of(settings)} ({settings.sasl_mechanism}): wrong user "
            "name or password, or the user was revoked"
        )
        failure.__cause__ = error
        return failure

    outcome: dict[str, Any] = {}

    def connect() -> None:
        try:
            outcome["admin"] = KafkaAdminClient(
                client_id="rollwatch-access-check",
                bootstrap_timeout_ms=int(timeout * 1000),
                request_timeout_ms=int(timeout * 1000),
                **client_options(settings),
            )
        except (KafkaError, OSError) as error:
            outcome["error"] = error
        finally:
            # Removed by the thread, not the caller: after a refusal the client may retry until its own
            # timeout, and its lines stay quiet until then.
            for network_logger in network_loggers:
                network_logger.removeFilter(note_refusal)
            if refusals and "admin" in outcome:
                outcome.pop("admin").close()
            refused_event.set()

    network_loggers = [logging.getLogger(f"kafka.net.{name}") for name in ("manager", "connection", "transport")]
    for network_logger in network_loggers:
        network_logger.addFilter(note_refusal)
    # kafka-python retries a refused login until its bootstrap timeout; the first refusal is answer enough,
    # so the client connects on a thread of its own and the check returns as soon as the broker says no.
    connecting = threading.Thread(target=connect, name="rollwatch-access-check", daemon=True)
    connecting.start()
    refused_event.wait(timeout + 1.0)
    if refusals:
        raise refused_login(refusals[0])
    connecting.join(1.0)
    error = outcome.get("error")
    if error is not None or "admin" not in outcome:
        if _is_refusal(error):
            raise refused_login(error)
        # The listener answered TCP, so the login itself did not complete: a busy broker answering a SCRAM
        # exchange late looks the same to the client as one that drops the connection of unknown credentials.
        credentials = "the user name and password (the user may have been revoked), " if settings.sasl_username else ""
        failure = KafkaAccessError(
            f"cannot log in to Kafka at {settings.bootstrap_servers} as {principal_of(settings)} within "
            f"{timeout:.0f} s ({settings.security_protocol}); check {credentials}ROLLWATCH_BOOTSTRAP_SERVERS and "
            "the TLS files"
        )
        failure.__cause__ = error
        raise failure
    admin = outcome["admin"]
    try:
        for operation, topics in (("READ", read_topics), ("WRITE", write_topics)):
            if not topics:
                continue
            for described in admin.describe_topics(list(topics)):
                allowed = described.get("authorized_operations")
                if described.get("error_code") == TopicAuthorizationFailedError.errno or (
                    isinstance(allowed, list) and operation not in allowed
                ):
                    raise KafkaAccessError(
                        refusal_message(operation, "topic", str(described.get("name")), settings)
                    )
    finally:
        admin.close()


def _is_refusal(error: BaseException | None) -> bool:
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, SaslAuthenticationFailedError | AuthorizationError):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def refusal_message(operation: str, resource: str, name: str, settings: Settings) -> str:
    return (
        f"not allowed to {operation} {resource} {name} as {principal_of(settings)}; "
        "ask your Rollwatch administrator for access"
    )
