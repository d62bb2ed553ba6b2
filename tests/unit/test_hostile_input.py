"""Replay, its parallel form and publish's scan on hostile files: every bad line counted, nothing raised."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.errors import KafkaConnectionError

from cli.commands.publish import Reject, scan_file, write_rejects
from cli.main import main
from processors.calendar import default_calendar
from processors.config import RuleConfig
from processors.records import ClockTick
from processors.timeline import memory_timeline
from replay.parallel import parallel_replay, shard_of
from replay.run import ReplayStats, replay
from rollwatch_client.publisher import CSV_COLUMNS, check_csv_header, roll_event_from_csv_row, roll_events_to_csv
from schemas.errors import CodecError
from schemas.jsonformat import alert_to_line, parse_line, parse_line_by_fields
from tests.scenarios.catalogue import SCENARIOS
from tests.shared import SHARED_SCENARIOS

ROLLWATCH = Path(sys.executable).with_name("rollwatch")
#: Nothing listens here: a publish that got as far as Kafka fails at once.
NO_BROKER = "127.0.0.1:1"


def shared_lines() -> list[bytes]:
    return [
        line.encode()
        for path in sorted(SHARED_SCENARIOS.glob("*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


GOOD: list[bytes] = shared_lines() + [line.encode() for s in SCENARIOS[:12] for line in s.lines()]
ROLL = next(line for line in GOOD if b'"roll.events"' in line and b'"forename"' in line)
TICK = next(line for line in GOOD if b'"clock.ticks"' in line)
BOM = b"\xef\xbb\xbf"


def _wrong_types() -> list[bytes]:
    """ROLL with each value, at every level, replaced by every other JSON type."""
    envelope = json.loads(ROLL)
    variants = []

    def walk(node: dict[str, object], trail: tuple[str, ...]) -> None:
        for key, item in node.items():
            for odd in (None, True, 0, -1.5, 10**30, "", [], {}, ["x"], {"k": 1}):
                changed = json.loads(ROLL)
                target = changed
                for step in trail:
                    target = target[step]
                target[key] = odd
                variants.append(json.dumps(changed).encode())
            if isinstance(item, dict):
                walk(item, (*trail, key))

    walk(envelope, ())
    return variants


HOSTILE: dict[str, bytes] = {
    "invalid UTF-8 in a name": ROLL.replace(b'"forename": "', b'"forename": "\xff\xfe'),
    "invalid UTF-8 in a key": ROLL.replace(b'"forename"', b'"fore\xc3name"'),
    "truncated UTF-8": ROLL.replace(b'"forename": "', b'"forename": "\xe2\x82'),
    "deep arrays": b"[" * 100_000,
    "deep objects": b'{"a":' * 100_000,
    "deep value": b'{"topic": "roll.events", "value": ' + b"[" * 100_000,
    "BOM then a record": BOM + ROLL,
    "BOM then a tick": BOM + TICK,
    "BOM alone": BOM,
    "NaN": b'{"topic": "clock.ticks", "value": {"today": NaN}}',
    "Infinity upn": b'{"topic": "roll.events", "value": {"upn": Infinity}}',
    "NaN in an ignored field": ROLL.replace(b'{"event_id"', b'{"note": NaN, "event_id"'),
    "-Infinity in an ignored field": TICK.replace(b'{"today"', b'{"x": -Infinity, "today"'),
    "lone surrogate in a name": ROLL.replace(b'"forename": "', b'"forename": "\\ud800'),
    "lone surrogate upn": ROLL.replace(b'"upn": "', b'"upn": "\\udfff'),
    "huge integer": b'{"topic": "clock.ticks", "value": {"today": ' + b"9" * 10_000 + b"}}",
    "huge integer ignored": TICK.replace(b'{"today"', b'{"n": ' + b"9" * 10_000 + b', "today"'),
    "huge float": TICK.replace(b'{"today"', b'{"n": 1e999999, "today"'),
    "bare string": b'"roll.events"',
    "bare number": b"42",
    "bare null": b"null",
    "bare true": b"true",
    "array": b"[]",
    "NUL in a name": ROLL.replace(b'"forename": "', b'"forename": "\x00'),
    "NUL bytes": b"\x00\x00\x00",
    "CRLF": ROLL + b"\r",
    "latin-1": '{"topic": "roll.events", "value": {"upn": "é"}}'.encode("latin-1"),
    "UTF-16": TICK.decode().encode("utf-16"),
    "UTF-32 no BOM": TICK.decode().encode("utf-32-le"),
    "binary": bytes(range(256)),
    "duplicate topic, tick last": ROLL.replace(b'{"topic": "roll.events"', b'{"topic": "roll.events", '
                                               b'"topic": "clock.ticks"'),
    "duplicate topic, roll last": ROLL.replace(b'{"topic": "roll.events"', b'{"topic": "clock.ticks", '
                                               b'"topic": "roll.events"'),
    "duplicate upn": ROLL.replace(b'"upn": "', b'"upn": "L330210024001", "upn": "'),
    "duplicate upn, non-text first": ROLL.replace(b'"upn": "', b'"upn": 5, "upn": "'),
    "duplicate value": ROLL[:-1] + b', "value": {"today": "2025-03-04"}}',
    "trailing data": ROLL + b" {}",
    "two records": ROLL + TICK,
    "timestamp past year 9999": ROLL.replace(b'"recorded_at": "', b'"recorded_at": "9999-12-31T23:59:59.9999995Z", '
                                             b'"x": "'),
    "offset past the end of time": ROLL.replace(b'"recorded_at": "', b'"recorded_at": "9999-12-31T23:59:59-23:59",'
                                                b' "x": "'),
    "unknown topic": b'{"topic": "nowhere", "value": {"upn": "x"}}',
    "topic not text": b'{"topic": ["clock.ticks"], "value": {}}',
    "tick with a upn": TICK.replace(b'{"today"', b'{"upn": "L330210024001", "today"'),
    "vertical tab line": b"\x0b",
    "file separator line": b"\x1c",
    "no-break space line": "\u00a0".encode(),
}
for _number, _variant in enumerate(_wrong_types()):
    HOSTILE[f"wrong type {_number}"] = _variant


def _single(lines: list[bytes]) -> tuple[list[bytes], ReplayStats]:
    alerts: list[bytes] = []
    stats = replay(lines, memory_timeline(RuleConfig(default_calendar())), lambda a: alerts.append(alert_to_line(a)))
    return alerts, stats


def _counts(stats: ReplayStats) -> tuple[int, int, int, dict[str, int]]:
    return stats.records, stats.applied, stats.alerts, dict(stats.dead_letters)


def _file_lines(data: bytes) -> list[bytes]:
    """The lines a replay reads from a file holding `data`, as `rollwatch replay` reads them."""
    return list(io.BytesIO(data))


def _both(data: bytes, folder: Path, jobs: int = 2) -> None:
    """Replays `data` in one process and in `jobs`, and checks the alerts and counts are identical."""
    path = folder / "replay.jsonl"
    path.write_bytes(data)
    expected, stats = _single(_file_lines(data))
    got: list[bytes] = []
    parallel = parallel_replay(path, RuleConfig(default_calendar()), jobs, got.append)
    assert got == expected
    assert _counts(parallel) == _counts(stats)


# ---- the line reader ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_line_raises_only_codec_errors(name: str) -> None:
    line = HOSTILE[name]
    texts: list[str | bytes] = [line, line.decode("utf-8", "surrogateescape"), line.decode("latin-1")]
    for text in texts:
        for parse in (parse_line, parse_line_by_fields):
            try:
                parse(text)
            except CodecError as error:
                assert "Child" not in error.message


def test_text_lines_with_lone_surrogates_are_refused_not_raised() -> None:
    text = '{"topic": "roll.events", "value": {"upn": "\ud800"}}'
    for parse in (parse_line, parse_line_by_fields):
        with pytest.raises(CodecError):
            parse(text)


def test_a_leading_byte_order_mark_is_ignored() -> None:
    assert parse_line(BOM + ROLL) == parse_line(ROLL)
    assert parse_line("\ufeff" + ROLL.decode()) == parse_line(ROLL)
    assert parse_line_by_fields(BOM + TICK) == parse_line(TICK)


def test_nan_and_infinity_are_not_json() -> None:
    for name in ("NaN", "NaN in an ignored field", "-Infinity in an ignored field"):
        with pytest.raises(CodecError) as raised:
            parse_line(HOSTILE[name])
        assert raised.value.code == "BAD_JSON"


def test_text_in_other_encodings_is_not_read() -> None:
    for name in ("UTF-16", "UTF-32 no BOM", "latin-1"):
        with pytest.raises(CodecError) as raised:
            parse_line_by_fields(HOSTILE[name])
        assert raised.value.code == "BAD_JSON"


@pytest.mark.parametrize("name", list(HOSTILE))
def test_shard_of_routes_every_readable_line_to_its_childs_shard(name: str) -> None:
    line = HOSTILE[name]
    try:
        _topic, record = parse_line(line)
    except CodecError:
        shard_of(line, 3)  # any shard, but no exception
        return
    expected = None if isinstance(record, ClockTick) else zlib.crc32(record.upn.encode()) % 3
    assert shard_of(line, 3) == expected


# ---- replay, one process and several ----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(HOSTILE))
def test_replay_counts_a_hostile_line_and_goes_on(name: str) -> None:
    lines = [*GOOD[:6], HOSTILE[name] + b"\n", *GOOD[6:12]]
    _alerts, stats = _single(lines)
    _clean_alerts, clean = _single(GOOD[:12])
    blank = not HOSTILE[name].strip(b" \t\r\v\f")
    assert stats.records == clean.records + (0 if blank else 1)


def test_replay_counts_any_unexpected_failure_as_unprocessable(monkeypatch: pytest.MonkeyPatch) -> None:
    import replay.run as module

    def explode(line: str | bytes) -> object:
        raise KeyError("Child51")

    monkeypatch.setattr(module, "parse_line", explode)
    _alerts, stats = _single([TICK])
    assert _counts(stats) == (1, 0, 0, {"UNPROCESSABLE": 1})


def test_blank_lines_are_the_same_as_text_or_bytes() -> None:
    lines = ["", " \t", "\x0b", "\x1c", "\u00a0", "\u2028"]
    _alerts, as_text = _single(lines)  # type: ignore[arg-type]
    _alerts, as_bytes = _single([line.encode() for line in lines])
    assert _counts(as_text) == _counts(as_bytes) == (3, 0, 0, {"BAD_JSON": 3})


def test_every_hostile_line_in_one_file_gives_identical_output_on_two_processes(tmp_path: Path) -> None:
    body = b"".join(line + b"\n" for pair in zip(GOOD, list(HOSTILE.values()), strict=False) for line in pair)
    _both(BOM + body + b"\n".join(GOOD[len(HOSTILE):]) + b"\n", tmp_path)


@pytest.mark.parametrize("data", [b"", b"\n\n", BOM, b"\xff\xfe\x00", b"\x00" * 100, b"[" * 200_000])
def test_degenerate_files_give_identical_output(data: bytes, tmp_path: Path) -> None:
    _both(data, tmp_path)


def _mutations(line: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.integers(0, len(line)).map(lambda cut: line[:cut]),
        st.tuples(st.integers(0, len(line) - 1), st.binary(min_size=1, max_size=4)).map(
            lambda edit: line[: edit[0]] + edit[1] + line[edit[0] + 1 :]
        ),
        st.tuples(st.integers(0, len(line)), st.sampled_from([b"\x00", b"\xff", BOM, b"\\ud800", b"NaN", b"\r",
                                                               b'"', b"{", b"}", b",", b'"upn": "X",'])).map(
            lambda edit: line[: edit[0]] + edit[1] + line[edit[0] :]
        ),
    )


LINE = st.one_of(
    st.sampled_from(GOOD),
    st.sampled_from(GOOD).flatmap(_mutations),
    st.sampled_from(list(HOSTILE.values())[:60]),
    st.binary(max_size=40),
    st.sampled_from([b"", b" ", b"\r", b"\t", BOM]),
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(lines=st.lists(LINE, min_size=0, max_size=30), jobs=st.sampled_from([2, 3]))
def test_any_file_gives_identical_output_on_one_process_and_several(lines: list[bytes], jobs: int) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        _both(b"\n".join(lines), Path(folder), jobs)


def _summary(stderr: str) -> list[str]:
    """The summary's counts, without the timing, which varies."""
    return [line.split(" in ")[0] for line in stderr.splitlines()]


def test_cli_replay_of_a_hostile_file_is_identical_on_one_and_two_processes(tmp_path: Path) -> None:
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(BOM + b"\n".join([*GOOD, *HOSTILE.values()]) + b"\r\n")
    runs = [
        subprocess.run([str(ROLLWATCH), "replay", str(path), "--jobs", jobs], capture_output=True, timeout=120)
        for jobs in ("1", "2")
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr.decode()
        assert b"Traceback" not in run.stderr
    assert runs[0].stdout == runs[1].stdout
    assert runs[0].stdout.count(b"\n") > 5
    assert _summary(runs[0].stderr.decode()) == _summary(runs[1].stderr.decode())
    assert "dead-lettered BAD_JSON" in runs[0].stderr.decode()


# ---- publish's scan ----------------------------------------------------------------------------------------


def test_publish_scan_rejects_every_hostile_line_with_a_code(tmp_path: Path) -> None:
    path = tmp_path / "hostile.jsonl"
    hostile = [line for line in HOSTILE.values() if line.strip()]
    path.write_bytes(b"\n".join([GOOD[0], *hostile]) + b"\n")
    scan = scan_file(path, "jsonl")
    assert scan.fatal is None
    assert scan.valid >= 1
    for reject in scan.rejects:
        codes = [reason.split(":")[0].split(" ")[0] for reason in reject.reasons]
        assert codes and all(code.replace("_", "").isalpha() and code.isupper() for code in codes), reject.reasons
        assert all("Child" not in reason for reason in reject.reasons)
    rejects = tmp_path / "rejects.jsonl"
    write_rejects(scan.rejects, rejects)
    assert len(rejects.read_text(encoding="utf-8").splitlines()) == len(scan.rejects)


def test_publish_scan_reads_any_bytes(tmp_path: Path) -> None:
    for data in (b"", BOM, b"\x00\xff" * 1000, bytes(range(256)) * 10, b"[" * 200_000, b"\n".join(GOOD)):
        path = tmp_path / "any.jsonl"
        path.write_bytes(data)
        scan = scan_file(path, "jsonl")
        assert scan.fatal is None
        csv_path = tmp_path / "any.csv"
        csv_path.write_bytes(data)
        scan_file(csv_path, "csv")


def test_rejects_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    destination = tmp_path / "rejects.jsonl"
    old_umask = os.umask(0)
    try:
        write_rejects([Reject(1, ("BAD_JSON: line is not valid JSON",), "Child51 Example 2014-07-16")], destination)
        assert stat.S_IMODE(destination.stat().st_mode) == 0o600
        destination.chmod(0o644)
        write_rejects([], destination)
        assert stat.S_IMODE(destination.stat().st_mode) == 0o600
    finally:
        os.umask(old_umask)


def _publish(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ROLLWATCH_BOOTSTRAP_SERVERS": NO_BROKER}
    return subprocess.run([str(ROLLWATCH), "publish", *args], capture_output=True, text=True, env=env,
                          timeout=120, cwd=tmp_path)


def test_cli_publish_refuses_a_hostile_file_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(BOM + b"\n".join([*GOOD[:3], *HOSTILE.values()]) + b"\n")
    refused = _publish(str(path), tmp_path=tmp_path)
    assert refused.returncode == 1, refused.stderr
    assert "Traceback" not in refused.stderr and "nothing sent" in refused.stderr
    assert "Child" not in refused.stderr


def test_publish_skipping_hostile_lines_writes_private_rejects_then_reports_kafka(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import cli.commands.publish as publish

    def no_kafka(*_args: object) -> dict[str, int]:
        raise KafkaConnectionError()

    monkeypatch.setattr(publish, "_send_file", no_kafka)
    monkeypatch.setenv("ROLLWATCH_BOOTSTRAP_SERVERS", NO_BROKER)
    path = tmp_path / "hostile.csv"
    path.write_bytes(_csv([["x"]]).encode() + b"\xff,\x00\n")
    rejects = tmp_path / "r.jsonl"
    assert main(["publish", str(path), "--skip-invalid", "--rejects", str(rejects)]) == 2
    assert "KafkaConnectionError" in capsys.readouterr().err
    assert stat.S_IMODE(rejects.stat().st_mode) == 0o600
    assert len(rejects.read_text(encoding="utf-8").splitlines()) == 2


# ---- CSV ---------------------------------------------------------------------------------------------------


def _csv(rows: list[list[str]] | None = None) -> str:
    from tests.unit.test_publish_cli import scenario_roll_events

    text = roll_events_to_csv(scenario_roll_events()[:2])
    return text + "".join(_csv_row(row) for row in rows or [])


def _csv_row(row: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(row)
    return buffer.getvalue()


def _good_row() -> list[str]:
    return next(csv.reader(io.StringIO(_csv().splitlines()[1])))


def _scan_csv(tmp_path: Path, data: bytes) -> tuple[int, list[tuple[int, str]], str | None]:
    path = tmp_path / "roll.csv"
    path.write_bytes(data)
    scan = scan_file(path, "csv")
    return scan.valid, [(r.line_number, r.reasons[0]) for r in scan.rejects], scan.fatal


def test_csv_rows_with_hostile_content_are_rejected_with_codes(tmp_path: Path) -> None:
    good = _good_row()
    surname = CSV_COLUMNS.index("surname")
    nul = [*good[:surname], "Ex\x00ample", *good[surname + 1 :]]
    huge = [*good[:surname], "x" * 10_000_000, *good[surname + 1 :]]
    text = _csv([nul, huge, [*good, "extra"], good[:3], good])
    bad_utf8 = _csv_row(good).encode().replace(b"Example", b"Ex\xffample")
    data = BOM + text.encode() + bad_utf8 + _csv_row(good).encode() + b'"open,' + _csv_row(good).encode()
    valid, rejects, fatal = _scan_csv(tmp_path, data)
    assert fatal is None
    assert valid == 4
    assert [number for number, _reason in rejects] == [4, 5, 6, 7, 9, 11]
    assert all(reason.startswith(("BAD_FIELD", "MISSING_FIELD")) for _number, reason in rejects), rejects
    assert all("Example" not in reason and "xxx" not in reason for _number, reason in rejects)


def test_csv_without_a_header_does_not_quote_the_first_row(tmp_path: Path) -> None:
    text = _csv().split("\n", 1)[1]
    _valid, _rejects, fatal = _scan_csv(tmp_path, text.encode())
    assert fatal is not None and "header" in fatal
    assert "Child" not in fatal and "Example" not in fatal


def test_csv_header_with_many_columns_is_refused_quickly() -> None:
    with pytest.raises(CodecError):
        check_csv_header([f"c{i}" for i in range(200_000)] * 2)


def test_csv_row_mapping_refuses_missing_or_odd_cells() -> None:
    row: dict[str, object] = dict(zip(CSV_COLUMNS, _good_row(), strict=True))
    for change in ({"school_special": None}, {"upn": 5}, {"standard_transition": ["x"]}):
        with pytest.raises(CodecError):
            roll_event_from_csv_row({**row, **change})  # type: ignore[dict-item]
    del row["forename"]
    with pytest.raises(CodecError):
        roll_event_from_csv_row(row)  # type: ignore[arg-type]


@pytest.mark.parametrize("data", [b"", BOM, b"\x00", b"\xff\xfe", b'"', b"," * 1_000_000, b"x" * 10_000_000])
def test_degenerate_csv_files_are_refused_with_a_message(data: bytes, tmp_path: Path) -> None:
    _valid, _rejects, fatal = _scan_csv(tmp_path, data)
    assert fatal is not None and len(fatal) < 2_000


