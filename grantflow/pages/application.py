"""Applicants' pages: my applications, a draft written and saved as I type, the check before
submitting, an application with its status, findings and timeline, the revision, the
withdrawal. Every action calls the same service function as the JSON API."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from grantflow.i18n import gettext as _
from grantflow.pages import display, forms
from grantflow.pages.display import N_, finding_field, finding_text, next_step
from grantflow.pages.web import ApplicantViewer, PageRoute, Res, SignedIn, Viewer, redirect, render
from grantflow.services import agreement, application, draft, programme
from grantflow.services.draft import Draft
from grantflow.services.errors import Conflict, Invalid, NotFound
from schemas.agreement import AgreementState, AgreementStatus
from schemas.application import ApplicationPublic, WithdrawalCreate
from schemas.common import Role, Stage
from schemas.programme import ProgrammePublic

router = APIRouter(route_class=PageRoute, include_in_schema=False)

LABELS = {
    "title": N_("Title of the project"),
    "specialty": N_("Specialty"),
    "summary": N_("Summary"),
    "requested_rub": N_("Grant you ask for, roubles"),
    "total_investment_rub": N_("Total investment in the project, roubles"),
    "complex_project": N_("Complex project"),
    "duration_months": N_("Duration, months"),
    "budget_lines": N_("Budget lines"),
    "partner_institutions": N_("Partner institutions"),
    "expected_results": N_("Expected results"),
    "reason": N_("Reason for withdrawing"),
}
DONE = {
    "submitted": N_("Your application is submitted."),
    "revised": N_("Your changes are sent. The application is being checked again."),
    "withdrawn": N_("The application is withdrawn."),
}


def labels() -> dict[str, str]:
    return {k: _(v) for k, v in LABELS.items()}


# Where an application may have an agreement: from the council's approval on (a declined or
# lapsed one leaves the application withdrawn or expired, a stopped project cancelled).
AGREEMENT_STAGES = {
    Stage.approved,
    Stage.agreement,
    Stage.piloting,
    Stage.reporting,
    Stage.closed,
    Stage.withdrawn,
    Stage.expired,
    Stage.cancelled,
}

# Other roles' start pages, where "/" (and signing in) takes them.
START = {Role.council: "/council", Role.coordinator: "/sites", Role.admin: "/admin"}


# --- my applications ---------------------------------------------------------------------


@router.get("/")
async def home(request: Request, viewer: SignedIn, res: Res, cursor: str | None = None) -> Response:
    """An applicant's applications and drafts, what each needs and by when; other roles'
    start pages come with their pages."""
    if viewer.role == Role.reviewer:
        return redirect("/reviews")
    if viewer.role in START:
        return redirect(START[viewer.role])
    if viewer.role != Role.applicant:
        return render(request, "staff_home.html")
    # A page of 20, newest first, and a link to older ones (keyset): a busy applicant's
    # dashboard stays quick however many it has sent.
    found = await application.page(res, viewer.caller, cursor=cursor, limit=20)
    drafts = await draft.mine(res, viewer.caller)
    names = await _programme_names(res, viewer, {d.programme_id for d in drafts})
    # An approved application's agreement may be offered and waiting for the applicant: one
    # query for the page's approved ones (none when there are none).
    approved = [a.id for a in found.items if a.stage == Stage.approved]
    offered = await agreement.offered(res, viewer.caller, approved)
    steps = {a.id: next_step(a, offered.get(a.id)) for a in found.items}
    todo = sum(1 for s in steps.values() if s is not None and s.yours)
    context = {
        "applications": found.items,
        "steps": steps,
        "next_cursor": found.next_cursor,
        "drafts": drafts,
        "programme_names": names,
        "todo": todo,
    }
    return render(request, "home.html", context)


async def _programme_names(res: Res, viewer: Viewer, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    return {pid: (await programme.get(res, viewer.caller, pid)).name for pid in ids}


# --- drafts ------------------------------------------------------------------------------


@router.post("/drafts")
async def start_draft(request: Request, viewer: ApplicantViewer, res: Res) -> Response:
    """ "Start an application" on a call's page: a new draft, then its form."""
    form = await request.form()
    started = await draft.start(res, viewer.caller, str(form.get("programme_id") or ""))
    return redirect(f"/drafts/{started.id}")


def _lines_total(values: dict[str, Any]) -> int:
    total = 0
    for line in values.get("budget_lines") or []:
        amount = forms.number(line.get("amount_rub"))
        total += amount if isinstance(amount, int) else 0
    return total


def _form_context(
    p: ProgrammePublic,
    values: dict[str, Any],
    errors: forms.Errors,
    *,
    post_to: str,
    heading: str,
    back: tuple[str, str],
    focus: str | None = None,
    found: Draft | None = None,
    findings: list[Any] | None = None,
    deadline: Any = None,
) -> dict[str, Any]:
    asked = forms.number(values.get("requested_rub"))
    specialties = [("", _("Choose the specialty"))] + [(s, s) for s in p.specialties]
    return {
        "programme": p,
        "values": values,
        "errors": errors,
        "errors_by_line": forms.line_errors(errors),
        "labels": labels(),
        "focus": focus if focus is not None else forms.first_error(errors),
        "specialties": specialties,
        "lines_total": _lines_total(values),
        "asked": asked if isinstance(asked, int) else None,
        "post_to": post_to,
        "heading": heading,
        "back_href": back[0],
        "back_label": back[1],
        "draft": found,
        "saved_at": found.updated_at if found and found.content else None,
        "findings": findings or [],
        "deadline": deadline,
    }


def _draft_values(found: Draft) -> dict[str, Any]:
    values = dict(found.content)
    if not values.get("budget_lines"):
        values["budget_lines"] = [forms.empty_line()]
    return values


async def _draft_page(
    request: Request,
    res: Res,
    viewer: Viewer,
    found: Draft,
    values: dict[str, Any],
    errors: forms.Errors | None = None,
    *,
    focus: str | None = None,
    block: str | None = None,
) -> Response:
    p = await programme.get(res, viewer.caller, found.programme_id)
    context = _form_context(
        p,
        values,
        errors or {},
        post_to=f"/drafts/{found.id}",
        heading=_("Application to the call"),
        back=("/", _("My applications")),
        focus=focus,
        found=found,
    )
    return render(request, "application_form.html", context, block=block)


@router.get("/drafts/{draft_id}")
async def edit_draft(
    request: Request, viewer: ApplicantViewer, res: Res, draft_id: str
) -> Response:
    found = await draft.get(res, viewer.caller, draft_id)
    if found.application_id is not None:
        return redirect(f"/applications/{found.application_id}")
    return await _draft_page(request, res, viewer, found, _draft_values(found))


def _action(form: FormData) -> str:
    value = form.get("action")
    return value if isinstance(value, str) else "save"


@router.post("/drafts/{draft_id}")
async def save_draft(
    request: Request, viewer: ApplicantViewer, res: Res, draft_id: str
) -> Response:
    """Every change is kept: as typed (htmx, a second after the last key), on "Save draft",
    and before a line is added or removed or the application is reviewed."""
    form = await request.form()
    action = _action(form)
    values = forms.with_action(forms.application_values(form), action)
    found = await draft.get(res, viewer.caller, draft_id)
    if found.application_id is not None:
        return redirect(f"/applications/{found.application_id}")
    saved = await draft.save(res, viewer.caller, draft_id, values)
    if action == "autosave":
        return await _draft_page(request, res, viewer, saved, values, block="saved")
    if action == "add_line" or action.startswith("remove_line:"):
        focus = _line_focus(values, action)
        return await _draft_page(request, res, viewer, saved, values, focus=focus, block="lines")
    if action == "review":
        return redirect(f"/drafts/{draft_id}/review")
    return redirect(f"/drafts/{draft_id}")


def _line_focus(values: dict[str, Any], action: str) -> str:
    """After adding a line, its first box; after removing one, the button to add."""
    if action == "add_line":
        return f"budget_lines.{len(values['budget_lines']) - 1}.item"
    return "add_line"


@router.get("/drafts/{draft_id}/review")
async def review_draft(
    request: Request, viewer: ApplicantViewer, res: Res, draft_id: str
) -> Response:
    """The check before submitting: the form again with every error beside its field, or the
    whole application to read once more before it goes."""
    found = await draft.get(res, viewer.caller, draft_id)
    if found.application_id is not None:
        return redirect(f"/applications/{found.application_id}")
    try:
        body = forms.to_create(found.content, str(found.programme_id))
    except Invalid as exc:
        errors = forms.field_errors(exc.errors)
        return await _draft_page(request, res, viewer, found, _draft_values(found), errors)
    return await _confirm_page(request, res, viewer, found, body)


async def _confirm_page(
    request: Request,
    res: Res,
    viewer: Viewer,
    found: Draft,
    body: Any,
    refusal: str | None = None,
) -> Response:
    p = await programme.get(res, viewer.caller, found.programme_id)
    context = {
        "draft": found,
        "programme": p,
        "content": body,
        "labels": labels(),
        "lines_total": sum(line.amount_rub for line in body.budget_lines),
        "refusal": refusal,
    }
    return render(request, "confirm.html", context)


@router.post("/drafts/{draft_id}/submit")
async def submit_draft(
    request: Request, viewer: ApplicantViewer, res: Res, draft_id: str
) -> Response:
    """Submit: keyed by the draft, so a double click makes one application."""
    found = await draft.get(res, viewer.caller, draft_id)
    if found.application_id is not None:
        return redirect(f"/applications/{found.application_id}?done=submitted")
    try:
        body = forms.to_create(found.content, str(found.programme_id))
    except Invalid as exc:
        errors = forms.field_errors(exc.errors)
        return await _draft_page(request, res, viewer, found, _draft_values(found), errors)
    try:
        submitted = await draft.submit(res, viewer.caller, draft_id, body)
    except (Conflict, Invalid) as exc:
        refused = display.refusal(exc.message)
        return await _confirm_page(request, res, viewer, found, body, refusal=refused)
    return redirect(f"/applications/{submitted.id}?done=submitted")


@router.post("/drafts/{draft_id}/delete")
async def delete_draft(viewer: ApplicantViewer, res: Res, draft_id: str) -> Response:
    await draft.discard(res, viewer.caller, draft_id)
    return redirect("/")


# --- an application ----------------------------------------------------------------------


@router.get("/applications/{application_id}")
async def show(request: Request, viewer: SignedIn, res: Res, application_id: str) -> Response:
    """The application: its stage, the status bar, what happens next and by when, the
    findings, what was sent and the timeline."""
    app = await application.get(res, viewer.caller, application_id)
    p = await programme.get(res, viewer.caller, uuid.UUID(app.programme_id))
    timeline = await application.timeline(res, viewer.caller, application_id)
    done = DONE.get(request.query_params.get("done", ""))
    offered = await _agreement(res, viewer, app)
    answer_by = None
    if offered is not None and offered.status == AgreementStatus.offered:
        answer_by = offered.accept_by
    step = next_step(app, answer_by)
    context = {
        "app": app,
        "agreement": offered,
        "step": step,
        "programme": p,
        "timeline": timeline,
        "labels": labels(),
        "done": _(done) if done else None,
    }
    return render(request, "application.html", context)


async def _agreement(res: Res, viewer: Viewer, app: ApplicationPublic) -> AgreementState | None:
    """The agreement once the council's approval offered one; None before (and never for a
    stage that cannot have one)."""
    if app.stage not in AGREEMENT_STAGES:
        return None
    try:
        return await agreement.get(res, viewer.caller, uuid.UUID(app.id))
    except NotFound:
        return None


def _finding_errors(app: ApplicationPublic) -> forms.Errors:
    """Screening's findings beside the fields they are about."""
    errors: forms.Errors = {}
    for f in app.findings:
        field = finding_field(f.rule)
        if field:
            errors.setdefault(field, finding_text(f.rule) or f.message)
    return errors


async def _revision_page(
    request: Request,
    res: Res,
    viewer: Viewer,
    app: ApplicationPublic,
    values: dict[str, Any],
    errors: forms.Errors,
    *,
    focus: str | None = None,
    block: str | None = None,
    refusal: str | None = None,
    findings_only: bool = False,
) -> Response:
    p = await programme.get(res, viewer.caller, uuid.UUID(app.programme_id))
    context = _form_context(
        p,
        values,
        {**({"form": refusal} if refusal else {}), **errors},
        post_to=f"/applications/{app.id}/revision",
        heading=_("Change the application"),
        back=(f"/applications/{app.id}", app.content.title),
        focus=focus,
        findings=app.findings,
        deadline=app.deadline,
    )
    # The findings are listed above the form already, with the deadline: no second summary.
    context["findings_only"] = findings_only
    return render(request, "application_form.html", context, block=block)


@router.get("/applications/{application_id}/revision")
async def revision_form(
    request: Request, viewer: SignedIn, res: Res, application_id: str
) -> Response:
    """The revision: the application as sent, with the check's findings beside the fields."""
    app = await application.get(res, viewer.caller, application_id)
    if app.stage != Stage.revision_requested:
        return redirect(f"/applications/{app.id}")
    values = forms.content_values(app.content)
    errors = _finding_errors(app)
    return await _revision_page(
        request, res, viewer, app, values, errors, focus="", findings_only=True
    )


@router.post("/applications/{application_id}/revision")
async def revise(request: Request, viewer: SignedIn, res: Res, application_id: str) -> Response:
    app = await application.get(res, viewer.caller, application_id)
    form = await request.form()
    action = _action(form)
    values = forms.with_action(forms.application_values(form), action)
    if action == "add_line" or action.startswith("remove_line:"):
        focus = _line_focus(values, action)
        return await _revision_page(
            request, res, viewer, app, values, {}, focus=focus, block="lines"
        )
    if action != "send":  # Enter in a box: the form again, nothing sent
        return await _revision_page(request, res, viewer, app, values, {}, focus="")
    try:
        content = forms.to_content(values)
        await application.revise(res, viewer.caller, application_id, content)
    except Invalid as exc:
        errors = forms.field_errors(exc.errors) if exc.errors else {"form": exc.message}
        return await _revision_page(request, res, viewer, app, values, errors)
    except Conflict as exc:
        refused = display.refusal(exc.message)
        return await _revision_page(request, res, viewer, app, values, {}, refusal=refused)
    return redirect(f"/applications/{application_id}?done=revised")


@router.get("/applications/{application_id}/withdraw")
async def withdraw_form(
    request: Request, viewer: SignedIn, res: Res, application_id: str
) -> Response:
    """Withdrawing asks first, with the reason."""
    app = await application.get_open(res, viewer.caller, application_id)
    context = {"app": app, "labels": labels(), "errors": {}, "reason": "", "focus": None}
    return render(request, "withdraw.html", context)


@router.post("/applications/{application_id}/withdraw")
async def withdraw(request: Request, viewer: SignedIn, res: Res, application_id: str) -> Response:
    app = await application.get(res, viewer.caller, application_id)
    form = await request.form()
    reason = str(form.get("reason") or "").strip()
    context: dict[str, Any] = {"app": app, "labels": labels(), "reason": reason, "errors": {}}
    try:
        WithdrawalCreate(reason=reason)
        await application.withdraw(res, viewer.caller, application_id, reason)
    except ValueError:  # pydantic's ValidationError: no reason, or over 2,000 characters
        context["errors"] = {
            "reason": _("Say why, in a sentence or two (at most 2,000 characters).")
        }
        return render(request, "withdraw.html", {**context, "focus": "reason"})
    except Conflict as exc:
        refused = display.refusal(exc.message)
        return render(request, "withdraw.html", {**context, "refusal": refused, "focus": None})
    return redirect(f"/applications/{application_id}?done=withdrawn")
