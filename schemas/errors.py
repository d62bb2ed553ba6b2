"""The one exception type the codecs raise, with its stable error codes."""

from __future__ import annotations

from enum import StrEnum


class CodecErrorCode(StrEnum):
    """Stable reasons a record could not be decoded or encoded; dead letters carry them as `error_code`."""

    BAD_MARKER = "BAD_MARKER"
    UNKNOWN_SCHEMA = "UNKNOWN_SCHEMA"
    BAD_BODY = "BAD_BODY"
    INCOMPATIBLE_SCHEMA = "INCOMPATIBLE_SCHEMA"
    WRONG_RECORD_TYPE = "WRONG_RECORD_TYPE"
    BAD_JSON = "BAD_JSON"
    UNKNOWN_TOPIC = "UNKNOWN_TOPIC"
    MISSING_FIELD = "MISSING_FIELD"
    BAD_FIELD = "BAD_FIELD"


class CodecError(ValueError):
    """A record that cannot be turned into (or out of) a domain object.

    `code` is stable and machine-readable; `message` says what is wrong and what to do, and never contains
    personal data (names, dates of birth, postcodes), so both are safe to log and to put on a dead letter.
    """

    def __init__(self, code: CodecErrorCode, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"
