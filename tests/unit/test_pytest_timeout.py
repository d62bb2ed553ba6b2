"""The project's pytest-timeout method runs fixture teardown when a test times out, so brokers get stopped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

TIMED_OUT_TEST = '''
import time
from pathlib import Path

import pytest

MARKER = Path({marker!r})


@pytest.fixture
def resource():
    yield
    MARKER.write_text("torn down")


def test_sleeps_past_the_timeout(resource):
    time.sleep(30)
'''


def run_timed_out_test(tmp_path: Path, method: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    marker = tmp_path / "teardown-ran"
    test_file = tmp_path / "test_timed_out.py"
    test_file.write_text(TIMED_OUT_TEST.format(marker=str(marker)))
    # The project's configuration, with the method this session runs under (pyproject's unless overridden on
    # the command line) and a 1 s timeout.
    result = subprocess.run(
        [
            sys.executable, "-m", "pytest", str(test_file), "-c", str(ROOT / "pyproject.toml"),
            "--rootdir", str(tmp_path), "-p", "no:cacheprovider", "-o", "timeout=1", "-o", "addopts=", "-q",
            "-o", f"timeout_method={method}",
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )
    return result, marker


def test_a_timed_out_test_still_runs_its_fixture_teardown(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    result, marker = run_timed_out_test(tmp_path, str(pytestconfig.getini("timeout_method")))
    output = result.stdout + result.stderr
    assert marker.exists(), f"the fixture's teardown did not run:\n{output}"
    assert "Timeout" in output, output
    assert "1 failed" in output, output
    assert result.returncode == 1, output
