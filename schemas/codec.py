"""Avro single-object encoding of every domain record, resolved against the schemas in this package."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from io import BytesIO
from typing import Any, TypeVar, cast

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.schema import fingerprint, to_parsing_canonical_form

from processors.records import (
    Alert,
    AlertChild,
    CaseAction,
    CaseActionType,
    Child,
    ClockTick,
    DeadLetter,
    Destination,
    DestinationKind,
    EHEMethod,
    EHENotification,
    EventType,
    Ground,
    Recipient,
    RollEvent,
    Rule,
    SafeguardingStatus,
    School,
    Severity,
    SocialWorker,
)
from schemas.errors import CodecError, CodecErrorCode

AvroRecord = RollEvent | EHENotification | SafeguardingStatus | ClockTick | CaseAction | Alert | DeadLetter
T = TypeVar("T", bound=AvroRecord)

#: First two bytes of every single-object encoded message (Avro specification, "Single-object encoding").
SINGLE_OBJECT_MARKER = b"\xc3\x01"
HEADER_LENGTH = len(SINGLE_OBJECT_MARKER) + 8
NAMESPACE = "uk.rollwatch"

AvroDict = dict[str, Any]
BinaryMessage = bytes | bytearray | memoryview

# Naming the union branch of an optional nested record (fastavro's tuple notation) saves fastavro from
# trying the datum against each branch, a third of the cost of encoding a RollEvent.
_DESTINATION_BRANCH = f"{NAMESPACE}.Destination"
_SOCIAL_WORKER_BRANCH = f"{NAMESPACE}.SocialWorker"

# Enum lookups by symbol: a dict hit is several times cheaper than calling the enum class.
_EVENT_TYPES = {member.value: member for member in EventType}
_GROUNDS = {member.value: member for member in Ground}
_DESTINATION_KINDS = {member.value: member for member in DestinationKind}
_EHE_METHODS = {member.value: member for member in EHEMethod}
_RULES = {member.value: member for member in Rule}
_RECIPIENTS = {member.value: member for member in Recipient}
_SEVERITIES = {member.value: member for member in Severity}
_CASE_ACTION_TYPES = {member.value: member for member in CaseActionType}


def _roll_event_to_avro(event: RollEvent) -> AvroDict:
    child = event.child
    school = event.school
    destination = event.destination
    return {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "upn": event.upn,
        "child": {
            "forename": child.forename,
            "surname": child.surname,
            "date_of_birth": child.date_of_birth,
            "postcode": child.postcode,
        },
        "school": {
            "urn": school.urn,
            "laestab": school.laestab,
            "name": school.name,
            "special": school.special,
        },
        "effective_date": event.effective_date,
        "recorded_at": event.recorded_at,
        "ground": event.ground,
        "destination": None
        if destination is None
        else (
            _DESTINATION_BRANCH,
            {
                "kind": destination.kind,
                "school_urn": destination.school_urn,
                "school_laestab": destination.school_laestab,
                "la_code": destination.la_code,
            },
        ),
        "standard_transition": event.standard_transition,
        "source_system": event.source_system,
    }


def _roll_event_from_avro(fields: AvroDict) -> RollEvent:
    child = fields["child"]
    school = fields["school"]
    ground = fields["ground"]
    destination = fields["destination"]
    return RollEvent(
        event_id=fields["event_id"],
        event_type=_EVENT_TYPES[fields["event_type"]],
        upn=fields["upn"],
        child=Child(
            forename=child["forename"],
            surname=child["surname"],
            date_of_birth=child["date_of_birth"],
            postcode=child["postcode"],
        ),
        school=School(urn=school["urn"], laestab=school["laestab"], name=school["name"], special=school["special"]),
        effective_date=fields["effective_date"],
        recorded_at=fields["recorded_at"],
        source_system=fields["source_system"],
        ground=None if ground is None else _GROUNDS[ground],
        destination=None
        if destination is None
        else Destination(
            kind=_DESTINATION_KINDS[destination["kind"]],
            school_urn=destination["school_urn"],
            school_laestab=destination["school_laestab"],
            la_code=destination["la_code"],
        ),
        standard_transition=fields["standard_transition"],
    )


def _ehe_notification_to_avro(notification: EHENotification) -> AvroDict:
    return {
        "notification_id": notification.notification_id,
        "upn": notification.upn,
        "la_code": notification.la_code,
        "school_urn": notification.school_urn,
        "method": notification.method,
        "received_on": notification.received_on,
    }


def _ehe_notification_from_avro(fields: AvroDict) -> EHENotification:
    return EHENotification(
        notification_id=fields["notification_id"],
        upn=fields["upn"],
        la_code=fields["la_code"],
        method=_EHE_METHODS[fields["method"]],
        received_on=fields["received_on"],
        school_urn=fields["school_urn"],
    )


def _safeguarding_status_to_avro(status: SafeguardingStatus) -> AvroDict:
    worker = status.social_worker
    return {
        "upn": status.upn,
        "la_code": status.la_code,
        "child_protection_plan": status.child_protection_plan,
        "looked_after": status.looked_after,
        "school_attendance_order": status.school_attendance_order,
        "social_worker": None
        if worker is None
        else (_SOCIAL_WORKER_BRANCH, {"name": worker.name, "email": worker.email}),
        "updated_at": status.updated_at,
    }


def _safeguarding_status_from_avro(fields: AvroDict) -> SafeguardingStatus:
    worker = fields["social_worker"]
    return SafeguardingStatus(
        upn=fields["upn"],
        la_code=fields["la_code"],
        child_protection_plan=fields["child_protection_plan"],
        looked_after=fields["looked_after"],
        school_attendance_order=fields["school_attendance_order"],
        updated_at=fields["updated_at"],
        social_worker=None if worker is None else SocialWorker(name=worker["name"], email=worker["email"]),
    )


def _clock_tick_to_avro(tick: ClockTick) -> AvroDict:
    return {"today": tick.today}


def _clock_tick_from_avro(fields: AvroDict) -> ClockTick:
    return ClockTick(today=fields["today"])


def _case_action_to_avro(action: CaseAction) -> AvroDict:
    return {
        "action_id": action.action_id,
        "upn": action.upn,
        "case_id": action.case_id,
        "action": action.action,
        "reason": action.reason,
        "by": action.by,
        "at": action.at,
    }


def _case_action_from_avro(fields: AvroDict) -> CaseAction:
    return CaseAction(
        action_id=fields["action_id"],
        upn=fields["upn"],
        case_id=fields["case_id"],
        action=_CASE_ACTION_TYPES[fields["action"]],
        reason=fields["reason"],
        by=fields["by"],
        at=fields["at"],
    )


def _alert_to_avro(alert: Alert) -> AvroDict:
    child = alert.child
    return {
        "alert_id": alert.alert_id,
        "rule": alert.rule,
        "recipient": alert.recipient,
        "la_code": alert.la_code,
        "severity": alert.severity,
        "upn": alert.upn,
        "child": {"forename": child.forename, "surname": child.surname, "date_of_birth": child.date_of_birth},
        "school_urn": alert.school_urn,
        "case_id": alert.case_id,
        "raised_on": alert.raised_on,
        "reason": alert.reason,
        "trigger_event_ids": alert.trigger_event_ids,
    }


def _alert_from_avro(fields: AvroDict) -> Alert:
    child = fields["child"]
    return Alert(
        alert_id=fields["alert_id"],
        rule=_RULES[fields["rule"]],
        recipient=_RECIPIENTS[fields["recipient"]],
        la_code=fields["la_code"],
        severity=_SEVERITIES[fields["severity"]],
        upn=fields["upn"],
        child=AlertChild(forename=child["forename"], surname=child["surname"], date_of_birth=child["date_of_birth"]),
        school_urn=fields["school_urn"],
        raised_on=fields["raised_on"],
        reason=fields["reason"],
        trigger_event_ids=tuple(fields["trigger_event_ids"]),
        case_id=fields["case_id"],
    )


def _dead_letter_to_avro(letter: DeadLetter) -> AvroDict:
    return {
        "raw": letter.raw,
        "source_topic": letter.source_topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "error_code": letter.error_code,
        "message": letter.message,
    }


def _dead_letter_from_avro(fields: AvroDict) -> DeadLetter:
    return DeadLetter(
        raw=fields["raw"],
        source_topic=fields["source_topic"],
        partition=fields["partition"],
        offset=fields["offset"],
        error_code=fields["error_code"],
        message=fields["message"],
    )


@dataclass(frozen=True, slots=True)
class _RecordMapping:
    record_type: type[AvroRecord]
    to_avro: Callable[[Any], AvroDict]
    from_avro: Callable[[AvroDict], AvroRecord]


_MAPPINGS: Mapping[str, _RecordMapping] = {
    f"{NAMESPACE}.RollEvent": _RecordMapping(RollEvent, _roll_event_to_avro, _roll_event_from_avro),
    f"{NAMESPACE}.EHENotification": _RecordMapping(
        EHENotification, _ehe_notification_to_avro, _ehe_notification_from_avro
    ),
    f"{NAMESPACE}.SafeguardingStatus": _RecordMapping(
        SafeguardingStatus, _safeguarding_status_to_avro, _safeguarding_status_from_avro
    ),
    f"{NAMESPACE}.ClockTick": _RecordMapping(ClockTick, _clock_tick_to_avro, _clock_tick_from_avro),
    f"{NAMESPACE}.CaseAction": _RecordMapping(CaseAction, _case_action_to_avro, _case_action_from_avro),
    f"{NAMESPACE}.Alert": _RecordMapping(Alert, _alert_to_avro, _alert_from_avro),
    f"{NAMESPACE}.DeadLetter": _RecordMapping(DeadLetter, _dead_letter_to_avro, _dead_letter_from_avro),
}


def load_schema(record_name: str) -> AvroDict:
    """The current schema of a record (e.g. "RollEvent") as a plain dict, read from its `.avsc` file."""
    text = resources.files(__package__).joinpath(f"{record_name}.avsc").read_text(encoding="utf-8")
    return cast(AvroDict, json.loads(text))


def schema_fingerprint(schema: Mapping[str, Any]) -> bytes:
    """The 8 header bytes of single-object encoding: the little-endian CRC-64-AVRO of the canonical form."""
    canonical = to_parsing_canonical_form(dict(schema))
    # fastavro renders the 64-bit fingerprint least significant byte first, which is the wire order.
    return bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


def _full_name(schema: Mapping[str, Any]) -> str:
    name = schema.get("name")
    if not isinstance(name, str):
        raise CodecError(CodecErrorCode.UNKNOWN_SCHEMA, "a writer schema must be a named Avro record")
    if "." in name:
        return name
    namespace = schema.get("namespace")
    return f"{namespace}.{name}" if namespace else name


@dataclass(frozen=True, slots=True)
class _Encoder:
    header: bytes
    schema: AvroDict
    to_avro: Callable[[Any], AvroDict]
    record_name: str


@dataclass(frozen=True, slots=True)
class _Decoder:
    writer_schema: AvroDict
    # None when the writer is the current schema, so fastavro skips resolution entirely.
    reader_schema: AvroDict | None
    record_type: type[AvroRecord]
    from_avro: Callable[[AvroDict], AvroRecord]
    record_name: str


class AvroCodec:
    """Encodes domain records as Avro single-object messages and decodes them from any known writer schema.

    Build one per process: construction reads and parses the seven `.avsc` files; encode and decode then do no
    schema work. `register_writer_schema` changes the registry, so call it at start-up, before decoding.
    """

    def __init__(self, current_schemas: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        """`current_schemas` replaces the shipped schema of some records (keyed by record name, e.g.
        "RollEvent"); it exists to rehearse a schema change, as a worker of the next release would see it.
        """
        overrides = dict(current_schemas or {})
        self._encoders: dict[type[AvroRecord], _Encoder] = {}
        self._decoders: dict[bytes, _Decoder] = {}
        self._current_schemas: dict[str, AvroDict] = {}
        for full_name, mapping in _MAPPINGS.items():
            record_name = full_name.rsplit(".", 1)[1]
            override = overrides.pop(record_name, None)
            raw_schema = load_schema(record_name) if override is None else dict(override)
            if _full_name(raw_schema) != full_name:
                raise CodecError(
                    CodecErrorCode.UNKNOWN_SCHEMA,
                    f"schema given for {record_name} names {_full_name(raw_schema)}, expected {full_name}",
                )
            parsed = cast(AvroDict, parse_schema(raw_schema))
            header_fingerprint = schema_fingerprint(raw_schema)
            self._current_schemas[full_name] = parsed
            self._encoders[mapping.record_type] = _Encoder(
                header=SINGLE_OBJECT_MARKER + header_fingerprint,
                schema=parsed,
                to_avro=mapping.to_avro,
                record_name=record_name,
            )
            self._decoders[header_fingerprint] = _Decoder(
                writer_schema=parsed,
                reader_schema=None,
                record_type=mapping.record_type,
                from_avro=mapping.from_avro,
                record_name=record_name,
            )
        if overrides:
            raise CodecError(
                CodecErrorCode.UNKNOWN_SCHEMA,
                f"no record named {', '.join(sorted(overrides))}; schemas can be given for "
                f"{', '.join(name.rsplit('.', 1)[1] for name in _MAPPINGS)}",
            )

    def fingerprint(self, record_type: type[AvroRecord]) -> bytes:
        """The 8-byte fingerprint this codec writes for `record_type`."""
        return self._encoder_for(record_type).header[len(SINGLE_OBJECT_MARKER) :]

    def schema(self, record_type: type[AvroRecord]) -> AvroDict:
        """The current (parsed) schema this codec writes for `record_type`."""
        return self._encoder_for(record_type).schema

    def register_writer_schema(self, schema: Mapping[str, Any]) -> bytes:
        """Accept messages written with another version of one of our records; returns its fingerprint.

        The schema's record full name must be one of ours; its messages are resolved to the current schema by
        Avro's rules (fields the reader lacks are skipped, fields the writer lacks take the reader's default).
        """
        full_name = _full_name(schema)
        mapping = _MAPPINGS.get(full_name)
        if mapping is None:
            raise CodecError(
                CodecErrorCode.UNKNOWN_SCHEMA,
                f"writer schema names record {full_name!r}, which is not one of "
                f"{', '.join(sorted(_MAPPINGS))}; only versions of those records can be registered",
            )
        header_fingerprint = schema_fingerprint(schema)
        if header_fingerprint in self._decoders:
            return header_fingerprint
        try:
            parsed_writer = cast(AvroDict, parse_schema(dict(schema)))
        except Exception as error:
            raise CodecError(
                CodecErrorCode.INCOMPATIBLE_SCHEMA,
                f"writer schema for {full_name} is not valid Avro ({type(error).__name__}: {error})",
            ) from error
        self._decoders[header_fingerprint] = _Decoder(
            writer_schema=parsed_writer,
            reader_schema=self._current_schemas[full_name],
            record_type=mapping.record_type,
            from_avro=mapping.from_avro,
            record_name=full_name.rsplit(".", 1)[1],
        )
        return header_fingerprint

    def encode(self, record: AvroRecord) -> bytes:
        """The single-object encoding of `record` under its current schema."""
        encoder = self._encoder_for(type(record))
        buffer = BytesIO()
        buffer.write(encoder.header)
        try:
            schemaless_writer(buffer, encoder.schema, encoder.to_avro(record))
        except (TypeError, ValueError, AttributeError, OverflowError) as error:
            # fastavro's messages quote the offending value, which may be personal data: name the type only.
            raise CodecError(
                CodecErrorCode.BAD_FIELD,
                f"{encoder.record_name} could not be encoded ({type(error).__name__}): a field holds a value "
                "of the wrong type, or None where the schema requires a value; build the record through "
                "schemas.jsonformat or processors.validation",
            ) from None
        return buffer.getvalue()

    def decode(self, data: BinaryMessage, expected: type[T]) -> T:
        """The domain record in `data`, which must be a single-object message of an `expected` record."""
        decoder = self._decoder_for(data)
        if decoder.record_type is not expected:
            raise CodecError(
                CodecErrorCode.WRONG_RECORD_TYPE,
                f"message holds a {decoder.record_name}, expected a {expected.__name__}; "
                "check the producer writes to the right topic",
            )
        return cast(T, self._read(decoder, data))

    def decode_any(self, data: BinaryMessage) -> AvroRecord:
        """The domain record in `data`, whichever of the known records it is."""
        return self._read(self._decoder_for(data), data)

    def _encoder_for(self, record_type: type) -> _Encoder:
        encoder = self._encoders.get(record_type)
        if encoder is None:
            raise CodecError(
                CodecErrorCode.WRONG_RECORD_TYPE,
                f"cannot encode a {record_type.__name__}; the codec handles "
                f"{', '.join(sorted(t.__name__ for t in self._encoders))}",
            )
        return encoder

    def _decoder_for(self, data: BinaryMessage) -> _Decoder:
        if len(data) < HEADER_LENGTH or data[:2] != SINGLE_OBJECT_MARKER:
            raise CodecError(
                CodecErrorCode.BAD_MARKER,
                f"message of {len(data)} bytes does not start with the Avro single-object marker C3 01 and "
                "an 8-byte fingerprint; the producer must write Avro single-object encoding (schemas.codec)",
            )
        decoder = self._decoders.get(bytes(data[2:HEADER_LENGTH]))
        if decoder is None:
            raise CodecError(
                CodecErrorCode.UNKNOWN_SCHEMA,
                f"no known schema has fingerprint {bytes(data[2:HEADER_LENGTH]).hex()}; register the "
                "producer's schema with register_writer_schema, or upgrade this worker to a release that "
                "ships it",
            )
        return decoder

    def _read(self, decoder: _Decoder, data: BinaryMessage) -> AvroRecord:
        body = BytesIO(data)
        body.seek(HEADER_LENGTH)
        try:
            fields = schemaless_reader(body, decoder.writer_schema, decoder.reader_schema)
        except SchemaResolutionError as error:
            raise CodecError(
                CodecErrorCode.INCOMPATIBLE_SCHEMA,
                f"{decoder.record_name} written with fingerprint {bytes(data[2:HEADER_LENGTH]).hex()} cannot "
                f"be resolved to the current schema ({error}); the writer's schema change is not "
                "backward compatible",
            ) from None
        except Exception as error:
            raise CodecError(
                CodecErrorCode.BAD_BODY,
                f"{decoder.record_name} body is not valid Avro for its schema ({type(error).__name__}); "
                "the message is truncated or corrupt, or was written with a different schema than its "
                "fingerprint claims",
            ) from None
        if body.tell() != len(data):
            raise CodecError(
                CodecErrorCode.BAD_BODY,
                f"{decoder.record_name} body has {len(data) - body.tell()} bytes left over after the record; "
                "the message was written with a different schema than its fingerprint claims",
            )
        try:
            return decoder.from_avro(cast(AvroDict, fields))
        except (KeyError, TypeError) as error:
            raise CodecError(
                CodecErrorCode.BAD_BODY,
                f"{decoder.record_name} decoded to an unexpected shape ({type(error).__name__} {error}); "
                "the .avsc files and processors/records.py disagree, so fix whichever is wrong",
            ) from None


__all__ = [
    "HEADER_LENGTH",
    "NAMESPACE",
    "SINGLE_OBJECT_MARKER",
    "AvroCodec",
    "AvroRecord",
    "load_schema",
    "schema_fingerprint",
]
