"""Logging for every command: text lines, or one JSON object a line (ROLLWATCH_LOG_FORMAT=json), on stderr.

The root logger carries the one handler, so Rollwatch's own lines, Faust's, mode's and the Kafka clients' all
come out in the same format. In JSON mode what a command prints to stderr itself (its summary, a failure
line) becomes a JSON line of the logger `rollwatch.stderr` too, and an uncaught exception one ERROR line.
A Faust worker replaces the root logger's handlers when it starts; it calls `reinstall` once it has, so its
lines keep the chosen format.
"""

from __future__ import annotations

import io
import logging
import re
import sys
import threading
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

from pythonjsonlogger.json import JsonFormatter

if TYPE_CHECKING:
    from config.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Fields every JSON line has, in this order; extra fields a line was logged with follow them.
JSON_FIELDS = ("time", "level", "logger", "message")

_installed: logging.Handler | None = None


class JsonLineFormatter(JsonFormatter):
    """One JSON object a record: time (ISO-8601, UTC), level, logger, message, then the record's extras
    (topic, partition, offset, error_code where a line carries them) and exc_info for a traceback."""

    def __init__(self) -> None:
        super().__init__("%(message)s", json_ensure_ascii=False)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["time"] = datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        super().add_fields(log_data, record, message_dict)


class StderrLines(io.TextIOBase):
    """Stands in for sys.stderr in JSON mode: each line written becomes an INFO record of `logger`, which the
    JSON handler writes to the real stream. A carriage return ends a line too (progress bars)."""

    def __init__(self, stream: TextIO, logger: logging.Logger) -> None:
        super().__init__()
        self.stream = stream
        self.logger = logger
        self._pending = ""
        self._local = threading.local()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if getattr(self._local, "busy", False):  # logging reporting its own failure: no loop
            return self.stream.write(text)
        self._local.busy = True
        try:
            *lines, self._pending = re.split(r"[\r\n]", self._pending + text)
            for line in lines:
                if line.strip():
                    self.logger.info("%s", line)
        finally:
            self._local.busy = False
        return len(text)

    def flush(self) -> None:
        if self._pending.strip():
            line, self._pending = self._pending, ""
            self.write(line + "\n")
        self.stream.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.stream.fileno()


def _log_uncaught(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, trace)
        return
    logging.getLogger("rollwatch").error("uncaught exception", exc_info=(kind, error, trace))


def setup_logging(settings: Settings) -> None:
    """Configures the root logger for a command, from ROLLWATCH_LOG_LEVEL and ROLLWATCH_LOG_FORMAT."""
    global _installed
    if settings.log_format == "json":
        stream = sys.stderr.stream if isinstance(sys.stderr, StderrLines) else sys.stderr
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonLineFormatter())
        logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)
        _installed = handler
        stderr_logger = logging.getLogger("rollwatch.stderr")
        stderr_logger.setLevel(logging.INFO)  # a command's own summary shows whatever ROLLWATCH_LOG_LEVEL says
        sys.stderr = StderrLines(stream, stderr_logger)
        sys.excepthook = _log_uncaught
    else:
        logging.basicConfig(level=settings.log_level, format=TEXT_FORMAT, stream=sys.stderr)
        _installed = None
    if settings.log_level != "DEBUG":
        # kafka-python narrates every connection and partition at INFO; Rollwatch's own lines are enough.
        logging.getLogger("kafka").setLevel(logging.WARNING)


def reinstall(root: logging.Logger) -> None:
    """Puts the JSON handler back on `root` after a library (Faust's worker) replaced its handlers; in text
    mode the library's own lines are left as it configured them."""
    if _installed is not None:
        root.handlers[:] = [_installed]
