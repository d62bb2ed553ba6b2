"""The one apply path replay and the worker share: validate a record, then apply it to a timeline."""

from __future__ import annotations

from processors.failures import UNPROCESSABLE, Rejected, describe_error
from processors.records import Alert, InputRecord
from processors.timeline import Applied, Timeline
from processors.validation import validate


def check(record: InputRecord) -> None:
    """Raises Rejected with every validation problem when the record breaks a contract rule."""
    try:
        problems = validate(record)
    except Exception as error:
        # A value no check foresaw must not stop the stream: the record is refused, with what went wrong.
        raise Rejected(UNPROCESSABLE, f"the record could not be validated ({describe_error(error)})") from error
    if problems:
        raise Rejected(problems[0].code, "; ".join(f"{p.code}: {p.message}" for p in problems))


def apply_checked(timeline: Timeline, record: InputRecord) -> tuple[Alert, ...]:
    """Validates and applies one record; a record the rules cannot apply is rejected, not lost."""
    return apply_record(timeline, record).alerts


def apply_record(timeline: Timeline, record: InputRecord) -> Applied:
    """apply_checked with everything the timeline reports (changes to cases and deadlines as well)."""
    check(record)
    try:
        return timeline.apply(record)
    except Rejected:
        raise
    except (OSError, TimeoutError):
        raise  # the store's disk or a network, not the record: the caller stops rather than blame the record
    except Exception as error:
        # Whatever the rules or the child's stored state make of a record, it is refused on its own (the
        # timeline writes nothing until a record's outcome is complete) and the stream goes on; a dead
        # letter can be republished once the cause is fixed.
        raise Rejected(UNPROCESSABLE, f"the record could not be applied ({describe_error(error)})") from error
