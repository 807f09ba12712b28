"""Users as admins manage them: the list (by role, or found by name or e-mail), an invitation
(the user is made and gets a single-use link to choose its password, by e-mail), a role change
with a reason, and deactivation with a reason after a confirmation (it ends the person's
sessions and revokes its token at once)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from grantflow.i18n import gettext as _
from grantflow.pages import forms
from grantflow.pages.display import N_, ORGANISATION_TYPES
from grantflow.pages.manage.common import AdminViewer, errors_of, first_of, said, text
from grantflow.pages.web import PageRoute, Res, Viewer, redirect, render
from grantflow.services import user
from grantflow.services.errors import Conflict, Invalid, NotFound
from schemas.common import Role
from schemas.users import Deactivation, Invitation, RoleChange, UserListed

router = APIRouter(route_class=PageRoute, include_in_schema=False)

ROLES = {
    Role.applicant: N_("Applicant"),
    Role.reviewer: N_("Expert (reviewer)"),
    Role.council: N_("Council member"),
    Role.coordinator: N_("Clinic coordinator"),
    Role.admin: N_("Admin"),
}
LABELS = {
    "name": N_("Name"),
    "email": N_("E-mail"),
    "role": N_("Role"),
    "institution": N_("Institution or clinic"),
    "organisation_type": N_("Type of institution"),
    "specialty": N_("Specialty"),
    "locale": N_("Language of the invitation"),
    "reason": N_("Reason"),
}
INVITE_ORDER = ["name", "email", "role", "institution", "organisation_type", "specialty", "locale"]
DONE = {
    "invited": N_("Invited: the link to choose a password is on its way by e-mail."),
    "role": N_("The role is changed: it applies from the person's next page."),
    "deactivated": N_("Deactivated: the person is signed out everywhere and the token is revoked."),
}


def role_name(value: Role | str) -> str:
    return _(ROLES[Role(value)])


def labels() -> dict[str, str]:
    return {k: _(v) for k, v in LABELS.items()}


def _role_choices() -> list[tuple[str, str]]:
    return [(r.value, _(name)) for r, name in ROLES.items()]


def _id(user_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(user_id)
    except ValueError:
        raise NotFound("user not found") from None


@router.get("/admin/users")
async def users(request: Request, viewer: AdminViewer, res: Res) -> Response:
    """Users, active first and the newest first; by role, or found by name or e-mail."""
    role_value = request.query_params.get("role", "")
    role = Role(role_value) if role_value in {r.value for r in Role} else None
    search = request.query_params.get("q", "")[:200]
    found = await user.list_users(res, viewer.caller, role, search)
    done = DONE.get(request.query_params.get("done", ""))
    context = {
        "users": found,
        "role": role.value if role else "",
        "q": search,
        "roles": [("", _("Every role")), *_role_choices()],
        "role_name": role_name,
        "done": _(done) if done else None,
    }
    return render(request, "admin_users.html", context)


def _invite_page(
    request: Request, values: dict[str, Any], errors: forms.Errors | None = None
) -> Response:
    errors = errors or {}
    context = {
        "values": values,
        "errors": errors,
        "labels": labels(),
        "focus": first_of(errors, INVITE_ORDER),
        "roles": _role_choices(),
        "org_types": [(k, _(v)) for k, v in ORGANISATION_TYPES.items()],
    }
    return render(request, "admin_user_invite.html", context)


@router.get("/admin/users/new")
async def new(request: Request, viewer: AdminViewer) -> Response:
    """Invite a person: staff, an expert, a council member, a clinic coordinator."""
    values = {"role": Role.reviewer.value, "organisation_type": "medical_institution"}
    return _invite_page(request, {**values, "locale": viewer.locale})


@router.post("/admin/users")
async def invite(request: Request, viewer: AdminViewer, res: Res) -> Response:
    """Make the user and send the link; the form again, as typed, with its errors."""
    form = await request.form()
    values = {name: text(form, name, 300).strip() for name in INVITE_ORDER}
    payload = {k: v for k, v in values.items() if v}
    if payload.get("institution") is None:
        payload.pop("organisation_type", None)
    try:
        await user.invite(res, viewer.caller, forms._validate(Invitation, payload))
    except Invalid as exc:
        return _invite_page(request, values, _placed(errors_of(exc)))
    return redirect("/admin/users?done=invited")


def _placed(errors: forms.Errors) -> forms.Errors:
    """The rules the store checks (who needs an institution, a specialty) beside their field."""
    message = errors.get("form", "")
    if "needs an institution" in message:
        rest = {k: v for k, v in errors.items() if k != "form"}
        return {
            **rest,
            "institution": _("This role needs an institution (a coordinator's clinic)."),
        }
    if "needs a specialty" in message:
        rest = {k: v for k, v in errors.items() if k != "form"}
        return {**rest, "specialty": _("An expert needs a specialty.")}
    return errors


async def _user_page(
    request: Request,
    viewer: Viewer,
    res: Res,
    found: UserListed,
    *,
    values: dict[str, Any] | None = None,
    errors: forms.Errors | None = None,
) -> Response:
    errors = errors or {}
    done = DONE.get(request.query_params.get("done", ""))
    context = {
        "u": found,
        "values": values or {"role": found.role.value, "specialty": "", "reason": ""},
        "errors": errors,
        "labels": labels(),
        "focus": first_of(errors, ["role", "specialty", "reason"]),
        "roles": _role_choices(),
        "role_name": role_name,
        "me": str(found.id) == viewer.caller.actor.user_id,
        "done": _(done) if done else None,
    }
    return render(request, "admin_user.html", context)


@router.get("/admin/users/{user_id}")
async def one(request: Request, viewer: AdminViewer, res: Res, user_id: str) -> Response:
    """One user: role, institution, whether the invitation was taken up; change the role,
    or deactivate."""
    found = await user.get_user(res, viewer.caller, _id(user_id))
    return await _user_page(request, viewer, res, found)


@router.post("/admin/users/{user_id}/role")
async def change_role(request: Request, viewer: AdminViewer, res: Res, user_id: str) -> Response:
    """Give another role, with a reason."""
    uid = _id(user_id)
    form = await request.form()
    values = {k: text(form, k, 2_000).strip() for k in ("role", "specialty", "reason")}
    try:
        body = forms._validate(RoleChange, {k: v for k, v in values.items() if v})
        await user.change_role(res, viewer.caller, uid, body)
    except Invalid as exc:
        found = await user.get_user(res, viewer.caller, uid)
        errors = _placed(errors_of(exc))
        return await _user_page(request, viewer, res, found, values=values, errors=errors)
    except Conflict as exc:
        found = await user.get_user(res, viewer.caller, uid)
        errors = {"form": said(exc.message)}
        return await _user_page(request, viewer, res, found, values=values, errors=errors)
    return redirect(f"/admin/users/{user_id}?done=role")


def _deactivate_page(
    request: Request, found: UserListed, reason: str, errors: forms.Errors
) -> Response:
    context = {
        "u": found,
        "reason": reason,
        "errors": errors,
        "labels": labels(),
        "focus": "reason" if "reason" in errors else None,
    }
    return render(request, "admin_user_deactivate.html", context)


@router.get("/admin/users/{user_id}/deactivate")
async def deactivate_confirm(
    request: Request, viewer: AdminViewer, res: Res, user_id: str
) -> Response:
    """Before deactivating: what it does, and the reason to give."""
    found = await user.get_user(res, viewer.caller, _id(user_id))
    return _deactivate_page(request, found, "", {})


@router.post("/admin/users/{user_id}/deactivate")
async def deactivate(request: Request, viewer: AdminViewer, res: Res, user_id: str) -> Response:
    """Deactivate, with a reason: the person's sessions end and its token is revoked."""
    uid = _id(user_id)
    form = await request.form()
    reason = text(form, "reason", 2_000)
    try:
        await user.deactivate(
            res, viewer.caller, uid, forms._validate(Deactivation, {"reason": reason})
        )
    except Invalid as exc:
        found = await user.get_user(res, viewer.caller, uid)
        return _deactivate_page(request, found, reason, errors_of(exc))
    except Conflict as exc:
        found = await user.get_user(res, viewer.caller, uid)
        return _deactivate_page(request, found, reason, {"form": said(exc.message)})
    return redirect(f"/admin/users/{user_id}?done=deactivated")
