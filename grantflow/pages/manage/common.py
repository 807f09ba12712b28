"""What the admins' management pages share: the admin-only viewer, a form's text as typed,
durations in days and hours, and the services' refusals said in the reader's language."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated

from fastapi import Depends
from starlette.datastructures import FormData

from grantflow.i18n import gettext as _
from grantflow.pages import forms
from grantflow.pages.display import N_
from grantflow.pages.web import Viewer, signed_in
from grantflow.services.errors import Forbidden, Invalid
from schemas.common import Role


async def admin(viewer: Annotated[Viewer, Depends(signed_in)]) -> Viewer:
    if viewer.role != Role.admin:
        raise Forbidden(_("This page is for the programme's staff (admins)."))
    return viewer


AdminViewer = Annotated[Viewer, Depends(admin)]


def text(form: FormData, name: str, limit: int = 5_000) -> str:
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


def texts(form: FormData, name: str, limit: int = 200) -> list[str]:
    return [str(v)[:200] for v in form.getlist(name)][:limit]


# --- durations: a day count and an hour count, never an ISO 8601 string ----------------------


def duration_parts(span: timedelta | None) -> dict[str, str]:
    """A duration as the form shows it: whole days, and the rest in hours ("1.5")."""
    if span is None:
        return {"days": "0", "hours": "0"}
    seconds = Decimal(int(span.total_seconds()))
    days, rest = divmod(seconds, Decimal(86_400))
    hours = (rest / Decimal(3_600)).quantize(Decimal("0.0001")).normalize()
    return {"days": str(int(days)), "hours": f"{hours:f}"}


def _hours(value: str) -> Decimal | None:
    compact = re.sub(r"[\s\u00a0]", "", value).replace(",", ".")
    if not compact:
        return Decimal(0)
    try:
        found = Decimal(compact)
    except InvalidOperation:
        return None
    return found if found.is_finite() and found >= 0 else None


def to_duration(parts: dict[str, str]) -> timedelta | str:
    """The days and hours typed as a duration, or the error to show beside them."""
    days = forms.number(parts.get("days", "") or "0")
    hours = _hours(parts.get("hours", ""))
    if not isinstance(days, int) or days > 36_500:
        return _("Days: a whole number, 0 or more.")
    if hours is None or hours > 100_000:
        return _("Hours: a number, 0 or more (1.5 is an hour and a half).")
    return timedelta(days=days) + timedelta(seconds=float(hours * 3_600))


# --- refusals ---------------------------------------------------------------------------------

# The services' refusals are in English for API users; those an admin meets on these pages
# are said again in the reader's language (by how they begin).
REFUSALS = [
    ("you cannot change your own role", N_("You cannot change your own role.")),
    ("you cannot deactivate yourself", N_("You cannot deactivate yourself.")),
    ("the user is deactivated", N_("This user is deactivated.")),
    ("the session is closed", N_("The session is closed.")),
    ("this item has already been decided", N_("This item has already been decided.")),
    ("only the chair or an admin", N_("Only the chair or an admin can do this.")),
    ("members must be council members", N_("Choose at least one council member.")),
    ("unknown member id", N_("Choose council members from the list.")),
    ("the chair must be a member", N_("The chair must be one of the members, or you.")),
    ("this report is not", N_("This report is not waiting for a decision.")),
    (
        "accepting the final report needs",
        N_("Choose how the project closes to accept the final report."),
    ),
]


def said(message: str) -> str:
    for start, text_ in REFUSALS:
        if message.startswith(start):
            return _(text_)
    return message


def errors_of(exc: Invalid) -> forms.Errors:
    """An Invalid's errors by field (model-level ones under "form"), each for a person."""
    if not exc.errors:
        return {"form": said(exc.message)}
    found: forms.Errors = {}
    for error in exc.errors:
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "params")]
        key = ".".join(loc) or "form"
        found.setdefault(key, said(forms.message(error)))
    return found


def first_of(errors: forms.Errors, order: list[str]) -> str | None:
    for name in order:
        for key in errors:
            if key == name or key.startswith(f"{name}."):
                return key
    return next((k for k in errors if k != "form"), None)
