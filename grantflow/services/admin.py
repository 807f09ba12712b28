"""What admins need across the stages: the filtered application list, and moving any deadline
of an application (the applicant's revision window, a review task's, the agreement's, a
report's).

Interventions are Updates of the application's workflows with a validator and a required
reason, recorded in the audit trail with the admin's name: nothing an admin does bypasses a
workflow. The interventions of one stage live with it (services/review.py,
services/application.py, services/programme.py)."""

from __future__ import annotations

import uuid

from grantflow.services import agreement as agreement_service
from grantflow.services import application, review
from grantflow.services.application import Send
from grantflow.services.context import Caller, Resources, require
from grantflow.services.errors import Conflict, Invalid
from grantflow.services.updates import send
from grantflow.store import admin
from schemas.admin import AdminApplicationPage, DeadlineKind, DeadlineMove, DeadlineRequest
from schemas.application import ApplicationPublic
from schemas.common import Role, Stage
from schemas.review import DeadlineExtension
from workflows.agreement import AgreementWorkflow
from workflows.application import ApplicationWorkflow

# The stages in which an application has an agreement (and its reports) to extend.
_WITH_AGREEMENT = {Stage.approved, Stage.agreement, Stage.piloting, Stage.reporting}


async def page(
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
    """Every application matching all the filters given, newest first, `limit` at a time
    (admins): `overdue` keeps those with a deadline passed (the applicant's, a review's or a
    report's), `flagged` those waiting for an admin. A page's `next_cursor` given as `cursor`
    gives the next page (a bad cursor is Invalid). With `total` matching and the count in
    each stage (ignoring the stage filter)."""
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


async def move_deadline(
    res: Resources, caller: Caller, application_id: str, body: DeadlineMove
) -> ApplicationPublic:
    """Move a deadline of an open application later, with a reason (admins): the applicant's
    revision window (`revision`), a review task's (`review`, with `task_id`), the window to
    accept the agreement (`agreement`) or a report's (`report`, with `seq`). Whoever must act
    is shown the new deadline. A missing `task_id` or a misplaced `seq` is Invalid; an
    agreement's deadline before there is one, or a deadline not later than the current one,
    is a Conflict."""
    return await application.intervene(res, caller, application_id, _mover(res, caller, body))


def _mover(res: Resources, caller: Caller, body: DeadlineMove) -> Send:
    """What sends the Update that moves the deadline of the kind asked for."""
    request = DeadlineRequest(
        actor=caller.actor, reason=body.reason, until=body.until, seq=body.seq
    )

    async def review_task(found: ApplicationPublic) -> None:
        if body.task_id is None:
            raise Invalid("task_id is required")
        extension = DeadlineExtension(until=body.until, reason=body.reason)
        await review.move_deadline(res, caller, body.task_id, extension, application_id=found.id)

    async def revision(found: ApplicationPublic) -> None:
        await send(
            res, application.workflow(res, found.id), ApplicationWorkflow.extend_revision, request
        )

    async def agreement(found: ApplicationPublic) -> None:
        if (body.kind == DeadlineKind.report) != (body.seq is not None):
            raise Invalid("seq is required for a report, only then")
        if found.stage not in _WITH_AGREEMENT:
            raise Conflict(f"the application has no agreement: it is {found.stage}")
        await send(
            res,
            agreement_service.handle(res, uuid.UUID(found.id)),
            AgreementWorkflow.extend_deadline,
            request,
        )

    if body.kind == DeadlineKind.review:
        return review_task
    return revision if body.kind == DeadlineKind.revision else agreement
