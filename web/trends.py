"""The LA dashboard's Trends section: what it reads from the register, how a view of it is audited, what it shows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Protocol

from markupsafe import Markup

from processors.records import Recipient
from sinks.register.audit import DASHBOARD_TRENDS, AuditEvent, events_for
from sinks.register.queries import TREND_WEEKS, LATrends
from web.charts import Series, colours, line_chart, stacked_bars


class TrendsReader(Protocol):
    def la_trends(
        self, la_code: str, today: date, recipient: Recipient | None = None, weeks: int = TREND_WEEKS
    ) -> LATrends: ...


def load_trends(reader: TrendsReader, la_code: str, today: date, recipient: Recipient | None) -> LATrends:
    """The LA's trends as `recipient` may see them, with the same scoping as the page's lists. Blocking: SQL."""
    return reader.la_trends(la_code, today, recipient)


def trends_viewed(trends: LATrends | None, principal: str, la_code: str, role: str) -> list[AuditEvent]:
    """A view of the trends is audited like every dashboard view; being counts, it names no case and no child."""
    return [] if trends is None else events_for(principal, la_code, role, DASHBOARD_TRENDS, [(None, None)])


@dataclass(frozen=True, slots=True)
class WeekRow:
    """One row of the charts' data table, for screen readers: a week and its numbers."""

    name: str
    alerts: tuple[int, ...]
    alerts_total: int
    open_cases: int | None


@dataclass(frozen=True, slots=True)
class TrendView:
    """What web/templates/trends.html is given: the two charts and the same numbers as a table."""

    weeks: int
    alerts_chart: Markup
    cases_chart: Markup | None
    rules: tuple[str, ...]
    rows: tuple[WeekRow, ...]


def short_week(monday: date) -> str:
    return f"{monday.day} {monday:%b}"


def week_name(monday: date, today: date) -> str:
    year, week, _ = monday.isocalendar()
    to_date = ", to date" if today < date.fromordinal(monday.toordinal() + 6) else ""
    return f"Week of {monday.day} {monday:%b %Y} ({year}-W{week:02d}){to_date}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def trend_view(trends: LATrends | None) -> TrendView | None:
    """The charts and table of the role's trends; None when none were read (the JSON variant)."""
    if trends is None:
        return None
    weeks = len(trends.weeks)
    labels = [short_week(monday) for monday in trends.weeks]
    rules = tuple(rule.value for rule in trends.alerts)
    series = [
        Series(rule, counts, colour)
        for rule, counts, colour in zip(rules, trends.alerts.values(), colours(len(rules)), strict=True)
    ]
    by_rule = "; ".join(f"{item.name} {item.total}" for item in series)
    alerts_chart = stacked_bars(
        "Alerts per week by rule",
        f"{_plural(trends.alerts_total, 'alert')} in the last {weeks} weeks" + (f": {by_rule}." if by_rule else "."),
        labels, series, f"No alerts in the last {weeks} weeks",
    )
    cases_chart = None
    if trends.open_cases is not None:
        first, now = trends.open_cases[0], trends.open_cases[-1]
        cases_chart = line_chart(
            "Open cases at each week's end",
            f"{_plural(first, 'case')} open at the end of the week of {labels[0]}, {now} open today; "
            f"the most in the last {weeks} weeks: {max(trends.open_cases)}.",
            labels, trends.open_cases, f"No open cases in the last {weeks} weeks",
        )
    rows = tuple(
        WeekRow(
            week_name(monday, trends.today),
            tuple(counts[index] for counts in trends.alerts.values()),
            sum(counts[index] for counts in trends.alerts.values()),
            None if trends.open_cases is None else trends.open_cases[index],
        )
        for index, monday in enumerate(trends.weeks)
    )
    return TrendView(weeks, alerts_chart, cases_chart, rules, rows)
