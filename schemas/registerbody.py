"""A reader of AttendanceRegister bodies in the shipped schema that builds the marks straight, with no dict each."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from processors.records import AttendanceMark, AttendanceRegister, School

# Registers are the largest input (a mark a pupil a school day), and fastavro builds a dict for every mark
# that the codec then turns into an AttendanceMark: reading the body here costs about half as much. It reads
# the common shape only; anything else (a varint of several bytes where a mark expects one, a boolean that is
# neither 0 nor 1, bytes that are not UTF-8, a body too short or too long) makes it return None, and fastavro
# reads the body instead, so every message decodes, or fails to, exactly as fastavro says.

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The canonical form this reader follows; the codec uses it only for a writer schema with this form.
READS = (
    '{"name":"uk.rollwatch.AttendanceRegister","type":"record","fields":[{"name":"register_id","type":"string"},'
    '{"name":"school","type":{"name":"uk.rollwatch.School","type":"record","fields":[{"name":"urn","type":'
    '"string"},{"name":"laestab","type":"string"},{"name":"name","type":"string"},{"name":"special","type":'
    '"boolean"}]}},{"name":"date","type":"int"},{"name":"recorded_at","type":"long"},{"name":"marks","type":'
    '{"type":"array","items":{"name":"uk.rollwatch.AttendanceMark","type":"record","fields":[{"name":"upn",'
    '"type":"string"},{"name":"am","type":"string"},{"name":"pm","type":"string"}]}}}]}'
)


# A frozen dataclass's __init__ sets each field through object.__setattr__, which costs as much as reading the
# mark: each mark is made with its slots' own setters instead, which set the same fields to the same values.
_new = object.__new__
_set_upn = AttendanceMark.__dict__["upn"].__set__
_set_am = AttendanceMark.__dict__["am"].__set__
_set_pm = AttendanceMark.__dict__["pm"].__set__


class _Unusual(Exception):
    """The body is not of the shape read here."""


def _long(data: bytes, pos: int) -> tuple[int, int]:
    """A zigzag varint (Avro int and long) at `pos`, and the position after it."""
    byte = data[pos]
    pos += 1
    value = byte & 0x7F
    shift = 7
    while byte & 0x80:
        if shift > 63:
            raise _Unusual
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
    return (value >> 1) ^ -(value & 1), pos


def _string(data: bytes, pos: int) -> tuple[str, int]:
    length, pos = _long(data, pos)
    end = pos + length
    if length < 0 or end > len(data):
        raise _Unusual
    return data[pos:end].decode(), end


def read_register(data: bytes, start: int) -> AttendanceRegister | None:
    """The register whose body starts at `start`, or None when fastavro has to read it."""
    try:
        register_id, pos = _string(data, start)
        urn, pos = _string(data, pos)
        laestab, pos = _string(data, pos)
        name, pos = _string(data, pos)
        special = data[pos]
        if special > 1:
            raise _Unusual
        days, pos = _long(data, pos + 1)
        micros, pos = _long(data, pos)
        marks: list[AttendanceMark] = []
        append = marks.append
        while True:
            count, pos = _long(data, pos)
            if count == 0:
                break
            if count < 0:  # a block that gives its size in bytes too
                count = -count
                _size, pos = _long(data, pos)
            for _ in range(count):
                # Each string's length in one byte, as every UPN and session code has: the low bit is the sign
                # and the high bit says more bytes follow; either set, and fastavro reads the body.
                length = data[pos]
                if length & 0x81:
                    raise _Unusual
                begin = pos + 1
                pos = begin + (length >> 1)
                upn = data[begin:pos]
                length = data[pos]
                if length & 0x81:
                    raise _Unusual
                begin = pos + 1
                pos = begin + (length >> 1)
                am = data[begin:pos]
                length = data[pos]
                if length & 0x81:
                    raise _Unusual
                begin = pos + 1
                pos = begin + (length >> 1)
                mark = _new(AttendanceMark)
                _set_upn(mark, upn.decode())
                _set_am(mark, am.decode())
                _set_pm(mark, data[begin:pos].decode())
                append(mark)
        if pos != len(data):
            raise _Unusual
        return AttendanceRegister(
            register_id,
            School(urn, laestab, name, special == 1),
            date.fromordinal(days + _EPOCH_ORDINAL),
            _EPOCH + timedelta(microseconds=micros),
            tuple(marks),
        )
    except (_Unusual, IndexError, UnicodeDecodeError, ValueError, OverflowError):
        return None
