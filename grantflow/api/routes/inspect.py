"""Admins inspect any application: everything that happened to it, in plain words, and what it
is waiting for now (from its workflows' own `waiting_for` Queries)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from grantflow.api.deps import Admin, Res
from grantflow.services import inspection
from schemas.common import ApiError
from schemas.history import HistoryPublic, WaitingPublic

router = APIRouter(prefix="/v1/admin/applications", tags=["admin"])
REFUSALS: dict[int | str, dict[str, object]] = {
    401: {"model": ApiError},
    403: {"model": ApiError},
    404: {"model": ApiError},
}


@router.get("/{application_id}/history", response_model=HistoryPublic, responses=REFUSALS)
async def history(application_id: uuid.UUID, caller: Admin, res: Res) -> HistoryPublic:
    """One time-ordered timeline: the audit trail (stage changes, assignments, reminders,
    votes, decisions, reports, with the acting user) merged with the Temporal event history of
    the application's workflow, its children and the council sessions that decided on it
    (every run across continue-as-new), in plain words, each linking to the Temporal Web UI."""
    return await inspection.history(res, caller, application_id)


@router.get("/{application_id}/waiting", response_model=WaitingPublic, responses=REFUSALS)
async def waiting(application_id: uuid.UUID, caller: Admin, res: Res) -> WaitingPublic:
    """The stage, who must act, what, by when, and what happens if they don't, as the
    workflows themselves hold it. A closed application waits for nothing."""
    return await inspection.waiting(res, caller, application_id)
