"""`rollwatch dlq`: list, show and republish dead letters (`<input>.dlq`), and export how many wait.

A dead letter's id is `<dlq topic>:<partition>:<offset>`. Republishing sends the raw bytes (or a corrected
record) back to the input topic and records the id, who and when in the compacted topic
`<prefix>dlq.republished`, keyed by the id: an id already there is never sent again.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from config.access import DLQ_REPUBLISHED
from config.settings import Settings
from processors.records import INPUT_TOPICS, DeadLetter, InputRecord, dead_letter_topic

log = logging.getLogger(__name__)

#: The compacted topic (under the deployment's prefix) that records every republished dead letter.
REPUBLISHED = DLQ_REPUBLISHED
#: Dead letters a tick could not check a child with: every later tick checks it again, so none is republished.
NOT_REPUBLISHED_CODES = frozenset({"DEADLINE_CHECK_FAILED"})
#: How many bytes of an undecodable record `--show` prints, as hex.
HEX_PREFIX = 32
SCAN_TIMEOUT = 60.0
#: Where `rollwatch dlq exporter` serves its metrics unless told otherwise.
EXPORTER_PORT = 9110


class DlqError(Exception):
    """A request the command cannot carry out as given; one line, no personal data."""


@dataclass(frozen=True, slots=True)
class LetterId:
    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> LetterId:
        topic, _, rest = text.rpartition(":")
        topic, _, partition = topic.rpartition(":")
        if not topic.endswith(".dlq") or not partition.isdigit() or not rest.isdigit():
            raise DlqError(f"{text[:200]!r} is not a dead letter id (<topic>.dlq:<partition>:<offset>)")
        return cls(topic, int(partition), int(rest))


@dataclass(frozen=True, slots=True)
class Entry:
    id: LetterId
    timestamp_ms: int
    key: bytes | None
    letter: DeadLetter

    @property
    def when(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)


def parse_since(text: str) -> datetime:
    """`--since`: a date (YYYY-MM-DD, midnight UTC), an ISO timestamp, or an age such as 30m, 12h, 7d."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units and text[:-1].isdigit():
        return datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r} is not a date (YYYY-MM-DD), a timestamp or an age such as 12h or 7d"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def dlq_topics(settings: Settings, topic: str | None = None) -> list[str]:
    """The dead-letter topics to read: every input's, or the one `--topic` names (an input or its .dlq,
    with or without the prefix)."""
    everyone = [settings.topic(dead_letter_topic(name)) for name in INPUT_TOPICS]
    if topic is None:
        return everyone
    for name in INPUT_TOPICS:
        if topic in (name, dead_letter_topic(name), settings.topic(name), settings.topic(dead_letter_topic(name))):
            return [settings.topic(dead_letter_topic(name))]
    raise DlqError(f"--topic {topic[:80]!r} is not an input topic; use one of {', '.join(INPUT_TOPICS)}")


def input_name(settings: Settings, source_topic: str) -> str:
    """The input topic's name without the deployment prefix (the replay format's topic)."""
    prefix = settings.topic_prefix
    return source_topic[len(prefix) :] if prefix and source_topic.startswith(prefix) else source_topic


def selected(entries: Iterable[Entry], code: str | None, since: datetime | None) -> list[Entry]:
    return [
        entry
        for entry in entries
        if (code is None or entry.letter.error_code == code) and (since is None or entry.when >= since)
    ]


def counts(entries: Iterable[Entry]) -> Counter[tuple[str, str]]:
    return Counter((entry.id.topic, entry.letter.error_code) for entry in entries)


def decode_record(settings: Settings, letter: DeadLetter) -> InputRecord | None:
    """The input record in a dead letter's raw bytes, or None when they do not decode (that is often why
    it was dead-lettered)."""
    from schemas.codec import AvroCodec
    from streams.handler import RECORD_TYPES

    record_type = RECORD_TYPES.get(input_name(settings, letter.source_topic))
    if record_type is None or not letter.raw:
        return None
    try:
        return AvroCodec().decode(letter.raw, record_type)
    except Exception:
        return None


def replay_line(settings: Settings, letter: DeadLetter, record: InputRecord) -> str:
    from schemas.jsonfields import record_to_json

    return json.dumps(
        {"topic": input_name(settings, letter.source_topic), "value": record_to_json(record)}, ensure_ascii=False
    )


def entry_line(entry: Entry, settings: Settings | None = None, show: bool = False) -> str:
    """One line of `dlq list`: no personal data unless `show` (the message blanks any quoted value)."""
    letter = entry.letter
    line = (
        f"{entry.id}  {entry.when.isoformat(timespec='seconds').replace('+00:00', 'Z')}  "
        f"{letter.source_topic}:{letter.partition}:{letter.offset}  {letter.error_code}  {letter.message}"
    )
    if show and settings is not None:
        record = decode_record(settings, letter)
        if record is not None:
            from schemas.jsonfields import record_to_json

            line += "  " + json.dumps(record_to_json(record), ensure_ascii=False)
        else:
            suffix = "..." if len(letter.raw) > HEX_PREFIX else ""
            line += f"  raw {len(letter.raw)} bytes: {letter.raw[:HEX_PREFIX].hex()}{suffix}"
    return line


def count_lines(tally: Counter[tuple[str, str]]) -> list[str]:
    if not tally:
        return ["no dead letters"]
    width = max(len(f"{topic} {code}") for topic, code in tally)
    lines = [f"{f'{topic} {code}':<{width}}  {count:>7,}" for (topic, code), count in sorted(tally.items())]
    lines.append(f"{'total':<{width}}  {sum(tally.values()):>7,}")
    return lines


# Reading topics ---------------------------------------------------------------------------------------------


def read_topics(settings: Settings, topics: Sequence[str], timeout: float = SCAN_TIMEOUT) -> Iterator[Any]:
    """Every committed record of `topics` from the beginning up to their end offsets now (missing topics are
    empty); raises DlqError if the end is not reached within `timeout`."""
    from kafka import KafkaConsumer, TopicPartition

    from config.kafka import client_options

    consumer = KafkaConsumer(
        enable_auto_commit=False, isolation_level="read_committed", group_id=None, **client_options(settings)
    )
    try:
        partitions = [
            TopicPartition(topic, partition)
            for topic in topics
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            return
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if consumer.position(tp) < ends[tp]}
        deadline = time.monotonic() + timeout
        while remaining:
            if time.monotonic() > deadline:
                raise DlqError(f"could not read {', '.join(sorted({tp.topic for tp in remaining}))} to the end "
                               f"within {timeout:.0f} s")
            for tp, messages in consumer.poll(timeout_ms=500).items():
                for message in messages:
                    if message.offset < ends[tp]:
                        yield message
            remaining = {tp for tp in remaining if consumer.position(tp) < ends[tp]}
    finally:
        consumer.close()


def read_entries(settings: Settings, topics: Sequence[str]) -> list[Entry]:
    from schemas.codec import AvroCodec

    codec = AvroCodec()
    entries = []
    for message in read_topics(settings, topics):
        try:
            letter = codec.decode(message.value, DeadLetter)
        except Exception:
            letter = DeadLetter(message.value or b"", "?", -1, -1, "NOT_A_DEAD_LETTER", "does not decode")
        entries.append(Entry(LetterId(message.topic, message.partition, message.offset), message.timestamp,
                             message.key, letter))
    return sorted(entries, key=lambda e: (e.id.topic, e.when, e.id.partition, e.id.offset))


def republished_ids(settings: Settings) -> dict[str, dict[str, Any]]:
    """What `<prefix>dlq.republished` records, by dead letter id (the latest record of each)."""
    found: dict[str, dict[str, Any]] = {}
    for message in read_topics(settings, [settings.topic(REPUBLISHED)]):
        if message.key is None:
            continue
        if message.value is None:
            found.pop(message.key.decode(), None)
        else:
            found[message.key.decode()] = json.loads(message.value)
    return found


# Commands ---------------------------------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dlq",
        help="list, show and republish dead letters (<input>.dlq); export how many wait",
        description="Works the dead-letter topics the worker writes each record it cannot apply to.",
    )
    commands = parser.add_subparsers(dest="dlq_action", metavar="ACTION", required=True)

    def filters(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--topic", help="one input topic (e.g. roll.events) or its .dlq; default all")
        sub.add_argument("--code", help="only this error code (e.g. DATE_IMPLAUSIBLE)")
        sub.add_argument("--since", type=parse_since, help="only dead letters since a date, timestamp or age (7d)")

    listing = commands.add_parser("list", help="counts by topic and code, then one line per dead letter")
    filters(listing)
    listing.add_argument("--show", action="store_true", help="add each record's fields (personal data)")
    listing.add_argument("--all", action="store_true", help="include dead letters already republished")
    listing.set_defaults(handler=run_list)

    show = commands.add_parser("show", help="one dead letter in full: raw bytes as hex, the record as replay JSON")
    show.add_argument("id", help="<dlq topic>:<partition>:<offset>, as `dlq list` prints")
    show.set_defaults(handler=run_show)

    republish = commands.add_parser(
        "republish",
        help="send dead letters back to their input topic once the cause is fixed (idempotent, recorded)",
    )
    republish.add_argument("ids", nargs="*", metavar="ID", help="dead letter ids (or select with --topic)")
    filters(republish)
    republish.add_argument(
        "--replace", type=Path, metavar="FILE",
        help="send these corrected records instead (replay JSON Lines, one per ID, in the IDs' order)",
    )
    republish.add_argument("--dry-run", action="store_true", help="say what would be sent, send nothing")
    republish.set_defaults(handler=run_republish)

    exporter = commands.add_parser(
        "exporter", help="serve rollwatch_dead_letters{topic,error_code} for Prometheus, refreshed every N s"
    )
    # Not register sync's 9109, so that both can run on one host with their usual ports.
    exporter.add_argument(
        "--port", type=int, default=EXPORTER_PORT, help=f"metrics port on ROLLWATCH_WEB_HOST (default {EXPORTER_PORT})"
    )
    exporter.add_argument("--every", type=float, default=60.0, help="seconds between refreshes (default 60)")
    exporter.add_argument("--once", action="store_true", help="refresh once, print the samples and exit")
    exporter.set_defaults(handler=run_exporter)


def _fail(action: str, error: BaseException) -> int:
    print(f"rollwatch dlq {action}: {error}", file=sys.stderr)
    return 2


def _kafka_errors() -> tuple[type[BaseException], ...]:
    from kafka.errors import KafkaError

    from config.kafka import KafkaAccessError

    return (DlqError, KafkaAccessError, KafkaError, OSError)


def _check(settings: Settings, topics: Sequence[str], write: Sequence[str] = ()) -> None:
    from config.kafka import check_access

    if settings.security_protocol == "PLAINTEXT":
        check_access(settings)
    else:
        check_access(settings, topics, write_topics=write)


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    try:
        topics = dlq_topics(settings, args.topic)
        _check(settings, topics)
        entries = selected(read_entries(settings, topics), args.code, args.since)
        done = {} if args.all else republished_ids(settings)
    except _kafka_errors() as error:
        return _fail("list", error)
    waiting = [entry for entry in entries if str(entry.id) not in done]
    for line in count_lines(counts(waiting)):
        print(line)
    if waiting:
        print()
    for entry in waiting:
        print(entry_line(entry, settings, args.show))
    if len(entries) > len(waiting):
        print(f"({len(entries) - len(waiting)} republished not shown; --all shows them)", file=sys.stderr)
    return 0


def find_entry(settings: Settings, letter_id: LetterId) -> Entry:
    for entry in read_entries(settings, [letter_id.topic]):
        if entry.id == letter_id:
            return entry
    raise DlqError(f"no dead letter {letter_id}")


def run_show(args: argparse.Namespace, settings: Settings) -> int:
    try:
        letter_id = LetterId.parse(args.id)
        _check(settings, [letter_id.topic])
        entry = find_entry(settings, letter_id)
        done = republished_ids(settings).get(str(letter_id))
    except _kafka_errors() as error:
        return _fail("show", error)
    print(show_text(settings, entry, done))
    return 0


def show_text(settings: Settings, entry: Entry, done: dict[str, Any] | None) -> str:
    letter = entry.letter
    lines = [
        f"id:         {entry.id}",
        f"when:       {entry.when.isoformat(timespec='milliseconds').replace('+00:00', 'Z')}",
        f"source:     {letter.source_topic} partition {letter.partition} offset {letter.offset}",
        f"key:        {entry.key.decode(errors='replace') if entry.key is not None else '(none)'}",
        f"error code: {letter.error_code}",
        f"message:    {letter.message}",
        f"republished: {json.dumps(done) if done else 'no'}",
        f"raw ({len(letter.raw)} bytes): {letter.raw.hex()}",
    ]
    record = decode_record(settings, letter)
    lines.append(f"record:     {replay_line(settings, letter, record) if record is not None else '(does not decode)'}")
    return "\n".join(lines)


def read_replacements(path: Path, entries: Sequence[Entry], settings: Settings) -> list[InputRecord]:
    """The corrected records of a replay JSONL file, one per entry in order, each for its entry's input topic
    and valid; problems are reported by line, code and field, never by value."""
    from processors.validation import validate
    from schemas.errors import CodecError
    from schemas.jsonformat import parse_line

    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(lines) != len(entries):
        raise DlqError(f"{path} has {len(lines)} records for {len(entries)} dead letters; give one per ID")
    records = []
    for number, (line, entry) in enumerate(zip(lines, entries, strict=True), start=1):
        try:
            topic, record = parse_line(line)
        except CodecError as error:
            raise DlqError(f"{path} line {number}: {error.code}: {error}") from None
        if topic != input_name(settings, entry.letter.source_topic):
            raise DlqError(
                f"{path} line {number} is a {topic} record; {entry.id} came from {entry.letter.source_topic}"
            )
        problems = validate(record)
        if problems:
            listed = "; ".join(f"{problem.code}" for problem in problems)
            raise DlqError(f"{path} line {number} is not valid: {listed}")
        records.append(record)
    return records


def who(settings: Settings) -> str:
    if settings.sasl_username:
        return settings.sasl_username
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def marker(entry: Entry, by: str, at: datetime, sent_partition: int, sent_offset: int, replaced: bool) -> bytes:
    return json.dumps(
        {
            "id": str(entry.id),
            "by": by,
            "at": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "error_code": entry.letter.error_code,
            "source": f"{entry.letter.source_topic}:{entry.letter.partition}:{entry.letter.offset}",
            "sent": f"{entry.letter.source_topic}:{sent_partition}:{sent_offset}",
            "replaced": replaced,
        },
        sort_keys=True,
    ).encode()


def ensure_republished_topic(settings: Settings) -> None:
    from streams.topics import COMPACT, ensure_topics

    ensure_topics(settings, {settings.topic(REPUBLISHED): dict(COMPACT)}, copartitioned=())


def run_republish(args: argparse.Namespace, settings: Settings) -> int:
    from kafka import KafkaProducer

    from config.kafka import client_options
    from schemas.codec import AvroCodec
    from schemas.jsonformat import record_owner

    if bool(args.ids) == bool(args.topic):
        print("rollwatch dlq republish: give dead letter IDs, or --topic (with --code, --since)", file=sys.stderr)
        return 2
    if args.replace is not None and not args.ids:
        print("rollwatch dlq republish: --replace takes the IDs its records correct, in order", file=sys.stderr)
        return 2
    try:
        if args.ids:
            ids = [LetterId.parse(text) for text in args.ids]
            topics = sorted({letter_id.topic for letter_id in ids})
            _check(settings, topics)
            by_id = {entry.id: entry for entry in read_entries(settings, topics)}
            missing = [str(letter_id) for letter_id in ids if letter_id not in by_id]
            if missing:
                raise DlqError(f"no dead letter {', '.join(missing)}")
            entries = [by_id[letter_id] for letter_id in ids]
        else:
            topics = dlq_topics(settings, args.topic)
            _check(settings, topics)
            entries = selected(read_entries(settings, topics), args.code, args.since)
        refused = [entry for entry in entries if entry.letter.error_code in NOT_REPUBLISHED_CODES]
        if refused and args.ids:
            raise DlqError(
                f"{refused[0].id} is {refused[0].letter.error_code}: every later tick checks that child "
                "again, so there is nothing to republish"
            )
        entries = [entry for entry in entries if entry not in refused]
        replacements = read_replacements(args.replace, entries, settings) if args.replace else None
        if not args.dry_run and entries:
            # Refused in one line before anything is sent, rather than by the producer's own errors midway.
            targets = sorted({entry.letter.source_topic for entry in entries})
            _check(settings, [], write=[*targets, settings.topic(REPUBLISHED)])
        ensure_republished_topic(settings)
        done = republished_ids(settings)
    except _kafka_errors() as error:
        return _fail("republish", error)
    codec = AvroCodec()
    by = who(settings)
    sent = skipped = 0
    producer = None if args.dry_run else KafkaProducer(acks="all", enable_idempotence=True, **client_options(settings))
    try:
        for index, entry in enumerate(entries):
            if str(entry.id) in done:
                print(f"{entry.id}: already republished by {done[str(entry.id)].get('by')} at "
                      f"{done[str(entry.id)].get('at')}; skipped")
                skipped += 1
                continue
            letter = entry.letter
            key, value = entry.key, letter.raw
            partition: int | None = letter.partition
            if replacements is not None:
                record = replacements[index]
                owner = record_owner(record)
                new_key = owner.encode() if owner is not None else entry.key
                # A corrected UPN belongs on its own child's partition; otherwise the record goes back where it was.
                key, partition = new_key, (letter.partition if new_key == entry.key else None)
                value = codec.encode(record)
            target = f"{letter.source_topic}" + (f" partition {partition}" if partition is not None else "")
            if producer is None:
                print(f"{entry.id}: would send {len(value)} bytes to {target}")
                continue
            metadata = producer.send(letter.source_topic, key=key, value=value, partition=partition).get(timeout=30)
            record_marker = marker(entry, by, datetime.now(UTC), metadata.partition, metadata.offset,
                                   replacements is not None)
            producer.send(settings.topic(REPUBLISHED), key=str(entry.id).encode(), value=record_marker).get(timeout=30)
            print(f"{entry.id}: sent to {letter.source_topic}:{metadata.partition}:{metadata.offset}")
            sent += 1
    except _kafka_errors() as error:
        return _fail("republish", error)
    finally:
        if producer is not None:
            producer.close()
    if refused:
        print(f"{len(refused)} DEADLINE_CHECK_FAILED left: every later tick checks those children again",
              file=sys.stderr)
    print(f"dlq republish: {sent} sent, {skipped} already republished", file=sys.stderr)
    return 0


# The exporter -----------------------------------------------------------------------------------------------


class DeadLetterMetrics:
    """`rollwatch_dead_letters{topic,error_code}`: dead letters on each `.dlq` topic now, less those republished."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.dead_letters = Gauge(
            "rollwatch_dead_letters",
            "Dead letters waiting on each <topic>.dlq (on the topic now, less those republished), by error code.",
            ["topic", "error_code"],
            registry=self.registry,
        )

    def update(self, tally: Counter[tuple[str, str]]) -> None:
        self.dead_letters.clear()
        for (topic, code), count in tally.items():
            self.dead_letters.labels(topic, code).set(count)


def waiting_counts(settings: Settings) -> Counter[tuple[str, str]]:
    entries = read_entries(settings, dlq_topics(settings))
    done = republished_ids(settings)
    return counts(entry for entry in entries if str(entry.id) not in done)


def run_exporter(args: argparse.Namespace, settings: Settings) -> int:
    from prometheus_client import generate_latest, start_http_server

    metrics = DeadLetterMetrics()
    try:
        _check(settings, dlq_topics(settings))
        metrics.update(waiting_counts(settings))
    except _kafka_errors() as error:
        return _fail("exporter", error)
    if args.once:
        sys.stdout.write(generate_latest(metrics.registry).decode())
        return 0
    start_http_server(args.port, addr=settings.web_host, registry=metrics.registry)
    log.info("serving rollwatch_dead_letters on port %d, refreshed every %.0f s", args.port, args.every)
    try:
        while True:
            time.sleep(args.every)
            try:
                metrics.update(waiting_counts(settings))
            except _kafka_errors() as error:
                # Keep the last counts; the next refresh tries again.
                log.warning("dead letters not refreshed: %s", error)
    except KeyboardInterrupt:
        return 0
