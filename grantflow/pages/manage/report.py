"""Report reviews as admins do them: every project's submitted reports and the overdue ones;
one project's reports, each submitted one accepted or returned with a comment (accepting the
final report closes the project, after a confirmation), and the expert who decides its
reports assigned with a reason."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from grantflow.i18n import gettext as _
from grantflow.pages import forms
from grantflow.pages.display import N_
from grantflow.pages.manage.common import AdminViewer, errors_of, said, text
from grantflow.pages.web import PageRoute, Res, Viewer, redirect, render
from grantflow.services import agreement, application, reporting
from grantflow.services.application import parse_id
from grantflow.services.errors import Conflict, Invalid
from schemas.agreement import ProjectOutcome, ReportDecision, ReportKind, ReportReviewerCreate
from schemas.agreement import ReportStatus as Status

router = APIRouter(route_class=PageRoute, include_in_schema=False)

KINDS = {
    ReportKind.progress: N_("Progress report"),
    ReportKind.financial: N_("Financial report"),
    ReportKind.final: N_("Final report"),
}
STATUSES = {
    Status.due: N_("Due"),
    Status.submitted: N_("Submitted: to decide"),
    Status.accepted: N_("Accepted"),
    Status.returned: N_("Returned for changes"),
}
OUTCOMES = {
    ProjectOutcome.implemented: N_("Implemented in clinics"),
    ProjectOutcome.not_implemented: N_("Not implemented"),
}
DONE = {
    "accepted": N_("The report is accepted."),
    "returned": N_("The report is returned to the applicant with your comment."),
    "assigned": N_("The expert is assigned to the project's reports."),
}


def kind_name(value: ReportKind | str) -> str:
    return _(KINDS[ReportKind(value)])


def status_name(value: Status | str) -> str:
    return _(STATUSES[Status(value)])


def _labels() -> dict[str, str]:
    return {
        "verdict": _("Decision"),
        "comment": _("Comment for the applicant"),
        "outcome": _("How the project closes"),
        "reviewer_id": _("Expert's id"),
        "reason": _("Reason"),
    }


@router.get("/admin/reports")
async def reports(request: Request, viewer: AdminViewer, res: Res) -> Response:
    """Every project's submitted reports waiting for a decision, and the overdue ones."""
    context = {
        "submitted": await reporting.submitted(res, viewer.caller),
        "overdue": await reporting.overdue(res, viewer.caller),
        "kind_name": kind_name,
    }
    return render(request, "admin_reports.html", context)


async def _project_page(
    request: Request,
    viewer: Viewer,
    res: Res,
    application_id: str,
    *,
    values: dict[str, Any] | None = None,
    errors: forms.Errors | None = None,
    form_of: str | None = None,
) -> Response:
    aid = parse_id(application_id)
    errors = errors or {}
    first = next(iter(k for k in errors if k != "form"), None)
    done = DONE.get(request.query_params.get("done", ""))
    context = {
        "app": await application.get(res, viewer.caller, application_id),
        "agreement": await agreement.get(res, viewer.caller, aid),
        "values": values or {},
        "errors": errors,
        "form_of": form_of,  # which form the errors belong to: a report's seq, or "reviewer"
        "focus": f"r{form_of}.{first}" if first and (form_of or "").isdigit() else first,
        # A report's form: its errors keyed by the report, as its boxes are ("r2.comment").
        "report_errors": {(k if k == "form" else f"r{form_of}.{k}"): v for k, v in errors.items()},
        "report_labels": {f"r{form_of}.{k}": v for k, v in _labels().items()},
        "labels": _labels(),
        "kind_name": kind_name,
        "status_name": status_name,
        "outcomes": [("", _("Choose"))] + [(o.value, _(n)) for o, n in OUTCOMES.items()],
        "done": _(done) if done else None,
    }
    return render(request, "admin_report.html", context)


@router.get("/admin/applications/{application_id}/reports")
async def project(request: Request, viewer: AdminViewer, res: Res, application_id: str) -> Response:
    """The project's reports: due, submitted (to accept or return), accepted, returned; who
    decides them."""
    return await _project_page(request, viewer, res, application_id)


@router.post("/admin/applications/{application_id}/reports/{seq}")
async def decide(
    request: Request, viewer: AdminViewer, res: Res, application_id: str, seq: int
) -> Response:
    """Accept the report or return it, with a comment; the final report's acceptance asks to
    confirm first, since it closes the project."""
    form = await request.form()
    values = {k: text(form, k, 5_000).strip() for k in ("verdict", "comment", "outcome")}
    page: dict[str, Any] = {"values": values, "form_of": str(seq)}
    try:
        body = forms._validate(
            ReportDecision,
            {
                "accept": values["verdict"] == "accept",
                "comment": values["comment"],
                **({"outcome": values["outcome"]} if values["outcome"] else {}),
            },
        )
        if values["verdict"] not in ("accept", "return"):
            raise Invalid("invalid input", [{"loc": ["verdict"], "type": "enum"}])
        if body.outcome is not None and text(form, "confirmed", 10) != "yes":
            context = {"application_id": application_id, "seq": seq, "values": values,
                       "outcome": _(OUTCOMES[body.outcome])}  # fmt: skip
            return render(request, "admin_report_confirm.html", context)
        await reporting.decide(res, viewer.caller, parse_id(application_id), seq, body)
    except Invalid as exc:
        errors = errors_of(exc)
        return await _project_page(request, viewer, res, application_id, errors=errors, **page)
    except Conflict as exc:
        errors = {"form": said(exc.message)}
        return await _project_page(request, viewer, res, application_id, errors=errors, **page)
    done = "accepted" if body.accept else "returned"
    return redirect(f"/admin/applications/{application_id}/reports?done={done}")


@router.post("/admin/applications/{application_id}/report-reviewer")
async def assign(request: Request, viewer: AdminViewer, res: Res, application_id: str) -> Response:
    """Assign the expert who decides the project's reports (the one named, or the least
    loaded eligible one), with a reason."""
    form = await request.form()
    values = {k: text(form, k, 2_000).strip() for k in ("reviewer_id", "reason")}
    page: dict[str, Any] = {"values": values, "form_of": "reviewer"}
    try:
        payload = {k: v for k, v in values.items() if v}
        body = forms._validate(ReportReviewerCreate, payload)
        await reporting.assign_reviewer(res, viewer.caller, parse_id(application_id), body)
    except Invalid as exc:
        errors = errors_of(exc)
        return await _project_page(request, viewer, res, application_id, errors=errors, **page)
    except Conflict as exc:
        errors = {"form": said(exc.message)}
        return await _project_page(request, viewer, res, application_id, errors=errors, **page)
    return redirect(f"/admin/applications/{application_id}/reports?done=assigned")
