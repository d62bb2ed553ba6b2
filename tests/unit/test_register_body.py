"""The codec's own reader of register bodies gives what fastavro gives, for any register and any damaged one."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from io import BytesIO

import pytest
from fastavro import schemaless_reader
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.records import AttendanceMark, AttendanceRegister, School
from schemas.codec import HEADER_LENGTH, AvroCodec
from schemas.errors import CodecError
from schemas.mapping import MAPPINGS, NAMESPACE
from schemas.registerbody import read_register

CODEC = AvroCodec()
FROM_AVRO = MAPPINGS[f"{NAMESPACE}.AttendanceRegister"].from_avro

texts = st.text(max_size=80)
marks = st.builds(AttendanceMark, texts, st.text(max_size=3), st.text(max_size=3))
registers = st.builds(
    AttendanceRegister,
    texts,
    st.builds(School, texts, texts, texts, st.booleans()),
    st.dates(),
    st.datetimes(timezones=st.just(UTC)),
    st.lists(marks, max_size=80).map(tuple),
)


def by_fastavro(data: bytes) -> AttendanceRegister:
    """The register as the codec read it before it had a reader of its own."""
    body = BytesIO(data)
    body.seek(HEADER_LENGTH)
    fields = schemaless_reader(body, CODEC.schema(AttendanceRegister), None)
    if body.tell() != len(data):
        raise ValueError("bytes left over")
    return FROM_AVRO(fields)  # type: ignore[return-value]


@settings(max_examples=300)
@given(registers)
def test_every_register_reads_as_fastavro_reads_it(register: AttendanceRegister) -> None:
    data = CODEC.encode(register)
    assert CODEC.decode(data, AttendanceRegister) == by_fastavro(data) == register


@settings(max_examples=500)
@given(registers, st.data())
def test_a_damaged_register_reads_or_fails_as_with_fastavro(register: AttendanceRegister, data: st.DataObject) -> None:
    encoded = bytearray(CODEC.encode(register))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(HEADER_LENGTH, len(encoded) - 1))
        encoded[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(HEADER_LENGTH, len(encoded)))
    damaged = bytes(encoded[:cut])
    try:
        expected: AttendanceRegister | None = by_fastavro(damaged)
    except Exception:
        expected = None
    if expected is None:
        with pytest.raises(CodecError):
            CODEC.decode(damaged, AttendanceRegister)
    else:
        assert CODEC.decode(damaged, AttendanceRegister) == expected


def test_the_reader_takes_the_common_shape_itself() -> None:
    register = AttendanceRegister(
        "7d1c5a0e-7a4f-4c8e-9d43-1b8e5f2a6c10", School("140501", "3344001", "Oak Primary", False),
        date(2025, 1, 6), datetime(2025, 1, 6, 8, 55, tzinfo=UTC),
        (AttendanceMark("A334567890123", "/", "\\"), AttendanceMark("B334567890124", "N", "C1")),
    )
    data = CODEC.encode(register)
    assert read_register(data, HEADER_LENGTH) == register
    # a UPN of 64 characters or more has a length of two bytes: left to fastavro
    long_upn = replace(register, marks=(AttendanceMark("A" * 64, "/", "/"),))
    assert read_register(CODEC.encode(long_upn), HEADER_LENGTH) is None
    assert CODEC.decode(CODEC.encode(long_upn), AttendanceRegister) == long_upn


def test_a_rehearsed_schema_is_read_by_fastavro() -> None:
    from schemas.mapping import load_schema

    schema = load_schema("AttendanceRegister")
    codec = AvroCodec({"AttendanceRegister": schema})
    decoder = codec._decoders[codec.fingerprint(AttendanceRegister)]
    assert decoder.fast is None
    assert CODEC._decoders[CODEC.fingerprint(AttendanceRegister)].fast is read_register
