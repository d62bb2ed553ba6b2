"""The bench's table of figures: values, their spread over repeated runs, targets and PASS/MISS."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MEGABYTE = 1024 * 1024


@dataclass(frozen=True)
class Measured:
    """One figure measured one or more times; higher is better unless the target says otherwise."""

    values: tuple[float, ...]

    @property
    def best(self) -> float:
        return max(self.values)

    @property
    def least(self) -> float:
        return min(self.values)

    def spread(self, unit: str = "", digits: int = 0) -> str:
        if len(self.values) < 2:
            return ""
        return f"{len(self.values)} runs: {self.least:,.{digits}f} to {self.best:,.{digits}f}{unit}"


@dataclass(frozen=True)
class Target:
    text: str
    passed: bool
    #: How far a missed target is from being met, in words.
    shortfall: str = ""

    @property
    def verdict(self) -> str:
        if self.passed:
            return "PASS"
        return f"MISS ({self.shortfall})" if self.shortfall else "MISS"


def at_least(value: float, minimum: float, text: str) -> Target:
    if math.isnan(value):
        return Target(text, False, "not measured")
    if value >= minimum:
        return Target(text, True)
    return Target(text, False, f"{(1 - value / minimum) * 100:.0f}% short")


def at_most(value: float, maximum: float, text: str) -> Target:
    if math.isnan(value):
        return Target(text, False, "not measured")
    if value <= maximum:
        return Target(text, True)
    return Target(text, False, f"{(value / maximum - 1) * 100:.0f}% over")


@dataclass(frozen=True)
class Figure:
    name: str
    value: str
    detail: str = ""
    target: Target | None = None


def rate_text(records_per_second: float) -> str:
    return "n/a" if math.isnan(records_per_second) else f"{records_per_second:,.0f} records/s"


def megabytes(size: int | None) -> str:
    return "n/a" if size is None else f"{size / MEGABYTE:,.0f} MB"


def milliseconds(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:,.0f} ms"


def render_table(figures: Sequence[Figure]) -> str:
    """A plain-text table: one figure a line, details indented on the line below."""
    header = ("figure", "value", "target", "result")
    rows = [
        (figure.name, figure.value, figure.target.text if figure.target else "", figure.target.verdict
         if figure.target else "")
        for figure in figures
    ]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(3)]
    lines = []
    for row, figure in zip([header, *rows], [None, *figures], strict=True):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])
        if figure is not None and figure.detail:
            lines.append(f"    {figure.detail}")
    rule = "-" * max(len(line) for line in lines)
    return "\n".join([rule, lines[0], rule, *lines[1:], rule])
