"""The worker's stop deadline: the process ends a set time after a stop began, once, with its own status."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from cli.commands.worker import STOP_TIMEOUT_EXIT_CODE, StopDeadline

ROOT = Path(__file__).resolve().parents[2]

HUNG_STOP = """
import logging, time
from cli.commands.worker import StopDeadline
logging.basicConfig(level=logging.INFO)
StopDeadline(0.3).start("SIGTERM")
time.sleep(30)  # a stop that never ends
"""


def test_the_deadline_ends_the_process_with_its_status_and_a_log_line() -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", HUNG_STOP], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == STOP_TIMEOUT_EXIT_CODE, result.stderr
    assert time.monotonic() - started < 10
    assert "Worker did not stop within 0.3 s of SIGTERM" in result.stderr


def test_the_deadline_starts_once_and_a_later_start_does_not_extend_it() -> None:
    exited = threading.Event()
    codes: list[int] = []

    def exit_process(code: int) -> None:
        codes.append(code)
        exited.set()

    deadline = StopDeadline(0.2, exit_process=exit_process)
    deadline.start("SIGTERM")
    time.sleep(0.1)
    deadline.start("SIGINT")
    assert exited.wait(5)
    assert codes == [STOP_TIMEOUT_EXIT_CODE]
    assert deadline.reason == "SIGTERM"
