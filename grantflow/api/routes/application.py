"""Applications: submit, read, revise, withdraw, and the timeline of what happened."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status

from grantflow.api.deps import Applicant, ApplicantOrAdmin, CurrentCaller, Res
from grantflow.services import application
from schemas.application import (
    ApplicationContent,
    ApplicationCreate,
    ApplicationPage,
    ApplicationPublic,
    TimelineEntry,
    WithdrawalCreate,
)
from schemas.common import ApiError, InvalidInput, Stage

router = APIRouter(prefix="/v1/applications", tags=["applications"])


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
    submitted = await application.submit(res, caller, body, idempotency_key)
    if not submitted.created:
        response.status_code = status.HTTP_200_OK
    return submitted.application


@router.get("", response_model=ApplicationPage)
async def list_applications(
    caller: ApplicantOrAdmin,
    res: Res,
    programme_id: uuid.UUID | None = None,
    stage: Stage | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ApplicationPage:
    """Applications, newest first: an applicant sees its own, an admin all. Pass the
    `next_cursor` of a page as `cursor` to get the next one."""
    return await application.page(
        res, caller, programme_id=programme_id, stage=stage, cursor=cursor, limit=limit
    )


@router.get(
    "/{application_id}", response_model=ApplicationPublic, responses={404: {"model": ApiError}}
)
async def get_application(
    application_id: str, caller: CurrentCaller, res: Res
) -> ApplicationPublic:
    """One application: its stage, what is expected of the applicant (`action_required`)
    and by when (`deadline`), and the screening findings."""
    return await application.get(res, caller, application_id)


@router.get(
    "/{application_id}/timeline",
    response_model=list[TimelineEntry],
    responses={404: {"model": ApiError}},
)
async def timeline(application_id: str, caller: CurrentCaller, res: Res) -> list[TimelineEntry]:
    """Everything that happened to the application, oldest first."""
    return await application.timeline(res, caller, application_id)


@router.post(
    "/{application_id}/revision",
    response_model=ApplicationPublic,
    responses={404: {"model": ApiError}, 409: {"model": ApiError}},
)
async def revise(
    application_id: str, body: ApplicationContent, caller: CurrentCaller, res: Res
) -> ApplicationPublic:
    """Send the revised application while it is `revision_requested`. It is screened again
    at once; the response shows the outcome."""
    return await application.revise(res, caller, application_id, body)


@router.post(
    "/{application_id}/withdrawal",
    response_model=ApplicationPublic,
    responses={404: {"model": ApiError}, 409: {"model": ApiError}},
)
async def withdraw(
    application_id: str, body: WithdrawalCreate, caller: CurrentCaller, res: Res
) -> ApplicationPublic:
    """Withdraw the application at any open stage (its applicant, or an admin on its behalf)."""
    return await application.withdraw(res, caller, application_id, body.reason)
