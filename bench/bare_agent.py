"""The baseline: a Faust agent from the app factory that forwards every input record, unchanged, to one topic.

It reads the worker's input topics under the same settings (guarantee, partitions, commit interval) and
sends each record inside the input's transaction through the same outbox as the worker's alerts and state,
so the gap between its throughput and the worker's is what decoding, rules, state and metrics cost. Run by
`bench.pipeline` as `python -m bench.bare_agent` with ROLLWATCH_* settings and BENCH_FORWARD_TOPIC in the environment.
"""

from __future__ import annotations

import os

import faust

from config.settings import Settings
from processors.records import INPUT_TOPICS
from streams.app import create_app

FORWARD_TOPIC_VARIABLE = "BENCH_FORWARD_TOPIC"


def build_bare_agent(settings: Settings, forward_topic: str) -> faust.App:
    app = create_app(settings)
    inputs = app.topic(
        *(settings.topic(name) for name in INPUT_TOPICS),
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.topic_partitions,
    )

    outbox = app.outbox

    @app.agent(inputs, concurrency=1, name="forward-records")
    async def forward_records(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            outbox.stage(forward_topic, event.message.key, event.value)
            await outbox.flush()

    return app


def main() -> None:
    settings = Settings()
    app = build_bare_agent(settings, os.environ[FORWARD_TOPIC_VARIABLE])
    worker = faust.Worker(app, loglevel="info", quiet=True)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
