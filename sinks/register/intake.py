"""Referrals the LA takes in (its dashboard form, partner agencies' systems): read, checked, sent to cme.referrals."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from processors.records import CMEReferral, ReferralChild, ReferralConcern, Referrer, ReferrerAgency
from processors.validation import validate

if TYPE_CHECKING:
    from config.settings import Settings

#: Codes of what is wrong with a submission before it is a referral at all; the topic's own codes follow.
FIELD_MISSING = "FIELD_MISSING"
FIELD_INVALID = "FIELD_INVALID"


@dataclass(frozen=True, slots=True)
class IntakeProblem:
    """One thing wrong with a submitted referral: a stable code, the field, a message quoting no personal data."""

    code: str
    field: str | None
    message: str

    def as_json(self) -> dict[str, str | None]:
        return {"code": self.code, "field": self.field, "message": self.message}


def _text(value: Any, field: str, problems: list[IntakeProblem], required: bool = False) -> str | None:
    """The text as sent: blank, overlong or odd text is the topic's rules' to judge, so it is not trimmed here."""
    if value is None:
        if required:
            problems.append(IntakeProblem(FIELD_MISSING, field, f"{field} is required"))
        return None
    if not isinstance(value, str):
        problems.append(IntakeProblem(FIELD_INVALID, field, f"{field} must be text"))
        return None
    return value


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
    referral_id = _text(document.get("referral_id"), "referral_id", problems)
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
        referral_id=str(uuid.uuid4()) if referral_id is None else referral_id,
        received_on=received_on,
        la_code=la_code,
        upn=upn,
        child=ReferralChild(forename, surname, born, postcode),
        concern=concern,
        referrer=Referrer(agency, name, contact),
        details=details,
    )
    # The worker's own rules for cme.referrals, so nothing taken in here is dead-lettered there.
    found = [IntakeProblem(str(problem.code), problem.field, problem.message) for problem in validate(referral)]
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


#: Form fields an officer may type in lower case; the topic holds them in capitals.
FORM_CAPITALS = frozenset({"upn", "postcode"})


def form_document(form: Mapping[str, str]) -> dict[str, Any]:
    """The nested submission of the dashboard's referral form, so form and endpoint are read alike. A browser
    sends every field, so an empty one is absent (an anonymous referrer leaves name and contact empty); what
    an officer typed is trimmed, and a field of spaces alone is kept for the topic's rules to refuse."""
    document: dict[str, Any] = {"child": {}, "referrer": {}}
    places = {name: (document, name) for name in ("upn", "concern", "details", "received_on")}
    places |= {name: (document[part], key) for name, (part, key) in FORM_FIELDS.items()}
    for name, (into, key) in places.items():
        value = form.get(name, "")
        if value:
            value = value.strip() or value
            into[key] = value.upper() if name in FORM_CAPITALS else value
    return document


def publish_referral(settings: Settings, referral: CMEReferral) -> str:
    """Sends the referral to cme.referrals keyed by UPN, else referral id (Avro, acks=all); returns the topic."""
    from processors.records import CME_REFERRALS
    from sinks.register.actions import publish_record

    return publish_record(settings, settings.topic(CME_REFERRALS), referral.upn or referral.referral_id, referral)
