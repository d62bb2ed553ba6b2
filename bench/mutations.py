"""Hostile input messages for the fuzz run: valid records mutated byte by byte and field by field."""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from generator.generate import generate_lines
from generator.options import GeneratorOptions
from processors.records import (
    CASE_ACTIONS,
    CLOCK_TICKS,
    CME_REFERRALS,
    EHE_NOTIFICATIONS,
    INPUT_TOPICS,
    ROLL_EVENTS,
    SAFEGUARDING_STATUS,
    CaseAction,
    CaseActionType,
    CMEReferral,
    EHENotification,
    InputRecord,
    ReferralChild,
    ReferralConcern,
    Referrer,
    ReferrerAgency,
    RollEvent,
    SafeguardingStatus,
    SocialWorker,
)
from schemas.codec import HEADER_LENGTH, AvroCodec
from schemas.jsonformat import parse_line

SEED_PUPILS = 10_000
SEED_START = date(2024, 9, 1)
SEED_END = date(2025, 2, 14)
#: One message in this many carries a 1 MB string: each costs the broker, the worker and its changelog a megabyte.
BIG_STRING_EVERY = 5_000
BIG_STRING_LENGTH = 1_000_000
#: Kafka's default largest message is about 1 MB; the big strings must fit in one with the rest of the record.
MAX_REQUEST_BYTES = 2 * 1024 * 1024
#: The worker gives up nothing silently: with no progress at all for this long, the run is declared stuck.

TOPIC_WEIGHTS = {
    ROLL_EVENTS: 40, EHE_NOTIFICATIONS: 15, SAFEGUARDING_STATUS: 15, CLOCK_TICKS: 15, CASE_ACTIONS: 15,
    CME_REFERRALS: 10,
}
#: Characters of garbage UPNs: digits, letters, punctuation, controls, non-Latin and astral code points.
GARBAGE_UPN_CHARACTERS = "0123456789ABZaz !\"#%'*/;<>?\\{}~\t\n\x00\x7f\u00e9\u00df\u0416\u4e2d\u202e\ufeff\U0001f600"
#: Huge values put in place of a body's first length or number: past every sane size, and negative.
HUGE_VARINTS = (2**31, 2**40, 2**62, 2**63 - 1, -1, -(2**62))
#: Hostile dates put in every date and time field of an otherwise valid record.
DATE_EXTREMES = (date(9999, 12, 31), date(1, 1, 1))


class Mutation(StrEnum):
    VALID = "valid"
    BIT_FLIP = "bit-flip"
    TRUNCATED = "truncated"
    RANDOM_BYTES = "random-bytes"
    GARBAGE_BODY = "valid-header-garbage-body"
    TRAILING_BYTES = "trailing-bytes"
    SWAPPED_TYPE = "swapped-fingerprint"
    HUGE_LENGTH = "huge-length"
    EXTREME_DATES = "extreme-dates"
    EMPTY_STRINGS = "empty-strings"
    GARBAGE_UPN = "garbage-upn"
    BIG_STRING = "1MB-string"


MUTATION_WEIGHTS = {
    Mutation.VALID: 10,
    Mutation.BIT_FLIP: 15,
    Mutation.TRUNCATED: 10,
    Mutation.RANDOM_BYTES: 8,
    Mutation.GARBAGE_BODY: 8,
    Mutation.TRAILING_BYTES: 5,
    Mutation.SWAPPED_TYPE: 10,
    Mutation.HUGE_LENGTH: 10,
    Mutation.EXTREME_DATES: 10,
    Mutation.EMPTY_STRINGS: 6,
    Mutation.GARBAGE_UPN: 8,
}


@dataclass(frozen=True)
class Mutant:
    """One message to send: its input topic (no prefix), how it was made, its key, value and fixed partition."""

    topic: str
    mutation: Mutation
    key: bytes | None
    value: bytes
    partition: int | None = None


def seed_records(pupils: int = SEED_PUPILS, seed: int = 0) -> dict[str, list[InputRecord]]:
    """Valid records of every input topic: a generated half-term, and an officer's case closure per removal."""
    by_topic: dict[str, list[InputRecord]] = {topic: [] for topic in INPUT_TOPICS}
    options = GeneratorOptions(pupils=pupils, seed=seed, start=SEED_START, end=SEED_END, attendance=True)
    for line in generate_lines(options):
        topic, record = parse_line(line)
        by_topic[topic].append(record)
        if isinstance(record, RollEvent) and record.ground is not None:
            by_topic[CASE_ACTIONS].append(
                CaseAction(
                    action_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"fuzz-action:{record.event_id}")),
                    upn=record.upn,
                    case_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"fuzz-case:{record.upn}")),
                    action=CaseActionType.CLOSE,
                    reason="Child located at a new school",
                    by="Fuzz Officer",
                    at=record.recorded_at,
                )
            )
            # A referral about the removed child, every other one without its UPN (a case of its own).
            by_topic[CME_REFERRALS].append(
                CMEReferral(
                    referral_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"fuzz-referral:{record.event_id}")),
                    received_on=record.effective_date,
                    la_code=record.school.la_code,
                    upn=record.upn if len(by_topic[CME_REFERRALS]) % 2 == 0 else None,
                    child=ReferralChild(record.child.forename, record.child.surname, record.child.date_of_birth),
                    concern=ReferralConcern.NOT_IN_SCHOOL,
                    referrer=Referrer(ReferrerAgency.HEALTH, "Fuzz Nurse", "fuzz@example.org"),
                    details="Seen at home on a school day.",
                )
            )
    empty = [topic for topic, records in by_topic.items() if not records]
    if empty:
        raise RuntimeError(f"the generated data has no records for {', '.join(empty)}")
    return by_topic


def _key_of(record: InputRecord) -> str:
    return getattr(record, "upn", None) or getattr(record, "referral_id", None) or ""


def zigzag_varint(value: int) -> bytes:
    """Avro's encoding of a long: zigzag, then little-endian base-128."""
    number = ((value << 1) ^ (value >> 63)) & (2**64 - 1)
    out = bytearray()
    while number >= 0x80:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def varint_length(data: bytes, start: int) -> int:
    """Bytes taken by the varint at `start` (to the end of the data if it never ends)."""
    index = start
    while index < len(data) and data[index] & 0x80:
        index += 1
    return min(index + 1, len(data)) - start


def map_fields(record: Any, change: Callable[[str, Any], Any]) -> Any:
    """A copy of a record with `change(name, value)` applied to every field, nested records included."""
    updates = {}
    for item in dataclasses.fields(record):
        value = getattr(record, item.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            updates[item.name] = map_fields(value, change)
        else:
            updates[item.name] = change(item.name, value)
    return dataclasses.replace(record, **updates)


def with_extreme_dates(record: InputRecord, day: date) -> InputRecord:
    moment = datetime(day.year, day.month, day.day, 23 if day.year > 1 else 0, 59 if day.year > 1 else 0, tzinfo=UTC)

    def change(_name: str, value: Any) -> Any:
        if isinstance(value, datetime):
            return moment
        if isinstance(value, date):
            return day
        return value

    result: InputRecord = map_fields(record, change)
    return result


def with_empty_strings(record: InputRecord) -> InputRecord:
    # Enum members are strings too; an empty one is not encodable, so only plain strings are emptied.
    result: InputRecord = map_fields(record, lambda _name, value: "" if type(value) is str else value)
    return result


def with_big_string(record: InputRecord, text: str) -> InputRecord:
    if isinstance(record, RollEvent):
        return dataclasses.replace(record, school=dataclasses.replace(record.school, name=text))
    if isinstance(record, CaseAction):
        return dataclasses.replace(record, reason=text)
    if isinstance(record, SafeguardingStatus):
        return dataclasses.replace(record, social_worker=SocialWorker(name=text, email="worker@example.org"))
    if isinstance(record, EHENotification):
        return dataclasses.replace(record, upn=text)
    return record


class Mutator:
    """Makes mutated messages from valid records, deterministically for a seed."""

    def __init__(
        self, records: dict[str, list[InputRecord]], seed: int = 0, partitions: int = 4,
        big_string_length: int = BIG_STRING_LENGTH,
    ) -> None:
        self.records = records
        self.big_string_length = big_string_length
        self.random = random.Random(seed)
        self.partitions = partitions
        self.codec = AvroCodec()
        self.topics = list(TOPIC_WEIGHTS)
        self.topic_weights = list(TOPIC_WEIGHTS.values())
        self.mutations = list(MUTATION_WEIGHTS)
        self.mutation_weights = list(MUTATION_WEIGHTS.values())

    def mutants(self, count: int) -> Iterator[Mutant]:
        for index in range(count):
            topic = self.random.choices(self.topics, self.topic_weights)[0]
            if index % BIG_STRING_EVERY == BIG_STRING_EVERY // 5:
                mutation = Mutation.BIG_STRING
            else:
                mutation = self.random.choices(self.mutations, self.mutation_weights)[0]
            yield self.mutant(topic, mutation)

    def pick(self, topic: str) -> InputRecord:
        return self.random.choice(self.records[topic])

    def mutant(self, topic: str, mutation: Mutation) -> Mutant:
        original = self.pick(topic)
        record = self.hostile(mutation, original)
        value = self.codec.encode(record) if record is not None else self.damaged(topic, mutation, original)
        if topic == CLOCK_TICKS:
            return Mutant(topic, mutation, None, value, self.random.randrange(self.partitions))
        # The key is the UPN the record carries, as the publisher sets it, unless that UPN is the 1 MB string.
        # A referral or case action without one is keyed by its referral id.
        upn = _key_of(record if record is not None else original)
        if len(upn) > 64:
            upn = _key_of(original)
        # safeguarding.status is compacted, and a compacted topic refuses a record without a key.
        return Mutant(topic, mutation, upn.encode() or b"-", value)

    def hostile(self, mutation: Mutation, record: InputRecord) -> InputRecord | None:
        """A valid encoding with hostile field values, or None for the mutations of bytes."""
        rng = self.random
        if mutation == Mutation.VALID:
            return record
        if mutation == Mutation.EXTREME_DATES or (mutation == Mutation.GARBAGE_UPN and not hasattr(record, "upn")):
            return with_extreme_dates(record, rng.choice(DATE_EXTREMES))
        if mutation == Mutation.EMPTY_STRINGS:
            return with_empty_strings(record)
        if mutation == Mutation.GARBAGE_UPN:
            garbage = "".join(rng.choice(GARBAGE_UPN_CHARACTERS) for _ in range(13))
            return dataclasses.replace(record, upn=garbage)  # type: ignore[arg-type]
        if mutation == Mutation.BIG_STRING:
            return with_big_string(record, "x" * self.big_string_length)
        return None

    def damaged(self, topic: str, mutation: Mutation, record: InputRecord) -> bytes:
        """A valid encoding of `record` with its bytes damaged."""
        rng = self.random
        valid = self.codec.encode(record)
        body = valid[HEADER_LENGTH:]
        if mutation == Mutation.BIT_FLIP:
            flipped = bytearray(valid)
            for _ in range(rng.randint(1, 8)):
                position = rng.randrange(len(flipped) * 8)
                flipped[position // 8] ^= 1 << (position % 8)
            return bytes(flipped)
        if mutation == Mutation.TRUNCATED:
            return valid[: rng.randrange(len(valid))]
        if mutation == Mutation.RANDOM_BYTES:
            return rng.randbytes(rng.choice((0, 1, 2, 9, 10, 11, rng.randint(12, 400))))
        if mutation == Mutation.GARBAGE_BODY:
            return valid[:HEADER_LENGTH] + rng.randbytes(rng.randint(0, 300))
        if mutation == Mutation.TRAILING_BYTES:
            return valid + rng.randbytes(rng.randint(1, 64))
        if mutation == Mutation.SWAPPED_TYPE:
            other = self.pick(rng.choice([name for name in self.topics if name != topic]))
            foreign = self.codec.encode(other)
            # Either a whole record of another type, or this record's body under another type's header.
            return foreign if rng.random() < 0.5 else foreign[:HEADER_LENGTH] + body
        if mutation == Mutation.HUGE_LENGTH:
            # The body's first field is a string length (an id) or, for a tick, the date as days.
            huge = zigzag_varint(rng.choice(HUGE_VARINTS))
            return valid[:HEADER_LENGTH] + huge + body[varint_length(body, 0) :]
        raise ValueError(f"{mutation} is not a mutation of bytes")
