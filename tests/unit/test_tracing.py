"""The worker's record spans, on the SDK's in-memory exporter: where a record was read, its alerts' rules, and
nothing about the child."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from faust.types import TP
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from processors.calendar import default_calendar
from processors.config import RuleConfig
from processors.records import ROLL_EVENTS, Rule
from sinks.alerts import MemoryAlertSink, MemoryDeadLetterSink
from streams.handler import RECORD_TYPES, RecordHandler
from streams.tracing import (
    ALERT_COUNT,
    ALERT_RULES,
    DEAD_LETTER_CODE,
    OFFSET,
    PARTITION,
    SPAN_NAME,
    TOPIC,
    RecordSpans,
    TracedAlerts,
    TracedDeadLetters,
    install_tracing,
    tracer_provider,
    tracing_enabled,
)
from tests.unit.test_record_handler import CODEC, MISSING, memory_timeline
from tests.unit.test_validation import BORN, FORENAME, POSTCODE, SURNAME

#: What a span must never carry: the child's UPN, names, date of birth and postcode.
PERSONAL = (MISSING.upn, FORENAME, SURNAME, BORN.isoformat(), POSTCODE, str(BORN.year))


def traced_handler() -> tuple[RecordSpans, RecordHandler, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = tracer_provider(SimpleSpanProcessor(exporter))
    timeline = memory_timeline(RuleConfig(default_calendar()))
    handler = RecordHandler(
        CODEC, lambda _partition: timeline, TracedAlerts(MemoryAlertSink()),
        TracedDeadLetters(MemoryDeadLetterSink()), RECORD_TYPES,
    )
    return RecordSpans(provider.get_tracer("test")), handler, exporter


def handled(sensor: RecordSpans, handler: RecordHandler, partition: int, offset: int, raw: bytes) -> None:
    """What the agent's stream does around one record: the sensor's in, the handling, the sensor's out."""
    tp = TP(ROLL_EVENTS, partition)
    stream: Any = None
    state = sensor.on_stream_event_in(tp, offset, stream, stream)
    asyncio.run(handler.handle(ROLL_EVENTS, partition, offset, None, raw))
    sensor.on_stream_event_out(tp, offset, stream, stream, state)


def test_a_record_that_raised_an_alert_has_a_span_with_its_rule_and_no_personal_data() -> None:
    sensor, handler, exporter = traced_handler()
    handled(sensor, handler, 3, 41, CODEC.encode(MISSING))
    handled(sensor, handler, 3, 42, b"not avro at all")

    alerted, refused = exporter.get_finished_spans()
    assert alerted.name == SPAN_NAME
    assert dict(alerted.attributes or {}) == {
        "messaging.system": "kafka", TOPIC: ROLL_EVENTS, PARTITION: "3", OFFSET: 41,
        ALERT_RULES: (str(Rule.MISSING_NO_DESTINATION),), ALERT_COUNT: 1,
    }
    assert dict(refused.attributes or {})[DEAD_LETTER_CODE] == "BAD_MARKER"
    assert dict(refused.attributes or {})[ALERT_COUNT] == 0
    for span in (alerted, refused):
        text = repr(dict(span.attributes or {})) + repr(span.events) + span.name
        assert not [value for value in PERSONAL if value in text], text


def test_the_span_is_current_while_the_record_is_handled_and_not_after() -> None:
    from opentelemetry import trace

    sensor, _handler, exporter = traced_handler()
    stream: Any = None
    state = sensor.on_stream_event_in(TP(ROLL_EVENTS, 0), 1, stream, stream)
    inside = trace.get_current_span()
    sensor.on_stream_event_out(TP(ROLL_EVENTS, 0), 1, stream, stream, state)
    [span] = exporter.get_finished_spans()
    assert inside.get_span_context().span_id == span.context.span_id
    assert not trace.get_current_span().get_span_context().is_valid


def test_tracing_is_off_unless_an_endpoint_is_set(monkeypatch: Any) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert not tracing_enabled()
    app = faust.App("tracing-off", broker="kafka://127.0.0.1:1", autodiscover=False)
    before = list(app.sensors)
    assert not install_tracing(app)
    assert list(app.sensors) == before
    assert tracing_enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
