"""Alert and dead-letter delivery behind small interfaces: Kafka topics in the worker, lists in tests."""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from processors.records import Alert, DeadLetter


class AlertSink(Protocol):
    async def send(self, alert: Alert) -> None: ...


class DeadLetterSink(Protocol):
    async def send(self, letter: DeadLetter, key: bytes | None) -> None: ...


class Outbox(Protocol):
    """Where the Kafka sinks stage an input record's messages, to be sent together with its state."""

    @property
    def known_topics(self) -> Collection[str]:
        """Full names of output topics known to exist already, which need not be declared."""
        ...

    def stage(self, topic: str, key: bytes | None, value: bytes | None) -> None: ...


class MemoryAlertSink:
    """Keeps alerts in order, for unit tests and in-process runs."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    async def send(self, alert: Alert) -> None:
        self.alerts.append(alert)


class MemoryDeadLetterSink:
    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    async def send(self, letter: DeadLetter, key: bytes | None) -> None:
        self.letters.append(letter)
