"""The LA dashboard served by the worker: one LA's open cases and recent alerts, behind that LA's own token."""

from __future__ import annotations

import asyncio
import hmac
import html
import json
import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import faust
from faust.web import Request, Response, View
from pydantic import SecretStr

from config.settings import Settings
from processors.identifiers import la_name
from processors.records import Alert, Rule, Severity
from sinks.register.engine import RegisterNotReady
from sinks.register.queries import LARegisterView, OpenCase
from sinks.register.store import Register, open_register

log = logging.getLogger(__name__)
LONDON = ZoneInfo("Europe/London")
LA_CODE = re.compile(r"\d{3}")
TOKEN_PARAMETER = "token"  # noqa: S105 - the query parameter's name, not a secret
#: No scripts, no external anything: the page is HTML with an inline style sheet, and forms post back here.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


# --- what the page shows ---------------------------------------------------------------------------------


FilterEnum = TypeVar("FilterEnum", Severity, Rule)


class FilterError(ValueError):
    """A severity or rule in the query string that the contract does not know."""


@dataclass(frozen=True, slots=True)
class DashboardFilters:
    """The page's filters; None means any."""

    severity: Severity | None = None
    rule: Rule | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> DashboardFilters:
        return cls(
            severity=_enum_or_none(Severity, query.get("severity", "")),
            rule=_enum_or_none(Rule, query.get("rule", "")),
        )

    def as_query(self) -> dict[str, str]:
        chosen = {"severity": self.severity, "rule": self.rule}
        return {name: value.value for name, value in chosen.items() if value is not None}


def _enum_or_none(kind: type[FilterEnum], raw: str) -> FilterEnum | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        return kind(raw.upper())
    except ValueError:
        raise FilterError(f"unknown {kind.__name__.lower()} {raw!r}") from None


@dataclass(frozen=True, slots=True)
class LAOverview:
    la_code: str
    filters: DashboardFilters
    cases: list[OpenCase]
    alerts: list[Alert]
    alerts_total: int
    generated_at: datetime

    @property
    def la_name(self) -> str:
        return la_name(self.la_code) or f"LA {self.la_code}"


class RegisterReader(Protocol):
    """What the dashboard reads from the register."""

    def la_register_view(
        self, la_code: str, severity: Severity | None, rule: Rule | None, alert_limit: int
    ) -> LARegisterView: ...


def load_overview(
    register: RegisterReader, la_code: str, filters: DashboardFilters, alert_limit: int, now: datetime
) -> LAOverview:
    """The LA's open cases (most recently opened first) and its newest alerts, filtered. Blocking: SQL."""
    view = register.la_register_view(la_code, filters.severity, filters.rule, alert_limit)
    return LAOverview(la_code, filters, view.cases, view.alerts, view.alerts_total, now)


# --- access ----------------------------------------------------------------------------------------------


def presented_token(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The token of a request: `Authorization: Bearer <token>`, else the `token` query parameter."""
    for name, value in headers.items():
        if name.lower() == "authorization":
            scheme, _, credentials = value.strip().partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
    from_query = query.get(TOKEN_PARAMETER, "").strip()
    return from_query or None


def token_grants(tokens: Mapping[str, SecretStr], la_code: str, presented: str | None) -> bool:
    """Whether `presented` is this LA's token. Only the LA's own token opens its page; the comparison takes
    the same time wherever the strings differ."""
    expected = tokens.get(la_code)
    if expected is None or not presented:
        return False
    return hmac.compare_digest(presented.encode(), expected.get_secret_value().encode())


# --- rendering -------------------------------------------------------------------------------------------

STYLE = """
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; margin: 0; color: #1b1f24;
  background: #f5f6f8; }
header { background: #1d3557; color: #fff; padding: 14px 28px; display: flex; align-items: baseline;
  justify-content: space-between; flex-wrap: wrap; gap: 8px; }
header h1 { font-size: 21px; margin: 0; font-weight: 600; }
header .meta { font-size: 13px; opacity: .85; }
main { padding: 18px 28px 40px; max-width: 1400px; }
form.filters { display: flex; gap: 14px; align-items: end; flex-wrap: wrap; background: #fff; padding: 12px 16px;
  border: 1px solid #d9dde3; border-radius: 6px; }
form.filters label { display: flex; flex-direction: column; font-size: 12px; color: #4a5360; gap: 3px; }
form.filters select { font-size: 14px; padding: 4px 6px; min-width: 170px; }
form.filters button { font-size: 14px; padding: 5px 16px; background: #1d3557; color: #fff; border: 0;
  border-radius: 4px; }
form.filters a { font-size: 13px; color: #1d3557; padding-bottom: 6px; }
h2 { font-size: 17px; margin: 26px 0 8px; }
h2 .count { font-weight: 400; color: #4a5360; font-size: 14px; }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid #d9dde3; }
th, td { text-align: left; padding: 7px 10px; border-bottom: 1px solid #e6e9ed; vertical-align: top; }
th { background: #eef1f5; font-size: 12px; text-transform: uppercase; letter-spacing: .03em; color: #4a5360; }
tbody tr:nth-child(even) { background: #fafbfc; }
td.reason { min-width: 420px; }
td.nowrap, td.child, td.what { white-space: nowrap; }
td.num { text-align: right; }
td.child .name { display: block; font-weight: 600; }
td.child .ids { display: block; font-size: 12px; color: #4a5360; }
.upn { font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
td.what .rule { display: block; margin-top: 4px; }
.sev { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; }
.sev-IMMEDIATE { background: #b00020; color: #fff; }
.sev-HIGH { background: #e85d04; color: #fff; }
.sev-MEDIUM { background: #ffd166; color: #3a2c00; }
.sev-INFO { background: #dbe7f3; color: #1d3557; }
.rule { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; }
.empty { padding: 14px; background: #fff; border: 1px solid #d9dde3; color: #4a5360; }
.note { color: #4a5360; font-size: 13px; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _day(value: date | None) -> str:
    return "" if value is None else f"{value.day} {value:%b %Y}"


def _severity_badge(severity: Severity | None) -> str:
    if severity is None:
        return ""
    return f'<span class="sev sev-{_e(severity.value)}">{_e(severity.value)}</span>'


def _options(values: Sequence[str], chosen: str | None, any_label: str) -> str:
    options = [f'<option value=""{" selected" if chosen is None else ""}>{_e(any_label)}</option>']
    options += [
        f'<option value="{_e(value)}"{" selected" if value == chosen else ""}>{_e(value)}</option>' for value in values
    ]
    return "".join(options)


def page_url(la_code: str, filters: DashboardFilters, token: str | None, suffix: str = "") -> str:
    """A link to this LA's page (or `cases.json`) that keeps the filters, and the token if it came in the URL."""
    query = filters.as_query()
    if token is not None:
        query[TOKEN_PARAMETER] = token
    encoded = urlencode(query)
    return f"/la/{la_code}/{suffix}" + (f"?{encoded}" if encoded else "")


def render_page(overview: LAOverview, token_in_url: str | None, refresh_seconds: int, alert_limit: int) -> str:
    """The whole page. Every value from the register goes through html.escape."""
    filters = overview.filters
    la = overview.la_code
    hidden_token = (
        f'<input type="hidden" name="{TOKEN_PARAMETER}" value="{_e(token_in_url)}">' if token_in_url else ""
    )
    form = (
        f'<form class="filters" method="get" action="/la/{_e(la)}/">{hidden_token}'
        f'<label>Severity<select name="severity">'
        f"{_options([s.value for s in Severity], filters.severity and filters.severity.value, 'Any severity')}"
        f"</select></label>"
        f'<label>Rule<select name="rule">'
        f"{_options([r.value for r in Rule], filters.rule and filters.rule.value, 'Any rule')}"
        f"</select></label>"
        f'<button type="submit">Apply</button>'
        f'<a href="{_e(page_url(la, DashboardFilters(), token_in_url))}">Clear filters</a>'
        f'<a href="{_e(page_url(la, filters, token_in_url, "cases.json"))}">JSON</a>'
        f"</form>"
    )
    generated = overview.generated_at.astimezone(LONDON)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en-GB"><head><meta charset="utf-8">',
        # Reloads the same URL, so the filters (and a token given in the URL) survive the refresh.
        f'<meta http-equiv="refresh" content="{int(refresh_seconds)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(overview.la_name)} ({_e(la)}): children missing education</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<header><h1>{_e(overview.la_name)} ({_e(la)}): children missing education</h1>",
        f'<span class="meta">Updated {_e(generated.strftime("%d %b %Y %H:%M:%S"))}; '
        f"refreshes every {int(refresh_seconds)} s</span></header>",
        f"<main>{form}",
        _cases_section(overview),
        _alerts_section(overview, alert_limit),
        "</main></body></html>",
    ]
    return "\n".join(parts)


RECIPIENT_LABELS = {"CME_OFFICER": "CME officer", "SOCIAL_CARE": "Social care", "EHE_SERVICE": "EHE service"}


def _child_cell(name: str, date_of_birth: date | None, upn: str) -> str:
    """Name first, then what tells two children of the same name apart."""
    born = f"born {_day(date_of_birth)}" if date_of_birth else ""
    return (
        f'<td class="child"><span class="name">{_e(name)}</span>'
        f'<span class="ids">{_e(born)}<br><span class="upn">UPN {_e(upn)}</span></span></td>'
    )


def _rule_cell(severity: Severity | None, rule: Rule | None) -> str:
    rule_code = rule.value if rule else ""
    return f'<td class="what">{_severity_badge(severity)}<span class="rule">{_e(rule_code)}</span></td>'


def _cases_section(overview: LAOverview) -> str:
    heading = f'<h2 id="open-cases">Open cases <span class="count">({len(overview.cases)})</span></h2>'
    if not overview.cases:
        return heading + '<p class="empty">No open cases match.</p>'
    rows = []
    for item in overview.cases:
        case = item.summary
        child = case.child
        others = [code for code in case.holders if code != overview.la_code]
        name = f"{child.forename} {child.surname}" if child else ""
        rows.append(
            f'<tr data-upn="{_e(case.upn)}">'
            + _child_cell(name, child.date_of_birth if child else None, case.upn)
            + f"<td>{_e(item.school_urn or '')}</td>"
            f'<td class="nowrap">{_e(_day(case.opened_on))}</td>'
            + _rule_cell(case.severity, case.opening_rule)
            + f'<td class="reason">{_e(item.reason or "")}</td>'
            f"<td>{_e(', '.join(others))}</td>"
            f'<td class="num">{case.alert_count}</td>'
            "</tr>"
        )
    return (
        heading
        + '<table class="cases"><thead><tr><th>Child</th><th>School URN</th><th>Opened</th><th>Severity, rule</th>'
        "<th>Reason</th><th>Also held by</th><th>Alerts</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _alerts_section(overview: LAOverview, alert_limit: int) -> str:
    shown = len(overview.alerts)
    count = f"({overview.alerts_total})" if shown == overview.alerts_total else (
        f"(newest {shown} of {overview.alerts_total})"
    )
    heading = f'<h2 id="recent-alerts">Recent alerts <span class="count">{_e(count)}</span></h2>'
    if not overview.alerts:
        return heading + '<p class="empty">No alerts match.</p>'
    rows = [
        f'<tr data-upn="{_e(alert.upn)}">'
        f'<td class="nowrap">{_e(_day(alert.raised_on))}</td>'
        + _rule_cell(alert.severity, alert.rule)
        + f'<td class="nowrap">{_e(RECIPIENT_LABELS.get(alert.recipient.value, alert.recipient.value))}</td>'
        + _child_cell(f"{alert.child.forename} {alert.child.surname}", alert.child.date_of_birth, alert.upn)
        + f"<td>{_e(alert.school_urn)}</td>"
        f'<td class="reason">{_e(alert.reason)}</td>'
        "</tr>"
        for alert in overview.alerts
    ]
    note = (
        f'<p class="note">Showing the newest {alert_limit}; narrow the filters to see older ones.</p>'
        if shown < overview.alerts_total
        else ""
    )
    return (
        heading
        + '<table class="alerts"><thead><tr><th>Raised</th><th>Severity, rule</th><th>To</th><th>Child</th>'
        "<th>School URN</th><th>Reason</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        + note
    )


def render_message(title: str, detail: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en-GB"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>"
        f'<header><h1>{_e(title)}</h1></header><main><p class="empty">{_e(detail)}</p></main></body></html>'
    )


def overview_json(overview: LAOverview) -> dict[str, Any]:
    return {
        "la_code": overview.la_code,
        "la_name": overview.la_name,
        "generated_at": overview.generated_at.isoformat(),
        "filters": overview.filters.as_query(),
        "open_cases": [
            {
                "case_id": item.summary.case_id,
                "upn": item.summary.upn,
                "forename": item.summary.child.forename if item.summary.child else None,
                "surname": item.summary.child.surname if item.summary.child else None,
                "date_of_birth": _iso(item.summary.child.date_of_birth if item.summary.child else None),
                "school_urn": item.school_urn,
                "opened_on": _iso(item.summary.opened_on),
                "opening_rule": item.summary.opening_rule.value if item.summary.opening_rule else None,
                "severity": item.summary.severity.value if item.summary.severity else None,
                "reason": item.reason,
                "holders": list(item.summary.holders),
                "alert_count": item.summary.alert_count,
            }
            for item in overview.cases
        ],
        "alerts": [
            {
                "alert_id": alert.alert_id,
                "raised_on": alert.raised_on.isoformat(),
                "rule": alert.rule.value,
                "severity": alert.severity.value,
                "recipient": alert.recipient.value,
                "upn": alert.upn,
                "forename": alert.child.forename,
                "surname": alert.child.surname,
                "date_of_birth": alert.child.date_of_birth.isoformat(),
                "school_urn": alert.school_urn,
                "reason": alert.reason,
                "case_id": alert.case_id,
            }
            for alert in overview.alerts
        ],
        "alerts_total": overview.alerts_total,
    }


def _iso(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


# --- requests, free of any web framework -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebReply:
    status: int
    body: str
    content_type: str = "text/html"
    headers: dict[str, str] = field(default_factory=dict)


class LADashboard:
    """Answers dashboard requests: checks the LA's token, reads the register in a worker thread (SQL must not
    block the event loop the stream runs on), renders HTML or JSON."""

    def __init__(
        self,
        tokens: Mapping[str, SecretStr],
        open_reader: Callable[[], RegisterReader],
        refresh_seconds: int = 30,
        alert_limit: int = 200,
        clock: Callable[[], datetime] = lambda: datetime.now(tz=LONDON),
    ) -> None:
        self.tokens = dict(tokens)
        self.open_reader = open_reader
        self.refresh_seconds = refresh_seconds
        self.alert_limit = alert_limit
        self.clock = clock
        self._reader: RegisterReader | None = None
        self._reader_lock = threading.Lock()

    def reader(self) -> RegisterReader:
        """The register, opened on first use: the worker may well start before `register migrate` has run."""
        with self._reader_lock:
            if self._reader is None:
                self._reader = self.open_reader()
            return self._reader

    def close(self) -> None:
        with self._reader_lock:
            if isinstance(self._reader, Register):
                self._reader.close()
            self._reader = None

    async def page(self, la_code: str, headers: Mapping[str, str], query: Mapping[str, str]) -> WebReply:
        return await self._answer(la_code, headers, query, as_json=False)

    async def cases_json(self, la_code: str, headers: Mapping[str, str], query: Mapping[str, str]) -> WebReply:
        return await self._answer(la_code, headers, query, as_json=True)

    async def _answer(
        self, la_code: str, headers: Mapping[str, str], query: Mapping[str, str], as_json: bool
    ) -> WebReply:
        if LA_CODE.fullmatch(la_code) is None:
            return self._problem(404, "Not found", "There is no such LA page.", as_json)
        token = presented_token(headers, query)
        if not token_grants(self.tokens, la_code, token):
            reply = self._problem(
                401, "Access token required",
                f"This page needs LA {la_code}'s access token: an Authorization: Bearer header or ?token=.",
                as_json,
            )
            reply.headers["WWW-Authenticate"] = f'Bearer realm="rollwatch LA {la_code}"'
            return reply
        try:
            filters = DashboardFilters.from_query(query)
        except FilterError as error:
            return self._problem(400, "Bad filter", str(error), as_json)
        try:
            overview = await asyncio.to_thread(self._load, la_code, filters)
        except RegisterNotReady as error:
            log.warning("dashboard: register not ready: %s", error)
            return self._problem(503, "Register not ready", "The CME register has not been set up yet.", as_json)
        if as_json:
            return WebReply(200, _json_text(overview_json(overview)), "application/json", dict(SECURITY_HEADERS))
        token_in_url = query.get(TOKEN_PARAMETER, "").strip() or None
        body = render_page(overview, token_in_url, self.refresh_seconds, self.alert_limit)
        return WebReply(200, body, "text/html", dict(SECURITY_HEADERS))

    def _load(self, la_code: str, filters: DashboardFilters) -> LAOverview:
        return load_overview(self.reader(), la_code, filters, self.alert_limit, self.clock())

    @staticmethod
    def _problem(status: int, title: str, detail: str, as_json: bool) -> WebReply:
        if as_json:
            return WebReply(status, _json_text({"error": title, "detail": detail}), "application/json",
                            dict(SECURITY_HEADERS))
        return WebReply(status, render_message(title, detail), "text/html", dict(SECURITY_HEADERS))


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# --- wiring into the Faust web server --------------------------------------------------------------------


def install_dashboard(app: faust.App, settings: Settings) -> LADashboard | None:
    """Adds /la/<LA>/ and /la/<LA>/cases.json to the worker's web server (none when the web server is off)."""
    if not settings.web_enabled:
        return None
    dashboard = LADashboard(
        settings.dashboard_tokens,
        lambda: open_register(settings.database_url),
        refresh_seconds=settings.dashboard_refresh_seconds,
        alert_limit=settings.dashboard_alert_limit,
    )

    def respond(view: View, reply: WebReply) -> Response:
        if reply.content_type == "application/json":
            return view.text(reply.body, content_type="application/json", status=reply.status, headers=reply.headers)
        return view.html(reply.body, status=reply.status, headers=reply.headers)

    class LADashboardPage(View):
        async def get(self, request: Request, la_code: str) -> Response:
            return respond(self, await dashboard.page(la_code, request.headers, request.query))

    class LADashboardJSON(View):
        async def get(self, request: Request, la_code: str) -> Response:
            return respond(self, await dashboard.cases_json(la_code, request.headers, request.query))

    class LADashboardSlashless(View):
        async def get(self, request: Request, la_code: str) -> Response:
            if LA_CODE.fullmatch(la_code) is None:
                return respond(self, LADashboard._problem(404, "Not found", "There is no such LA page.", False))
            query = urlencode(list(request.query.items()))
            location = f"/la/{la_code}/" + (f"?{query}" if query else "")
            return self.text("", status=308, headers={"Location": location})

    app.page("/la/{la_code}/", name="la_dashboard")(LADashboardPage)
    app.page("/la/{la_code}/cases.json", name="la_dashboard_json")(LADashboardJSON)
    app.page("/la/{la_code}", name="la_dashboard_slashless")(LADashboardSlashless)
    return dashboard
