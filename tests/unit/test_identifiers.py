"""UPN check letters and formats, LA code lists, URN and LAESTAB formats."""

from __future__ import annotations

import random

import pytest
from stdnum.gb import upn as stdnum_upn

from processors.identifiers import (
    CURRENT_LA_CODES,
    FORMER_LA_CODES,
    ProblemCode,
    is_current_la,
    is_known_la,
    is_la_code_format,
    is_laestab,
    is_temporary_upn,
    is_upn_allocating_la,
    is_urn,
    is_valid_upn,
    la_name,
    upn_check_letter,
    upn_problem,
    upn_problems,
)

VALID_UPNS = [
    "L330210024001", "Q331400724117", "W332200125038", "J333410026452", "A334210025903", "V335200124777",
    "V336400523610", "K860300325089", "F937200124560", "Z885201024999", "A893300424321", "J894200325044",
    "K861210025067", "N884201024005", "B801200005001", "P207000016049",
    # temporary
    "X33021002400A", "V93720012456B",
]


@pytest.mark.parametrize("upn", VALID_UPNS)
def test_valid_upns_from_the_domain_notes_pass(upn: str) -> None:
    assert upn_problems(upn) == []
    assert upn_problem(upn) is None
    assert is_valid_upn(upn)


@pytest.mark.parametrize(
    ("upn", "code"),
    [
        ("L330210024002", ProblemCode.UPN_CHECK_LETTER),
        ("A801200005001", ProblemCode.UPN_CHECK_LETTER),
        ("I330210024001", ProblemCode.UPN_CHECK_LETTER),
        ("L33021002400", ProblemCode.UPN_FORMAT),
        ("X80120000A001", ProblemCode.UPN_FORMAT),
        ("E000200005001", ProblemCode.UPN_LA_UNKNOWN),
        ("l330210024001", ProblemCode.UPN_FORMAT),
        ("L3302100240011", ProblemCode.UPN_FORMAT),
        (" L330210024001", ProblemCode.UPN_FORMAT),
        ("X33021002400I", ProblemCode.UPN_FORMAT),
        ("X33021002400O", ProblemCode.UPN_FORMAT),
        ("", ProblemCode.UPN_FORMAT),
    ],
)
def test_invalid_upns_fail_with_the_right_code(upn: str, code: ProblemCode) -> None:
    problems = upn_problems(upn)
    assert [problem.code for problem in problems] == [code]
    first = upn_problem(upn)
    assert first is not None
    assert first.code is code
    assert first.field == "upn"
    assert not is_valid_upn(upn)


def test_worked_example_check_letter() -> None:
    assert upn_check_letter("330210024001") == "L"
    assert upn_check_letter("33021002400A") == "X"
    assert upn_check_letter("801200005001") == "B"
    # the domain notes' corrected example: weighted sum 266 -> 13 -> P
    assert upn_check_letter("207000016049") == "P"


def test_a_upn_with_an_unknown_la_and_a_wrong_letter_reports_both() -> None:
    codes = {problem.code for problem in upn_problems("A000200005001")}
    assert codes == {ProblemCode.UPN_LA_UNKNOWN, ProblemCode.UPN_CHECK_LETTER}


def test_the_field_name_is_carried_into_the_problem() -> None:
    problem = upn_problem("L330210024002", field="child.upn")
    assert problem is not None
    assert problem.field == "child.upn"


def test_check_letter_agrees_with_python_stdnum_on_random_bodies() -> None:
    rng = random.Random(20250304)
    letters = "ABCDEFGHJKLMNPQRTUVWXYZ"
    for _ in range(2000):
        digits = "".join(rng.choice("0123456789") for _ in range(11))
        last = rng.choice("0123456789" + letters)
        body = digits + last
        assert upn_check_letter(body) == stdnum_upn.calc_check_digit(body), body


def test_check_letter_rejects_a_malformed_body() -> None:
    with pytest.raises(ValueError, match="12 characters"):
        upn_check_letter("33021002400")
    with pytest.raises(ValueError, match="digits"):
        upn_check_letter("3302100240I1")


def test_temporary_upns_are_recognised() -> None:
    assert is_temporary_upn("X33021002400A")
    assert not is_temporary_upn("L330210024001")


def test_every_la_python_stdnum_knows_is_current_or_former() -> None:
    # stdnum's list predates the 2019-2023 reorganisations: every code on it must still be accepted.
    stdnum_codes = {f"{code:03d}" for code in stdnum_upn._la_numbers}
    assert stdnum_codes - CURRENT_LA_CODES - FORMER_LA_CODES == set()
    assert stdnum_codes & FORMER_LA_CODES == {"835", "836", "837", "909", "928"}


def test_current_la_list_has_every_current_english_la() -> None:
    assert len(CURRENT_LA_CODES) == 153
    for code in ["838", "839", "940", "941", "942", "943", "815", "933", "825"]:
        assert is_current_la(code), code
    for code in ["330", "331", "332", "333", "334", "335", "336", "860", "861", "884", "885", "893", "894",
                 "937"]:
        assert is_current_la(code), code
    assert la_name("330") == "Birmingham"
    assert la_name("943") == "Westmorland and Furness"


def test_abolished_las_are_former_not_current() -> None:
    for code in ["835", "836", "837", "909", "928", "820", "875"]:
        assert code in FORMER_LA_CODES
        assert not is_current_la(code)
        assert is_known_la(code)
        assert is_upn_allocating_la(code)
    assert not CURRENT_LA_CODES & FORMER_LA_CODES
    assert la_name("909") == "Cumbria (to 2023)"


def test_upn_from_an_abolished_la_is_valid() -> None:
    body = "909200019001"  # allocated in Cumbria before 2023
    assert upn_problems(upn_check_letter(body) + body) == []


def test_upn_from_a_welsh_la_is_valid_but_wales_is_no_english_la() -> None:
    body = "681200019001"  # Cardiff
    assert upn_problems(upn_check_letter(body) + body) == []
    assert not is_known_la("681")
    assert not is_current_la("681")


def test_unknown_codes() -> None:
    for code in ["000", "999", "804", "939", "33", "3300", "abc"]:
        assert not is_known_la(code), code
        assert not is_upn_allocating_la(code), code
    assert la_name("999") is None


def test_school_identifier_formats() -> None:
    assert is_urn("140201")
    for bad in ["14020", "1402011", "14020a", " 140201", ""]:
        assert not is_urn(bad), bad
    assert is_laestab("3312201")
    for bad in ["331220", "33122011", "331-2201", ""]:
        assert not is_laestab(bad), bad
    assert is_la_code_format("330")
    for bad in ["33", "3300", "a30", ""]:
        assert not is_la_code_format(bad), bad
