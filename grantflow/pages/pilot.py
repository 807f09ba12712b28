"""The independent expert's pilot evaluation: each clinic's results against the plan's
targets, then a recommendation (implement, extend, stop) with comments. The same service
function as the JSON API's `POST /v1/applications/{id}/pilot/evaluation`; only the pilot's
evaluator gets the page (anyone else: not found)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from grantflow.i18n import gettext as _
from grantflow.pages import display, forms
from grantflow.pages.display import N_
from grantflow.pages.review import ReviewerViewer
from grantflow.pages.web import PageRoute, Res, Viewer, redirect, render
from grantflow.services import pilot
from grantflow.services.errors import Conflict, NotFound
from schemas.pilot import EvaluationCreate, PilotState, PilotStatus, Recommendation

router = APIRouter(route_class=PageRoute, include_in_schema=False)

RECOMMENDATIONS = {
    Recommendation.implement: N_("Implement it in the clinics"),
    Recommendation.extend: N_("Extend the pilot"),
    Recommendation.stop: N_("Stop the project"),
}


def _labels() -> dict[str, str]:
    return {"recommendation": _("Your recommendation"), "comments": _("Comments")}


async def _mine(res: Res, viewer: Viewer, application_id: str) -> PilotState:
    """The pilot if the viewer is its evaluator; anyone else's is not found."""
    try:
        wanted = uuid.UUID(application_id)
    except ValueError:
        raise NotFound(pilot.NOT_FOUND) from None
    state = await pilot.get(res, viewer.caller, wanted)
    if state.evaluator_id != viewer.caller.actor.user_id:
        raise NotFound(pilot.NOT_FOUND)
    return state


def _page(
    request: Request,
    state: PilotState,
    values: dict[str, str],
    errors: forms.Errors | None = None,
) -> Response:
    errors = errors or {}
    context = {
        "pilot": state,
        "title": state.sites[0].title if state.sites else "",
        "waiting": state.status == PilotStatus.evaluating and state.evaluation is None,
        "recommendations": [(r.value, _(said)) for r, said in RECOMMENDATIONS.items()],
        "recommendation_name": lambda r: _(RECOMMENDATIONS[Recommendation(r)]),
        "values": values,
        "errors": errors,
        "labels": _labels(),
        "focus": next((k for k in ("recommendation", "comments") if k in errors), None),
    }
    return render(request, "evaluation.html", context)


@router.get("/evaluations/{application_id}")
async def evaluation(
    request: Request, viewer: ReviewerViewer, res: Res, application_id: str
) -> Response:
    """The pilot's sites with their results against the targets, and the evaluation form
    while the pilot waits for it (the evaluation as given, afterwards)."""
    return _page(request, await _mine(res, viewer, application_id), {})


@router.post("/evaluations/{application_id}")
async def evaluate(
    request: Request, viewer: ReviewerViewer, res: Res, application_id: str
) -> Response:
    """Send the evaluation: each error beside its field, a refusal (the sites' reports are
    not all in, say) with its reason; what was typed stays in the form."""
    state = await _mine(res, viewer, application_id)
    form = await request.form()
    values = {
        name: value.strip()[:limit] if isinstance(value := form.get(name), str) else ""
        for name, limit in (("recommendation", 20), ("comments", 30_000))
    }
    try:
        body = EvaluationCreate.model_validate(values)
    except ValidationError as exc:
        errors = forms.field_errors(exc.errors(include_url=False, include_input=False))
        return _page(request, state, values, errors)
    try:
        await pilot.evaluate(res, viewer.caller, uuid.UUID(application_id), body)
    except Conflict as exc:
        return _page(request, state, values, {"form": display.refusal(exc.message)})
    return redirect("/reviews?done=evaluated")
