"""`rollwatch publish FILE`: check a whole replay (JSON Lines) or roll-events CSV file, then send it to Kafka.

Two passes over the file, so memory stays flat however large it is:
1. Validation: every line is parsed (`schemas.jsonformat.parse_line`, or the CSV mapping of
   `rollwatch_client.publisher`) and validated (`processors.validation.validate`). By default one bad line means
   nothing is sent: each bad line is listed with its line number and reasons, and the exit code is 1.
   With `--skip-invalid` the bad lines go to a rejects file (JSON Lines: line number, reasons, original
   text; mode 0600, as it holds personal data) and the rest is sent. Any bytes at all give bad lines, never
   a crash: text that is not UTF-8, JSON that is not a record, rows csv cannot read.
2. Sending: the input topics are created if missing (co-partitioned: `topic_partitions` each), then every
   good record goes, in file order, through one function (`_record_sender`) to the SDK's idempotent
   producer, keyed by UPN (a `cme.referrals` line without one by its referral id); a clock tick goes to every
   partition of `clock.ticks`.

A CSV whose header names the columns school_urn, school_laestab, school_name, date, upn, am, pm holds attendance
marks, one a row: consecutive rows of one school and day are sent as one register (a new one past 5,000 marks),
and each bad row (an unknown code, a bad UPN) is refused on its own.

Other CSV files (by `.csv` suffix or `--format csv`) hold roll events, one per row after a header row naming
the columns of `rollwatch_client.publisher.CSV_COLUMNS` (any order): event_id, event_type, upn, forename, surname,
date_of_birth, postcode, school_urn, school_laestab, school_name, school_special, effective_date,
recorded_at, ground, destination_kind, destination_school_urn, destination_school_laestab,
destination_la_code, standard_transition, source_system. Empty cells are absent values; booleans are
true/false (also yes/no, 1/0; empty is false).

Exit codes: 0 sent (rejects, if any, written with --skip-invalid); 1 invalid input, nothing sent; 2 a
usage, topic or Kafka error.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import re
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TextIO

from kafka.errors import KafkaError
from tqdm import tqdm

from cli.failures import require_kafka
from config.kafka import network_options
from config.settings import Settings
from processors.failures import UNPROCESSABLE, describe_error
from processors.records import InputRecord
from processors.validation import validate
from rollwatch_client.connection import KafkaConnection
from rollwatch_client.ordering import AppliedOffsets, OrderedSender, OrderingTimeout
from rollwatch_client.publisher import (
    CSV_COLUMN_HELP,
    CSV_COLUMNS,
    PUBLISHABLE_TYPES,
    InputPublisher,
    InvalidRecordError,
    PublishError,
    check_csv_header,
    roll_event_from_csv_row,
)
from rollwatch_client.registers import MARK_CSV_COLUMNS, MarkRow, is_marks_header, registers_from_rows
from schemas.errors import CodecError
from schemas.jsonformat import parse_line
from streams.topics import TopicLayoutError, ensure_input_topics

FileFormat = Literal["jsonl", "csv"]

#: Files with at least this many records show a progress bar on stderr.
PROGRESS_FROM_RECORDS = 10_000


def connection_of(settings: Settings) -> KafkaConnection:
    """The MIS client's connection to the settings' cluster, under the settings' topic prefix."""
    return KafkaConnection(
        bootstrap_servers=settings.bootstrap_servers,
        security_protocol=settings.security_protocol,
        sasl_mechanism=settings.sasl_mechanism,
        sasl_username=settings.sasl_username,
        sasl_password=settings.sasl_password.get_secret_value() if settings.sasl_password else None,
        ssl_cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None,
        ssl_certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
        ssl_keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
        topic_prefix=settings.topic_prefix,
        extra_options=network_options(),
    )


def _epilog() -> str:
    columns = "\n".join(f"  {name:<27} {CSV_COLUMN_HELP[name]}" for name in CSV_COLUMNS)
    return textwrap.dedent(
        """\
        FILE is a replay file (JSON Lines, one {"topic": ..., "value": {...}} record a line, any input
        topic, clock ticks included) or a CSV of roll events (.csv or --format csv) with a header row
        naming these columns, in any order; empty cells are absent values:
        """
    ) + columns + textwrap.dedent(
        """

        A CSV whose header names school_urn, school_laestab, school_name, date, upn, am and pm holds
        attendance marks instead, one a row: consecutive rows of one school and day go as one register
        (a new one past 5,000 marks), and a bad row is refused on its own.

        The whole file is checked before anything is sent. By default a single bad line stops the
        publish: each bad line is listed (line number and reasons) and the exit code is 1.
        --skip-invalid sends the good lines and writes the bad ones, with their reasons, to --rejects
        (created readable by its owner only: it holds names and dates of birth). A line that is not
        UTF-8, not JSON or not readable CSV is a bad line like any other; a UTF-8 byte-order mark at the
        start of the file is ignored.
        Settings (brokers, security, topic_partitions) come from ROLLWATCH_* environment variables.

        exit codes: 0 sent; 1 invalid input, nothing sent; 2 usage, topic or Kafka error.

        examples:
          rollwatch publish year.jsonl
          rollwatch publish roll-changes.csv --skip-invalid --rejects rejected.jsonl
          rollwatch publish marks-2025-01-13.csv
        """
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "publish",
        help="validate a replay or roll-events CSV file, then publish it to the input topics",
        description=(
            "Validate every line of FILE, then publish its records to Kafka in file order: Avro "
            "single-object encoded, keyed by UPN (a referral without one by its referral id), through an "
            "idempotent producer; clock ticks go to every partition of clock.ticks."
        ),
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", type=Path, help="replay JSON Lines file, or roll-events CSV file")
    parser.add_argument(
        "--format",
        choices=("auto", "jsonl", "csv"),
        default="auto",
        help="file format (auto: csv for a .csv file, else jsonl)",
    )
    parser.add_argument(
        "--skip-invalid",
        action="store_true",
        help="send the valid lines and write the invalid ones to --rejects instead of sending nothing",
    )
    parser.add_argument(
        "--rejects",
        type=Path,
        default=None,
        help="where --skip-invalid writes rejected lines (default: FILE.rejects.jsonl)",
    )
    parser.add_argument(
        "--topic-prefix",
        default=None,
        help="prefix for every topic name, e.g. 'test-1.' to isolate a test's topics "
        "(default: ROLLWATCH_TOPIC_PREFIX, else none)",
    )
    parser.add_argument(
        "--no-create-topics",
        action="store_true",
        help="do not create missing input topics (the records' topics must already exist)",
    )
    parser.add_argument(
        "--ordered",
        action="store_true",
        help="keep file order through Kafka: before each switch of topic, wait until the worker group "
        "(ROLLWATCH_APP_ID) has applied everything sent so far, and at the end until it applied the whole file; "
        "a running `rollwatch worker` is needed",
    )
    parser.add_argument(
        "--wait-timeout",
        type=float,
        default=120.0,
        help="with --ordered: seconds to wait for the worker at each switch before giving up (default 120)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary on stderr")
    parser.set_defaults(handler=run)


# ---- reading and validating ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reject:
    """One line that cannot be sent: where it is, why (never quoting personal data), and its text."""

    line_number: int
    reasons: tuple[str, ...]
    text: str


@dataclass(slots=True)
class ScanResult:
    """The validation pass over a file: how many records are good, and every rejected line."""

    valid: int = 0
    rejects: list[Reject] = field(default_factory=list)
    #: A problem with the file as a whole (unreadable, a bad CSV header): nothing in it can be sent.
    fatal: str | None = None

    @property
    def rejected_lines(self) -> frozenset[int]:
        return frozenset(reject.line_number for reject in self.rejects)


@dataclass(frozen=True, slots=True)
class _Line:
    number: int
    text: str
    record: InputRecord | None
    reasons: tuple[str, ...]


class FileProblem(Exception):
    """The file as a whole cannot be read (missing, not UTF-8 text, a bad CSV header)."""


def detect_format(path: Path, requested: str) -> FileFormat:
    if requested == "csv" or (requested == "auto" and path.suffix.lower() == ".csv"):
        return "csv"
    return "jsonl"


def _problem_reasons(record: InputRecord) -> tuple[str, ...]:
    if not isinstance(record, PUBLISHABLE_TYPES):
        return (f"{type(record).__name__} records cannot be published with this command",)
    try:
        problems = validate(record)
    except Exception as error:
        # A value no check foresaw refuses the line, as the worker would, rather than end the scan.
        return (f"{UNPROCESSABLE}: the record could not be validated ({describe_error(error)})",)
    return tuple(
        f"{problem.code}" + (f" ({problem.field})" if problem.field else "") + f": {problem.message}"
        for problem in problems
    )


def _codec_reason(error: CodecError) -> tuple[str, ...]:
    return (f"{error.code}: {error.message}",)


def _jsonl_lines(path: Path, check: bool) -> Iterator[_Line]:
    try:
        yield from _jsonl_lines_of(path, check)
    except OSError as error:
        raise FileProblem(f"the file cannot be read ({error.strerror or type(error).__name__})") from None


def _jsonl_lines_of(path: Path, check: bool) -> Iterator[_Line]:
    with path.open("rb") as raw:
        for number, data in enumerate(raw, start=1):
            try:
                text = data.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                yield _Line(number, data.decode("utf-8", errors="replace").rstrip("\r\n"), None,
                            ("BAD_JSON: line is not UTF-8 text",))
                continue
            if not text.strip():
                continue
            try:
                _, record = parse_line(text)
            except CodecError as error:
                yield _Line(number, text, None, _codec_reason(error))
                continue
            yield _Line(number, text, record, _problem_reasons(record) if check else ())


def _csv_text(fields: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(fields)
    return buffer.getvalue()


# Bytes that are not UTF-8 are read as lone surrogates (surrogateescape), so that one bad row is refused on
# its own rather than the whole file; no UTF-8 text decodes to a surrogate.
_NOT_TEXT = re.compile("[\ud800-\udfff]")


def _readable(cell: str) -> str:
    return cell.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _row_problem(fields: list[str]) -> str | None:
    for cell in fields:
        if not cell.isascii():
            if _NOT_TEXT.search(cell) is not None:
                return "BAD_FIELD: row holds bytes that are not UTF-8 text; save the CSV as UTF-8"
        elif "\x00" in cell:
            return "BAD_FIELD: row holds a NUL character"
    return None


def _csv_rows(reader: Iterator[list[str]], line_num: Callable[[], int]) -> Iterator[tuple[int, list[str] | str]]:
    """(first line number, fields) for each row, or (line number, reason) for a row csv cannot read."""
    while True:
        number = line_num() + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            # The reader starts afresh on the next line: one over-long field refuses one row, not the file.
            yield number, f"BAD_FIELD: row is not readable CSV ({describe_error(error)})"
            continue
        yield number, fields


def _csv_lines(path: Path, check: bool) -> Iterator[_Line]:
    try:
        with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as text_file:
            reader = csv.reader(text_file)
            header = next(reader, None)
            if header is None:
                raise FileProblem("the CSV file is empty; it needs a header row naming the columns")
            if is_marks_header(header):
                yield from _mark_csv_lines(reader, header, check)
                return
            try:
                check_csv_header(header)
            except CodecError as error:
                raise FileProblem(f"line 1: {error.message}") from None
            names = [name.strip() for name in header]
            for number, row in _csv_rows(reader, lambda: reader.line_num):
                if isinstance(row, str):
                    yield _Line(number, "", None, (row,))
                    continue
                fields = row
                if not any(cell.strip() for cell in fields):
                    continue
                problem = _row_problem(fields)
                text = _csv_text([_readable(cell) for cell in fields] if problem else fields)
                if problem is not None:
                    yield _Line(number, text, None, (problem,))
                    continue
                if len(fields) != len(names):
                    yield _Line(number, text, None,
                                (f"BAD_FIELD: row has {len(fields)} fields but the header names {len(names)}",))
                    continue
                try:
                    record: InputRecord = roll_event_from_csv_row(dict(zip(names, fields, strict=True)))
                except CodecError as error:
                    yield _Line(number, text, None, _codec_reason(error))
                    continue
                yield _Line(number, text, record, _problem_reasons(record) if check else ())
    except csv.Error as error:
        raise FileProblem(f"the file is not readable CSV ({describe_error(error)})") from None
    except OSError as error:
        raise FileProblem(f"the file cannot be read ({error.strerror or type(error).__name__})") from None


def _mark_csv_lines(reader: Iterator[list[str]], header: list[str], check: bool) -> Iterator[_Line]:
    """A marks CSV: each bad row refused on its own, the others grouped into registers per school and day."""
    names = [name.strip() for name in header]
    unknown = sorted(set(names) - set(MARK_CSV_COLUMNS))
    if unknown or len(set(names)) != len(names):
        raise FileProblem(f"line 1: a marks CSV names exactly the columns {', '.join(MARK_CSV_COLUMNS)}")
    refused: list[_Line] = []

    def rows() -> Iterator[MarkRow]:
        for number, row in _csv_rows(reader, lambda: reader.line_num):  # type: ignore[attr-defined]
            if isinstance(row, str):
                refused.append(_Line(number, "", None, (row,)))
                continue
            if not any(cell.strip() for cell in row):
                continue
            problem = _row_problem(row)
            if problem is None and len(row) != len(names):
                problem = f"BAD_FIELD: row has {len(row)} fields but the header names {len(names)}"
            if problem is not None:
                refused.append(_Line(number, _csv_text([_readable(cell) for cell in row]), None, (problem,)))
                continue
            yield MarkRow(number, dict(zip(names, row, strict=True)))

    for group in registers_from_rows(rows()):
        yield from refused
        refused.clear()
        if group.register is None:
            yield _Line(group.lines[0], "", None, group.reasons)
            continue
        reasons = _problem_reasons(group.register) if check else ()
        yield _Line(group.lines[0], f"register of {len(group.lines)} mark(s)", group.register, reasons)
    yield from refused


def read_lines(path: Path, file_format: FileFormat, *, check: bool = True) -> Iterator[_Line]:
    """Every non-blank line of the file, parsed and (with `check`) validated.

    Raises FileProblem when the file as a whole is unusable.
    """
    if not path.is_file():
        raise FileProblem(f"no such file: {path}")
    return _csv_lines(path, check) if file_format == "csv" else _jsonl_lines(path, check)


def scan_file(path: Path, file_format: FileFormat) -> ScanResult:
    """The validation pass: count the good records and collect every bad line with its reasons."""
    result = ScanResult()
    try:
        for line in read_lines(path, file_format):
            if line.reasons:
                result.rejects.append(Reject(line.number, line.reasons, line.text))
            else:
                result.valid += 1
    except FileProblem as problem:
        result.fatal = str(problem)
    return result


def write_rejects(rejects: list[Reject], destination: Path) -> None:
    """Rejected lines as JSON Lines: {"line": n, "reasons": [...], "text": "<the original line>"}.

    The file holds children's names and dates of birth, so only its owner may read it (mode 0600)."""
    # Created 0600 rather than chmod-ed after, so it is never readable by others even for a moment; an
    # existing file keeps its mode through O_CREAT, so it is emptied first and then made private.
    descriptor = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8", errors="replace", newline="\n") as out:
        os.fchmod(descriptor, 0o600)
        for reject in rejects:
            out.write(
                json.dumps({"line": reject.line_number, "reasons": list(reject.reasons), "text": reject.text},
                           ensure_ascii=False)
            )
            out.write("\n")


def report_rejects(path: Path, rejects: list[Reject], out: TextIO | None = None) -> None:
    """One line per reason, `FILE:LINE: reason` (reasons never quote the line's personal data)."""
    stream = out or sys.stderr
    for reject in rejects:
        for reason in reject.reasons:
            print(f"{path}:{reject.line_number}: {reason}", file=stream)


# ---- sending ---------------------------------------------------------------------------------------------

RecordSender = Callable[[InputRecord], object]


def _record_sender(publisher: InputPublisher, ordered: OrderedSender | None) -> RecordSender:
    """The one function every record goes through on its way to Kafka, in file order. With --ordered,
    a record for a different topic than the previous one waits until the worker applied all before it."""
    if ordered is None:
        return publisher.publish

    def send_in_order(record: InputRecord) -> object:
        ordered.before(publisher.publisher_for(record).topic)
        futures = publisher.publish(record)
        ordered.sent(futures)
        return futures

    return send_in_order


def run(args: argparse.Namespace, settings: Settings) -> int:
    # kafka-python narrates every connection at INFO; keep the command's own output readable.
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))
    path: Path = args.file
    file_format = detect_format(path, args.format)
    scan = scan_file(path, file_format)
    if scan.fatal is not None:
        print(f"rollwatch publish: {path}: {scan.fatal}; nothing sent", file=sys.stderr)
        return 1 if path.is_file() else 2
    if scan.rejects:
        bad = len(scan.rejects)
        if not args.skip_invalid:
            report_rejects(path, scan.rejects)
            print(
                f"rollwatch publish: {bad:,} of {bad + scan.valid:,} lines are invalid; nothing sent "
                "(fix them, or use --skip-invalid to send the rest)",
                file=sys.stderr,
            )
            return 1
        rejects_path: Path = args.rejects or path.with_name(path.name + ".rejects.jsonl")
        try:
            write_rejects(scan.rejects, rejects_path)
        except OSError as error:
            print(f"rollwatch publish: cannot write {rejects_path}: {error.strerror or error}; nothing sent",
                  file=sys.stderr)
            return 2
        print(f"rollwatch publish: {bad:,} invalid line(s) skipped, written to {rejects_path}", file=sys.stderr)
    if scan.valid == 0:
        print(f"rollwatch publish: {path} holds no valid records; nothing sent", file=sys.stderr)
        return 1 if scan.rejects else 0
    try:
        sent = _send_file(args, settings, path, file_format, scan)
    except (PublishError, TopicLayoutError, KafkaError, FileProblem, OrderingTimeout, OSError) as error:
        print(f"rollwatch publish: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    except InvalidRecordError as error:
        print(f"rollwatch publish: {path} changed while it was being sent: {error}", file=sys.stderr)
        return 2
    if not args.quiet:
        per_topic = ", ".join(f"{topic} {count:,}" for topic, count in sent.items() if count)
        print(
            f"publish: sent {scan.valid:,} records from {path}; messages per topic: {per_topic} "
            "(each tick goes to every partition)",
            file=sys.stderr,
        )
    return 0


def _send_file(
    args: argparse.Namespace, settings: Settings, path: Path, file_format: FileFormat, scan: ScanResult
) -> dict[str, int]:
    """The sending pass; returns messages sent per topic (a tick counts once per partition)."""
    # Checked here, after the scan, so that a bad file is reported whether or not Kafka is up.
    require_kafka(settings)
    if not args.no_create_topics:
        ensure_input_topics(settings, topic_prefix=args.topic_prefix)
    skipped = scan.rejected_lines
    show_progress = not args.quiet and scan.valid >= PROGRESS_FROM_RECORDS
    connection = connection_of(settings)
    with InputPublisher(connection, topic_prefix=args.topic_prefix) as publisher:
        ordered = None
        if args.ordered:
            applied = AppliedOffsets(connection, settings.app_id)
            ordered = OrderedSender(publisher.producer.flush, applied, timeout=args.wait_timeout)
        send = _record_sender(publisher, ordered)
        with tqdm(total=scan.valid, unit="rec", file=sys.stderr, disable=not show_progress) as bar:
            # The publisher validates each record as it sends it, so this pass only parses.
            for line in read_lines(path, file_format, check=False):
                if line.number in skipped or line.record is None:
                    continue
                send(line.record)
                bar.update(1)
        publisher.flush()
        if ordered is not None:
            ordered.barrier()
            ordered.applied.close()
        return publisher.sent
