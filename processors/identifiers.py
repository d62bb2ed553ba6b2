"""Identifier rules: UPN format and check letter, English 3-digit LA codes, URN and LAESTAB formats."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class ProblemCode(StrEnum):
    """Stable error codes, one per validation rule; dead letters and metrics carry them."""

    EVENT_ID_FORMAT = "EVENT_ID_FORMAT"
    UPN_FORMAT = "UPN_FORMAT"
    UPN_CHECK_LETTER = "UPN_CHECK_LETTER"
    UPN_LA_UNKNOWN = "UPN_LA_UNKNOWN"
    URN_FORMAT = "URN_FORMAT"
    LAESTAB_FORMAT = "LAESTAB_FORMAT"
    SCHOOL_LA_UNKNOWN = "SCHOOL_LA_UNKNOWN"
    LA_CODE_UNKNOWN = "LA_CODE_UNKNOWN"
    GROUND_MISSING = "GROUND_MISSING"
    GROUND_ON_ADDED = "GROUND_ON_ADDED"
    DESTINATION_ON_ADDED = "DESTINATION_ON_ADDED"
    DESTINATION_INCONSISTENT = "DESTINATION_INCONSISTENT"
    DATE_IMPLAUSIBLE = "DATE_IMPLAUSIBLE"
    TEXT_EMPTY = "TEXT_EMPTY"
    TEXT_TOO_LONG = "TEXT_TOO_LONG"
    TEXT_INVALID = "TEXT_INVALID"
    REGISTER_TOO_LARGE = "REGISTER_TOO_LARGE"
    MARK_CODE_UNKNOWN = "MARK_CODE_UNKNOWN"
    MARK_UPN_REPEATED = "MARK_UPN_REPEATED"
    ACTION_INCOMPLETE = "ACTION_INCOMPLETE"
    ACTION_FIELD_MISPLACED = "ACTION_FIELD_MISPLACED"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input record. The message never quotes a child's personal details.

    Defined here, beside the identifier checks that produce most problems, so processors.validation can
    import it without a cycle; processors.validation re-exports it.
    """

    code: ProblemCode
    message: str
    field: str | None = None


#: Every current English LA (153), by its 3-digit DfE code, after the 2019-2023 reorganisations.
CURRENT_LA_NAMES: dict[str, str] = {
    # Inner London and the City
    "201": "City of London", "202": "Camden", "203": "Greenwich", "204": "Hackney",
    "205": "Hammersmith and Fulham", "206": "Islington", "207": "Kensington and Chelsea", "208": "Lambeth",
    "209": "Lewisham", "210": "Southwark", "211": "Tower Hamlets", "212": "Wandsworth",
    "213": "Westminster",
    # Outer London
    "301": "Barking and Dagenham", "302": "Barnet", "303": "Bexley", "304": "Brent", "305": "Bromley",
    "306": "Croydon", "307": "Ealing", "308": "Enfield", "309": "Haringey", "310": "Harrow",
    "311": "Havering", "312": "Hillingdon", "313": "Hounslow", "314": "Kingston upon Thames",
    "315": "Merton", "316": "Newham", "317": "Redbridge", "318": "Richmond upon Thames", "319": "Sutton",
    "320": "Waltham Forest",
    # Metropolitan districts
    "330": "Birmingham", "331": "Coventry", "332": "Dudley", "333": "Sandwell", "334": "Solihull",
    "335": "Walsall", "336": "Wolverhampton",
    "340": "Knowsley", "341": "Liverpool", "342": "St. Helens", "343": "Sefton", "344": "Wirral",
    "350": "Bolton", "351": "Bury", "352": "Manchester", "353": "Oldham", "354": "Rochdale",
    "355": "Salford", "356": "Stockport", "357": "Tameside", "358": "Trafford", "359": "Wigan",
    "370": "Barnsley", "371": "Doncaster", "372": "Rotherham", "373": "Sheffield",
    "380": "Bradford", "381": "Calderdale", "382": "Kirklees", "383": "Leeds", "384": "Wakefield",
    "390": "Gateshead", "391": "Newcastle upon Tyne", "392": "North Tyneside", "393": "South Tyneside",
    "394": "Sunderland",
    "420": "Isles of Scilly",
    # Counties and unitary authorities
    "800": "Bath and North East Somerset", "801": "Bristol, City of", "802": "North Somerset",
    "803": "South Gloucestershire", "805": "Hartlepool", "806": "Middlesbrough",
    "807": "Redcar and Cleveland", "808": "Stockton-on-Tees", "810": "Kingston upon Hull, City of",
    "811": "East Riding of Yorkshire", "812": "North East Lincolnshire", "813": "North Lincolnshire",
    "815": "North Yorkshire", "816": "York", "821": "Luton", "822": "Bedford",
    "823": "Central Bedfordshire", "825": "Buckinghamshire", "826": "Milton Keynes", "830": "Derbyshire",
    "831": "Derby", "838": "Dorset", "839": "Bournemouth, Christchurch and Poole", "840": "County Durham",
    "841": "Darlington", "845": "East Sussex", "846": "Brighton and Hove", "850": "Hampshire",
    "851": "Portsmouth", "852": "Southampton", "855": "Leicestershire", "856": "Leicester",
    "857": "Rutland", "860": "Staffordshire", "861": "Stoke-on-Trent", "865": "Wiltshire",
    "866": "Swindon", "867": "Bracknell Forest", "868": "Windsor and Maidenhead", "869": "West Berkshire",
    "870": "Reading", "871": "Slough", "872": "Wokingham", "873": "Cambridgeshire", "874": "Peterborough",
    "876": "Halton", "877": "Warrington", "878": "Devon", "879": "Plymouth", "880": "Torbay",
    "881": "Essex", "882": "Southend-on-Sea", "883": "Thurrock", "884": "Herefordshire, County of",
    "885": "Worcestershire", "886": "Kent", "887": "Medway", "888": "Lancashire",
    "889": "Blackburn with Darwen", "890": "Blackpool", "891": "Nottinghamshire", "892": "Nottingham",
    "893": "Shropshire", "894": "Telford and Wrekin", "895": "Cheshire East",
    "896": "Cheshire West and Chester", "908": "Cornwall", "916": "Gloucestershire", "919": "Hertfordshire",
    "921": "Isle of Wight", "925": "Lincolnshire", "926": "Norfolk", "929": "Northumberland",
    "931": "Oxfordshire", "933": "Somerset", "935": "Suffolk", "936": "Surrey", "937": "Warwickshire",
    "938": "West Sussex", "940": "North Northamptonshire", "941": "West Northamptonshire",
    "942": "Cumberland", "943": "Westmorland and Furness",
}
CURRENT_LA_CODES: frozenset[str] = frozenset(CURRENT_LA_NAMES)

#: English LAs abolished by reorganisations. Pupils they allocated UPNs to keep them, so these codes stay
#: valid in a UPN's digits 2-4, but no school, EHE service or social care team reports under them now.
FORMER_LA_NAMES: dict[str, str] = {
    "820": "Bedfordshire (to 2009)",
    "875": "Cheshire (to 2009)",
    "835": "Dorset county (to 2019)",
    "836": "Poole (to 2019)",
    "837": "Bournemouth (to 2019)",
    "928": "Northamptonshire (to 2021)",
    "909": "Cumbria (to 2023)",
}
FORMER_LA_CODES: frozenset[str] = frozenset(FORMER_LA_NAMES)

#: Other allocating codes the school census accepts in a UPN (census rule 1530): Welsh LAs (a child moving
#: from Wales keeps their UPN) and DfE pseudo-LA codes such as 702 for service children's schools overseas.
OTHER_UPN_LA_CODES: frozenset[str] = frozenset(
    [f"{code:03d}" for code in range(1, 6)]
    + [str(code) for code in range(660, 682)]
    + [str(code) for code in range(701, 709)]
)

_UPN_ALLOCATING_CODES = CURRENT_LA_CODES | FORMER_LA_CODES | OTHER_UPN_LA_CODES

# The check-letter alphabet: index = value. I, O and S are never used, so they are absent.
_CHECK_ALPHABET = "ABCDEFGHJKLMNPQRTUVWXYZ"
_CHECK_VALUE = {letter: index for index, letter in enumerate(_CHECK_ALPHABET)}
_DIGIT_VALUE = {str(digit): digit for digit in range(10)}

_TEMPORARY_UPN = re.compile(r"[A-Z][0-9]{11}[A-Z]")
_UPN_SHAPE = re.compile(r"[A-Z][0-9]{11}[0-9A-Z]")
#: A permanent UPN ends in a digit, a temporary one in a check-alphabet letter.
_LAST_CHARACTERS = frozenset("0123456789" + _CHECK_ALPHABET)
_URN = re.compile(r"[0-9]{6}")
_LAESTAB = re.compile(r"[0-9]{7}")
_LA_CODE = re.compile(r"[0-9]{3}")


def is_current_la(code: str) -> bool:
    """A current English LA: the only codes a school, an EHE service or a social care team reports under."""
    return code in CURRENT_LA_CODES


def is_former_la(code: str) -> bool:
    return code in FORMER_LA_CODES


def is_known_la(code: str) -> bool:
    """A current or former English LA code."""
    return code in CURRENT_LA_CODES or code in FORMER_LA_CODES


def is_upn_allocating_la(code: str) -> bool:
    """Digits 2-4 of a valid UPN: a current or former English LA, a Welsh LA, or a DfE pseudo-LA."""
    return code in _UPN_ALLOCATING_CODES


def la_name(code: str) -> str | None:
    """The LA's name for a current or former code; None for any other."""
    return CURRENT_LA_NAMES.get(code) or FORMER_LA_NAMES.get(code)


def is_urn(value: str) -> bool:
    return _URN.fullmatch(value) is not None


def is_laestab(value: str) -> bool:
    return _LAESTAB.fullmatch(value) is not None


def is_la_code_format(value: str) -> bool:
    return _LA_CODE.fullmatch(value) is not None


def _weighted_groups(first_weight: int, length: int) -> dict[str, int]:
    """Every group of `length` digits, to its digits' weighted sum when the group's first digit has weight
    `first_weight`."""
    weights = range(first_weight, first_weight + length)
    groups = (f"{number:0{length}d}" for number in range(10**length))
    return {group: sum(int(digit) * weight for digit, weight in zip(group, weights, strict=True)) for group in groups}


# The eleven digits (weights 2 to 12) as three looked-up groups: a third of the cost of weighting them one
# by one, and this runs for every record received. A group holding anything but ASCII digits is not a key.
_DIGITS_1_TO_4 = _weighted_groups(2, 4)
_DIGITS_5_TO_8 = _weighted_groups(6, 4)
_DIGITS_9_TO_11 = _weighted_groups(10, 3)


def upn_check_letter(body: str) -> str:
    """The check letter for a UPN's last 12 characters (11 digits, then a digit or a temporary letter).

    Each character is weighted by its position in the UPN (2 to 13); a final letter counts as its index in
    the check alphabet. The sum mod 23 indexes the alphabet.
    """
    if len(body) != 12:
        raise ValueError("a UPN body is 12 characters")
    last = body[11]
    last_value = _DIGIT_VALUE.get(last)
    if last_value is None:
        last_value = _CHECK_VALUE.get(last)
    first = _DIGITS_1_TO_4.get(body[:4])
    middle = _DIGITS_5_TO_8.get(body[4:8])
    rest = _DIGITS_9_TO_11.get(body[8:11])
    if last_value is None or first is None or middle is None or rest is None:
        raise ValueError("a UPN body holds only digits and, last, a check-alphabet letter")
    return _CHECK_ALPHABET[(first + middle + rest + 13 * last_value) % 23]


def is_temporary_upn(upn: str) -> bool:
    return _TEMPORARY_UPN.fullmatch(upn) is not None


def upn_problems(upn: str, field: str = "upn") -> list[Problem]:
    """Everything wrong with a UPN: its format, or else its allocating LA and its check letter."""
    if _UPN_SHAPE.fullmatch(upn) is None or upn[-1] not in _LAST_CHARACTERS:
        return [
            Problem(
                ProblemCode.UPN_FORMAT,
                "UPN must be 13 characters: a capital check letter, 11 digits, then a digit "
                "(permanent UPN) or a capital letter other than I, O or S (temporary UPN); send the UPN "
                "exactly as held in the MIS, without spaces",
                field,
            )
        ]
    problems: list[Problem] = []
    if not is_upn_allocating_la(upn[1:4]):
        problems.append(
            Problem(
                ProblemCode.UPN_LA_UNKNOWN,
                f"UPN characters 2-4 ({upn[1:4]}) are not an LA code that allocates UPNs; check the UPN "
                "against the pupil's record or common transfer file and resend",
                field,
            )
        )
    if upn_check_letter(upn[1:]) != upn[0]:
        problems.append(
            Problem(
                ProblemCode.UPN_CHECK_LETTER,
                "UPN check letter does not match its other 12 characters, so the UPN was mis-keyed; "
                "re-key it from the pupil's record or common transfer file (do not just change the "
                "letter) and resend",
                field,
            )
        )
    return problems


def upn_problem(upn: str, field: str = "upn") -> Problem | None:
    """The first thing wrong with a UPN, or None if it is valid."""
    problems = upn_problems(upn, field)
    return problems[0] if problems else None


def is_valid_upn(upn: str) -> bool:
    return not upn_problems(upn)
