"""Scenarios beyond the shared worked examples: every rule, its negative cases and its edges."""

from __future__ import annotations

from collections.abc import Callable

from tests.scenarios.builder import (
    ABROAD,
    BHM_A,
    COV_A,
    COV_B,
    DUD_A,
    STAFF_A,
    UNKNOWN,
    WAL_SPECIAL,
    Scenario,
    added,
    ehe,
    removed,
    roll,
    status,
    tick,
    to_la,
    to_school,
    upn,
)

# Tue 4 Mar 2025 is the usual removal day: 10 school days before is Tue 11 Feb (the February half-term
# is skipped), 10 after is Tue 18 Mar, 20 before is Tue 28 Jan, 5 after is Tue 11 Mar, 6 after is Wed 12 Mar.
D = "2025-03-04"
MND, TNC, TNS = "MISSING_NO_DESTINATION", "TRANSITION_NOT_COMPLETED", "TRANSFER_NOT_STARTED"
MOOA, LOCATED, OCP = "MOVED_OUT_OF_AREA", "CHILD_LOCATED", "OPEN_CASE_PROTECTED"
ENC, ENOT, ECR, EPC = "EHE_NOT_CONFIRMED", "EHE_NOTIFIED", "EHE_CONSENT_REQUIRED", "EHE_PROTECTED_CHILD"
ORAL, ENP = "ORAL_EHE_INDICATION", "EXCLUDED_NO_PROVISION"
CME, SC, EHE = "CME_OFFICER", "SOCIAL_CARE", "EHE_SERVICE"

SCENARIOS: list[Scenario] = []


def scenario(story: str) -> Callable[[Callable[[str], Scenario]], Callable[[str], Scenario]]:
    """Registers a scenario builder; each gets its own UPN so scenarios can share a broker."""

    def register(build: Callable[[str], Scenario]) -> Callable[[str], Scenario]:
        built = build(upn("330", 900_000 + len(SCENARIOS)))
        built.name = f"s{len(SCENARIOS) + 1:02d}_{build.__name__}"
        built.story = story
        SCENARIOS.append(built)
        return build

    return register


@scenario("A removal on ground H with no destination at all opens a CME case at once.")
def missing_without_destination(p: str) -> Scenario:
    return Scenario("", "", [removed(p, COV_A, D, "H_NOT_RETURNED_FROM_LEAVE")], [(MND, CME, "331", p)])


@scenario("A looked-after child placed by Staffordshire goes missing from a Coventry school.")
def missing_looked_after_out_of_area(p: str) -> Scenario:
    return Scenario("", "", [
        status(p, "860", lac=True),
        removed(p, COV_A, D, "G_MOVED_AWAY", destination=UNKNOWN),
    ], [(MND, CME, "331", p), (MND, SC, "860", p)])


@scenario("Gone abroad is accepted for a child who is not protected: no alert.")
def abroad_not_protected(p: str) -> Scenario:
    return Scenario("", "", [removed(p, COV_A, D, "G_MOVED_AWAY", destination=ABROAD), tick("2025-03-20")])


@scenario("Gone abroad is not enough for a child on a protection plan: missing, immediately.")
def abroad_protected(p: str) -> Scenario:
    return Scenario("", "", [
        status(p, "331", cp=True),
        removed(p, COV_A, D, "G_MOVED_AWAY", destination=ABROAD),
    ], [(MND, CME, "331", p), (MND, SC, "331", p)])


@scenario("A protected child said to move to Dudley with no school: missing now, and the transition lapses.")
def protected_moving_to_other_la(p: str) -> Scenario:
    return Scenario("", "", [
        status(p, "331", cp=True),
        removed(p, COV_A, D, "G_MOVED_AWAY", destination=to_la("332")),
        tick("2025-03-19"),
    ], [
        (MND, CME, "331", p), (MND, SC, "331", p), (MOOA, CME, "332", p),
        (TNC, CME, "331", p), (TNC, CME, "332", p), (TNC, SC, "331", p),
    ])


@scenario("Already on roll at another school (ADDED 5 school days before the removal): not missing.")
def on_roll_elsewhere_before_removal(p: str) -> Scenario:
    return Scenario("", "", [
        added(p, COV_B, "2025-02-25"),
        removed(p, COV_A, D, "G_MOVED_AWAY", destination=UNKNOWN),
    ])


@scenario("The new school's ADDED arrives before the old school's REMOVED: not missing.")
def new_school_added_arrives_first(p: str) -> Scenario:
    return Scenario("", "", [
        added(p, COV_B, "2025-03-06"),
        removed(p, COV_A, D, "I_CONTINUOUS_ABSENCE", destination=UNKNOWN),
    ])


@scenario("An ADDED on the 11th school day before the removal is too old to count: missing.")
def added_eleven_school_days_before(p: str) -> Scenario:
    return Scenario("", "", [
        added(p, COV_B, "2025-02-10"),
        removed(p, COV_A, D, "G_MOVED_AWAY", destination=UNKNOWN),
    ], [(MND, CME, "331", p)])


@scenario("An ADDED on exactly the 10th school day before the removal counts: not missing.")
def added_ten_school_days_before(p: str) -> Scenario:
    return Scenario("", "", [
        added(p, COV_B, "2025-02-11"),
        removed(p, COV_A, D, "G_MOVED_AWAY", destination=UNKNOWN),
    ])


@scenario("A standard transition with no destination is a transfer to watch, not a missing child.")
def standard_transition_unknown_destination(p: str) -> Scenario:
    return Scenario("", "", [
        removed(p, COV_A, "2025-07-22", "G_MOVED_AWAY", destination=UNKNOWN, standard=True),
        tick("2025-10-01"),
    ], [(TNS, CME, "331", p)])


@scenario("A child who died raises no CME alert.")
def died(p: str) -> Scenario:
    return Scenario("", "", [removed(p, COV_A, D, "K_DIED"), tick("2025-03-20")])


@scenario("Deadline across the early May bank holiday: not passed on its 10th school day, Fri 16 May.")
def transition_deadline_day_bank_holiday(p: str) -> Scenario:
    return Scenario("", "", [
        removed(p, COV_A, "2025-05-01", "A_REGISTERED_ELSEWHERE", destination=to_school(COV_B)),
        tick("2025-05-16"),
    ])


@scenario("The same deadline has passed on Saturday 17 May, the day after.")
def transition_deadline_passed_on_weekend(p: str) -> Scenario:
    return Scenario("", "", [
        removed(p, COV_A, "2025-05-01", "A_REGISTERED_ELSEWHERE", destination=to_school(COV_B)),
        tick("2025-05-16"),
        tick("2025-05-17"),
    ], [(TNC, CME, "331", p)])


@scenario("Re-admitted to the removing school is not a completed transition.")
def readmitted_to_same_school(p: str) -> Scenario:
    return Scenario("", "", [
        removed(p, COV_A, D, "A_REGISTERED_ELSEWHERE", destination=to_school(COV_B)),
        added(p, COV_A, "2025-03-06"),
        tick("2025-03-19"),
    ], [(TNC, CME, "331", p)])


@scenario("An ADDED on the 10th school day before, arriving late, completes the transition.")
def transition_completed_by_late_early_added(p: str) -> Scenario:
    return Scenario("", "", [
        removed(p, COV_A, D, "A_REGISTERED_ELSEWHERE", destination=to_school(COV_B)),
        added(p, COV_B, "2025-02-11"),
        tick("2025-03-19"),
    ])


@scenario("Moving to a Dudley school: Dudley is told at once, both LAs when it lapses, both when found.")
def cross_la_transition_two_holders(p: str) -> Scenario:
    return Scenario("", "", [
        removed(p, COV_A, D, "A_REGISTERED_ELSEWHERE", destination=to_school(DUD_A)),
        tick("2025-03-19"),
        added(p, DUD_A, "2025-03-24"),
        tick("2025-04-01"),
    ], [
        (MOOA, CME, "332", p), (TNC, CME, "331", p), (TNC, CME, "332", p),
        (LOCATED, CME, "331", p), (LOCATED, CME, "332", p),
    ])


@scenario("A Year 6 leaver who starts secondary school in September: no alert.")
def transfer_completed_in_september(p: str) -> Scenario:
    return Scenario("", "", [
        removed(p, COV_A, "2025-07-18", "A_REGISTERED_ELSEWHERE", destination=to_school(COV_B), standard=True),
        added(p, COV_B, "2025-09-03"),
        tick("2025-10-01"),
    ])


@scenario("Leaving at the end of compulsory school age is not a transfer.")
def leaving_compulsory_age(p: str) -> Scenario:
    return Scenario("", "", [
        removed(p, COV_A, "2025-07-22", "L_CEASED_COMPULSORY_AGE", standard=True),
        tick("2025-10-01"),
    ])


@scenario("A standard-transition leaver going abroad is not watched for a transfer.")
def transfer_abroad(p: str) -> Scenario:
    return Scenario("", "", [
        removed(p, COV_A, "2025-07-22", "A_REGISTERED_ELSEWHERE", destination=ABROAD, standard=True),
        tick("2025-10-01"),
    ])


@scenario("EHE removal with no written notice: the deadline has not passed on its 5th school day.")
def ehe_deadline_day(p: str) -> Scenario:
    return Scenario("", "", [removed(p, COV_A, D, "F_HOME_EDUCATION"), tick("2025-03-11")],
                    [(ENOT, EHE, "331", p)])


@scenario("EHE removal with no written notice: not confirmed once the 5th school day has passed.")
def ehe_not_confirmed(p: str) -> Scenario:
    return Scenario("", "", [
        removed(p, COV_A, D, "F_HOME_EDUCATION"), tick("2025-03-11"), tick("2025-03-12"),
    ], [(ENOT, EHE, "331", p), (ENC, CME, "331", p)])


@scenario("The written notice arrives after the removal but is dated within the window: confirmed.")
def ehe_written_notice_arrives_late(p: str) -> Scenario:
    return Scenario("", "", [
        removed(p, COV_A, D, "F_HOME_EDUCATION"),
        ehe(p, "331", "WRITTEN", "2025-03-10"),
        tick("2025-03-12"),
    ], [(ENOT, EHE, "331", p)])


@scenario("A written notice on the 21st school day before the removal is too old.")
def ehe_written_notice_too_early(p: str) -> Scenario:
    return Scenario("", "", [
        ehe(p, "331", "WRITTEN", "2025-01-27"),
        removed(p, COV_A, D, "F_HOME_EDUCATION"),
        tick("2025-03-12"),
    ], [(ENOT, EHE, "331", p), (ENC, CME, "331", p)])


@scenario("A written notice on exactly the 20th school day before counts, from any LA.")
def ehe_written_notice_twentieth_day(p: str) -> Scenario:
    return Scenario("", "", [
        ehe(p, "336", "WRITTEN", "2025-01-28"),
        removed(p, COV_A, D, "F_HOME_EDUCATION"),
        tick("2025-03-12"),
    ], [(ENOT, EHE, "331", p)])


@scenario("An oral indication while on roll is passed on; oral is not written, so EHE is not confirmed.")
def oral_indication_then_removal(p: str) -> Scenario:
    return Scenario("", "", [
        added(p, COV_A, "2024-09-02"),
        ehe(p, "331", "ORAL", "2025-02-26", school_urn=COV_A["urn"]),
        removed(p, COV_A, D, "F_HOME_EDUCATION"),
        tick("2025-03-12"),
    ], [(ORAL, EHE, "331", p), (ENOT, EHE, "331", p), (ENC, CME, "331", p)])


@scenario("An oral indication for a child on no school's roll raises nothing.")
def oral_indication_not_on_roll(p: str) -> Scenario:
    return Scenario("", "", [
        added(p, COV_A, "2024-09-02"),
        removed(p, COV_A, "2025-02-03", "A_REGISTERED_ELSEWHERE", destination=to_school(COV_B)),
        added(p, COV_B, "2025-02-04"),
        removed(p, COV_B, D, "K_DIED"),
        ehe(p, "331", "ORAL", "2025-03-05"),
    ])


@scenario("An oral indication goes to the EHE service of the notification's LA.")
def oral_indication_other_la(p: str) -> Scenario:
    return Scenario("", "", [added(p, COV_A, "2024-09-02"), ehe(p, "332", "ORAL", "2025-02-26")],
                    [(ORAL, EHE, "332", p)])


@scenario("Home education from a special school needs the LA's consent.")
def ehe_from_special_school(p: str) -> Scenario:
    return Scenario("", "", [
        added(p, WAL_SPECIAL, "2024-09-02"),
        ehe(p, "335", "WRITTEN", "2025-03-03"),
        removed(p, WAL_SPECIAL, D, "F_HOME_EDUCATION"),
        tick("2025-03-12"),
    ], [(ENOT, EHE, "335", p), (ECR, EHE, "335", p), (ECR, CME, "335", p)])


@scenario("Home education under a school attendance order needs the order revoked first.")
def ehe_under_attendance_order(p: str) -> Scenario:
    return Scenario("", "", [
        status(p, "331", sao=True),
        ehe(p, "331", "WRITTEN", D),
        removed(p, COV_A, D, "F_HOME_EDUCATION"),
        tick("2025-03-12"),
    ], [(ENOT, EHE, "331", p), (ECR, EHE, "331", p), (ECR, CME, "331", p)])


@scenario("Home education of a looked-after child: social care of the placing LA is told at once.")
def ehe_looked_after_out_of_area(p: str) -> Scenario:
    return Scenario("", "", [
        status(p, "860", lac=True),
        ehe(p, "331", "WRITTEN", D),
        removed(p, COV_A, D, "F_HOME_EDUCATION"),
        tick("2025-03-12"),
    ], [(ENOT, EHE, "331", p), (EPC, SC, "860", p)])


@scenario("A protected child removed for EHE without notice: every recipient, at once and at the deadline.")
def ehe_not_confirmed_protected(p: str) -> Scenario:
    return Scenario("", "", [
        status(p, "331", cp=True),
        removed(p, COV_A, D, "F_HOME_EDUCATION"),
        tick("2025-03-12"),
    ], [(ENOT, EHE, "331", p), (EPC, SC, "331", p), (ENC, CME, "331", p), (ENC, SC, "331", p)])


@scenario("Back on a school roll after an EHE removal: nothing to confirm.")
def ehe_then_readmitted(p: str) -> Scenario:
    return Scenario("", "", [
        removed(p, COV_A, D, "F_HOME_EDUCATION"),
        added(p, COV_B, "2025-03-06"),
        tick("2025-03-12"),
    ], [(ENOT, EHE, "331", p)])


@scenario("Permanently excluded, no provision by the 6th school day: alert the day after it.")
def excluded_no_provision(p: str) -> Scenario:
    return Scenario("", "", [
        removed(p, COV_A, D, "O_PERMANENTLY_EXCLUDED"), tick("2025-03-12"), tick("2025-03-13"),
    ], [(ENP, CME, "331", p)])


@scenario("Excluded, then on a pupil referral unit's roll on the 6th school day: no alert.")
def excluded_provision_on_last_day(p: str) -> Scenario:
    return Scenario("", "", [
        removed(p, COV_A, D, "O_PERMANENTLY_EXCLUDED"),
        added(p, BHM_A, "2025-03-12"),
        tick("2025-03-13"),
    ])


@scenario("Excluded, provision found only after the deadline: alert, then located.")
def excluded_provision_too_late(p: str) -> Scenario:
    return Scenario("", "", [
        removed(p, COV_A, D, "O_PERMANENTLY_EXCLUDED"),
        tick("2025-03-13"),
        added(p, BHM_A, "2025-03-13"),
    ], [(ENP, CME, "331", p), (LOCATED, CME, "331", p)])


@scenario("Missing, then found looked-after: social care told of the open case, then of the finding.")
def located_while_protected(p: str) -> Scenario:
    return Scenario("", "", [
        removed(p, COV_A, D, "G_MOVED_AWAY", destination=UNKNOWN),
        status(p, "860", lac=True, at="2025-03-05"),
        added(p, BHM_A, "2025-03-10"),
    ], [(MND, CME, "331", p), (OCP, SC, "860", p), (LOCATED, CME, "331", p), (LOCATED, SC, "860", p)])


@scenario("An open case is flagged to each protecting LA's social care once.")
def open_case_protected_once_per_la(p: str) -> Scenario:
    return Scenario("", "", [
        removed(p, COV_A, D, "G_MOVED_AWAY", destination=UNKNOWN),
        status(p, "331", cp=True, at="2025-03-05"),
        status(p, "331", cp=True, at="2025-03-06"),
        status(p, "860", lac=True, at="2025-03-07"),
    ], [(MND, CME, "331", p), (OCP, SC, "331", p), (OCP, SC, "860", p)])


@scenario("Social care already alerted for the case: a repeated status raises nothing more.")
def open_case_social_care_already_told(p: str) -> Scenario:
    return Scenario("", "", [
        status(p, "331", cp=True),
        removed(p, COV_A, D, "G_MOVED_AWAY", destination=UNKNOWN),
        status(p, "331", cp=True, at="2025-03-05"),
    ], [(MND, CME, "331", p), (MND, SC, "331", p)])


@scenario("A record delivered twice, and the same change resent under a new event id: one alert.")
def duplicates_and_resends(p: str) -> Scenario:
    first = removed(p, COV_A, D, "G_MOVED_AWAY", destination=UNKNOWN)
    resend = removed(p, COV_A, D, "I_CONTINUOUS_ABSENCE", destination=UNKNOWN)
    return Scenario("", "", [first, first, resend], [(MND, CME, "331", p)])


@scenario("An older tick never moves the business date back.")
def stale_tick_ignored(p: str) -> Scenario:
    return Scenario("", "", [
        tick("2025-03-18"),
        removed(p, COV_A, D, "A_REGISTERED_ELSEWHERE", destination=to_school(COV_B)),
        tick("2025-03-17"),
        tick("2025-03-18"),
    ])


@scenario("A deadline that had already passed when its removal arrived is found at the next advance.")
def deadline_passed_before_removal_arrived(p: str) -> Scenario:
    return Scenario("", "", [
        tick("2025-04-01"),
        removed(p, COV_A, D, "O_PERMANENTLY_EXCLUDED"),
        tick("2025-04-02"),
    ], [(ENP, CME, "331", p)])


@scenario("Finding the child cancels pending deadlines, even one a re-admission alone would not meet.")
def located_cancels_pending_deadlines(p: str) -> Scenario:
    return Scenario("", "", [
        status(p, "331", cp=True),
        removed(p, COV_A, D, "G_MOVED_AWAY", destination=to_la("860")),
        added(p, COV_A, "2025-03-05"),
        tick("2025-03-20"),
    ], [
        (MND, CME, "331", p), (MND, SC, "331", p), (MOOA, CME, "860", p),
        (LOCATED, CME, "331", p), (LOCATED, SC, "331", p),
    ])


@scenario("A case held by two LAs, closed by an ADDED dated before the removal at another school.")
def two_holders_located_by_earlier_added(p: str) -> Scenario:
    return Scenario("", "", [
        removed(p, COV_A, D, "A_REGISTERED_ELSEWHERE", destination=to_school(DUD_A)),
        tick("2025-03-19"),
        added(p, DUD_A, "2025-02-28"),
    ], [
        (MOOA, CME, "332", p), (TNC, CME, "331", p), (TNC, CME, "332", p),
        (LOCATED, CME, "331", p), (LOCATED, CME, "332", p),
    ])


@scenario("Invalid records are dead-lettered and change nothing; the valid one still alerts.")
def invalid_records_dead_lettered(p: str) -> Scenario:
    bad_upn = removed("A" + p[1:] if p[0] != "A" else "B" + p[1:], COV_A, D, "G_MOVED_AWAY")
    ground_on_added = roll("ADDED", p, COV_B, "2025-03-05", ground="G_MOVED_AWAY")
    return Scenario("", "", [
        bad_upn, ground_on_added, removed(p, COV_A, D, "G_MOVED_AWAY", destination=UNKNOWN),
    ], [(MND, CME, "331", p)])


@scenario("Removed on the last day of the spring term: the Easter break holds no school days.")
def removal_on_last_day_of_term(p: str) -> Scenario:
    return Scenario("", "", [
        removed(p, COV_A, "2025-04-11", "A_REGISTERED_ELSEWHERE", destination=to_school(COV_B)),
        tick("2025-05-12"),
        tick("2025-05-13"),
    ], [(TNC, CME, "331", p)])


@scenario("Moving to another LA with no school named: that LA is told at once; both if it lapses.")
def moved_to_other_la(p: str) -> Scenario:
    return Scenario("", "", [
        removed(p, COV_A, D, "G_MOVED_AWAY", destination=to_la("860")),
        tick("2025-03-19"),
    ], [(MOOA, CME, "860", p), (TNC, CME, "331", p), (TNC, CME, "860", p)])


@scenario("A looked-after child's transition lapses: social care of the placing LA is told too.")
def transition_lapses_looked_after(p: str) -> Scenario:
    return Scenario("", "", [
        removed(p, STAFF_A, D, "A_REGISTERED_ELSEWHERE", destination=to_school(BHM_A)),
        status(p, "336", lac=True, at="2025-03-10"),
        tick("2025-03-19"),
    ], [(MOOA, CME, "330", p), (TNC, CME, "860", p), (TNC, CME, "330", p), (TNC, SC, "336", p)])
