"""Regional enquiries (which LAs of the region hold or held a case for a child) and possible matches for cases
without a UPN among the LA's known children."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from rapidfuzz import fuzz
from rapidfuzz.distance import JaroWinkler
from rapidfuzz.utils import default_process
from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from processors.identifiers import la_name
from sinks.register.audit import AuditLog, events_for
from sinks.register.regions import same_region_las
from sinks.register.schema import AlertRow, CaseHolderRow, CaseRow, ChildRow, ReferralRow

#: Lowest name similarity (0-100) a known child of the same date of birth needs to be offered as a match.
MATCH_THRESHOLD = 80.0
#: Most possible matches offered for one case.
MAX_MATCHES = 10
#: Most children one surname and date-of-birth enquiry answers about: a wider net is not an enquiry.
MAX_CHILDREN = 20


@dataclass(frozen=True, slots=True)
class Holding:
    """One LA of the region holding, or having held, a case for the child: the LA and the case's dates."""

    la_code: str
    la_name: str
    status: str
    opened_on: date | None
    closed_on: date | None


@dataclass(frozen=True, slots=True)
class LookupResult:
    """What a regional enquiry answers about one child: the region's LAs with a case, and the last school the
    pipeline saw (in the region). `upn` and `case_ids` are for the audit trail; only a UPN the officer
    searched by is shown back."""

    upn: str | None
    holdings: tuple[Holding, ...]
    last_school_urn: str | None
    last_school_seen_on: date | None
    case_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PossibleMatch:
    """A known child of the LA who may be the child of a case without a UPN."""

    upn: str
    forename: str
    surname: str
    date_of_birth: date
    score: float


def lookup(
    sessions: sessionmaker[Session],
    asking_la: str,
    upn: str | None = None,
    surname: str | None = None,
    date_of_birth: date | None = None,
) -> list[LookupResult]:
    """The children found by UPN, or by surname and date of birth, with the cases of the asking LA's region
    and the last school seen there; nothing from outside the region, and nothing else about the case."""
    region = sorted(same_region_las(asking_la))
    if not region or (upn is None and (surname is None or date_of_birth is None)):
        return []
    with sessions() as session:
        subjects: list[tuple[str | None, str | None]] = []
        if upn is not None:
            subjects.append((upn, None))
        elif surname is not None and date_of_birth is not None:
            wanted = surname.strip().casefold()
            subjects += [
                (found, None)
                for found in session.scalars(
                    select(ChildRow.upn).where(
                        func.lower(ChildRow.surname) == wanted, ChildRow.date_of_birth == date_of_birth
                    ).order_by(ChildRow.upn).limit(MAX_CHILDREN)
                )
            ]
            # Referred children no UPN is known for, referred to an LA of the region.
            subjects += [
                (None, referral_id)
                for referral_id in session.scalars(
                    select(ReferralRow.referral_id).where(
                        func.lower(ReferralRow.surname) == wanted,
                        ReferralRow.date_of_birth == date_of_birth,
                        ReferralRow.upn.is_(None),
                        ReferralRow.la_code.in_(region),
                    ).order_by(ReferralRow.referral_id).limit(MAX_CHILDREN)
                )
            ]
        results = [_about(session, region, child_upn, referral_id) for child_upn, referral_id in subjects]
    return [result for result in results if result.holdings or result.last_school_urn]


def _about(session: Session, region: list[str], upn: str | None, referral_id: str | None) -> LookupResult:
    condition = CaseRow.upn == upn if upn is not None else CaseRow.referral_id == referral_id
    rows = session.execute(
        select(CaseRow.case_id, CaseHolderRow.la_code, CaseRow.status, CaseRow.opened_on, CaseRow.closed_on)
        .join(CaseHolderRow, CaseHolderRow.case_id == CaseRow.case_id)
        .where(condition, CaseHolderRow.la_code.in_(region))
        .order_by(CaseRow.opened_on.desc().nulls_last(), CaseHolderRow.la_code)
    ).all()
    holdings = tuple(
        Holding(la_code, la_name(la_code) or f"LA {la_code}", status, opened_on, closed_on)
        for _, la_code, status, opened_on, closed_on in rows
    )
    school: tuple[str | None, date | None] = (None, None)
    if upn is not None:
        latest = session.execute(
            select(AlertRow.school_urn, AlertRow.raised_on)
            .where(AlertRow.upn == upn, AlertRow.school_urn.is_not(None), AlertRow.la_code.in_(region))
            .order_by(AlertRow.raised_on.desc(), AlertRow.alert_id.desc())
            .limit(1)
        ).first()
        if latest is not None:
            school = (latest[0], latest[1])
    case_ids = tuple(dict.fromkeys(row[0] for row in rows))
    return LookupResult(upn, holdings, school[0], school[1], case_ids)


def name_similarity(forename_a: str, surname_a: str, forename_b: str, surname_b: str) -> float:
    """How alike two children's names are, 0-100: the better of the whole names compared word by word (so a
    swapped forename and surname still match) and the average of forename and surname compared apart
    (Jaro-Winkler, kind to typing slips and shortened forenames)."""
    whole = fuzz.token_sort_ratio(f"{forename_a} {surname_a}", f"{forename_b} {surname_b}", processor=default_process)
    parts = (
        JaroWinkler.normalized_similarity(forename_a, forename_b, processor=default_process)
        + JaroWinkler.normalized_similarity(surname_a, surname_b, processor=default_process)
    ) * 50
    return round(max(whole, parts), 1)


def possible_matches(sessions: sessionmaker[Session], case_id: str, la_code: str) -> list[PossibleMatch]:
    """Children the LA knows (alerted to it, or of a case it holds) with the referred child's date of birth and
    a close name, best first; none for a case with a UPN, or whose referral gives no date of birth."""
    with sessions() as session:
        case = session.get(CaseRow, case_id)
        if case is None or case.upn is not None or case.referral_id is None:
            return []
        referral = session.get(ReferralRow, case.referral_id)
        if referral is None or referral.date_of_birth is None:
            return []
        known_to_la = or_(
            exists().where(AlertRow.upn == ChildRow.upn, AlertRow.la_code == la_code),
            exists().where(
                CaseRow.upn == ChildRow.upn, CaseHolderRow.case_id == CaseRow.case_id, CaseHolderRow.la_code == la_code
            ),
        )
        candidates = session.execute(
            select(ChildRow.upn, ChildRow.forename, ChildRow.surname, ChildRow.date_of_birth).where(
                ChildRow.date_of_birth == referral.date_of_birth,
                ChildRow.forename.is_not(None),
                ChildRow.surname.is_not(None),
                known_to_la,
            )
        ).all()
        forename, surname = referral.forename, referral.surname
    matches = []
    for upn, their_forename, their_surname, born in candidates:
        if their_forename is None or their_surname is None or born is None:
            continue
        score = name_similarity(forename, surname, their_forename, their_surname)
        if score >= MATCH_THRESHOLD:
            matches.append(PossibleMatch(upn, their_forename, their_surname, born, score))
    matches.sort(key=lambda match: (-match.score, match.upn))
    return matches[:MAX_MATCHES]


def audit_lookup(
    register: AuditLog, principal: str, la_code: str, role: str, channel: str, upn: str | None,
    results: list[LookupResult],
) -> None:
    """One audit row per child found (or one for the enquiry that found nothing), before anything is shown."""
    how = "lookup by UPN" if upn is not None else "lookup by surname and date of birth"
    if results:
        shown = [(None, result.upn) for result in results]
        register.record_audit(events_for(principal, la_code, role, channel, shown, detail=f"{how}: found"))
    else:
        register.record_audit(events_for(principal, la_code, role, channel, [(None, upn)], detail=f"{how}: none"))
