"""The dashboard's trend charts: well-formed accessible SVG, bars and points in proportion, hostile labels escaped,
and the Trends section on the page, audited, under the page's Content-Security-Policy."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.records import Rule
from sinks.register import LATrends, Register
from tests.unit.test_dashboard import COVENTRY, TOKENS, bearer, with_token
from tests.unit.test_dashboard import dashboard as dashboard
from tests.unit.test_dashboard import register as register
from web.charts import PALETTE, PLOT_HEIGHT, TOP, Series, colours, line_chart, scale_top, stacked_bars
from web.dashboard import SECURITY_HEADERS, LADashboard
from web.trends import trend_view, week_name

SVG = "{http://www.w3.org/2000/svg}"
WEEKS = [f"{day} Mar" for day in range(1, 13)]
HOSTILE = "<script>alert(1)</script> & \"quoted\" 'single' ]]> <!-- x"


def parse(svg: str) -> ElementTree.Element:
    # The chart module's own output, parsed to prove it is well-formed.
    return ElementTree.fromstring(svg)  # noqa: S314


def bars(root: ElementTree.Element) -> list[ElementTree.Element]:
    return [rect for rect in root.iter(f"{SVG}rect") if rect.get("class") == "bar"]


def legend(root: ElementTree.Element) -> list[str]:
    group = next(item for item in root.iter(f"{SVG}g") if item.get("class") == "legend")
    return [item.text or "" for item in group.iter(f"{SVG}text")]


def test_stacked_bars_are_accessible_well_formed_svg() -> None:
    series = [Series("MISSING_NO_DESTINATION", (1, 0, 3) + (0,) * 9, PALETTE[0]),
              Series("CHILD_LOCATED", (0, 0, 2) + (0,) * 9, PALETTE[1])]
    root = parse(stacked_bars("Alerts per week by rule", "6 alerts", WEEKS, series, "No alerts"))
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    assert root.get("aria-label") == "Alerts per week by rule. 6 alerts"
    assert root.findtext(f"{SVG}title") == "Alerts per week by rule"
    assert root.findtext(f"{SVG}desc") == "6 alerts"
    assert [(rect.get("data-series"), rect.get("data-category"), rect.get("data-count")) for rect in bars(root)] == [
        ("MISSING_NO_DESTINATION", "1 Mar", "1"), ("MISSING_NO_DESTINATION", "3 Mar", "3"),
        ("CHILD_LOCATED", "3 Mar", "2"),
    ]
    assert legend(root) == ["MISSING_NO_DESTINATION (4)", "CHILD_LOCATED (2)"]
    # Each bar segment says what it is when pointed at.
    assert [rect.findtext(f"{SVG}title") for rect in bars(root)][1] == "MISSING_NO_DESTINATION, 3 Mar: 3"


def test_bar_heights_are_proportional_to_counts_and_stack_up() -> None:
    series = [Series("A", (1, 2, 7, 0), PALETTE[0]), Series("B", (3, 0, 1, 0), PALETTE[1])]
    root = parse(stacked_bars("t", "d", ["w1", "w2", "w3", "w4"], series, "none"))
    top, _ = scale_top(8)
    found = bars(root)
    for rect in found:
        assert float(rect.get("height", "0")) == pytest.approx(int(rect.get("data-count", "0")) * PLOT_HEIGHT / top,
                                                                abs=0.01)
    # In a column, B sits on A: its bottom is A's top.
    first_a, first_b = found[0], found[1]
    assert [(rect.get("data-series"), rect.get("data-category")) for rect in found] == [
        ("A", "w1"), ("B", "w1"), ("A", "w2"), ("A", "w3"), ("B", "w3"),
    ]
    assert float(first_b.get("y", "0")) + float(first_b.get("height", "0")) == pytest.approx(
        float(first_a.get("y", "0")), abs=0.01)
    # The tallest column (8) reaches the axis's top exactly.
    assert top == 8 and float(found[4].get("y", "0")) == pytest.approx(TOP, abs=0.01)


def test_hostile_labels_are_escaped_and_read_back_intact() -> None:
    svg = stacked_bars(HOSTILE, HOSTILE, [HOSTILE], [Series(HOSTILE, (2,), PALETTE[0])], HOSTILE)
    assert "<script" not in svg and "<!--" not in svg
    root = parse(svg)
    assert root.findtext(f"{SVG}title") == HOSTILE
    assert root.get("aria-label") == f"{HOSTILE}. {HOSTILE}"
    assert bars(root)[0].get("data-series") == HOSTILE
    assert legend(root) == [f"{HOSTILE} (2)"]
    line = parse(line_chart(HOSTILE, HOSTILE, [HOSTILE], [1], HOSTILE))
    assert [point.get("data-category") for point in line.iter(f"{SVG}circle")] == [HOSTILE]
    empty = parse(stacked_bars(HOSTILE, "d", [HOSTILE], [], HOSTILE))
    assert [text.text for text in empty.iter(f"{SVG}text")] == [HOSTILE]


def test_characters_xml_cannot_hold_are_dropped() -> None:
    root = parse(stacked_bars("a\x00b\x1fc\ud800", "d", ["w"], [Series("x\x07y", (1,), PALETTE[0])], "none"))
    assert root.findtext(f"{SVG}title") == "abc"
    assert legend(root) == ["xy (1)"]


def test_nothing_to_draw_shows_the_empty_message() -> None:
    for svg in (
        stacked_bars("Alerts per week by rule", "d", WEEKS, [], "No alerts in the last 12 weeks"),
        stacked_bars("Alerts per week by rule", "d", WEEKS, [Series("A", (0,) * 12, PALETTE[0])],
                     "No alerts in the last 12 weeks"),
    ):
        root = parse(svg)
        assert bars(root) == []
        assert root.get("aria-label") == "Alerts per week by rule: No alerts in the last 12 weeks"
        assert [text.text for text in root.iter(f"{SVG}text")] == ["No alerts in the last 12 weeks"]
    assert "No open cases" in line_chart("t", "d", WEEKS, [0] * 12, "No open cases in the last 12 weeks")
    with pytest.raises(ValueError, match="one value per category"):
        stacked_bars("t", "d", WEEKS, [Series("A", (1,), PALETTE[0])], "none")


def test_line_points_sit_at_their_counts() -> None:
    values = [0, 4, 9, 10, 3]
    root = parse(line_chart("Open cases", "d", ["a", "b", "c", "d", "e"], values, "none"))
    top, _ = scale_top(10)
    points = list(root.iter(f"{SVG}circle"))
    assert [int(point.get("data-count", "-1")) for point in points] == values
    for point, value in zip(points, values, strict=True):
        assert TOP + PLOT_HEIGHT - float(point.get("cy", "0")) == pytest.approx(value * PLOT_HEIGHT / top, abs=0.01)
    assert root.get("role") == "img" and root.findtext(f"{SVG}title") == "Open cases"


@pytest.mark.parametrize(("largest", "top", "step"), [(1, 1, 1), (3, 3, 1), (7, 8, 2), (10, 10, 2), (11, 15, 5),
                                                      (37, 40, 10), (100, 100, 20), (999, 1000, 200)])
def test_the_axis_top_is_a_round_number_at_or_above_the_largest(largest: int, top: int, step: int) -> None:
    assert scale_top(largest) == (top, step)


def test_every_rule_gets_its_own_colour() -> None:
    assert len(set(colours(len(Rule)))) == len(Rule)
    series = [Series(rule.value, (1,), colour) for rule, colour in zip(Rule, colours(len(Rule)), strict=True)]
    root = parse(stacked_bars("t", "d", ["w"], series, "none"))
    assert len({rect.get("fill") for rect in bars(root)}) == len(Rule)


@settings(max_examples=150, deadline=None)
@given(length=st.integers(1, 30), data=st.data(), name=st.text(max_size=40))
def test_any_counts_and_labels_make_valid_svg_in_proportion(length: int, data: st.DataObject, name: str) -> None:
    row = st.lists(st.integers(0, 10**6), min_size=length, max_size=length).map(tuple)
    counts: list[tuple[int, ...]] = data.draw(st.lists(row, max_size=16))
    categories = [f"{name} {index}" for index in range(length)]
    series = [Series(f"{name}{index}", row, colour) for index, (row, colour) in enumerate(
        zip(counts, colours(len(counts)), strict=True))]
    root = parse(stacked_bars(name, name, categories, series, "No alerts"))
    drawn = bars(root)
    assert len(drawn) == sum(1 for row in counts for value in row if value > 0)
    totals = [sum(row[index] for row in counts) for index in range(length)]
    if drawn:
        top, _ = scale_top(max(totals))
        assert top >= max(totals)
        for rect in drawn:
            expected = int(rect.get("data-count", "0")) * PLOT_HEIGHT / top
            assert float(rect.get("height", "0")) == pytest.approx(expected, abs=0.01)
            assert float(rect.get("y", "0")) >= TOP - 0.01
    line = parse(line_chart(name, name, categories, totals, "none"))
    assert len(list(line.iter(f"{SVG}circle"))) == (length if any(totals) else 0)


# --- the Trends section ------------------------------------------------------------------------------------

MONDAYS = tuple(date(2024, 12, 23) + timedelta(weeks=index) for index in range(12))


def test_trend_view_labels_weeks_and_builds_the_table() -> None:
    trends = LATrends(date(2025, 3, 14), MONDAYS, {Rule.MISSING_NO_DESTINATION: (1,) + (0,) * 10 + (2,)},
                      (0,) * 11 + (3,))
    view = trend_view(trends)
    assert view is not None and view.weeks == 12 and view.rules == ("MISSING_NO_DESTINATION",)
    assert view.rows[0].name == "Week of 23 Dec 2024 (2024-W52)"
    assert view.rows[-1].name == "Week of 10 Mar 2025 (2025-W11), to date"
    assert (view.rows[-1].alerts, view.rows[-1].alerts_total, view.rows[-1].open_cases) == ((2,), 2, 3)
    assert "3 alerts in the last 12 weeks: MISSING_NO_DESTINATION 3." in view.alerts_chart
    assert view.cases_chart is not None and "3 open today" in view.cases_chart
    ehe = trend_view(LATrends(date(2025, 3, 14), MONDAYS, {}, None))
    assert ehe is not None and ehe.cases_chart is None and "No alerts in the last 12 weeks" in ehe.alerts_chart
    assert trend_view(None) is None
    assert week_name(date(2025, 3, 3), date(2025, 3, 9)) == "Week of 3 Mar 2025 (2025-W10)"


def section(body: str) -> str:
    found = re.search(r'<section class="trends".*?</section>', body, re.S)
    assert found is not None, "no Trends section"
    return found.group(0)


def svgs(body: str) -> list[ElementTree.Element]:
    return [parse(svg) for svg in re.findall(r"<svg .*?</svg>", section(body), re.S)]


async def test_the_page_shows_the_roles_trends_only(dashboard: LADashboard) -> None:
    # The unit tests' register and clock (14 Mar 2025): Coventry's officer has four alerts in the twelve
    # weeks, two open cases now; Dudley's alert, the EHE notice and the social-care alert are not counted.
    reply = await dashboard.page(COVENTRY, with_token(COVENTRY), {})
    alerts_svg, cases_svg = svgs(reply.body)
    assert alerts_svg.get("aria-label", "").startswith("Alerts per week by rule. 4 alerts in the last 12 weeks: ")
    assert sum(int(rect.get("data-count", "0")) for rect in bars(alerts_svg)) == 4
    assert {rect.get("data-series") for rect in bars(alerts_svg)} == {
        "MISSING_NO_DESTINATION", "TRANSITION_NOT_COMPLETED", "CHILD_LOCATED"}
    assert [point.get("data-count") for point in cases_svg.iter(f"{SVG}circle")][-3:] == ["1", "1", "2"]
    trends = section(reply.body)
    assert '<div class="visually-hidden"><table class="trend-alerts">' in trends
    assert "<th scope=\"row\">Week of 10 Mar 2025 (2025-W11), to date</th><td>0</td><td>1</td><td>0</td>" in trends
    # Counts only: no child's name or UPN in the section.
    assert "Okafor" not in trends and "A331200001001" not in trends
    social_care = await dashboard.page(COVENTRY, bearer(TOKENS["cov-sc"][2]), {})
    assert svgs(social_care.body)[0].get("aria-label", "").startswith("Alerts per week by rule. 1 alert in")
    ehe = await dashboard.page(COVENTRY, bearer(TOKENS["cov-ehe"][2]), {})
    assert len(svgs(ehe.body)) == 1 and "Open cases at each week" not in section(ehe.body)


async def test_the_trends_ignore_the_filters(dashboard: LADashboard) -> None:
    filtered = await dashboard.page(COVENTRY, with_token(COVENTRY), {"severity": "INFO"})
    assert "whatever the filters" in filtered.body
    assert svgs(filtered.body)[0].get("aria-label", "").startswith("Alerts per week by rule. 4 alerts")


async def test_the_charts_need_nothing_the_content_security_policy_refuses(
    dashboard: LADashboard,
) -> None:
    reply = await dashboard.page(COVENTRY, with_token(COVENTRY), {})
    assert reply.headers["Content-Security-Policy"] == SECURITY_HEADERS["Content-Security-Policy"]
    trends = section(reply.body)
    assert "<script" not in reply.body
    for fetches in ("src=", "href=", "url(", "@import", "<link", "<image", "<use", "<foreignObject"):
        assert fetches not in trends
    assert re.search(r"\son\w+=", trends) is None  # no event handler attributes
    assert "style=" not in trends


async def test_a_page_view_audits_the_trends_once_and_the_json_none(
    dashboard: LADashboard, register: Register
) -> None:
    await dashboard.page(COVENTRY, with_token(COVENTRY), {})
    trend_rows = [event for event in register.audit_events(COVENTRY) if event.channel == "dashboard-trends"]
    assert [(event.principal, event.role, event.case_id, event.upn) for event in trend_rows] == [
        ("token cov-cme", "cme-officer", None, None)
    ]
    await dashboard.cases_json(COVENTRY, with_token(COVENTRY), {})
    assert len([event for event in register.audit_events(COVENTRY) if event.channel == "dashboard-trends"]) == 1
