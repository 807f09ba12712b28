"""The agreement of an approved application: read it, accept it, decline it.

Every change is an Update of the application's agreement workflow; reads come from
PostgreSQL. Another applicant's agreement is NotFound, never Forbidden."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from temporalio.client import WorkflowHandle

from grantflow.services import application
from grantflow.services.context import Caller, Resources, require
from grantflow.services.errors import NotFound
from grantflow.services.updates import send
from grantflow.store import agreement
from schemas.agreement import AgreementAction, AgreementOutcome, AgreementState
from schemas.common import Role
from workflows import ids
from workflows.agreement import AgreementWorkflow

NOT_FOUND = "this application has no agreement"


def handle(
    res: Resources, application_id: uuid.UUID
) -> WorkflowHandle[AgreementWorkflow, AgreementOutcome]:
    """The application's agreement workflow (reporting's Updates go to it as well)."""
    return res.client.get_workflow_handle_for(AgreementWorkflow.run, ids.agreement(application_id))


async def existing(res: Resources, application_id: uuid.UUID) -> AgreementState:
    """The agreement as recorded, with no access check (callers have made theirs)."""
    found = await agreement.get(res.pool, application_id)
    if found is None:
        raise NotFound(NOT_FOUND)
    return found


async def get(res: Resources, caller: Caller, application_id: uuid.UUID) -> AgreementState:
    """The agreement: amount, status, the deadline to accept, tranches (paid, scheduled, or
    held back and why), reports and the expert assigned to review them. The applicant,
    admins and that expert may read it; anyone else gets NotFound."""
    if caller.actor.user_id != await agreement.report_reviewer(res.pool, application_id):
        await application.get(res, caller, str(application_id))
    return await existing(res, application_id)


async def offered(
    res: Resources, caller: Caller, application_ids: Iterable[str]
) -> dict[str, datetime]:
    """The deadline to accept each offered agreement that waits for its applicant's answer,
    by application id, among `application_ids`: an applicant's own only, an admin's any. One
    query for a whole list (the applicant's dashboard); an id with no offered agreement, or
    not the caller's, is left out; NotFound for one that is not even a UUID."""
    require(caller, Role.applicant, Role.admin)
    wanted = [application.parse_id(i) for i in application_ids]
    if not wanted:
        return {}
    mine = None if caller.is_admin else uuid.UUID(caller.actor.user_id)
    found = await agreement.offered(res.pool, wanted, mine)
    return {str(k): v for k, v in found.items()}


async def own(res: Resources, caller: Caller, application_id: uuid.UUID) -> AgreementState:
    """The agreement of one of the caller's own applications (applicants), else NotFound."""
    require(caller, Role.applicant)
    await application.get(res, caller, str(application_id))
    return await existing(res, application_id)


async def accept(res: Resources, caller: Caller, application_id: uuid.UUID) -> AgreementState:
    """Accept the agreement before its deadline (its applicant): the first tranche is paid
    at once. Conflict once it is accepted, declined or expired."""
    await own(res, caller, application_id)
    return await send(
        res,
        handle(res, application_id),
        AgreementWorkflow.accept,
        AgreementAction(actor=caller.actor),
    )


async def decline(
    res: Resources, caller: Caller, application_id: uuid.UUID, reason: str
) -> AgreementState:
    """Decline the agreement with a reason (its applicant): the approved amount returns to
    the programme's budget. Conflict once it is accepted, declined or expired."""
    await own(res, caller, application_id)
    return await send(
        res,
        handle(res, application_id),
        AgreementWorkflow.decline,
        AgreementAction(actor=caller.actor, reason=reason),
    )
