"""Referrals the LA takes in (its dashboard form, partner agencies' systems): read, checked, sent to cme.referrals."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, cast

from processors.identifiers import Problem, ProblemCode, is_current_la, upn_problems
from processors.records import CMEReferral, ReferralChild, ReferralConcern, Referrer, ReferrerAgency
from processors.validation import validate

if TYPE_CHECKING:
    from config.settings import Settings

#: Codes of what is wrong with a submission before it is a referral at all; the topic's own codes follow.
FIELD_MISSING = "FIELD_MISSING"
FIELD_INVALID = "FIELD_INVALID"
#: Longest text each referral field may hold, in characters, as the topic's rules for other records have it.
REFERRAL_TEXT_LIMITS = {
    "child.forename": 100,
    "child.surname": 100,
    "child.postcode": 10,
    "details": 2000,
    "referrer.name": 200,
    "referrer.contact": 254,
}
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_NOT_TEXT = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
_EARLIEST = date(1990, 1, 1)
_LATEST = date(2100, 12, 31)


@dataclass(frozen=True, slots=True)
class IntakeProblem:
    """One thing wrong with a submitted referral: a stable code, the field, a message quoting no personal data."""

    code: str
    field: str | None
    message: str

    def as_json(self) -> dict[str, str | None]:
        return {"code": self.code, "field": self.field, "message": self.message}


def referral_problems(referral: CMEReferral) -> list[Problem]:
    """The topic's rules for a referral, as processors.validation holds them; until that module knows
    referrals, the interim checks below (identifiers, text bounds, dates), so nothing unchecked is sent."""
    try:
        # processors.validation.validate types its argument as the input records it knew before referrals.
        return validate(cast(Any, referral))
    except TypeError:
        return _interim_problems(referral)


def _interim_problems(referral: CMEReferral) -> list[Problem]:
    problems: list[Problem] = []
    if not _UUID.fullmatch(referral.referral_id):
        problems.append(Problem(ProblemCode.EVENT_ID_FORMAT, "referral_id must be a UUID", "referral_id"))
    if not is_current_la(referral.la_code):
        problems.append(Problem(ProblemCode.LA_CODE_UNKNOWN, "la_code is not a current English LA", "la_code"))
    if referral.upn is not None:
        problems += upn_problems(referral.upn, "upn")
    child, referrer = referral.child, referral.referrer
    texts = (
        ("child.forename", child.forename, True), ("child.surname", child.surname, True),
        ("child.postcode", child.postcode, False), ("details", referral.details, False),
        ("referrer.name", referrer.name, False), ("referrer.contact", referrer.contact, False),
    )
    for field, value, required in texts:
        if value is None:
            continue
        if required and not value.strip():
            problems.append(Problem(ProblemCode.TEXT_EMPTY, f"{field} must say something", field))
        elif len(value) > REFERRAL_TEXT_LIMITS[field]:
            problems.append(Problem(
                ProblemCode.TEXT_TOO_LONG, f"{field} is longer than {REFERRAL_TEXT_LIMITS[field]} characters", field
            ))
        elif _NOT_TEXT.search(value):
            problems.append(Problem(ProblemCode.TEXT_INVALID, f"{field} holds control characters", field))
    for field, day in (("received_on", referral.received_on), ("child.date_of_birth", child.date_of_birth)):
        if day is not None and not _EARLIEST <= day <= _LATEST:
            problems.append(Problem(ProblemCode.DATE_IMPLAUSIBLE, f"{field} is not a plausible date", field))
    return problems


def _text(value: Any, field: str, problems: list[IntakeProblem], required: bool = False) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            problems.append(IntakeProblem(FIELD_MISSING, field, f"{field} is required"))
        return None
    if not isinstance(value, str):
        problems.append(IntakeProblem(FIELD_INVALID, field, f"{field} must be text"))
        return None
    return value.strip()


def _day(value: Any, field: str, problems: list[IntakeProblem]) -> date | None:
    text = _text(value, field, problems)
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        problems.append(IntakeProblem(FIELD_INVALID, field, f"{field} must be a date written YYYY-MM-DD"))
        return None


def _symbol(value: Any, field: str, kind: type[Any], problems: list[IntakeProblem]) -> Any:
    text = _text(value, field, problems, required=True)
    if text is None:
        return None
    try:
        return kind(text.upper())
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        problems.append(IntakeProblem(FIELD_INVALID, field, f"{field} must be one of {choices}"))
        return None


def _object(value: Any, field: str, problems: list[IntakeProblem]) -> Mapping[str, Any]:
    if value is None:
        problems.append(IntakeProblem(FIELD_MISSING, field, f"{field} is required"))
        return {}
    if not isinstance(value, Mapping):
        problems.append(IntakeProblem(FIELD_INVALID, field, f"{field} must be an object"))
        return {}
    return value


def read_referral(
    document: Mapping[str, Any], la_code: str, today: date
) -> tuple[CMEReferral | None, list[IntakeProblem]]:
    """The referral a submission describes, for `la_code` (the LA whose page or endpoint took it), with every
    problem found: first its shape, then the topic's own rules. A referral id is chosen unless one is given
    (a partner resending the same referral gives the same id, which the worker then ignores)."""
    problems: list[IntakeProblem] = []
    given_la = document.get("la_code")
    if given_la is not None and given_la != la_code:
        problems.append(IntakeProblem(FIELD_INVALID, "la_code", "la_code must be the LA the referral is sent to"))
    referral_id = _text(document.get("referral_id"), "referral_id", problems) or str(uuid.uuid4())
    received_on = _day(document.get("received_on"), "received_on", problems) or today
    upn = _text(document.get("upn"), "upn", problems)
    child = _object(document.get("child"), "child", problems)
    forename = _text(child.get("forename"), "child.forename", problems, required=True)
    surname = _text(child.get("surname"), "child.surname", problems, required=True)
    born = _day(child.get("date_of_birth"), "child.date_of_birth", problems)
    postcode = _text(child.get("postcode"), "child.postcode", problems)
    concern = _symbol(document.get("concern"), "concern", ReferralConcern, problems)
    details = _text(document.get("details"), "details", problems)
    referrer = _object(document.get("referrer"), "referrer", problems)
    agency = _symbol(referrer.get("agency"), "referrer.agency", ReferrerAgency, problems)
    name = _text(referrer.get("name"), "referrer.name", problems)
    contact = _text(referrer.get("contact"), "referrer.contact", problems)
    if problems or forename is None or surname is None or concern is None or agency is None:
        return None, problems
    referral = CMEReferral(
        referral_id=referral_id,
        received_on=received_on,
        la_code=la_code,
        upn=None if upn is None else upn.upper(),
        child=ReferralChild(forename, surname, born, None if postcode is None else postcode.upper()),
        concern=concern,
        referrer=Referrer(agency, name, contact),
        details=details,
    )
    found = [
        IntakeProblem(str(problem.code), problem.field, problem.message) for problem in referral_problems(referral)
    ]
    return (None, found) if found else (referral, [])


#: The dashboard form's flat field names, mapped onto the nested submission read_referral takes.
FORM_FIELDS = {
    "forename": ("child", "forename"),
    "surname": ("child", "surname"),
    "date_of_birth": ("child", "date_of_birth"),
    "postcode": ("child", "postcode"),
    "agency": ("referrer", "agency"),
    "referrer_name": ("referrer", "name"),
    "referrer_contact": ("referrer", "contact"),
}


def form_document(form: Mapping[str, str]) -> dict[str, Any]:
    """The nested submission of the dashboard's referral form, so form and endpoint are read alike."""
    document: dict[str, Any] = {"child": {}, "referrer": {}}
    for name in ("upn", "concern", "details", "received_on"):
        if form.get(name):
            document[name] = form[name]
    for name, (part, key) in FORM_FIELDS.items():
        if form.get(name):
            document[part][key] = form[name]
    return document


def publish_referral(settings: Settings, referral: CMEReferral) -> str:
    """Sends the referral to cme.referrals keyed by UPN, else referral id (Avro, acks=all); returns the topic."""
    from processors.records import CME_REFERRALS
    from sinks.register.actions import publish_record

    return publish_record(settings, settings.topic(CME_REFERRALS), referral.upn or referral.referral_id, referral)
