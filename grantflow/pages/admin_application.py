"""The admins' application page: its stage, what it waits for (who, until when, otherwise
what), its history in plain words (who did what, when and why), its review tasks, a link to the
Temporal Web UI, and every intervention as a form with a required reason and a step to confirm
it. Each intervention calls the same service function as the JSON API; its result is in the
history when the page comes back."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from grantflow import i18n
from grantflow.i18n import gettext as _
from grantflow.pages import display
from grantflow.pages.admin_dashboard import AdminViewer
from grantflow.pages.display import N_
from grantflow.pages.web import PageRoute, Res, Viewer, redirect, render
from grantflow.services import admin, application, dashboard, review
from grantflow.services.errors import Conflict, Invalid, NotFound
from schemas.admin import DeadlineKind, DeadlineMove, ReassignCreate
from schemas.application import ApplicationPublic
from schemas.common import Stage
from schemas.dashboard import ReviewerChoice
from schemas.review import ReviewerAdd, TaskStatus

router = APIRouter(route_class=PageRoute, include_in_schema=False)

MAX_REASON = 2_000
OPEN_TASKS = (TaskStatus.offered, TaskStatus.accepted)
WITH_AGREEMENT = (Stage.approved, Stage.agreement, Stage.piloting, Stage.reporting)
# What each audit event says, for an admin; an event without a line here is said by its name.
EVENTS = {
    "submitted": N_("Application submitted"),
    "screened": N_("Screened"),
    "rescreened": N_("Screened again"),
    "resubmitted": N_("Revision sent"),
    "revision_missed": N_("Revision not sent in time"),
    "revision_deadline_extended": N_("Revision deadline moved"),
    "review_offered": N_("Review offered to an expert"),
    "review_accepted": N_("Review task accepted"),
    "review_declined": N_("Review task declined"),
    "review_submitted": N_("Review submitted"),
    "review_cancelled": N_("Review task taken away"),
    "review_reassigned": N_("Review task reassigned"),
    "review_reviewer_added": N_("Reviewer added by an admin"),
    "review_extra_reviewer": N_("One more expert asked (scores diverged)"),
    "review_flagged": N_("Flagged for an admin"),
    "review_expired": N_("Review task expired"),
    "review_deadline_extended": N_("Review deadline moved"),
    "reviewed": N_("Expert review complete"),
    "on_agenda": N_("Put on a council's agenda"),
    "council_vote": N_("Council member voted"),
    "council_approved": N_("Approved by the council"),
    "council_rejected": N_("Rejected by the council"),
    "council_deferred": N_("Deferred by the council"),
    "agreement_offered": N_("Agreement offered"),
    "agreement_accepted": N_("Agreement accepted"),
    "agreement_declined": N_("Agreement declined"),
    "agreement_lapsed": N_("Agreement not accepted in time"),
    "agreement_deadline_extended": N_("Agreement deadline moved"),
    "report_deadline_extended": N_("Report deadline moved"),
    "tranche_released": N_("Tranche released"),
    "tranche_held": N_("Tranche held"),
    "pilot_planned": N_("Pilot planned"),
    "pilot_implement": N_("Pilot decided: implement"),
    "project_stopped": N_("Project stopped"),
    "withdrawn": N_("Withdrawn"),
    "cancelled": N_("Cancelled"),
}
ROLES = {
    "applicant": N_("applicant"),
    "reviewer": N_("reviewer"),
    "council": N_("council member"),
    "coordinator": N_("clinic coordinator"),
    "admin": N_("admin"),
    "system": N_("the system"),
}
ACTIONS = {
    "deadline": (N_("Move a deadline"), N_("move the deadline")),
    "reassign": (N_("Reassign a review task"), N_("reassign the task")),
    "reviewer": (N_("Add a reviewer"), N_("add the reviewer")),
    "rescreen": (N_("Screen again"), N_("screen it again")),
    "withdraw": (N_("Withdraw on the applicant's behalf"), N_("withdraw it")),
    "cancel": (N_("Cancel the application"), N_("cancel it")),
}
DONE = {
    "deadline": N_("Done: the deadline is moved. It is in the history below."),
    "reassign": N_("Done: the task is reassigned. It is in the history below."),
    "reviewer": N_("Done: the reviewer is asked. It is in the history below."),
    "rescreen": N_("Done: screened again. It is in the history below."),
    "withdraw": N_("Done: the application is withdrawn. It is in the history below."),
    "cancel": N_("Done: the application is cancelled. It is in the history below."),
}
TASK_STATUS = {
    TaskStatus.offered: N_("Offered"),
    TaskStatus.accepted: N_("Accepted"),
    TaskStatus.submitted: N_("Reviewed"),
    TaskStatus.declined: N_("Declined"),
    TaskStatus.expired: N_("Expired"),
    TaskStatus.cancelled: N_("Taken away"),
}


def event_text(kind: str) -> str:
    found = EVENTS.get(kind)
    return _(found) if found else kind.replace("_", " ").capitalize()


def role_name(role: str | None) -> str:
    found = ROLES.get(role or "")
    return _(found) if found else (role or "")


def action_name(action: str) -> str:
    return _(ACTIONS[action][0])


# --- the page ----------------------------------------------------------------------------------


@dataclass
class FormState:
    """An intervention's form as typed, with its errors or the workflow's refusal."""

    action: str | None = None
    values: dict[str, str] | None = None
    errors: dict[str, str] | None = None
    refusal: str | None = None


async def _page(
    request: Request, res: Res, viewer: Viewer, application_id: str, form: FormState | None = None
) -> Response:
    caller = viewer.caller

    async def app_and_reviewers() -> tuple[ApplicationPublic, list[ReviewerChoice]]:
        found = await application.get(res, caller, application_id)
        if found.stage != Stage.under_review:  # only its forms (reassign, add one) list them
            return found, []
        return found, await dashboard.reviewers(res, caller, found.content.specialty)

    # Independent reads at once: the history's Temporal round trips are the longest, and the
    # PostgreSQL ones go while they wait.
    # The workflow events in the engine's words are not drawn here (over a hundred lines, most
    # of the page's time): the events page shows them when asked.
    (app, reviewers), (history, lines), reviews = await asyncio.gather(
        app_and_reviewers(),
        dashboard.story(res, caller, application_id, technical=False),
        review.of_application(res, caller, application_id),
    )
    open_tasks = [t for t in reviews.tasks if t.status in OPEN_TASKS]
    form = form or FormState()
    done = DONE.get(request.query_params.get("done", ""))
    context = {
        "app": app,
        "waiting": history.waiting,
        "lines": lines,
        "reviews": reviews,
        "open_tasks": open_tasks,
        "reviewers": reviewers,
        "temporal_url": dashboard.workflows_url(res, app.id),
        "actions": _available(app.stage, open_tasks),
        "deadline_kinds": _deadline_kinds(app.stage, open_tasks, viewer),
        "form": form,
        "done": _(done) if done else None,
        "event_text": event_text,
        "role_name": role_name,
        "action_name": action_name,
        "task_status": lambda status: _(TASK_STATUS[TaskStatus(status)]),
        "action_button": lambda a: _(ACTIONS[a][1]),
    }
    return render(request, "admin_application.html", context)


def _available(stage: Stage, open_tasks: list[Any]) -> list[str]:
    """The interventions that can work at this stage (the workflow still has the last word)."""
    if stage.is_final:
        return []
    found = ["deadline"]
    if stage == Stage.under_review:
        found += ["reassign"] if open_tasks else []
        found += ["reviewer"]
    if stage == Stage.revision_requested:
        found += ["rescreen"]
    return [*found, "withdraw", "cancel"]


def _deadline_kinds(stage: Stage, open_tasks: list[Any], viewer: Viewer) -> list[tuple[str, str]]:
    kinds = [
        (f"review:{t.task_id}", _("Review by %(name)s, now %(when)s", name=t.reviewer_name or "?",
                                   when=_when(t.deadline, viewer)))
        for t in open_tasks
    ]  # fmt: skip
    if stage == Stage.revision_requested:
        kinds.append(("revision", _("The applicant's revision window")))
    if stage in WITH_AGREEMENT:
        kinds.append(("agreement", _("The window to accept the agreement")))
        kinds.append(("report", _("A report (give its number)")))
    return kinds


def _when(at: datetime | None, viewer: Viewer) -> str:
    return i18n.when(at, viewer.time_zone) if at else "—"


@router.get("/admin/applications/{application_id}")
async def page(request: Request, viewer: AdminViewer, res: Res, application_id: str) -> Response:
    """Stage, what it waits for, the history in plain words, the reviews, the interventions."""
    return await _page(request, res, viewer, application_id)


@router.get("/admin/applications/{application_id}/events")
async def events(request: Request, viewer: AdminViewer, res: Res, application_id: str) -> Response:
    """The workflow events of the application's history, in the engine's words: the technical
    view, asked for from the application page (its list alone, for htmx)."""
    app = await application.get(res, viewer.caller, application_id)
    _history, lines = await dashboard.story(res, viewer.caller, application_id)
    context = {
        "app": app,
        "technical": [line for line in lines if line.technical],
        "temporal_url": dashboard.workflows_url(res, app.id),
    }
    return render(request, "admin_events.html", context, block="events")


# --- the interventions -------------------------------------------------------------------------


def _values(form: FormData) -> dict[str, str]:
    names = ("reason", "kind", "until", "seq", "task_id", "reviewer_id")
    found = {name: form.get(name) for name in names}
    return {k: v.strip()[: MAX_REASON + 1] for k, v in found.items() if isinstance(v, str)}


def _check(action: str, values: dict[str, str], viewer: Viewer) -> dict[str, str]:
    """What a person must fix before confirming: said beside each field."""
    errors = {}
    reason = values.get("reason", "")
    if not reason or len(reason) > MAX_REASON:
        errors["reason"] = _("Say why, in a sentence or two (at most 2,000 characters).")
    if action == "deadline":
        if not values.get("kind"):
            errors["kind"] = _("Choose which deadline to move.")
        if _until(values.get("until", ""), viewer) is None:
            errors["until"] = _("Give the new date and time, such as 2026-12-20 18:00.")
        if values.get("kind") == "report" and not values.get("seq", "").isdigit():
            errors["seq"] = _("Give the report's number, such as 2.")
    if action == "reassign" and not values.get("task_id"):
        errors["task_id"] = _("Choose the task to take away.")
    if action == "reviewer" and not values.get("reviewer_id"):
        errors["reviewer_id"] = _("Choose the reviewer.")
    return errors


def _until(text: str, viewer: Viewer) -> datetime | None:
    """A date and time typed in the viewer's own time zone (the datetime-local box's form)."""
    try:
        moment = datetime.fromisoformat(text.replace(" ", "T"))
    except ValueError:
        return None
    return moment.replace(tzinfo=ZoneInfo(viewer.time_zone)) if moment.tzinfo is None else moment


async def _do(
    action: str, res: Res, viewer: Viewer, application_id: str, v: dict[str, str]
) -> None:
    """The service call behind each intervention."""
    caller, reason = viewer.caller, v["reason"]
    if action == "deadline":
        kind, _sep, task_id = v["kind"].partition(":")
        until = _until(v["until"], viewer)
        assert until is not None  # checked before the confirmation
        body = DeadlineMove(
            kind=DeadlineKind(kind), until=until, reason=reason, task_id=task_id or None,
            seq=int(v["seq"]) if kind == "report" else None,
        )  # fmt: skip
        await admin.move_deadline(res, caller, application_id, body)
    elif action == "reassign":
        body_r = ReassignCreate(reviewer_id=v.get("reviewer_id") or None, reason=reason)
        await review.reassign(res, caller, v["task_id"], body_r)
    elif action == "reviewer":
        await review.add_reviewer(
            res, caller, application_id, ReviewerAdd(reviewer_id=v["reviewer_id"], reason=reason)
        )
    elif action == "rescreen":
        await application.rescreen(res, caller, application_id, reason)
    elif action == "withdraw":
        await application.withdraw(res, caller, application_id, reason)
    else:
        await application.cancel(res, caller, application_id, reason)


async def _intervene(
    request: Request, res: Res, viewer: Viewer, application_id: str, action: str
) -> Response:
    """Check the form, then ask to confirm, then do it: back to the form (all typed kept) on
    an error, a refusal or "change it"."""
    form = await request.form()
    values = _values(form)
    errors = _check(action, values, viewer)
    if errors or form.get("step") == "edit":
        return await _page(request, res, viewer, application_id, FormState(action, values, errors))
    if form.get("step") != "confirmed":
        app = await application.get(res, viewer.caller, application_id)
        context = {
            "app": app, "action": action, "values": values, "title": action_name(action),
            "button": _(ACTIONS[action][1]),
            "summary": _summary(action, values, await _page_facts(res, viewer, application_id),
                                _when(_until(values.get("until", ""), viewer), viewer)),
        }  # fmt: skip
        return render(request, "admin_confirm.html", context)
    try:
        await _do(action, res, viewer, application_id, values)
    except (Conflict, Invalid) as exc:
        state = FormState(action, values, {}, display.refusal(exc.message))
        return await _page(request, res, viewer, application_id, state)
    except NotFound:
        state = FormState(
            action, values, {}, _("That task or reviewer is not on this application.")
        )
        return await _page(request, res, viewer, application_id, state)
    return redirect(f"/admin/applications/{application_id}?done={action}#history")


async def _page_facts(res: Res, viewer: Viewer, application_id: str) -> dict[str, str]:
    """Names for the ids a form sends: its tasks' reviewers, the reviewers to choose from."""
    app = await application.get(res, viewer.caller, application_id)
    reviews = await review.of_application(res, viewer.caller, application_id)
    names = {t.task_id: t.reviewer_name or t.task_id for t in reviews.tasks}
    names |= {f"review:{k}": v for k, v in names.items()}
    chosen = await dashboard.reviewers(res, viewer.caller, app.content.specialty)
    return names | {r.id: r.name for r in chosen}


def _summary(
    action: str, values: dict[str, str], names: dict[str, str], until: str
) -> list[tuple[str, str]]:
    """What is about to be done, line by line, for the confirmation."""
    rows: list[tuple[str, str]] = []
    if action == "deadline":
        kind = values["kind"]
        which = (
            _("Review by %(name)s", name=names.get(kind, "?")) if kind.startswith("review:")
            else dict(revision=_("The applicant's revision window"),
                      agreement=_("The window to accept the agreement"),
                      report=_("Report %(n)s", n=values.get("seq", ""))).get(kind, kind)
        )  # fmt: skip
        rows += [(_("Deadline"), which), (_("New deadline"), until)]
    if action == "reassign":
        rows.append((_("Task of"), names.get(values["task_id"], values["task_id"])))
        chosen = values.get("reviewer_id")
        rows.append(
            (_("To"), names.get(chosen, chosen) if chosen else _("the next eligible expert"))
        )
    if action == "reviewer":
        rows.append((_("Reviewer"), names.get(values["reviewer_id"], values["reviewer_id"])))
    rows.append((_("Reason"), values["reason"]))
    return rows


@router.post("/admin/applications/{application_id}/deadline")
async def move_deadline(
    request: Request, viewer: AdminViewer, res: Res, application_id: str
) -> Response:
    """Move a deadline later (a review task's, the revision window, the agreement's, a report's)."""
    return await _intervene(request, res, viewer, application_id, "deadline")


@router.post("/admin/applications/{application_id}/reassign")
async def reassign(
    request: Request, viewer: AdminViewer, res: Res, application_id: str
) -> Response:
    """Take an open review task away: to the reviewer chosen, or the next eligible expert."""
    return await _intervene(request, res, viewer, application_id, "reassign")


@router.post("/admin/applications/{application_id}/reviewer")
async def add_reviewer(
    request: Request, viewer: AdminViewer, res: Res, application_id: str
) -> Response:
    """Offer the application to one more reviewer (it clears a flag)."""
    return await _intervene(request, res, viewer, application_id, "reviewer")


@router.post("/admin/applications/{application_id}/rescreen")
async def rescreen(
    request: Request, viewer: AdminViewer, res: Res, application_id: str
) -> Response:
    """Screen an application awaiting revision again, by its programme's rules as they are."""
    return await _intervene(request, res, viewer, application_id, "rescreen")


@router.post("/admin/applications/{application_id}/withdraw")
async def withdraw(
    request: Request, viewer: AdminViewer, res: Res, application_id: str
) -> Response:
    """Withdraw the application on its applicant's behalf."""
    return await _intervene(request, res, viewer, application_id, "withdraw")


@router.post("/admin/applications/{application_id}/cancel")
async def cancel(request: Request, viewer: AdminViewer, res: Res, application_id: str) -> Response:
    """Cancel a stuck application: its review, agreement or pilot stops, its money returns."""
    return await _intervene(request, res, viewer, application_id, "cancel")
