"""OpenTelemetry traces of the worker: a span per input record, with its topic, partition, offset and alerts' rules."""

from __future__ import annotations

import atexit
import contextvars
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.types import TP, EventT, StreamT
from opentelemetry import context, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from processors.records import Alert, DeadLetter
from sinks.alerts import AlertSink, DeadLetterSink

log = logging.getLogger(__name__)

#: Traces go out only when this is set (the OpenTelemetry SDK's own variable for the collector's address).
ENDPOINT_VARIABLE = "OTEL_EXPORTER_OTLP_ENDPOINT"
TRACER_NAME = "rollwatch.worker"
SPAN_NAME = "rollwatch.record"
#: Span attributes. A record's span never carries what it says about a child (its UPN, name, date of birth,
#: address or school): only where it was read, what the worker made of it, and the rules of its alerts.
TOPIC, PARTITION, OFFSET = "messaging.destination.name", "messaging.destination.partition.id", "messaging.kafka.offset"
ALERT_RULES, ALERT_COUNT = "rollwatch.alert.rules", "rollwatch.alert.count"
DEAD_LETTER_CODE = "rollwatch.dead_letter.error_code"


@dataclass
class RecordOutcome:
    """What the record in hand produced so far: its alerts' rules, in order, and a dead letter's code."""

    rules: list[str] = field(default_factory=list)
    error_code: str | None = None


#: The outcome of the record the agent is handling: set as its span starts, in the agent's own task.
_current: contextvars.ContextVar[RecordOutcome | None] = contextvars.ContextVar("rollwatch_record", default=None)


class RecordSpans(faust.Sensor):
    """A Faust sensor that opens a span as the agent takes each input record and ends it once the agent asks
    for the next one, the record handled. The span is the current one meanwhile, so whatever the handling
    sends or logs under OpenTelemetry belongs to it."""

    def __init__(self, tracer: trace.Tracer, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tracer = tracer

    def on_stream_event_in(self, tp: TP, offset: int, stream: StreamT, event: EventT) -> dict[str, Any] | None:
        span = self.tracer.start_span(
            SPAN_NAME,
            kind=trace.SpanKind.CONSUMER,
            attributes={"messaging.system": "kafka", TOPIC: tp.topic, PARTITION: str(tp.partition), OFFSET: offset},
        )
        outcome = RecordOutcome()
        return {
            "span": span,
            "context": context.attach(trace.set_span_in_context(span)),
            "outcome": _current.set(outcome),
            "record": outcome,
        }

    def on_stream_event_out(
        self, tp: TP, offset: int, stream: StreamT, event: EventT, state: dict[str, Any] | None = None
    ) -> None:
        if not state:
            return
        span: trace.Span = state["span"]
        outcome: RecordOutcome = state["record"]
        if outcome.rules:
            span.set_attribute(ALERT_RULES, outcome.rules)
        span.set_attribute(ALERT_COUNT, len(outcome.rules))
        if outcome.error_code is not None:
            span.set_attribute(DEAD_LETTER_CODE, outcome.error_code)
        span.end()
        try:
            _current.reset(state["outcome"])
            context.detach(state["context"])
        except ValueError:
            pass  # ended in another context than it began (a stream stopped mid-record): nothing to restore


class TracedAlerts:
    """An alert sink that notes each alert's rule on the record's span, then hands the alert on."""

    def __init__(self, inner: AlertSink) -> None:
        self.inner = inner

    async def send(self, alert: Alert) -> None:
        outcome = _current.get()
        if outcome is not None:
            outcome.rules.append(str(alert.rule))
        await self.inner.send(alert)


class TracedDeadLetters:
    """A dead-letter sink that notes the letter's error code on the record's span, then hands it on."""

    def __init__(self, inner: DeadLetterSink) -> None:
        self.inner = inner

    async def send(self, letter: DeadLetter, key: bytes | None) -> None:
        outcome = _current.get()
        if outcome is not None:
            outcome.error_code = str(letter.error_code)
        await self.inner.send(letter, key)


def tracing_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    return bool(environ.get(ENDPOINT_VARIABLE, "").strip())


def tracer_provider(processor: SpanProcessor, service_name: str = "rollwatch-worker") -> TracerProvider:
    """A provider that hands finished spans to `processor`, as service `service_name` unless OTEL_SERVICE_NAME
    or OTEL_RESOURCE_ATTRIBUTES name it."""
    named = "OTEL_SERVICE_NAME" in os.environ or "service.name=" in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    provider = TracerProvider(resource=Resource.create({} if named else {"service.name": service_name}))
    provider.add_span_processor(processor)
    return provider


def install_tracing(app: faust.App, provider: TracerProvider | None = None) -> bool:
    """Adds the record sensor to `app` with `provider`, or, with none given, with one exporting over OTLP/HTTP
    to OTEL_EXPORTER_OTLP_ENDPOINT (batched; flushed as the process exits) when that is set. Returns whether
    records are traced."""
    if provider is None:
        if not tracing_enabled():
            return False
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider = tracer_provider(BatchSpanProcessor(OTLPSpanExporter()))
        atexit.register(provider.shutdown)
        log.info("tracing input records over OTLP/HTTP to %s", ENDPOINT_VARIABLE)
    app.sensors.add(RecordSpans(provider.get_tracer(TRACER_NAME)))
    return True
