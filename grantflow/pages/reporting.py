"""Reporting's pages. The applicant's reports (progress, financial, final): written, sent,
changed and sent again when returned, with the same service function as the JSON API's
`POST /v1/applications/{id}/reports/{seq}`. The expert's report review: a project's submitted
report, read and then accepted or returned with a comment (accepting the final one says how
the project ends), as `POST /v1/applications/{id}/reports/{seq}/decision`; only the expert an
admin assigned to the project's reports gets that page (anyone else: not found)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from grantflow.i18n import gettext as _
from grantflow.pages import display, forms
from grantflow.pages.display import N_
from grantflow.pages.review import ReviewerViewer
from grantflow.pages.web import ApplicantViewer, PageRoute, Res, Viewer, redirect, render
from grantflow.services import agreement, application, reporting
from grantflow.services.errors import Conflict, NotFound
from schemas.agreement import (
    ProjectOutcome,
    Report,
    ReportCreate,
    ReportDecision,
    ReportKind,
    ReportStatus,
    ReportToReview,
)

router = APIRouter(route_class=PageRoute, include_in_schema=False)

KINDS = {
    ReportKind.progress: N_("Progress report"),
    ReportKind.financial: N_("Financial report"),
    ReportKind.final: N_("Final report"),
}
OUTCOMES = {
    ProjectOutcome.implemented: N_("Implemented in the clinics"),
    ProjectOutcome.not_implemented: N_("Not implemented"),
}
ORDER = ("decision", "outcome", "comment")  # the form's fields, top to bottom
# The refusal that is about one field is shown beside it.
OUTCOME_NEEDED = "accepting the final report needs the project's outcome"


def kind_name(kind: ReportKind | str) -> str:
    return _(KINDS[ReportKind(kind)])


def _labels() -> dict[str, str]:
    return {
        "decision": _("Your decision"),
        "comment": _("Comment for the applicant"),
        "outcome": _("How the project ends"),
    }


async def _waiting(res: Res, viewer: Viewer, application_id: str, seq: int) -> ReportToReview:
    """The report if it waits for this expert's decision; else not found (another expert's,
    or decided already)."""
    wanted = _uuid(application_id)
    for report in await reporting.to_review(res, viewer.caller, limit=200):
        if uuid.UUID(report.application_id) == wanted and report.seq == seq:
            return report
    raise NotFound(reporting.NOT_YOURS)


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _page(
    request: Request,
    report: ReportToReview,
    values: dict[str, str],
    errors: forms.Errors | None = None,
) -> Response:
    errors = errors or {}
    context = {
        "report": report,
        "kind_name": kind_name,
        "outcomes": [(o.value, _(said)) for o, said in OUTCOMES.items()],
        "values": values,
        "errors": errors,
        "labels": _labels(),
        "focus": next((k for k in ORDER if k in errors), None),
    }
    return render(request, "report_review.html", context)


@router.get("/report-reviews/{application_id}/{seq}")
async def report_review(
    request: Request, viewer: ReviewerViewer, res: Res, application_id: str, seq: int
) -> Response:
    """A submitted report to accept or return, with the form for the decision."""
    report = await _waiting(res, viewer, application_id, seq)
    return _page(request, report, {})


def decision_values(form: FormData) -> dict[str, str]:
    """The decision form as typed."""
    values = {}
    for name, limit in (("decision", 10), ("comment", 10_000), ("outcome", 40)):
        value = form.get(name)
        values[name] = value.strip()[:limit] if isinstance(value, str) else ""
    return values


def to_decision(values: dict[str, str], final: bool) -> tuple[ReportDecision | None, forms.Errors]:
    """The form as the service's model, or the errors by field."""
    errors: forms.Errors = {}
    if values["decision"] not in ("accept", "return"):
        errors["decision"] = _("Choose one of the options.")
    accepting = values["decision"] == "accept"
    if final and accepting and not values["outcome"]:
        errors["outcome"] = _("Choose how the project ends to accept the final report.")
    try:
        decision = ReportDecision.model_validate(
            {
                "accept": accepting,
                "comment": values["comment"],
                "outcome": values["outcome"] if final and accepting and values["outcome"] else None,
            }
        )
    except ValidationError as exc:
        errors |= forms.field_errors(exc.errors(include_url=False, include_input=False))
    if errors:  # in the form's order, as the summary lists them
        rank = {k: n for n, k in enumerate(ORDER)}
        return None, dict(sorted(errors.items(), key=lambda e: rank.get(e[0], len(ORDER))))
    return decision, {}


@router.post("/report-reviews/{application_id}/{seq}")
async def decide(
    request: Request, viewer: ReviewerViewer, res: Res, application_id: str, seq: int
) -> Response:
    """Accept or return the report: the same checks as the API's, each error beside its
    field, a refusal with its reason; what was typed stays in the form."""
    report = await _waiting(res, viewer, application_id, seq)
    values = decision_values(await request.form())
    decision, errors = to_decision(values, report.kind == ReportKind.final)
    if decision is None:
        return _page(request, report, values, errors)
    try:
        await reporting.decide(res, viewer.caller, uuid.UUID(application_id), seq, decision)
    except Conflict as exc:
        field = "outcome" if exc.message == OUTCOME_NEEDED else "form"
        return _page(request, report, values, {field: display.refusal(exc.message)})
    done = "report_accepted" if decision.accept else "report_returned"
    return redirect(f"/reviews?done={done}")


# --- the applicant's reports ---------------------------------------------------------------

OPEN = (ReportStatus.due, ReportStatus.returned)
REPORT_STATUS = {
    ReportStatus.due: N_("To send"),
    ReportStatus.submitted: N_("Sent: waiting for the expert's decision"),
    ReportStatus.returned: N_("Returned for changes"),
    ReportStatus.accepted: N_("Accepted"),
}


def report_status(report: Report) -> str:
    if report.status == ReportStatus.due and report.overdue:
        return _("Late: send it now")
    return _(REPORT_STATUS[report.status])


async def _owed(res: Res, viewer: Viewer, application_id: str, seq: int) -> tuple[Any, Report]:
    """The applicant's own application and its report `seq`; anyone else's is not found."""
    wanted = _uuid(application_id)
    if wanted is None:
        raise NotFound(agreement.NOT_FOUND)
    state = await agreement.own(res, viewer.caller, wanted)
    found = next((r for r in state.reports if r.seq == seq), None)
    if found is None:
        raise NotFound(agreement.NOT_FOUND)
    app = await application.get(res, viewer.caller, application_id)
    return app, found


def _report_page(
    request: Request,
    app: Any,
    report: Report,
    body: str,
    errors: forms.Errors | None = None,
) -> Response:
    context = {
        "app": app,
        "report": report,
        "kind_name": kind_name,
        # A refused report keeps its form, with what was typed, beside the reason.
        "open": report.status in OPEN or bool(errors),
        "report_status_name": report_status(report),
        "body": body,
        "errors": errors or {},
        "labels": {"body": _("Your report")},
        "focus": "body" if errors and "body" in errors else None,
    }
    return render(request, "report_form.html", context)


@router.get("/applications/{application_id}/reports/{seq}")
async def report_form(
    request: Request, viewer: ApplicantViewer, res: Res, application_id: str, seq: int
) -> Response:
    """A report to write (or, returned, to change with the expert's comment beside it), or
    what was sent, to read."""
    app, report = await _owed(res, viewer, application_id, seq)
    return _report_page(request, app, report, report.body or "")


@router.post("/applications/{application_id}/reports/{seq}")
async def submit_report(
    request: Request, viewer: ApplicantViewer, res: Res, application_id: str, seq: int
) -> Response:
    """Send the report: the same checks as the API's; an error beside the box, a refusal with
    its reason, and what was typed stays in the form."""
    app, report = await _owed(res, viewer, application_id, seq)
    value = (await request.form()).get("body")
    body = value.strip() if isinstance(value, str) else ""
    try:
        created = ReportCreate(body=body)
    except ValidationError:
        error = _("Write the report (at most 50,000 characters).")
        return _report_page(request, app, report, body, {"body": error})
    try:
        await reporting.submit(res, viewer.caller, uuid.UUID(app.id), seq, created)
    except Conflict as exc:
        return _report_page(request, app, report, body, {"form": display.refusal(exc.message)})
    return redirect(f"/applications/{app.id}/agreement?done=report_sent#report-{seq}")
