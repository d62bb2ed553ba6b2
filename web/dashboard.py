"""The LA dashboard served by the worker: one LA's open cases and recent alerts, behind that LA's own token."""

from __future__ import annotations

import asyncio
import hmac
import html
import json
import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import faust
from faust.web import Request, Response, View
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup
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

RECIPIENT_LABELS = {"CME_OFFICER": "CME officer", "SOCIAL_CARE": "Social care", "EHE_SERVICE": "EHE service"}


def _escape(value: object) -> Markup:
    """html.escape, quotes included, for every value a template prints; Markup (a macro's output) passes as is."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))  # noqa: S704 - the value has just been escaped


def _day(value: date | None) -> str:
    return "" if value is None else f"{value.day} {value:%b %Y}"


TEMPLATES = Environment(
    loader=PackageLoader("web", "templates"),
    autoescape=True,
    finalize=_escape,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=StrictUndefined,
)
TEMPLATES.filters["day"] = _day


def page_url(la_code: str, filters: DashboardFilters, token: str | None, suffix: str = "") -> str:
    """A link to this LA's page (or `cases.json`) that keeps the filters, and the token if it came in the URL."""
    query = filters.as_query()
    if token is not None:
        query[TOKEN_PARAMETER] = token
    encoded = urlencode(query)
    return f"/la/{la_code}/{suffix}" + (f"?{encoded}" if encoded else "")


def render_page(overview: LAOverview, token_in_url: str | None, refresh_seconds: int, alert_limit: int) -> str:
    """The whole page, from web/templates/page.html; every value from the register is escaped."""
    filters = overview.filters
    return TEMPLATES.get_template("page.html").render(
        overview=overview,
        la=overview.la_code,
        token_parameter=TOKEN_PARAMETER,
        token_in_url=token_in_url,
        refresh_seconds=int(refresh_seconds),
        updated=overview.generated_at.astimezone(LONDON).strftime("%d %b %Y %H:%M:%S"),
        severities=[severity.value for severity in Severity],
        rules=[rule.value for rule in Rule],
        chosen_severity=filters.severity and filters.severity.value,
        chosen_rule=filters.rule and filters.rule.value,
        clear_url=page_url(overview.la_code, DashboardFilters(), token_in_url),
        json_url=page_url(overview.la_code, filters, token_in_url, "cases.json"),
        alert_limit=alert_limit,
        recipient_labels=RECIPIENT_LABELS,
    )


def render_message(title: str, detail: str) -> str:
    return TEMPLATES.get_template("message.html").render(title=title, detail=detail)


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
