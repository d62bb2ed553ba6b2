"""The dashboard's case work for CME officers: referral intake (form and partner endpoint), case view, link, search."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

from config.settings import PartnerCredential, Settings
from processors.identifiers import la_name
from processors.records import CaseAction, CloseReason, CMEReferral, EnquiryKind, ReferralConcern, ReferrerAgency
from sinks.register.actions import ActionRefused, assign_action, closing_action, link_action, note_action
from sinks.register.audit import (
    DASHBOARD_CASE,
    DASHBOARD_CASE_WORK,
    DASHBOARD_LINK,
    DASHBOARD_LOOKUP,
    DASHBOARD_REFERRAL,
    PARTNER_REFERRAL,
    events_for,
)
from sinks.register.engine import RegisterNotReady
from sinks.register.intake import IntakeProblem, form_document, read_referral
from sinks.register.lookup import audit_lookup
from sinks.register.regions import region_of
from web.dashboard import (
    LA_CODE,
    LONDON,
    SECURITY_HEADERS,
    TEMPLATES,
    LADashboard,
    Principal,
    WebReply,
    bearer_token,
    header,
    render_message,
    session_id_of,
    token_sha256,
)

log = logging.getLogger(__name__)
#: The only role that takes referrals, sees their details, links cases and asks other LAs (deny by default).
OFFICER_ROLE = "cme-officer"
#: Largest partner request body accepted, bytes: a referral is a few hundred.
MAX_BODY = 16 * 1024
CSRF_FIELD = "csrf"
#: Referrals listed under the form: the LA's newest.
RECENT_REFERRALS = 20


def _json_reply(status: int, document: Mapping[str, Any], extra: Mapping[str, str] | None = None) -> WebReply:
    return WebReply(status, json.dumps(document, ensure_ascii=False), "application/json",
                    {**SECURITY_HEADERS, **(extra or {})})


def _html(status: int, body: str) -> WebReply:
    return WebReply(status, body, "text/html", dict(SECURITY_HEADERS))


def _message(status: int, title: str, detail: str) -> WebReply:
    return _html(status, render_message(title, detail))


class PartnerAccess:
    """Partner agencies' credentials: a Bearer token compared, in constant time, against every configured hash;
    each opens one LA's referral endpoint, at most `per_minute` requests a minute."""

    def __init__(
        self, credentials: Mapping[str, PartnerCredential], per_minute: int = 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.credentials = dict(credentials)
        self.per_minute = per_minute
        self.clock = clock
        self._recent: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def identify(self, token: str | None) -> tuple[str, str] | None:
        """(token id, LA) of a known token, else None."""
        if not token:
            return None
        digest = token_sha256(token).encode()
        found = None
        for token_id, credential in self.credentials.items():
            if hmac.compare_digest(digest, credential.sha256.encode()):
                found = (token_id, credential.la)
        return found

    def admit(self, token_id: str) -> bool:
        """Whether one more request of this credential fits in the last minute's allowance."""
        now = self.clock()
        with self._lock:
            recent = self._recent.setdefault(token_id, deque())
            while recent and recent[0] <= now - 60:
                recent.popleft()
            if len(recent) >= self.per_minute:
                return False
            recent.append(now)
            return True


@dataclass(frozen=True, slots=True)
class Publishers:
    """Where taken-in work goes: cme.referrals and case.actions (blocking calls, run in a thread)."""

    referral: Callable[[CMEReferral], None]
    case_action: Callable[[CaseAction], None]


class Casework:
    """Answers the case-work requests of the LA dashboard. Who is asking comes from the dashboard's own
    sign-in; only the LA's CME officer role gets anything. Forms carry a token bound to the signed-in session
    (on top of the Strict same-site cookie), so another site cannot post them."""

    def __init__(
        self,
        dashboard: LADashboard,
        publishers: Publishers,
        partners: PartnerAccess | None = None,
        today: Callable[[], date] = lambda: datetime.now(tz=LONDON).date(),
    ) -> None:
        self.dashboard = dashboard
        self.publishers = publishers
        self.partners = partners or PartnerAccess({})
        self.today = today
        self._csrf_key = secrets.token_bytes(32)

    # --- who may ------------------------------------------------------------------------------------------

    def csrf_token(self, principal: Principal, headers: Mapping[str, str]) -> str:
        bound = f"{principal.name}|{principal.la_code}|{session_id_of(headers) or ''}"
        return hmac.new(self._csrf_key, bound.encode(), hashlib.sha256).hexdigest()

    def _officer(self, la_code: str, headers: Mapping[str, str]) -> tuple[Principal | None, WebReply | None]:
        if LA_CODE.fullmatch(la_code) is None:
            return None, _message(404, "Not found", "There is no such LA page.")
        principal, _ = self.dashboard.principal(la_code, headers)
        if principal is None:
            return None, _message(401, "Sign-in required", f"Sign in to LA {la_code}'s dashboard first.")
        if principal.role != OFFICER_ROLE:
            return None, _message(403, "Not for this role", "Only the LA's CME officer role does case work here.")
        return principal, None

    def _form_allowed(self, principal: Principal, headers: Mapping[str, str], form: Mapping[str, str]) -> bool:
        return hmac.compare_digest(form.get(CSRF_FIELD, ""), self.csrf_token(principal, headers))

    # --- referral form ------------------------------------------------------------------------------------

    async def referral_form(self, la_code: str, headers: Mapping[str, str]) -> WebReply:
        principal, refusal = self._officer(la_code, headers)
        if principal is None:
            return refusal or _message(401, "Sign-in required", "Sign in first.")
        return await self._render_referrals(principal, headers, 200, {}, [], None)

    async def submit_referral_form(
        self, la_code: str, headers: Mapping[str, str], form: Mapping[str, str]
    ) -> WebReply:
        principal, refusal = self._officer(la_code, headers)
        if principal is None:
            return refusal or _message(401, "Sign-in required", "Sign in first.")
        if not self._form_allowed(principal, headers, form):
            return _message(403, "Form expired", "Open the referral form again and resend it.")
        referral, problems = read_referral(form_document(form), la_code, self.today())
        if referral is None:
            return await self._render_referrals(principal, headers, 400, form, problems, None)
        try:
            await asyncio.to_thread(self.publishers.referral, referral)
        except Exception:
            log.exception("dashboard: a referral for LA %s could not be sent to cme.referrals", la_code)
            return _message(503, "Not sent", "The referral could not be sent; nothing was recorded. Try again.")
        try:
            await asyncio.to_thread(self._audit, principal, DASHBOARD_REFERRAL, None, referral.upn,
                                    f"referral {referral.referral_id} taken")
        except RegisterNotReady:
            log.warning("dashboard: register not ready; referral %s sent but not audited", referral.referral_id)
        log.info("dashboard: %s took referral %s for LA %s", principal.name, referral.referral_id, la_code)
        return await self._render_referrals(principal, headers, 201, {}, [], referral.referral_id)

    async def _render_referrals(
        self, principal: Principal, headers: Mapping[str, str], status: int, form: Mapping[str, str],
        problems: list[IntakeProblem], sent: str | None,
    ) -> WebReply:
        try:
            recent = await asyncio.to_thread(self._recent_referrals, principal)
        except RegisterNotReady:
            recent = []
        body = TEMPLATES.get_template("referral.html").render(
            la=principal.la_code, la_title=la_name(principal.la_code) or f"LA {principal.la_code}",
            principal=principal, csrf=self.csrf_token(principal, headers), form=form, problems=problems,
            sent=sent, concerns=[c.value for c in ReferralConcern], agencies=[a.value for a in ReferrerAgency],
            recent=recent,
        )
        return _html(status, body)

    def _recent_referrals(self, principal: Principal) -> list[Any]:
        reader: Any = self.dashboard.reader()
        recent = list(reader.recent_referrals(principal.la_code, RECENT_REFERRALS))
        self._audit_shown(principal, DASHBOARD_REFERRAL, [(None, item.upn) for item in recent], "referrals listed")
        return recent

    # --- partner endpoint ---------------------------------------------------------------------------------

    async def partner_referral(
        self, la_code: str, headers: Mapping[str, str], body: bytes, declared_length: int | None
    ) -> WebReply:
        """POST /la/<LA>/referrals: 201 with the referral id, 400 with the problems, 401/403 for a missing,
        unknown or other LA's credential, 413 over 16 KB, 415 for anything but JSON, 429 over the rate."""
        if LA_CODE.fullmatch(la_code) is None:
            return _json_reply(404, {"error": "no such LA"})
        identified = self.partners.identify(bearer_token(headers))
        if identified is None:
            return _json_reply(401, {"error": "a partner credential is required as Authorization: Bearer"},
                               {"WWW-Authenticate": f'Bearer realm="rollwatch referrals LA {la_code}"'})
        token_id, credential_la = identified
        if credential_la != la_code:
            log.warning("referrals: partner %s refused for LA %s", token_id, la_code)
            return _json_reply(403, {"error": "this credential does not send referrals to this LA"})
        if not self.partners.admit(token_id):
            return _json_reply(429, {"error": "too many referrals this minute"}, {"Retry-After": "60"})
        if (declared_length or 0) > MAX_BODY or len(body) > MAX_BODY:
            return _json_reply(413, {"error": f"the body is larger than {MAX_BODY} bytes"})
        content_type = (header(headers, "content-type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return _json_reply(415, {"error": "send the referral as application/json"})
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, ValueError):
            return _json_reply(400, {"problems": [IntakeProblem("JSON_INVALID", None, "not JSON").as_json()]})
        if not isinstance(document, dict):
            return _json_reply(400, {"problems": [IntakeProblem("JSON_INVALID", None, "not an object").as_json()]})
        referral, problems = read_referral(document, la_code, self.today())
        if referral is None:
            return _json_reply(400, {"problems": [problem.as_json() for problem in problems]})
        try:
            await asyncio.to_thread(self.publishers.referral, referral)
        except Exception:
            log.exception("referrals: a partner referral for LA %s could not be sent", la_code)
            return _json_reply(503, {"error": "not sent; nothing was recorded, send it again"})
        partner = Principal(f"partner {token_id}", la_code, "partner")
        try:
            await asyncio.to_thread(self._audit, partner, PARTNER_REFERRAL, None, referral.upn,
                                    f"referral {referral.referral_id} taken")
        except RegisterNotReady:
            log.warning("referrals: register not ready; referral %s sent but not audited", referral.referral_id)
        log.info("referrals: partner %s sent referral %s for LA %s", token_id, referral.referral_id, la_code)
        return _json_reply(201, {"referral_id": referral.referral_id, "la_code": la_code})

    # --- case view and link -------------------------------------------------------------------------------

    async def case_page(self, la_code: str, case_id: str, headers: Mapping[str, str]) -> WebReply:
        principal, refusal = self._officer(la_code, headers)
        if principal is None:
            return refusal or _message(401, "Sign-in required", "Sign in first.")
        try:
            found = await asyncio.to_thread(self._load_case, principal, case_id)
        except RegisterNotReady:
            return _message(503, "Register not ready", "The CME register has not been set up yet.")
        if found is None:
            return _message(404, "No such case", "This LA holds no such case.")
        details, matches = found
        referral = details.referral if details.referral and details.referral.la_code == la_code else None
        body = TEMPLATES.get_template("case.html").render(
            la=la_code, la_title=la_name(la_code) or f"LA {la_code}", principal=principal, details=details,
            summary=details.summary, referral=referral, matches=matches, csrf=self.csrf_token(principal, headers),
            enquiry_kinds=[kind.value for kind in EnquiryKind], close_reasons=[reason.value for reason in CloseReason],
        )
        return _html(200, body)

    def _load_case(self, principal: Principal, case_id: str) -> tuple[Any, list[Any]] | None:
        reader: Any = self.dashboard.reader()
        details = reader.case_details(case_id)
        # Only an LA holding the case sees it; any other is told there is no such case.
        if details is None or principal.la_code not in details.summary.holders:
            return None
        summary = details.summary
        matches = reader.possible_matches(case_id, principal.la_code) if summary.upn is None else []
        self._audit_shown(principal, DASHBOARD_CASE, [(summary.case_id, summary.upn)], None)
        return details, matches

    async def link_case(
        self, la_code: str, case_id: str, headers: Mapping[str, str], form: Mapping[str, str]
    ) -> WebReply:
        return await self.case_work(la_code, case_id, headers, {**form, "work": "link"})

    async def case_work(
        self, la_code: str, case_id: str, headers: Mapping[str, str], form: Mapping[str, str]
    ) -> WebReply:
        """A form of the case view: `work` is link, note, assign or close; published to case.actions, audited,
        then back to the case (303), which shows it once `register sync` has recorded it."""
        principal, refusal = self._officer(la_code, headers)
        if principal is None:
            return refusal or _message(401, "Sign-in required", "Sign in first.")
        if not self._form_allowed(principal, headers, form):
            return _message(403, "Form expired", "Open the case again and resend the form.")
        try:
            reader: Any = self.dashboard.reader()
            summary = await asyncio.to_thread(reader.case, case_id)
        except RegisterNotReady:
            return _message(503, "Register not ready", "The CME register has not been set up yet.")
        if summary is None or la_code not in summary.holders:
            return _message(404, "No such case", "This LA holds no such case.")
        work = form.get("work", "")
        by = principal.name
        try:
            if work == "link":
                action = link_action(summary, case_id, form.get("upn", ""), by, la_code)
            elif work == "note":
                action = note_action(summary, case_id, EnquiryKind(form.get("kind", "")), form.get("outcome", ""),
                                     form.get("note", ""), by, la_code)
            elif work == "assign":
                action = assign_action(summary, case_id, form.get("to", ""), by, la_code)
            elif work == "close":
                action = closing_action(summary, case_id, form.get("note", ""), by,
                                        close_reason=CloseReason(form.get("close_reason", "")), la_code=la_code)
            else:
                return _message(400, "Unknown action", "The form asked for no known case action.")
        except ValueError:
            return _message(400, "Not recorded", "Choose a kind or reason from the list.")
        except ActionRefused as error:
            return _message(400, "Not recorded", str(error))
        try:
            await asyncio.to_thread(self.publishers.case_action, action)
        except Exception:
            log.exception("dashboard: a case action on %s could not be sent to case.actions", case_id)
            return _message(503, "Not sent", "The action could not be sent; nothing was recorded. Try again.")
        channel = DASHBOARD_LINK if work == "link" else DASHBOARD_CASE_WORK
        await asyncio.to_thread(self._audit, principal, channel, case_id, action.upn,
                                f"{action.action.value} {action.action_id}")
        return WebReply(303, "", "text/html", {**SECURITY_HEADERS, "Location": f"/la/{la_code}/cases/{case_id}"})

    # --- regional search ----------------------------------------------------------------------------------

    async def search(self, la_code: str, headers: Mapping[str, str], query: Mapping[str, str]) -> WebReply:
        principal, refusal = self._officer(la_code, headers)
        if principal is None:
            return refusal or _message(401, "Sign-in required", "Sign in first.")
        upn = (query.get("upn") or "").strip().upper() or None
        surname = (query.get("surname") or "").strip() or None
        born: date | None = None
        problem = None
        if query.get("dob"):
            try:
                born = date.fromisoformat(query["dob"].strip())
            except ValueError:
                problem = "Write the date of birth YYYY-MM-DD."
        asked = upn is not None or (surname is not None and born is not None)
        if not asked and (surname or born) and problem is None:
            problem = "Give a UPN, or a surname with a date of birth."
        results: list[Any] = []
        if asked and problem is None:
            try:
                results = await asyncio.to_thread(self._lookup, principal, upn, surname, born)
            except RegisterNotReady:
                return _message(503, "Register not ready", "The CME register has not been set up yet.")
        region = region_of(la_code)
        body = TEMPLATES.get_template("search.html").render(
            la=la_code, la_title=la_name(la_code) or f"LA {la_code}", principal=principal,
            region=region.value if region else "no region", asked=asked and problem is None, problem=problem,
            results=results, show_upn=upn is not None, query={"upn": upn or "", "surname": surname or "",
                                                              "dob": query.get("dob", "")},
        )
        return _html(400 if problem else 200, body)

    def _lookup(self, principal: Principal, upn: str | None, surname: str | None, born: date | None) -> list[Any]:
        reader: Any = self.dashboard.reader()
        results = list(reader.lookup(principal.la_code, upn=upn, surname=surname, date_of_birth=born))
        audit_lookup(reader, principal.name, principal.la_code, principal.role, DASHBOARD_LOOKUP, upn, results)
        return results

    # --- audit --------------------------------------------------------------------------------------------

    def _audit(self, principal: Principal, channel: str, case_id: str | None, upn: str | None, detail: str) -> None:
        self._audit_shown(principal, channel, [(case_id, upn)], detail)

    def _audit_shown(
        self, principal: Principal, channel: str, shown: list[tuple[str | None, str | None]], detail: str | None
    ) -> None:
        if shown:
            self.dashboard.reader().record_audit(
                events_for(principal.name, principal.la_code, principal.role, channel, shown, detail=detail)
            )


def install_casework(app: Any, settings: Settings, dashboard: LADashboard) -> Casework:
    """Adds the referral form, the partner endpoint, the case view and its link action, and the regional
    search to the worker's web server, beside the dashboard."""
    from faust.web import Request, Response, View

    from sinks.register.actions import publish_case_action
    from sinks.register.intake import publish_referral

    def send_referral(referral: CMEReferral) -> None:
        publish_referral(settings, referral)

    def send_case_action(action: CaseAction) -> None:
        publish_case_action(settings, action)

    casework = Casework(
        dashboard,
        Publishers(referral=send_referral, case_action=send_case_action),
        PartnerAccess(settings.partner_tokens, settings.partner_requests_per_minute),
    )

    def respond(view: View, reply: WebReply) -> Response:
        if reply.content_type == "application/json":
            return view.text(reply.body, content_type="application/json", status=reply.status, headers=reply.headers)
        return view.html(reply.body, status=reply.status, headers=reply.headers)

    def declared_length(request: Request) -> int | None:
        # The server is aiohttp's; faust's Request type does not name its content_length.
        length = getattr(request, "content_length", None)
        return length if isinstance(length, int) else None

    async def form_of(request: Request) -> dict[str, str]:
        posted = await request.post()
        return {key: str(value) for key, value in posted.items() if isinstance(value, str)}

    class ReferralForm(View):
        async def get(self, request: Request, la_code: str) -> Response:
            return respond(self, await casework.referral_form(la_code, request.headers))

        async def post(self, request: Request, la_code: str) -> Response:
            if (declared_length(request) or 0) > MAX_BODY:
                return respond(self, _message(413, "Too large", "The form is larger than a referral can be."))
            return respond(self, await casework.submit_referral_form(la_code, request.headers, await form_of(request)))

    class PartnerReferrals(View):
        async def post(self, request: Request, la_code: str) -> Response:
            declared = declared_length(request)
            # Refused before reading: a body past the limit is never taken in, and no more than one byte over it
            # is ever read from a body that did not say its length.
            stream = cast(Any, request).content
            body = b"" if (declared or 0) > MAX_BODY else await stream.read(MAX_BODY + 1)
            return respond(self, await casework.partner_referral(la_code, request.headers, body, declared))

    class CasePage(View):
        async def get(self, request: Request, la_code: str, case_id: str) -> Response:
            return respond(self, await casework.case_page(la_code, case_id, request.headers))

    class CaseLink(View):
        async def post(self, request: Request, la_code: str, case_id: str) -> Response:
            return respond(self, await casework.link_case(la_code, case_id, request.headers, await form_of(request)))

    class CaseWork(View):
        async def post(self, request: Request, la_code: str, case_id: str) -> Response:
            if (declared_length(request) or 0) > MAX_BODY:
                return respond(self, _message(413, "Too large", "The form is larger than a case action can be."))
            return respond(self, await casework.case_work(la_code, case_id, request.headers, await form_of(request)))

    class Search(View):
        async def get(self, request: Request, la_code: str) -> Response:
            return respond(self, await casework.search(la_code, request.headers, request.query))

    app.page("/la/{la_code}/referral", name="la_referral_form")(ReferralForm)
    app.page("/la/{la_code}/referrals", name="la_partner_referrals")(PartnerReferrals)
    app.page("/la/{la_code}/cases/{case_id}", name="la_case")(CasePage)
    app.page("/la/{la_code}/cases/{case_id}/link", name="la_case_link")(CaseLink)
    app.page("/la/{la_code}/cases/{case_id}/work", name="la_case_work")(CaseWork)
    app.page("/la/{la_code}/search", name="la_search")(Search)
    return casework
