"""The bench's peer: a Quix Streams application doing a Rollwatch worker's per-record work, to compare against."""

from __future__ import annotations

# Run by `bench.pipeline` (phase `peer`) as `python -m bench.peer ...` with the interpreter of a virtualenv of
# its own (the `bench` dependency group of pyproject.toml): quixstreams 3.23.1 caps pydantic below the
# application's pins, so the two cannot share an environment. This module therefore imports nothing of the
# application: only the standard library at import time (the unit tests parse its arguments without Quix),
# fastavro and quixstreams once it runs.
import argparse
import json
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, cast

#: The .avsc files the application ships; a schema name is one of their stems (e.g. RollEvent).
SCHEMAS_DIR = Path(__file__).resolve().parents[1] / "schemas"
#: First two bytes of an Avro single-object encoded message, as the MIS publisher SDK writes them.
SINGLE_OBJECT_MARKER = b"\xc3\x01"
HEADER_LENGTH = len(SINGLE_OBJECT_MARKER) + 8
#: The one state key per message key: Quix scopes a store to the message key, which is the child's UPN.
STATE_KEY = "child"

Record = dict[str, Any]
ChildState = dict[str, Any]


@dataclass(frozen=True)
class Kind:
    """What the peer does with one kind of input, beyond decoding it: the state per key and the output."""

    description: str
    #: The schema its records are written with, unless --schema says otherwise.
    default_schema: str
    #: The record field the input topic is keyed by; a record whose field disagrees with its key is an error.
    key_field: str
    #: The key's new state from its old state (None for a first record) and the record.
    fold: Callable[[ChildState | None, Record], ChildState]
    #: The one output record for an input record, given the key's new state.
    output: Callable[[Record, ChildState], Record]


def fold_roll_event(state: ChildState | None, event: Record) -> ChildState:
    """A child's schools on roll, as the worker's per-child state tracks them, plus what it last applied."""
    on_roll = set(state["on_roll"]) if state else set()
    urn = event["school"]["urn"]
    if event["event_type"] == "ADDED":
        on_roll.add(urn)
    else:
        on_roll.discard(urn)
    return {
        "on_roll": sorted(on_roll),
        "events": (state["events"] if state else 0) + 1,
        "last_event_id": event["event_id"],
        "last_effective_date": event["effective_date"].isoformat(),
    }


def roll_event_output(event: Record, state: ChildState) -> Record:
    return {
        "upn": event["upn"],
        "event_id": event["event_id"],
        "event_type": event["event_type"],
        "on_roll": state["on_roll"],
        "events": state["events"],
    }


def register_output(register: Record, state: ChildState) -> Record:
    return {
        "register_id": register["register_id"],
        "school_urn": register["school"]["urn"],
        "marks": len(register["marks"]),
        "absent": state["absent"],
    }


def fold_register(state: ChildState | None, register: Record) -> ChildState:
    """Unused: a register's state is one entry per pupil (see apply_register), not one per message key."""
    raise NotImplementedError


#: Input kinds by their --kind name.
KINDS: dict[str, Kind] = {
    "roll-events": Kind(
        description="roll changes (ADDED/REMOVED) keyed by UPN; state: the child's schools on roll",
        default_schema="RollEvent",
        key_field="upn",
        fold=fold_roll_event,
        output=roll_event_output,
    ),
    "registers": Kind(
        description="attendance registers keyed by school URN; state: per pupil (a key of its own in the "
        "school's store), the days marked and the current run of unauthorised days; one output per register",
        default_schema="AttendanceRegister",
        key_field="register_id",
        fold=fold_register,
        output=register_output,
    ),
}

#: Codes of a day that count towards an absence run (design.md: G, N, O).
UNAUTHORISED = frozenset({"G", "N", "O"})


def apply_register(register: Record, state: Any) -> ChildState:
    """Each mark reads and writes its pupil's entry in the school's store: the per-mark work a stream
    processor without batching does, here without even a repartition by pupil."""
    absent = 0
    for mark in register["marks"]:
        pupil = state.get(mark["upn"]) or {"days": 0, "run": 0}
        unauthorised = mark["am"] in UNAUTHORISED and mark["pm"] in UNAUTHORISED
        run = pupil["run"] + 1 if unauthorised else 0
        absent += unauthorised
        state.set(mark["upn"], {"days": pupil["days"] + 1, "run": run})
    return {"absent": absent}


@dataclass(frozen=True)
class PeerOptions:
    bootstrap: str
    input_topic: str
    output_topic: str
    kind: str
    schema: str
    group: str
    state_dir: Path
    commit_interval: float

    @property
    def schema_path(self) -> Path:
        return SCHEMAS_DIR / f"{self.schema}.avsc"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peer",
        description=(
            "A Quix Streams application (exactly-once) that drains an input topic of Avro single-object "
            "records: decodes each with the project's schema, reads and writes the key's state in RocksDB, "
            "and sends one output record per input record. The bench's peer for the worker's throughput."
        ),
    )
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers, host:port[,host:port]")
    parser.add_argument("--input-topic", required=True, help="the topic to drain")
    parser.add_argument("--output-topic", required=True, help="where the one record per input record goes")
    parser.add_argument(
        "--kind", choices=sorted(KINDS), default="roll-events",
        help="what the input holds, which decides the state kept per key and the output ("
        + "; ".join(f"{name}: {kind.description}" for name, kind in sorted(KINDS.items())) + ")",
    )
    parser.add_argument(
        "--schema", default=None,
        help="the record's schema, by the name of its .avsc file in schemas/ (the kind's own by default: "
        + ", ".join(f"{name}: {kind.default_schema}" for name, kind in sorted(KINDS.items())) + ")",
    )
    parser.add_argument("--group", required=True, help="consumer group (the bench probes its committed offsets)")
    parser.add_argument("--state-dir", type=Path, required=True, help="directory of the RocksDB state")
    parser.add_argument(
        "--commit-interval", type=float, default=0.1,
        help="seconds between commits (transactions); the bench passes the worker's (0.1)",
    )
    return parser


def options_from(argv: Sequence[str]) -> PeerOptions:
    parser = build_parser()
    args = parser.parse_args(list(argv))
    schema = args.schema or KINDS[args.kind].default_schema
    if not (SCHEMAS_DIR / f"{schema}.avsc").is_file():
        known = ", ".join(sorted(path.stem for path in SCHEMAS_DIR.glob("*.avsc")))
        parser.error(f"no schema {schema!r} in {SCHEMAS_DIR}; choose from {known}")
    if args.commit_interval <= 0:
        parser.error("--commit-interval must be above 0")
    return PeerOptions(
        bootstrap=args.bootstrap,
        input_topic=args.input_topic,
        output_topic=args.output_topic,
        kind=args.kind,
        schema=schema,
        group=args.group,
        state_dir=args.state_dir,
        commit_interval=args.commit_interval,
    )


class SingleObjectDecoder:
    """Decodes an Avro single-object message written with one schema: checks the marker and the schema's
    fingerprint (as the worker does before it decodes), then reads the body schemaless with fastavro."""

    def __init__(self, schema_path: Path) -> None:
        from fastavro import parse_schema
        from fastavro.schema import fingerprint, to_parsing_canonical_form

        raw = json.loads(schema_path.read_text())
        # fastavro renders the CRC-64-AVRO fingerprint least significant byte first: the wire order.
        self.header = SINGLE_OBJECT_MARKER + bytes.fromhex(
            fingerprint(to_parsing_canonical_form(raw), "CRC-64-AVRO")
        )
        self.schema = parse_schema(raw)

    def __call__(self, message: bytes) -> Record:
        from fastavro import schemaless_reader

        if message[:HEADER_LENGTH] != self.header:
            raise ValueError(f"not a single-object message of this schema (header {message[:HEADER_LENGTH].hex()})")
        return cast(Record, schemaless_reader(BytesIO(message[HEADER_LENGTH:]), self.schema, None))


def build_application(options: PeerOptions) -> Any:
    """The Quix application: its dataframe decodes, folds the key's state and sends one record, exactly once."""
    from quixstreams import Application
    from quixstreams.models.serializers import Deserializer, SerializationContext

    kind = KINDS[options.kind]
    decode = SingleObjectDecoder(options.schema_path)

    class AvroSingleObject(Deserializer):
        def __call__(self, value: bytes, ctx: SerializationContext) -> Mapping[str, Any]:
            return decode(value)

    app = Application(
        broker_address=options.bootstrap,
        consumer_group=options.group,
        # The input was published before the peer starts: read it from the beginning, as the worker does.
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        commit_interval=options.commit_interval,
        state_dir=options.state_dir,
        # Quix's default, stated: state is restorable from changelog topics, as the worker's tables are.
        use_changelog_topics=True,
        loglevel="INFO",
    )
    inputs = app.topic(options.input_topic, key_deserializer="str", value_deserializer=AvroSingleObject())
    outputs = app.topic(options.output_topic, key_serializer="str", value_serializer="json")

    def apply(record: Record, key: str, timestamp: int, headers: object, state: Any) -> Record:
        if options.kind == "registers":
            if record["school"]["urn"] != key:
                raise ValueError(f"register of school {record['school']['urn']!r} under message key {key!r}")
            return kind.output(record, apply_register(record, state))
        if record[kind.key_field] != key:
            raise ValueError(f"record {kind.key_field} {record[kind.key_field]!r} under message key {key!r}")
        updated = kind.fold(state.get(STATE_KEY), record)
        state.set(STATE_KEY, updated)
        return kind.output(record, updated)

    sdf = app.dataframe(inputs)
    sdf = sdf.apply(apply, stateful=True, metadata=True)
    sdf.to_topic(outputs)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    options = options_from(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Quix stops cleanly on SIGTERM, committing what it has processed: the bench stops it so.
    build_application(options).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
