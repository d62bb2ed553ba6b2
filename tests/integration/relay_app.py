"""A minimal worker built from the app factory: one agent relays records from one topic to another."""

from __future__ import annotations

import os

import faust

from config.settings import Settings
from streams.app import create_app


def build(settings: Settings, source: str, target: str) -> faust.App:
    app = create_app(settings)
    source_topic = app.topic(source)
    target_topic = app.topic(target)

    @app.agent(source_topic, concurrency=1)
    async def relay(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            await target_topic.send(key=event.key, value=event.value)

    return app


if __name__ == "__main__":
    build(Settings(), os.environ["RELAY_SOURCE"], os.environ["RELAY_TARGET"]).main()
