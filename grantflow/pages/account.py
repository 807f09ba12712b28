"""Pages of accounts: register, confirm the e-mail, sign in and out (everywhere too), set or
reset a password by link, the language switch and the account's settings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError

from grantflow import i18n
from grantflow.i18n import gettext as _
from grantflow.pages import forms
from grantflow.pages.display import N_, ORGANISATION_TYPES
from grantflow.pages.web import (
    LANG_COOKIE,
    SESSION_COOKIE,
    PageRoute,
    PageViewer,
    Res,
    SignedIn,
    error_page,
    redirect,
    render,
    safe_next,
    set_cookie,
)
from grantflow.services import account
from grantflow.services.errors import Busy, Conflict, Invalid, NotFound

router = APIRouter(route_class=PageRoute, include_in_schema=False)

REGISTRATION_LABELS = {
    "name": N_("Your name"),
    "email": N_("E-mail"),
    "institution": N_("Institution"),
    "organisation_type": N_("Type of organisation"),
    "time_zone": N_("Time zone"),
    "password": N_("Password"),
}
PASSWORD_LABELS = {"password": N_("New password"), "password_again": N_("The password again")}
ACCOUNT_LABELS = {"locale": N_("Language"), "time_zone": N_("Time zone")}
Text = Annotated[str, Form()]


def _labels(labels: dict[str, str]) -> dict[str, str]:
    return {k: _(v) for k, v in labels.items()}


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.get("/sign-in")
async def sign_in_page(request: Request, viewer: PageViewer, next: str = "/") -> Response:
    if viewer.account is not None:
        return redirect(safe_next(next))
    done = (
        _("Your password is saved. Sign in with it.")
        if "password" in request.query_params
        else None
    )
    return render(request, "sign_in.html", {"next": safe_next(next), "email": "", "done": done})


@router.post("/sign-in")
async def sign_in(
    request: Request,
    viewer: PageViewer,
    res: Res,
    email: Text = "",
    password: Text = "",
    next: Text = "/",
) -> Response:
    """A new session (a new id: whatever id the browser held before is not reused)."""
    status, headers = 200, None
    try:
        started = await account.sign_in(
            res.pool,
            res.settings,
            email,
            password,
            client_addr=_client(request),
            user_agent=request.headers.get("user-agent"),
        )
    except Busy as exc:
        refusal, status, headers = exc.message, 429, {"Retry-After": str(exc.retry_after)}
    except (Invalid, Conflict) as exc:
        refusal = exc.message
    else:
        response = redirect(safe_next(next))
        set_cookie(
            response,
            viewer,
            SESSION_COOKIE,
            started.session_id,
            int(account.SESSION_ABSOLUTE.total_seconds()),
        )
        set_cookie(response, viewer, LANG_COOKIE, started.account.locale, 60 * 60 * 24 * 365)
        return response
    context = {"next": safe_next(next), "email": email, "refusal": refusal}
    return render(request, "sign_in.html", context, status=status, headers=headers)


@router.post("/sign-out")
async def sign_out(viewer: PageViewer, res: Res) -> Response:
    if viewer.session_id:
        await account.sign_out(res.pool, viewer.session_id)
    response = redirect("/sign-in")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/sign-out-everywhere")
async def sign_out_everywhere(viewer: SignedIn, res: Res) -> Response:
    await account.sign_out_everywhere(res.pool, viewer.caller)
    response = redirect("/sign-in")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _registration_context(
    values: dict[str, Any], errors: forms.Errors | None = None
) -> dict[str, Any]:
    errors = errors or {}
    return {
        "values": values,
        "errors": errors,
        "labels": _labels(REGISTRATION_LABELS),
        "focus": next((k for k in REGISTRATION_LABELS if k in errors), None),
        "organisation_types": [(k, _(v)) for k, v in ORGANISATION_TYPES.items()],
        "time_zones": i18n.time_zone_options(datetime.now(UTC)),
    }


@router.get("/register")
async def register_page(request: Request, viewer: PageViewer) -> Response:
    if viewer.account is not None:
        return redirect("/")
    values = {"organisation_type": "medical_institution", "time_zone": i18n.DEFAULT_TIME_ZONE}
    return render(request, "register.html", _registration_context(values))


@router.post("/register")
async def register(request: Request, viewer: PageViewer, res: Res) -> Response:
    form = await request.form()
    fields = ("name", "email", "institution", "organisation_type", "time_zone", "password")
    values = {k: str(form.get(k) or "") for k in fields}
    try:
        registration = account.Registration.model_validate({**values, "locale": viewer.locale})
        await account.register(res.pool, res.settings, registration)
    except ValidationError as exc:
        errors = forms.field_errors(exc.errors(include_url=False, include_input=False))
        errors = {k: _registration_message(k, v) for k, v in errors.items()}
        return render(request, "register.html", _registration_context(values, errors))
    except Invalid as exc:
        errors = forms.field_errors(exc.errors) if exc.errors else {"form": exc.message}
        return render(request, "register.html", _registration_context(values, errors))
    sent = _(
        "We have sent a link to %(email)s. Open it to confirm your address.", email=values["email"]
    )
    spam = _("The link works for 3 days. Nothing came? Look in the spam folder, or sign in again.")
    lines = [sent, spam]
    return render(request, "message.html", {"heading": _("Check your e-mail"), "lines": lines})


def _registration_message(field: str, message: str) -> str:
    if field == "email" and message.startswith("Value error"):
        return _("Enter an e-mail address like name@example.ru.")
    if field == "time_zone" and message.startswith("Value error"):
        return _("Choose a time zone from the list.")
    return message


@router.get("/confirm-email")
async def confirm_email(request: Request, res: Res, token: str = "") -> Response:
    """The link from the registration e-mail: works once, until it expires."""
    try:
        await account.confirm_email(res.pool, token)
    except NotFound:
        return _dead_link(request)
    lines = [_("Your e-mail address is confirmed. Sign in to apply.")]
    context = {"heading": _("Thank you"), "lines": lines, "link": ("/sign-in", _("Sign in"))}
    return render(request, "message.html", context)


def _dead_link(request: Request) -> Response:
    message = _(
        "This link has expired or was already used. Ask for a new one: sign in, "
        "or use “Forgot your password?”."
    )
    return error_page(request, 404, message)


def _password_context(
    purpose: str, token: str, errors: forms.Errors | None = None
) -> dict[str, Any]:
    errors = errors or {}
    heading = _("Choose your password") if purpose == "set_password" else _("Choose a new password")
    return {
        "heading": heading,
        "post_to": account.LINK_PATHS[purpose],
        "token": token,
        "errors": errors,
        "labels": _labels(PASSWORD_LABELS),
        "focus": next(iter(errors), None),
    }


async def _password_page(
    request: Request, res: Res, purpose: account.Purpose, token: str
) -> Response:
    try:
        await account.check_link(res.pool, token, purpose)
    except NotFound:
        return _dead_link(request)
    return render(request, "password.html", _password_context(purpose, token))


async def _password_post(request: Request, res: Res, purpose: account.Purpose) -> Response:
    form = await request.form()
    token, password = str(form.get("token") or ""), str(form.get("password") or "")
    if password != str(form.get("password_again") or ""):
        errors = {"password_again": _("The two passwords differ.")}
        return render(request, "password.html", _password_context(purpose, token, errors))
    try:
        await account.set_password(res.pool, token, purpose, password)
    except NotFound:
        return _dead_link(request)
    except Invalid:
        errors = {"password": _("Choose a password of at least 10 characters.")}
        return render(request, "password.html", _password_context(purpose, token, errors))
    return redirect("/sign-in?password=set")


@router.get("/set-password")
async def set_password_page(request: Request, res: Res, token: str = "") -> Response:
    """The link in a staff member's invitation."""
    return await _password_page(request, res, "set_password", token)


@router.post("/set-password")
async def set_password(request: Request, res: Res) -> Response:
    return await _password_post(request, res, "set_password")


@router.get("/reset-password")
async def reset_password_page(request: Request, res: Res, token: str = "") -> Response:
    """The link from "Forgot your password?"."""
    return await _password_page(request, res, "reset_password", token)


@router.post("/reset-password")
async def reset_password(request: Request, res: Res) -> Response:
    return await _password_post(request, res, "reset_password")


@router.get("/forgot-password")
async def forgot_password_page(request: Request) -> Response:
    return render(request, "forgot_password.html")


@router.post("/forgot-password")
async def forgot_password(request: Request, res: Res, email: Text = "") -> Response:
    await account.request_password_reset(
        res.pool, res.settings, email, client_addr=_client(request)
    )
    sent = _("If %(email)s has an account, a link to choose a new password is on its way.")
    lines = [sent % {"email": email}, _("The link works for 1 hour.")]
    return render(request, "message.html", {"heading": _("Check your e-mail"), "lines": lines})


@router.post("/language")
async def language(viewer: PageViewer, res: Res, locale: Text = "", next: Text = "/") -> Response:
    """The language switch on every page: remembered for the account, or in a cookie."""
    chosen = locale if locale in i18n.LOCALES else i18n.DEFAULT_LOCALE
    if viewer.account is not None:
        await account.set_locale(res.pool, viewer.caller, chosen)
    response = redirect(safe_next(next))
    set_cookie(response, viewer, LANG_COOKIE, chosen, 60 * 60 * 24 * 365)
    return response


def _account_context(
    sessions: int, errors: forms.Errors | None = None, done: str | None = None
) -> dict[str, Any]:
    return {
        "sessions": sessions,
        "errors": errors or {},
        "labels": _labels(ACCOUNT_LABELS),
        "languages": [(code, i18n.language_name(code)) for code in i18n.LOCALES],
        "time_zones": i18n.time_zone_options(datetime.now(UTC)),
        "done": done,
    }


@router.get("/account")
async def account_page(request: Request, viewer: SignedIn, res: Res) -> Response:
    assert viewer.account is not None
    sessions = await account.live_sessions(res.pool, viewer.caller)
    done = _("Saved.") if "saved" in request.query_params else None
    return render(request, "account.html", _account_context(sessions, done=done))


@router.post("/account")
async def save_account(
    request: Request, viewer: SignedIn, res: Res, locale: Text = "", time_zone: Text = ""
) -> Response:
    try:
        prefs = account.Preferences(locale=locale, time_zone=time_zone)
    except ValidationError as exc:
        errors = forms.field_errors(exc.errors(include_url=False, include_input=False))
        sessions = await account.live_sessions(res.pool, viewer.caller)
        return render(request, "account.html", _account_context(sessions, errors))
    await account.set_preferences(res.pool, viewer.caller, prefs)
    response = redirect("/account?saved=1")
    set_cookie(response, viewer, LANG_COOKIE, prefs.locale, 60 * 60 * 24 * 365)
    return response
