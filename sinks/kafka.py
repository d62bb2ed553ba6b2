"""Kafka delivery of alerts (la.<LA>.alerts.<recipient>) and dead letters (<topic>.dlq), Avro-encoded."""

from __future__ import annotations

import faust

from processors.records import Alert, DeadLetter, dead_letter_topic
from schemas.codec import AvroCodec


class _TopicCache:
    """Declares each output topic once (so it gets the configured partitions), then reuses it."""

    def __init__(self, app: faust.App, partitions: int, prefix: str) -> None:
        self.app = app
        self.partitions = partitions
        self.prefix = prefix
        self.topics: dict[str, faust.TopicT] = {}

    async def get(self, name: str) -> faust.TopicT:
        topic = self.topics.get(name)
        if topic is None:
            topic = self.app.topic(
                self.prefix + name, partitions=self.partitions, key_serializer="raw", value_serializer="raw"
            )
            await topic.maybe_declare()
            self.topics[name] = topic
        return topic


class KafkaAlertSink:
    """Sends each alert to its LA's recipient topic, keyed by UPN; inside the agent's transaction when
    the worker runs exactly_once, so an alert is visible to read_committed consumers exactly once."""

    def __init__(self, app: faust.App, codec: AvroCodec, partitions: int, prefix: str = "") -> None:
        self.codec = codec
        self.topics = _TopicCache(app, partitions, prefix)

    async def send(self, alert: Alert) -> None:
        topic = await self.topics.get(alert.topic)
        await topic.send(key=alert.upn.encode(), value=self.codec.encode(alert))


class KafkaDeadLetterSink:
    """Sends each dead letter to `<source topic>.dlq`; the source topic already carries any prefix."""

    def __init__(self, app: faust.App, codec: AvroCodec, partitions: int) -> None:
        self.codec = codec
        self.topics = _TopicCache(app, partitions, prefix="")

    async def send(self, letter: DeadLetter, key: bytes | None) -> None:
        topic = await self.topics.get(dead_letter_topic(letter.source_topic))
        await topic.send(key=key, value=self.codec.encode(letter))
