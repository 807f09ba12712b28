"""Reviewers' pages: the inbox by deadline, a task with its application, schedule and the
conflict-of-interest declaration before accepting or declining, the rubric form saved as it is
typed, the check before submitting, and past reviews. Every action calls the same service
function as the JSON API; the other reviews show only once the reviewer's own is in."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from grantflow.i18n import gettext as _
from grantflow.pages import display, forms
from grantflow.pages.application import labels as application_labels
from grantflow.pages.display import N_
from grantflow.pages.web import PageRoute, Res, Viewer, redirect, render, signed_in
from grantflow.services import pilot, reporting, review
from grantflow.services.errors import Conflict, Forbidden, Invalid
from schemas.common import Role
from schemas.programme import Criterion
from schemas.review import DeclineCreate, Recommendation, ReviewCreate, TaskDetail, TaskStatus

router = APIRouter(route_class=PageRoute, include_in_schema=False)


async def reviewer(viewer: Annotated[Viewer, Depends(signed_in)]) -> Viewer:
    if viewer.role != Role.reviewer:
        raise Forbidden(_("This page is for reviewers."))
    return viewer


ReviewerViewer = Annotated[Viewer, Depends(reviewer)]

PAST = 50  # ended tasks read for "my past reviews": each costs a card with a date
RECENT = timedelta(days=14)  # how long an ended task stays in the inbox, said as ended
STATUS = {
    TaskStatus.offered: N_("Offered to you"),
    TaskStatus.accepted: N_("Accepted: your review is due"),
    TaskStatus.submitted: N_("Reviewed"),
    TaskStatus.declined: N_("Declined"),
    TaskStatus.expired: N_("Expired: not answered in time"),
    TaskStatus.cancelled: N_("Taken away from you"),
}
EXPECTED = {
    TaskStatus.offered: N_("Accept or decline"),
    TaskStatus.accepted: N_("Write and submit your review"),
}
RECOMMENDATIONS = {
    Recommendation.fund: N_("Fund"),
    Recommendation.fund_with_changes: N_("Fund with changes"),
    Recommendation.do_not_fund: N_("Do not fund"),
}
# The default rubric's criteria in the reader's language; a programme's own keep their words.
CRITERIA = {
    "clinical_value": (N_("Clinical value"), N_("Benefit to patients and doctors.")),
    "novelty": (N_("Novelty"), N_("What is new against current practice.")),
    "feasibility": (N_("Feasibility"), N_("Team, plan and budget can deliver it.")),
}
DONE = {
    "declined": N_("You declined the task. The application goes to another expert."),
    "accepted": N_("You accepted the task. Your review is due by the date below."),
    "submitted": N_("Your review is submitted. Thank you."),
    "report_accepted": N_("The report is accepted. The applicant is told."),
    "report_returned": N_("The report is returned to the applicant with your comment."),
    "evaluated": N_("Your evaluation is sent. The programme's staff decide on the pilot."),
}


def status_name(status: TaskStatus | str) -> str:
    return _(STATUS[TaskStatus(status)])


def expected(status: TaskStatus | str) -> str:
    found = EXPECTED.get(TaskStatus(status))
    return _(found) if found else ""


def recommendation_name(value: Recommendation | str) -> str:
    return _(RECOMMENDATIONS[Recommendation(value)])


def criterion_label(c: Criterion) -> str:
    found = CRITERIA.get(c.name)
    return _(found[0]) if found else c.name.replace("_", " ").capitalize()


def criterion_hint(c: Criterion) -> str:
    found = CRITERIA.get(c.name)
    # A programme that kept the default's description reads it in the reader's language.
    return _(found[1]) if found and c.description == found[1] else c.description


def _done(request: Request) -> str | None:
    found = DONE.get(request.query_params.get("done", ""))
    return _(found) if found else None


def _context(**values: Any) -> dict[str, Any]:
    return {
        "status_name": status_name,
        "expected": expected,
        "recommendation_name": recommendation_name,
        "criterion_label": criterion_label,
        **values,
    }


# --- the inbox -------------------------------------------------------------------------------


@router.get("/reviews")
async def inbox(request: Request, viewer: ReviewerViewer, res: Res) -> Response:
    """Open tasks, soonest deadline first (warning under 3 days, overdue after); tasks that
    ended lately (expired, taken away, declined) said as such; reports and pilots to assess."""
    found = await review.inbox(res, viewer.caller, limit=200)
    since = datetime.now(UTC) - RECENT
    ended = [
        t
        for t in await review.closed(res, viewer.caller, limit=50)
        if t.closed_at > since and t.item.status != TaskStatus.submitted
    ]
    reports = await reporting.to_review(res, viewer.caller)
    pilots = await _pilots(res, viewer)
    context = _context(
        tasks=found.items, ended=ended, reports=reports, pilots=pilots, done=_done(request)
    )
    return render(request, "review_inbox.html", context)


async def _pilots(res: Res, viewer: Viewer) -> list[tuple[str, str]]:
    """The pilots waiting for the viewer's evaluation, each with its project's title."""
    found = []
    for application_id in await pilot.evaluations(res, viewer.caller):
        state = await pilot.get(res, viewer.caller, uuid.UUID(application_id))
        found.append((application_id, state.sites[0].title if state.sites else application_id))
    return found


@router.get("/reviews/past")
async def past(request: Request, viewer: ReviewerViewer, res: Res) -> Response:
    """The reviews I submitted, the latest first (the last PAST of my ended tasks)."""
    done = [
        t
        for t in await review.closed(res, viewer.caller, limit=PAST)
        if t.item.status == TaskStatus.submitted
    ]
    return render(request, "review_past.html", _context(tasks=done, limit=PAST))


# --- a task ----------------------------------------------------------------------------------


async def _task_page(
    request: Request,
    res: Res,
    viewer: Viewer,
    task_id: str,
    *,
    errors: forms.Errors | None = None,
    values: dict[str, Any] | None = None,
    refusal: str | None = None,
    focus: str | None = None,
) -> Response:
    detail = await review.get(res, viewer.caller, task_id)
    when = await review.schedule(res, viewer.caller, task_id)
    context = _context(
        detail=detail,
        task=detail.task,
        app=detail.application,
        schedule=when,
        review_days=when.review_period.days,
        labels=application_labels(),
        rubric=detail.rubric,
        errors=errors or {},
        values=values or {},
        refusal=refusal,
        focus=focus,
        done=_done(request),
    )
    return render(request, "review_task.html", context)


@router.get("/reviews/{task_id}")
async def task(request: Request, viewer: ReviewerViewer, res: Res, task_id: str) -> Response:
    """The application to review, the schedule, and what to do: accept or decline (after the
    declaration), write the review, or read it with the others' once it is in."""
    return await _task_page(request, res, viewer, task_id)


def _text(form: FormData, name: str, limit: int = 20_000) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


@router.post("/reviews/{task_id}/accept")
async def accept(request: Request, viewer: ReviewerViewer, res: Res, task_id: str) -> Response:
    """Accepting asks first that the reviewer declares no conflict of interest."""
    form = await request.form()
    if form.get("no_conflict") != "on":
        errors = {"no_conflict": _("Tick this to accept, or decline the task below.")}
        return await _task_page(request, res, viewer, task_id, errors=errors, focus="no_conflict")
    try:
        await review.accept(res, viewer.caller, task_id)
    except Conflict as exc:
        return await _task_page(request, res, viewer, task_id, refusal=display.refusal(exc.message))
    return redirect(f"/reviews/{task_id}/review?done=accepted")


@router.post("/reviews/{task_id}/decline")
async def decline(request: Request, viewer: ReviewerViewer, res: Res, task_id: str) -> Response:
    """Declining says why; a conflict of interest is declared with it."""
    form = await request.form()
    values = {"reason": _text(form, "reason"), "conflict": form.get("conflict") == "on"}
    try:
        body = DeclineCreate(reason=values["reason"], conflict_of_interest=values["conflict"])
    except ValueError:  # pydantic's ValidationError: no reason, or over 2,000 characters
        errors = {"reason": _("Say why, in a sentence or two (at most 2,000 characters).")}
        return await _task_page(
            request, res, viewer, task_id, errors=errors, values=values, focus="reason"
        )
    try:
        await review.decline(res, viewer.caller, task_id, body)
    except Conflict as exc:
        return await _task_page(
            request, res, viewer, task_id, values=values, refusal=display.refusal(exc.message)
        )
    return redirect("/reviews?done=declined")


# --- the rubric form -------------------------------------------------------------------------


def rubric_values(form: FormData, rubric: list[Criterion]) -> dict[str, Any]:
    """The rubric form as typed: a score and a comment per criterion, the recommendation and
    the comments."""
    values: dict[str, Any] = {}
    for c in rubric:
        values[f"score_{c.name}"] = _text(form, f"score_{c.name}", 20)
        values[f"note_{c.name}"] = _text(form, f"note_{c.name}", 5_000)
    values["recommendation"] = _text(form, "recommendation", 40)
    values["comments"] = _text(form, "comments", 20_000)
    return values


def to_review(values: dict[str, Any], detail: TaskDetail) -> ReviewCreate:
    """The form's values as the service's model, or Invalid with each error by its field. The
    comments per criterion go into the review's comments, each under its criterion's name."""
    low, high = detail.score_range
    errors: forms.Errors = {}
    scores: dict[str, int] = {}
    for c in detail.rubric:
        raw = forms.number(values.get(f"score_{c.name}") or "")
        if raw is None:
            errors[f"score_{c.name}"] = _("Fill this in.")
        elif not isinstance(raw, int) or not low <= raw <= high:
            errors[f"score_{c.name}"] = _(
                "A whole number from %(low)s to %(high)s.", low=low, high=high
            )
        else:
            scores[c.name] = raw
    if values.get("recommendation") not in {r.value for r in Recommendation}:
        errors["recommendation"] = _("Choose one of the options.")
    if not values.get("comments"):
        errors["comments"] = _("Fill this in.")
    if errors:
        raise Invalid("invalid input", [{"loc": [k], "msg": v} for k, v in errors.items()])
    notes = [
        f"{criterion_label(c)}: {values[f'note_{c.name}']}"
        for c in detail.rubric
        if values.get(f"note_{c.name}")
    ]
    comments = "\n\n".join([values["comments"], *notes])
    try:
        return ReviewCreate(
            scores=scores,
            recommendation=Recommendation(values["recommendation"]),
            comments=comments,
        )
    except ValueError:
        raise Invalid(
            "invalid input", [{"loc": ["comments"], "msg": _("At most 20000 characters.")}]
        ) from None


def _errors_of(exc: Invalid) -> forms.Errors:
    if exc.errors:
        return {".".join(map(str, e["loc"])): str(e["msg"]) for e in exc.errors}
    return {"form": exc.message}


def _rubric_labels(detail: TaskDetail) -> dict[str, str]:
    found = {f"score_{c.name}": criterion_label(c) for c in detail.rubric}
    found["recommendation"] = _("Your recommendation")
    found["comments"] = _("Comments for the council")
    return found


async def _rubric_page(
    request: Request,
    res: Res,
    viewer: Viewer,
    detail: TaskDetail,
    values: dict[str, Any],
    *,
    errors: forms.Errors | None = None,
    saved_at: datetime | None = None,
    block: str | None = None,
) -> Response:
    when = await review.schedule(res, viewer.caller, detail.task.task_id)
    errors = errors or {}
    order = [*_rubric_labels(detail)]
    focus = next((k for k in order if k in errors), None)
    context = _context(
        detail=detail,
        task=detail.task,
        schedule=when,
        rubric=detail.rubric,
        low=detail.score_range[0],
        high=detail.score_range[1],
        values=values,
        errors=errors,
        labels=_rubric_labels(detail),
        focus=focus,
        saved_at=saved_at,
        recommendations=[("", _("Choose"))]
        + [(r.value, recommendation_name(r)) for r in Recommendation],
        done=_done(request),
        criterion_hint=criterion_hint,
    )
    return render(request, "review_form.html", context, block=block)


@router.get("/reviews/{task_id}/review")
async def rubric(request: Request, viewer: ReviewerViewer, res: Res, task_id: str) -> Response:
    """The rubric form with the draft as last saved."""
    detail = await review.get(res, viewer.caller, task_id)
    if detail.task.status != TaskStatus.accepted:
        return redirect(f"/reviews/{task_id}")
    saved = await review.draft(res, viewer.caller, task_id)
    return await _rubric_page(
        request, res, viewer, detail, saved.content, saved_at=saved.updated_at
    )


@router.post("/reviews/{task_id}/review")
async def save(request: Request, viewer: ReviewerViewer, res: Res, task_id: str) -> Response:
    """Every change is kept: as typed (htmx, a second after the last key), on "Save draft",
    and before the check."""
    detail = await review.get(res, viewer.caller, task_id)
    form = await request.form()
    action = str(form.get("action") or "save")
    values = rubric_values(form, detail.rubric)
    saved = await review.save_draft(res, viewer.caller, task_id, values)
    if action == "autosave":
        return await _rubric_page(
            request, res, viewer, detail, values, saved_at=saved.updated_at, block="saved"
        )
    if action == "check":
        return redirect(f"/reviews/{task_id}/confirm")
    return redirect(f"/reviews/{task_id}/review")


@router.get("/reviews/{task_id}/confirm")
async def confirm(request: Request, viewer: ReviewerViewer, res: Res, task_id: str) -> Response:
    """The check before submitting: the form with every error beside its field, or the review
    to read once more before it goes (it cannot be changed afterwards)."""
    detail = await review.get(res, viewer.caller, task_id)
    if detail.task.status != TaskStatus.accepted:
        return redirect(f"/reviews/{task_id}")
    saved = await review.draft(res, viewer.caller, task_id)
    try:
        body = to_review(saved.content, detail)
    except Invalid as exc:
        return await _rubric_page(
            request, res, viewer, detail, saved.content, errors=_errors_of(exc),
            saved_at=saved.updated_at,
        )  # fmt: skip
    context = _context(detail=detail, task=detail.task, body=body, values=saved.content)
    return render(request, "review_confirm.html", context)


@router.post("/reviews/{task_id}/submit")
async def submit(request: Request, viewer: ReviewerViewer, res: Res, task_id: str) -> Response:
    """Submit the review as last saved."""
    detail = await review.get(res, viewer.caller, task_id)
    if detail.my_review is not None:
        return redirect(f"/reviews/{task_id}?done=submitted")
    saved = await review.draft(res, viewer.caller, task_id)
    try:
        body = to_review(saved.content, detail)
        await review.submit(res, viewer.caller, task_id, body)
    except Invalid as exc:
        return await _rubric_page(
            request, res, viewer, detail, saved.content, errors=_errors_of(exc),
            saved_at=saved.updated_at,
        )  # fmt: skip
    except Conflict as exc:
        errors = {"form": display.refusal(exc.message)}
        return await _rubric_page(request, res, viewer, detail, saved.content, errors=errors)
    return redirect(f"/reviews/{task_id}?done=submitted")
