"""What every page shares: who is looking (the session, the language, the time zone), the
CSRF check on every POST, rendering (a whole page, or one block for an htmx request), and the
refusals of the service layer shown as pages instead of JSON.

Every page route is a `PageRoute`: the checks below run for each of them, so a new page cannot
forget one."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import structlog
from fastapi import Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from jinja2_fragments import render_block

from grantflow import i18n
from grantflow.api.context import one_line, raised_at
from grantflow.pages import display, forms
from grantflow.pages.display import N_
from grantflow.services import account as accounts
from grantflow.services.account import Account
from grantflow.services.context import Caller, Resources
from grantflow.services.errors import Busy, Forbidden, NotFound, ServiceError
from schemas.common import Role

log = structlog.get_logger(__name__)

SESSION_COOKIE = "gf_session"
ANON_COOKIE = "gf_anon"  # binds the CSRF token of forms shown before sign-in
LANG_COOKIE = "gf_lang"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
TEMPLATES = Path(__file__).resolve().parent / "templates"
# Nothing loads from another host, nothing runs inline, no other site frames a page; links in
# e-mails carry tokens, so no Referer leaves the site.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "referrer-policy": "same-origin",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
}


# The JSON API, its documentation and the files keep their own answers; any other address is
# a page's, and its errors are pages in the viewer's language.
NOT_PAGES = ("/v1/", "/static/", "/healthz", "/docs", "/redoc", "/openapi.json")
STATUS_MESSAGES = {
    404: N_("There is no such page, or it is not yours."),
    405: N_("This page cannot be reached that way. Go back and use its links and buttons."),
    422: N_("The address of this page is not valid. Go back and use its links."),
    500: N_(
        "Something went wrong on our side. Try again; if it happens again, tell us this "
        "number: %(request_id)s."
    ),
    502: display.SERVER_DOWN,
    503: display.SERVER_DOWN,
}


class SignInRequired(Exception):
    """The page needs a signed-in user: off to the sign-in page, and back afterwards."""


@dataclass
class Viewer:
    """Who is looking at the page, in which language and time zone."""

    account: Account | None
    session_id: str | None
    anon_id: str
    locale: str
    time_zone: str
    csrf: str
    secure: bool

    @property
    def caller(self) -> Caller:
        if self.account is None:
            raise SignInRequired
        return accounts.caller_of(self.account)

    @property
    def role(self) -> Role | None:
        return self.account.role if self.account else None


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # Newstyle: `_("Hello, %(name)s", name=n)` escapes the variables, not the catalogue's text.
    env.install_gettext_callables(  # type: ignore[attr-defined]
        lambda message: i18n.translations(i18n.current_locale()).ugettext(message),
        lambda s, p, n: i18n.translations(i18n.current_locale()).ungettext(s, p, n),
        newstyle=True,
    )
    env.globals.update(display.GLOBALS)
    env.globals["summary_labels"] = forms.summary_labels
    return env


ENV = _environment()


def resources(request: Request) -> Resources:
    res: Resources = request.app.state.resources
    return res


def _csrf_for(secret: str, binding: str) -> str:
    return hmac.new(secret.encode(), f"csrf:{binding}".encode(), hashlib.sha256).hexdigest()


def _locale_before_sign_in(request: Request) -> str:
    """The language chosen on the page (a cookie), else the browser's Accept-Language."""
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in i18n.LOCALES:
        return chosen
    return i18n.negotiate(request.headers.get("accept-language"))


async def _viewer(request: Request, res: Resources) -> Viewer:
    session_id = request.cookies.get(SESSION_COOKIE)
    found = await accounts.session(res.pool, session_id) if session_id else None
    anon_id = request.cookies.get(ANON_COOKIE) or secrets.token_urlsafe(24)
    if found is not None:
        locale, zone = found.locale, found.time_zone
    else:
        locale, zone = _locale_before_sign_in(request), i18n.DEFAULT_TIME_ZONE
    binding = session_id if found is not None and session_id else anon_id
    return Viewer(
        account=found,
        session_id=session_id if found is not None else None,
        anon_id=anon_id,
        locale=locale,
        time_zone=zone,
        csrf=_csrf_for(res.settings.secret_key, binding),
        secure=res.settings.env != "development",
    )


async def _csrf_ok(request: Request, viewer: Viewer) -> bool:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent:
        return False
    # Bound to the session's id once signed in, else to the anonymous cookie: both must have
    # come with the request (a form from another site carries neither the cookie nor the token).
    if viewer.account is None and ANON_COOKIE not in request.cookies:
        return False
    return hmac.compare_digest(sent, viewer.csrf)


def set_cookie(response: Response, viewer: Viewer, name: str, value: str, max_age: int) -> None:
    """HttpOnly, SameSite=Lax, Secure outside development."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=viewer.secure,
        path="/",
    )


class PageRoute(APIRoute):
    """A page: its viewer resolved first, every POST's CSRF token checked, and a refusal
    rendered as a page in the viewer's language."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def page(request: Request) -> Response:
            viewer = await _viewer(request, resources(request))
            request.state.viewer = viewer
            i18n.set_locale(viewer.locale)
            if request.method == "POST" and not await _csrf_ok(request, viewer):
                log.warning("csrf refused", path=request.url.path)
                response: Response = error_page(
                    request,
                    403,
                    i18n.gettext(
                        "This form has expired. Go back, reload the page and send it again."
                    ),
                )
            else:
                try:
                    response = await handle(request)
                except SignInRequired:
                    target = quote(request.url.path, safe="/")
                    response = RedirectResponse(f"/sign-in?next={target}", status_code=303)
                except ServiceError as exc:
                    response = refusal_page(request, exc)
                except Exception as exc:  # a fault: a page, in the viewer's language
                    response = await _fault_page(request, exc)
            if ANON_COOKIE not in request.cookies:
                set_cookie(response, viewer, ANON_COOKIE, viewer.anon_id, 60 * 60 * 24 * 30)
            if request.cookies.get(SESSION_COOKIE) and viewer.account is None:
                _forget_stale_session(response)
            response.headers.setdefault("cache-control", "no-store")
            response.headers.update(SECURITY_HEADERS)
            return response

        return page


async def _fault_page(request: Request, exc: Exception) -> HTMLResponse:
    """What the JSON API would answer (a 503 for a server that is down, a 422 for a bad
    address), said as a page; anything unexpected is a 500 logged in one line, as the API's
    safety net logs it, with the request id to quote."""
    handler = next(
        (
            request.app.exception_handlers[cls]
            for cls in type(exc).__mro__
            if cls in request.app.exception_handlers
        ),
        None,
    )
    if handler is not None:
        try:
            answered: Response = await handler(request, exc)
            return error_answer(request, answered.status_code)
        except Exception as again:  # the handler passed it on: it is a fault after all
            exc = again
    log.error(
        "unexpected error",
        method=request.method,
        path=ascii(request.url.path)[1:-1][:200],
        error=one_line(f"{type(exc).__name__}: {exc}"),
        at=raised_at(exc.__traceback__),
    )
    return error_answer(request, 500)


def error_answer(request: Request, status: int) -> HTMLResponse:
    """The error page for `status`, in the viewer's language."""
    request_id = structlog.contextvars.get_contextvars().get("request_id", "")
    said = STATUS_MESSAGES.get(status, STATUS_MESSAGES[500] if status >= 500 else None)
    message = i18n.gettext(said, request_id=request_id) if said else ""
    return error_page(request, status, message)


def is_page(request: Request) -> bool:
    """Whether the address is a page's (its errors are pages) rather than the API's."""
    path = request.url.path
    return path != "/v1" and not path.startswith(NOT_PAGES)


async def page_error(request: Request, status: int, headers: Mapping[str, str]) -> Response:
    """An error page for an address no page route served (no such page, a method it does
    not take): the viewer found as a page finds it, and the page's headers."""
    res = resources(request)
    try:
        viewer = await _viewer(request, res)
    except Exception:  # the database is down: still a page, for a stranger
        log.warning("error page without the session", path=request.url.path)
        viewer = _stranger(request, res)
    request.state.viewer = viewer
    i18n.set_locale(viewer.locale)
    response = error_answer(request, status)
    response.headers.update(headers)
    response.headers.setdefault("cache-control", "no-store")
    response.headers.update(SECURITY_HEADERS)
    return response


def _stranger(request: Request, res: Resources) -> Viewer:
    anon_id = request.cookies.get(ANON_COOKIE) or secrets.token_urlsafe(24)
    return Viewer(
        account=None,
        session_id=None,
        anon_id=anon_id,
        locale=_locale_before_sign_in(request),
        time_zone=i18n.DEFAULT_TIME_ZONE,
        csrf=_csrf_for(res.settings.secret_key, anon_id),
        secure=res.settings.env != "development",
    )


def _forget_stale_session(response: Response) -> None:
    """Drop a session cookie that no longer signs anyone in, unless this very answer is the
    sign-in that sets a new one."""
    new = f"{SESSION_COOKIE}=".encode()
    if not any(v.startswith(new) for k, v in response.raw_headers if k == b"set-cookie"):
        response.delete_cookie(SESSION_COOKIE, path="/")


def viewer_of(request: Request) -> Viewer:
    found: Viewer = request.state.viewer
    return found


# The dependencies are coroutines: FastAPI runs a plain `def` one in its thread pool, a hand-off
# per dependency per request for what is a dictionary lookup.
async def signed_in(request: Request) -> Viewer:
    found = viewer_of(request)
    if found.account is None:
        raise SignInRequired
    return found


async def applicant(viewer: Annotated[Viewer, Depends(signed_in)]) -> Viewer:
    if viewer.role != Role.applicant:
        raise Forbidden(i18n.gettext("This page is for applicants."))
    return viewer


async def _viewer_dependency(request: Request) -> Viewer:
    return viewer_of(request)


async def _resources_dependency(request: Request) -> Resources:
    return resources(request)


PageViewer = Annotated[Viewer, Depends(_viewer_dependency)]
SignedIn = Annotated[Viewer, Depends(signed_in)]
ApplicantViewer = Annotated[Viewer, Depends(applicant)]
Res = Annotated[Resources, Depends(_resources_dependency)]


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    block: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """The page (or, for an htmx request, only `block` of it) in the viewer's language."""
    viewer = viewer_of(request)
    now = datetime.now(UTC)
    values = {
        "request": request,
        "viewer": viewer,
        "now": now,
        "zone_label_now": i18n.zone_label(viewer.time_zone, now),
        "nav": display.navigation(viewer.role),
        **(context or {}),
    }
    if block is not None and is_htmx(request):
        html = render_block(ENV, template, block, values)
    else:
        html = ENV.get_template(template).render(values)
    return HTMLResponse(html, status_code=status, headers=dict(headers or {}))


def error_page(
    request: Request, status: int, message: str, headers: Mapping[str, str] | None = None
) -> HTMLResponse:
    return render(
        request, "error.html", {"status": status, "message": message}, status=status,
        headers=headers,
    )  # fmt: skip


def refusal_page(request: Request, exc: ServiceError) -> HTMLResponse:
    """A refusal the page did not handle itself, as a page with the same status as the API's."""
    if isinstance(exc, NotFound):
        return error_page(request, 404, i18n.gettext("There is no such page, or it is not yours."))
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Busy) else None
    return error_page(request, exc.status, display.refusal(exc.message), headers)


def redirect(url: str) -> RedirectResponse:
    """After a POST: See Other, so a reload does not send the form again."""
    return RedirectResponse(url, status_code=303)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only, never another host (browsers
    drop tabs and newlines from URLs, so "/\t/evil.example" would be "//evil.example")."""
    if not target or not target.startswith("/") or any(c in target for c in "\\\t\r\n "):
        return "/"
    parts = urlsplit(target)
    if target.startswith("//") or parts.scheme or parts.netloc:
        return "/"
    return target
