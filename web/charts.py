"""Charts as inline SVG strings, stacked bars and a line, from counts and labels: no script, no font, no fetch."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup

#: Okabe-Ito's colour-blind-safe eight first, then Paul Tol's muted set: one colour each for all 18 rules,
#: the most distinct going to the rules present first.
PALETTE = (
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442",
    "#882255", "#44AA99", "#999933", "#332288", "#AA4499", "#117733", "#661100", "#888888",
    "#6699CC", "#DDCC77",
)
LINE_COLOUR = "#1d3557"
INK, GRID = "#4a5360", "#e0e4ea"
WIDTH = 640
LEFT, RIGHT, TOP = 40, 12, 18
PLOT_HEIGHT = 170
AXIS_HEIGHT = 22
LEGEND_COLUMN, LEGEND_ROW = 208, 18
EMPTY_HEIGHT = 80
#: Tick labels on the x axis at most; more categories than this label every second (third...) one.
MAX_X_LABELS = 13
#: Characters XML 1.0 does not allow, even escaped: a label holding one would make the SVG unreadable.
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True, slots=True)
class Series:
    """One stack of the bars (or the one line): a name, a count per category, a colour."""

    name: str
    values: tuple[int, ...]
    colour: str

    @property
    def total(self) -> int:
        return sum(self.values)


def text(value: object) -> str:
    """A value as SVG text or attribute: XML-invalid characters dropped, markup and quotes escaped."""
    return html.escape(NOT_XML.sub("", str(value)), quote=True)


def colours(count: int) -> list[str]:
    """`count` distinct colours; past the palette they repeat (the data table still tells them apart)."""
    return [PALETTE[index % len(PALETTE)] for index in range(count)]


def scale_top(largest: int) -> tuple[int, int]:
    """The y axis's top and tick step: a 1, 2 or 5 times a power of ten step, at most 5 ticks above zero."""
    if largest <= 0:
        return 1, 1
    magnitude = 10 ** max(0, len(str(largest)) - 2)
    step = next(m * magnitude * p for p in (1, 10, 100) for m in (1, 2, 5) if m * magnitude * p * 5 >= largest)
    return step * math.ceil(largest / step), step


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _open(width: int, height: int, title: str, description: str, label: str, kind: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {kind}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{text(label)}">',
        f"<title>{text(title)}</title>",
        f"<desc>{text(description)}</desc>",
    ]


def empty_chart(title: str, message: str, kind: str = "empty") -> Markup:
    """The chart's frame with only `message` in it, for a period with nothing to draw."""
    parts = _open(WIDTH, EMPTY_HEIGHT, title, message, f"{title}: {message}", kind)
    parts.append(
        f'<text x="{WIDTH // 2}" y="{EMPTY_HEIGHT // 2 + 5}" text-anchor="middle" font-size="14" '
        f'fill="{INK}">{text(message)}</text>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every value in it went through text()


def _grid(top: int, step: int, plot_width: float) -> list[str]:
    parts = ['<g class="grid">']
    for tick in range(0, top + 1, step):
        y = TOP + PLOT_HEIGHT - tick / top * PLOT_HEIGHT
        parts.append(
            f'<line x1="{LEFT}" x2="{_number(LEFT + plot_width)}" y1="{_number(y)}" y2="{_number(y)}" '
            f'stroke="{INK if tick == 0 else GRID}" stroke-width="1"/>'
            f'<text x="{LEFT - 6}" y="{_number(y + 4)}" text-anchor="end" font-size="11" fill="{INK}">{tick}</text>'
        )
    parts.append("</g>")
    return parts


def _x_labels(categories: Sequence[str], slot: float) -> list[str]:
    every = math.ceil(len(categories) / MAX_X_LABELS)
    parts = ['<g class="x-axis">']
    for index, category in enumerate(categories):
        if (len(categories) - 1 - index) % every == 0:  # the newest always labelled
            x = LEFT + slot * (index + 0.5)
            parts.append(
                f'<text x="{_number(x)}" y="{TOP + PLOT_HEIGHT + 15}" text-anchor="middle" font-size="11" '
                f'fill="{INK}">{text(category)}</text>'
            )
    parts.append("</g>")
    return parts


def stacked_bars(
    title: str, description: str, categories: Sequence[str], series: Sequence[Series], empty_message: str
) -> Markup:
    """One bar per category, each series' count stacked on the previous ones' (first at the bottom), the total
    above it, and a legend naming each series with its total. Bar heights are proportional to the counts."""
    if any(len(item.values) != len(categories) for item in series):
        raise ValueError("every series needs one value per category")
    shown = [item for item in series if item.total > 0]
    totals = [sum(item.values[index] for item in shown) for index in range(len(categories))]
    if not categories or not shown:
        return empty_chart(title, empty_message)
    top, step = scale_top(max(totals))
    plot_width = WIDTH - LEFT - RIGHT
    slot = plot_width / len(categories)
    bar_width = slot * 0.7
    unit = PLOT_HEIGHT / top
    columns = max(1, plot_width // LEGEND_COLUMN)
    legend_top = TOP + PLOT_HEIGHT + AXIS_HEIGHT + 8
    height = legend_top + math.ceil(len(shown) / columns) * LEGEND_ROW + 4
    parts = _open(WIDTH, height, title, description, f"{title}. {description}", "bars")
    parts += _grid(top, step, plot_width)
    parts.append('<g class="bars">')
    for index, category in enumerate(categories):
        x = LEFT + slot * index + (slot - bar_width) / 2
        base = float(TOP + PLOT_HEIGHT)
        for item in shown:
            count = item.values[index]
            if count <= 0:
                continue
            bar_height = count * unit
            base -= bar_height
            parts.append(
                f'<rect class="bar" x="{_number(x)}" y="{_number(base)}" width="{_number(bar_width)}" '
                f'height="{_number(bar_height)}" fill="{item.colour}" stroke="#ffffff" stroke-width="0.75" '
                f'data-series="{text(item.name)}" data-category="{text(category)}" data-count="{count}">'
                f"<title>{text(item.name)}, {text(category)}: {count}</title></rect>"
            )
        if totals[index]:
            parts.append(
                f'<text class="total" x="{_number(x + bar_width / 2)}" y="{_number(base - 4)}" '
                f'text-anchor="middle" font-size="10" fill="{INK}">{totals[index]}</text>'
            )
    parts.append("</g>")
    parts += _x_labels(categories, slot)
    parts.append('<g class="legend">')
    for position, item in enumerate(shown):
        x = LEFT + (position % columns) * LEGEND_COLUMN
        y = legend_top + (position // columns) * LEGEND_ROW
        parts.append(
            f'<rect x="{x}" y="{y}" width="12" height="12" fill="{item.colour}"/>'
            f'<text x="{x + 17}" y="{y + 10}" font-size="11" fill="{INK}">{text(item.name)} ({item.total})</text>'
        )
    parts.append("</g></svg>")
    return Markup("".join(parts))  # noqa: S704 - every label in it went through text()


def line_chart(
    title: str, description: str, categories: Sequence[str], values: Sequence[int], empty_message: str,
    colour: str = LINE_COLOUR,
) -> Markup:
    """One point per category joined by a line, each point's value written above it."""
    if len(values) != len(categories):
        raise ValueError("the line needs one value per category")
    if not categories or not any(values):
        return empty_chart(title, empty_message)
    top, step = scale_top(max(values))
    plot_width = WIDTH - LEFT - RIGHT
    slot = plot_width / len(categories)
    height = TOP + PLOT_HEIGHT + AXIS_HEIGHT
    points = [
        (LEFT + slot * (index + 0.5), TOP + PLOT_HEIGHT - value / top * PLOT_HEIGHT)
        for index, value in enumerate(values)
    ]
    parts = _open(WIDTH, height, title, description, f"{title}. {description}", "line")
    parts += _grid(top, step, plot_width)
    path = " ".join(f"{_number(x)},{_number(y)}" for x, y in points)
    parts.append(f'<polyline class="trend" points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
    parts.append('<g class="points">')
    for (x, y), category, value in zip(points, categories, values, strict=True):
        parts.append(
            f'<circle class="point" cx="{_number(x)}" cy="{_number(y)}" r="3.5" fill="{colour}" '
            f'data-category="{text(category)}" data-count="{value}">'
            f"<title>{text(category)}: {value}</title></circle>"
            f'<text x="{_number(x)}" y="{_number(y - 7)}" text-anchor="middle" font-size="10" '
            f'fill="{INK}">{value}</text>'
        )
    parts.append("</g>")
    parts += _x_labels(categories, slot)
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every label in it went through text()
