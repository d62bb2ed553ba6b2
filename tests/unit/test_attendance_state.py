"""A child's attendance state: what a mark writes, and what it leaves to the day's present pupils."""

from __future__ import annotations

from datetime import date, timedelta

from processors.attendance import MemoryPresentDays, apply_mark, watch_admission
from processors.calendar import default_calendar
from processors.config import RuleConfig
from processors.records import AttendanceMark, School
from tests.scenarios.builder import upn

CONFIG = RuleConfig(default_calendar())
SCHOOL = School("140201", "3312201", "Canley Primary", False)
PUPIL = upn("330", 4242)
MONDAY = date(2025, 1, 13)


def test_a_pupil_simply_present_writes_once_at_a_school_then_nothing() -> None:
    present = MemoryPresentDays()
    first = apply_mark(None, PUPIL, SCHOOL, MONDAY, AttendanceMark(PUPIL, "/", "\\"), present, CONFIG)
    assert first.state is not None and first.present
    present.add(SCHOOL.urn, MONDAY.toordinal(), [PUPIL])
    later = apply_mark(first.state, PUPIL, SCHOOL, MONDAY + timedelta(days=1), AttendanceMark(PUPIL, "/", "\\"),
                       present, CONFIG)
    assert later.state is first.state and later.present and later.decided == ()


def test_an_absence_is_kept_and_a_correction_back_to_present_removes_it() -> None:
    present = MemoryPresentDays()
    absent = apply_mark(None, PUPIL, SCHOOL, MONDAY, AttendanceMark(PUPIL, "N", "N"), present, CONFIG)
    assert absent.state is not None and not absent.present
    marks = absent.state.at(SCHOOL.urn)
    assert marks is not None and len(marks.own) == 1
    corrected = apply_mark(absent.state, PUPIL, SCHOOL, MONDAY, AttendanceMark(PUPIL, "/", "/"), present, CONFIG)
    assert corrected.state is not None and corrected.present
    again = corrected.state.at(SCHOOL.urn)
    assert again is not None and again.own == ()


def test_an_admission_whose_first_days_never_come_stops_being_watched_once_its_window_has_passed() -> None:
    present = MemoryPresentDays()
    watched = watch_admission(None, PUPIL, SCHOOL, MONDAY, present, CONFIG)
    assert watched.state is not None
    marks = watched.state.at(SCHOOL.urn)
    assert marks is not None and marks.watches == (MONDAY.toordinal(),)
    much_later = MONDAY + timedelta(days=200)
    present.add(SCHOOL.urn, much_later.toordinal(), [])
    outcome = apply_mark(watched.state, PUPIL, SCHOOL, much_later, AttendanceMark(PUPIL, "N", "N"), present, CONFIG)
    assert outcome.state is not None and outcome.decided == ()
    after = outcome.state.at(SCHOOL.urn)
    assert after is not None and after.watches == () and MONDAY.toordinal() in after.judged
