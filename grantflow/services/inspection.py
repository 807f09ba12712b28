"""Admins' inspection: find applications, see what happened to one and what it waits for
now, and whether the workflows agree with their PostgreSQL rows. The same answers for
`GET /v1/admin/applications/{id}/history|waiting` and `grantflow history`, `waiting` and
`check` (the filtered list is services/admin.py's `page`)."""

from __future__ import annotations

import uuid
from typing import Any

from grantflow.services import application
from grantflow.services.consistency import CheckResult
from grantflow.services.consistency import check as compare_all
from grantflow.services.context import Caller, Resources, require
from grantflow.services.errors import NotFound
from grantflow.services.history import merged_history
from grantflow.services.waiting import ApplicationNotFound, waiting_for
from schemas.common import Role
from schemas.history import HistoryPublic, WaitingPublic


async def history(res: Resources, caller: Caller, application_id: uuid.UUID) -> HistoryPublic:
    """One time-ordered timeline (admins): the audit trail merged with the Temporal event
    histories of the application's workflow, its children and the council sessions that
    decided on it, in plain words, each linking to the Temporal Web UI. NotFound for an
    application with no row or no workflow."""
    found, _rows = await history_and_rows(res, caller, application_id)
    return found


async def history_and_rows(
    res: Resources, caller: Caller, application_id: uuid.UUID, *, technical: bool = True
) -> tuple[HistoryPublic, list[Any]]:
    """`history` and the audit rows in it; without `technical`, the workflow events are left
    out (services/history.py's `merged_history`)."""
    require(caller, Role.admin)
    await application.get(res, caller, str(application_id))
    try:
        return await merged_history(
            res.client, res.pool, application_id, ui_url=res.settings.ui_url, technical=technical
        )
    except ApplicationNotFound:
        raise NotFound(application.NOT_FOUND) from None


async def waiting(res: Resources, caller: Caller, application_id: uuid.UUID) -> WaitingPublic:
    """The stage, who must act, what, by when, and what happens if they don't, as the
    workflows themselves hold it (admins). A closed application waits for nothing. NotFound
    for an application with no row or no workflow."""
    require(caller, Role.admin)
    await application.get(res, caller, str(application_id))
    try:
        return await waiting_for(res.client, str(application_id))
    except ApplicationNotFound:
        raise NotFound(application.NOT_FOUND) from None


async def check(
    res: Resources, caller: Caller, programme_id: uuid.UUID | None = None, *, every: bool = False
) -> CheckResult:
    """Compare every open application's workflow (with `every`, every application's) with
    its row: stage, change number, amounts, outcome; each disagreement is listed (admins)."""
    require(caller, Role.admin)
    programme = str(programme_id) if programme_id else None
    return await compare_all(res.pool, res.client, programme, every=every)
