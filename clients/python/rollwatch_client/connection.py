"""Where the client's Kafka is and how to reach it: servers, security, topic prefix, as kafka-python options."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


@dataclass(frozen=True)
class KafkaConnection:
    """How to reach the Kafka cluster Rollwatch reads from.

    `bootstrap_servers` is "host:port" or several of them separated by commas. `topic_prefix` goes in front of
    every topic name (an environment's own topics on a shared cluster, e.g. "staging."). `extra_options` are
    further kafka-python client options, given to every producer and admin client this package makes.
    """

    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    topic_prefix: str = ""
    client_id: str = "rollwatch-client"
    extra_options: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.bootstrap_list:
            raise ValueError("give at least one bootstrap server, e.g. kafka.example.org:9092")
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise ValueError(f"security_protocol must be one of {', '.join(SECURITY_PROTOCOLS)}")
        if self.security_protocol.startswith("SASL") and not self.sasl_mechanism:
            raise ValueError(f"{self.security_protocol} needs a sasl_mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)")

    @property
    def bootstrap_list(self) -> list[str]:
        return [server.strip() for server in self.bootstrap_servers.split(",") if server.strip()]

    def topic(self, name: str) -> str:
        """A contract topic name (e.g. roll.events) under this connection's prefix."""
        return f"{self.topic_prefix}{name}"

    def kafka_options(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's KafkaProducer, KafkaConsumer and KafkaAdminClient."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_list,
            "security_protocol": self.security_protocol,
            "client_id": self.client_id,
        }
        if self.security_protocol.startswith("SASL"):
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password
        if self.security_protocol in ("SSL", "SASL_SSL"):
            context = ssl.create_default_context(cafile=self.ssl_cafile)
            if self.ssl_certfile:
                context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
            options["ssl_context"] = context
        options.update(self.extra_options)
        return options
