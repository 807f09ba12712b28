"""Admins' inspection: find applications, see what happened to one and what it waits for
now, and whether the workflows agree with their PostgreSQL rows. The same answers for
`GET /v1/admin/applications[/{id}/history|waiting]` and `grantflow applications list`,
`history`, `waiting` and `check`."""

from __future__ import annotations

import uuid

from grantflow.services import application
from grantflow.services.consistency import CheckResult
from grantflow.services.consistency import check as compare_all
from grantflow.services.context import Caller, Resources, require
from grantflow.services.errors import Invalid, NotFound
from grantflow.services.history import application_history
from grantflow.services.waiting import ApplicationNotFound, waiting_for
from grantflow.store import admin
from schemas.admin import AdminApplicationPage
from schemas.common import Role, Stage
from schemas.history import HistoryPublic, WaitingPublic


async def find_applications(
    res: Resources,
    caller: Caller,
    *,
    programme_id: uuid.UUID | None = None,
    stages: tuple[Stage, ...] = (),
    institution_id: str | None = None,
    specialty: str | None = None,
    overdue: bool = False,
    flagged: bool = False,
    cursor: str | None = None,
    limit: int = 50,
) -> AdminApplicationPage:
    """Every application matching all the filters given, newest first, `limit` at a time,
    with the total matching and the count in each stage (ignoring the stage filter). Admins
    only; a cursor that is not a page's `next_cursor` is Invalid."""
    require(caller, Role.admin)
    filters = admin.Filters(
        programme_id=programme_id,
        stages=stages,
        institution_id=institution_id,
        specialty=specialty,
        overdue=overdue,
        flagged=flagged,
    )
    try:
        return await admin.page(res.pool, filters, limit=limit, cursor=cursor)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


async def history(res: Resources, caller: Caller, application_id: uuid.UUID) -> HistoryPublic:
    """One time-ordered timeline (admins): the audit trail merged with the Temporal event
    histories of the application's workflow, its children and the council sessions that
    decided on it, in plain words, each linking to the Temporal Web UI. NotFound for an
    application with no row or no workflow."""
    require(caller, Role.admin)
    await application.get(res, caller, str(application_id))
    try:
        return await application_history(
            res.client, res.pool, application_id, ui_url=res.settings.ui_url
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
