"""The referral form and the partner endpoint refuse what the worker would dead-letter, with the worker's codes."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import date
from typing import Any

import pytest

from processors.apply import check
from processors.failures import Rejected
from processors.records import CMEReferral, ReferralChild, ReferralConcern, Referrer, ReferrerAgency
from processors.validation import validate
from sinks.register.intake import form_document, read_referral
from tests.unit.test_casework import (
    COVENTRY,
    TODAY,
    TOKENS,
    Sent,
    bearer,
    casework,
    form_for,
    partner_headers,
    register,
    sent,
)
from web.casework import Casework

__all__ = ["casework", "register", "sent"]

GOOD = CMEReferral(
    referral_id="55555555-5555-4555-8555-555555555555", received_on=date(2025, 3, 10), la_code=COVENTRY,
    upn=None, child=ReferralChild("Noah", "Bright", date(2013, 6, 1), "CV2 2BB"),
    concern=ReferralConcern.NOT_IN_SCHOOL, referrer=Referrer(ReferrerAgency.HOUSING, "K. Jones", "01234 567891"),
    details="Not in school since the family moved.",
)
BAD = {
    "upn check letter": replace(GOOD, upn="A331200001002"),
    "details too long": replace(GOOD, details="x" * 2001),
    "blank forename": replace(GOOD, child=replace(GOOD.child, forename="   ")),
    "born 30 years before": replace(GOOD, child=replace(GOOD.child, date_of_birth=date(1995, 1, 1))),
    "received in 1980": replace(GOOD, received_on=date(1980, 1, 1)),
    "control character, long postcode": replace(
        GOOD, child=replace(GOOD.child, surname="Br\x01ight", postcode="CV2 2BB XYZW"),
    ),
}


def document_of(referral: CMEReferral) -> dict[str, Any]:
    """The partner endpoint's JSON for a referral, every field as the topic's record holds it."""
    child, referrer = referral.child, referral.referrer
    document: dict[str, Any] = {
        "referral_id": referral.referral_id, "received_on": referral.received_on.isoformat(),
        "la_code": referral.la_code, "upn": referral.upn, "concern": referral.concern.value,
        "details": referral.details,
        "child": {"forename": child.forename, "surname": child.surname, "postcode": child.postcode,
                  "date_of_birth": None if child.date_of_birth is None else child.date_of_birth.isoformat()},
        "referrer": {"agency": referrer.agency.value, "name": referrer.name, "contact": referrer.contact},
    }
    return document


def form_of(referral: CMEReferral) -> dict[str, str]:
    """The dashboard form's fields for a referral, as an officer would type them (the form names no id)."""
    document = document_of(referral)
    flat = {
        "upn": document["upn"], "concern": document["concern"], "details": document["details"],
        "received_on": document["received_on"], "agency": document["referrer"]["agency"],
        "referrer_name": document["referrer"]["name"], "referrer_contact": document["referrer"]["contact"],
        **{name: document["child"][name] for name in ("forename", "surname", "date_of_birth", "postcode")},
    }
    return {name: value or "" for name, value in flat.items()}


def dead_letter_codes(referral: CMEReferral) -> list[str]:
    """The codes the worker's check gives the referral on cme.referrals; it dead-letters it under the first."""
    with pytest.raises(Rejected) as refused:
        check(referral)
    codes = [str(problem.code) for problem in validate(referral)]
    assert refused.value.code == codes[0] and all(f"{code}: " in refused.value.message for code in codes)
    return codes


def test_a_good_referral_reads_back_the_same_from_the_endpoint_and_the_form() -> None:
    assert validate(GOOD) == []
    assert read_referral(document_of(GOOD), COVENTRY, TODAY) == (GOOD, [])
    taken, problems = read_referral(form_document(form_of(GOOD)), COVENTRY, TODAY)
    assert problems == [] and taken is not None
    assert taken == replace(GOOD, referral_id=taken.referral_id)


@pytest.mark.parametrize("name", sorted(BAD))
async def test_what_the_worker_dead_letters_the_endpoint_and_the_form_refuse_alike(
    name: str, casework: Casework, sent: Sent
) -> None:
    bad = BAD[name]
    codes = dead_letter_codes(bad)
    body = json.dumps(document_of(bad)).encode()
    reply = await casework.partner_referral(COVENTRY, partner_headers(), body, len(body))
    assert reply.status == 400, reply.body
    assert [problem["code"] for problem in json.loads(reply.body)["problems"]] == codes
    officer = bearer(TOKENS["cme"])
    page = await casework.submit_referral_form(COVENTRY, officer, form_for(casework, officer, **form_of(bad)))
    assert page.status == 400
    assert re.findall(r'data-code="([A-Z_]+)"', page.body) == codes
    assert sent.referrals == []


def test_the_endpoint_takes_text_as_sent_and_the_form_trims_what_was_typed() -> None:
    # Lower case is not a UPN on the topic, so a partner's system that sends one is told so...
    lower = {**document_of(GOOD), "upn": "g331200001001"}
    assert [problem.code for problem in read_referral(lower, COVENTRY, TODAY)[1]] == ["UPN_FORMAT"]
    # ...while an officer's typing is trimmed and put in capitals before the same rules see it.
    typed = {**form_of(GOOD), "upn": " g331200001001 ", "postcode": "cv2 2bb ", "forename": " Noah"}
    taken, problems = read_referral(form_document(typed), COVENTRY, TODAY)
    assert problems == [] and taken is not None
    assert (taken.upn, taken.child.postcode, taken.child.forename) == ("G331200001001", "CV2 2BB", "Noah")
