"""Kafka client options from the settings: servers and security for both client libraries, and kafka-python's own."""

from __future__ import annotations

import ssl
from typing import Any

from kafka import KafkaConsumer

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
    return {"kafka_client": _network_client}


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
        options["ssl_context"] = ssl.create_default_context(
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None
        )
    return options
