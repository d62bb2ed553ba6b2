"""The MIS publisher SDK: validated, Avro-encoded, UPN-keyed records onto Rollwatch's input topics.

This is for integrations (a school MIS, the LA EHE service, social care, a scheduler) and the
`rollwatch publish` command. It uses kafka-python, which is synchronous, so it must not be called from an
asyncio event loop.

    from rollwatch_client.connection import KafkaConnection
    from rollwatch_client.publisher import RollEventPublisher
    with RollEventPublisher(KafkaConnection("kafka.example.org:9092")) as publisher:
        publisher.publish(event)                       # raises InvalidRecordError before sending anything bad
    # leaving the block flushes, so every record is acknowledged by all in-sync replicas

The input topics must exist (Rollwatch's operators create them, co-partitioned; `rollwatch publish` does too).

Every publisher uses an idempotent producer (`enable_idempotence=True`, `acks="all"`), so a retried send
never duplicates a record, and keys each record by its UPN so all of a child's records, on every input
topic, land on the same partition number (the topics are co-partitioned: same partition count, same
partitioner). Clock ticks are the exception: see `ClockPublisher`.

CSV import of roll events (`CSV_COLUMNS`, `roll_event_from_csv_row`) lives here too, so an integration can
turn its export into records without the CLI.
"""

from __future__ import annotations

import csv
import io
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar, Generic, Self, TypeVar

from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.producer.future import FutureRecordMetadata

from processors.identifiers import Problem
from processors.records import (
    ATTENDANCE_REGISTERS,
    CLOCK_TICKS,
    CME_REFERRALS,
    EHE_NOTIFICATIONS,
    ROLL_EVENTS,
    SAFEGUARDING_STATUS,
    AttendanceRegister,
    ClockTick,
    CMEReferral,
    EHENotification,
    InputRecord,
    RollEvent,
    SafeguardingStatus,
)
from processors.validation import validate
from rollwatch_client.connection import KafkaConnection
from schemas.codec import AvroCodec
from schemas.errors import CodecError, CodecErrorCode
from schemas.jsonfields import record_from_json

#: The records this SDK publishes (the MIS-facing input topics).
PublishableRecord = RollEvent | EHENotification | SafeguardingStatus | ClockTick | AttendanceRegister | CMEReferral
PUBLISHABLE_TYPES: tuple[type, ...] = (
    RollEvent, EHENotification, SafeguardingStatus, ClockTick, AttendanceRegister, CMEReferral,
)

R = TypeVar("R", bound=PublishableRecord)

logger = logging.getLogger(__name__)

#: How long admin calls and metadata look-ups may take before the publisher gives up, milliseconds.
ADMIN_TIMEOUT_MS = 30_000


class InvalidRecordError(ValueError):
    """A record failed validation; `problems` lists every problem found (none was sent)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        listed = "; ".join(
            f"{problem.code}" + (f" ({problem.field})" if problem.field else "") + f": {problem.message}"
            for problem in self.problems
        )
        super().__init__(f"{len(self.problems)} problem(s): {listed}")


class PublishError(RuntimeError):
    """Kafka did not accept one or more records (after the producer's own retries)."""


def topic_name(topic: str, prefix: str = "") -> str:
    """The Kafka topic for an input topic under a prefix (environments and tests isolate their topics so)."""
    return f"{prefix}{topic}"


def _prefix(connection: KafkaConnection, topic_prefix: str | None) -> str:
    return connection.topic_prefix if topic_prefix is None else topic_prefix


def make_producer(connection: KafkaConnection) -> KafkaProducer:
    """An idempotent producer (acks from all in-sync replicas) for the connection's cluster.

    Topics are never auto-created by sending: a topic the broker made on first use would get the broker's
    default partition count and break co-partitioning, so they are created up front, all alike.
    """
    return KafkaProducer(
        **connection.kafka_options(),
        enable_idempotence=True,
        acks="all",
        allow_auto_create_topics=False,
        linger_ms=5,
        max_block_ms=ADMIN_TIMEOUT_MS,
    )


class _Publisher(Generic[R]):
    """Shared machinery: validate, encode, key by UPN, send; flush and close; a context manager.

    Pass `producer` to share one producer between several publishers (it is then the caller's to close);
    otherwise each publisher makes and owns its own. `topic_prefix` defaults to the connection's prefix.
    """

    record_type: ClassVar[type]
    base_topic: ClassVar[str]

    def __init__(
        self,
        connection: KafkaConnection,
        *,
        topic_prefix: str | None = None,
        producer: KafkaProducer | None = None,
        codec: AvroCodec | None = None,
    ) -> None:
        self.topic = topic_name(self.base_topic, _prefix(connection, topic_prefix))
        self._codec = codec or AvroCodec()
        self._owns_producer = producer is None
        self._producer = producer if producer is not None else make_producer(connection)
        self._failures: list[BaseException] = []
        self.sent = 0

    def check(self, record: R) -> None:
        """Raise InvalidRecordError listing every problem with `record`; return if it may be sent."""
        if not isinstance(record, self.record_type):
            raise TypeError(f"{type(self).__name__} publishes {self.record_type.__name__}, not {type(record).__name__}")
        problems = validate(record)
        if problems:
            raise InvalidRecordError(problems)

    def publish(self, record: R) -> list[FutureRecordMetadata]:
        """Validate `record`, then send it (asynchronously; `flush` waits for the acknowledgements).

        Returns the send futures (one per message), whose metadata give the partitions and offsets written;
        waiting for a consumer to reach them is how a caller can order records across topics.
        """
        self.check(record)
        return self._send(record)

    def _send(self, record: R) -> list[FutureRecordMetadata]:
        value = self._codec.encode(record)
        key = self._key(record)
        future = self._producer.send(self.topic, value=value, key=key)
        future.add_errback(self._failures.append)
        self.sent += 1
        return [future]

    def _key(self, record: R) -> bytes | None:
        if isinstance(record, RollEvent | EHENotification | SafeguardingStatus):
            return record.upn.encode("ascii")
        if isinstance(record, AttendanceRegister):
            return record.school.urn.encode("ascii")
        if isinstance(record, CMEReferral):
            return record.key.encode("ascii")
        return None

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything sent so far is acknowledged; raise PublishError if any send failed."""
        try:
            self._producer.flush(timeout=timeout)
        except KafkaError as error:
            raise PublishError(f"flushing {self.topic} failed: {type(error).__name__}: {error}") from error
        if self._failures:
            first = self._failures[0]
            count = len(self._failures)
            self._failures.clear()
            raise PublishError(
                f"{count} record(s) to {self.topic} were not accepted by Kafka; first error: "
                f"{type(first).__name__}: {first}"
            )

    def close(self, timeout: float | None = None) -> None:
        """Flush, then close the producer if this publisher made it."""
        try:
            self.flush(timeout)
        finally:
            if self._owns_producer:
                self._producer.close(timeout=timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
            return
        # The block is failing already (perhaps a record it skipped was invalid): still deliver what was
        # sent, which was valid, but let the block's own error be the one that surfaces.
        try:
            self.close()
        except (PublishError, KafkaError) as error:
            logger.warning("while handling %s, closing %s failed: %s", exc_type.__name__, self.topic, error)


class RollEventPublisher(_Publisher[RollEvent]):
    """Roll changes (ADDED/REMOVED) from a school MIS onto `roll.events`, keyed by UPN."""

    record_type = RollEvent
    base_topic = ROLL_EVENTS


class EHENotificationPublisher(_Publisher[EHENotification]):
    """Elective home education notifications onto `ehe.notifications`, keyed by UPN."""

    record_type = EHENotification
    base_topic = EHE_NOTIFICATIONS


class SafeguardingStatusPublisher(_Publisher[SafeguardingStatus]):
    """Child protection / looked-after / SAO status onto the compacted `safeguarding.status`, keyed by UPN.

    The topic keeps the latest record per UPN, so always send the child's whole current status.
    """

    record_type = SafeguardingStatus
    base_topic = SAFEGUARDING_STATUS


class AttendancePublisher(_Publisher[AttendanceRegister]):
    """A school's daily attendance registers onto `attendance.registers`, keyed by the school's URN.

    Send each day's marks once the register is taken (both sessions in one mark; a school that takes them
    separately sends the day again with both), at most 5,000 marks a register, a pupil at most once in it, each
    register under a new UUID. A mark sent again later for the same school, date and pupil corrects it. A bad
    mark (an unknown code, a malformed UPN) is refused alone by the worker; the register as a whole is
    validated here before it is sent."""

    record_type = AttendanceRegister
    base_topic = ATTENDANCE_REGISTERS


class ReferralPublisher(_Publisher[CMEReferral]):
    """Referrals of children who may be missing education onto `cme.referrals`, keyed by the UPN when the
    referral gives one, else by its referral id (so a referral without a UPN and the officer's later actions
    on its case share a partition).

    For the LA's own intake (a form its CME officers fill in for phone and email referrals, a partner
    agency's system through the LA): each referral under a new UUID, sent again under the same one if in
    doubt (the worker ignores a referral it has applied). A referral without referrer name and contact is
    anonymous, and valid."""

    record_type = CMEReferral
    base_topic = CME_REFERRALS


class ClockPublisher(_Publisher[ClockTick]):
    """Business-date ticks onto `clock.ticks`: one copy of each tick to EVERY partition.

    Each worker owns a set of partitions and keeps the business date per partition, because a child's
    deadlines are checked on the partition that holds the child. A tick sent to one partition would move the
    date for only the children there, so every tick goes to every partition (unkeyed). The partition count
    is read from the cluster once, on the first tick.
    """

    record_type = ClockTick
    base_topic = CLOCK_TICKS

    def __init__(
        self,
        connection: KafkaConnection,
        *,
        topic_prefix: str | None = None,
        producer: KafkaProducer | None = None,
        codec: AvroCodec | None = None,
    ) -> None:
        super().__init__(connection, topic_prefix=topic_prefix, producer=producer, codec=codec)
        self._partitions: list[int] | None = None

    def partitions(self) -> list[int]:
        """Partition ids of the clock topic (raises PublishError if the topic does not exist)."""
        if self._partitions is None:
            try:
                found = self._producer.partitions_for(self.topic)
            except KafkaError as error:
                raise PublishError(
                    f"cannot read the partitions of {self.topic} ({type(error).__name__}); create the input "
                    "topics first (rollwatch publish does)"
                ) from error
            if not found:
                raise PublishError(f"topic {self.topic} does not exist; create the input topics first")
            self._partitions = sorted(found)
        return self._partitions

    def _send(self, record: ClockTick) -> list[FutureRecordMetadata]:
        value = self._codec.encode(record)
        futures = []
        for partition in self.partitions():
            future = self._producer.send(self.topic, value=value, partition=partition)
            future.add_errback(self._failures.append)
            futures.append(future)
            self.sent += 1
        return futures


class InputPublisher:
    """All the input publishers over one shared producer: `publish(record)` picks the topic by record type.

    This is what `rollwatch publish` uses; an integration that sends several kinds of record can too.
    `sent` counts messages per topic (a tick counts once per partition).
    """

    def __init__(
        self, connection: KafkaConnection, *, topic_prefix: str | None = None, codec: AvroCodec | None = None
    ) -> None:
        shared_codec = codec or AvroCodec()
        self._producer = make_producer(connection)
        options: dict[str, Any] = {"topic_prefix": topic_prefix, "producer": self._producer, "codec": shared_codec}
        self._by_type: dict[type, _Publisher[Any]] = {
            RollEvent: RollEventPublisher(connection, **options),
            EHENotification: EHENotificationPublisher(connection, **options),
            SafeguardingStatus: SafeguardingStatusPublisher(connection, **options),
            ClockTick: ClockPublisher(connection, **options),
            AttendanceRegister: AttendancePublisher(connection, **options),
            CMEReferral: ReferralPublisher(connection, **options),
        }

    def publisher_for(self, record: InputRecord) -> _Publisher[Any]:
        publisher = self._by_type.get(type(record))
        if publisher is None:
            raise TypeError(
                f"{type(record).__name__} records are not published by this SDK; it sends "
                f"{', '.join(kind.__name__ for kind in PUBLISHABLE_TYPES)}"
            )
        return publisher

    def publish(self, record: InputRecord) -> list[FutureRecordMetadata]:
        """Validate and send `record` to its topic; raises InvalidRecordError listing every problem.

        Returns the send futures (see `_Publisher.publish`).
        """
        return self.publisher_for(record).publish(record)

    @property
    def producer(self) -> KafkaProducer:
        """The shared producer (to flush before waiting on the offsets that futures report)."""
        return self._producer

    @property
    def sent(self) -> dict[str, int]:
        return {publisher.topic: publisher.sent for publisher in self._by_type.values()}

    def flush(self, timeout: float | None = None) -> None:
        self._producer.flush(timeout=timeout)
        for publisher in self._by_type.values():
            publisher.flush(timeout)

    def close(self, timeout: float | None = None) -> None:
        try:
            self.flush(timeout)
        finally:
            self._producer.close(timeout=timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
            return
        try:
            self.close()
        except (PublishError, KafkaError) as error:
            logger.warning("while handling %s, closing the input publisher failed: %s", exc_type.__name__, error)


# ---- CSV import of roll events ----------------------------------------------------------------------------

#: Columns of a roll-events CSV file, in order (a header row naming them is required; order may vary).
CSV_COLUMNS: tuple[str, ...] = (
    "event_id",
    "event_type",
    "upn",
    "forename",
    "surname",
    "date_of_birth",
    "postcode",
    "school_urn",
    "school_laestab",
    "school_name",
    "school_special",
    "effective_date",
    "recorded_at",
    "ground",
    "destination_kind",
    "destination_school_urn",
    "destination_school_laestab",
    "destination_la_code",
    "standard_transition",
    "source_system",
)

#: What each CSV column holds; `rollwatch publish --help` and the README show this.
CSV_COLUMN_HELP: Mapping[str, str] = {
    "event_id": "UUID of the change; reuse it when resending the same change",
    "event_type": "ADDED or REMOVED",
    "upn": "the pupil's 13-character UPN",
    "forename": "pupil's forename",
    "surname": "pupil's surname",
    "date_of_birth": "YYYY-MM-DD",
    "postcode": "optional",
    "school_urn": "6-digit URN of the school recording the change",
    "school_laestab": "7-digit LAESTAB of that school",
    "school_name": "its name",
    "school_special": "true if it is a special school (empty means false)",
    "effective_date": "starting day (ADDED) or deletion date (REMOVED), YYYY-MM-DD",
    "recorded_at": "when the MIS recorded it, ISO-8601 with Z or an offset",
    "ground": "REMOVED only: A_REGISTERED_ELSEWHERE ... O_PERMANENTLY_EXCLUDED",
    "destination_kind": "REMOVED only, optional: SCHOOL, OTHER_LA, ABROAD or UNKNOWN",
    "destination_school_urn": "SCHOOL destination: the new school's URN",
    "destination_school_laestab": "SCHOOL destination: the new school's LAESTAB",
    "destination_la_code": "OTHER_LA destination (optional for SCHOOL): the 3-digit LA code",
    "standard_transition": "true at the end of the school's final year (empty means false)",
    "source_system": "name of the sending MIS",
}

_KNOWN_COLUMNS = frozenset(CSV_COLUMNS)
_TRUE = frozenset({"true", "yes", "y", "1"})
_FALSE = frozenset({"false", "no", "n", "0", ""})


def check_csv_header(header: Sequence[str]) -> None:
    """Raise CodecError unless the header names every CSV column exactly once and nothing else."""
    counts = Counter(name.strip() for name in header)
    if _KNOWN_COLUMNS.isdisjoint(counts):
        # Most likely a data row: its cells may be a child's name, so none is quoted.
        raise CodecError(
            CodecErrorCode.BAD_FIELD,
            f"CSV header: the first row names none of the columns; add a header row naming these columns: "
            f"{', '.join(CSV_COLUMNS)}",
        )
    missing = [column for column in CSV_COLUMNS if column not in counts]
    unknown = [name for name in counts if name not in _KNOWN_COLUMNS]
    repeated = sorted(name for name, count in counts.items() if count > 1)
    problems = []
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    if unknown:
        problems.append(f"unknown column(s) {_some(unknown)}")
    if repeated:
        problems.append(f"repeated column(s) {_some(repeated)}")
    if problems:
        raise CodecError(
            CodecErrorCode.BAD_FIELD,
            f"CSV header: {'; '.join(problems)}; the header must name these columns: {', '.join(CSV_COLUMNS)}",
        )


def _some(names: Sequence[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown:,} more" if len(names) > shown else ""
    return ", ".join(repr(name[:40]) for name in names[:shown]) + more


def _csv_cell(row: Mapping[str, str], column: str) -> str:
    value = row.get(column)
    if type(value) is str:
        return value
    if value is None:
        raise CodecError(CodecErrorCode.MISSING_FIELD, f"roll.events column '{column}' is absent from the row")
    raise CodecError(CodecErrorCode.BAD_FIELD, f"roll.events column '{column}' must be text")


def _csv_bool(row: Mapping[str, str], column: str) -> bool:
    text = _csv_cell(row, column).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise CodecError(CodecErrorCode.BAD_FIELD, f"roll.events column '{column}' must be true or false")


def roll_event_from_csv_row(row: Mapping[str, str]) -> RollEvent:
    """The roll event of one CSV row (keys: CSV_COLUMNS). Empty cells are absent values.

    Structural problems raise CodecError; call `processors.validation.validate` for the content rules.
    """
    def cell(column: str) -> str | None:
        text = _csv_cell(row, column).strip()
        return text or None

    destination: dict[str, Any] | None = None
    if cell("destination_kind") is not None:
        destination = {
            "kind": cell("destination_kind"),
            "school_urn": cell("destination_school_urn"),
            "school_laestab": cell("destination_school_laestab"),
            "la_code": cell("destination_la_code"),
        }
    elif any(cell(column) for column in ("destination_school_urn", "destination_school_laestab",
                                         "destination_la_code")):
        raise CodecError(
            CodecErrorCode.MISSING_FIELD,
            "roll.events column 'destination_kind' is required when any destination_* column is filled in",
        )
    value = {
        "event_id": cell("event_id"),
        "event_type": cell("event_type"),
        "upn": cell("upn"),
        "child": {
            "forename": cell("forename"),
            "surname": cell("surname"),
            "date_of_birth": cell("date_of_birth"),
            "postcode": cell("postcode"),
        },
        "school": {
            "urn": cell("school_urn"),
            "laestab": cell("school_laestab"),
            "name": cell("school_name"),
            "special": _csv_bool(row, "school_special"),
        },
        "effective_date": cell("effective_date"),
        "recorded_at": cell("recorded_at"),
        "ground": cell("ground"),
        "destination": destination,
        "standard_transition": _csv_bool(row, "standard_transition"),
        "source_system": cell("source_system"),
    }
    record = record_from_json(ROLL_EVENTS, value)
    if not isinstance(record, RollEvent):
        raise CodecError(CodecErrorCode.WRONG_RECORD_TYPE, "a roll.events row did not give a RollEvent")
    return record


def roll_event_to_csv_row(event: RollEvent) -> dict[str, str]:
    """One CSV row (keys: CSV_COLUMNS) for `event`; the inverse of `roll_event_from_csv_row`."""
    destination = event.destination
    timestamp = event.recorded_at.isoformat()
    if timestamp.endswith("+00:00"):
        timestamp = timestamp[: -len("+00:00")] + "Z"
    return {
        "event_id": event.event_id,
        "event_type": event.event_type.value,
        "upn": event.upn,
        "forename": event.child.forename,
        "surname": event.child.surname,
        "date_of_birth": event.child.date_of_birth.isoformat(),
        "postcode": event.child.postcode or "",
        "school_urn": event.school.urn,
        "school_laestab": event.school.laestab,
        "school_name": event.school.name,
        "school_special": "true" if event.school.special else "false",
        "effective_date": event.effective_date.isoformat(),
        "recorded_at": timestamp,
        "ground": event.ground.value if event.ground else "",
        "destination_kind": destination.kind.value if destination else "",
        "destination_school_urn": (destination.school_urn or "") if destination else "",
        "destination_school_laestab": (destination.school_laestab or "") if destination else "",
        "destination_la_code": (destination.la_code or "") if destination else "",
        "standard_transition": "true" if event.standard_transition else "false",
        "source_system": event.source_system,
    }


def roll_events_to_csv(events: Sequence[RollEvent]) -> str:
    """A whole CSV file (header included) for `events`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for event in events:
        writer.writerow(roll_event_to_csv_row(event))
    return buffer.getvalue()
