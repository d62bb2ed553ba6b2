"""Kafka delivery of alerts (la.<LA>.alerts.<recipient>) and dead letters (<topic>.dlq), Avro-encoded."""

from __future__ import annotations

from typing import Any

import faust
from faust.streams import current_event

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


async def send_with_input(app: faust.App, topic: str, key: bytes | None, value: bytes) -> None:
    """Sends a record as part of processing the input record in hand.

    Under exactly_once it joins the transaction that commits that input's offset: Faust's own send picks
    the transaction by the destination's partition, which only works for co-partitioned outputs, so an
    alert topic's record would otherwise go out non-transactionally and be repeated after a crash. Under
    at_least_once it waits for the broker's acknowledgement, so the input is acked only after its output.
    """
    producer: Any = await app.maybe_start_producer()
    event = current_event()
    if app.in_transaction and event is not None:
        tp = event.message.tp
        transactional_id = f"{app.conf.id}-{app.assignor.group_for_topic(tp.topic)}-{tp.partition}"
        await producer.producer.send(topic, key, value, None, None, None, transactional_id=transactional_id)
        return
    delivered = await producer.send(topic, key, value, None, None, None)
    await delivered


class KafkaAlertSink:
    """Sends each alert to its LA's recipient topic, keyed by UPN, in the input record's transaction."""

    def __init__(self, app: faust.App, codec: AvroCodec, partitions: int, prefix: str = "") -> None:
        self.app = app
        self.codec = codec
        self.topics = _TopicCache(app, partitions, prefix)

    async def send(self, alert: Alert) -> None:
        topic = await self.topics.get(alert.topic)
        await send_with_input(self.app, topic.get_topic_name(), alert.upn.encode(), self.codec.encode(alert))


class KafkaDeadLetterSink:
    """Sends each dead letter to `<source topic>.dlq`; the source topic already carries any prefix."""

    def __init__(self, app: faust.App, codec: AvroCodec, partitions: int) -> None:
        self.app = app
        self.codec = codec
        self.topics = _TopicCache(app, partitions, prefix="")

    async def send(self, letter: DeadLetter, key: bytes | None) -> None:
        topic = await self.topics.get(dead_letter_topic(letter.source_topic))
        await send_with_input(self.app, topic.get_topic_name(), key, self.codec.encode(letter))
