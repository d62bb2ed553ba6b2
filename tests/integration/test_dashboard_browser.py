"""The LA dashboard in headless Chromium, served by a real worker over a real register: tokens, isolation, looks."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from config.settings import Settings
from processors.records import Alert, AlertChild, Recipient, Rule, Severity
from sinks.register import Register, create_register_engine, migrate
from streams.topics import ensure_worker_topics
from tests.integration.workers import ROOT, WorkerProcess

pytestmark = pytest.mark.integration

ARTIFACTS = ROOT / "test-artifacts"
COVENTRY, DUDLEY = "331", "332"
TOKENS = {COVENTRY: "coventry-demo-token-4f9a2c", DUDLEY: "dudley-demo-token-7be1d0"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

COVENTRY_CHILDREN = [
    ("A331200001001", AlertChild("Amelia", "Okafor", date(2014, 5, 2))),
    ("C331200001003", AlertChild("Chloé", "O'Neill", date(2015, 1, 9))),
    ("E331200001005", AlertChild("Harry", "Whitfield", date(2011, 9, 30))),
]
DUDLEY_CHILDREN = [
    ("B332200001002", AlertChild("Brandon", "Szymański", date(2013, 11, 20))),
    ("F332200001006", AlertChild("Isla", "Prendergast", date(2016, 3, 14))),
]


def register_contents() -> list[Alert]:
    alerts: list[Alert] = []
    rules = [
        (Rule.MISSING_NO_DESTINATION, Severity.HIGH, "Removed from roll (ground G, moved away) with no destination "
         "school or LA known."),
        (Rule.EXCLUDED_NO_PROVISION, Severity.IMMEDIATE, "Permanently excluded on 3 Mar 2025; no school place "
         "recorded within 6 school days; the child has a child protection plan."),
        (Rule.TRANSITION_NOT_COMPLETED, Severity.HIGH, "Left for a school in Dudley; not on roll there 10 school "
         "days after the removal."),
    ]
    for la, children in ((COVENTRY, COVENTRY_CHILDREN), (DUDLEY, DUDLEY_CHILDREN)):
        for index, (upn, child) in enumerate(children):
            rule, severity, reason = rules[index % len(rules)]
            number = len(alerts) + 1
            alerts.append(Alert(
                alert_id=str(uuid.UUID(int=number)), rule=rule, recipient=Recipient.CME_OFFICER, la_code=la,
                severity=severity, upn=upn, child=child, school_urn=f"14{number:04d}",
                raised_on=date(2025, 3, 3 + index), reason=reason, case_id=str(uuid.UUID(int=1000 + number)),
            ))
    upn, child = COVENTRY_CHILDREN[0]
    alerts.append(Alert(
        alert_id=str(uuid.UUID(int=99)), rule=Rule.EHE_NOTIFIED, recipient=Recipient.EHE_SERVICE, la_code=COVENTRY,
        severity=Severity.INFO, upn=upn, child=child, school_urn="140001", raised_on=date(2025, 3, 12),
        reason="Removed from roll for elective home education (ground F).",
    ))
    return alerts


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - a local http URL
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        return error.code


@dataclass
class DashboardServer:
    base_url: str
    worker: WorkerProcess


@pytest.fixture(scope="module")
def dashboard_server(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    tmp = tmp_path_factory.mktemp("dashboard")
    run_id = uuid.uuid4().hex[:8]
    database_url = f"sqlite:///{tmp}/register.db"
    engine = create_register_engine(database_url)
    migrate(engine)
    register = Register(engine)
    register.record(register_contents())
    register.close()
    port = free_port()
    settings = Settings(
        bootstrap_servers=kafka_bootstrap, topic_prefix=f"dash{run_id}.", app_id=f"dash-{run_id}",
        data_dir=tmp / "worker", database_url=database_url, web_enabled=True, web_port=port,
        dashboard_tokens=TOKENS,
        broker_session_timeout=10, broker_rebalance_timeout=10, log_level="WARNING",
    )
    ensure_worker_topics(settings)
    worker = WorkerProcess(settings, tmp / "worker.log").start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert worker.alive(), worker.log()
            try:
                if http_status(f"{base_url}/la/{COVENTRY}/") == 401:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"the dashboard never answered:\n{worker.log()}"
            time.sleep(0.5)
        yield DashboardServer(base_url, worker)
        assert worker.alive(), worker.log()
    finally:
        worker.stop()


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium")
    assert binary is not None, "Debian's chromium package is needed (apt-get install chromium; .ci/run does it)"
    profile = tmp_path / f"profile-{uuid.uuid4().hex[:6]}"
    return subprocess.run(
        [
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}", "--window-size=1280,900",
            *args,
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_la_token_shows_its_own_children_and_never_anothers(dashboard_server: DashboardServer, tmp_path: Path) -> None:
    url = f"{dashboard_server.base_url}/la/{COVENTRY}/?token={TOKENS[COVENTRY]}"
    dom = chromium(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr
    page = dom.stdout
    assert "Coventry (331): children missing education" in page
    for upn, child in COVENTRY_CHILDREN:
        assert upn in page
        assert child.surname.replace("'", "&#x27;") in page or child.surname in page
    for upn, child in DUDLEY_CHILDREN:
        assert upn not in page
        assert child.surname not in page and child.forename not in page
    assert 'Open cases <span class="count">(3)</span>' in page
    assert 'Recent alerts <span class="count">(4)</span>' in page


def test_filters_apply_in_the_browser(dashboard_server: DashboardServer, tmp_path: Path) -> None:
    url = f"{dashboard_server.base_url}/la/{COVENTRY}/?token={TOKENS[COVENTRY]}&severity=IMMEDIATE"
    page = chromium(tmp_path, "--dump-dom", url).stdout
    assert "C331200001003" in page
    assert "A331200001001" not in page and "E331200001005" not in page


def test_without_a_token_or_with_anothers_the_page_is_refused(
    dashboard_server: DashboardServer, tmp_path: Path
) -> None:
    assert http_status(f"{dashboard_server.base_url}/la/{COVENTRY}/") == 401
    assert http_status(f"{dashboard_server.base_url}/la/{COVENTRY}/?token={TOKENS[DUDLEY]}") == 401
    assert http_status(f"{dashboard_server.base_url}/la/{COVENTRY}/cases.json?token={TOKENS[DUDLEY]}") == 401
    page = chromium(tmp_path, "--dump-dom", f"{dashboard_server.base_url}/la/{COVENTRY}/").stdout
    assert "Access token required" in page
    assert "Okafor" not in page and "A331200001001" not in page


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_screenshot_artifact(dashboard_server: DashboardServer, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard-la-331.png"
    shot.unlink(missing_ok=True)
    url = f"{dashboard_server.base_url}/la/{COVENTRY}/?token={TOKENS[COVENTRY]}"
    result = chromium(tmp_path, f"--screenshot={shot}", url)
    assert result.returncode == 0, result.stderr
    data = shot.read_bytes()
    assert png_size(data) == (1280, 900)
    # A blank or error page compresses to a few kilobytes; tables of text and coloured badges do not.
    assert len(data) > 30_000, len(data)
