"""Builds the rules' per-LA configuration (calendars, deadline lengths) from the settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from config.settings import Settings
from processors.calendar import SchoolCalendar, default_calendar
from processors.config import Calendar, DeadlineLengths, RuleConfig


class LAConfigError(ValueError):
    """The per-LA rules file is malformed; the message names the LA and the key."""


def build_rule_config(settings: Settings) -> RuleConfig:
    if settings.la_rules_file is None:
        return RuleConfig(default_calendar=default_calendar())
    return load_la_rules(settings.la_rules_file)


def load_la_rules(path: Path) -> RuleConfig:
    """Reads a JSON file: {"<LA code>": {"terms": [[first, last], ...], "closures": [...],
    "deadlines": {"transition_before": 10, ...}}, ...}; an LA without terms keeps the default calendar."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise LAConfigError(f"cannot read the LA rules file {path}: {error}") from error
    if not isinstance(document, dict):
        raise LAConfigError(f"{path}: expected an object keyed by 3-digit LA code")
    calendars: dict[str, Calendar] = {}
    lengths: dict[str, DeadlineLengths] = {}
    for la_code, entry in document.items():
        if not (isinstance(la_code, str) and len(la_code) == 3 and la_code.isdigit()):
            raise LAConfigError(f"{path}: {la_code!r} is not a 3-digit LA code")
        if not isinstance(entry, dict):
            raise LAConfigError(f"{path}: LA {la_code}: expected an object")
        calendar = _calendar(path, la_code, entry)
        if calendar is not None:
            calendars[la_code] = calendar
        if "deadlines" in entry:
            lengths[la_code] = _lengths(path, la_code, entry["deadlines"])
    return RuleConfig(default_calendar=default_calendar(), calendars=calendars, lengths=lengths)


def _calendar(path: Path, la_code: str, entry: dict[str, Any]) -> SchoolCalendar | None:
    if "terms" not in entry:
        if "closures" in entry:
            raise LAConfigError(f"{path}: LA {la_code}: closures need the LA's terms too")
        return None
    try:
        terms = [(str(first), str(last)) for first, last in entry["terms"]]
        return SchoolCalendar.from_config(terms, [str(day) for day in entry.get("closures", [])])
    except (TypeError, ValueError) as error:
        raise LAConfigError(f"{path}: LA {la_code}: bad terms or closures: {error}") from error


def _lengths(path: Path, la_code: str, value: Any) -> DeadlineLengths:
    if not isinstance(value, dict):
        raise LAConfigError(f"{path}: LA {la_code}: deadlines must be an object")
    known = set(DeadlineLengths.__dataclass_fields__)
    unknown = set(value) - known
    if unknown:
        raise LAConfigError(f"{path}: LA {la_code}: unknown deadline(s) {sorted(unknown)}; known: {sorted(known)}")
    if not all(isinstance(v, int) and 0 < v <= 60 for v in value.values()):
        raise LAConfigError(f"{path}: LA {la_code}: deadline lengths are school days from 1 to 60")
    return DeadlineLengths(**value)
