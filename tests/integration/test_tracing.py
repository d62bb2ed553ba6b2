"""A worker on the real broker traces a roll event to its alert over OTLP/HTTP when an endpoint is set: one span
for the record with the alert's rule, and no personal data in any span."""

from __future__ import annotations

import gzip
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from config.settings import Settings
from processors.records import ROLL_EVENTS, Rule
from streams.topics import ensure_worker_topics
from streams.tracing import ALERT_RULES, OFFSET, PARTITION, SPAN_NAME, TOPIC
from tests.integration.workers import ROOT, WorkerProcess, worker_env
from tests.shared import SHARED_SCENARIOS

pytestmark = pytest.mark.integration

SCENARIO = SHARED_SCENARIOS / "p01_missing_no_destination.jsonl"


class Collector:
    """An OTLP/HTTP trace receiver on a free local port: keeps every span it is sent, attributes decoded."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        collector = self

        class Receive(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                with collector.lock:
                    for resource in request.resource_spans:
                        for scope in resource.scope_spans:
                            collector.spans.extend(decoded(span) for span in scope.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Receive)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def received(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.spans)


def decoded(span: Any) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for attribute in span.attributes:
        value = attribute.value
        kind = value.WhichOneof("value")
        if kind == "array_value":
            attributes[attribute.key] = [getattr(v, v.WhichOneof("value")) for v in value.array_value.values]
        else:
            attributes[attribute.key] = getattr(value, kind)
    return {"name": span.name, "attributes": attributes, "events": [event.name for event in span.events]}


@pytest.fixture
def collector() -> Iterator[Collector]:
    receiver = Collector()
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()


def personal_values(lines: list[dict[str, Any]]) -> set[str]:
    """The UPNs, names, dates of birth and postcodes the scenario's records carry."""
    found: set[str] = set()
    for line in lines:
        value = line["value"]
        if "upn" in value:
            found.add(value["upn"])
        child = value.get("child") or {}
        found.update(str(child[key]) for key in ("forename", "surname", "date_of_birth", "postcode") if child.get(key))
    return found


def test_a_roll_event_that_raised_an_alert_is_traced_with_its_rule_and_no_personal_data(
    kafka_bootstrap: str, tmp_path: Path, unique_name: Callable[[str], str], collector: Collector
) -> None:
    app_id = unique_name("trace")
    settings = Settings(
        bootstrap_servers=kafka_bootstrap, topic_prefix=f"{app_id}.", app_id=app_id, topic_partitions=2,
        data_dir=tmp_path / "worker", web_enabled=False, broker_commit_interval=0.1, broker_session_timeout=10,
        broker_rebalance_timeout=10, log_level="INFO",
    )
    lines = [json.loads(line) for line in SCENARIO.read_text().splitlines() if line]
    personal = personal_values(lines)
    assert personal
    ensure_worker_topics(settings)
    tracing = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    worker = WorkerProcess(settings, tmp_path / "worker.log", tracing).start()
    try:
        published = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "rollwatch"), "publish", "--ordered", "--quiet", str(SCENARIO)],
            cwd=ROOT, env=worker_env(settings), capture_output=True, timeout=240, check=False,
        )
        assert published.returncode == 0, published.stderr.decode() + worker.log()
        roll_events = settings.topic(ROLL_EVENTS)

        def alerted() -> list[dict[str, Any]]:
            return [
                span for span in collector.received()
                if span["name"] == SPAN_NAME and span["attributes"].get(TOPIC) == roll_events
                and span["attributes"].get(ALERT_RULES)
            ]

        deadline = time.monotonic() + 60
        while not alerted():
            assert worker.alive(), worker.log()
            assert time.monotonic() < deadline, f"no span with an alert: {collector.received()}\n{worker.log()}"
            time.sleep(0.2)
    finally:
        worker.stop()
    [span] = alerted()
    assert span["attributes"][ALERT_RULES] == [str(Rule.MISSING_NO_DESTINATION)]
    assert span["attributes"][PARTITION] in {"0", "1"}
    assert span["attributes"][OFFSET] == 0
    # The clock tick is traced too, once on each partition, with no alert of its own.
    ticks = [s for s in collector.received() if s["attributes"].get(TOPIC) == settings.topic("clock.ticks")]
    assert len(ticks) == 2
    text = json.dumps(collector.received())
    assert not [value for value in personal if value in text], text
