"""The README stays true to the code: its settings table is the generated one and every command is listed."""

from __future__ import annotations

from pathlib import Path

from cli.main import COMMAND_MODULES
from config.doc import settings_table

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_settings_table_matches_the_settings_object() -> None:
    assert settings_table() in README, "run `python -m config.doc README.md` after changing Settings"


def test_every_command_is_documented() -> None:
    missing = [name for name in COMMAND_MODULES if f"rollwatch {name}" not in README]
    assert missing == []


def test_the_two_set_up_commands_are_there() -> None:
    assert "make run" in README and "make test" in README
