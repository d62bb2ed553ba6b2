"""Everything the agent does with one input record: decode, validate, apply, deliver, or dead-letter it."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Protocol

from aiokafka.errors import KafkaError

from processors.apply import apply_record, check
from processors.failures import UNPROCESSABLE, Rejected, describe_error
from processors.records import (
    INPUT_RECORD_TYPES,
    Alert,
    AttendanceRegister,
    CaseAction,
    DeadLetter,
    InputRecord,
    MarkBatch,
    RollEvent,
    SafeguardingStatus,
)
from processors.registers import MarkRejection, check_marks, split_by_partition
from processors.timeline import Applied, RegisterLedger, Timeline
from schemas.codec import AvroCodec
from schemas.errors import CodecError
from sinks.alerts import AlertSink, DeadLetterSink
from sinks.metrics import MeasuredFrom, MetricsRecorder, NoMetrics, count_calendar_fallbacks
from streams.batches import BatchSink, batch_register, decode_batches, encode_batch, one_mark_register
from streams.tables import MemoryPartitionCounts, PartitionCounts

log = logging.getLogger(__name__)


RECORD_TYPES: dict[str, type[InputRecord]] = dict(INPUT_RECORD_TYPES)


@dataclass
class RegisterRoute:
    """How registers reach the children's partitions: the registers' topic (full name), the ledger of
    registers already split, where the batches go (the batch topic, full name) and each UPN's partition."""

    registers_topic: str
    ledger_for: Callable[[], RegisterLedger]
    batches: BatchSink
    batches_topic: str
    partition_of: Callable[[str], int]


def own_time(record: InputRecord) -> datetime | None:
    """The time a record carries of its own, from which an alert's latency is measured."""
    if isinstance(record, RollEvent):
        return record.recorded_at
    if isinstance(record, SafeguardingStatus):
        return record.updated_at
    if isinstance(record, CaseAction):
        return record.at
    return None


def alert_origin(record: InputRecord, broker_timestamp: float | None) -> tuple[float | None, MeasuredFrom]:
    """Unix time the alerts of a record are measured from, and which clock that is."""
    moment = own_time(record)
    if moment is not None:
        aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        return aware.timestamp(), MeasuredFrom.RECORD
    return broker_timestamp, MeasuredFrom.BROKER


@dataclass
class HandledRecord:
    applied: bool
    alerts: int = 0
    error_code: str | None = None


class StateWrites(Protocol):
    """Sends the state a record wrote to where it is kept durably, before the record counts as handled."""

    async def flush(self) -> None: ...

    def discard(self) -> None:
        """Takes back what the record in hand wrote, for a record refused part-way."""
        ...


class NoStateWrites:
    """For stores that keep nothing beyond this process (in-memory timelines in tests)."""

    async def flush(self) -> None:
        return None

    def discard(self) -> None:
        return None


#: Failures of the worker's surroundings rather than of the record in hand: the worker stops, to be restarted
#: from its last commit, instead of dead-lettering a record that did nothing wrong.
SURROUNDINGS_FAILED: tuple[type[BaseException], ...] = (KafkaError, OSError, TimeoutError)

#: A child whose deadlines a tick could not check; its deadlines stay pending and the next tick tries again.
DEADLINE_CHECK_FAILED = "DEADLINE_CHECK_FAILED"


def _where_it_failed(error: BaseException) -> str:
    """The code locations an unforeseen failure passed through (file, line, function, source line): enough
    to find a fault, without the values in its message."""
    cause = error.__cause__ or error
    return "".join(traceback.format_tb(cause.__traceback__)).rstrip()


class RecordHandler:
    """Decode, validate, apply, deliver: everything the agent does with one message, with no Faust in it.

    No record can stop the worker: whatever goes wrong with one (bytes that do not decode, a field no check
    foresaw, a rule that fails on it, a stored state that does not read) dead-letters that record, with the
    state left as it was, and the worker goes on. Only a failure of Kafka or the machine stops it."""

    def __init__(
        self,
        codec: AvroCodec,
        timeline_for: Callable[[int], Timeline],
        alerts: AlertSink,
        dead_letters: DeadLetterSink,
        record_types: dict[str, type[InputRecord]],
        metrics: MetricsRecorder | None = None,
        counts: PartitionCounts | None = None,
        clock: Callable[[], float] = time.time,
        writes: StateWrites | None = None,
        registers: RegisterRoute | None = None,
    ) -> None:
        self.codec = codec
        self.timeline_for = timeline_for
        self.alerts = alerts
        self.dead_letters = dead_letters
        self.record_types = record_types
        self.metrics: MetricsRecorder = metrics or NoMetrics()
        self.counts: PartitionCounts = counts or MemoryPartitionCounts()
        self.clock = clock
        self.writes: StateWrites = writes or NoStateWrites()
        self.registers = registers

    async def handle(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        timestamp: float | None = None,
    ) -> HandledRecord:
        """Applies or dead-letters one message; `timestamp` is its Kafka timestamp (unix seconds)."""
        raw = value if value is not None else b""  # a tombstone (a null value) is refused like empty bytes
        route = self.registers
        if route is not None and topic == route.registers_topic:
            return await self._split(route, topic, partition, offset, key, raw)
        try:
            if route is not None and topic == route.batches_topic:
                applied = await self._apply_batches(route, partition, offset, decode_batches(raw))
                record: InputRecord | None = None
            else:
                record = self.codec.decode(raw, self.record_types[topic])
                applied = apply_record(self.timeline_for(partition), record)
            if applied.changes:
                self.counts.add(partition, applied.changes)
            for alert in applied.alerts:
                await self.alerts.send(alert)
        except SURROUNDINGS_FAILED:
            raise
        except Exception as error:
            return await self._refuse(error, topic, partition, offset, key, raw)
        for failure in applied.failed:
            # The tick itself applies; each child it could not check gets a dead letter keyed by its UPN.
            log.error("deadline check of one child failed at %s[%d]@%d (%s); its deadlines stay pending and "
                      "the next tick checks them again", topic, partition, offset, DEADLINE_CHECK_FAILED)
            letter = DeadLetter(raw, topic, partition, offset, DEADLINE_CHECK_FAILED,
                                "the deadlines of the child named by this dead letter's key could not be checked "
                                f"({failure.error}); they stay pending and the next tick checks them again")
            await self.dead_letters.send(letter, failure.upn.encode())
            self.metrics.deadline_check_failed(topic)
        # The record's state and alerts go out together: see RecordOutbox.
        await self.writes.flush()
        if applied.alerts:
            origin, measured_from = alert_origin(record, timestamp) if record is not None else (
                timestamp, MeasuredFrom.BROKER)
            for alert in applied.alerts:
                latency = self.clock() - origin if origin is not None else None
                self.metrics.alert_sent(alert, latency, measured_from)
        self.metrics.record_applied(topic, applied.new)
        count_calendar_fallbacks(self.metrics, self.timeline_for(partition).config)
        return HandledRecord(applied=True, alerts=len(applied.alerts))

    async def _apply_batches(
        self, route: RegisterRoute, partition: int, offset: int, batches: Sequence[MarkBatch]
    ) -> Applied:
        """The batches of one message on the children's partition, in order; their alerts, together."""
        timeline = self.timeline_for(partition)
        alerts: list[Alert] = []
        for batch in batches:
            applied = timeline.apply_batch(batch)
            # A batch's records are the register's: refusals and metrics name the registers' topic.
            self.metrics.marks_handled(route.registers_topic, len(batch.marks) - len(applied.refused_marks))
            await self._refuse_marks(route.registers_topic, partition, offset, applied.refused_marks,
                                     batch.register_id, partial(batch_register, batch))
            alerts.extend(applied.alerts)
        return Applied(tuple(alerts), True)

    async def _split(
        self, route: RegisterRoute, topic: str, partition: int, offset: int, key: bytes | None, raw: bytes
    ) -> HandledRecord:
        """A register: refused whole when its envelope is bad, ignored when already split, else its bad marks
        dead-lettered one by one and the rest sent on as one batch per partition holding its children."""
        try:
            register = self.codec.decode(raw, AttendanceRegister)
            check(register)
            if not route.ledger_for().admit(register.register_id):
                await self.writes.flush()
                self.metrics.record_applied(topic, False)
                return HandledRecord(applied=True)
            valid, refused = check_marks(register)
            for partition_to, batch in split_by_partition(register, valid, route.partition_of).items():
                route.batches.send(partition_to, register.register_id.encode(), encode_batch(batch))
            await self._refuse_marks(topic, partition, offset, refused, register.register_id,
                                     lambda i: one_mark_register(register, i))
        except SURROUNDINGS_FAILED:
            raise
        except Exception as error:
            return await self._refuse(error, topic, partition, offset, key, raw)
        await self.writes.flush()
        self.metrics.record_applied(topic, True)
        return HandledRecord(applied=True)

    async def _refuse(
        self, error: Exception, topic: str, partition: int, offset: int, key: bytes | None, raw: bytes
    ) -> HandledRecord:
        """Dead-letters the whole record, with whatever it wrote taken back first."""
        self.writes.discard()
        code, message = self._refusal(error, topic, partition, offset)
        await self.dead_letters.send(DeadLetter(raw, topic, partition, offset, code, message), key)
        await self.writes.flush()
        self.metrics.record_dead_lettered(topic, code)
        return HandledRecord(applied=False, error_code=code)

    async def _refuse_marks(
        self,
        topic: str,
        partition: int,
        offset: int,
        refusals: Sequence[MarkRejection],
        register_id: str,
        register_of_mark: Callable[[int], AttendanceRegister],
    ) -> None:
        """A dead letter for each refused mark: the mark as a one-mark register, keyed by its UPN."""
        for refused in refusals:
            log.warning("dead-lettered mark %d of a register at %s[%d]@%d: %s", refused.index, topic, partition,
                        offset, refused.code)
            letter = DeadLetter(self.codec.encode(register_of_mark(refused.index)), topic, partition, offset,
                                refused.code, f"mark {refused.index} of register {register_id}: {refused.message}")
            await self.dead_letters.send(letter, refused.upn.encode(errors="replace"))
            self.metrics.mark_dead_lettered(topic, refused.code)

    @staticmethod
    def _refusal(error: Exception, topic: str, partition: int, offset: int) -> tuple[str, str]:
        """The code and message a refused record's dead letter carries, logged without personal data."""
        if isinstance(error, CodecError | Rejected):
            code = str(error.code)
            message = error.message
        else:
            code = UNPROCESSABLE
            message = f"the record could not be handled ({describe_error(error)})"
        if code == UNPROCESSABLE:
            # Not a contract rule the sender broke but something no check foresaw: where it failed is what
            # someone needs to fix it.
            log.error("dead-lettered %s[%d]@%d: %s (%s)\n%s", topic, partition, offset, code,
                      type(error.__cause__ or error).__name__, _where_it_failed(error))
        else:
            log.warning("dead-lettered %s[%d]@%d: %s", topic, partition, offset, code)
        return code, message
