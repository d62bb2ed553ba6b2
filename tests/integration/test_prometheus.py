"""A real Prometheus scrapes a real worker fed shared scenarios and bad bytes; the values it stores must agree
with the in-process replay of the same records: consumed = applied + dead-lettered, alerts per rule, open
cases, pending deadlines, business date, no lag, and the dead-letter alerting rule firing."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from cli.commands.register import serve_delivery_metrics
from config.settings import Settings
from processors.calendar import default_calendar
from processors.config import RuleConfig
from processors.records import CLOCK_TICKS, ROLL_EVENTS, Alert
from processors.timeline import MemoryChildStore, memory_timeline
from replay.run import replay
from sinks.metrics import date_as_unix_time
from sinks.register import MemoryDeliveryLog
from sinks.webhook import WebhookDispatcher
from streams.topics import ensure_worker_topics
from tests.integration import test_webhook
from tests.integration.test_health import free_port, get_json, wait_until
from tests.integration.test_webhook import FAST, Receiver, always, failing_first
from tests.integration.test_webhook import alert as webhook_alert
from tests.integration.workers import ROOT, WorkerProcess, worker_env
from tests.shared import SHARED_SCENARIOS

pytestmark = pytest.mark.integration
#: The webhook tests' HTTP receiver fixture, reused for the deliverer's metrics.
receiver = test_webhook.receiver

SHARED = SHARED_SCENARIOS
SCENARIOS = ("p01_missing_no_destination", "p02_child_protection_missing", "p04_transition_not_completed")
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
PARTITIONS = 2
GARBAGE = (b"not avro at all", b"{\"json\": \"is not avro either\"}")


@dataclass
class Expected:
    consumed: dict[str, int]
    alerts_by_rule: Counter[str]
    open_cases: int
    pending_deadlines: int
    business_date: date


class PrometheusServer:
    """Debian's prometheus binary on a free port with its own config and data directory."""

    def __init__(self, workdir: Path, target_port: int) -> None:
        self.port = free_port()
        self.workdir = workdir
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": "rollwatch-worker", "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}
            ],
        }
        # JSON is YAML, so the config needs no YAML writer.
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(json.dumps(config))
        self.log_path = workdir / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PrometheusServer:
        binary = shutil.which("prometheus")
        assert binary, "the prometheus binary is missing: apt-get install prometheus"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    binary, f"--config.file={self.config_path}", f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log, stderr=subprocess.STDOUT,
            )
        return self

    def query(self, expression: str) -> list[dict[str, object]]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.loads(response.read())
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    def value(self, expression: str) -> float | None:
        """The single value of an expression that yields at most one series."""
        result = self.query(expression)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None  # type: ignore[index]

    def answering(self) -> bool:
        try:
            self.query("up")
        except OSError:
            return False
        return True

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


def expected_outcome(lines: list[str], settings: Settings) -> Expected:
    alerts: list[Alert] = []
    timeline = memory_timeline(RuleConfig(default_calendar()))
    replay(lines, timeline, alerts.append)
    consumed: Counter[str] = Counter()
    ticks = []
    for line in lines:
        item = json.loads(line)
        # A clock tick goes to every partition, so each partition takes its own copy.
        consumed[settings.topic(item["topic"])] += PARTITIONS if item["topic"] == CLOCK_TICKS else 1
        if item["topic"] == CLOCK_TICKS:
            ticks.append(date.fromisoformat(item["value"]["today"]))
    consumed[settings.topic(ROLL_EVENTS)] += len(GARBAGE)
    assert isinstance(timeline.children, MemoryChildStore)
    states = list(timeline.children)
    return Expected(
        dict(consumed),
        Counter(str(alert.rule) for alert in alerts),
        sum(len(state.case.holders) for state in states if state.case is not None),
        sum(len(state.deadlines) for state in states),
        max(ticks),
    )


@pytest.fixture
def scraped_worker(
    kafka_bootstrap: str, tmp_path: Path, unique_name: Callable[[str], str]
) -> Iterator[tuple[PrometheusServer, WorkerProcess, Expected, Settings]]:
    app_id = unique_name("prom")
    web_port = free_port()
    settings = Settings(
        bootstrap_servers=kafka_bootstrap, topic_prefix=f"{app_id}.", app_id=app_id, topic_partitions=PARTITIONS,
        data_dir=tmp_path / "worker", web_enabled=True, web_port=web_port, broker_commit_interval=0.2,
        broker_session_timeout=10, broker_rebalance_timeout=10, log_level="WARNING",
    )
    lines = [line for name in SCENARIOS for line in (SHARED / f"{name}.jsonl").read_text().splitlines() if line]
    scenario_file = tmp_path / "scenarios.jsonl"
    scenario_file.write_text("\n".join(lines) + "\n")
    ensure_worker_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    prometheus = PrometheusServer(tmp_path, web_port).start()
    try:
        wait_until(lambda: get_json(web_port, "/ready")[0] == 200, 120, "the worker to be ready", worker)
        published = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "rollwatch"), "publish", "--ordered", "--quiet", str(scenario_file)],
            cwd=ROOT, env=worker_env(settings), capture_output=True, timeout=240, check=False,
        )
        assert published.returncode == 0, published.stderr.decode() + worker.log()
        producer = KafkaProducer(bootstrap_servers=settings.bootstrap_list, acks="all")
        for raw in GARBAGE:
            producer.send(settings.topic(ROLL_EVENTS), key=b"garbage", value=raw)
        producer.close()
        yield prometheus, worker, expected_outcome(lines, settings), settings
    finally:
        prometheus.stop()
        worker.stop()


def test_prometheus_scrapes_what_the_worker_did(
    scraped_worker: tuple[PrometheusServer, WorkerProcess, Expected, Settings],
) -> None:
    prometheus, worker, expected, settings = scraped_worker
    total = sum(expected.consumed.values())

    def caught_up() -> bool:
        if not prometheus.answering():
            return False
        consumed = prometheus.value("sum(rollwatch_records_consumed_total)")
        lag = prometheus.value("sum(rollwatch_consumer_lag)")
        return consumed == total and lag == 0

    wait_until(caught_up, 120, f"Prometheus to see {total} records consumed and no lag", worker)

    consumed = {str(r["metric"]["topic"]): float(r["value"][1])  # type: ignore[index]
                for r in prometheus.query("sum by (topic) (rollwatch_records_consumed_total)")}
    assert consumed == expected.consumed
    applied = prometheus.value("sum(rollwatch_records_applied_total)")
    dead = prometheus.value("sum(rollwatch_records_dead_lettered_total)")
    assert applied == total - len(GARBAGE)
    assert dead == len(GARBAGE)
    assert prometheus.value(
        f'rollwatch_records_dead_lettered_total{{topic="{settings.topic(ROLL_EVENTS)}",error_code="BAD_MARKER"}}'
    ) == len(GARBAGE)
    assert prometheus.value(
        "sum(rollwatch_records_consumed_total) - sum(rollwatch_records_applied_total)"
        " - sum(rollwatch_records_dead_lettered_total)"
    ) == 0

    alerts_by_rule = {str(r["metric"]["rule"]): int(float(r["value"][1]))  # type: ignore[index]
                      for r in prometheus.query("sum by (rule) (rollwatch_alerts_total)")}
    assert alerts_by_rule == dict(expected.alerts_by_rule)
    assert sum(alerts_by_rule.values()) > 0
    latencies = prometheus.value("sum(rollwatch_event_to_alert_seconds_count)")
    assert latencies == sum(expected.alerts_by_rule.values())

    assert prometheus.value("sum(rollwatch_open_cases)") == expected.open_cases
    assert expected.open_cases > 0
    assert prometheus.value("sum(rollwatch_pending_deadlines)") == expected.pending_deadlines
    assert prometheus.value("max(rollwatch_business_date_seconds)") == date_as_unix_time(expected.business_date)
    assert prometheus.value("count(rollwatch_business_date_seconds)") == PARTITIONS
    assert prometheus.value("rollwatch_worker_ready") == 1

    # The shipped rules are loaded; the dead letters above must set off their alert.
    def dead_letter_alert_firing() -> bool:
        return bool(prometheus.query('ALERTS{alertname="RollwatchDeadLetters",alertstate="firing"}'))

    deadline = time.monotonic() + 30
    while not dead_letter_alert_firing():
        assert time.monotonic() < deadline, "RollwatchDeadLetters never fired\n" + prometheus.log()
        time.sleep(1)
    [firing] = prometheus.query('ALERTS{alertname="RollwatchDeadLetters",alertstate="firing"}')
    assert firing["metric"]["error_code"] == "BAD_MARKER"  # type: ignore[index]


async def test_register_deliver_serves_delivery_outcomes(receiver: Receiver) -> None:
    """The deliverer's own metrics endpoint counts what a real HTTP receiver made of each alert."""
    settings = Settings(deliver_metrics_port=free_port(), web_host="127.0.0.1")
    recorder, stop = serve_delivery_metrics(settings)
    assert recorder is not None
    try:
        receiver.behaviours["331"] = failing_first(1, 503)
        receiver.behaviours["332"] = always(400)
        alerts = [webhook_alert(1, "330"), webhook_alert(2, "330"), webhook_alert(3, "331"), webhook_alert(4, "332")]
        endpoints = {la: receiver.endpoint(la) for la in ("330", "331", "332")}
        await WebhookDispatcher(MemoryDeliveryLog(alerts), endpoints, FAST, recorder=recorder).run(once=True)

        url = f"http://127.0.0.1:{settings.deliver_metrics_port}/metrics"
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read().decode())
    finally:
        stop()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text) for sample in family.samples
        if sample.name.startswith("rollwatch_") and not sample.name.endswith("_created")
    }
    webhook = ("channel", "webhook")
    assert samples == {
        ("rollwatch_deliveries_total", (webhook, ("la_code", "330"), ("outcome", "delivered"))): 2,
        ("rollwatch_deliveries_total", (webhook, ("la_code", "331"), ("outcome", "delivered"))): 1,
        ("rollwatch_deliveries_total", (webhook, ("la_code", "332"), ("outcome", "dead_lettered"))): 1,
        ("rollwatch_delivery_failed_attempts_total", (webhook, ("la_code", "331"))): 1,
        # The register's deliverer also says when it last delivered and what its LAs' workers hold pending.
        ("rollwatch_register_deliver_last_success_seconds", ()): samples[
            ("rollwatch_register_deliver_last_success_seconds", ())
        ],
        ("rollwatch_register_pending_deliveries", (("la_code", "330"),)): 0,
        ("rollwatch_register_pending_deliveries", (("la_code", "331"),)): 0,
        ("rollwatch_register_pending_deliveries", (("la_code", "332"),)): 0,
    }
    assert samples[("rollwatch_register_deliver_last_success_seconds", ())] > 1_700_000_000
