"""Pages of calls for applications (programmes): the open ones, each with its rules."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response

from grantflow.pages.display import organisation_type
from grantflow.pages.web import PageRoute, Res, SignedIn, render
from grantflow.services import programme
from grantflow.services.application import parse_id
from grantflow.services.programme import NOT_FOUND, intake_refusal
from schemas.programme import ProgrammePublic

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@dataclass(frozen=True)
class Call:
    programme: ProgrammePublic
    open: bool


@router.get("/calls")
async def calls(request: Request, viewer: SignedIn, res: Res) -> Response:
    """Calls open now or opening later, the one closing first on top."""
    now = datetime.now(UTC)
    found = await programme.list_recent(res, viewer.caller, limit=200)
    current = [Call(p, intake_refusal(p, now) is None) for p in found if p.intake_closes > now]
    current.sort(key=lambda c: (not c.open, c.programme.intake_closes))
    return render(request, "calls.html", {"calls": current})


@router.get("/calls/{programme_id}")
async def call(request: Request, viewer: SignedIn, res: Res, programme_id: str) -> Response:
    """A call's rules and window; applicants start an application from here."""
    found = await programme.get(res, viewer.caller, parse_id(programme_id, NOT_FOUND))
    context = {
        "p": found,
        "open": intake_refusal(found, datetime.now(UTC)) is None,
        "org_types": [organisation_type(t) for t in found.organisation_types],
    }
    return render(request, "call.html", context)
