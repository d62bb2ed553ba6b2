"""Record validation: every rule an input record must pass before it is applied, each with a stable code."""

from __future__ import annotations

import re
from datetime import date, timedelta

from processors.identifiers import (
    Problem,
    ProblemCode,
    is_current_la,
    is_la_code_format,
    is_laestab,
    is_urn,
    upn_problems,
)
from processors.records import (
    AttendanceMark,
    AttendanceRegister,
    CaseAction,
    CaseActionType,
    ClockTick,
    CMEReferral,
    Destination,
    DestinationKind,
    EHENotification,
    EventType,
    InputRecord,
    RollEvent,
    SafeguardingStatus,
)

__all__ = ["Problem", "ProblemCode", "is_valid", "validate"]

#: Every date a record carries (dates of birth included) lies from this day to LATEST_PLAUSIBLE: the range the
#: school-day calendar answers for. Earlier is a mis-keyed date; a tick later would jam the business date.
EARLIEST_PLAUSIBLE = date(1990, 1, 1)
LATEST_PLAUSIBLE = date(2100, 12, 31)
#: Longest text each field may hold, in characters: what a sensible MIS or LA system sends, with room to
#: spare. Nothing longer reaches a child's state or an alert (whose reason quotes the school's name).
MAX_TEXT = {
    "child.forename": 100,
    "child.surname": 100,
    "child.postcode": 10,
    "school.name": 200,
    "source_system": 100,
    "social_worker.name": 200,
    "social_worker.email": 254,
    "reason": 2000,
    "by": 200,
    "assignee": 200,
    "enquiry.outcome": 500,
    "details": 2000,
    "referrer.name": 200,
    "referrer.contact": 254,
}
#: Fields an officer or a referrer writes as prose, which may run over several lines.
PROSE = frozenset({"reason", "details"})
# Control characters have no place in a name, and an unpaired surrogate cannot be written as UTF-8 at all.
_NOT_TEXT = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
# Prose keeps its line breaks and tabs; other control characters are still not text.
_NOT_PROSE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
#: A roll change may be recorded ahead of its date (a September start entered in July), but not by years.
MAX_EFFECTIVE_AHEAD = timedelta(days=366)
#: Late recording of an old change happens (backlogs, corrections), within limits.
MAX_EFFECTIVE_BEHIND = timedelta(days=731)
#: Youngest and oldest plausible ages, in whole years on the effective date (nursery to age-25 EHCP).
MIN_AGE = 2
MAX_AGE = 25

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def validate(record: InputRecord) -> list[Problem]:
    """Every problem with an input record (empty when it is valid); judged on its own dates, never today's."""
    if isinstance(record, RollEvent):
        return _roll_event_problems(record)
    if isinstance(record, EHENotification):
        return _ehe_notification_problems(record)
    if isinstance(record, SafeguardingStatus):
        return _status_problems(record)
    if isinstance(record, ClockTick):
        return _date_range_problems(record.today, "today")
    if isinstance(record, CaseAction):
        return _case_action_problems(record)
    if isinstance(record, AttendanceRegister):
        return _register_problems(record)
    if isinstance(record, CMEReferral):
        return _referral_problems(record)
    raise TypeError(f"not an input record: {type(record).__name__}")


def is_valid(record: InputRecord) -> bool:
    return not validate(record)


def _uuid_problems(value: str, field: str) -> list[Problem]:
    if _UUID.fullmatch(value):
        return []
    return [
        Problem(
            ProblemCode.EVENT_ID_FORMAT,
            f"{field} must be a UUID written as 8-4-4-4-12 hexadecimal digits; generate one per change and "
            "reuse it when resending the same change",
            field,
        )
    ]


def _urn_problems(value: str, field: str) -> list[Problem]:
    if is_urn(value):
        return []
    return [
        Problem(
            ProblemCode.URN_FORMAT,
            f"{field} must be the school's 6-digit URN from Get Information About Schools",
            field,
        )
    ]


def _laestab_problems(value: str, field: str) -> list[Problem]:
    if not is_laestab(value):
        return [
            Problem(
                ProblemCode.LAESTAB_FORMAT,
                f"{field} must be 7 digits: the 3-digit LA code then the 4-digit establishment number",
                field,
            )
        ]
    if not is_current_la(value[:3]):
        return [
            Problem(
                ProblemCode.SCHOOL_LA_UNKNOWN,
                f"{field} starts with {value[:3]}, which is not a current English LA code; use the school's "
                "current LAESTAB from Get Information About Schools",
                field,
            )
        ]
    return []


def _la_code_problems(value: str, field: str) -> list[Problem]:
    if is_la_code_format(value) and is_current_la(value):
        return []
    return [
        Problem(
            ProblemCode.LA_CODE_UNKNOWN,
            f"{field} must be the 3-digit code of a current English LA (for example 330 for Birmingham)",
            field,
        )
    ]


def _date_range_problems(day: date, field: str, *, quote: bool = True) -> list[Problem]:
    """A date outside EARLIEST_PLAUSIBLE-LATEST_PLAUSIBLE; `quote` False for personal dates (birth)."""
    if EARLIEST_PLAUSIBLE <= day <= LATEST_PLAUSIBLE:
        return []
    shown = f"{field} {day.isoformat()}" if quote else field
    return [
        Problem(
            ProblemCode.DATE_IMPLAUSIBLE,
            f"{shown} is outside {EARLIEST_PLAUSIBLE.isoformat()} to {LATEST_PLAUSIBLE.isoformat()}; "
            "check the date and resend",
            field,
        )
    ]


def _text_problems(value: str, field: str) -> list[Problem]:
    """A text field longer than MAX_TEXT allows, or holding what is not text; the value is never quoted."""
    limit = MAX_TEXT[field]
    if len(value) > limit:
        return [
            Problem(
                ProblemCode.TEXT_TOO_LONG,
                f"{field} has {len(value):,} characters, more than the {limit:,} allowed; shorten it and resend",
                field,
            )
        ]
    if (_NOT_PROSE if field in PROSE else _NOT_TEXT).search(value):
        return [
            Problem(
                ProblemCode.TEXT_INVALID,
                f"{field} holds control characters or unpaired surrogates, which are not text; fix the "
                "sending system's encoding and resend",
                field,
            )
        ]
    return []


def _texts_problems(*fields: tuple[str | None, str]) -> list[Problem]:
    problems: list[Problem] = []
    for value, field in fields:
        if value is not None:
            problems += _text_problems(value, field)
    return problems


def _age_on(born: date, day: date) -> int:
    had_birthday = (day.month, day.day) >= (born.month, born.day)
    return day.year - born.year - (0 if had_birthday else 1)


def _roll_event_problems(event: RollEvent) -> list[Problem]:
    problems = _uuid_problems(event.event_id, "event_id")
    problems += upn_problems(event.upn, "upn")
    problems += _urn_problems(event.school.urn, "school.urn")
    problems += _laestab_problems(event.school.laestab, "school.laestab")
    problems += _roll_dates_problems(event)
    problems += _texts_problems(
        (event.child.forename, "child.forename"),
        (event.child.surname, "child.surname"),
        (event.child.postcode, "child.postcode"),
        (event.school.name, "school.name"),
        (event.source_system, "source_system"),
    )
    if event.event_type is EventType.ADDED:
        if event.ground is not None:
            problems.append(
                Problem(
                    ProblemCode.GROUND_ON_ADDED,
                    "an ADDED event has no ground for deletion; drop the ground, or send REMOVED if the "
                    "pupil left",
                    "ground",
                )
            )
        if event.destination is not None:
            problems.append(
                Problem(
                    ProblemCode.DESTINATION_ON_ADDED,
                    "an ADDED event has no destination; drop it, or send REMOVED if the pupil left",
                    "destination",
                )
            )
    else:
        if event.ground is None:
            problems.append(
                Problem(
                    ProblemCode.GROUND_MISSING,
                    "a REMOVED event needs the ground for deletion under reg 9(1) of the 2024 regulations "
                    "(A_REGISTERED_ELSEWHERE ... O_PERMANENTLY_EXCLUDED); add it and resend",
                    "ground",
                )
            )
        if event.destination is not None:
            problems += _destination_problems(event.destination, event.school.laestab[:3])
    return problems


def _roll_dates_problems(event: RollEvent) -> list[Problem]:
    problems = _date_range_problems(event.effective_date, "effective_date")
    recorded_on = event.recorded_at.date()
    problems += _date_range_problems(recorded_on, "recorded_at")
    problems += _date_range_problems(event.child.date_of_birth, "child.date_of_birth", quote=False)
    if problems:
        # The checks below compare dates by adding years, which past the range would overflow.
        return problems
    if event.effective_date > recorded_on + MAX_EFFECTIVE_AHEAD:
        problems.append(
            Problem(
                ProblemCode.DATE_IMPLAUSIBLE,
                f"effective_date {event.effective_date.isoformat()} is more than a year after recorded_at "
                f"{recorded_on.isoformat()}; send the change nearer its date",
                "effective_date",
            )
        )
    elif event.effective_date < recorded_on - MAX_EFFECTIVE_BEHIND:
        problems.append(
            Problem(
                ProblemCode.DATE_IMPLAUSIBLE,
                f"effective_date {event.effective_date.isoformat()} is more than two years before "
                f"recorded_at {recorded_on.isoformat()}; check the date, and report changes that old to "
                "the LA directly",
                "effective_date",
            )
        )
    if not MIN_AGE <= _age_on(event.child.date_of_birth, event.effective_date) <= MAX_AGE:
        # The message must not echo the date of birth: it is personal data and ends up in logs.
        problems.append(
            Problem(
                ProblemCode.DATE_IMPLAUSIBLE,
                f"child.date_of_birth gives an age outside {MIN_AGE}-{MAX_AGE} on the effective date; "
                "check the date of birth in the MIS and resend",
                "child.date_of_birth",
            )
        )
    return problems


def _destination_problems(destination: Destination, school_la: str) -> list[Problem]:
    problems: list[Problem] = []
    if destination.school_urn is not None:
        problems += _urn_problems(destination.school_urn, "destination.school_urn")
    if destination.school_laestab is not None:
        problems += _laestab_problems(destination.school_laestab, "destination.school_laestab")
    if destination.la_code is not None:
        problems += _la_code_problems(destination.la_code, "destination.la_code")

    names_school = destination.school_urn is not None or destination.school_laestab is not None
    kind = destination.kind
    if kind is DestinationKind.SCHOOL:
        if not names_school:
            problems.append(
                _inconsistent("a SCHOOL destination names the school: give school_urn or school_laestab")
            )
        if (
            destination.la_code is not None
            and destination.school_laestab is not None
            and destination.school_laestab[:3] != destination.la_code
        ):
            problems.append(
                _inconsistent(
                    "destination la_code disagrees with the first 3 digits of destination school_laestab; "
                    "send the school's LA code or leave la_code out"
                )
            )
    elif kind is DestinationKind.OTHER_LA:
        if destination.la_code is None:
            problems.append(_inconsistent("an OTHER_LA destination needs the la_code of the LA moved to"))
        elif destination.la_code == school_la:
            problems.append(
                _inconsistent(
                    "an OTHER_LA destination's la_code is the school's own LA; for a move within the LA "
                    "send SCHOOL (if known) or UNKNOWN"
                )
            )
        if names_school:
            problems.append(
                _inconsistent(
                    "an OTHER_LA destination names no school; send SCHOOL if the new school is known"
                )
            )
    elif names_school or destination.la_code is not None:
        problems.append(
            _inconsistent(
                f"a {kind.value} destination carries no school_urn, school_laestab or la_code; drop them, "
                "or send SCHOOL or OTHER_LA if the new school or LA is known"
            )
        )
    return problems


def _inconsistent(message: str) -> Problem:
    return Problem(ProblemCode.DESTINATION_INCONSISTENT, message, "destination")


def _ehe_notification_problems(notification: EHENotification) -> list[Problem]:
    problems = _uuid_problems(notification.notification_id, "notification_id")
    problems += upn_problems(notification.upn, "upn")
    problems += _la_code_problems(notification.la_code, "la_code")
    if notification.school_urn is not None:
        problems += _urn_problems(notification.school_urn, "school_urn")
    problems += _date_range_problems(notification.received_on, "received_on")
    return problems


def _status_problems(status: SafeguardingStatus) -> list[Problem]:
    problems = upn_problems(status.upn, "upn")
    problems += _la_code_problems(status.la_code, "la_code")
    problems += _date_range_problems(status.updated_at.date(), "updated_at")
    if status.social_worker is not None:
        problems += _texts_problems(
            (status.social_worker.name, "social_worker.name"), (status.social_worker.email, "social_worker.email")
        )
    return problems


def _case_action_problems(action: CaseAction) -> list[Problem]:
    problems = _uuid_problems(action.action_id, "action_id")
    if action.upn is not None:
        problems += upn_problems(action.upn, "upn")
    if action.referral_id is not None:
        problems += _uuid_problems(action.referral_id, "referral_id")
    if action.la_code is not None:
        problems += _la_code_problems(action.la_code, "la_code")
    if action.upn is None and action.referral_id is None:
        problems.append(_incomplete(
            "upn", "a case action names the child's UPN, or, for a case opened by a referral without one, "
            "the referral_id"))
    if not _UUID.fullmatch(action.case_id):
        problems.append(
            Problem(
                ProblemCode.EVENT_ID_FORMAT,
                "case_id must be a case's UUID exactly as its alerts carry it (rollwatch cases list shows them)",
                "case_id",
            )
        )
    # The register shows these to the next officer and to auditors: a blank one tells them nothing.
    for field, value in (("reason", action.reason), ("by", action.by)):
        if not value.strip():
            problems.append(
                Problem(
                    ProblemCode.TEXT_EMPTY,
                    f"{field} must say something: the register records who acted on a case and why",
                    field,
                )
            )
    problems += _texts_problems((action.reason, "reason"), (action.by, "by"))
    problems += _date_range_problems(action.at.date(), "at")
    problems += _action_fields_problems(action)
    return problems


def _action_fields_problems(action: CaseAction) -> list[Problem]:
    """What each kind of action needs, and the fields that belong to another kind. A CLOSE without a
    close_reason stays valid: closing actions of the first release carried none."""
    kind = action.action
    problems: list[Problem] = []
    if action.close_reason is not None and kind is not CaseActionType.CLOSE:
        problems.append(_misplaced("close_reason", kind, "CLOSE"))
    if action.enquiry is not None and kind is not CaseActionType.NOTE:
        problems.append(_misplaced("enquiry", kind, "NOTE"))
    if action.assignee is not None and kind is not CaseActionType.ASSIGN:
        problems.append(_misplaced("assignee", kind, "ASSIGN"))
    if kind is CaseActionType.NOTE:
        if action.enquiry is None:
            problems.append(_incomplete(
                "enquiry", "a NOTE records one enquiry: give its kind and outcome, and the note as reason"))
        else:
            problems += _required_text(action.enquiry.outcome, "enquiry.outcome")
    elif kind is CaseActionType.ASSIGN:
        if action.assignee is None:
            problems.append(_incomplete("assignee", "an ASSIGN names the officer the case is assigned to"))
        else:
            problems += _required_text(action.assignee, "assignee")
    elif kind is CaseActionType.LINK:
        for field, value in (("upn", action.upn), ("referral_id", action.referral_id), ("la_code", action.la_code)):
            if value is None:
                problems.append(_incomplete(
                    field, "a LINK names the child's upn, the referral_id whose case is linked and the la_code "
                    "of the LA holding that case"))
    return problems


def _incomplete(field: str, message: str) -> Problem:
    return Problem(ProblemCode.ACTION_INCOMPLETE, f"{field} is missing: {message}", field)


def _misplaced(field: str, kind: CaseActionType, belongs: str) -> Problem:
    return Problem(
        ProblemCode.ACTION_FIELD_MISPLACED,
        f"{field} belongs to a {belongs} action, not a {kind.value}; leave it out",
        field,
    )


def _required_text(value: str, field: str) -> list[Problem]:
    """A text field that must say something, within its bound; the value is never quoted."""
    if not value.strip():
        return [Problem(ProblemCode.TEXT_EMPTY, f"{field} must not be blank", field)]
    return _text_problems(value, field)


def _referral_problems(referral: CMEReferral) -> list[Problem]:
    problems = _uuid_problems(referral.referral_id, "referral_id")
    problems += _la_code_problems(referral.la_code, "la_code")
    if referral.upn is not None:
        problems += upn_problems(referral.upn, "upn")
    received = _date_range_problems(referral.received_on, "received_on")
    problems += received
    child = referral.child
    problems += _required_text(child.forename, "child.forename")
    problems += _required_text(child.surname, "child.surname")
    problems += _texts_problems((child.postcode, "child.postcode"), (referral.details, "details"))
    if child.date_of_birth is not None:
        born = _date_range_problems(child.date_of_birth, "child.date_of_birth", quote=False)
        if not born and not received and _age_on(child.date_of_birth, referral.received_on) not in range(MAX_AGE + 1):
            # The message must not echo the date of birth: it is personal data and ends up in logs.
            born.append(Problem(
                ProblemCode.DATE_IMPLAUSIBLE,
                f"child.date_of_birth gives an age outside 0-{MAX_AGE} on received_on; check it, or leave it out "
                "if it is not known",
                "child.date_of_birth",
            ))
        problems += born
    referrer = referral.referrer
    # A blank name or contact is read as not given (an anonymous referral), never refused: a referral lost to
    # how a form sent an empty field would be a child no one looks for.
    problems += _texts_problems((referrer.name, "referrer.name"), (referrer.contact, "referrer.contact"))
    return problems


#: Most marks one register may carry: a very large school's day, with room to spare.
MAX_MARKS = 5000


def _register_problems(register: AttendanceRegister) -> list[Problem]:
    """Problems with a register as a whole; each mark is judged on its own by mark_problems."""
    problems = _uuid_problems(register.register_id, "register_id")
    problems += _urn_problems(register.school.urn, "school.urn")
    problems += _laestab_problems(register.school.laestab, "school.laestab")
    problems += _date_range_problems(register.date, "date")
    problems += _date_range_problems(register.recorded_at.date(), "recorded_at")
    problems += _texts_problems((register.school.name, "school.name"))
    if len(register.marks) > MAX_MARKS:
        problems.append(
            Problem(
                ProblemCode.REGISTER_TOO_LARGE,
                f"the register has {len(register.marks):,} marks, more than the {MAX_MARKS:,} allowed; split the "
                "school's day into several registers, each with its own register_id",
                "marks",
            )
        )
    return problems


def mark_problems(mark: AttendanceMark, index: int, known_codes: frozenset[str]) -> list[Problem]:
    """Problems with one mark of a register (`index` is its place in the register, from 0)."""
    field = f"marks[{index}]"
    problems = upn_problems(mark.upn, f"{field}.upn")
    for session, code in (("am", mark.am), ("pm", mark.pm)):
        if code not in known_codes:
            problems.append(
                Problem(
                    ProblemCode.MARK_CODE_UNKNOWN,
                    f"{field}.{session} is not a 2024 national attendance code (/ \\ L U K V P W B D C C1 C2 J1 M S "
                    "E I R T Q Y1-Y7 G N O X Z #); map the MIS's own code to one of these and resend the mark",
                    f"{field}.{session}",
                )
            )
    return problems


def repeated_mark(index: int) -> Problem:
    return Problem(
        ProblemCode.MARK_UPN_REPEATED,
        f"marks[{index}] names a pupil already marked earlier in this register; send one mark a pupil (both "
        "sessions together) and put a correction in a later register",
        f"marks[{index}].upn",
    )
