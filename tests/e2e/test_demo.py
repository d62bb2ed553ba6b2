"""`rollwatch run`, the README's demo, as a newcomer runs it: alerts, dashboard and metrics URLs, clean Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

import pytest

from localbroker.nodes import find_free_base_port
from tests.integration.workers import ROOT

pytestmark = pytest.mark.e2e

ALERT_LINE = re.compile(r"^  ALERT \d{4}-\d{2}-\d{2} +[A-Z]+ +[A-Z_]+ +to [A-Z_]+ of LA \d{3}  UPN \w{13}", re.M)
DASHBOARD_LINE = re.compile(r"^Dashboard \(330 Birmingham\): (http://127\.0\.0\.1:(\d+)/la/330/)\n  token (\S+)$", re.M)
METRICS_LINE = re.compile(r"^Metrics: (http://127\.0\.0\.1:(\d+)/metrics)$", re.M)
REGISTER_LINE = re.compile(r"^Register: ([\d,]+) alerts, ([\d,]+) open cases\.", re.M)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def port_listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def fetch(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    try:
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 - the demo's local http URL
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the demo's local http URL
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def log_tails(tmp_path: Path, characters: int = 3000) -> str:
    """The end of every log the demo's children wrote, to tell which of them did not stop."""
    logs = sorted(tmp_path.glob("worker/*/*.log")) + sorted(tmp_path.glob("kafka/*/logs/server.log"))
    tails = [f"--- {log.relative_to(tmp_path)}:\n{log.read_text(errors='replace')[-characters:]}" for log in logs]
    return "\n".join(tails) or "(no logs)"


class Output:
    """Collects a process's stdout in a thread, so the test can wait for a line without blocking on a pipe."""

    def __init__(self, stream: IO[str]) -> None:
        self.text = ""
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._lock:
                self.text += line

    def wait_for(self, pattern: re.Pattern[str], process: subprocess.Popen[str], timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = pattern.search(self.text)
            if found:
                return found
            assert process.poll() is None, f"rollwatch run exited with {process.returncode}:\n{self.text[-4000:]}"
            time.sleep(0.2)
        raise AssertionError(f"no line matching {pattern.pattern!r} within {timeout} s:\n{self.text[-4000:]}")

    def join(self) -> None:
        self._thread.join(timeout=30)


def test_demo_streams_alerts_serves_the_dashboard_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    broker_port = find_free_base_port()
    web_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLWATCH_")}
    env |= {
        "ROLLWATCH_BROKER_DATA_DIR": str(tmp_path / "kafka"),
        "ROLLWATCH_BROKER_PORT": str(broker_port),
        "ROLLWATCH_DATA_DIR": str(tmp_path / "worker"),
        "ROLLWATCH_LOG_LEVEL": "WARNING",
    }
    # Its own session, so the SIGINT below reaches the whole group, as a terminal's Ctrl-C would.
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "run", "--pupils", "5000", "--day-seconds", "0.05",
         "--web-port", str(web_port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        # A command started from a terminal takes Ctrl-C; one inherited from a background job (a test run
        # started with `&`) would otherwise ignore SIGINT for good.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert process.stdout is not None
    output = Output(process.stdout)
    try:
        dashboard = output.wait_for(DASHBOARD_LINE, process, timeout=180)
        metrics = output.wait_for(METRICS_LINE, process, timeout=5)
        assert int(dashboard.group(2)) == int(metrics.group(2)) == web_port
        output.wait_for(re.compile(r"^Still running: ", re.M), process, timeout=240)
        register_line = output.wait_for(REGISTER_LINE, process, timeout=5)

        alerts = ALERT_LINE.findall(output.text)
        assert alerts, output.text[-4000:]
        assert int(register_line.group(1).replace(",", "")) >= len(alerts)

        # Every West Midlands LA got its own token, printed apart from its URL; none opens another LA's page.
        tokens = dict(re.findall(r"^  (\d{3}) .+?/la/\d{3}/\n    token (\S+)$", output.text, re.M))
        assert len(tokens) == 14 and len(set(tokens.values())) == 14
        assert tokens["330"] == dashboard.group(3) and len(tokens["330"]) >= 43
        assert "token=" not in output.text
        status, page = fetch(dashboard.group(1), tokens["330"])
        assert status == 200, page
        assert "Birmingham (330): children missing education" in page
        status, _ = fetch(f"http://127.0.0.1:{web_port}/la/331/", tokens["330"])
        assert status == 401
        status, page = fetch(f"http://127.0.0.1:{web_port}/la/330/")
        assert status == 401 and 'action="/la/330/sign-in"' in page
        status, _ = fetch(f"http://127.0.0.1:{web_port}/la/330/?token={tokens['330']}")
        assert status == 400

        # The dashboard shows what the register holds for the LA: exactly the alerts printed for it.
        status, body = fetch(f"http://127.0.0.1:{web_port}/la/330/cases.json", tokens["330"])
        assert status == 200
        # The demo tokens are CME officers': their page shows the CME officer's alerts only.
        printed_for_330 = re.findall(r"^  ALERT .* to CME_OFFICER of LA 330  UPN (\w{13})", output.text, re.M)
        shown = json.loads(body)
        assert shown["alerts_total"] == len(printed_for_330)
        assert {alert["upn"] for alert in shown["alerts"]} == set(printed_for_330)
        status, exposition = fetch(metrics.group(1))
        assert status == 200
        assert re.search(r"^rollwatch_alerts_total\{.*\} [1-9]", exposition, re.M), exposition[:2000]
        assert port_listening(broker_port)

        os.killpg(process.pid, signal.SIGINT)
        try:
            returncode = process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail(f"rollwatch run still stopping after 120 s:\n{output.text[-2000:]}\n{log_tails(tmp_path)}")
        assert returncode == 0, output.text[-4000:]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output.join()
    assert "Stopping..." in output.text
    assert output.text.rstrip().endswith("Stopped."), output.text[-2000:]
    assert "Kafka stopped." in output.text
    assert not port_listening(broker_port)
    assert not port_listening(web_port)
