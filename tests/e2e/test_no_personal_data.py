"""The demo pipeline's logs, console and metrics carry no generated child's name, date of birth or postcode."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import pytest

from cli.commands.run import DEMO_FROM, DEMO_TO
from generator.generate import generate_lines
from generator.options import GeneratorOptions
from localbroker.nodes import find_free_base_port
from processors.records import EHENotification, RollEvent, SafeguardingStatus
from schemas.jsonformat import parse_line
from tests.e2e.test_demo import Output, fetch, free_port, log_tails
from tests.integration.workers import ROOT

pytestmark = pytest.mark.e2e

PUPILS, SEED = 5000, 2025
WORD = re.compile(r"[^\W\d_][\w'\u2019-]*")
ISO_DATE = re.compile(r"(?<!\d)(\d{4}-\d{2}-\d{2})(?!\d)")
UK_DATE = re.compile(r"(?<!\d)(\d{2}/\d{2}/\d{4})(?!\d)")
POSTCODE = re.compile(r"\b([A-Z]{1,2}\d[A-Z\d]?) ?(\d[A-Z]{2})\b")


@dataclass
class PersonalData:
    """What the generator made up about people, and the dates its records use for other things."""

    forenames_by_surname: dict[str, set[str]] = field(default_factory=dict)
    phrases: set[str] = field(default_factory=set)
    people: int = 0
    dates_of_birth: set[date] = field(default_factory=set)
    postcodes: set[str] = field(default_factory=set)
    record_dates: set[date] = field(default_factory=set)

    def add_person(self, forename: str, surname: str) -> None:
        forename, surname = forename.casefold(), surname.casefold()
        self.people += 1
        if WORD.fullmatch(forename) and WORD.fullmatch(surname):
            self.forenames_by_surname.setdefault(surname, set()).add(forename)
        else:
            # A name of several words is looked for as written, either way round.
            self.phrases |= {f"{forename} {surname}", f"{surname}, {forename}"}

    def found_in(self, text: str) -> list[str]:
        """Every piece of personal data in `text`, by line, described without repeating it in full."""
        found = []
        for number, line in enumerate(text.splitlines(), 1):
            folded = line.casefold()
            words = {word.rstrip("'\u2019-") for word in WORD.findall(folded)}
            for word in words:
                # A forename and its surname in one line, in any order or form (a repr, JSON, "Surname, F").
                if word in self.forenames_by_surname and self.forenames_by_surname[word] & words:
                    found.append(f"line {number}: a child's forename and surname")
            found += [f"line {number}: a child's full name" for phrase in self.phrases if phrase in folded]
            for match in POSTCODE.finditer(line):
                if f"{match.group(1)} {match.group(2)}" in self.postcodes:
                    found.append(f"line {number}: a postcode")
            for iso in ISO_DATE.findall(line):
                if _date(iso) in self.dates_of_birth - self.record_dates:
                    found.append(f"line {number}: a date of birth")
            for uk in UK_DATE.findall(line):
                day, month, year = uk.split("/")
                if _date(f"{year}-{month}-{day}") in self.dates_of_birth - self.record_dates:
                    found.append(f"line {number}: a date of birth")
        return found


def _date(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def generated_personal_data() -> PersonalData:
    """The demo's data set, made again in-process with the options `rollwatch run` uses."""
    data = PersonalData()
    span = DEMO_FROM.toordinal(), DEMO_TO.toordinal()
    # Every business day of the run and today: dates the pipeline rightly prints (ticks, deadlines, logs).
    data.record_dates |= {date.fromordinal(day) for day in range(span[0] - 30, span[1] + 120)}
    data.record_dates.add(datetime.now().date())  # noqa: DTZ005 - the logs' own timestamps
    for line in generate_lines(GeneratorOptions(pupils=PUPILS, seed=SEED, start=DEMO_FROM, end=DEMO_TO)):
        _topic, record = parse_line(line)
        if isinstance(record, RollEvent):
            child = record.child
            data.add_person(child.forename, child.surname)
            data.dates_of_birth.add(child.date_of_birth)
            if child.postcode:
                data.postcodes.add(" ".join(child.postcode.upper().split()))
            data.record_dates |= {record.effective_date, record.recorded_at.date()}
        elif isinstance(record, EHENotification):
            data.record_dates.add(record.received_on)
        elif isinstance(record, SafeguardingStatus):
            data.record_dates.add(record.updated_at.date())
            if record.social_worker is not None:
                forename, _, surname = record.social_worker.name.partition(" ")
                data.add_person(forename, surname)
    return data


def test_the_checker_finds_what_it_looks_for() -> None:
    data = PersonalData()
    data.add_person("Zoë-Marie", "O'Connor")
    data.dates_of_birth.add(date(2014, 8, 17))
    data.postcodes.add("B15 2TT")

    data.add_person("Anne Marie", "Van der Berg")

    assert data.found_in("x child=Child(forename='Zoë-Marie', surname=\"O'Connor\")")
    assert data.found_in("Anne Marie Van der Berg") and data.found_in("VAN DER BERG, Anne Marie")
    assert data.found_in("O'CONNOR, Zoë-Marie")
    assert data.found_in("born 2014-08-17")
    assert data.found_in("born 17/08/2014")
    assert data.found_in("lives at B15 2TT") and data.found_in("lives at B152TT")
    assert not data.found_in("Zoë-Marie went home; 2014-08-18; B15 2TU; LA 330 UPN W330215224052")


def test_the_demo_logs_and_metrics_carry_no_personal_data(tmp_path: Path) -> None:
    data = generated_personal_data()
    assert data.people > 50 and data.dates_of_birth and data.postcodes

    web_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLWATCH_")}
    env |= {
        "ROLLWATCH_BROKER_DATA_DIR": str(tmp_path / "kafka"),
        "ROLLWATCH_BROKER_PORT": str(find_free_base_port()),
        "ROLLWATCH_DATA_DIR": str(tmp_path / "worker"),
        # INFO, the default: every line a deployment would log by default.
        "ROLLWATCH_LOG_LEVEL": "INFO",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "run", "--pupils", str(PUPILS), "--seed", str(SEED),
         "--day-seconds", "0.05", "--web-port", str(web_port), "--exit-when-done"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    assert process.stdout is not None
    output = Output(process.stdout)
    scrapes: list[str] = []
    scraping = threading.Event()

    def scrape() -> None:
        # Metrics are scraped while the worker runs: with --exit-when-done it stops soon after the last record.
        while not scraping.is_set() and process.poll() is None:
            try:
                status, exposition = fetch(f"http://127.0.0.1:{web_port}/metrics")
            except OSError:
                status, exposition = 0, ""
            if status == 200:
                scrapes.append(exposition)
            scraping.wait(2.0)

    scraper = threading.Thread(target=scrape, daemon=True)
    scraper.start()
    try:
        returncode = process.wait(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGINT)
        pytest.fail(f"rollwatch run --exit-when-done still running after 240 s:\n{output.text[-3000:]}")
    finally:
        scraping.set()
        if process.poll() is None:
            time.sleep(30)
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    output.join()
    scraper.join(timeout=15)
    assert returncode == 0, output.text[-4000:] + log_tails(tmp_path)
    assert "  ALERT " in output.text, output.text[-4000:]

    # The broker's own logs, not its data: a topic's segment files (also *.log) rightly hold the alerts.
    logs = sorted(tmp_path.glob("worker/demo-*/*.log")) + sorted(tmp_path.glob("kafka/*/logs/*.log"))
    assert any(log.name == "worker.log" for log in logs) and any(log.name == "register-sync.log" for log in logs)
    assert any(log.name == "server.log" for log in logs), [str(log) for log in logs]
    with_alerts = [text for text in scrapes if re.search(r"^rollwatch_alerts_total\{.*\} [1-9]", text, re.M)]
    assert with_alerts, f"{len(scrapes)} scrapes, none with an alert counted"

    leaks = {"console": data.found_in(output.text)}
    for log in logs:
        leaks[str(log.relative_to(tmp_path))] = data.found_in(log.read_text(encoding="utf-8", errors="replace"))
    for number, exposition in enumerate(scrapes, 1):
        leaks[f"metrics scrape {number}"] = data.found_in(exposition)
    assert {where: found for where, found in leaks.items() if found} == {}
