"""Clinic coordinators' pages: the pilot sites proposed to my clinic (accept, or decline with a
reason), the sites running with their deadlines, and a site's report form with the plan's
metrics (name, unit, target) and what was measured. Every action calls the same service
function as the JSON API; another clinic's site is not found."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from grantflow.i18n import gettext as _
from grantflow.i18n import number, when
from grantflow.pages import display, forms
from grantflow.pages.display import N_
from grantflow.pages.web import PageRoute, Res, Viewer, redirect, render, signed_in
from grantflow.services import site
from grantflow.services.errors import Conflict, Forbidden
from schemas.common import Role
from schemas.pilot import MetricSpec, SiteReportCreate, SiteState, SiteStatus

router = APIRouter(route_class=PageRoute, include_in_schema=False)


async def coordinator(viewer: Annotated[Viewer, Depends(signed_in)]) -> Viewer:
    if viewer.role != Role.coordinator:
        raise Forbidden(_("This page is for clinic coordinators."))
    return viewer


CoordinatorViewer = Annotated[Viewer, Depends(coordinator)]

STATUS = {
    SiteStatus.proposed: N_("Proposed to your clinic"),
    SiteStatus.accepted: N_("Accepted: starts on the planned date"),
    SiteStatus.declined: N_("Declined"),
    SiteStatus.running: N_("Running"),
    SiteStatus.completed: N_("Reported"),
    SiteStatus.cancelled: N_("Cancelled"),
}
FINISHED = (SiteStatus.completed, SiteStatus.declined, SiteStatus.cancelled)
DONE = {
    "accepted": N_("You accepted the pilot. It starts at your clinic on the planned date."),
    "declined": N_("You declined the pilot. The programme's staff will propose another clinic."),
    "reported": N_("The site's report is sent. Thank you."),
}
# The site's refusals, written for API users, said again for a coordinator.
REFUSALS = [
    ("only the coordinator", N_("Only this clinic's coordinators may do this.")),
    ("a decline needs a reason", N_("Say why the clinic declines.")),
    ("missing metrics", N_("Every planned metric needs its measured value.")),
    ("metrics not in the plan", N_("Report only the plan's metrics.")),
]


def status_name(status: SiteStatus | str) -> str:
    return _(STATUS[SiteStatus(status)])


def state_name(found: SiteState) -> str:
    """The site's status, with a running site whose period is over said as waiting for its
    report (the workflow calls it running until the report is in)."""
    if found.status == SiteStatus.running and found.ends_at <= datetime.now(UTC):
        return _("Period over: the report is due")
    return status_name(found.status)


def metric_name(m: MetricSpec) -> str:
    """ "minutes_saved" as "Minutes saved": a plan's metric names are slugs."""
    return m.name.replace("_", " ").capitalize()


def metric_label(m: MetricSpec) -> str:
    """The field's label: the metric and its unit, the unit once when it names the metric."""
    name = metric_name(m)
    return name if m.unit.lower() == name.lower() else f"{name}, {m.unit}"


def target_text(m: MetricSpec) -> str:
    value = f"{number(m.target)} {m.unit}"
    return (
        _("at least %(value)s", value=value)
        if m.higher_is_better
        else _("at most %(value)s", value=value)
    )


def refusal(message: str, found: SiteState, viewer: Viewer) -> str:
    """A site's refusal in the coordinator's language."""
    if message.startswith("the pilot runs here until"):
        return _(
            "The pilot runs here until %(time)s: report after that.",
            time=when(found.ends_at, viewer.time_zone),
        )
    if message.startswith("the site is "):
        return _("The site is no longer waiting for this: it is now “%(status)s”.",
                 status=status_name(found.status))  # fmt: skip
    for start, said in REFUSALS:
        if message.startswith(start):
            return _(said)
    return display.refusal(message)


def _context(**values: Any) -> dict[str, Any]:
    return {
        "status_name": status_name,
        "state_name": state_name,
        "metric_name": metric_name,
        "metric_label": metric_label,
        "target_text": target_text,
        **values,
    }


def _done(request: Request) -> str | None:
    found = DONE.get(request.query_params.get("done", ""))
    return _(found) if found else None


@router.get("/sites")
async def sites(request: Request, viewer: CoordinatorViewer, res: Res) -> Response:
    """My clinic's sites: those to answer, those running or about to start (with their
    deadlines, the nearest first), and those finished."""
    found = await site.clinic_sites(res, viewer.caller)
    waiting = [s for s in found if s.status == SiteStatus.proposed]
    active = sorted(
        (s for s in found if s.status in (SiteStatus.accepted, SiteStatus.running)),
        key=lambda s: s.report_by,
    )
    ended = [s for s in found if s.status in FINISHED]
    context = _context(waiting=waiting, active=active, ended=ended, done=_done(request))
    return render(request, "site_list.html", context)


async def _site_page(
    request: Request,
    res: Res,
    viewer: Viewer,
    site_id: str,
    *,
    errors: forms.Errors | None = None,
    values: dict[str, str] | None = None,
    focus: str | None = None,
) -> Response:
    found = await site.own(res, viewer.caller, site_id)
    errors = errors or {}
    labels = {f"m_{m.name}": metric_name(m) for m in found.metrics}
    context = _context(
        site=found,
        results={r.name: r for r in found.results},
        labels={**labels, "comments": _("Comments")},
        field_errors={k: v for k, v in errors.items() if k != "form"},
        report_open=datetime.now(UTC) >= found.ends_at,
        errors=errors,
        values=values or {},
        focus=focus or next((k for k in errors if k != "form"), None),
        done=_done(request),
    )
    return render(request, "site_page.html", context)


@router.get("/sites/{site_id}")
async def site_page(
    request: Request, viewer: CoordinatorViewer, res: Res, site_id: str
) -> Response:
    """A site: the project, its period and deadline, the plan's metrics and targets, and what
    to do now (accept or decline; report once the period is over)."""
    return await _site_page(request, res, viewer, site_id)


def _text(form: FormData, name: str, limit: int) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


@router.post("/sites/{site_id}/accept")
async def accept(request: Request, viewer: CoordinatorViewer, res: Res, site_id: str) -> Response:
    """The clinic takes the pilot on."""
    try:
        await site.accept(res, viewer.caller, site_id)
    except Conflict as exc:
        found = await site.own(res, viewer.caller, site_id)
        said = refusal(exc.message, found, viewer)
        return await _site_page(request, res, viewer, site_id, errors={"form": said})
    return redirect(f"/sites/{site_id}?done=accepted")


@router.post("/sites/{site_id}/decline")
async def decline(request: Request, viewer: CoordinatorViewer, res: Res, site_id: str) -> Response:
    """The clinic declines the pilot, saying why."""
    reason = _text(await request.form(), "reason", 5_000)
    values = {"reason": reason}
    error = None
    if not reason:
        error = _("Say why the clinic declines, in a sentence or two.")
    elif len(reason) > 2_000:
        error = _("At most %(n)s characters.", n=2_000)
    if error:
        return await _site_page(
            request, res, viewer, site_id, errors={"reason": error}, values=values
        )
    try:
        await site.decline(res, viewer.caller, site_id, reason)
    except Conflict as exc:
        found = await site.own(res, viewer.caller, site_id)
        said = refusal(exc.message, found, viewer)
        return await _site_page(request, res, viewer, site_id, errors={"form": said}, values=values)
    return redirect("/sites?done=declined")


_DECIMAL = re.compile(r"^-?\d+(?:[.,]\d+)?$")


def report_values(form: FormData, found: SiteState) -> dict[str, str]:
    """The report form as typed: a value per planned metric, and the comments."""
    values = {f"m_{m.name}": _text(form, f"m_{m.name}", 40) for m in found.metrics}
    values["comments"] = _text(form, "comments", 25_000)
    return values


def to_report(values: dict[str, str], found: SiteState) -> SiteReportCreate | forms.Errors:
    """The form as the service's model, or each error by its field."""
    errors: forms.Errors = {}
    measured: dict[str, float] = {}
    for m in found.metrics:
        raw = re.sub(r"[\s\u00a0\u202f]", "", values[f"m_{m.name}"])
        if not raw:
            errors[f"m_{m.name}"] = _("Fill this in.")
        elif not _DECIMAL.match(raw):
            errors[f"m_{m.name}"] = _("Enter a number, such as 12 or 7.5.")
        else:
            measured[m.name] = float(raw.replace(",", "."))
    if len(values["comments"]) > 20_000:
        errors["comments"] = _("At most %(n)s characters.", n=20_000)
    if errors:
        return errors
    return SiteReportCreate(measured=measured, comments=values["comments"])


@router.post("/sites/{site_id}/report")
async def report(request: Request, viewer: CoordinatorViewer, res: Res, site_id: str) -> Response:
    """The site's report: the measured value of every planned metric, with comments."""
    found = await site.own(res, viewer.caller, site_id)
    values = report_values(await request.form(), found)
    body = to_report(values, found)
    if isinstance(body, dict):
        return await _site_page(request, res, viewer, site_id, errors=body, values=values)
    try:
        await site.report(res, viewer.caller, site_id, body)
    except Conflict as exc:
        said = refusal(exc.message, found, viewer)
        return await _site_page(request, res, viewer, site_id, errors={"form": said}, values=values)
    return redirect(f"/sites/{site_id}?done=reported")
