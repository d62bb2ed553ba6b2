"""`rollwatch generate`: deterministic, valid, date-ordered synthetic replay files with every kind of event."""

from __future__ import annotations

import hashlib
import io
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path

import pytest

import generator.simulation as simulation
from cli.main import main
from generator.generate import generate_lines, iter_chunks, write_replay
from generator.options import WEST_MIDLANDS, GeneratorOptions, GeneratorOptionsError
from processors.calendar import default_calendar
from processors.records import (
    ClockTick,
    DestinationKind,
    EHEMethod,
    EHENotification,
    EventType,
    Ground,
    InputRecord,
    RollEvent,
    SafeguardingStatus,
)
from processors.validation import validate
from schemas.jsonfields import record_to_line
from schemas.jsonformat import parse_line

# A school year plus September, so the run holds the July transitions and the September starts after them.
PUPILS = 30_000
OPTIONS = GeneratorOptions(pupils=PUPILS, seed=11, start=date(2024, 9, 1), end=date(2025, 9, 30))
LAST_SUMMER_DAY = date(2025, 7, 22)
FIRST_SEPTEMBER_DAY = date(2025, 9, 3)


def render(options: GeneratorOptions) -> str:
    out = io.StringIO()
    write_replay(options, out)
    return out.getvalue()


@pytest.fixture(scope="module")
def text() -> str:
    return render(OPTIONS)


@pytest.fixture(scope="module")
def records(text: str) -> list[tuple[str, InputRecord]]:
    return [parse_line(line) for line in text.splitlines()]


def record_date(record: InputRecord) -> date:
    if isinstance(record, RollEvent):
        return record.effective_date
    if isinstance(record, EHENotification):
        return record.received_on
    if isinstance(record, SafeguardingStatus):
        return record.updated_at.date()
    assert isinstance(record, ClockTick)
    return record.today


def test_same_seed_gives_identical_bytes(text: str) -> None:
    again = render(OPTIONS)
    assert hashlib.sha256(again.encode()).hexdigest() == hashlib.sha256(text.encode()).hexdigest()


def test_different_seeds_differ() -> None:
    small = GeneratorOptions(pupils=2_000, seed=1, start=date(2025, 1, 6), end=date(2025, 2, 28))
    other = GeneratorOptions(pupils=2_000, seed=2, start=date(2025, 1, 6), end=date(2025, 2, 28))
    first, second = render(small), render(other)
    assert first != second
    assert first.count("\n") > 50 and second.count("\n") > 50


def test_every_line_parses_validates_and_has_the_replay_layout(text: str) -> None:
    problems: Counter[str] = Counter()
    lines = text.splitlines()
    assert len(lines) > 10_000
    for line in lines:
        topic, record = parse_line(line)
        problems.update(str(problem.code) for problem in validate(record))
        assert record_to_line(topic, record) == line
    assert problems == Counter()


def test_records_are_in_date_order_and_each_school_day_ends_with_its_tick(
    records: list[tuple[str, InputRecord]],
) -> None:
    calendar = default_calendar()
    ticks: list[date] = []
    latest = date.min
    for _, record in records:
        day = record_date(record)
        assert day >= latest, "records must be in date order"
        latest = day
        if isinstance(record, ClockTick):
            assert calendar.is_school_day(day)
            ticks.append(day)
        else:
            assert not ticks or day > ticks[-1], "a record must come before the tick closing its day"
    expected = [day for day in calendar.school_days if OPTIONS.start <= day <= OPTIONS.end]
    assert ticks == expected


def test_a_child_keeps_one_name_and_date_of_birth(records: list[tuple[str, InputRecord]]) -> None:
    identities: dict[str, set[tuple[str, str, date]]] = defaultdict(set)
    for _, record in records:
        if isinstance(record, RollEvent):
            child = record.child
            identities[record.upn].add((child.forename, child.surname, child.date_of_birth))
    assert len(identities) > PUPILS // 5
    assert all(len(seen) == 1 for seen in identities.values())


def test_every_kind_of_event_is_present(records: list[tuple[str, InputRecord]]) -> None:
    roll = [record for _, record in records if isinstance(record, RollEvent)]
    notices = [record for _, record in records if isinstance(record, EHENotification)]
    statuses = [record for _, record in records if isinstance(record, SafeguardingStatus)]
    added_at: dict[str, list[RollEvent]] = defaultdict(list)
    for event in roll:
        if event.event_type is EventType.ADDED:
            added_at[event.upn].append(event)
    notices_for: dict[str, set[EHEMethod]] = defaultdict(set)
    for notice in notices:
        notices_for[notice.upn].add(notice.method)
    removals = [event for event in roll if event.event_type is EventType.REMOVED]
    in_year = [event for event in removals if not event.standard_transition]

    def completed(event: RollEvent) -> bool:
        assert event.destination is not None
        return any(added.school.urn == event.destination.school_urn for added in added_at[event.upn])

    to_schools = [
        event for event in in_year if event.destination and event.destination.kind is DestinationKind.SCHOOL
    ]
    assert sum(completed(event) for event in to_schools) > 0.8 * len(to_schools)
    assert any(not completed(event) for event in to_schools), "some moves are never completed"
    assert any(
        added.effective_date < event.effective_date
        for event in to_schools
        for added in added_at[event.upn]
        if event.destination and added.school.urn == event.destination.school_urn
    ), "some ADDEDs come before the REMOVED at the old school"
    assert any(
        event.destination and event.destination.kind is DestinationKind.OTHER_LA for event in in_year
    )
    assert any(
        event.destination
        and event.destination.school_laestab
        and event.destination.school_laestab[:3] != event.school.la_code
        for event in to_schools
    ), "moves to a school in another LA"
    assert any(event.destination and event.destination.kind is DestinationKind.ABROAD for event in in_year)
    assert any(event.ground is Ground.G_MOVED_AWAY and not event.destination for event in in_year)

    ehe = [event for event in in_year if event.ground is Ground.F_HOME_EDUCATION]
    assert any(EHEMethod.WRITTEN in notices_for[event.upn] for event in ehe), "EHE with written notice"
    assert any(not notices_for[event.upn] for event in ehe), "EHE removal without any notice"
    assert any(event.school.special for event in ehe) or len(ehe) < 50
    oral = [notice for notice in notices if notice.method is EHEMethod.ORAL]
    assert any(added_at[notice.upn] for notice in oral), "oral indication for a child the worker sees on roll"

    exclusions = [event for event in in_year if event.ground is Ground.O_PERMANENTLY_EXCLUDED]
    assert any(
        "Pupil Referral Unit" in added.school.name for event in exclusions for added in added_at[event.upn]
    )
    assert any(event.ground is Ground.K_DIED for event in in_year)

    assert any(status.child_protection_plan for status in statuses)
    assert any(status.looked_after for status in statuses)
    assert any(status.school_attendance_order for status in statuses)
    assert any(not status.child_protection_plan and not status.looked_after for status in statuses), (
        "plans and care episodes end too"
    )
    school_las: dict[str, set[str]] = defaultdict(set)
    for event in roll:
        school_las[event.upn].add(event.school.la_code)
    assert any(
        status.looked_after and school_las[status.upn] and status.la_code not in school_las[status.upn]
        for status in statuses
    ), "a looked-after child placed out of area"


def test_july_transitions_and_september_starts(records: list[tuple[str, InputRecord]]) -> None:
    roll = [record for _, record in records if isinstance(record, RollEvent)]
    transitions = [event for event in roll if event.standard_transition]
    assert {event.effective_date for event in transitions} == {LAST_SUMMER_DAY}
    year6 = [event for event in transitions if event.ground is Ground.A_REGISTERED_ELSEWHERE]
    year11 = [event for event in transitions if event.ground is Ground.L_CEASED_COMPULSORY_AGE]
    # Each year group is about a twelfth of the pupils (Reception to Year 11).
    assert PUPILS / 12 * 0.8 < len(year11) < PUPILS / 12 * 1.2
    assert PUPILS / 12 * 0.75 < len(year6) < PUPILS / 12 * 1.2
    september = {
        (event.upn, event.school.urn)
        for event in roll
        if event.event_type is EventType.ADDED and event.effective_date == FIRST_SEPTEMBER_DAY
    }
    started = [
        event for event in year6 if event.destination and (event.upn, event.destination.school_urn) in september
    ]
    assert 0.9 * len(year6) < len(started) < len(year6), "most, not all, start secondary in September"
    first_day_added = [
        event for event in roll if event.event_type is EventType.ADDED and event.effective_date == date(2024, 9, 2)
    ]
    assert len(first_day_added) > PUPILS / 12 * 1.5, "Reception and Year 7 start on the first day"


def test_rates_are_near_the_national_ones(records: list[tuple[str, InputRecord]]) -> None:
    first_day = [record for _, record in records if isinstance(record, SafeguardingStatus)
                 and record.updated_at.date() == OPTIONS.start]
    cp = sum(status.child_protection_plan for status in first_day) / PUPILS
    lac = sum(status.looked_after for status in first_day) / PUPILS
    assert 0.0040 < cp < 0.0070  # 49k of 9m pupils
    assert 0.0070 < lac < 0.0110  # 82k of 9m
    in_year = [
        record for _, record in records
        if isinstance(record, RollEvent)
        and record.event_type is EventType.REMOVED
        and not record.standard_transition
        and record.effective_date <= date(2025, 8, 31)
    ]
    moves = sum(record.ground is not Ground.F_HOME_EDUCATION for record in in_year) / PUPILS
    assert 0.025 < moves < 0.045  # about 300k non-standard moves a year among 9m


def test_upns_and_school_codes_use_west_midlands_las(records: list[tuple[str, InputRecord]]) -> None:
    codes = {la.code for la in WEST_MIDLANDS}
    events = [record for _, record in records if isinstance(record, RollEvent)]
    assert {event.school.la_code for event in events} == codes
    assert Counter(event.upn[1:4] in codes for event in events)[True] > 0.8 * len(events)
    assert any(event.school.special for event in events)


def test_busy_days_are_handed_out_in_bounded_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    options = GeneratorOptions(pupils=6_000, seed=5, start=date(2025, 7, 14), end=date(2025, 9, 10))
    whole = list(generate_lines(options))
    monkeypatch.setattr(simulation, "CHUNK_LINES", 200)
    chunks = [lines for _, lines in iter_chunks(options)]
    assert max(len(lines) for lines in chunks) <= 201
    assert [line for lines in chunks for line in lines] == whole
    assert len(whole) > 2_000


def test_bad_options_are_refused() -> None:
    with pytest.raises(GeneratorOptionsError, match="outside the school calendar"):
        list(generate_lines(GeneratorOptions(start=date(2023, 9, 1), end=date(2024, 7, 1))))
    with pytest.raises(GeneratorOptionsError, match="before it starts"):
        list(generate_lines(GeneratorOptions(start=date(2025, 3, 1), end=date(2025, 2, 1))))
    with pytest.raises(GeneratorOptionsError, match="pupils"):
        list(generate_lines(GeneratorOptions(pupils=0)))


def test_cli_writes_the_same_bytes_as_the_library(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "out.jsonl"
    argv = ["generate", "--pupils", "800", "--seed", "3", "--from", "2025-01-06", "--to", "2025-01-31"]
    assert main([*argv, "--output", str(output)]) == 0
    expected = render(GeneratorOptions(pupils=800, seed=3, start=date(2025, 1, 6), end=date(2025, 1, 31)))
    assert output.read_text(encoding="utf-8") == expected
    assert "lines" in capsys.readouterr().err
    assert main(["generate", "--from", "2030-01-01"]) == 2
    assert "outside the school calendar" in capsys.readouterr().err


def test_the_in_process_replay_applies_every_generated_record() -> None:
    from config.rules import build_rule_config
    from config.settings import Settings
    from processors.timeline import memory_timeline
    from replay.run import replay

    # Both ends of the calendar: the first weeks of 2024/25 and the summer of its last school year.
    for start, end in ((date(2024, 9, 1), date(2024, 12, 20)), (date(2028, 5, 1), date(2028, 8, 31))):
        options = GeneratorOptions(pupils=4_000, seed=9, start=start, end=end)
        alerts: list[object] = []
        stats = replay(generate_lines(options), memory_timeline(build_rule_config(Settings())), alerts.append)
        assert stats.records > 150
        assert dict(stats.dead_letters) == {}
        assert stats.applied == stats.records
        assert alerts, "the generated moves raise alerts"
