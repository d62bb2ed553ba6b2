"""Kafka delivery of alerts (la.<LA>.alerts.<recipient>) and dead letters (<topic>.dlq), Avro-encoded."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import replace

import faust

from processors.records import Alert, DeadLetter, dead_letter_topic
from schemas.codec import AvroCodec
from sinks.alerts import Outbox

#: Waits until a topic just declared is served by its partitions' leaders (streams.topics.wait_until_served).
Served = Callable[[str], Awaitable[None]]


class _TopicCache:
    """Declares each output topic once (so it gets the configured partitions), then reuses it; topics created
    before the worker started (`ready`, full names) are not declared again, which would cost the record that
    first meets one a round trip to the controller. A topic declared here is awaited with `served` before its
    first message is staged: the controller answers the creation before the new partitions' leaders serve
    them, and a send meanwhile is turned away (NotLeaderForPartition) and retried with a warning each time."""

    def __init__(
        self, app: faust.App, partitions: int, prefix: str, ready: Collection[str] = (), served: Served | None = None
    ) -> None:
        self.app = app
        self.partitions = partitions
        self.prefix = prefix
        self.ready = frozenset(ready)
        self.served = served
        self.topics: dict[str, faust.TopicT] = {}

    async def get(self, name: str) -> faust.TopicT:
        topic = self.topics.get(name)
        if topic is None:
            topic = self.app.topic(
                self.prefix + name, partitions=self.partitions, key_serializer="raw", value_serializer="raw"
            )
            if topic.get_topic_name() not in self.ready:
                await topic.maybe_declare()
                if self.served is not None:
                    await self.served(topic.get_topic_name())
            self.topics[name] = topic
        return topic


class _OutboxSink:
    """Stages Avro-encoded messages for output topics in the input record's outbox; `prefix` goes before each
    topic name, the topics the outbox knows to exist are not declared again, and one declared is awaited with
    `served`."""

    def __init__(
        self,
        app: faust.App,
        codec: AvroCodec,
        partitions: int,
        outbox: Outbox,
        prefix: str = "",
        served: Served | None = None,
    ) -> None:
        self.codec = codec
        self.outbox = outbox
        self.topics = _TopicCache(app, partitions, prefix, outbox.known_topics, served)


class KafkaAlertSink(_OutboxSink):
    """Stages each alert for its LA's recipient topic, keyed by UPN, in the input record's outbox."""

    async def send(self, alert: Alert) -> None:
        topic = await self.topics.get(alert.topic)
        self.outbox.stage(topic.get_topic_name(), alert.key.encode(), self.codec.encode(alert))


#: Largest dead letter sent, in bytes: under Kafka's default message size (1,048,588) with room for the key
#: and batch headers, so that no topic configuration can turn a refused record into a failed commit.
MAX_DEAD_LETTER_BYTES = 1_000_000


def bounded_dead_letter(codec: AvroCodec, letter: DeadLetter, limit: int = MAX_DEAD_LETTER_BYTES) -> bytes:
    """The encoded dead letter, its raw bytes cut short if it would exceed `limit`; its message then says so,
    and the whole record is still where the letter points (topic, partition, offset) for as long as the
    input topic keeps it."""
    encoded = codec.encode(letter)
    if len(encoded) <= limit:
        return encoded
    note = (f"{letter.message} [raw cut to its first bytes: the record has {len(letter.raw):,}, more than a dead "
            "letter carries; read it whole from its topic, partition and offset]")
    room = limit - (len(encoded) - len(letter.raw)) - len(note.encode()) - 64
    return codec.encode(replace(letter, raw=letter.raw[: max(room, 0)], message=note))


class KafkaDeadLetterSink(_OutboxSink):
    """Stages each dead letter for `<source topic>.dlq` (the source topic already carries any prefix, so this
    sink takes none) in the record's outbox, which sends it with whatever the record wrote."""

    async def send(self, letter: DeadLetter, key: bytes | None) -> None:
        topic = await self.topics.get(dead_letter_topic(letter.source_topic))
        self.outbox.stage(topic.get_topic_name(), key, bounded_dead_letter(self.codec, letter))
