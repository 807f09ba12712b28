"""Pilot sites, as their clinic's coordinators see them: the sites proposed to the clinic,
acceptance or decline, and the report of measured metrics.

Every change is an Update of the site's workflow (its id is the site's id); reads come from
PostgreSQL. Another clinic's site is NotFound."""

from __future__ import annotations

from temporalio.client import WorkflowHandle

from grantflow.services.context import Caller, Resources, require
from grantflow.services.errors import NotFound
from grantflow.services.updates import send
from grantflow.store import pilot
from schemas.common import Role
from schemas.pilot import SiteAnswer, SiteReport, SiteReportCreate, SiteState
from workflows.site import PilotSiteWorkflow

NOT_FOUND = "no such site at your clinic"


def _handle(res: Resources, site_id: str) -> WorkflowHandle[PilotSiteWorkflow, SiteState]:
    return res.client.get_workflow_handle_for(PilotSiteWorkflow.run, site_id)


async def clinic_sites(res: Resources, caller: Caller, limit: int = 200) -> list[SiteState]:
    """The pilot sites at the calling coordinator's clinic, newest first; no other
    clinic's. Coordinators only."""
    require(caller, Role.coordinator)
    if caller.actor.institution_id is None:
        return []
    return await pilot.clinic_sites(res.pool, caller.actor.institution_id, limit)


async def own(res: Resources, caller: Caller, site_id: str) -> SiteState:
    """A site at the calling coordinator's clinic; any other is NotFound."""
    require(caller, Role.coordinator)
    found = await pilot.site(res.pool, site_id)
    if found is None or found.clinic_id != caller.actor.institution_id:
        raise NotFound(NOT_FOUND)
    return found


async def _answer(res: Resources, caller: Caller, site_id: str, answer: SiteAnswer) -> SiteState:
    await own(res, caller, site_id)
    return await send(res, _handle(res, site_id), PilotSiteWorkflow.answer, answer)


async def accept(res: Resources, caller: Caller, site_id: str) -> SiteState:
    """The clinic accepts the pilot (its coordinators): it starts at the planned date.
    Conflict once the site has been answered or its deadline has passed."""
    return await _answer(res, caller, site_id, SiteAnswer(actor=caller.actor, accept=True))


async def decline(res: Resources, caller: Caller, site_id: str, reason: str) -> SiteState:
    """The clinic declines the pilot with a reason (its coordinators); an admin proposes
    another clinic. Conflict once the site has been answered or its deadline has passed."""
    answer = SiteAnswer(actor=caller.actor, accept=False, reason=reason)
    return await _answer(res, caller, site_id, answer)


async def report(res: Resources, caller: Caller, site_id: str, body: SiteReportCreate) -> SiteState:
    """The site's report once its period is over (its coordinators): every planned
    metric's measured value. Conflict before the period ends, for a missing or unplanned
    metric, or once reported."""
    await own(res, caller, site_id)
    return await send(
        res,
        _handle(res, site_id),
        PilotSiteWorkflow.report,
        SiteReport(actor=caller.actor, **body.model_dump()),
    )
