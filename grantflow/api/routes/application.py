"""Applications: submit, read, revise, withdraw, and the timeline of what happened."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Response, status
from temporalio.client import WithStartWorkflowOperation
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
)

from grantflow.api.deps import Applicant, ApplicantOrAdmin, Caller, CurrentCaller, DbConn, Res
from grantflow.api.routes.programme import intake_refusal
from grantflow.services.waiting import application_workflow_id as workflow_id
from grantflow.store import application, audit, programme
from schemas.application import (
    ApplicationContent,
    ApplicationCreate,
    ApplicationPage,
    ApplicationPublic,
    ApplicationStart,
    RevisionRequest,
    TimelineEntry,
    WithdrawalCreate,
    WithdrawalRequest,
)
from schemas.common import ApiError, InvalidInput, Stage
from workflows.application import PROGRAMME, STAGE, ApplicationWorkflow

router = APIRouter(prefix="/v1/applications", tags=["applications"])
IDEMPOTENCY_NAMESPACE = uuid.UUID("0f6b3c1e-1d2a-4c55-8a77-51f0b8e4a6d2")
NOT_FOUND = "application not found"


def _uuid(value: str, what: str = NOT_FOUND) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, what) from None


async def visible(conn: DbConn, caller: Caller, application_id: str) -> ApplicationPublic:
    """The application if the caller may see it; another applicant's is a 404, not a 403,
    so that ids reveal nothing."""
    found = await application.get(conn, _uuid(application_id))
    if found is None or not (caller.is_admin or found.applicant_id == caller.actor.user_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND)
    return found


async def open_application(conn: DbConn, caller: Caller, application_id: str) -> ApplicationPublic:
    """The application if the caller may see it and it is at an open stage (else 409)."""
    found = await visible(conn, caller, application_id)
    if found.stage.is_final:
        raise HTTPException(status.HTTP_409_CONFLICT, f"the application is already {found.stage}")
    return found


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ApplicationPublic,
    responses={
        200: {
            "description": "A retry with the same Idempotency-Key: the same "
            "application, not a second one."
        },
        404: {"model": ApiError, "description": "No such programme."},
        409: {"model": ApiError, "description": "Intake is not open."},
        422: {"model": InvalidInput, "description": "Invalid input, every field error listed."},
    },
)
async def submit(
    body: ApplicationCreate,
    caller: Applicant,
    conn: DbConn,
    res: Res,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=200,
            description="Retries with the same key return the same application.",
        ),
    ] = None,
) -> ApplicationPublic:
    """Apply to a programme. The application is screened at once by its workflow; read its
    stage and what is expected of you from the response or `GET /v1/applications/{id}`."""
    digest = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
    applicant = uuid.UUID(caller.actor.user_id)
    if idempotency_key:
        seen = await application.by_idempotency_key(conn, applicant, idempotency_key)
        if seen is not None:
            if seen["request_digest"] != digest:
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_CONTENT,
                    "this Idempotency-Key was used for a different application",
                )
            response.status_code = status.HTTP_200_OK
            return await visible(conn, caller, str(seen["id"]))
    start_of = await programme.get_start(conn, _uuid(body.programme_id, "programme not found"))
    public = await programme.get(conn, uuid.UUID(body.programme_id)) if start_of else None
    if start_of is None or public is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "programme not found")
    now = datetime.now(UTC)
    if (refusal := intake_refusal(public, now)) is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, refusal)
    if caller.organisation_type is None:
        raise HTTPException(status.HTTP_409_CONFLICT, "your account has no institution")
    application_id = str(
        uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{applicant}:{idempotency_key}")
        if idempotency_key
        else uuid.uuid4()
    )
    start = ApplicationStart(
        application_id=application_id,
        applicant=caller.actor,
        organisation_type=caller.organisation_type,
        programme=start_of,
        content=ApplicationContent.model_validate(body.model_dump(exclude={"programme_id"})),
        submitted_at=now,
        idempotency_key=idempotency_key,
        request_digest=digest,
    )
    wf_id = workflow_id(application_id)
    # Update-with-start: concurrent retries share one workflow (USE_EXISTING) and one update
    # id, so all of them get the same application once it is on record.
    await res.client.execute_update_with_start_workflow(
        ApplicationWorkflow.registered,
        id="registered",
        start_workflow_operation=WithStartWorkflowOperation(
            ApplicationWorkflow.run,
            start,
            id=wf_id,
            task_queue=res.settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(PROGRAMME, start_of.programme_id),
                    SearchAttributePair(STAGE, Stage.submitted.value),
                ]
            ),
        ),
    )
    return await visible(conn, caller, application_id)


@router.get("", response_model=ApplicationPage)
async def list_applications(
    caller: ApplicantOrAdmin,
    conn: DbConn,
    programme_id: uuid.UUID | None = None,
    stage: Stage | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ApplicationPage:
    """Applications, newest first: an applicant sees its own, an admin all. Pass the
    `next_cursor` of a page as `cursor` to get the next one."""
    try:
        items, next_cursor = await application.page(
            conn,
            limit=limit,
            cursor=cursor,
            programme_id=programme_id,
            stage=stage,
            applicant_id=None if caller.is_admin else uuid.UUID(caller.actor.user_id),
        )
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return ApplicationPage(items=items, next_cursor=next_cursor)


@router.get(
    "/{application_id}", response_model=ApplicationPublic, responses={404: {"model": ApiError}}
)
async def get_application(
    application_id: str, caller: CurrentCaller, conn: DbConn
) -> ApplicationPublic:
    """One application: its stage, what is expected of the applicant (`action_required`)
    and by when (`deadline`), and the screening findings."""
    return await visible(conn, caller, application_id)


@router.get(
    "/{application_id}/timeline",
    response_model=list[TimelineEntry],
    responses={404: {"model": ApiError}},
)
async def timeline(application_id: str, caller: CurrentCaller, conn: DbConn) -> list[TimelineEntry]:
    """Everything that happened to the application, oldest first."""
    await visible(conn, caller, application_id)
    entries = [
        TimelineEntry.model_validate({**dict(r), "detail": json.loads(r["detail"])})
        for r in await audit.for_application(conn, uuid.UUID(application_id))
    ]
    return entries if caller.is_admin else [e for e in map(_blind, entries) if e is not None]


# What an applicant may see of the review stage: that reviews came in, never from whom.
_APPLICANT_REVIEW_EVENTS = {"review_submitted", "review_extra_reviewer"}


def _blind(entry: TimelineEntry) -> TimelineEntry | None:
    if not entry.kind.startswith("review_"):
        return entry
    if entry.kind not in _APPLICANT_REVIEW_EVENTS:
        return None
    return entry.model_copy(
        update={"actor_role": None, "actor_name": None, "reason": None, "detail": {}}
    )


@router.post(
    "/{application_id}/revision",
    response_model=ApplicationPublic,
    responses={404: {"model": ApiError}, 409: {"model": ApiError}},
)
async def revise(
    application_id: str, body: ApplicationContent, caller: CurrentCaller, conn: DbConn, res: Res
) -> ApplicationPublic:
    """Send the revised application while it is `revision_requested`. It is screened again
    at once; the response shows the outcome."""
    await open_application(conn, caller, application_id)
    handle = res.client.get_workflow_handle(workflow_id(application_id))
    await handle.execute_update(
        ApplicationWorkflow.revise, RevisionRequest(actor=caller.actor, content=body)
    )
    return await visible(conn, caller, application_id)


@router.post(
    "/{application_id}/withdrawal",
    response_model=ApplicationPublic,
    responses={404: {"model": ApiError}, 409: {"model": ApiError}},
)
async def withdraw(
    application_id: str, body: WithdrawalCreate, caller: CurrentCaller, conn: DbConn, res: Res
) -> ApplicationPublic:
    """Withdraw the application at any open stage (its applicant, or an admin on its behalf)."""
    await open_application(conn, caller, application_id)
    handle = res.client.get_workflow_handle(workflow_id(application_id))
    await handle.execute_update(
        ApplicationWorkflow.withdraw, WithdrawalRequest(actor=caller.actor, reason=body.reason)
    )
    return await visible(conn, caller, application_id)
