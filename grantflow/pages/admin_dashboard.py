"""The admins' start: what needs attention now (each figure a link to the list it counts), a
programme's pictures with their figures as tables, and the application list with every filter
the JSON API has, the counts by stage, keyset pages and the CSV of exactly what is filtered."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from starlette.datastructures import QueryParams

from grantflow import i18n
from grantflow.i18n import gettext as _
from grantflow.pages import charts
from grantflow.pages.display import N_, STAFF_STAGE, STEPS
from grantflow.pages.web import PageRoute, Res, Viewer, render, signed_in
from grantflow.services import admin, dashboard, export, programme
from grantflow.services.errors import Forbidden, Invalid
from schemas.common import Role, Stage
from schemas.dashboard import ProgrammeCharts
from schemas.programme import ProgrammePublic

router = APIRouter(route_class=PageRoute, include_in_schema=False)


async def admin_only(viewer: Annotated[Viewer, Depends(signed_in)]) -> Viewer:
    if viewer.role != Role.admin:
        raise Forbidden(_("This page is for the programme's staff (admins)."))
    return viewer


AdminViewer = Annotated[Viewer, Depends(admin_only)]

SITE_STATUS = {
    "proposed": N_("Proposed"),
    "accepted": N_("Accepted"),
    "running": N_("Running"),
    "completed": N_("Completed"),
    "declined": N_("Declined"),
    "cancelled": N_("Cancelled"),
}
BUDGET_SERIES = (
    ("approved", N_("Approved sum")),
    ("reserved", N_("Reserved")),
    ("disbursed", N_("Disbursed")),
    ("remaining", N_("Remaining")),
)
IMPLEMENTED_TARGET = 0.3  # the operator expects about 30 % implemented within a year
CLINICS_SHOWN = 15
PAGE = 50


# --- the filters -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListFilters:
    """The list's filters as the query string carries them (and the CSV link repeats)."""

    programme_id: str = ""
    stages: tuple[str, ...] = ()
    institution_id: str = ""
    specialty: str = ""
    overdue: bool = False
    flagged: bool = False
    limit: int = PAGE  # a page's length, as the API's `limit` (1 to 200)
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, query: QueryParams) -> ListFilters:
        stages = tuple(s for s in query.getlist("stage") if s in Stage.__members__)
        errors = {}
        programme_id = query.get("programme_id", "").strip()
        if programme_id:
            try:
                uuid.UUID(programme_id)
            except ValueError:
                errors["programme_id"] = _("Choose a programme from the list.")
        return cls(
            programme_id=programme_id,
            stages=stages,
            institution_id=query.get("institution_id", "").strip()[:200],
            specialty=query.get("specialty", "").strip()[:200],
            overdue=query.get("overdue") in ("1", "on", "true"),
            flagged=query.get("flagged") in ("1", "on", "true"),
            limit=_limit(query.get("limit", "")),
            errors=errors,
        )

    def service_args(self) -> dict[str, Any]:
        return {
            "programme_id": None if self.errors or not self.programme_id
            else uuid.UUID(self.programme_id),
            "stages": tuple(Stage(s) for s in self.stages),
            "institution_id": self.institution_id or None,
            "specialty": self.specialty or None,
            "overdue": self.overdue,
            "flagged": self.flagged,
        }  # fmt: skip

    def query(self, **changes: Any) -> str:
        """The query string of these filters with `changes` (and a `cursor`, if given)."""
        cursor = changes.pop("cursor", None)
        chosen = replace(self, **changes)
        pairs: list[tuple[str, str]] = [("programme_id", chosen.programme_id)]
        pairs += [("stage", s) for s in chosen.stages]
        pairs += [("institution_id", chosen.institution_id), ("specialty", chosen.specialty)]
        pairs += [
            ("overdue", "1" if chosen.overdue else ""),
            ("flagged", "1" if chosen.flagged else ""),
        ]
        pairs += [("limit", str(chosen.limit) if chosen.limit != PAGE else "")]
        pairs += [("cursor", cursor or "")]
        return urlencode([(k, v) for k, v in pairs if v])


def _limit(text: str) -> int:
    return min(max(int(text), 1), 200) if text.isdigit() else PAGE


def list_url(**filters: Any) -> str:
    """The list filtered so: what each figure of the dashboard links to."""
    found = ListFilters().query(**filters)
    return f"/admin/applications?{found}" if found else "/admin/applications"


# --- the dashboard -----------------------------------------------------------------------------


@router.get("/admin")
async def home(request: Request, viewer: AdminViewer, res: Res, programme_id: str = "") -> Response:
    """What needs attention now, then the chosen programme's pictures (the newest by default)."""
    caller = viewer.caller
    attention = await dashboard.attention(res, caller)
    programmes = await programme.list_recent(res, caller, limit=100)
    chosen = _chosen(programmes, programme_id)
    figures = (
        await dashboard.programme_charts(res, caller, uuid.UUID(chosen.id)) if chosen else None
    )
    context = {
        "attention": attention,
        "links": {
            "flagged": list_url(flagged=True),
            "overdue_reviews": list_url(overdue=True, stages=(Stage.under_review.value,)),
            "overdue_reports": list_url(
                overdue=True, stages=(Stage.piloting.value, Stage.reporting.value)
            ),
            "waiting_council": list_url(stages=(Stage.reviewed.value, Stage.deferred.value)),
            "escalated": list_url(stages=(Stage.piloting.value,)),
        },
        "programmes": programmes,
        "chosen": chosen,
        "pictures": _pictures(figures, viewer) if figures else None,
    }
    return render(request, "admin_dashboard.html", context)


def _chosen(programmes: list[ProgrammePublic], wanted: str) -> ProgrammePublic | None:
    return next((p for p in programmes if p.id == wanted), programmes[0] if programmes else None)


def _compact(value: float) -> str:
    """Millions of roubles, short enough for an axis."""
    if abs(value) >= 1_000_000:
        return _("%(n)s M ₽", n=i18n.number(round(value / 1_000_000, 1)))
    return i18n.money(value)


def _pictures(f: ProgrammeCharts, viewer: Viewer) -> dict[str, Any]:
    """Each chart and the rows of its table, in the reader's language."""
    steps = [(_(label), s.reached) for label, s in zip(STEPS, f.funnel, strict=True)]
    stages = [(_(STAFF_STAGE[Stage(s)]), n) for s, n in sorted(f.by_stage.items(), key=_order)]
    moments = [p.at for p in f.budget]
    ticks = _ticks(moments, viewer.time_zone)
    dates = (
        [i18n.when(m, viewer.time_zone) for m in moments]
        if _fine(moments)
        else [i18n.day(m, viewer.time_zone) for m in moments]
    )
    series = [
        charts.Series(_(name), [getattr(p, key) for p in f.budget]) for key, name in BUDGET_SERIES
    ]
    shown = f.clinics[:CLINICS_SHOWN]
    keys = [(k, _(v)) for k, v in SITE_STATUS.items() if any(k in c.by_status for c in shown)]
    closed = f.implemented + f.not_implemented
    return {
        "funnel": charts.bars(
            "funnel", _("How far the applications got"),
            _("Applications that reached each step of the lifecycle, or went beyond it."),
            steps, i18n.number,
        ),
        "funnel_rows": steps,
        "stage_rows": stages,
        "budget": charts.lines(
            "budget", _("The budget over time"),
            _("Approved, reserved, disbursed and remaining money at the end of each period."),
            ticks, series, _compact, [p.at.timestamp() for p in f.budget],
        ) if f.budget else None,
        "budget_rows": list(zip(dates, f.budget, strict=True)),
        "series": [_(name) for _key, name in BUDGET_SERIES],
        "pilots": charts.stacked(
            "pilots", _("Pilot sites by clinic and status"),
            _("Each clinic's pilot sites, split by their status."),
            [(c.clinic, c.by_status) for c in shown], keys,
        ) if shown else None,
        "pilot_keys": keys,
        "pilot_rows": shown,
        "more_clinics": len(f.clinics) - len(shown),
        "share": charts.share(
            "share", _("Implemented share"),
            _("Closed projects implemented in clinics, against the expected share."),
            f.implemented, closed, IMPLEMENTED_TARGET, (_("Implemented"), _("Expected")),
            i18n.percent,
        ),
        "implemented": f.implemented,
        "not_implemented": f.not_implemented,
        "closed": closed,
        "target": IMPLEMENTED_TARGET,
        "budget_total": f.budget_rub,
    }  # fmt: skip


def _fine(moments: list[datetime]) -> bool:
    """Periods under a day: their times of day matter."""
    return len(moments) > 1 and moments[1] - moments[0] < timedelta(days=1)


def _ticks(moments: list[datetime], zone: str) -> list[str]:
    """The axis's dates, short: with the time of day when the periods are under a day."""
    pattern = "d MMM, HH:mm" if _fine(moments) else "d MMM y"
    locale = i18n.current_locale()
    return [format_datetime(m, pattern, tzinfo=ZoneInfo(zone), locale=locale) for m in moments]


def _order(item: tuple[str, int]) -> int:
    return list(Stage).index(Stage(item[0]))


# --- the list ----------------------------------------------------------------------------------


@router.get("/admin/applications")
async def applications(request: Request, viewer: AdminViewer, res: Res) -> Response:
    """Every application matching the filters, newest first, a page at a time, with the counts
    by stage (each a link that filters by it) and the CSV of the same filters."""
    filters = ListFilters.of(request.query_params)
    cursor = request.query_params.get("cursor") or None
    errors = dict(filters.errors)
    try:
        found = await admin.page(
            res, viewer.caller, cursor=cursor, limit=filters.limit, **filters.service_args()
        )
    except Invalid:
        errors["cursor"] = _("That page of the list is no longer valid: here is the first one.")
        found = await admin.page(res, viewer.caller, limit=filters.limit, **filters.service_args())
    programmes = await programme.list_recent(res, viewer.caller, limit=100)
    context = {
        "filters": filters,
        "found": found,
        "errors": errors,
        "programmes": programmes,
        "programme_names": {p.id: p.name for p in programmes},
        "stages": [(s.value, _(STAFF_STAGE[s])) for s in Stage],
        "counts": sorted(found.by_stage.items(), key=_order),
        "csv_url": "/admin/applications.csv?" + filters.query(),
        "next_url": f"/admin/applications?{filters.query(cursor=found.next_cursor)}"
        if found.next_cursor else None,
        "paged": cursor is not None and "cursor" not in errors,
        "first_url": f"/admin/applications?{filters.query()}",
    }  # fmt: skip
    return render(request, "admin_applications.html", context)


@router.get("/admin/applications.csv")
async def applications_csv(request: Request, viewer: AdminViewer, res: Res) -> Response:
    """The list's CSV: every application the same filters match, every page of them."""
    filters = ListFilters.of(request.query_params)
    lines = await export.filtered_applications(res, viewer.caller, **filters.service_args())
    return StreamingResponse(
        lines,
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="applications.csv"'},
    )
