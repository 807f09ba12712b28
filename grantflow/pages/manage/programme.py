"""Programmes as admins manage them: the list, a new call with every parameter (durations in
days and hours, amounts in roubles as people type them, the window in the admin's time zone),
one programme with its rules, budget, corrections and council sessions, and a correction of
its screening rules with a reason. Errors come back beside their fields, nothing typed lost."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from grantflow.i18n import gettext as _
from grantflow.i18n import money, percent
from grantflow.pages import forms
from grantflow.pages.display import N_, ORGANISATION_TYPES
from grantflow.pages.manage.common import (
    AdminViewer,
    duration_parts,
    errors_of,
    first_of,
    text,
    texts,
    to_duration,
)
from grantflow.pages.web import PageRoute, Res, Viewer, redirect, render
from grantflow.services import council, programme
from grantflow.services.application import parse_id
from grantflow.services.errors import Invalid
from grantflow.services.programme import NOT_FOUND
from schemas.programme import (
    DEFAULT_RUBRIC,
    IntakeState,
    ProgrammeCorrectionCreate,
    ProgrammeCreate,
    ProgrammeParams,
    ProgrammePublic,
)

router = APIRouter(route_class=PageRoute, include_in_schema=False)

DURATIONS = {
    "revision_window": (
        N_("Time to send changes"),
        N_("How long an applicant has to fix what the check found."),
    ),
    "review_acceptance_window": (
        N_("Time for an expert to accept"),
        N_("An offer not accepted in time goes to another expert."),
    ),
    "review_deadline": (N_("Time to write a review"), N_("From the offer to the review.")),
    "reminder_lead_time": (
        N_("Reminder before the review deadline"),
        N_("Must be shorter than the time to write a review."),
    ),
    "agreement_window": (
        N_("Time to accept the agreement"),
        N_("Then the approval lapses and the money returns to the budget."),
    ),
    "tranche_interval": (
        N_("Project year (between tranches)"),
        N_("One tranche per project year; a later one waits for the report due before it."),
    ),
    "report_interval": (N_("Between progress reports"), N_("The last one is the final report.")),
    "financial_report_interval": (
        N_("Between financial reports"),
        N_("0 days and 0 hours: no financial reports."),
    ),
    "pilot_report_window": (
        N_("Time for a pilot site to report"),
        N_("After its period ends; then it goes to the admins."),
    ),
}
COUNTS = {
    "reviews_required": (N_("Reviews per application"), N_("From 1 to 10.")),
    "score_min": (N_("Lowest score"), None),
    "score_max": (N_("Highest score"), N_("At most 100.")),
    "spread_threshold": (
        N_("Score spread that calls one more expert"),
        N_("When the reviews' scores differ by more than this."),
    ),
    "council_quorum": (N_("Council quorum"), N_("Votes needed on an item before it is decided.")),
    "continue_as_new_after": (
        N_("Changes before a long workflow starts afresh"),
        N_("A technical limit; the default suits every programme."),
    ),
}
LABELS = {
    "name": N_("Name of the call"),
    "budget_rub": N_("Budget, roubles"),
    "max_grant_rub": N_("Maximum grant, roubles"),
    "organisation_types": N_("Who may apply"),
    "specialties": N_("Specialties"),
    "intake_opens": N_("Intake opens"),
    "intake_closes": N_("Intake closes"),
    "complex_share_limit": N_("Complex projects: share of the investment, %"),
    "complex_annual_cap_rub": N_("Complex projects: grant per year at most, roubles"),
    "rubric": N_("Review criteria"),
    "reason": N_("Why the correction"),
    **{k: v[0] for k, v in DURATIONS.items()},
    **{k: v[0] for k, v in COUNTS.items()},
}
FIELD_ORDER = [
    "name", "budget_rub", "max_grant_rub", "organisation_types", "specialties", "intake_opens",
    "intake_closes", "complex_share_limit", "complex_annual_cap_rub", *DURATIONS, *COUNTS,
    "rubric", "reason",
]  # fmt: skip
# The models' own cross-field checks, said for a person and put beside the field they are about.
CHECKS = [
    ("intake_closes must be after", "intake_closes", N_("Intake must close after it opens.")),
    ("max_grant_rub cannot exceed", "max_grant_rub", N_("At most the budget.")),
    ("specialties must not repeat", "specialties", N_("Each specialty once.")),
    ("score_min must be below", "score_max", N_("Must be above the lowest score.")),
    ("rubric criteria must have", "rubric", N_("Each criterion needs a name of its own.")),
    (
        "reminder_lead_time must be shorter",
        "reminder_lead_time",
        N_("Must be shorter than the time to write a review."),
    ),
    (
        "report_interval and financial_report_interval",
        "report_interval",
        N_("At most 52 progress and financial reports per project year: make them rarer."),
    ),
    ("nothing to correct", "form", N_("Change at least one rule.")),
]
MAX_CRITERIA = 20
INTAKE = {
    IntakeState.scheduled: N_("Opens later"),
    IntakeState.open: N_("Open"),
    IntakeState.closed: N_("Closed"),
}


def intake_name(state: IntakeState | str) -> str:
    return _(INTAKE[IntakeState(state)])


def org_choices() -> list[tuple[str, str]]:
    return [(k, _(v)) for k, v in ORGANISATION_TYPES.items()]


def labels() -> dict[str, str]:
    return {k: _(v) for k, v in LABELS.items()}


def _checked(errors: forms.Errors, message: str) -> forms.Errors:
    for start, field, said in CHECKS:
        if start in message:
            return {**errors, field: _(said)}
    return {**errors, "form": message}


def _errors(exc: Invalid) -> forms.Errors:
    found: forms.Errors = {}
    for key, message in errors_of(exc).items():
        if key in ("form", "rubric") and any(start in message for start, _f, _s in CHECKS):
            found = _checked(found, message)
        elif key.startswith("rubric.") and key.endswith(".name") and "pattern" in message:
            found[key] = _("Small Latin letters, digits and _, starting with a letter.")
        else:
            found[key] = message
    raw = [str(e.get("msg", "")) for e in exc.errors or []] or [exc.message]
    for message in raw:
        if any(start in message for start, _f, _s in CHECKS):
            found = {k: v for k, v in found.items() if v != message}
            found = _checked(found, message)
    return found


# --- the values of the form, as typed ---------------------------------------------------------


def _local(at: datetime, zone: str) -> str:
    return at.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%dT%H:%M")


def new_values(zone: str, now: datetime) -> dict[str, Any]:
    """A new call's form: the defaults of every parameter, intake from tomorrow for a month."""
    params = ProgrammeParams()
    start = (now + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    return {
        "name": "",
        "budget_rub": "",
        "max_grant_rub": "",
        "organisation_types": ["medical_institution"],
        "specialties": "",
        "intake_opens": _local(start, zone),
        "intake_closes": _local(start + timedelta(days=30), zone),
        "complex_share_limit": "15",
        "complex_annual_cap_rub": forms._grouped(200_000_000),
        "durations": {k: duration_parts(getattr(params, k)) for k in DURATIONS},
        **{k: str(getattr(params, k)) for k in COUNTS},
        "rubric": [
            {"name": c.name, "weight": str(c.weight), "description": c.description}
            for c in DEFAULT_RUBRIC
        ],
    }


def form_values(form: FormData) -> dict[str, Any]:
    names, weights, notes = (texts(form, f"rubric_{k}") for k in ("name", "weight", "description"))
    rubric = [
        {"name": n.strip(), "weight": w.strip(), "description": d.strip()}
        for n, w, d in zip(names, weights, notes, strict=False)
    ]
    return {
        **{k: text(form, k, 300) for k in ("name", "budget_rub", "max_grant_rub")},
        "organisation_types": [
            t for t in texts(form, "organisation_types") if t in ORGANISATION_TYPES
        ],
        "specialties": text(form, "specialties", 5_000),
        **{k: text(form, k, 40) for k in ("intake_opens", "intake_closes")},
        "complex_share_limit": text(form, "complex_share_limit", 40),
        "complex_annual_cap_rub": text(form, "complex_annual_cap_rub", 40),
        "durations": {
            k: {"days": text(form, f"{k}_days", 20), "hours": text(form, f"{k}_hours", 20)}
            for k in DURATIONS
        },
        **{k: text(form, k, 40) for k in COUNTS},
        "rubric": rubric[:MAX_CRITERIA],
    }


def _with_action(values: dict[str, Any], action: str) -> dict[str, Any]:
    rubric = list(values["rubric"])
    if action == "add_criterion" and len(rubric) < MAX_CRITERIA:
        rubric.append({"name": "", "weight": "", "description": ""})
    elif action.startswith("remove_criterion:") and action.split(":")[1].isdigit():
        index = int(action.split(":")[1])
        if index < len(rubric):
            rubric.pop(index)
    return {**values, "rubric": rubric}


def _specialties(value: str) -> list[str]:
    return [
        s.strip() for s in value.replace(";", "\n").replace(",", "\n").splitlines() if s.strip()
    ]


def _moment(value: str, zone: str) -> datetime | str:
    try:
        return datetime.fromisoformat(value).replace(tzinfo=ZoneInfo(zone))
    except ValueError:
        return value  # the model says what is wrong


def _share(value: str) -> Any:
    compact = value.strip().replace(",", ".").rstrip("%").strip()
    try:
        return float(compact) / 100
    except ValueError:
        return compact or None


def _number(value: str) -> Any:
    compact = value.strip().replace(",", ".")
    try:
        return float(compact) if compact else None
    except ValueError:
        return compact


def to_create(values: dict[str, Any], zone: str) -> ProgrammeCreate:
    """The form as the service's model; Invalid with each error by its field otherwise."""
    errors: list[dict[str, Any]] = []
    params: dict[str, Any] = {k: forms.number(values[k]) for k in COUNTS}
    params["spread_threshold"] = _number(values["spread_threshold"])
    for key in DURATIONS:
        found = to_duration(values["durations"][key])
        if isinstance(found, str):
            errors.append({"loc": [key], "msg": found, "type": "duration"})
        elif key == "financial_report_interval" or found:
            params[key] = found
        else:
            errors.append({"loc": [key], "msg": _("More than 0, please."), "type": "duration"})
    params["rubric"] = [
        {k: v for k, v in {**c, "weight": _number(c["weight"])}.items() if v not in ("", None)}
        for c in values["rubric"]
    ]
    payload = {
        "name": values["name"].strip(),
        "budget_rub": forms.number(values["budget_rub"]),
        "max_grant_rub": forms.number(values["max_grant_rub"]),
        "organisation_types": values["organisation_types"],
        "specialties": _specialties(values["specialties"]),
        "intake_opens": _moment(values["intake_opens"], zone),
        "intake_closes": _moment(values["intake_closes"], zone),
        "complex_share_limit": _share(values["complex_share_limit"]),
        "complex_annual_cap_rub": forms.number(values["complex_annual_cap_rub"]),
        "params": {k: v for k, v in params.items() if v not in (None, "")},
    }
    try:
        body = forms._validate(ProgrammeCreate, forms._filled(payload))
    except Invalid as exc:
        raise Invalid(exc.message, [*errors, *(exc.errors or [])]) from None
    if errors:
        raise Invalid("invalid input", errors)
    return body


# --- pages ---------------------------------------------------------------------------------


@router.get("/admin/programmes")
async def programmes(request: Request, viewer: AdminViewer, res: Res) -> Response:
    """Every programme, the newest first, with its intake window and state."""
    found = await programme.list_recent(res, viewer.caller, limit=200)
    context = {"programmes": found, "intake_name": intake_name}
    return render(request, "admin_programmes.html", context)


def _form_page(
    request: Request,
    viewer: Viewer,
    values: dict[str, Any],
    errors: forms.Errors | None = None,
    focus: str | None = None,
) -> Response:
    errors = errors or {}
    context = {
        "values": values,
        "errors": errors,
        "labels": labels(),
        "focus": focus or first_of(errors, FIELD_ORDER),
        "durations": DURATIONS,
        "counts": COUNTS,
        "org_choices": org_choices(),
    }
    return render(request, "admin_programme_form.html", context)


@router.get("/admin/programmes/new")
async def new(request: Request, viewer: AdminViewer) -> Response:
    """A new call for applications, every parameter filled in with its default."""
    return _form_page(request, viewer, new_values(viewer.time_zone, datetime.now(ZoneInfo("UTC"))))


@router.post("/admin/programmes")
async def create(request: Request, viewer: AdminViewer, res: Res) -> Response:
    """Open the call; the form again with every error beside its field, as typed."""
    form = await request.form()
    values = form_values(form)
    action = text(form, "action", 40) or "create"
    if action != "create":
        values = _with_action(values, action)
        focus = f"rubric.{len(values['rubric']) - 1}.name" if action == "add_criterion" else None
        return _form_page(request, viewer, values, focus=focus)
    try:
        created = await programme.create(res, viewer.caller, to_create(values, viewer.time_zone))
    except Invalid as exc:
        return _form_page(request, viewer, values, _errors(exc))
    return redirect(f"/admin/programmes/{created.id}?done=created")


DONE = {
    "created": N_("The call is open for business: its workflow opens and closes intake on time."),
    "corrected": N_("The correction is on record. Applications from now on are checked by it."),
    "opened": N_("The council session is open."),
}


def done(request: Request) -> str | None:
    found = DONE.get(request.query_params.get("done", ""))
    return _(found) if found else None


@router.get("/admin/programmes/{programme_id}")
async def one(request: Request, viewer: AdminViewer, res: Res, programme_id: str) -> Response:
    """A programme: its rules and durations, the budget as it stands, its council sessions and
    every correction with its reason."""
    pid = parse_id(programme_id, NOT_FOUND)
    found = await programme.get(res, viewer.caller, pid)
    context = {
        "p": found,
        "ledger": await council.programme_ledger(res, viewer.caller, pid),
        "sessions": await council.sessions_of_programme(res, viewer.caller, pid),
        "corrections": await programme.corrections(res, viewer.caller, pid),
        "labels": labels(),
        "durations": DURATIONS,
        "counts": COUNTS,
        "done": done(request),
        "changed_value": changed_value,
        "intake_name": intake_name,
    }
    return render(request, "admin_programme.html", context)


def changed_value(field: str, value: object) -> str:
    """A corrected field's old or new value as people read it."""
    if value is None:
        return "—"
    if field.endswith("_rub") and isinstance(value, int):
        return money(value)
    if field == "complex_share_limit" and isinstance(value, int | float):
        return percent(float(value))
    if isinstance(value, list):
        named = [_(ORGANISATION_TYPES[v]) if v in ORGANISATION_TYPES else str(v) for v in value]
        return ", ".join(named)
    return str(value)


# --- correction ------------------------------------------------------------------------------

CORRECTABLE = (
    "max_grant_rub", "organisation_types", "specialties", "complex_share_limit",
    "complex_annual_cap_rub",
)  # fmt: skip


def correction_values(p: ProgrammePublic) -> dict[str, Any]:
    return {
        "max_grant_rub": forms._grouped(p.max_grant_rub),
        "organisation_types": [t.value for t in p.organisation_types],
        "specialties": "\n".join(p.specialties),
        "complex_share_limit": f"{p.complex_share_limit * 100:g}",
        "complex_annual_cap_rub": forms._grouped(p.complex_annual_cap_rub),
        "reason": "",
    }


def to_correction(values: dict[str, Any], p: ProgrammePublic) -> ProgrammeCorrectionCreate:
    """Only what the admin changed goes into the correction, with the reason."""
    typed = {
        "max_grant_rub": forms.number(values["max_grant_rub"]),
        "organisation_types": values["organisation_types"],
        "specialties": _specialties(values["specialties"]),
        "complex_share_limit": _share(values["complex_share_limit"]),
        "complex_annual_cap_rub": forms.number(values["complex_annual_cap_rub"]),
    }
    now = {
        "max_grant_rub": p.max_grant_rub,
        "organisation_types": [t.value for t in p.organisation_types],
        "specialties": p.specialties,
        "complex_share_limit": p.complex_share_limit,
        "complex_annual_cap_rub": p.complex_annual_cap_rub,
    }
    changes = {k: v for k, v in typed.items() if v != now[k] and v not in ("", None)}
    blank = [k for k, v in typed.items() if v in ("", None, [])]
    payload = {**changes, "reason": values["reason"]}
    errors = [{"loc": [k], "type": "missing"} for k in blank]
    try:
        body = forms._validate(ProgrammeCorrectionCreate, payload)
    except Invalid as exc:
        raise Invalid(exc.message, [*errors, *(exc.errors or [])]) from None
    if errors:
        raise Invalid("invalid input", errors)
    return body


def _correction_page(
    request: Request, p: ProgrammePublic, values: dict[str, Any], errors: forms.Errors
) -> Response:
    context = {
        "p": p,
        "values": values,
        "errors": errors,
        "labels": labels(),
        "focus": first_of(errors, FIELD_ORDER),
        "org_choices": org_choices(),
    }
    return render(request, "admin_programme_correct.html", context)


@router.get("/admin/programmes/{programme_id}/correct")
async def correction(
    request: Request, viewer: AdminViewer, res: Res, programme_id: str
) -> Response:
    """The screening rules as they are, to correct with a reason (never the intake window)."""
    found = await programme.get(res, viewer.caller, parse_id(programme_id, NOT_FOUND))
    return _correction_page(request, found, correction_values(found), {})


@router.post("/admin/programmes/{programme_id}/correct")
async def correct(request: Request, viewer: AdminViewer, res: Res, programme_id: str) -> Response:
    """Record the correction; the form again, as typed, with what is wrong beside its field."""
    pid = parse_id(programme_id, NOT_FOUND)
    found = await programme.get(res, viewer.caller, pid)
    form = await request.form()
    values = {
        "max_grant_rub": text(form, "max_grant_rub", 40),
        "organisation_types": [
            t for t in texts(form, "organisation_types") if t in ORGANISATION_TYPES
        ],
        "specialties": text(form, "specialties", 5_000),
        "complex_share_limit": text(form, "complex_share_limit", 40),
        "complex_annual_cap_rub": text(form, "complex_annual_cap_rub", 40),
        "reason": text(form, "reason", 2_000),
    }
    try:
        await programme.correct(res, viewer.caller, pid, to_correction(values, found))
    except Invalid as exc:
        return _correction_page(request, found, values, _errors(exc))
    return redirect(f"/admin/programmes/{programme_id}?done=corrected")
