"""The LA dashboard the worker serves: one LA's cases and alerts as one role may see them, behind sign-in."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from http.cookies import CookieError, SimpleCookie
from typing import Any, Protocol, TypeVar
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import faust
from faust.web import Request, Response, View
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from config.settings import DashboardCredential, DashboardGrant, Settings
from processors.identifiers import la_name
from processors.records import Alert, Recipient, Rule, Severity
from sinks.register.audit import DASHBOARD, DASHBOARD_JSON, AuditEvent, events_for
from sinks.register.engine import RegisterNotReady
from sinks.register.queries import LARegisterView, LATrends, OpenCase
from sinks.register.store import Register, open_register
from web.trends import TrendsReader, load_trends, trend_view, trends_viewed

log = logging.getLogger(__name__)
LONDON = ZoneInfo("Europe/London")
LA_CODE = re.compile(r"\d{3}")
TOKEN_PARAMETER = "token"  # noqa: S105 - the query parameter refused, not a secret
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
    trends: LATrends | None = None

    @property
    def la_name(self) -> str:
        return la_name(self.la_code) or f"LA {self.la_code}"


class RegisterReader(TrendsReader, Protocol):
    """What the dashboard reads from the register, and where it records who saw what."""

    def la_register_view(
        self, la_code: str, severity: Severity | None, rule: Rule | None, alert_limit: int,
        recipient: Recipient | None = None,
    ) -> LARegisterView: ...

    def record_audit(self, events: Sequence[AuditEvent]) -> None: ...


def load_overview(
    register: RegisterReader, la_code: str, filters: DashboardFilters, alert_limit: int, now: datetime,
    recipient: Recipient | None = None,
) -> LAOverview:
    """The LA's open cases (most recently opened first) and its newest alerts, filtered, as `recipient` may
    see them. Blocking: SQL."""
    view = register.la_register_view(la_code, filters.severity, filters.rule, alert_limit, recipient)
    return LAOverview(la_code, filters, view.cases, view.alerts, view.alerts_total, now)


def shown_records(overview: LAOverview) -> list[tuple[str | None, str | None]]:
    """Each case and child the overview shows, as (case id, UPN): what one view is audited as."""
    return [(item.summary.case_id, item.summary.upn) for item in overview.cases] + [
        (alert.case_id, alert.upn) for alert in overview.alerts
    ]


# --- access ----------------------------------------------------------------------------------------------

#: Which alerts each dashboard role sees: its own recipient's, never another's.
ROLE_RECIPIENT = {
    "cme-officer": Recipient.CME_OFFICER,
    "social-care": Recipient.SOCIAL_CARE,
    "ehe-service": Recipient.EHE_SERVICE,
}
SESSION_COOKIE = "rollwatch_session"
SESSION_SECONDS = 8 * 3600
#: Sessions held at once; beyond this the oldest go first, so a flood of sign-ins cannot exhaust memory.
MAX_SESSIONS = 10_000
FORWARDED_USER = "x-forwarded-user"
FORWARDED_GROUPS = "x-forwarded-groups"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is looking: a token id or a proxy user, with the one LA and role their credential opens."""

    name: str
    la_code: str
    role: str

    @property
    def recipient(self) -> Recipient:
        return ROLE_RECIPIENT[self.role]


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A request header, whatever its case (aiohttp's headers are case-insensitive, a plain dict is not)."""
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, the machine clients' way in."""
    value = header(headers, "authorization")
    if value is None:
        return None
    scheme, _, credentials = value.strip().partition(" ")
    return credentials.strip() or None if scheme.lower() == "bearer" else None


def session_id_of(headers: Mapping[str, str]) -> str | None:
    raw = header(headers, "cookie")
    if not raw:
        return None
    cookies = SimpleCookie()
    try:
        cookies.load(raw)
    except CookieError:
        return None
    morsel = cookies.get(SESSION_COOKIE)
    return morsel.value if morsel is not None and morsel.value else None


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class DashboardAccess:
    """Turns a presented token, or a trusted proxy's user and groups, into a Principal for one LA."""

    def __init__(
        self,
        credentials: Mapping[str, DashboardCredential],
        proxy_groups: Mapping[str, DashboardGrant] | None = None,
    ) -> None:
        self.credentials = dict(credentials)
        self.proxy_groups = dict(proxy_groups or {})

    def by_token(self, token: str | None, la_code: str) -> Principal | None:
        """The token's principal if it is one of this LA's; every credential is compared, in constant time."""
        if not token:
            return None
        digest = token_sha256(token).encode()
        found = None
        for token_id, credential in self.credentials.items():
            if hmac.compare_digest(digest, credential.sha256.encode()) and credential.la == la_code:
                found = Principal(f"token {token_id}", credential.la, credential.role)
        return found

    def by_proxy(self, headers: Mapping[str, str], la_code: str) -> Principal | None:
        """The proxy's user, with the first of their groups that maps to this LA; headers ignored unless set."""
        if not self.proxy_groups:
            return None
        user = (header(headers, FORWARDED_USER) or "").strip()
        if not user:
            return None
        for group in (header(headers, FORWARDED_GROUPS) or "").split(","):
            grant = self.proxy_groups.get(group.strip())
            if grant is not None and grant.la == la_code:
                return Principal(f"proxy {user}", grant.la, grant.role)
        return None


class Sessions:
    """Signed-in browsers: a random id (256 bits) in an HttpOnly cookie, the principal kept here, server side."""

    def __init__(self, lifetime: float = SESSION_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.lifetime = lifetime
        self.clock = clock
        self._open: dict[str, tuple[Principal, float]] = {}

    def open(self, principal: Principal) -> str:
        now = self.clock()
        self._open = {key: held for key, held in self._open.items() if held[1] > now}
        while len(self._open) >= MAX_SESSIONS:
            del self._open[next(iter(self._open))]
        session_id = secrets.token_urlsafe(32)
        self._open[session_id] = (principal, now + self.lifetime)
        return session_id

    def principal(self, session_id: str | None) -> Principal | None:
        held = self._open.get(session_id) if session_id else None
        if held is None:
            return None
        if held[1] <= self.clock():
            self._open.pop(session_id or "", None)
            return None
        return held[0]

    def close(self, session_id: str | None) -> None:
        if session_id:
            self._open.pop(session_id, None)


def session_cookie(la_code: str, session_id: str, max_age: int, secure: bool) -> str:
    """Scoped to the LA's own pages, out of scripts' reach, never sent by another site's links or forms."""
    cookie = f"{SESSION_COOKIE}={session_id}; Path=/la/{la_code}/; Max-Age={max_age}; HttpOnly; SameSite=Strict"
    return cookie + "; Secure" if secure else cookie


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


def page_url(la_code: str, filters: DashboardFilters, suffix: str = "") -> str:
    """A link to this LA's page (or `cases.json`) that keeps the filters; credentials never travel in URLs."""
    encoded = urlencode(filters.as_query())
    return f"/la/{la_code}/{suffix}" + (f"?{encoded}" if encoded else "")


def render_page(
    overview: LAOverview, principal: Principal, can_sign_out: bool, refresh_seconds: int, alert_limit: int
) -> str:
    """The whole page, from web/templates/page.html; every value from the register is escaped."""
    filters = overview.filters
    return TEMPLATES.get_template("page.html").render(
        overview=overview,
        la=overview.la_code,
        principal=principal,
        can_sign_out=can_sign_out,
        refresh_seconds=int(refresh_seconds),
        updated=overview.generated_at.astimezone(LONDON).strftime("%d %b %Y %H:%M:%S"),
        severities=[severity.value for severity in Severity],
        rules=[rule.value for rule in Rule],
        chosen_severity=filters.severity and filters.severity.value,
        chosen_rule=filters.rule and filters.rule.value,
        clear_url=page_url(overview.la_code, DashboardFilters()),
        json_url=page_url(overview.la_code, filters, "cases.json"),
        alert_limit=alert_limit,
        recipient_labels=RECIPIENT_LABELS,
        trends=trend_view(overview.trends),
    )


def render_sign_in(la_code: str, problem: str | None) -> str:
    return TEMPLATES.get_template("sign_in.html").render(
        la=la_code, la_title=la_name(la_code) or f"LA {la_code}", problem=problem
    )


def render_message(title: str, detail: str) -> str:
    return TEMPLATES.get_template("message.html").render(title=title, detail=detail)


def overview_json(overview: LAOverview, role: str) -> dict[str, Any]:
    return {
        "la_code": overview.la_code,
        "la_name": overview.la_name,
        "role": role,
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
                "forename": alert.child.forename if alert.child else None,
                "surname": alert.child.surname if alert.child else None,
                "date_of_birth": alert.child.date_of_birth.isoformat() if alert.child else None,
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
    """Answers dashboard requests: finds who is asking (Bearer token, session cookie or trusted proxy), reads
    what their LA and role may see in a worker thread (SQL must not block the event loop the stream runs on),
    records the view in the audit trail, renders HTML or JSON."""

    def __init__(
        self,
        access: DashboardAccess,
        open_reader: Callable[[], RegisterReader],
        refresh_seconds: int = 30,
        alert_limit: int = 200,
        clock: Callable[[], datetime] = lambda: datetime.now(tz=LONDON),
        secure_cookie: bool = False,
        sessions: Sessions | None = None,
    ) -> None:
        self.access = access
        self.open_reader = open_reader
        self.refresh_seconds = refresh_seconds
        self.alert_limit = alert_limit
        self.clock = clock
        self.secure_cookie = secure_cookie
        self.sessions = sessions or Sessions()
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

    async def page(
        self, la_code: str, headers: Mapping[str, str], query: Mapping[str, str], secure: bool = False
    ) -> WebReply:
        return await self._answer(la_code, headers, query, as_json=False)

    async def cases_json(
        self, la_code: str, headers: Mapping[str, str], query: Mapping[str, str], secure: bool = False
    ) -> WebReply:
        return await self._answer(la_code, headers, query, as_json=True)

    async def sign_in(
        self, la_code: str, form: Mapping[str, str], secure: bool = False
    ) -> WebReply:
        """Exchanges a token posted from the sign-in form for a session cookie, then back to the page."""
        if LA_CODE.fullmatch(la_code) is None:
            return self._problem(404, "Not found", "There is no such LA page.", False)
        principal = self.access.by_token((form.get("token") or "").strip(), la_code)
        if principal is None:
            log.warning("dashboard: refused a sign-in to LA %s", la_code)
            return WebReply(401, render_sign_in(la_code, "That token does not open this LA's dashboard."),
                            "text/html", dict(SECURITY_HEADERS))
        session_id = self.sessions.open(principal)
        log.info("dashboard: %s signed in to LA %s as %s", principal.name, la_code, principal.role)
        cookie = session_cookie(la_code, session_id, int(self.sessions.lifetime), secure or self.secure_cookie)
        return WebReply(303, "", "text/html", {**SECURITY_HEADERS, "Location": f"/la/{la_code}/", "Set-Cookie": cookie})

    async def sign_out(self, la_code: str, headers: Mapping[str, str], secure: bool = False) -> WebReply:
        if LA_CODE.fullmatch(la_code) is None:
            return self._problem(404, "Not found", "There is no such LA page.", False)
        self.sessions.close(session_id_of(headers))
        cookie = session_cookie(la_code, "", 0, secure or self.secure_cookie)
        return WebReply(303, "", "text/html", {**SECURITY_HEADERS, "Location": f"/la/{la_code}/", "Set-Cookie": cookie})

    def principal(self, la_code: str, headers: Mapping[str, str]) -> tuple[Principal | None, bool]:
        """Who is asking, and whether through a session (which can be signed out of)."""
        token = bearer_token(headers)
        if token is not None:
            return self.access.by_token(token, la_code), False
        from_session = self.sessions.principal(session_id_of(headers))
        if from_session is not None and from_session.la_code == la_code:
            return from_session, True
        return self.access.by_proxy(headers, la_code), False

    async def _answer(
        self, la_code: str, headers: Mapping[str, str], query: Mapping[str, str], as_json: bool
    ) -> WebReply:
        if LA_CODE.fullmatch(la_code) is None:
            return self._problem(404, "Not found", "There is no such LA page.", as_json)
        if TOKEN_PARAMETER in query:
            # A token in a URL ends up in histories, proxies' logs and Referer headers.
            return self._problem(
                400, "Token in the URL",
                "Tokens are not accepted in URLs: sign in with the form, or send Authorization: Bearer.", as_json,
            )
        principal, in_session = self.principal(la_code, headers)
        if principal is None:
            if as_json:
                reply = self._problem(
                    401, "Sign-in required",
                    f"Send one of LA {la_code}'s dashboard tokens as Authorization: Bearer.", True,
                )
                reply.headers["WWW-Authenticate"] = f'Bearer realm="rollwatch LA {la_code}"'
                return reply
            return WebReply(401, render_sign_in(la_code, None), "text/html", dict(SECURITY_HEADERS))
        try:
            filters = DashboardFilters.from_query(query)
        except FilterError as error:
            return self._problem(400, "Bad filter", str(error), as_json)
        try:
            overview = await asyncio.to_thread(self._load, principal, filters, as_json)
        except RegisterNotReady as error:
            log.warning("dashboard: register not ready: %s", error)
            return self._problem(503, "Register not ready", "The CME register has not been set up yet.", as_json)
        if as_json:
            body = _json_text(overview_json(overview, principal.role))
            return WebReply(200, body, "application/json", dict(SECURITY_HEADERS))
        body = render_page(overview, principal, in_session, self.refresh_seconds, self.alert_limit)
        return WebReply(200, body, "text/html", dict(SECURITY_HEADERS))

    def _load(self, principal: Principal, filters: DashboardFilters, as_json: bool) -> LAOverview:
        reader = self.reader()
        overview = load_overview(
            reader, principal.la_code, filters, self.alert_limit, self.clock(), principal.recipient
        )
        if not as_json:  # the page's trends, scoped as its lists are
            today = overview.generated_at.date()
            overview = replace(overview, trends=load_trends(reader, principal.la_code, today, principal.recipient))
        # Written before the reply leaves: a view the trail cannot record is not shown.
        channel = DASHBOARD_JSON if as_json else DASHBOARD
        reader.record_audit(
            events_for(principal.name, principal.la_code, principal.role, channel, shown_records(overview))
            + trends_viewed(overview.trends, principal.name, principal.la_code, principal.role)
        )
        return overview

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
    """Adds /la/<LA>/, its sign-in and sign-out, and /la/<LA>/cases.json to the worker's web server (none
    when the web server is off)."""
    if not settings.web_enabled:
        return None
    dashboard = LADashboard(
        DashboardAccess(settings.dashboard_tokens, settings.dashboard_trusted_proxy_groups),
        lambda: open_register(settings.database_url),
        refresh_seconds=settings.dashboard_refresh_seconds,
        alert_limit=settings.dashboard_alert_limit,
        secure_cookie=settings.dashboard_secure_cookie,
    )

    def respond(view: View, reply: WebReply) -> Response:
        if reply.content_type == "application/json":
            return view.text(reply.body, content_type="application/json", status=reply.status, headers=reply.headers)
        return view.html(reply.body, status=reply.status, headers=reply.headers)

    def over_tls(request: Request) -> bool:
        return bool(getattr(request, "secure", False))

    class LADashboardPage(View):
        async def get(self, request: Request, la_code: str) -> Response:
            return respond(self, await dashboard.page(la_code, request.headers, request.query, over_tls(request)))

    class LADashboardJSON(View):
        async def get(self, request: Request, la_code: str) -> Response:
            reply = await dashboard.cases_json(la_code, request.headers, request.query, over_tls(request))
            return respond(self, reply)

    class LADashboardSignIn(View):
        async def post(self, request: Request, la_code: str) -> Response:
            posted = await request.post()
            form = {key: str(value) for key, value in posted.items() if isinstance(value, str)}
            return respond(self, await dashboard.sign_in(la_code, form, over_tls(request)))

    class LADashboardSignOut(View):
        async def post(self, request: Request, la_code: str) -> Response:
            return respond(self, await dashboard.sign_out(la_code, request.headers, over_tls(request)))

    class LADashboardSlashless(View):
        async def get(self, request: Request, la_code: str) -> Response:
            if LA_CODE.fullmatch(la_code) is None:
                return respond(self, LADashboard._problem(404, "Not found", "There is no such LA page.", False))
            query = urlencode(list(request.query.items()))
            location = f"/la/{la_code}/" + (f"?{query}" if query else "")
            return self.text("", status=308, headers={"Location": location})

    app.page("/la/{la_code}/", name="la_dashboard")(LADashboardPage)
    app.page("/la/{la_code}/cases.json", name="la_dashboard_json")(LADashboardJSON)
    app.page("/la/{la_code}/sign-in", name="la_dashboard_sign_in")(LADashboardSignIn)
    app.page("/la/{la_code}/sign-out", name="la_dashboard_sign_out")(LADashboardSignOut)
    app.page("/la/{la_code}", name="la_dashboard_slashless")(LADashboardSlashless)
    return dashboard
