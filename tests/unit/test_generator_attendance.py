"""`rollwatch generate --attendance`: daily registers that are valid, seeded, realistic and hold every pattern."""

from __future__ import annotations

import hashlib
import io
import json
import re
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest

import generator.attendance as attendance
from cli.main import main
from generator.generate import generate_lines, iter_chunks, write_replay
from generator.options import GeneratorOptions, Rates
from processors.calendar import default_calendar
from processors.identifiers import is_laestab, is_urn, is_valid_upn

SEEN = frozenset({"/", "\\", "L", "U", "K", "V", "P", "W", "B", "D"})
UNAUTHORISED = frozenset({"G", "N", "O"})
LEAVE = frozenset({"C", "C1"})
EXCUSED = frozenset({"C2", "J1", "M", "S", "E", "I", "R", "T", "Q", *(f"Y{n}" for n in range(1, 8))})
NOT_COUNTED = frozenset({"X", "Z", "#"})
ABSENCE_GROUNDS = ("I_CONTINUOUS_ABSENCE", "H_NOT_RETURNED_FROM_LEAVE")
CODES = SEEN | UNAUTHORISED | LEAVE | EXCUSED | NOT_COUNTED

# More moves to an unknown destination than usual, so a few months hold every designed pattern.
PUPILS = 6_000
OPTIONS = GeneratorOptions(
    pupils=PUPILS,
    seed=17,
    start=date(2024, 9, 1),
    end=date(2025, 2, 14),
    rates=Rates(move_unknown=0.03),
    attendance=True,
)
FIRST_SCHOOL_DAY = date(2024, 9, 2)


def render(options: GeneratorOptions) -> str:
    out = io.StringIO()
    write_replay(options, out)
    return out.getvalue()


def day_class(am: str, pm: str) -> str:
    """One marked day as a letter: S seen, U unauthorised, V leave, E excused, '' not counted (design.md)."""
    counted = [code for code in (am, pm) if code not in NOT_COUNTED]
    if not counted:
        return ""
    if any(code in SEEN for code in counted):
        return "S"
    if all(code in UNAUTHORISED for code in counted):
        return "U"
    if any(code in LEAVE for code in counted):
        return "V"
    return "E"


def trailing_run(history: str) -> tuple[int, bool]:
    """Length of the unauthorised run ending the history, and whether it follows leave."""
    run = len(history) - len(history.rstrip("U"))
    return run, run < len(history) and history[-run - 1] == "V"


@dataclass
class Observed:
    """What a streamed pass over a run's lines found; marks are folded as they go, never all kept."""

    sessions: Counter[str] = field(default_factory=Counter)
    history: dict[tuple[str, str], list[str]] = field(default_factory=lambda: defaultdict(list))
    missed: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    registers: int = 0
    register_days: set[date] = field(default_factory=set)
    register_ids: set[str] = field(default_factory=set)
    shape_problems: list[str] = field(default_factory=list)
    order_problems: list[str] = field(default_factory=list)
    removals: list[tuple[str, int, bool]] = field(default_factory=list)  # ground, run, follows leave
    admissions: list[tuple[tuple[str, str], int]] = field(default_factory=list)


def check_register(value: dict[str, Any], problems: list[str]) -> None:
    if set(value) != {"register_id", "school", "date", "recorded_at", "marks"}:
        problems.append(f"fields {sorted(value)}")
    school = value["school"]
    if set(school) != {"urn", "laestab", "name", "special"} or not is_urn(school["urn"]):
        problems.append(f"school {school}")
    if not is_laestab(school["laestab"]) or not isinstance(school["special"], bool):
        problems.append(f"school {school}")
    if str(uuid.UUID(value["register_id"])) != value["register_id"]:
        problems.append(f"id {value['register_id']}")
    if value["recorded_at"] != f"{value['date']}T09:35:00Z":
        problems.append(f"recorded_at {value['recorded_at']}")
    marks = value["marks"]
    if not 1 <= len(marks) <= 5_000:
        problems.append(f"{len(marks)} marks")
    if len({mark["upn"] for mark in marks}) != len(marks):
        problems.append("a UPN twice in one register")
    for mark in marks:
        if set(mark) != {"upn", "am", "pm"} or mark["am"] not in CODES or mark["pm"] not in CODES:
            problems.append(f"mark {mark}")
        elif not is_valid_upn(mark["upn"]):
            problems.append(f"upn {mark['upn']}")


def observe(lines: list[str] | Any) -> Observed:
    seen = Observed()
    calendar = default_calendar()
    latest, ticked = date.min, date.min
    for line in lines:
        record = json.loads(line)
        topic, value = record["topic"], record["value"]
        if topic == "attendance.registers":
            day = date.fromisoformat(value["date"])
            check_register(value, seen.shape_problems)
            seen.registers += 1
            seen.register_days.add(day)
            seen.register_ids.add(value["register_id"])
            urn = value["school"]["urn"]
            for mark in value["marks"]:
                am, pm = mark["am"], mark["pm"]
                seen.sessions.update((am, pm))
                counts = seen.missed[mark["upn"]]
                counts[0] += 2
                counts[1] += (am not in SEEN) + (pm not in SEEN)
                letter = day_class(am, pm)
                if letter:
                    seen.history[(mark["upn"], urn)].append(letter)
        elif topic == "roll.events":
            day = date.fromisoformat(value["effective_date"])
            key = (value["upn"], value["school"]["urn"])
            if value["event_type"] == "REMOVED" and value["ground"] in ABSENCE_GROUNDS:
                seen.removals.append((value["ground"], *trailing_run("".join(seen.history[key]))))
            if value["event_type"] == "ADDED" and day != FIRST_SCHOOL_DAY:
                seen.admissions.append((key, len(seen.history[key])))
        elif topic == "clock.ticks":
            day = date.fromisoformat(value["today"])
            ticked = day
        else:
            day = date.fromisoformat(value.get("received_on") or value.get("updated_at", "")[:10])
        if day < latest or (topic != "clock.ticks" and day <= ticked):
            seen.order_problems.append(line[:120])
        latest = day
        if topic == "attendance.registers" and not calendar.is_school_day(day):
            seen.order_problems.append(f"register on {day}, not a school day")
    return seen


@pytest.fixture(scope="module")
def text() -> str:
    return render(OPTIONS)


@pytest.fixture(scope="module")
def observed(text: str) -> Observed:
    return observe(text.splitlines())


def test_without_attendance_the_output_is_unchanged() -> None:
    options = GeneratorOptions(pupils=3_000, seed=2024, start=date(2024, 9, 1), end=date(2025, 9, 30))
    digest = hashlib.sha256(render(options).encode()).hexdigest()
    assert digest == "47c5302a6b4bd1da83d16c1e06fc85af5b4fe169f33391b06a600f6d55e7b5c7"


def test_same_seed_gives_identical_bytes_and_other_seeds_differ(text: str) -> None:
    assert hashlib.sha256(render(OPTIONS).encode()).digest() == hashlib.sha256(text.encode()).digest()
    small = GeneratorOptions(pupils=1_500, seed=1, start=date(2025, 1, 6), end=date(2025, 1, 17), attendance=True)
    other = GeneratorOptions(pupils=1_500, seed=2, start=date(2025, 1, 6), end=date(2025, 1, 17), attendance=True)
    first, second = render(small), render(other)
    assert first != second
    assert first.count('"topic": "attendance.registers"') > 100


def test_registers_have_the_designed_shape(observed: Observed) -> None:
    assert observed.registers > 5_000
    assert observed.shape_problems == []
    assert len(observed.register_ids) == observed.registers, "register ids are unique"


def test_registers_only_on_school_days_in_date_order_before_each_tick(observed: Observed) -> None:
    assert observed.order_problems == []
    calendar = default_calendar()
    school_days = {day for day in calendar.school_days if OPTIONS.start <= day <= OPTIONS.end}
    assert observed.register_days == school_days


def test_each_school_day_marks_about_every_pupil(text: str) -> None:
    per_day: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith('{"topic": "attendance.registers"'):
            value = json.loads(line)["value"]
            per_day[value["date"]] += len(value["marks"])
    counts = list(per_day.values())
    assert min(counts) > 0.9 * PUPILS
    assert max(counts) < 1.15 * PUPILS


def test_rates_are_national_like(observed: Observed) -> None:
    total = sum(observed.sessions.values())
    assert total > 1_000_000

    def share(codes: frozenset[str]) -> float:
        return sum(observed.sessions[code] for code in codes) / total

    assert 0.91 < share(frozenset({"/", "\\"})) < 0.95
    assert 0.925 < share(SEEN) < 0.96
    assert 0.005 < share(frozenset({"L"})) < 0.02
    assert 0.025 < share(frozenset({"I"})) < 0.045
    assert 0.002 < share(frozenset({"M"})) < 0.01
    assert 0.008 < share(UNAUTHORISED) < 0.025
    assert 0.0003 < share(LEAVE) < 0.004
    assert 0.0005 < share(frozenset({"C2"})) < 0.005
    assert share(frozenset(observed.sessions) - CODES) == 0
    full = [counts for counts in observed.missed.values() if counts[0] >= 150]
    persistent = sum(missed / sessions >= 0.1 for sessions, missed in full) / len(full)
    assert 0.03 < persistent < 0.15, "persistent absentees (10% of sessions or more missed)"


def test_every_designed_pattern_is_present(observed: Observed) -> None:
    ground_i = [(run, leave) for ground, run, leave in observed.removals if ground == "I_CONTINUOUS_ABSENCE"]
    ground_h = [(run, leave) for ground, run, leave in observed.removals if ground == "H_NOT_RETURNED_FROM_LEAVE"]
    supported_i = [run for run, _ in ground_i if run >= 20]
    assert len(supported_i) > len(ground_i) / 2, "most ground I removals follow 20 unauthorised days"
    assert any(run < 20 for run, _ in ground_i), "a few ground I removals the register does not support"
    assert any(run >= 10 and leave for run, leave in ground_h), "leave, then no return, then ground H"
    assert any(run < 10 or not leave for run, leave in ground_h), "a ground H removal without the register behind it"
    histories = ["".join(history) for history in observed.history.values()]
    assert any(re.search("U{10,}S", history) for history in histories), "a long run that ends in a return"
    assert any(re.search("VU{10,}S", history) for history in histories), "a return after leave and a long run"
    no_shows = [
        key for key, index in observed.admissions
        if len(observed.history[key]) >= index + 3 and "S" not in observed.history[key][index : index + 3]
    ]
    assert no_shows, "in-year admissions whose first three marked days have no seen session"
    assert len(no_shows) < 0.2 * len(observed.admissions)


def test_big_schools_are_split_and_chunks_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    options = GeneratorOptions(pupils=2_000, seed=4, start=date(2025, 3, 3), end=date(2025, 3, 7), attendance=True)
    whole = list(generate_lines(options))
    monkeypatch.setattr(attendance, "MAX_REGISTER_MARKS", 40)
    monkeypatch.setattr(attendance, "CHUNK_MARKS", 500)
    chunks = [lines for _, lines in iter_chunks(options)]
    split = [line for lines in chunks for line in lines]
    values = [json.loads(line)["value"] for line in split if line.startswith('{"topic": "attendance.registers"')]
    assert max(len(value["marks"]) for value in values) <= 40
    assert len({value["register_id"] for value in values}) == len(values)
    marks_in = [
        sum(len(json.loads(line)["value"]["marks"]) for line in lines if '"attendance.registers"' in line[:40])
        for lines in chunks
    ]
    assert max(marks_in) < 500 + 600, "a chunk holds at most CHUNK_MARKS and one school's day more"

    def by_school_day(lines: list[str]) -> dict[tuple[str, str], list[Any]]:
        merged: dict[tuple[str, str], list[Any]] = defaultdict(list)
        for line in lines:
            if line.startswith('{"topic": "attendance.registers"'):
                value = json.loads(line)["value"]
                merged[(value["school"]["urn"], value["date"])].extend(value["marks"])
        return merged

    assert by_school_day(split) == by_school_day(whole)
    assert [line for line in split if "attendance" not in line[:40]] == [
        line for line in whole if "attendance" not in line[:40]
    ]


def test_cli_attendance_writes_the_library_bytes_and_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "out.jsonl"
    argv = ["generate", "--pupils", "800", "--seed", "3", "--from", "2025-01-06", "--to", "2025-01-17"]
    assert main([*argv, "--attendance", "--output", str(output)]) == 0
    options = GeneratorOptions(pupils=800, seed=3, start=date(2025, 1, 6), end=date(2025, 1, 17), attendance=True)
    assert output.read_text(encoding="utf-8") == render(options)
    err = capsys.readouterr().err
    lines = [line for line in output.read_text(encoding="utf-8").splitlines() if "attendance" in line[:40]]
    registers = len(lines)
    marks = sum(len(json.loads(line)["value"]["marks"]) for line in lines)
    assert f"{registers:,} attendance registers, {marks:,} marks" in err
    assert main([*argv, "--output", str(output)]) == 0
    assert "attendance registers" not in capsys.readouterr().err
    assert "attendance.registers" not in output.read_text(encoding="utf-8")
