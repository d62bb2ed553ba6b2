"""Plain-English reasons an LA officer can act on; they name schools, grounds and dates, never the child."""

from __future__ import annotations

import functools
from datetime import date

from processors.records import CMEReferral, DestinationKind, Ground, ReferralConcern, ReferrerAgency, Rule
from processors.state import Case, Deadline, Removal, StatusEntry

GROUND_WORDS = {
    Ground.A_REGISTERED_ELSEWHERE: "registered at another school (ground A)",
    Ground.B_NURSERY_ENDED: "nursery education ended (ground B)",
    Ground.C_DUAL_REGISTRATION_ENDED: "dual registration ended (ground C)",
    Ground.D_SAO_AMENDED: "school attendance order amended to name another school (ground D)",
    Ground.E_SAO_REVOKED: "school attendance order revoked (ground E)",
    Ground.F_HOME_EDUCATION: "parent's written notice of elective home education (ground F)",
    Ground.G_MOVED_AWAY: "moved away (ground G)",
    Ground.H_NOT_RETURNED_FROM_LEAVE: "did not return after leave of absence (ground H)",
    Ground.I_CONTINUOUS_ABSENCE: "at least 20 school days' continuous absence (ground I)",
    Ground.J_DETAINED: "detained under a sentence (ground J)",
    Ground.K_DIED: "died (ground K)",
    Ground.L_CEASED_COMPULSORY_AGE: "ceased to be of compulsory school age (ground L)",
    Ground.M_BOARDING_FEES_UNPAID: "boarding fees unpaid (ground M)",
    Ground.N_LEFT_INDEPENDENT_SCHOOL: "left an independent or non-maintained special school (ground N)",
    Ground.O_PERMANENTLY_EXCLUDED: "permanently excluded (ground O)",
}

PROTECTED_NOTE = (
    " The child has a child protection plan or is looked after: tell the allocated social worker today."
)


@functools.lru_cache(maxsize=4096)
def day(value: date) -> str:
    """A date as officers read it ("Mon 30 Sep 2024"); kept, since alerts fall on a few hundred dates."""
    return f"{value:%a} {value.day} {value:%b %Y}"


def _removed(removal: Removal) -> str:
    return (
        f"Removed from {removal.school_name} (URN {removal.school_urn}) on {day(removal.effective_date)}, "
        f"{GROUND_WORDS[removal.ground]}"
    )


def missing_no_destination(removal: Removal, kind: DestinationKind | None, protected: bool) -> str:
    if kind in (None, DestinationKind.UNKNOWN):
        where = "with no known destination"
    elif kind is DestinationKind.ABROAD:
        where = "reported as gone abroad, which is unconfirmed"
    else:
        where = "reported as moving to another LA with no school named"
    text = (
        f"{_removed(removal)}, {where}, and not on roll at any other school. Add the child to the CME "
        "register and start reasonable enquiries: contact the family, the school and neighbouring LAs, and "
        "check the Lost Pupil Database."
    )
    return text + (PROTECTED_NOTE if protected else "")


def moved_out_of_area(removal: Removal, kind: DestinationKind | None) -> str:
    if kind is DestinationKind.SCHOOL:
        expect = "a school in your area is named as the destination: expect the child on its roll"
    else:
        expect = "the family is reported as moving to your area with no school named: expect an application"
    return (
        f"{_removed(removal)}; {expect}. If the child does not appear, liaise with LA "
        f"{removal.school_la}'s CME officer."
    )


def ehe_notified(removal: Removal) -> str:
    return (
        f"{_removed(removal)}. Contact the family to confirm the home education arrangements and assess "
        "whether the education is suitable."
    )


def ehe_consent_required(removal: Removal, special: bool, attendance_order: bool) -> str:
    why = []
    if special:
        why.append("the school is a special school, so the LA must consent before the name is removed")
    if attendance_order:
        why.append("a school attendance order is in force and must be revoked before the name is removed")
    return f"{_removed(removal)}; {' and '.join(why)}. Check that consent was given, or act now."


def ehe_protected_child(removal: Removal) -> str:
    return (
        f"{_removed(removal)}. The child has a child protection plan or is looked after: review the home "
        "education decision with the allocated social worker today."
    )


def oral_indication(school_urn: str, received_on: date) -> str:
    return (
        f"The parent said on {day(received_on)} that they intend to home educate a child on roll at URN "
        f"{school_urn}; no written notice yet. Contact the family before the child is removed."
    )


def _case_opening(case: Case) -> str:
    """What opened a case, as the end of "The CME case opened ...": a removal, or a referral."""
    if case.opened_by is not None:
        return f"after the removal from {case.opened_by.school_name} on {day(case.opened_by.effective_date)}"
    return f"on {day(case.opened_on)} after a referral"


def child_located(school_name: str, school_urn: str, starting: date, case: Case) -> str:
    return (
        f"On roll at {school_name} (URN {school_urn}) from {day(starting)}. The CME case opened "
        f"{_case_opening(case)} is closed: no further action unless there are other concerns."
    )


_DEADLINE_TEXT = {
    Rule.TRANSITION_NOT_COMPLETED: (
        "The child has not joined another school by {due}, 10 school days after the removal. Contact the "
        "named destination and the family, and treat the child as missing education until found."
    ),
    Rule.TRANSFER_NOT_STARTED: (
        "The child left at a standard transition and has not started at another school by {due}. Check the "
        "admission offer with the expected school and contact the family."
    ),
    Rule.EHE_NOT_CONFIRMED: (
        "No written notice of home education was received by {due} and the child is not on roll anywhere. "
        "Confirm the parent's intention in writing, or treat the child as missing education."
    ),
    Rule.EXCLUDED_NO_PROVISION: (
        "No school or alternative provision had the child on roll by {due}, the sixth school day after the "
        "exclusion. Arrange full-time provision (s19 Education Act 1996)."
    ),
}


def deadline_passed(deadline: Deadline, protected: bool) -> str:
    text = f"{_removed(deadline.removal)}. " + _DEADLINE_TEXT[deadline.rule].format(due=day(deadline.due))
    return text + (PROTECTED_NOTE if protected else "")


def open_case_protected(case: Case, status: StatusEntry) -> str:
    plan = "has a child protection plan" if status.child_protection_plan else "is looked after"
    return (
        f"The child {plan} (LA {status.la_code}) and has had an open CME case since "
        f"{day(case.opened_on)}. {_opened_by(case)}. Tell the allocated social worker today and "
        "agree who leads the enquiries."
    )


def _opened_by(case: Case) -> str:
    if case.opened_by is not None:
        return _removed(case.opened_by)
    return "The case was opened by a referral to the CME officer, not by a removal from roll"


# --- attendance (design v2) --------------------------------------------------------------------------------


def _school(name: str, urn: str) -> str:
    return f"{name} (URN {urn})" if name else f"the school with URN {urn}"


def absence_enquiries_due(name: str, urn: str, first: date, nth: date, days: int) -> str:
    return (
        f"Absent without authorisation from {_school(name, urn)} for {days} school days in a row, from "
        f"{day(first)} to {day(nth)}. The school and the LA must now make reasonable enquiries together to find "
        "the child: the school may delete a pupil for continuous absence (ground I) only after 20 school days "
        "and only once both have made those enquiries and found no reason to believe the child is ill or "
        "prevented from attending."
    )


def not_returned_from_leave(name: str, urn: str, leave: date, first: date, nth: date, days: int) -> str:
    return (
        f"Did not return to {_school(name, urn)} after leave of absence (last day of leave marked "
        f"{day(leave)}): absent without authorisation for {days} school days since, from {day(first)} to "
        f"{day(nth)}. The school and the LA must make reasonable enquiries together now; the school may delete "
        "the pupil for not returning from leave (ground H) only once both have tried to find the child and "
        "there is no reason to believe the child is ill or prevented from returning."
    )


def no_show_after_admission(name: str, urn: str, admitted: date, first_days: list[date]) -> str:
    return (
        f"Admitted to {_school(name, urn)} from {day(admitted)} but not seen at any of the first "
        f"{len(first_days)} days marked since ({', '.join(day(d) for d in first_days)}). A pupil who fails to "
        "attend on the agreed or notified date may never have started: the school must make reasonable "
        "enquiries today and tell the LA if the child cannot be found."
    )


def absence_removal_unsupported(removal: Removal, run: int, needed: int, after_leave: bool) -> str:
    if removal.ground is Ground.H_NOT_RETURNED_FROM_LEAVE and run >= needed and not after_leave:
        support = (
            f"the register shows {run} school days of unauthorised absence before it, but no leave of absence "
            "before them"
        )
    else:
        support = f"the register shows only {run} school day(s) of unauthorised absence before it ({needed} needed)"
    return (
        f"{_removed(removal)}, but {support}. Ask the school for its register and the reasonable enquiries it "
        "made with the LA before deleting the pupil; a deletion the register does not support may be an "
        "illegal removal from roll. Treat the child as missing until located."
    )


# --- referrals (design v2) ---------------------------------------------------------------------------------

AGENCY_WORDS = {
    ReferrerAgency.SCHOOL: "a school",
    ReferrerAgency.HEALTH: "a health practitioner",
    ReferrerAgency.HOUSING: "a housing officer",
    ReferrerAgency.POLICE: "the police",
    ReferrerAgency.YOUTH_JUSTICE: "a youth justice worker",
    ReferrerAgency.SOCIAL_CARE: "children's social care",
    ReferrerAgency.VOLUNTARY: "a voluntary organisation",
    ReferrerAgency.PUBLIC: "a member of the public",
    ReferrerAgency.OTHER: "another agency",
}

CONCERN_WORDS = {
    ReferralConcern.NOT_IN_SCHOOL: "the child is thought not to be in any school",
    ReferralConcern.NOT_ATTENDING: "the child is thought to be on a school's roll but not attending",
    ReferralConcern.EDUCATION_UNSUITABLE: "the child's education is thought not to be suitable or full-time",
    ReferralConcern.NEW_TO_AREA: "the child is thought to be new to the area without a school place",
    ReferralConcern.OTHER: "another concern about the child's education (see the referral's details)",
}


def _referred(referral: CMEReferral) -> str:
    """Who referred and why. The referrer's name and contact stay in the register, never in an alert."""
    referrer = referral.referrer
    who = AGENCY_WORDS[referrer.agency]
    if referrer.anonymous:
        who += ", who asked to stay anonymous"
    else:
        who += " (their contact details are in the CME register)"
    return f"Referred to the CME officer on {day(referral.received_on)} by {who}: {CONCERN_WORDS[referral.concern]}"


def referral_not_on_roll(referral: CMEReferral, protected: bool, named: bool) -> str:
    if referral.upn is None:
        roll = (
            "The referral gives no UPN, so no school roll can be checked: it has a CME case of its own until "
            "an officer links it to the child's UPN or closes it"
        )
    else:
        roll = "The child is not on roll at any school Rollwatch knows of"
    text = (
        f"{_referred(referral)}. {roll}. Add the child to the CME register and make reasonable enquiries: "
        f"contact the family{'' if referral.referrer.anonymous else ' and the referrer'}, check with schools and "
        "with other LAs (regionally or nationally) and the Lost Pupil Database, and record each enquiry on the "
        "case."
    )
    if referral.concern is ReferralConcern.EDUCATION_UNSUITABLE:
        text += (
            " The EHE service should find out where and how the child is educated and whether it is suitable "
            "(an unregistered setting may be an illegal school)."
        )
    if not named:
        text += " The referral gives no date of birth, so this alert names no child: see the referral in the register."
    return text + (PROTECTED_NOTE if protected else "")


def referral_on_roll(referral: CMEReferral, school_urns: list[str], other_las: list[str]) -> str:
    schools = ", ".join(f"URN {urn}" for urn in school_urns)
    text = (
        f"{_referred(referral)}. The child is on roll at {schools}. Ask the school whether the child attends "
        "and share the concern; if the school has not seen the child, it and the LA must make reasonable "
        "enquiries together."
    )
    if other_las:
        las = ", ".join(other_las)
        text += (
            f" The referral went to LA {referral.la_code} and the child is on roll in LA {las}: the CME officers "
            "of these LAs should agree who follows it up."
        )
    return text
