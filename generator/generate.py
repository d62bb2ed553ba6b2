"""Synthetic replay data: a seeded, streaming West Midlands feed of roll, EHE, safeguarding and clock records.

The generator simulates the 14 West Midlands LAs (domain.md §4.3) day by day and writes the replay JSON Lines
format of design.md, byte for byte as `schemas.jsonformat.record_to_line` would, so a file can be replayed
in-process or published to Kafka. It is meant for load tests, demos and soak runs; the records are invented.

Guarantees:
- Deterministic: all randomness comes from one `random.Random(seed)`; nothing reads the wall clock, and no
  iteration depends on hash order, so the same options always give the same bytes.
- Streaming: per pupil the generator keeps a handful of numbers in `array`s
  (about 30 bytes a pupil) plus a queue of scheduled follow-ups (an ADDED after a move, say); lines leave
  in chunks of at most CHUNK_LINES, so even the busiest day is never held whole.
- Valid: every line passes `schemas.jsonformat.parse_line` and `processors.validation.validate`.
- Ordered: records are in date order; each school day ends with its `clock.ticks` line.

Rates (per pupil per year unless stated; domain.md §6 gives the national figures they come from):
- In-year moves 3.3% (about 300k non-standard moves a year among about 9m pupils), split into moves to
  another school in the same LA, to a school in another West Midlands LA, to another LA with the school not
  yet known, out of the region, abroad, and to an unknown destination (grounds G, H, I). Most moves are
  completed within days by an ADDED at the new school (some ADDEDs come first), some late, some never.
- Pupils moving in from outside the region, enough to balance those who leave it.
- EHE deregistrations 0.6% (EHE is about 1.5% of children at any time; about 50k children a year start it),
  80% after a WRITTEN notice (some notices arrive a few days after the removal), 20% with no notice;
  10% of them return to school within months. ORAL indications 0.25%, a third followed by written notice.
- Child protection plans: 0.55% of pupils at any time (49k of 9m), 0.65% starting and ending a year.
  Looked after: 0.9% at any time (82k), 0.37% starting and ending a year; 40% placed out of area, so their
  status `la_code` (the responsible LA) differs from their school's LA. School Attendance Orders: 0.05%.
- Permanent exclusions 0.11% (most admitted to the LA's pupil referral unit within 6 school days),
  deaths 0.01%.
- CME: the moves to an unknown destination, never-completed moves and unconfirmed EHE give about 0.8% of
  pupils a year; the national "CME at any point" figure (143.5k, 1.6%) also counts children who were never
  on a roll, which a roll feed cannot see.
- Standard transitions on the last school day of the summer term: Year 6 leaves primary (ground A,
  destination the allocated secondary, ADDED there on the first school day of September for 97%; the rest
  late or never) and Year 11 leaves (ground L). A new Reception cohort starts each September. When the range
  starts on or before the first school day of a school year, that year's Reception and Year 7 pupils get
  their ADDEDs on that day too.
- Initial safeguarding statuses for every protected child and every child under an SAO are published on
  the first day of the range.

Attendance (`GeneratorOptions.attendance`, off by default; generator/attendance.py): each school day, after
the day's roll and status records and before its tick, one `attendance.registers` line per school with the
marks of every pupil on its roll (split into registers of at most 5,000 marks). About 93% of sessions are
present, 3% illness, 1-2% unauthorised; a few per cent of pupils are persistent absentees. Removals on
grounds I and H then come at the end of the absence behind them (most supported by the register, some not),
some runs of absence end in a return, and some in-year admissions never arrive for their first days.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, timedelta
from typing import TextIO

from generator.options import GenerationSummary, GeneratorOptions, check_options
from generator.simulation import Simulation
from processors.calendar import SchoolCalendar, default_calendar


def iter_chunks(
    options: GeneratorOptions, calendar: SchoolCalendar | None = None, *, summary: GenerationSummary | None = None
) -> Iterator[tuple[date, list[str]]]:
    """The run's replay lines (no newlines) in order, in chunks, each with its day (a day may span several
    chunks); `summary`, if given, is kept up to date with the registers and marks written so far. Raises
    GeneratorOptionsError for options it cannot honour."""
    school_calendar = calendar or default_calendar()
    check_options(options, school_calendar)
    simulation = Simulation(options, school_calendar)
    attendance = simulation.attendance
    day = options.start
    while day <= options.end:
        for chunk in simulation.run_day(day):
            if summary is not None and attendance is not None:
                summary.registers, summary.marks = attendance.registers, attendance.marks
            yield day, chunk
        day += timedelta(days=1)


def generate_lines(options: GeneratorOptions, calendar: SchoolCalendar | None = None) -> Iterator[str]:
    """Every replay line of the run (no newlines), in order."""
    for _, lines in iter_chunks(options, calendar):
        yield from lines


def write_replay(
    options: GeneratorOptions,
    out: TextIO,
    *,
    calendar: SchoolCalendar | None = None,
    on_day: Callable[[date, int], None] | None = None,
) -> GenerationSummary:
    """Write the run to `out` as JSON Lines; `on_day(day, lines_so_far)` is called after each chunk."""
    summary = GenerationSummary()
    for day, lines in iter_chunks(options, calendar, summary=summary):
        if lines:
            out.write("\n".join(lines))
            out.write("\n")
            summary.lines += len(lines)
            for line in lines:
                topic = line[11 : line.index('"', 11)]
                summary.per_topic[topic] = summary.per_topic.get(topic, 0) + 1
        summary.last_day = day
        if on_day is not None:
            on_day(day, summary.lines)
    return summary
