"""The LA dashboard in headless Chromium, served by a real worker over a real register: sign-in, isolation, looks."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import shutil
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from config.settings import DashboardCredential, Settings
from processors.records import Alert, AlertChild, Recipient, Rule, Severity
from sinks.register import Register, create_register_engine, migrate
from streams.topics import ensure_worker_topics
from tests.integration.workers import ROOT, WorkerProcess

pytestmark = pytest.mark.integration

ARTIFACTS = ROOT / "test-artifacts"
COVENTRY, DUDLEY = "331", "332"
TOKENS = {COVENTRY: "coventry-demo-token-4f9a2c0b7d", DUDLEY: "dudley-demo-token-7be1d0c3a5"}
CREDENTIALS = {
    f"{la}-cme": DashboardCredential(la=la, role="cme-officer", sha256=hashlib.sha256(token.encode()).hexdigest())
    for la, token in TOKENS.items()
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: The alerts fall on Wednesdays of recent weeks, so the trend charts (the last 12 weeks to the worker's today)
#: count them whichever day the test runs, even if the worker's clock is a day off this one.
TODAY = datetime.now(tz=ZoneInfo("Europe/London")).date()
THIS_MONDAY = TODAY - timedelta(days=TODAY.weekday())


def weeks_ago(weeks: int) -> date:
    return THIS_MONDAY - timedelta(weeks=weeks) + timedelta(days=2)


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
                raised_on=weeks_ago(1 + 2 * index), reason=reason, case_id=str(uuid.UUID(int=1000 + number)),
            ))
    upn, child = COVENTRY_CHILDREN[0]
    alerts.append(Alert(
        alert_id=str(uuid.UUID(int=99)), rule=Rule.EHE_NOTIFIED, recipient=Recipient.EHE_SERVICE, la_code=COVENTRY,
        severity=Severity.INFO, upn=upn, child=child, school_urn="140001", raised_on=weeks_ago(2),
        reason="Removed from roll for elective home education (ground F).",
    ))
    return alerts


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def http_status(url: str, token: str | None = None) -> int:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    try:
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 - a local http URL
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - a local http URL
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        return error.code


def wait_for_dashboard(base_url: str, worker: WorkerProcess, timeout: float = 120) -> None:
    """Until the worker's dashboard answers (asking for credentials), failing with its log if it dies first."""
    deadline = time.monotonic() + timeout
    while True:
        assert worker.alive(), worker.log()
        try:
            if http_status(f"{base_url}/la/{COVENTRY}/") == 401:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"the dashboard never answered:\n{worker.log()}"
        time.sleep(0.5)


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
        dashboard_tokens=CREDENTIALS,
        broker_session_timeout=10, broker_rebalance_timeout=10, log_level="WARNING",
    )
    ensure_worker_topics(settings)
    worker = WorkerProcess(settings, tmp / "worker.log").start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for_dashboard(base_url, worker)
        yield DashboardServer(base_url, worker)
        assert worker.alive(), worker.log()
    finally:
        worker.stop()


class Browser:
    """Headless Chromium driven over the DevTools protocol, so a test signs in through the form as a person does."""

    def __init__(self, process: subprocess.Popen[str], socket_: aiohttp.ClientWebSocketResponse) -> None:
        self.process = process
        self.socket = socket_
        self.last_id = 0

    async def call(self, method: str, **params: object) -> dict[str, object]:
        self.last_id += 1
        await self.socket.send_json({"id": self.last_id, "method": method, "params": params})
        while True:
            message = await asyncio.wait_for(self.socket.receive_json(), 60)
            if message.get("id") == self.last_id:
                assert "error" not in message, message
                result: dict[str, object] = message.get("result", {})
                return result

    async def evaluate(self, expression: str) -> object:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        value = result.get("result", {})
        return value.get("value") if isinstance(value, dict) else None

    async def wait_for_title(self, fragment: str, seconds: float = 30) -> str:
        deadline = time.monotonic() + seconds
        while True:
            title = await self.evaluate("document.readyState === 'complete' ? document.title : ''")
            if isinstance(title, str) and fragment in title:
                return title
            assert time.monotonic() < deadline, f"no page titled {fragment!r}; last {title!r}"
            await asyncio.sleep(0.2)

    async def open(self, url: str, title: str) -> str:
        await self.call("Page.navigate", url=url)
        await self.wait_for_title(title)
        html = await self.evaluate("document.documentElement.outerHTML")
        assert isinstance(html, str)
        return html


def start_chromium(profile: Path) -> tuple[subprocess.Popen[str], int]:
    """Chromium with its DevTools port open; returns the process and the port it chose."""
    binary = shutil.which("chromium")
    assert binary is not None, "Debian's chromium package is needed (apt-get install chromium; .ci/run does it)"
    process = subprocess.Popen(
        [
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}",
            "--window-size=1280,900", "--remote-debugging-port=0", "about:blank",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        found = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
        if found:
            return process, int(found.group(1))
        assert line or process.poll() is None, "chromium exited before listening"
    process.kill()
    raise AssertionError("chromium never opened its DevTools port")


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    process, port = start_chromium(tmp_path / "profile")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/json/list") as listing:
            pages = [target for target in json.loads(await listing.text()) if target["type"] == "page"]
        async with session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as socket_:
            driven = Browser(process, socket_)
            await driven.call("Page.enable")
            await driven.call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1,
                              mobile=False)
            try:
                yield driven
            finally:
                process.terminate()
                process.wait(timeout=30)


async def sign_in(browser: Browser, base_url: str, la: str, token: str) -> str:
    """Opens the LA's page, types the token into its sign-in form and submits it; returns the page then shown."""
    form = await browser.open(f"{base_url}/la/{la}/", "sign in")
    assert 'type="password" name="token"' in form
    await browser.evaluate(
        f"document.querySelector('input[name=token]').value = {json.dumps(token)};"
        "document.querySelector('form.sign-in').submit(); true"
    )
    await browser.wait_for_title("children missing education")
    html = await browser.evaluate("document.documentElement.outerHTML")
    assert isinstance(html, str)
    return html


async def test_signing_in_shows_the_las_own_children_and_never_anothers(
    dashboard_server: DashboardServer, browser: Browser
) -> None:
    page = await sign_in(browser, dashboard_server.base_url, COVENTRY, TOKENS[COVENTRY])
    assert "Coventry (331): children missing education" in page
    for upn, child in COVENTRY_CHILDREN:
        assert upn in page
        assert child.surname.replace("'", "&#x27;") in page or child.surname in page
    for upn, child in DUDLEY_CHILDREN:
        assert upn not in page
        assert child.surname not in page and child.forename not in page
    assert 'Open cases <span class="count">(3)</span>' in page
    # The CME officer's page leaves out the EHE service's notice.
    assert 'Recent alerts <span class="count">(3)</span>' in page
    # The token went in a POST body: not in the URL, not in the page, and the session is out of scripts' reach.
    assert await browser.evaluate("location.href") == f"{dashboard_server.base_url}/la/{COVENTRY}/"
    assert TOKENS[COVENTRY] not in page
    assert await browser.evaluate("document.cookie") == ""
    # The session opens Coventry's page only.
    assert "sign in" in await browser.open(f"{dashboard_server.base_url}/la/{DUDLEY}/", "sign in")


async def test_filters_apply_and_sign_out_ends_the_session(
    dashboard_server: DashboardServer, browser: Browser
) -> None:
    await sign_in(browser, dashboard_server.base_url, COVENTRY, TOKENS[COVENTRY])
    page = await browser.open(f"{dashboard_server.base_url}/la/{COVENTRY}/?severity=IMMEDIATE", "missing education")
    assert "C331200001003" in page
    assert "A331200001001" not in page and "E331200001005" not in page
    await browser.evaluate("document.querySelector('form.sign-out').submit(); true")
    await browser.wait_for_title("sign in")
    assert "A331200001001" not in await browser.open(f"{dashboard_server.base_url}/la/{COVENTRY}/", "sign in")


async def test_a_wrong_token_is_refused_on_the_form(dashboard_server: DashboardServer, browser: Browser) -> None:
    await browser.open(f"{dashboard_server.base_url}/la/{COVENTRY}/", "sign in")
    await browser.evaluate(
        f"document.querySelector('input[name=token]').value = {json.dumps(TOKENS[DUDLEY])};"
        "document.querySelector('form.sign-in').submit(); true"
    )
    await asyncio.sleep(0.5)
    await browser.wait_for_title("sign in")
    page = await browser.evaluate("document.documentElement.outerHTML")
    assert isinstance(page, str) and "does not open this LA" in page and "Okafor" not in page


def test_without_credentials_or_with_anothers_the_page_is_refused(dashboard_server: DashboardServer) -> None:
    base = dashboard_server.base_url
    assert http_status(f"{base}/la/{COVENTRY}/") == 401
    assert http_status(f"{base}/la/{COVENTRY}/", TOKENS[DUDLEY]) == 401
    assert http_status(f"{base}/la/{COVENTRY}/cases.json", TOKENS[DUDLEY]) == 401
    assert http_status(f"{base}/la/{COVENTRY}/cases.json", TOKENS[COVENTRY]) == 200
    assert http_status(f"{base}/la/{COVENTRY}/?token={TOKENS[COVENTRY]}") == 400


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def test_screenshot_artifact(dashboard_server: DashboardServer, browser: Browser) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard-la-331.png"
    shot.unlink(missing_ok=True)
    await sign_in(browser, dashboard_server.base_url, COVENTRY, TOKENS[COVENTRY])
    captured = await browser.call("Page.captureScreenshot", format="png")
    data = base64.b64decode(str(captured["data"]))
    shot.write_bytes(data)
    assert png_size(data) == (1280, 900)
    # A blank or error page compresses to a few kilobytes; tables of text and coloured badges do not.
    assert len(data) > 30_000, len(data)


#: What the Trends section shows, read from the rendered page: charts, their labels and counts, and the table.
TRENDS_IN_THE_PAGE = """(() => {
  const section = document.querySelector('section.trends');
  if (!section) return null;
  const charts = [...section.querySelectorAll('svg[role=img]')];
  const box = (element) => { const r = element.getBoundingClientRect(); return [r.width, r.height]; };
  const counts = (selector) => [...section.querySelectorAll(selector)].map((e) => Number(e.dataset.count));
  const rows = (selector) => [...section.querySelectorAll(selector + ' tbody tr')].map(
    (tr) => [tr.querySelector('th').textContent, ...[...tr.querySelectorAll('td')].map((td) => td.textContent)]);
  const at = section.getBoundingClientRect();
  return {
    labels: charts.map((svg) => svg.getAttribute('aria-label')),
    titles: charts.map((svg) => svg.querySelector('title').textContent),
    sizes: charts.map(box),
    bars: [...section.querySelectorAll('rect.bar')].map((r) => [r.dataset.series, Number(r.dataset.count)]),
    points: counts('circle.point'),
    legend: [...section.querySelectorAll('g.legend text')].map((t) => t.textContent),
    alertRows: rows('table.trend-alerts'),
    caseRows: rows('table.trend-cases'),
    tableSize: box(section.querySelector('table.trend-alerts').parentElement),
    scripts: document.scripts.length,
    violations: window.cspViolations || [],
    clip: [at.left + window.scrollX - 8, at.top + window.scrollY - 8, at.width + 16, at.height + 16],
  };
})()"""


def monday_of(week_name: str) -> date:
    """The Monday of a table row's week, from its ISO week: "Week of 3 Mar 2025 (2025-W10)" -> 3 Mar 2025."""
    found = re.search(r"\((\d{4})-W(\d{2})\)", week_name)
    assert found is not None, week_name
    return date.fromisocalendar(int(found.group(1)), int(found.group(2)), 1)


async def test_trend_charts_render_the_las_own_counts(dashboard_server: DashboardServer, browser: Browser) -> None:
    # Records any Content-Security-Policy violation from the first byte of each page on.
    await browser.call("Page.addScriptToEvaluateOnNewDocument", source=(
        "window.cspViolations = []; document.addEventListener('securitypolicyviolation', "
        "(e) => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));"
    ))
    await sign_in(browser, dashboard_server.base_url, COVENTRY, TOKENS[COVENTRY])
    shown = await browser.evaluate(TRENDS_IN_THE_PAGE)
    assert isinstance(shown, dict), "no Trends section on the page"
    assert shown["scripts"] == 0 and shown["violations"] == []
    assert shown["titles"] == ["Alerts per week by rule", "Open cases at each week's end"]
    # Coventry's officer: three alerts, three open cases; Dudley's two and the EHE notice are not counted.
    coventry = [alert for alert in register_contents() if alert.la_code == COVENTRY
                and alert.recipient is Recipient.CME_OFFICER]
    rules = {alert.rule.value: 1 for alert in coventry}
    assert shown["labels"][0].startswith("Alerts per week by rule. 3 alerts in the last 12 weeks: ")
    assert sorted(shown["bars"]) == sorted([rule, 1] for rule in rules)
    assert sorted(shown["legend"]) == sorted(f"{rule} (1)" for rule in rules)
    assert shown["points"][-1] == 3 and "3 open today" in shown["labels"][1]
    # The screen readers' tables hold the same numbers, week by week.
    assert len(shown["alertRows"]) == len(shown["caseRows"]) == len(shown["points"]) == 12
    for alert_row, case_row, point in zip(shown["alertRows"], shown["caseRows"], shown["points"], strict=True):
        monday = monday_of(alert_row[0])
        in_week = [alert for alert in coventry if monday <= alert.raised_on <= monday + timedelta(days=6)]
        assert int(alert_row[-1]) == len(in_week), alert_row
        opened = [alert for alert in coventry if alert.raised_on <= monday + timedelta(days=6)]
        assert int(case_row[1]) == point == len(opened), case_row
    # Drawn at a readable size; the tables are out of sight.
    for width, height in shown["sizes"]:
        assert width > 400 and height > 150, shown["sizes"]
    assert shown["tableSize"] == [1, 1]
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard-la-331-trends.png"
    shot.unlink(missing_ok=True)
    x, y, width, height = shown["clip"]
    captured = await browser.call("Page.captureScreenshot", format="png",
                                  clip={"x": x, "y": y, "width": width, "height": height, "scale": 1})
    data = base64.b64decode(str(captured["data"]))
    shot.write_bytes(data)
    assert png_size(data) == (round(width), round(height))
    # Two charts of coloured bars, a line and labels; an empty or unstyled section is far smaller.
    assert len(data) > 15_000, len(data)
