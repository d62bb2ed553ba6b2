"""Test-wide policy: in CI (CI=true) a skipped test is a failed test, so nothing silently drops out."""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest
from _pytest.reports import TestReport

IN_CI = os.environ.get("CI", "").lower() == "true"

# The shared test broker holds one topic prefix per test; every current LA's alert topics under each would
# come to tens of thousands of partitions. The tests of creating them up front ask for it themselves.
os.environ.setdefault("ROLLWATCH_ALERT_TOPICS_UP_FRONT", "false")

pytest_plugins = ("tests.fixtures_kafka",)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    outcome = yield
    report: TestReport = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"skipped in CI, which counts as a failure: {reason}"
