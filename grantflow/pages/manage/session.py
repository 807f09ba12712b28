"""Council sessions as admins run them: open one for a programme with the members chosen,
follow its agenda (scores, tallies, the budget left), decide an item now, and close it after a
confirmation. A refusal (an approval the budget cannot cover, a decided item, a closed
session) comes back on the session's page, beside its item, with the budget left."""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from grantflow.i18n import gettext as _
from grantflow.i18n import money
from grantflow.pages import forms
from grantflow.pages.display import N_
from grantflow.pages.manage.common import AdminViewer, errors_of, said, text, texts
from grantflow.pages.web import PageRoute, Res, Viewer, redirect, render
from grantflow.services import council, programme, user
from grantflow.services.application import parse_id
from grantflow.services.errors import Conflict, Invalid, NotFound
from grantflow.services.programme import NOT_FOUND as PROGRAMME_NOT_FOUND
from schemas.council import Outcome, SessionCreate, SessionState

router = APIRouter(route_class=PageRoute, include_in_schema=False)

OUTCOMES = {
    Outcome.approved: N_("Approved"),
    Outcome.rejected: N_("Rejected"),
    Outcome.deferred: N_("Deferred to the next session"),
}
DONE = {
    "opened": N_("The council session is open: its members can vote now."),
    "decided": N_("The item is decided."),
    "closed": N_("The session is closed: every item is decided."),
}
_OVERSPEND = re.compile(r"has ([\d ]+) RUB left; approving ([\d ]+) RUB")


def outcome_name(value: Outcome | str) -> str:
    return _(OUTCOMES[Outcome(value)])


def refusal_text(message: str) -> str:
    """A refused decision in the reader's language; an overspend says what is left."""
    found = _OVERSPEND.search(message)
    if found:
        left, asked = (int(g.replace(" ", "")) for g in found.groups())
        return _(
            "Refused: the budget cannot cover this approval. %(left)s is left; approving it "
            "needs %(asked)s. The item stays open.",
            left=money(left),
            asked=money(asked),
        )
    return said(message)


_REASONS = [
    (r"^approved (\d+) of (\d+) for ([\d ]+) RUB$", N_("approved by %(a)s of %(b)s for %(c)s")),
    (r"^quorum not met: (\d+) of (\d+) votes$", N_("no quorum: %(a)s of %(b)s votes")),
    (
        r"^no majority: (\d+)/(\d+)/(\d+)$",
        N_("no majority: approve %(a)s, reject %(b)s, defer %(c)s"),
    ),
    (r"^rejected (\d+) of (\d+): (.*)$", N_("rejected by %(a)s of %(b)s: %(c)s")),
    (r"^deferred (\d+) of (\d+): (.*)$", N_("deferred by %(a)s of %(b)s: %(c)s")),
]


def decision_reason(reason: str) -> str:
    """A decision's recorded reason (the workflow's words) in the reader's language."""
    over = _OVERSPEND.search(reason)
    if over:
        left, asked = (money(int(g.replace(" ", ""))) for g in over.groups())
        return _(
            "the budget could not cover it: %(left)s left, %(asked)s asked", left=left, asked=asked
        )
    for pattern, said_ in _REASONS:
        found = re.match(pattern, reason, re.S)
        if found:
            parts = [*found.groups(), "", "", ""]
            if pattern.startswith("^approved"):
                parts[2] = money(int(parts[2].replace(" ", "")))
            return _(said_, a=parts[0], b=parts[1], c=parts[2])
    return reason


# --- opening ---------------------------------------------------------------------------------


async def _new_page(
    request: Request,
    viewer: Viewer,
    res: Res,
    programme_id: uuid.UUID,
    values: dict[str, Any],
    errors: forms.Errors | None = None,
) -> Response:
    errors = errors or {}
    members = await council.council_members(res, viewer.caller)
    context = {
        "p": await programme.get(res, viewer.caller, programme_id),
        "member_choices": [(m.user_id, m.name) for m in members],
        "members": members,
        "values": values,
        "errors": errors,
        "labels": {
            "name": _("Name of the session"),
            "member_ids": _("Members who vote"),
            "chair_id": _("Chair"),
        },
        "focus": next(iter(k for k in ("name", "member_ids", "chair_id") if k in errors), None),
    }
    return render(request, "admin_session_new.html", context)


@router.get("/admin/programmes/{programme_id}/sessions/new")
async def new(request: Request, viewer: AdminViewer, res: Res, programme_id: str) -> Response:
    """Open a council session: its name, the council members who vote (all, unless fewer are
    chosen), and its chair (you, or one of them)."""
    pid = parse_id(programme_id, PROGRAMME_NOT_FOUND)
    members = await council.council_members(res, viewer.caller)
    values = {"name": "", "member_ids": [m.user_id for m in members], "chair_id": ""}
    return await _new_page(request, viewer, res, pid, values)


@router.post("/admin/programmes/{programme_id}/sessions")
async def open_session(
    request: Request, viewer: AdminViewer, res: Res, programme_id: str
) -> Response:
    """Open it: the agenda is every reviewed or deferred application, best score first."""
    pid = parse_id(programme_id, PROGRAMME_NOT_FOUND)
    form = await request.form()
    values = {
        "name": text(form, "name", 300).strip(),
        "member_ids": texts(form, "member_ids"),
        "chair_id": text(form, "chair_id", 60),
    }
    try:
        body = forms._validate(
            SessionCreate,
            {
                "name": values["name"],
                "member_ids": values["member_ids"] or None,
                "chair_id": values["chair_id"] or None,
            },
        )
        if not values["member_ids"]:
            raise Invalid("members must be council members (at least one)")
        state = await council.open_session(res, viewer.caller, pid, body)
    except Invalid as exc:
        errors = errors_of(exc)
        if "form" in errors and exc.message.startswith(("members", "unknown member")):
            errors = {"member_ids": errors.pop("form"), **errors}
        elif "form" in errors and exc.message.startswith("the chair"):
            errors = {"chair_id": errors.pop("form"), **errors}
        return await _new_page(request, viewer, res, pid, values, errors)
    return redirect(f"/admin/sessions/{state.session_id}?done=opened")


# --- the session -----------------------------------------------------------------------------


async def _session_page(
    request: Request,
    viewer: Viewer,
    res: Res,
    session_id: str,
    *,
    refusal: tuple[str, str] | None = None,
    status: int = 200,
) -> Response:
    state: SessionState = await council.get_session(res, viewer.caller, session_id)
    pid = uuid.UUID(state.programme_id)
    names = {m.user_id: m.name for m in await council.council_members(res, viewer.caller)}
    decided = {d.application_id: d for d in state.decisions}
    done = DONE.get(request.query_params.get("done", ""))
    context = {
        "s": state,
        "p": await programme.get(res, viewer.caller, pid),
        "ledger": await council.programme_ledger(res, viewer.caller, pid),
        "member_names": [names.get(m, m) for m in state.members],
        "chair": names.get(state.chair_id) or await _name(res, viewer, state.chair_id),
        "decided": decided,
        "outcome_name": outcome_name,
        "decision_reason": decision_reason,
        "refusal": refusal,
        "done": _(done) if done else None,
        "votes_cast": {k: t.approve + t.reject + t.defer for k, t in state.tallies.items()},
    }
    return render(request, "admin_session.html", context, status=status)


async def _name(res: Res, viewer: Viewer, user_id: str) -> str:
    """The chair when it is not a member: the admin who opened the session, as a rule."""
    try:
        return (await user.get_user(res, viewer.caller, uuid.UUID(user_id))).name
    except (NotFound, ValueError):
        return _("an admin")


@router.get("/admin/sessions/{session_id}")
async def one(request: Request, viewer: AdminViewer, res: Res, session_id: str) -> Response:
    """The session's agenda, best score first: the reviews' scores and spread, the amount
    requested, the tally against the quorum, each decision, and the budget left."""
    return await _session_page(request, viewer, res, session_id)


@router.post("/admin/sessions/{session_id}/decide")
async def decide(request: Request, viewer: AdminViewer, res: Res, session_id: str) -> Response:
    """Decide one item now from the votes cast; a refusal is shown beside the item."""
    form = await request.form()
    application_id = text(form, "application_id", 60)
    try:
        await council.decide(res, viewer.caller, session_id, application_id)
    except Conflict as exc:
        refusal = (application_id, refusal_text(exc.message))
        return await _session_page(request, viewer, res, session_id, refusal=refusal)
    return redirect(f"/admin/sessions/{session_id}?done=decided#item-{application_id}")


@router.get("/admin/sessions/{session_id}/close")
async def close_confirm(
    request: Request, viewer: AdminViewer, res: Res, session_id: str
) -> Response:
    """Before closing: what happens to the items not decided yet."""
    state = await council.get_session(res, viewer.caller, session_id)
    if not state.open:
        return redirect(f"/admin/sessions/{session_id}")
    decided = {d.application_id for d in state.decisions}
    open_items = [i for i in state.agenda if i.application_id not in decided]
    return render(request, "admin_session_close.html", {"s": state, "open_items": open_items})


@router.post("/admin/sessions/{session_id}/close")
async def close(request: Request, viewer: AdminViewer, res: Res, session_id: str) -> Response:
    """Close the session: every item still open is decided now, in rank order."""
    try:
        await council.close(res, viewer.caller, session_id)
    except Conflict as exc:
        refusal = ("", said(exc.message))
        return await _session_page(request, viewer, res, session_id, refusal=refusal)
    return redirect(f"/admin/sessions/{session_id}?done=closed")
