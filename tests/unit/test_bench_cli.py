"""The benchmark script's command line: it imports without a broker and reads its options as documented."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench import peer
from bench.datasets import bench_upn, child_added, removal_without_destination
from bench.pipeline import (
    DEFAULT_RECORDS,
    PHASES,
    QUICK_CHILDREN,
    QUICK_RECORDS,
    Options,
    build_parser,
    options_from,
    percentile,
)
from config.settings import Settings
from processors.identifiers import is_valid_upn


def parse(*argv: str) -> Options:
    return options_from(build_parser().parse_args(list(argv)))


def test_defaults_are_the_full_run_with_every_phase() -> None:
    options = parse()
    assert options.records == DEFAULT_RECORDS >= 1_000_000
    assert options.phases == PHASES
    assert options.partitions >= 4
    assert options.rate == 1000
    assert options.commit_interval == Settings.model_fields["broker_commit_interval"].default


def test_quick_shrinks_the_data_and_records_overrides_it() -> None:
    quick = parse("--quick")
    assert (quick.records, quick.children) == (QUICK_RECORDS, QUICK_CHILDREN)
    assert parse("--quick", "--records", "12345").records == 12345


def test_phases_and_partitions_are_checked() -> None:
    assert parse("--phases", "latency, replay").phases == ("latency", "replay")
    with pytest.raises(SystemExit):
        parse("--phases", "throughput,warp")
    with pytest.raises(SystemExit):
        parse("--partitions", "1")


def test_crafted_children_have_distinct_valid_upns() -> None:
    upns = [bench_upn(index) for index in (0, 1, 999_999, 100_000_000)]
    assert len(set(upns)) == len(upns)
    assert all(is_valid_upn(upn) for upn in upns)


def test_percentile_is_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.99), percentile(values, 1.0)) == (50.0, 99.0, 100.0)


def test_the_peer_phase_is_listed_and_chosen_alone_or_with_throughput() -> None:
    assert "peer" in PHASES
    assert parse("--phases", "throughput,peer").phases == ("throughput", "peer")
    assert parse("--peer-python", "/opt/quix/bin/python").peer_python == "/opt/quix/bin/python"
    assert parse().peer_python is None


def test_the_peer_takes_its_input_topic_kind_and_schema_as_arguments(tmp_path: Path) -> None:
    required = ["--bootstrap", "127.0.0.1:9092", "--output-topic", "out", "--group", "g", "--state-dir", str(tmp_path)]
    options = peer.options_from(["--input-topic", "bench.roll.events", *required])
    assert (options.input_topic, options.kind, options.schema) == ("bench.roll.events", "roll-events", "RollEvent")
    assert options.schema_path.is_file()
    assert options.commit_interval == 0.1
    chosen = peer.options_from(
        ["--input-topic", "t", "--kind", "roll-events", "--schema", "RollEvent", "--commit-interval", "0.5", *required]
    )
    assert (chosen.schema, chosen.commit_interval, chosen.state_dir) == ("RollEvent", 0.5, tmp_path)
    for wrong in (["--kind", "warp"], ["--schema", "NoSuchRecord"], ["--commit-interval", "0"], []):
        with pytest.raises(SystemExit):
            peer.options_from([*wrong, *required] if wrong else required)  # the last lacks --input-topic


def test_the_peer_decodes_what_the_publisher_encodes_and_folds_a_childs_roll() -> None:
    from schemas.codec import AvroCodec

    added = child_added(7, datetime(2025, 1, 6, 9, tzinfo=UTC))
    removed = removal_without_destination(7, datetime(2025, 1, 7, 9, tzinfo=UTC))
    decode = peer.SingleObjectDecoder(peer.SCHEMAS_DIR / "RollEvent.avsc")
    kind = peer.KINDS["roll-events"]
    state = None
    for event in (added, removed):
        record = decode(AvroCodec().encode(event))
        assert record[kind.key_field] == event.upn
        state = kind.fold(state, record)
        assert kind.output(record, state)["event_id"] == event.event_id
    assert state == {"on_roll": [], "events": 2, "last_event_id": removed.event_id, "last_effective_date": "2025-01-07"}
    with pytest.raises(ValueError, match="not a single-object message"):
        decode(b"\xc3\x01" + bytes(8) + b"body")
