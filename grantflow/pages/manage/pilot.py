"""Pilots as admins run them: the plan (clinics, each with its start, length in days and hours,
and the metrics with their targets), the evaluator named by hand when none was found, and the
decision on the evaluated pilot with a reason (stopping it asks to confirm first: its unpaid
tranches are cancelled)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from grantflow.i18n import gettext as _
from grantflow.pages import forms
from grantflow.pages.display import N_
from grantflow.pages.manage.common import (
    AdminViewer,
    duration_parts,
    errors_of,
    said,
    text,
    texts,
    to_duration,
)
from grantflow.pages.web import PageRoute, Res, Viewer, redirect, render
from grantflow.services import application, pilot, user
from grantflow.services.application import parse_id
from grantflow.services.errors import Conflict, Invalid, NotFound
from schemas.pilot import (
    PilotDecisionCreate,
    PilotPlanCreate,
    PilotState,
    PilotStatus,
    Recommendation,
    SiteStatus,
)

router = APIRouter(route_class=PageRoute, include_in_schema=False)

SITES = 3  # clinics the plan form offers; a pilot with more is planned through the API
DECISIONS = {
    Recommendation.implement: N_("Implement: reporting goes on to the final report"),
    Recommendation.extend: N_("Extend: a further period at the sites chosen"),
    Recommendation.stop: N_("Stop: unpaid tranches are cancelled"),
}
PILOT_STATUS = {
    PilotStatus.running: N_("Running at the clinics"),
    PilotStatus.evaluating: N_("With the evaluator"),
    PilotStatus.deciding: N_("Evaluated: the admins decide"),
    PilotStatus.implement: N_("To be implemented"),
    PilotStatus.stop: N_("Stopped"),
    PilotStatus.cancelled: N_("Cancelled"),
}
SITE_STATUS = {
    SiteStatus.proposed: N_("Proposed to the clinic"),
    SiteStatus.accepted: N_("Accepted by the clinic"),
    SiteStatus.declined: N_("Declined by the clinic"),
    SiteStatus.running: N_("Running"),
    SiteStatus.completed: N_("Reported"),
    SiteStatus.cancelled: N_("Cancelled"),
}
RECOMMENDATIONS = {
    Recommendation.implement: N_("Implement"),
    Recommendation.extend: N_("Extend"),
    Recommendation.stop: N_("Stop"),
}
DONE = {
    "planned": N_("The pilot is planned: each clinic's coordinators are asked to accept."),
    "evaluator": N_("The evaluator is assigned."),
    "decided": N_("The decision is on record."),
}


def names(table: dict[Any, str]) -> Any:
    """The table's names in the reader's language, for a template to look values up."""
    return lambda value: _(table[type(next(iter(table)))(value)])


def _site_values(index: int, form: FormData | None = None) -> dict[str, Any]:
    def get(name: str, limit: int = 200) -> str:
        return text(form, f"site{index}_{name}", limit) if form is not None else ""

    parts = {"days": get("days", 20), "hours": get("hours", 20)}
    return {
        "clinic_id": get("clinic_id").strip(),
        "starts_at": get("starts_at", 40),
        "duration": parts if form is not None else duration_parts(None) | {"days": "90"},
        "metrics": get("metrics", 5_000),
    }


def _metrics(value: str) -> list[dict[str, Any]]:
    """One metric a line: "patients; patients; 400" (name; unit; target)."""
    found = []
    for line in value.splitlines():
        if not line.strip():
            continue
        name, unit, target = ([*(p.strip() for p in line.split(";")), "", ""])[:3]
        number: Any
        try:
            number = float(target.replace(",", ".").replace(" ", "")) if target else None
        except ValueError:
            number = target or None
        metric = {"name": name, "unit": unit, "target": number}
        found.append({k: v for k, v in metric.items() if v not in ("", None)})
    return found


def to_plan(sites: list[dict[str, Any]], zone: str) -> PilotPlanCreate:
    errors: list[dict[str, Any]] = []
    payload = []
    for i, site in enumerate(s for s in sites if s["clinic_id"]):
        span = to_duration(site["duration"])
        if isinstance(span, str):
            errors.append({"loc": ["sites", i, "duration"], "msg": span, "type": "duration"})
        try:
            starts: Any = datetime.fromisoformat(site["starts_at"]).replace(tzinfo=ZoneInfo(zone))
        except ValueError:
            starts = site["starts_at"] or None
        payload.append(
            forms._filled(
                {
                    "clinic_id": site["clinic_id"],
                    "starts_at": starts,
                    "duration": span if not isinstance(span, str) else None,
                    "metrics": _metrics(site["metrics"]),
                }
            )
        )
    try:
        body = forms._validate(PilotPlanCreate, {"sites": payload})
    except Invalid as exc:
        raise Invalid(exc.message, [*errors, *(exc.errors or [])]) from None
    if errors:
        raise Invalid("invalid input", errors)
    return body


async def _page(
    request: Request,
    viewer: Viewer,
    res: Res,
    application_id: str,
    *,
    values: dict[str, Any] | None = None,
    errors: forms.Errors | None = None,
    form_of: str | None = None,
) -> Response:
    app = await application.get(res, viewer.caller, application_id)
    state: PilotState | None
    try:
        state = await pilot.get(res, viewer.caller, parse_id(application_id))
    except NotFound:
        state = None
    errors = errors or {}
    evaluator = None
    if state is not None and state.evaluator_id:
        evaluator = (await user.get_user(res, viewer.caller, uuid.UUID(state.evaluator_id))).name
    done = DONE.get(request.query_params.get("done", ""))
    sites = (values or {}).get("sites") or [_site_values(i) for i in range(SITES)]
    context = {
        "app": app,
        "pilot": state,
        "evaluator_name": evaluator,
        "sites": sites,
        "values": values or {},
        "errors": errors,
        "form_of": form_of,
        "focus": next(iter(k for k in errors if k != "form"), None),
        "decisions": [(d.value, _(n)) for d, n in DECISIONS.items()],
        "site_choices": [(s.site_id, s.clinic_id) for s in state.sites] if state else [],
        "extension": (values or {}).get("extension") or duration_parts(None),
        "labels": {
            "evaluator_id": _("Evaluator's id"),
            "decision": _("Decision"),
            "reason": _("Reason"),
            "sites": _("Clinics"),
            "extension": _("Extension"),
        },
        "done": _(done) if done else None,
        "pilot_status": names(PILOT_STATUS),
        "site_status": names(SITE_STATUS),
        "recommendation": names(RECOMMENDATIONS),
    }
    return render(request, "admin_pilot.html", context)


@router.get("/admin/applications/{application_id}/pilot")
async def one(request: Request, viewer: AdminViewer, res: Res, application_id: str) -> Response:
    """The pilot: its sites with their periods, deadlines and results, the evaluation and
    the decision; or, before it is planned, the plan's form."""
    return await _page(request, viewer, res, application_id)


@router.post("/admin/applications/{application_id}/pilot/plan")
async def plan(request: Request, viewer: AdminViewer, res: Res, application_id: str) -> Response:
    """Plan the pilot in the clinics filled in."""
    form = await request.form()
    sites = [_site_values(i, form) for i in range(SITES)]
    values = {"sites": sites}
    try:
        body = to_plan(sites, viewer.time_zone)
        await pilot.plan(res, viewer.caller, parse_id(application_id), body)
    except (Invalid, Conflict) as exc:
        errors = errors_of(exc) if isinstance(exc, Invalid) else {"form": said(exc.message)}
        return await _page(
            request, viewer, res, application_id, values=values, errors=errors, form_of="plan"
        )
    return redirect(f"/admin/applications/{application_id}/pilot?done=planned")


@router.post("/admin/applications/{application_id}/pilot/evaluator")
async def evaluator(
    request: Request, viewer: AdminViewer, res: Res, application_id: str
) -> Response:
    """Name the evaluator by hand (the conflict-of-interest rules still apply)."""
    form = await request.form()
    values = {"evaluator_id": text(form, "evaluator_id", 60).strip()}
    try:
        if not values["evaluator_id"]:
            raise Invalid("invalid input", [{"loc": ["evaluator_id"], "type": "missing"}])
        await pilot.assign_evaluator(
            res, viewer.caller, parse_id(application_id), values["evaluator_id"]
        )
    except (Invalid, Conflict) as exc:
        errors = errors_of(exc) if isinstance(exc, Invalid) else {"form": said(exc.message)}
        return await _page(
            request, viewer, res, application_id, values=values, errors=errors, form_of="evaluator"
        )
    return redirect(f"/admin/applications/{application_id}/pilot?done=evaluator")


@router.post("/admin/applications/{application_id}/pilot/decision")
async def decide(request: Request, viewer: AdminViewer, res: Res, application_id: str) -> Response:
    """Decide, with a reason; stopping asks to confirm first."""
    form = await request.form()
    values: dict[str, Any] = {
        "decision": text(form, "decision", 20),
        "reason": text(form, "reason", 5_000).strip(),
        "extend_sites": texts(form, "extend_sites", 30),
        "extension": {
            "days": text(form, "extension_days", 20),
            "hours": text(form, "extension_hours", 20),
        },
    }
    try:
        payload: dict[str, Any] = {
            k: values[k] for k in ("decision", "reason", "extend_sites") if values[k]
        }
        if values["decision"] == Recommendation.extend:
            span = to_duration(values["extension"])
            if isinstance(span, str):
                raise Invalid(
                    "invalid input", [{"loc": ["extension"], "msg": span, "type": "duration"}]
                )
            payload["extension"] = span
        body = forms._validate(PilotDecisionCreate, payload)
        if body.decision == Recommendation.stop and text(form, "confirmed", 10) != "yes":
            context = {"application_id": application_id, "values": values}
            return render(request, "admin_pilot_confirm.html", context)
        await pilot.decide(res, viewer.caller, parse_id(application_id), body)
    except (Invalid, Conflict) as exc:
        errors = errors_of(exc) if isinstance(exc, Invalid) else {"form": said(exc.message)}
        if "form" in errors and "extension names its sites" in errors["form"]:
            errors = {"extension": _("An extension names its sites and its length; only it does.")}
        return await _page(
            request, viewer, res, application_id, values=values, errors=errors, form_of="decision"
        )
    return redirect(f"/admin/applications/{application_id}/pilot?done=decided")
