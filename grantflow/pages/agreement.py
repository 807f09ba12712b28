"""The applicant's agreement: what the council's approval offers (the amount, its tranches,
the reports it owes and by when), to accept, or to decline with a reason. The same service
functions as the JSON API's `POST /v1/applications/{id}/agreement/acceptance` and
`.../agreement/decline`; another applicant's agreement is not found."""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from grantflow.i18n import gettext as _
from grantflow.i18n import when
from grantflow.pages import display, reporting
from grantflow.pages.display import N_
from grantflow.pages.reporting import kind_name, report_status
from grantflow.pages.web import ApplicantViewer, PageRoute, Res, SignedIn, Viewer, redirect, render
from grantflow.services import agreement, application
from grantflow.services.errors import Conflict, NotFound
from schemas.agreement import (
    AgreementDecline,
    AgreementState,
    AgreementStatus,
    Tranche,
    TrancheStatus,
)
from schemas.application import ApplicationPublic

router = APIRouter(route_class=PageRoute, include_in_schema=False)

STATUS = {
    AgreementStatus.offered: N_("Offered: waiting for your answer"),
    AgreementStatus.accepted: N_("Accepted: in force"),
    AgreementStatus.lapsed: N_("Lapsed: not accepted in time"),
    AgreementStatus.declined: N_("Declined"),
    AgreementStatus.completed: N_("Completed"),
    AgreementStatus.cancelled: N_("Cancelled"),
    AgreementStatus.stopped: N_("Stopped after the pilot"),
}
DONE = {
    "accepted": N_("You accepted the agreement. The first tranche is paid."),
    "declined": N_("You declined the agreement."),
    "report_sent": N_("Your report is sent. The expert will accept it or return it."),
}
HELD = re.compile(r"report (?P<seq>\d+) is not accepted yet")
# A refusal of an answer that came too late, said for the applicant.
ANSWERED = re.compile(r"the agreement is \w+")


def tranche_text(t: Tranche, time_zone: str) -> str:
    """What happened to a tranche, or will, in a sentence."""
    if t.status == TrancheStatus.released:
        return _("Paid %(at)s", at=when(t.released_at, time_zone)) if t.released_at else _("Paid")
    if t.status == TrancheStatus.held:
        found = HELD.fullmatch(t.held_reason or "")
        if found:
            return _("Held back until report %(seq)s is accepted", seq=found["seq"])
        return _("Held back: %(why)s", why=t.held_reason or "")
    if t.status == TrancheStatus.cancelled:
        return _("Not paid: the agreement ended")
    if t.due_at is None:  # before the acceptance, which pays the first and dates the others
        if t.seq == 1:
            return _("Paid once the agreement is accepted")
        return _("Its date is set when the agreement is accepted")
    return _("Due %(at)s", at=when(t.due_at, time_zone))


def refusal(message: str) -> str:
    """A refused answer, in the reader's language."""
    if ANSWERED.fullmatch(message):
        return _("The agreement can no longer be accepted or declined: it is answered or lapsed.")
    return display.refusal(message)


def _id(application_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(application_id)
    except ValueError:
        raise NotFound(agreement.NOT_FOUND) from None


async def _page(
    request: Request,
    res: Res,
    viewer: Viewer,
    app: ApplicationPublic,
    state: AgreementState,
    *,
    refused: str | None = None,
) -> Response:
    done = DONE.get(request.query_params.get("done", ""))
    context: dict[str, Any] = {
        "app": app,
        "agreement": state,
        "status_name": _(STATUS[state.status]),
        "kind_name": kind_name,
        "report_status": report_status,
        "tranche_text": lambda t: tranche_text(t, viewer.time_zone),
        "open_reports": reporting.OPEN,
        "done": _(done) if done else None,
        "refusal": refused,
        "paid": sum(t.amount_rub for t in state.tranches if t.status == TrancheStatus.released),
    }
    return render(request, "agreement.html", context)


@router.get("/applications/{application_id}/agreement")
async def show(request: Request, viewer: SignedIn, res: Res, application_id: str) -> Response:
    """The agreement with its tranches (paid, due, held back and why) and the reports it owes
    (due, sent, returned with the expert's comment, accepted); before there is one, the
    application's page."""
    app = await application.get(res, viewer.caller, application_id)
    try:
        state = await agreement.get(res, viewer.caller, _id(application_id))
    except NotFound:
        return redirect(f"/applications/{app.id}")
    return await _page(request, res, viewer, app, state)


@router.post("/applications/{application_id}/agreement/accept")
async def accept(
    request: Request, viewer: ApplicantViewer, res: Res, application_id: str
) -> Response:
    """Accept: the first tranche is paid at once. A refusal (too late, answered already) is
    said on the agreement's page."""
    wanted = _id(application_id)
    state = await agreement.own(res, viewer.caller, wanted)
    try:
        await agreement.accept(res, viewer.caller, wanted)
    except Conflict as exc:
        app = await application.get(res, viewer.caller, application_id)
        state = await agreement.own(res, viewer.caller, wanted)
        return await _page(request, res, viewer, app, state, refused=refusal(exc.message))
    return redirect(f"/applications/{state.application_id}/agreement?done=accepted")


def _decline_page(
    request: Request,
    app: ApplicationPublic,
    reason: str,
    errors: dict[str, str] | None = None,
    refused: str | None = None,
) -> Response:
    context = {
        "app": app,
        "reason": reason,
        "errors": errors or {},
        "labels": {"reason": _("Why you decline")},
        "focus": "reason" if errors else None,
        "refusal": refused,
    }
    return render(request, "agreement_decline.html", context)


@router.get("/applications/{application_id}/agreement/decline")
async def decline_form(
    request: Request, viewer: ApplicantViewer, res: Res, application_id: str
) -> Response:
    """Declining asks first, with the reason."""
    state = await agreement.own(res, viewer.caller, _id(application_id))
    if state.status != AgreementStatus.offered:
        return redirect(f"/applications/{application_id}/agreement")
    app = await application.get(res, viewer.caller, application_id)
    return _decline_page(request, app, "")


@router.post("/applications/{application_id}/agreement/decline")
async def decline(
    request: Request, viewer: ApplicantViewer, res: Res, application_id: str
) -> Response:
    """Decline with a reason: the approved amount goes back to the call's budget."""
    wanted = _id(application_id)
    await agreement.own(res, viewer.caller, wanted)
    app = await application.get(res, viewer.caller, application_id)
    reason = str((await request.form()).get("reason") or "").strip()
    try:
        AgreementDecline(reason=reason)
    except ValidationError:
        error = _("Say why, in a sentence or two (at most 2,000 characters).")
        return _decline_page(request, app, reason, {"reason": error})
    try:
        await agreement.decline(res, viewer.caller, wanted, reason)
    except Conflict as exc:
        return _decline_page(request, app, reason, refused=refusal(exc.message))
    return redirect(f"/applications/{app.id}/agreement?done=declined")
