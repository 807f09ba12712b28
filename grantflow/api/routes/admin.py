"""What admins need to find anything and keep it moving: the filtered application list, the
flagged queue, overdue tasks, every task and review of an application, and the interventions
(add or reassign a reviewer, extend any deadline, re-run screening, cancel).

Interventions are Updates of the application's workflows with a validator and a required
reason, recorded in the audit trail with the admin's name: nothing an admin does bypasses the
workflow. (Withdrawing on the applicant's behalf is `POST /v1/applications/{id}/withdrawal`
with an admin's token.)"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from temporalio.client import WithStartWorkflowOperation
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
)

from grantflow.api.deps import Admin, DbConn, Res
from grantflow.api.routes.review import REFUSALS, own_task, send_update
from grantflow.services import application as application_service
from grantflow.store import admin, application, programme, review
from grantflow.store.review import inbox_item
from schemas.admin import (
    AdminAction,
    AdminApplicationPage,
    DeadlineKind,
    DeadlineMove,
    DeadlineRequest,
    InterventionCreate,
    ReassignCreate,
    ReassignRequest,
    RescreenRequest,
)
from schemas.application import ApplicationPublic
from schemas.common import ApiError, InvalidInput, Stage
from schemas.programme import (
    CorrectionPublic,
    ProgrammeChanges,
    ProgrammeCorrection,
    ProgrammeCorrectionCreate,
    ProgrammePublic,
)
from schemas.review import (
    AddReviewerRequest,
    ApplicationReviews,
    DeadlineExtension,
    ExtendRequest,
    FlaggedPage,
    InboxItem,
    InboxPage,
    ReviewerAdd,
)
from workflows import ids
from workflows.agreement import AgreementWorkflow
from workflows.application import PROGRAMME, ApplicationWorkflow
from workflows.programme import ProgrammeWorkflow
from workflows.review import ReviewWorkflow

router = APIRouter(prefix="/v1/admin", tags=["admin"])


def _page_error(exc: ValueError) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc))


@router.get(
    "/applications", response_model=AdminApplicationPage, responses={422: {"model": InvalidInput}}
)
async def find_applications(
    _: Admin,
    db: DbConn,
    programme_id: uuid.UUID | None = None,
    stage: Annotated[list[Stage] | None, Query(description="One or more stages.")] = None,
    institution_id: str | None = None,
    specialty: str | None = None,
    overdue: Annotated[
        bool, Query(description="Only those with a deadline passed (applicant, review, report).")
    ] = False,
    flagged: Annotated[bool, Query(description="Only those waiting for an admin.")] = False,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> AdminApplicationPage:
    """Every application matching all the filters given, newest first, `limit` at a time
    (pass a page's `next_cursor` as `cursor` for the next), with `total` matching and the
    count in each stage (`by_stage`, ignoring the stage filter)."""
    filters = admin.Filters(
        programme_id=programme_id,
        stages=tuple(stage or ()),
        institution_id=institution_id,
        specialty=specialty,
        overdue=overdue,
        flagged=flagged,
    )
    try:
        return await admin.page(db, filters, limit=limit, cursor=cursor)
    except ValueError as exc:
        raise _page_error(exc) from None


@router.get("/applications/flagged", response_model=FlaggedPage)
async def flagged(
    _: Admin,
    db: DbConn,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> FlaggedPage:
    """Applications waiting for an admin (for example: no eligible expert left), the longest
    waiting first, with the reason. Adding a reviewer clears the flag."""
    try:
        items, next_cursor = await review.flagged(db, cursor=cursor, limit=limit)
    except ValueError as exc:
        raise _page_error(exc) from None
    return FlaggedPage(items=items, next_cursor=next_cursor)


@router.get("/reviews/overdue", response_model=InboxPage)
async def overdue(
    _: Admin,
    db: DbConn,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> InboxPage:
    """Open review tasks past their deadline, the longest overdue first, with the reviewer."""
    try:
        items, next_cursor = await review.overdue(db, cursor=cursor, limit=limit)
    except ValueError as exc:
        raise _page_error(exc) from None
    return InboxPage(items=items, next_cursor=next_cursor)


@router.get(
    "/applications/{application_id}/reviews",
    response_model=ApplicationReviews,
    responses={404: {"model": ApiError}},
)
async def application_reviews(
    application_id: uuid.UUID, _: Admin, db: DbConn
) -> ApplicationReviews:
    """Every review task of the application (who, status, deadline) and every review with
    its author."""
    found = await application.flag(db, application_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "application not found")
    return ApplicationReviews(
        application_id=str(application_id),
        tasks=await review.application_tasks(db, application_id),
        reviews=[r for _, r in await review.reviews(db, application_id)],
        flag_reason=found[0],
    )


@router.post(
    "/applications/{application_id}/reviewers",
    response_model=InboxItem,
    status_code=status.HTTP_201_CREATED,
    responses=REFUSALS,
)
async def add_reviewer(
    application_id: uuid.UUID, body: ReviewerAdd, caller: Admin, db: DbConn, res: Res
) -> InboxItem:
    """Offer the application to a reviewer you choose, with a reason (it clears a flag). A
    reviewer from the applicant's or a partner's institution, or one already offered this
    application, is refused."""
    if await application.flag(db, application_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "application not found")
    handle = res.client.get_workflow_handle(ids.review(str(application_id)))
    task = await handle.execute_update(
        ReviewWorkflow.add_reviewer,
        AddReviewerRequest(actor=caller.actor, reviewer_id=body.reviewer_id, reason=body.reason),
    )
    row = await review.task(db, uuid.UUID(task.task_id))
    assert row is not None  # the update returns once the task is on record
    return inbox_item(row, with_reviewer=True)


@router.post("/reviews/{task_id}/deadline", response_model=InboxItem, responses=REFUSALS)
async def extend_deadline(
    task_id: str, body: DeadlineExtension, caller: Admin, db: DbConn, res: Res
) -> InboxItem:
    """Move an open task's current deadline (to accept, or to submit) later, with a reason.
    The reviewer is notified and reminded again before the new deadline."""
    row = await own_task(db, caller, task_id)
    await send_update(
        res,
        str(row["application_id"]),
        ReviewWorkflow.extend_deadline,
        ExtendRequest(actor=caller.actor, task_id=task_id, until=body.until, reason=body.reason),
    )
    return inbox_item(await own_task(db, caller, task_id), with_reviewer=True)


_WITH_AGREEMENT = {Stage.approved, Stage.agreement, Stage.piloting, Stage.reporting}


@router.post(
    "/applications/{application_id}/deadlines",
    response_model=ApplicationPublic,
    responses={**REFUSALS, 422: {"model": InvalidInput}},
)
async def move_deadline(
    application_id: uuid.UUID, body: DeadlineMove, caller: Admin, db: DbConn, res: Res
) -> ApplicationPublic:
    """Move a deadline of the application later, with a reason: the applicant's revision
    window (`revision`), a review task's (`review`, with `task_id`), the window to accept the
    agreement (`agreement`) or a report's (`report`, with `seq`). Whoever must act is shown the
    new deadline; the audit records it with your name and reason."""
    found = await application_service.get_open(res, caller, str(application_id))
    app_id = str(application_id)
    request = DeadlineRequest(
        actor=caller.actor, reason=body.reason, until=body.until, seq=body.seq
    )
    if body.kind == DeadlineKind.review:
        if body.task_id is None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "task_id is required")
        row = await own_task(db, caller, body.task_id)
        if str(row["application_id"]) != app_id:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such task on this application")
        await send_update(
            res,
            app_id,
            ReviewWorkflow.extend_deadline,
            ExtendRequest(
                actor=caller.actor, task_id=body.task_id, until=body.until, reason=body.reason
            ),
        )
    elif body.kind == DeadlineKind.revision:
        handle = res.client.get_workflow_handle(ids.application(app_id))
        await handle.execute_update(ApplicationWorkflow.extend_revision, request)
    else:
        if (body.kind == DeadlineKind.report) != (body.seq is not None):
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, "seq is required for a report, only then"
            )
        if found.stage not in _WITH_AGREEMENT:
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"the application has no agreement: it is {found.stage}"
            )
        handle = res.client.get_workflow_handle(ids.agreement(app_id))
        await handle.execute_update(AgreementWorkflow.extend_deadline, request)
    return await application_service.get(res, caller, str(application_id))


@router.post(
    "/reviews/{task_id}/reassignment",
    response_model=ApplicationReviews,
    responses={**REFUSALS, 422: {"model": InvalidInput}},
)
async def reassign(
    task_id: str, body: ReassignCreate, caller: Admin, db: DbConn, res: Res
) -> ApplicationReviews:
    """Take an open review task away from its reviewer, with a reason: to the reviewer named
    (checked for conflicts of interest), or to the next eligible expert. The reviewer is told;
    the application's tasks are returned."""
    row = await own_task(db, caller, task_id)
    await send_update(
        res,
        str(row["application_id"]),
        ReviewWorkflow.reassign,
        ReassignRequest(
            actor=caller.actor, reason=body.reason, task_id=task_id, reviewer_id=body.reviewer_id
        ),
    )
    return await application_reviews(row["application_id"], caller, db)


@router.post(
    "/applications/{application_id}/screening",
    response_model=ApplicationPublic,
    responses={**REFUSALS, 422: {"model": InvalidInput}},
)
async def rescreen(
    application_id: uuid.UUID, body: InterventionCreate, caller: Admin, db: DbConn, res: Res
) -> ApplicationPublic:
    """Screen an application awaiting revision again, against its programme as it stands now
    (after a correction), with a reason; the response shows the new outcome."""
    found = await application_service.get_open(res, caller, str(application_id))
    start = await programme.get_start(db, uuid.UUID(found.programme_id))
    assert start is not None  # an application's programme is never deleted
    handle = res.client.get_workflow_handle(ids.application(str(application_id)))
    await handle.execute_update(
        ApplicationWorkflow.rescreen,
        RescreenRequest(actor=caller.actor, reason=body.reason, programme=start),
    )
    return await application_service.get(res, caller, str(application_id))


@router.post(
    "/applications/{application_id}/cancellation",
    response_model=ApplicationPublic,
    responses={**REFUSALS, 422: {"model": InvalidInput}},
)
async def cancel(
    application_id: uuid.UUID, body: InterventionCreate, caller: Admin, db: DbConn, res: Res
) -> ApplicationPublic:
    """Cancel a stuck application at any open stage, with a reason: its review, agreement or
    pilot stops, and any money reserved for it is back in the budget when this returns."""
    await application_service.get_open(res, caller, str(application_id))
    handle = res.client.get_workflow_handle(ids.application(str(application_id)))
    await handle.execute_update(
        ApplicationWorkflow.cancel, AdminAction(actor=caller.actor, reason=body.reason)
    )
    return await application_service.get(res, caller, str(application_id))


@router.post(
    "/programmes/{programme_id}/corrections",
    response_model=ProgrammePublic,
    responses={**REFUSALS, 422: {"model": InvalidInput}},
)
async def correct_programme(
    programme_id: uuid.UUID, body: ProgrammeCorrectionCreate, caller: Admin, db: DbConn, res: Res
) -> ProgrammePublic:
    """Correct screening rules entered wrong (maximum grant, admitted organisation types,
    specialties, the complex-project share and annual cap), with a reason; the intake window
    cannot be corrected. Applications submitted from now on are screened by the corrected rules;
    one awaiting revision is screened by them when you re-run its screening
    (`POST /v1/admin/applications/{id}/screening`). An application already `ineligible` has
    ended and stays so. The correction goes through the programme's workflow (a fresh run of it
    once intake has closed) and is on record, with your name, when this returns."""
    current = await programme.get_start(db, programme_id)
    if current is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "programme not found")
    correction_id = str(uuid.uuid4())
    changes = ProgrammeChanges.model_validate(body.model_dump(exclude={"reason"}))
    await res.client.execute_update_with_start_workflow(
        ProgrammeWorkflow.correct,
        ProgrammeCorrection(
            correction_id=correction_id, actor=caller.actor, reason=body.reason, changes=changes
        ),
        id=f"correction-{correction_id}",
        # Running: the update goes to it. Ended (intake closed): a fresh run of the programme as
        # on record takes it, finds intake closed, and ends once the correction is written.
        start_workflow_operation=WithStartWorkflowOperation(
            ProgrammeWorkflow.run,
            current,
            id=ids.programme(programme_id),
            task_queue=res.settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(PROGRAMME, str(programme_id))]
            ),
        ),
    )
    corrected = await programme.get(db, programme_id)
    assert corrected is not None
    return corrected


@router.get(
    "/programmes/{programme_id}/corrections",
    response_model=list[CorrectionPublic],
    responses={404: {"model": ApiError}},
)
async def programme_corrections(
    programme_id: uuid.UUID, _: Admin, db: DbConn
) -> list[CorrectionPublic]:
    """Every correction of the programme, oldest first: who, when, why, and each changed
    field's old and new value."""
    if await programme.get(db, programme_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "programme not found")
    return await programme.corrections(db, programme_id)
