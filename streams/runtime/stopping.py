"""The Faust worker class that reports the moment its stop begins, however it begins."""

from __future__ import annotations

import logging
from typing import Protocol

import faust

from config.logs import reinstall


class StopStarted(Protocol):
    def start(self, reason: str) -> None: ...


def worker_class(deadline: StopStarted) -> type[faust.Worker]:
    """A faust.Worker that starts `deadline` as soon as it begins to stop: on SIGTERM, SIGINT or a crash."""

    class RollwatchWorker(faust.Worker):
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            reinstall(logger)  # Faust has just replaced the root handlers: keep ROLLWATCH_LOG_FORMAT's

        def _on_sigterm(self) -> None:
            deadline.start("SIGTERM")
            super()._on_sigterm()

        def _on_sigint(self) -> None:
            deadline.start("SIGINT")
            super()._on_sigint()

        def on_worker_shutdown(self) -> None:
            deadline.start("the worker beginning to stop")
            super().on_worker_shutdown()

    return RollwatchWorker
