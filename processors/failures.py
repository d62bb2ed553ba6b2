"""Why a record is refused: the Rejected error with its code, and how an unforeseen failure is described."""

from __future__ import annotations

import re

#: The code of a record (or one child at a tick) that decoded but could not be validated or applied.
UNPROCESSABLE = "UNPROCESSABLE"

#: The code of a record whose child's state would outgrow its bounds (processors.state.STATE_LIMITS).
STATE_LIMIT = "STATE_LIMIT"


class Rejected(Exception):
    """A record that cannot be applied; it goes to a dead-letter topic (or a replay's count) with a code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_MESSAGE_LIMIT = 500


def describe_error(error: BaseException) -> str:
    """The exception's type and message for a dead letter or a log line. Python's and libraries' messages
    quote the values they choke on, which may be a child's name or date of birth: anything quoted is
    blanked, text that could not be encoded is replaced, and the whole is bounded."""
    message = _QUOTED.sub("'…'", str(error))
    text = f"{type(error).__name__}: {message}" if message else type(error).__name__
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"
