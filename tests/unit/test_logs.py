"""ROLLWATCH_LOG_FORMAT=json: one JSON object a line on stderr, Faust's lines and a command's own included."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mode.utils.logging
import pytest

import config.logs
from config.logs import JSON_FIELDS, JsonLineFormatter, setup_logging
from config.settings import Settings
from streams.runtime.stopping import worker_class

ROOT = Path(__file__).resolve().parents[2]


def json_lines(text: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in text.splitlines()]
    for line in lines:
        assert isinstance(line, dict)
        assert all(key in line for key in JSON_FIELDS), line
        assert str(line["time"]).endswith("+00:00")
    return lines


@pytest.fixture
def restored_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(config.logs, "_installed", None)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def run_json(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ROLLWATCH_LOG_FORMAT": "json", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )


def test_the_formatter_writes_time_level_logger_message_and_the_extras() -> None:
    record = logging.LogRecord("sinks.register.feed", logging.WARNING, __file__, 1, "skipped %s", ("x",), None)
    for key, value in {"topic": "roll.events", "partition": 3, "offset": 41, "error_code": "BAD_JSON"}.items():
        setattr(record, key, value)
    line = json.loads(JsonLineFormatter().format(record))
    assert line == {
        "time": line["time"], "level": "WARNING", "logger": "sinks.register.feed", "message": "skipped x",
        "topic": "roll.events", "partition": 3, "offset": 41, "error_code": "BAD_JSON",
    }
    assert str(line["time"]).endswith("+00:00") and "T" in str(line["time"])


def test_a_traceback_stays_inside_its_one_line() -> None:
    try:
        raise ValueError("no")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = JsonLineFormatter().format(record)
    assert "\n" not in text
    assert "ValueError" in json.loads(text)["exc_info"]


@pytest.mark.usefixtures("restored_logging")
def test_a_faust_line_logged_after_the_worker_set_up_logging_is_json(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(Settings(log_format="json"))
    # What a Faust worker does as it starts: replaces the root handlers, then calls on_setup_root_logger.
    level = mode.utils.logging.setup_logging(loglevel="info", logfile=None)
    worker = object.__new__(worker_class(deadline=_NoDeadline()))
    worker.spinner = None
    worker.on_setup_root_logger(logging.getLogger(), level)
    logging.getLogger("faust.worker").warning("x", extra={"topic": "roll.events", "partition": 0})
    logging.getLogger("aiokafka.consumer").error("y")
    lines = json_lines(capsys.readouterr().err)
    assert [(line["logger"], line["level"], line["message"]) for line in lines] == [
        ("faust.worker", "WARNING", "x"), ("aiokafka.consumer", "ERROR", "y"),
    ]
    assert lines[0]["topic"] == "roll.events" and lines[0]["partition"] == 0


@pytest.mark.usefixtures("restored_logging")
def test_text_mode_leaves_lines_as_they_were(capsys: pytest.CaptureFixture[str]) -> None:
    logging.getLogger().handlers.clear()
    setup_logging(Settings(log_format="text"))
    logging.getLogger("rollwatch.test").warning("plain")
    assert capsys.readouterr().err.rstrip().endswith("WARNING rollwatch.test: plain")


def test_every_stderr_line_of_a_replay_with_a_bad_line_is_json(tmp_path: Path) -> None:
    good = {"topic": "clock.ticks", "value": {"today": "2025-01-06"}}
    (tmp_path / "in.jsonl").write_text(json.dumps(good) + "\nnot json\n", encoding="utf-8")
    done = run_json(tmp_path, "replay", "--jobs", "1", "in.jsonl")
    assert done.returncode == 0, done.stderr
    lines = json_lines(done.stderr)
    assert any("1 applied, 1 dead-lettered" in str(line["message"]) for line in lines)
    assert any("BAD_JSON" in str(line["message"]) for line in lines)


def test_every_stderr_line_of_generate_is_json(tmp_path: Path) -> None:
    done = run_json(tmp_path, "generate", "--pupils", "100", "--from", "2025-01-06", "--to", "2025-01-10",
                    "--output", "g.jsonl")
    assert done.returncode == 0, done.stderr
    assert json_lines(done.stderr)


class _NoDeadline:
    def start(self, reason: str) -> None:
        return None
