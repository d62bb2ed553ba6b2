"""Each command with Kafka or the database out of reach: one line on stderr, exit 2, within 10 s."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.shared import REPOSITORY, SHARED_SCENARIOS

#: The bound the issue sets for a command to give up and say why.
WITHIN_SECONDS = 10.0
#: A webhook for `register deliver`, which touches nothing without one (the secret is 32 zero bytes).
WEBHOOKS = '{"330": {"url": "http://127.0.0.1:9/hook", "secret": "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}'


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str
    seconds: float


@pytest.fixture(scope="module")
def dead_ports() -> Iterator[tuple[int, int]]:
    """Two ports bound but never listening: a connection to them is refused, and nobody else can take them."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(2)]
    for held in sockets:
        held.bind(("127.0.0.1", 0))
    yield sockets[0].getsockname()[1], sockets[1].getsockname()[1]
    for held in sockets:
        held.close()


def run_cli(argv: list[str], kafka_port: int, database_port: int) -> Outcome:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ROLLWATCH_")}
    env.update(
        ROLLWATCH_BOOTSTRAP_SERVERS=f"127.0.0.1:{kafka_port}",
        ROLLWATCH_DATABASE_URL=f"postgresql+psycopg://rollwatch@127.0.0.1:{database_port}/x",
        ROLLWATCH_WEBHOOKS=WEBHOOKS,
        ROLLWATCH_LOG_LEVEL="INFO",
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *argv],
        cwd=REPOSITORY, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    return Outcome(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def publishable_file(tmp_path: Path) -> Path:
    first = sorted(SHARED_SCENARIOS.glob("*.jsonl"))[0].read_text(encoding="utf-8").splitlines()[0]
    path = tmp_path / "one.jsonl"
    path.write_text(first + "\n", encoding="utf-8")
    return path


#: (command line, which service it fails on first).
KAFKA, DATABASE = "Kafka", "the database"
#: The setting the line tells the user to check, per service.
SETTING = {KAFKA: "ROLLWATCH_BOOTSTRAP_SERVERS", DATABASE: "ROLLWATCH_DATABASE_URL"}
COMMANDS: list[tuple[list[str], str]] = [
    (["alerts"], KAFKA),
    (["worker"], KAFKA),
    (["register", "sync", "--once"], DATABASE),
    (["register", "deliver", "--once"], DATABASE),
    (["register", "migrate"], DATABASE),
    (["register", "purge", "--dry-run"], DATABASE),
    (["cases", "list"], DATABASE),
    (["cases", "show", "6f1c0000-0000-5000-8000-0000000000e2"], DATABASE),
    (["cases", "close", "6f1c0000-0000-5000-8000-0000000000e2", "--reason", "moved", "--by", "A. Officer"], KAFKA),
    (["cases", "close", "6f1c0000-0000-5000-8000-0000000000e2", "--reason-code", "located-at-school", "--note",
      "on roll at a school in Walsall", "--by", "A. Officer"], KAFKA),
    (["cases", "note", "6f1c0000-0000-5000-8000-0000000000e2", "--kind", "home-visit", "--outcome", "no answer",
      "--note", "card left", "--by", "A. Officer"], KAFKA),
    (["cases", "assign", "6f1c0000-0000-5000-8000-0000000000e2", "--to", "B. Officer", "--by", "A. Officer"], KAFKA),
    (["cases", "link", "6f1c0000-0000-5000-8000-0000000000e2", "E330317324074", "--by", "A. Officer"], KAFKA),
    (["lookup", "--la", "330", "--upn", "E330317324074", "--by", "A. Officer"], DATABASE),
    (["audit", "list", "--la", "330", "--since", "2025-01-01"], DATABASE),
    (["access", "list"], KAFKA),
    (["dlq", "list"], KAFKA),
]


def test_every_command_says_in_one_line_what_it_could_not_reach(
    tmp_path: Path, dead_ports: tuple[int, int]
) -> None:
    kafka_port, database_port = dead_ports
    commands = [*COMMANDS, (["publish", str(publishable_file(tmp_path))], KAFKA)]
    # One at a time: each is timed, and interpreters starting side by side on a busy machine would slow each
    # other past the bound while every one of them gave up at once.
    outcomes = [run_cli(argv, kafka_port, database_port) for argv, _ in commands]
    problems = []
    for (argv, service), outcome in zip(commands, outcomes, strict=True):
        address = f"127.0.0.1:{kafka_port if service == KAFKA else database_port}"
        lines = outcome.stderr.splitlines()
        wrong = [
            *(["exit code " + str(outcome.code)] if outcome.code != 2 else []),
            *(["stdout: " + outcome.stdout[:200]] if outcome.stdout else []),
            *([f"{len(lines)} lines on stderr"] if len(lines) != 1 else []),
            *(["a traceback"] if "Traceback" in outcome.stderr else []),
            *([f"does not name {service} at {address}"] if f"reach {service} at" not in outcome.stderr
              or address not in outcome.stderr else []),
            *([f"does not say to check {SETTING[service]}"] if f"check {SETTING[service]}" not in outcome.stderr
              else []),
            *([f"took {outcome.seconds:.1f} s"] if outcome.seconds > WITHIN_SECONDS else []),
        ]
        if wrong:
            problems.append(f"rollwatch {' '.join(argv[:2])}: {'; '.join(wrong)}\n{outcome.stderr[:2000]}")
    assert not problems, "\n".join(problems)


def test_version_prints_the_installed_distribution_version() -> None:
    from importlib.metadata import version

    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "--version"],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"rollwatch {version('rollwatch')}\n"
