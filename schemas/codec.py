"""Avro single-object encoding of every domain record, resolved against the schemas in this package."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from io import BytesIO
from typing import Any, TypeVar, cast

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.schema import fingerprint, to_parsing_canonical_form

from processors.records import AttendanceRegister
from schemas import registerbody
from schemas.errors import CodecError, CodecErrorCode
from schemas.mapping import MAPPINGS, NAMESPACE, AvroDict, AvroRecord, history_schemas, load_schema

T = TypeVar("T", bound=AvroRecord)

BinaryMessage = bytes | bytearray | memoryview

#: First two bytes of every single-object encoded message (Avro specification, "Single-object encoding").
SINGLE_OBJECT_MARKER = b"\xc3\x01"
HEADER_LENGTH = len(SINGLE_OBJECT_MARKER) + 8

FastReader = Callable[[bytes, int], Any]
#: Readers of a record's body that skip fastavro's dicts, each for the canonical form it was written for; used
#: for the shipped schema only (a schema given to rehearse a change may differ in its logical types).
FAST_READERS: dict[type, tuple[str, FastReader]] = {
    AttendanceRegister: (registerbody.READS, registerbody.read_register),
}


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
    #: Reads the body straight to the record, or returns None for fastavro to read it.
    fast: FastReader | None = None


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
        for full_name, mapping in MAPPINGS.items():
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
            fast = FAST_READERS.get(mapping.record_type)
            shipped = override is None and fast is not None and to_parsing_canonical_form(raw_schema) == fast[0]
            self._decoders[header_fingerprint] = _Decoder(
                writer_schema=parsed,
                reader_schema=None,
                record_type=mapping.record_type,
                from_avro=mapping.from_avro,
                record_name=record_name,
                fast=fast[1] if shipped and fast is not None else None,
            )
        for earlier in history_schemas():
            # Messages a previous release wrote (alerts still in their topics) stay readable.
            if _full_name(earlier) in self._current_schemas:
                self.register_writer_schema(earlier)
        if overrides:
            raise CodecError(
                CodecErrorCode.UNKNOWN_SCHEMA,
                f"no record named {', '.join(sorted(overrides))}; schemas can be given for "
                f"{', '.join(name.rsplit('.', 1)[1] for name in MAPPINGS)}",
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
        mapping = MAPPINGS.get(full_name)
        if mapping is None:
            raise CodecError(
                CodecErrorCode.UNKNOWN_SCHEMA,
                f"writer schema names record {full_name!r}, which is not one of "
                f"{', '.join(sorted(MAPPINGS))}; only versions of those records can be registered",
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
        if decoder.fast is not None and type(data) is bytes:
            record = decoder.fast(data, HEADER_LENGTH)
            if record is not None:
                return cast(AvroRecord, record)
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
