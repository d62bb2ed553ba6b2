"""Argument types the commands share."""

from __future__ import annotations

import argparse
from datetime import date


def iso_day(text: str) -> date:
    """A date written YYYY-MM-DD, or argparse's one-line usage error naming what was given."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date written YYYY-MM-DD") from None
