"""The benchmark script's command line: it imports without a broker and reads its options as documented."""

from __future__ import annotations

import pytest

from bench.datasets import bench_upn
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
