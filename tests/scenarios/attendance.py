"""Replay scenarios for the attendance rules of design.md "Rules (v2)", read from the specification alone.

Each scenario is a story told with registers (`attendance.registers`), roll events, statuses and clock ticks,
and lists every alert the whole rule set must raise for it, v1 rules included, as (rule, recipient, LA, UPN),
each alert once. Dates fall in the 2024/25 school year of the shipped English calendar: spring term from
Mon 6 Jan 2025, February half-term 17-21 Feb, Christmas break 21 Dec 2024 - 5 Jan 2025, early May bank
holiday Mon 5 May. Registers are sent on school days only unless a story says otherwise; a date with no
register neither counts towards nor breaks an absence run.

Counting, as the rules table puts it: a *marked day* is a date with a mark whose sessions are not both
`X`/`Z`/`#`; an *unauthorised day* is a marked day whose counted sessions are all `G`/`N`/`O`; an absence run
is a maximal sequence of consecutive marked days (by date) that are all unauthorised, and its Nth day is the
date of its Nth marked day.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import date
from typing import Any

from processors.calendar import default_calendar
from tests.scenarios.builder import (
    BHM_A,
    COV_A,
    COV_B,
    DUD_A,
    STAFF_A,
    UNKNOWN,
    WAL_SPECIAL,
    Scenario,
    added,
    removed,
    status,
    tick,
    to_school,
    upn,
)

AED, NRFL = "ABSENCE_ENQUIRIES_DUE", "NOT_RETURNED_FROM_LEAVE"
ARU, NSA = "ABSENCE_REMOVAL_UNSUPPORTED", "NO_SHOW_AFTER_ADMISSION"
ATTENDANCE_RULES = frozenset({AED, NRFL, ARU, NSA})
MND = "MISSING_NO_DESTINATION"
CME, SC = "CME_OFFICER", "SOCIAL_CARE"

GROUND_I, GROUND_H = "I_CONTINUOUS_ABSENCE", "H_NOT_RETURNED_FROM_LEAVE"

#: Present all day: `/` in the morning, `\` in the afternoon.
PRESENT = ("/", "\\")

#: The usual removal day, Tue 4 Mar 2025. Its 1st-3rd school days after are Wed 5, Thu 6 and Fri 7 Mar, so
#: `removal_check_days` (3) has passed once the business date is Sat 8 Mar or later.
REMOVAL = "2025-03-04"
LAST_DAY_BEFORE_REMOVAL = "2025-03-03"
CHECK_NOT_YET = "2025-03-07"
CHECK_PASSED = "2025-03-10"

_CALENDAR = default_calendar()
_register_serials = itertools.count(1)
_upn_serials = itertools.count(1)


def child() -> str:
    """A UPN no other scenario uses."""
    return upn("330", 950_000 + next(_upn_serials))


def register(
    at: dict[str, Any],
    day: str,
    marks: list[tuple[str, str, str]],
    register_id: str | None = None,
    recorded_at: str | None = None,
) -> dict[str, Any]:
    """One register of school `at` for `day`; `marks` is a list of (upn, am, pm)."""
    return {
        "topic": "attendance.registers",
        "value": {
            "register_id": register_id or f"00000000-0000-4000-a000-{next(_register_serials):012d}",
            "school": at,
            "date": day,
            "recorded_at": recorded_at or f"{day}T09:35:00Z",
            "marks": [{"upn": pupil, "am": am, "pm": pm} for pupil, am, pm in marks],
        },
    }


def school_days(start: str, count: int) -> list[str]:
    """The first `count` school days of the shipped calendar on or after `start`, as ISO dates."""
    first = date.fromisoformat(start)
    day = first if _CALENDAR.is_school_day(first) else _CALENDAR.nth_school_day_after(first, 1)
    days: list[str] = []
    while len(days) < count:
        days.append(day.isoformat())
        day = _CALENDAR.nth_school_day_after(day, 1)
    return days


def school_days_to(end: str, count: int) -> list[str]:
    """The last `count` school days on or before `end` (a school day), oldest first."""
    last = date.fromisoformat(end)
    if not _CALENDAR.is_school_day(last):
        raise ValueError(f"{end} is not a school day")
    return school_days(_CALENDAR.nth_school_day_before(last, count - 1).isoformat(), count)


def school_day_after(day: str, n: int = 1) -> str:
    """The Nth school day after `day` (`day` itself never counts)."""
    return _CALENDAR.nth_school_day_after(date.fromisoformat(day), n).isoformat()


Code = str | tuple[str, str]


def _sessions(code: Code) -> tuple[str, str]:
    if isinstance(code, tuple):
        return code
    return PRESENT if code == "/" else (code, code)


def marks_on(at: dict[str, Any], pupil: str, days: list[str], codes: list[Code]) -> list[dict[str, Any]]:
    """One register a day for one pupil: `codes[i]` on `days[i]`; a bare code stands for both sessions."""
    if len(days) != len(codes):
        raise ValueError(f"{len(days)} days for {len(codes)} marks")
    return [register(at, day, [(pupil, *_sessions(code))]) for day, code in zip(days, codes, strict=True)]


def run_from(at: dict[str, Any], pupil: str, start: str, codes: list[Code]) -> list[dict[str, Any]]:
    """`codes` laid on consecutive school days from `start`."""
    return marks_on(at, pupil, school_days(start, len(codes)), codes)


def run_to(at: dict[str, Any], pupil: str, end: str, codes: list[Code]) -> list[dict[str, Any]]:
    """`codes` laid on consecutive school days ending on `end`."""
    return marks_on(at, pupil, school_days_to(end, len(codes)), codes)


ATTENDANCE_SCENARIOS: list[Scenario] = []


def scenario(story: str) -> Callable[[Callable[[], Scenario]], Callable[[], Scenario]]:
    """Registers a scenario builder under the next `aNN_` name; the builder's docstring tells the counting."""

    def add(build: Callable[[], Scenario]) -> Callable[[], Scenario]:
        built = build()
        built.name = f"a{len(ATTENDANCE_SCENARIOS) + 1:02d}_{build.__name__}"
        built.story = story
        ATTENDANCE_SCENARIOS.append(built)
        return build

    return add


def absent(n: int, code: str = "O") -> list[Code]:
    """`n` whole days of one unauthorised code (O unless told)."""
    return [code] * n


# --- absence runs: ABSENCE_ENQUIRIES_DUE and NOT_RETURNED_FROM_LEAVE -------------------------------------


@scenario("A run of exactly absence_enquiry_days (10) unauthorised days raises ABSENCE_ENQUIRIES_DUE.")
def run_of_ten_fires() -> Scenario:
    """Present Mon 6 - Wed 8 Jan, then O on Thu 9 Jan to Wed 22 Jan: 10 school days (the weekends carry no
    register), so the run's 10th day is Wed 22 Jan (absence_enquiry_days at its default, N fires)."""
    p = child()
    return Scenario("", "", run_from(COV_A, p, "2025-01-06", [*["/"] * 3, *absent(10)]), [(AED, CME, "331", p)])


@scenario("A run of 9 unauthorised days ended by a present day raises nothing.")
def run_of_nine_silent() -> Scenario:
    """Present 6-8 Jan, O on 9-21 Jan (9 school days), present Wed 22 Jan: the run stops at 9 days
    (absence_enquiry_days at its default, N-1 does not fire)."""
    p = child()
    return Scenario("", "", run_from(COV_A, p, "2025-01-06", ["/"] * 3 + absent(9) + ["/"]), [])


@scenario("A run spanning the February half-term counts only its school days and still reaches 10.")
def run_across_half_term() -> Scenario:
    """Present Fri 7 Feb; O on Mon 10 - Fri 14 Feb (5) and, after a half-term with no registers, Mon 24 -
    Fri 28 Feb (5): the half-term neither counts nor breaks, so the 10th day is Fri 28 Feb."""
    p = child()
    return Scenario("", "", run_from(BHM_A, p, "2025-02-07", ["/", *absent(10)]), [(AED, CME, "330", p)])


@scenario("A run spanning the Christmas break reaches its 10th day in January.")
def run_across_christmas() -> Scenario:
    """Present Fri 13 Dec; O on Mon 16 - Fri 20 Dec (5) and Mon 6 - Fri 10 Jan (5); nothing is marked over
    the break, so the run's 10th day is Fri 10 Jan 2025."""
    p = child()
    return Scenario("", "", run_from(DUD_A, p, "2024-12-13", ["/", *absent(10)]), [(AED, CME, "332", p)])


@scenario("Whole days of #, X or Z are not marked days, so 9 O days around them stay a run of 9.")
def not_counted_days_do_not_count() -> Scenario:
    """From Mon 13 Jan on consecutive school days: present, O O # O O X O O Z O O O, present. The #, X and Z
    days are not marked days: 9 unauthorised days in one run, one short of 10."""
    p = child()
    codes: list[Code] = ["/", "O", "O", "#", "O", "O", "X", "O", "O", "Z", "O", "O", "O", "/"]
    return Scenario("", "", run_from(COV_B, p, "2025-01-13", codes), [])


@scenario("Whole days of #, X or Z inside a run do not break it: 10 O days around them raise the alert.")
def not_counted_days_do_not_break() -> Scenario:
    """From Mon 13 Jan: present, O O O, #, O O, X, O O, (Z am, # pm), O O O. The three not-counted days are
    skipped, so the 10th O day, Thu 30 Jan, is the run's 10th day."""
    p = child()
    codes: list[Code] = ["/", "O", "O", "O", "#", "O", "O", "X", "O", "O", ("Z", "#"), "O", "O", "O"]
    return Scenario("", "", run_from(COV_B, p, "2025-01-13", codes), [(AED, CME, "331", p)])


@scenario("A day with am N and pm present is not unauthorised: it splits 19 unauthorised days into 9 + 9.")
def mixed_day_breaks_run() -> Scenario:
    """From Mon 3 Mar: present, O x9, (N, /), O x9, present. The mixed day is a marked day whose counted
    sessions are not all unauthorised, so it ends the first run at 9 days and the second also stops at 9."""
    p = child()
    codes: list[Code] = ["/", *absent(9), ("N", "/"), *absent(9), "/"]
    return Scenario("", "", run_from(DUD_A, p, "2025-03-03", codes), [])


@scenario("Days with one unauthorised and one not-counted session (N+X, X+G) are unauthorised days.")
def half_not_counted_days_are_unauthorised() -> Scenario:
    """From Mon 20 Jan: present, O x4, (X, G), O x4, (N, X). Each half-counted day's only counted session is
    unauthorised, so it is an unauthorised day: 10 in a row, the 10th on the (N, X) day, Mon 3 Feb."""
    p = child()
    codes: list[Code] = ["/", *absent(4), ("X", "G"), *absent(4), ("N", "X")]
    return Scenario("", "", run_from(COV_A, p, "2025-01-20", codes), [(AED, CME, "331", p)])


@scenario("Excused codes (M, I, a C2 session, J1/E) break runs, so five runs of 9 O days raise nothing.")
def excused_codes_break_runs() -> Scenario:
    """From Mon 6 Jan: present, then five blocks of 9 O days separated by (M, M), (I, I), (N, C2) and (J1, E).
    Each excused day is a marked day that is not unauthorised, so every run ends at 9 days."""
    p = child()
    codes: list[Code] = [
        "/",
        *absent(9),
        "M",
        *absent(9),
        "I",
        *absent(9),
        ("N", "C2"),
        *absent(9),
        ("J1", "E"),
        *absent(9),
        "/",
    ]
    return Scenario("", "", run_from(BHM_A, p, "2025-01-06", codes), [])


@scenario("Leave of absence (C) just before 10 days of N raises NOT_RETURNED_FROM_LEAVE instead.")
def leave_then_run_not_returned() -> Scenario:
    """Present Mon 3 Feb, C on Tue 4 - Thu 6 Feb, then N from Fri 7 Feb: 10 school days to Thu 27 Feb
    (half-term skipped). The marked day just before the run's first day (Thu 6 Feb) has a leave session."""
    p = child()
    codes: list[Code] = ["/", "C", "C", "C", *absent(10, "N")]
    return Scenario("", "", run_from(COV_A, p, "2025-02-03", codes), [(NRFL, CME, "331", p)])


@scenario("Leave (C1) on a Friday, a weekend and a # closure day, then 10 days of G: the run follows leave.")
def leave_c1_then_closure_then_run() -> Scenario:
    """Present Wed 5 Mar, C1 Thu 6 and Fri 7 Mar, (#, #) on Mon 10 Mar (not a marked day), then G on Tue 11
    to Mon 24 Mar (10 school days). The marked day before the run is Fri 7 Mar, a leave day."""
    p = child()
    codes: list[Code] = ["/", "C1", "C1", "#", *(["G"] * 10)]
    return Scenario("", "", run_from(DUD_A, p, "2025-03-05", codes), [(NRFL, CME, "332", p)])


@scenario("Leave, then a present day, then 10 O days: the run does not follow leave, so enquiries are due.")
def leave_then_seen_day_then_run() -> Scenario:
    """C on Mon 3 and Tue 4 Mar, present Wed 5 Mar, O from Thu 6 Mar for 10 school days (to Wed 19 Mar). The
    marked day just before the run is the present one, so the run does not follow leave."""
    p = child()
    codes: list[Code] = ["C", "C", "/", *absent(10)]
    return Scenario("", "", run_from(COV_B, p, "2025-03-03", codes), [(AED, CME, "331", p)])


@scenario("A day present in the morning and on leave (C) in the afternoon still puts the next run after leave.")
def afternoon_leave_before_run() -> Scenario:
    """Present Mon 13 Jan, (/, C) on Tue 14 Jan, O from Wed 15 Jan for 10 school days (to Tue 28 Jan). The
    day before the run has a leave session, which is all "follows leave" asks."""
    p = child()
    codes: list[Code] = ["/", ("/", "C"), *absent(10)]
    return Scenario("", "", run_from(BHM_A, p, "2025-01-13", codes), [(NRFL, CME, "330", p)])


@scenario("A run that goes on for 16 days raises once, on its 10th day.")
def long_run_raises_once() -> Scenario:
    """O from Mon 28 Apr (first day after Easter; no earlier mark) for 16 school days to Tue 20 May, skipping
    the bank holiday Mon 5 May; its 10th day is Mon 12 May and the later days add nothing."""
    p = child()
    return Scenario("", "", run_from(COV_A, p, "2025-04-28", absent(16)), [(AED, CME, "331", p)])


@scenario("Two runs of 10 separated by a present day raise twice, with different trigger days.")
def two_runs_raise_twice() -> Scenario:
    """O on Mon 6 - Fri 17 Jan (10 days, 10th Fri 17 Jan), present Mon 20 Jan, O on Tue 21 Jan - Mon 3 Feb
    (10 days, 10th Mon 3 Feb): two runs sharing no day, two alerts."""
    p = child()
    codes: list[Code] = [*absent(10), "/", *absent(10)]
    return Scenario("", "", run_from(DUD_A, p, "2025-01-06", codes), [(AED, CME, "332", p), (AED, CME, "332", p)])


@scenario("A correction to present on the 5th day of a 9-day run breaks it before it reaches 10.")
def correction_breaks_run_before_ten() -> Scenario:
    """Present Mon 6 Jan, O on the next 9 school days (Tue 7 - Fri 17 Jan); then a new register for Mon 13
    Jan (the run's 5th day) marks the child present; then O on Mon 20 - Thu 23 Jan. Runs: 4 days (7-10 Jan)
    and 8 days (14-23 Jan)."""
    p = child()
    days = school_days("2025-01-06", 14)
    records = marks_on(COV_A, p, days[:10], ["/", *absent(9)])
    records.append(register(COV_A, days[5], [(p, *PRESENT)], recorded_at=f"{days[9]}T16:00:00Z"))
    records += marks_on(COV_A, p, days[10:], absent(4))
    return Scenario("", "", records, [])


@scenario("A correction of the present day between runs of 6 and 5 joins them into one run of 12.")
def correction_joins_runs() -> Scenario:
    """Present Mon 6 Jan, O on Tue 7 - Tue 14 Jan (6), present Wed 15 Jan, O on Thu 16 - Wed 22 Jan (5):
    nothing. A new register for Wed 15 Jan then marks it (N, N): one run of 12 from 7 Jan whose 10th day is
    Mon 20 Jan, raised when the correction is applied, once."""
    p = child()
    days = school_days("2025-01-06", 13)
    records = marks_on(BHM_A, p, days, ["/", *absent(6), "/", *absent(5)])
    records.append(register(BHM_A, days[7], [(p, "N", "N")], recorded_at="2025-01-23T08:00:00Z"))
    return Scenario("", "", records, [(AED, CME, "330", p)])


@scenario("A correction that splits a run which already raised raises nothing more.")
def correction_splits_raised_run() -> Scenario:
    """Present Mon 6 Jan, O on 14 school days from Tue 7 Jan (10th day Mon 20 Jan: raised). A correction
    marks Thu 9 Jan (the 3rd day) present: the later run (10 Jan - 24 Jan, 11 days) shares days with the run
    that raised, so it raises nothing."""
    p = child()
    days = school_days("2025-01-06", 15)
    records = marks_on(DUD_A, p, days, ["/", *absent(14)])
    records.append(register(DUD_A, days[3], [(p, *PRESENT)], recorded_at="2025-01-27T08:00:00Z"))
    return Scenario("", "", records, [(AED, CME, "332", p)])


@scenario("Registers resent under the same register_id change nothing: one alert for one run of 10.")
def resent_register_changes_nothing() -> Scenario:
    """Present Mon 6 Jan, O on 10 school days to Mon 20 Jan (10th day). The 10th day's register and the 4th
    day's register are then sent again unchanged; both are already applied and ignored."""
    p = child()
    records = run_from(COV_B, p, "2025-01-06", ["/", *absent(10)])
    records += [records[10], records[4]]
    return Scenario("", "", records, [(AED, CME, "331", p)])


@scenario("A register sent again under an applied register_id with changed marks is ignored, not a correction.")
def same_register_id_changed_marks_ignored() -> Scenario:
    """Present Mon 6 Jan, O Tue 7 - Fri 10 Jan (4), present Mon 13 Jan, O Tue 14 - Tue 21 Jan (6). The Mon 13
    Jan register is sent again with its register_id but marked (O, O): ignored, so runs stay 4 and 6."""
    p = child()
    records = run_from(COV_A, p, "2025-01-06", ["/", *absent(4), "/", *absent(6)])
    again = register(
        COV_A,
        "2025-01-13",
        [(p, "O", "O")],
        register_id=records[5]["value"]["register_id"],
        recorded_at="2025-01-22T08:00:00Z",
    )
    return Scenario("", "", [*records, again], [])


@scenario("Registers arriving in reverse date order are judged in date order: one run of 10, one alert.")
def registers_out_of_date_order() -> Scenario:
    """Present Fri 10 Jan and O on Mon 13 - Fri 24 Jan (10 school days), sent newest first: only when the
    last (oldest) register arrives are there 10 unauthorised marked days in a row."""
    p = child()
    records = run_from(BHM_A, p, "2025-01-10", ["/", *absent(10)])
    return Scenario("", "", records[::-1], [(AED, CME, "330", p)])


@scenario("A late register for a missing day completes a run of 10 when it arrives.")
def late_register_completes_run() -> Scenario:
    """Present Mon 6 Jan, O on Tue 7 - Mon 20 Jan except Mon 13 Jan, whose register arrives last: before it,
    9 marked days (the gap neither counts nor breaks); with it, 10, the 10th on Mon 20 Jan."""
    p = child()
    records = run_from(DUD_A, p, "2025-01-06", ["/", *absent(10)])
    late = records.pop(5)
    return Scenario("", "", [*records, late], [(AED, CME, "332", p)])


@scenario("A run reaches 10 across a day with no register; that day's late present register retracts nothing.")
def late_present_register_after_alert() -> Scenario:
    """Present Mon 6 Jan, O on 11 school days Tue 7 - Tue 21 Jan except Tue 14 Jan, not yet sent: 10 marked
    days in a row (10th Tue 21 Jan), raised. Tue 14 Jan then arrives present: the runs become 4 and 6 days,
    which share days with the run that raised; alerts are never withdrawn."""
    p = child()
    days = school_days("2025-01-06", 12)
    records = marks_on(COV_A, p, days, ["/", *absent(11)])
    gap = days.index("2025-01-14")
    del records[gap]
    records.append(register(COV_A, "2025-01-14", [(p, *PRESENT)], recorded_at="2025-01-22T08:00:00Z"))
    return Scenario("", "", records, [(AED, CME, "331", p)])


@scenario("A pupil known only from registers (no roll event) still raises, to the school's LA.")
def registers_only_pupil() -> Scenario:
    """No roll event at all. Present Mon 3 Feb, O on Tue 4 Feb - Mon 24 Feb (10 school days, half-term
    skipped): the alert goes to the CME officer of the school's LA, 330."""
    p = child()
    return Scenario("", "", run_from(BHM_A, p, "2025-02-03", ["/", *absent(10)]), [(AED, CME, "330", p)])


@scenario("Registers before the child's ADDED still make a run; the later ADDED adds no no-show.")
def registers_before_late_added() -> Scenario:
    """O on Mon 6 - Fri 17 Jan (10 school days, raised on Fri 17 Jan with no roll event yet). The ADDED,
    effective Mon 20 Jan, arrives afterwards, followed by present marks on 20-22 Jan: its first three marked
    days on or after 20 Jan are seen, so no NO_SHOW_AFTER_ADMISSION."""
    p = child()
    records = run_from(COV_A, p, "2025-01-06", absent(10))
    records.append(added(p, COV_A, "2025-01-20"))
    records += run_from(COV_A, p, "2025-01-20", ["/"] * 3)
    return Scenario("", "", records, [(AED, CME, "331", p)])


@scenario("A dual-registered child absent from both schools has a run at each, each raising to its own LA.")
def dual_registered_runs_per_school() -> Scenario:
    """ADDED at COV_A and DUD_A on Mon 6 Jan; present at both on 6-8 Jan (no no-show), then O at both on
    Thu 9 - Wed 22 Jan (10 school days): one run per school, 10th day Wed 22 Jan at each."""
    p = child()
    records = [added(p, COV_A, "2025-01-06"), added(p, DUD_A, "2025-01-06")]
    codes: list[Code] = [*["/"] * 3, *absent(10)]
    days = school_days("2025-01-06", len(codes))
    for day, code in zip(days, codes, strict=True):
        records.append(register(COV_A, day, [(p, *_sessions(code))]))
        records.append(register(DUD_A, day, [(p, *_sessions(code))]))
    return Scenario("", "", records, [(AED, CME, "331", p), (AED, CME, "332", p)])


@scenario("Absence at two schools does not add up: 5 days at one then 5 at the other raise nothing.")
def runs_do_not_add_up_across_schools() -> Scenario:
    """O at COV_A on Mon 6 - Fri 10 Jan and O at DUD_A on Mon 13 - Fri 17 Jan, no other marks: each school
    sees a run of 5 days; runs are per school."""
    p = child()
    records = run_from(COV_A, p, "2025-01-06", absent(5)) + run_from(DUD_A, p, "2025-01-13", absent(5))
    return Scenario("", "", records, [])


@scenario("A child on a protection plan (status LA 860) at a Coventry school: CME officer and social care.")
def protected_child_absence() -> Scenario:
    """Status with child_protection_plan from Staffordshire (860) first; present Mon 6 Jan, O on 10 school
    days to Mon 20 Jan: CME officer of 331 and social care of 860, both IMMEDIATE."""
    p = child()
    records = [status(p, "860", cp=True), *run_from(COV_A, p, "2025-01-06", ["/", *absent(10)])]
    return Scenario("", "", records, [(AED, CME, "331", p), (AED, SC, "860", p)])


@scenario("A looked-after child (status LA 330) not back from leave at a Dudley school: CME and social care.")
def protected_child_not_returned() -> Scenario:
    """Status looked_after from Birmingham (330); present Mon 3 Mar, C on Tue 4 and Wed 5 Mar, then N from
    Thu 6 Mar for 10 school days (to Wed 19 Mar): NOT_RETURNED_FROM_LEAVE to 332's CME officer and 330's
    social care."""
    p = child()
    records = [status(p, "330", lac=True), *run_from(DUD_A, p, "2025-03-03", ["/", "C", "C", *absent(10, "N")])]
    return Scenario("", "", records, [(NRFL, CME, "332", p), (NRFL, SC, "330", p)])


@scenario("A protection status applied after the run raised adds no social-care alert (no case is open).")
def protection_after_alert() -> Scenario:
    """Present Mon 6 Jan, O on 10 school days to Mon 20 Jan: raised to the CME officer only. A status with a
    protection plan then arrives (dated 21 Jan); v2 absence rules open no case, so OPEN_CASE_PROTECTED does
    not apply, and later O days on 21-23 Jan belong to the run that already raised."""
    p = child()
    records = run_from(COV_B, p, "2025-01-06", ["/", *absent(10)])
    records.append(status(p, "331", cp=True, at="2025-01-21"))
    records += run_from(COV_B, p, "2025-01-21", absent(3))
    return Scenario("", "", records, [(AED, CME, "331", p)])


@scenario("Protection lifted before the run (latest status has neither CP nor LAC): CME officer only.")
def protection_lifted_before_run() -> Scenario:
    """A CP status, then a later status from the same LA with neither flag; present Mon 6 Jan, O on 10
    school days to Mon 20 Jan: the latest status decides, so no social-care alert."""
    p = child()
    records = [status(p, "332", cp=True, at="2025-01-02"), status(p, "332", at="2025-01-03")]
    records += run_from(DUD_A, p, "2025-01-06", ["/", *absent(10)])
    return Scenario("", "", records, [(AED, CME, "332", p)])


@scenario("A school splits each day into two class registers: each child's run is judged on its own marks.")
def split_registers_same_day() -> Scenario:
    """Every day from Mon 6 Jan for 11 school days the school sends two registers, one per class. Child A:
    present, then O on 10 days (10th Mon 20 Jan): raised. Child B in the other register: present every day.
    The second register of a day does not replace A's mark (it has none for A)."""
    a, b = child(), child()
    records = []
    for i, day in enumerate(school_days("2025-01-06", 11)):
        records.append(register(COV_B, day, [(a, *(PRESENT if i == 0 else ("O", "O")))]))
        records.append(register(COV_B, day, [(b, *PRESENT)], recorded_at=f"{day}T09:40:00Z"))
    return Scenario("", "", records, [(AED, CME, "331", a)])


@scenario("A mark with an unknown code is dead-lettered alone: that day has no mark and does not break the run.")
def dead_lettered_mark_is_no_mark() -> Scenario:
    """Present Mon 6 Jan, then 11 school days Tue 7 - Tue 21 Jan marked O, except Tue 14 Jan where the child's
    mark has the abolished code H (dead-lettered; the same register's mark for another child applies). The
    run has 10 marked days, 10th on Tue 21 Jan."""
    p, other = child(), child()
    records = []
    for i, day in enumerate(school_days("2025-01-06", 12)):
        if i == 0:
            records.append(register(BHM_A, day, [(p, *PRESENT), (other, *PRESENT)]))
        elif day == "2025-01-14":
            records.append(register(BHM_A, day, [(p, "H", "H"), (other, *PRESENT)]))
        else:
            records.append(register(BHM_A, day, [(p, "O", "O"), (other, *PRESENT)]))
    return Scenario("", "", records, [(AED, CME, "330", p)])


@scenario("A Saturday register is a marked day: 9 weekday O days and a Saturday O day make a run of 10.")
def saturday_register_counts() -> Scenario:
    """Present Fri 10 Jan; O Mon 13 - Fri 17 Jan (5), O on Sat 18 Jan (a school open on Saturdays), O Mon
    20 - Thu 23 Jan (4): 10 marked days, the 10th on Thu 23 Jan; present Fri 24 Jan."""
    p = child()
    records = run_from(COV_A, p, "2025-01-10", ["/", *absent(5)])
    records.append(register(COV_A, "2025-01-18", [(p, "O", "O")]))
    records += run_from(COV_A, p, "2025-01-20", [*absent(4), "/"])
    return Scenario("", "", records, [(AED, CME, "331", p)])


# --- NO_SHOW_AFTER_ADMISSION ---------------------------------------------------------------------------


@scenario("Admitted on Mon 3 Mar and absent (N) on the first no_show_days (3) marked days: no-show.")
def no_show_three_days_fires() -> Scenario:
    """ADDED at the Walsall special school effective Mon 3 Mar; N on 3, 4 and 5 Mar (the first three marked
    days on or after D; D counts), present Thu 6 Mar, too late: raised on Wed 5 Mar (no_show_days, N fires)."""
    p = child()
    records = [added(p, WAL_SPECIAL, "2025-03-03"), *run_from(WAL_SPECIAL, p, "2025-03-03", [*absent(3, "N"), "/"])]
    return Scenario("", "", records, [(NSA, CME, "335", p)])


@scenario("Admitted and absent on only 2 marked days so far: not yet a no-show.")
def no_show_two_days_silent() -> Scenario:
    """ADDED effective Mon 3 Mar; N on 3 and 4 Mar and no further register: two marked days, one short of
    no_show_days (N-1 does not fire)."""
    p = child()
    records = [added(p, WAL_SPECIAL, "2025-03-03"), *run_from(WAL_SPECIAL, p, "2025-03-03", absent(2, "N"))]
    return Scenario("", "", records, [])


@scenario("One seen session (late, L) among the first three marked days after admission: no no-show.")
def no_show_one_seen_session() -> Scenario:
    """ADDED at COV_A effective Mon 3 Mar; N on 3 and 4 Mar, (L, N) on Wed 5 Mar, N on 6 and 7 Mar: the
    third marked day has a seen session; the absence runs (2 and 2 days) are far from 10."""
    p = child()
    records = [
        added(p, COV_A, "2025-03-03"),
        *run_from(COV_A, p, "2025-03-03", [*absent(2, "N"), ("L", "N"), *absent(2, "N")]),
    ]
    return Scenario("", "", records, [])


@scenario("Present marks dated before the admission date are ignored: the first three on or after it are N.")
def no_show_marks_before_admission_ignored() -> Scenario:
    """Present on Thu 6 and Fri 7 Mar; ADDED effective Mon 10 Mar; N on Mon 10 - Wed 12 Mar: the first three
    marked days on or after D have no seen session, raised on Wed 12 Mar."""
    p = child()
    records = run_from(DUD_A, p, "2025-03-06", ["/", "/"])
    records.append(added(p, DUD_A, "2025-03-10"))
    records += run_from(DUD_A, p, "2025-03-10", absent(3, "N"))
    return Scenario("", "", records, [(NSA, CME, "332", p)])


@scenario("Z days after admission are not marked days, so the first three marked days include a present one.")
def no_show_z_days_not_marked() -> Scenario:
    """ADDED effective Mon 10 Mar; (Z, Z) on 10 and 11 Mar, N on 12 and 13 Mar, present Fri 14 Mar: the
    first three marked days are 12, 13 and 14 Mar, and the last is seen."""
    p = child()
    records = [added(p, BHM_A, "2025-03-10"), *run_from(BHM_A, p, "2025-03-10", ["Z", "Z", *absent(2, "N"), "/"])]
    return Scenario("", "", records, [])


@scenario("The ADDED arrives after three N registers dated on or after its date: the no-show fires with it.")
def no_show_late_added() -> Scenario:
    """N on Mon 13 - Wed 15 Jan, sent first; then the ADDED effective Mon 13 Jan arrives: its first three
    marked days are already all absent, so it raises when the ADDED is applied (raised_on Wed 15 Jan)."""
    p = child()
    records = [*run_from(BHM_A, p, "2025-01-13", absent(3, "N")), added(p, BHM_A, "2025-01-13")]
    return Scenario("", "", records, [(NSA, CME, "330", p)])


@scenario("A looked-after child (status LA 860) admitted in Dudley who never arrives: CME officer and social care.")
def no_show_protected() -> Scenario:
    """Status looked_after from 860; ADDED at DUD_A effective Mon 13 Jan; N on 13-15 Jan: raised on Wed 15
    Jan to 332's CME officer and 860's social care."""
    p = child()
    records = [
        status(p, "860", lac=True),
        added(p, DUD_A, "2025-01-13"),
        *run_from(DUD_A, p, "2025-01-13", absent(3, "N")),
    ]
    return Scenario("", "", records, [(NSA, CME, "332", p), (NSA, SC, "860", p)])


@scenario("A no-show fires once per ADDED: a resent ADDED and three more N days add nothing.")
def no_show_once_per_added() -> Scenario:
    """ADDED at COV_B effective Mon 3 Mar; N on 3-5 Mar (raised); the same ADDED resent under a new event_id
    (ignored); N on 6, 7 and 10 Mar: one alert; the run of 6 N days is short of 10."""
    p = child()
    records = [added(p, COV_B, "2025-03-03"), *run_from(COV_B, p, "2025-03-03", absent(3, "N"))]
    records.append(added(p, COV_B, "2025-03-03"))
    records += run_from(COV_B, p, "2025-03-06", absent(3, "N"))
    return Scenario("", "", records, [(NSA, CME, "331", p)])


# --- ABSENCE_REMOVAL_UNSUPPORTED ------------------------------------------------------------------------
# Removal on Tue 4 Mar 2025; registers up to Mon 3 Mar. 20 school days ending Mon 3 Mar start Tue 28 Jan.


@scenario("Removed on ground I after a run of absence_removal_days (20) days: supported, no removal alert.")
def removal_i_after_twenty() -> Scenario:
    """Present Mon 27 Jan, O on 20 school days Tue 28 Jan - Mon 3 Mar (10th day Mon 10 Feb raises enquiries);
    REMOVED on Tue 4 Mar, ground I, no destination (v1: MISSING_NO_DESTINATION). Ticks to Mon 10 Mar, past
    the 3rd school day after (Fri 7 Mar): the run ending at the last marked day is 20 days, not short."""
    p = child()
    records = run_to(COV_A, p, LAST_DAY_BEFORE_REMOVAL, ["/", *absent(20)])
    records += [removed(p, COV_A, REMOVAL, GROUND_I), tick(CHECK_NOT_YET), tick(CHECK_PASSED)]
    return Scenario("", "", records, [(AED, CME, "331", p), (MND, CME, "331", p)])


@scenario("Removed on ground I after only 19 days of absence: the removal is unsupported.")
def removal_i_after_nineteen() -> Scenario:
    """Present Tue 28 Jan, O on 19 school days Wed 29 Jan - Mon 3 Mar (enquiries due on the 10th, Tue 11 Feb);
    REMOVED Tue 4 Mar, ground I, destination UNKNOWN (v1: MISSING_NO_DESTINATION); at the tick of Mon 10 Mar
    the run is 19 days, shorter than 20 (absence_removal_days, N-1 raises)."""
    p = child()
    records = run_to(COV_A, p, LAST_DAY_BEFORE_REMOVAL, ["/", *absent(19)])
    records += [removed(p, COV_A, REMOVAL, GROUND_I, destination=UNKNOWN), tick(CHECK_NOT_YET), tick(CHECK_PASSED)]
    return Scenario("", "", records, [(AED, CME, "331", p), (MND, CME, "331", p), (ARU, CME, "331", p)])


@scenario("Removed on ground I after 20 days of absence and then a present day: the last run is 0 days.")
def removal_i_present_last_day() -> Scenario:
    """O on 20 school days Mon 27 Jan - Fri 28 Feb, present Mon 3 Mar; REMOVED Tue 4 Mar, ground I, to COV_B,
    where the child is ADDED on Wed 5 Mar (v1 silent: same LA, transfer started). The last marked day is
    not unauthorised, so the run ending there is 0 days: unsupported."""
    p = child()
    records = run_to(COV_A, p, LAST_DAY_BEFORE_REMOVAL, [*absent(20), "/"])
    records += [
        removed(p, COV_A, REMOVAL, GROUND_I, destination=to_school(COV_B)),
        added(p, COV_B, "2025-03-05"),
        tick(CHECK_NOT_YET),
        tick(CHECK_PASSED),
    ]
    return Scenario("", "", records, [(AED, CME, "331", p), (ARU, CME, "331", p)])


@scenario("The removal check waits removal_check_days (3): a business date of the 3rd school day after checks nothing.")
def removal_check_not_yet() -> Scenario:
    """Present Mon 24 Feb, O Tue 25 Feb - Mon 3 Mar (5 days); REMOVED Tue 4 Mar on ground I to COV_A, ADDED
    there Wed 5 Mar. Ticks Wed 5 and Fri 7 Mar: Fri 7 Mar is the 3rd school day after, not past it, so the
    short run is not yet judged (removal_check_days, N-1 does not fire)."""
    p = child()
    records = run_to(COV_B, p, LAST_DAY_BEFORE_REMOVAL, ["/", *absent(5)])
    records += [
        removed(p, COV_B, REMOVAL, GROUND_I, destination=to_school(COV_A)),
        added(p, COV_A, "2025-03-05"),
        tick("2025-03-05"),
        tick(CHECK_NOT_YET),
    ]
    return Scenario("", "", records, [])


@scenario("Once the business date passes the 3rd school day after the removal, a short run is reported.")
def removal_check_passed() -> Scenario:
    """As the previous story, with ticks Fri 7 Mar and then Sat 8 Mar: the business date is now later than
    the 3rd school day after Tue 4 Mar, and the 5-day run is short of 20 (removal_check_days, N fires)."""
    p = child()
    records = run_to(COV_B, p, LAST_DAY_BEFORE_REMOVAL, ["/", *absent(5)])
    records += [
        removed(p, COV_B, REMOVAL, GROUND_I, destination=to_school(COV_A)),
        added(p, COV_A, "2025-03-05"),
        tick(CHECK_NOT_YET),
        tick("2025-03-08"),
    ]
    return Scenario("", "", records, [(ARU, CME, "331", p)])


@scenario("Registers up to the removal that arrive after the REMOVED, before the check, still support it.")
def removal_late_registers_before_check() -> Scenario:
    """Present Mon 27 Jan, O Tue 28 Jan - Mon 3 Mar (20 days). The first 15 registers arrive (enquiries due
    on the 10th O day), then the REMOVED of Tue 4 Mar on ground I with no destination (v1: missing), then the
    last 6 registers; at the Mon 10 Mar tick the run is 20 days."""
    p = child()
    registers = run_to(DUD_A, p, LAST_DAY_BEFORE_REMOVAL, ["/", *absent(20)])
    records = [*registers[:15], removed(p, DUD_A, REMOVAL, GROUND_I), *registers[15:], tick(CHECK_PASSED)]
    return Scenario("", "", records, [(AED, CME, "332", p), (MND, CME, "332", p)])


@scenario("Removed on ground H after leave and then leave_return_days (10) days of N: supported.")
def removal_h_after_leave_ten_days() -> Scenario:
    """Present Thu 6 Feb, C on Fri 7 and Mon 10 Feb, N on the 10 school days Tue 11 Feb - Mon 3 Mar (half-term
    skipped): the run follows leave and reaches 10 (NOT_RETURNED_FROM_LEAVE on Mon 3 Mar); REMOVED Tue 4 Mar
    on ground H, no destination (v1: missing); at the Mon 10 Mar tick the run follows leave and is 10 days
    (leave_return_days, N does not raise)."""
    p = child()
    records = run_to(COV_A, p, LAST_DAY_BEFORE_REMOVAL, ["/", "C", "C", *absent(10, "N")])
    records += [removed(p, COV_A, REMOVAL, GROUND_H), tick(CHECK_PASSED)]
    return Scenario("", "", records, [(NRFL, CME, "331", p), (MND, CME, "331", p)])


@scenario("Removed on ground H after 10 days of N with no leave before them: unsupported.")
def removal_h_without_leave() -> Scenario:
    """Present on the school day before the run, N on the 10 school days ending Mon 3 Mar (enquiries due, as
    the run does not follow leave); REMOVED Tue 4 Mar, ground H, destination UNKNOWN (v1: missing); at the
    Mon 10 Mar tick the run does not follow leave, so ground H is unsupported."""
    p = child()
    records = run_to(BHM_A, p, LAST_DAY_BEFORE_REMOVAL, ["/", *absent(10, "N")])
    records += [removed(p, BHM_A, REMOVAL, GROUND_H, destination=UNKNOWN), tick(CHECK_PASSED)]
    return Scenario("", "", records, [(AED, CME, "330", p), (MND, CME, "330", p), (ARU, CME, "330", p)])


@scenario("Removed on ground H after leave and only 9 days of N: shorter than leave_return_days, unsupported.")
def removal_h_after_leave_nine_days() -> Scenario:
    """Present, C, C, then N on the 9 school days ending Mon 3 Mar (a run of 9 raises nothing); REMOVED Tue
    4 Mar on ground H to COV_B, ADDED there Wed 5 Mar (v1 silent); at the Mon 10 Mar tick the run follows
    leave but is 9 days (leave_return_days, N-1 raises)."""
    p = child()
    records = run_to(COV_A, p, LAST_DAY_BEFORE_REMOVAL, ["/", "C", "C", *absent(9, "N")])
    records += [
        removed(p, COV_A, REMOVAL, GROUND_H, destination=to_school(COV_B)),
        added(p, COV_B, "2025-03-05"),
        tick(CHECK_PASSED),
    ]
    return Scenario("", "", records, [(ARU, CME, "331", p)])


@scenario("Removed on ground I with no marked day at the school on or before the removal: no removal alert.")
def removal_no_marked_days() -> Scenario:
    """Only (X, X) on Fri 28 Feb, (#, #) on Mon 3 Mar and (Z, X) on Tue 4 Mar (none a marked day), and an
    N mark on Wed 5 Mar, after the removal; REMOVED Tue 4 Mar, ground I, no destination: v1 raises
    MISSING_NO_DESTINATION, the attendance check finds no marked day on or before the removal."""
    p = child()
    records = run_from(BHM_A, p, "2025-02-28", ["X", "#", ("Z", "X")])
    records += [
        removed(p, BHM_A, REMOVAL, GROUND_I),
        *run_from(BHM_A, p, "2025-03-05", absent(1, "N")),
        tick(CHECK_PASSED),
    ]
    return Scenario("", "", records, [(MND, CME, "330", p)])


@scenario("A protected child removed on ground I after 19 days: social care gets every alert but the removal check.")
def removal_protected_child() -> Scenario:
    """CP status from Dudley (332); present, then O on the 19 school days ending Mon 3 Mar (enquiries due to
    331's CME officer and 332's social care); REMOVED Tue 4 Mar, ground I, no destination (v1: missing,
    both recipients, IMMEDIATE); the removal check's alert goes to the CME officer only."""
    p = child()
    records = [status(p, "332", cp=True), *run_to(COV_A, p, LAST_DAY_BEFORE_REMOVAL, ["/", *absent(19)])]
    records += [removed(p, COV_A, REMOVAL, GROUND_I), tick(CHECK_PASSED)]
    return Scenario(
        "",
        "",
        records,
        [
            (AED, CME, "331", p),
            (AED, SC, "332", p),
            (MND, CME, "331", p),
            (MND, SC, "332", p),
            (ARU, CME, "331", p),
        ],
    )


@scenario("A run of 20 ending on the removal day itself supports a ground I removal, its last register arriving late.")
def removal_i_run_ends_on_removal_day() -> Scenario:
    """Present Tue 28 Jan, O on the 20 school days Wed 29 Jan - Tue 4 Mar, the last of them the removal date
    (marked days on or before the removal count); the Tue 4 Mar register arrives after the REMOVED (ground
    I, destination UNKNOWN, v1: missing) and before the Mon 10 Mar tick."""
    p = child()
    registers = run_to(STAFF_A, p, REMOVAL, ["/", *absent(20)])
    records = [*registers[:-1], removed(p, STAFF_A, REMOVAL, GROUND_I, destination=UNKNOWN), registers[-1]]
    records.append(tick(CHECK_PASSED))
    return Scenario("", "", records, [(AED, CME, "860", p), (MND, CME, "860", p)])
