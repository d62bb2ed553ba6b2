"""Interoperability: the codec's messages against the Apache `avro` reference library, in both directions."""

from __future__ import annotations

import dataclasses
import io
import json
from importlib import resources
from typing import Any

import avro.io
import avro.schema
import pytest

from schemas.codec import HEADER_LENGTH, AvroCodec, AvroRecord
from tests.unit.test_codec import sample_records

CRC64_EMPTY = 0xC15D213AA4D7A795


def crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO as the Avro specification defines it, written out here to check the codec independently."""
    table = []
    for byte in range(256):
        value = byte
        for _ in range(8):
            value = (value >> 1) ^ (CRC64_EMPTY & -(value & 1))
        table.append(value)
    fingerprint = CRC64_EMPTY
    for byte in data:
        fingerprint = (fingerprint >> 8) ^ table[(fingerprint ^ byte) & 0xFF]
    return fingerprint


PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}

# Fingerprints of the shipped schemas as computed by the Java reference implementation (Apache Avro 1.12.0,
# SchemaNormalization.parsingFingerprint64, bytes least significant first). A change here is a change of the
# wire contract: consumers must learn the new schema before producers use it.
JAVA_FINGERPRINTS = {
    "Alert": "e2abe2ae010ec219",
    "AttendanceRegister": "7bb7b49f21181341",
    "CaseAction": "4b6b5c3571192d0c",
    "CMEReferral": "d16472a9808fafcf",
    "ClockTick": "0c3613a60ea0de67",
    "DeadLetter": "3eb3b05ea46b4d05",
    "EHENotification": "e7a10975adc04a24",
    "RollEvent": "2b8adf660ee116c5",
    "SafeguardingStatus": "ec3acbe721a0bae6",
}


def collapse_primitives(schema: Any) -> Any:
    """Undo the Python `avro` library's one departure from Parsing Canonical Form.

    It keeps a logical-type primitive as {"type": "int"} where the specification ([PRIMITIVES]) and the Java
    implementation write "int".
    """
    if isinstance(schema, list):
        return [collapse_primitives(item) for item in schema]
    if isinstance(schema, dict):
        if schema.keys() == {"type"} and schema["type"] in PRIMITIVES:
            return schema["type"]
        return {key: collapse_primitives(value) for key, value in schema.items()}
    return schema


def canonical_form(schema: avro.schema.Schema) -> bytes:
    collapsed = collapse_primitives(json.loads(schema.canonical_form))
    return json.dumps(collapsed, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def reference_schema(record: AvroRecord) -> avro.schema.Schema:
    text = resources.files("schemas").joinpath(f"{type(record).__name__}.avsc").read_text(encoding="utf-8")
    return avro.schema.parse(text)


def plain(value: Any) -> Any:
    """A domain record as the plain dicts, lists and strings the reference library reads and writes."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: plain(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [plain(item) for item in value]
    if isinstance(value, str):
        return str(value)
    return value


@pytest.fixture(scope="module")
def codec() -> AvroCodec:
    return AvroCodec()


def test_crc64_avro_matches_the_specification_test_vector() -> None:
    # The specification's test data gives the 64-bit fingerprint of the schema "int".
    assert crc64_avro(b'"int"') == 0x7275D51A3F395C8F


@pytest.mark.parametrize("record", sample_records(), ids=lambda record: type(record).__name__)
def test_header_fingerprint_is_little_endian_crc64_of_the_reference_canonical_form(
    codec: AvroCodec, record: AvroRecord
) -> None:
    schema = reference_schema(record)
    expected = crc64_avro(canonical_form(schema)).to_bytes(8, "little")

    data = codec.encode(record)

    assert data[:2] == b"\xc3\x01"
    assert data[2:HEADER_LENGTH] == expected
    assert data[2:HEADER_LENGTH].hex() == JAVA_FINGERPRINTS[type(record).__name__]


def test_reference_library_fingerprint_agrees_where_no_logical_type_is_involved(codec: AvroCodec) -> None:
    dead_letter = next(record for record in sample_records() if type(record).__name__ == "DeadLetter")

    assert reference_schema(dead_letter).fingerprint("CRC-64-AVRO") == codec.encode(dead_letter)[2:HEADER_LENGTH]


@pytest.mark.parametrize("record", sample_records(), ids=lambda record: type(record).__name__)
def test_reference_library_reads_codec_bytes(codec: AvroCodec, record: AvroRecord) -> None:
    schema = reference_schema(record)
    data = codec.encode(record)
    body = io.BytesIO(data[HEADER_LENGTH:])

    datum = avro.io.DatumReader(schema, schema).read(avro.io.BinaryDecoder(body))

    assert datum == plain(record)
    assert body.tell() == len(data) - HEADER_LENGTH


@pytest.mark.parametrize("record", sample_records(), ids=lambda record: type(record).__name__)
def test_codec_reads_reference_library_bytes(codec: AvroCodec, record: AvroRecord) -> None:
    schema = reference_schema(record)
    body = io.BytesIO()
    avro.io.DatumWriter(schema).write(plain(record), avro.io.BinaryEncoder(body))
    fingerprint = crc64_avro(canonical_form(schema)).to_bytes(8, "little")
    framed = b"\xc3\x01" + fingerprint + body.getvalue()

    decoded = codec.decode(framed, type(record))

    assert decoded == record
    assert framed == codec.encode(record)


def test_reference_library_resolves_codec_bytes_with_an_older_reader(codec: AvroCodec) -> None:
    # A consumer still on a ClockTick reader that also carries a defaulted field it expects.
    reader = avro.schema.parse(
        json.dumps(
            {
                "type": "record",
                "name": "ClockTick",
                "namespace": "uk.rollwatch",
                "fields": [
                    {"name": "today", "type": {"type": "int", "logicalType": "date"}},
                    {"name": "zone", "type": "string", "default": "Europe/London"},
                ],
            }
        )
    )
    record = next(record for record in sample_records() if type(record).__name__ == "ClockTick")
    writer = reference_schema(record)
    body = io.BytesIO(codec.encode(record)[HEADER_LENGTH:])

    datum = avro.io.DatumReader(writer, reader).read(avro.io.BinaryDecoder(body))

    assert datum == {"today": plain(record)["today"], "zone": "Europe/London"}
