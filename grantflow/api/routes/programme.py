"""Programmes: calls for applications, created by admins, read by everyone signed in."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from grantflow.api.deps import Admin, CurrentCaller, Res
from grantflow.services import programme
from schemas.common import ApiError, InvalidInput
from schemas.programme import (
    ProgrammeCreate,
    ProgrammePublic,
)

router = APIRouter(prefix="/v1/programmes", tags=["programmes"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ProgrammePublic,
    responses={403: {"model": ApiError}, 422: {"model": InvalidInput}},
)
async def create_programme(body: ProgrammeCreate, caller: Admin, res: Res) -> ProgrammePublic:
    """Open a call for applications. Its workflow opens and closes intake on time. A project
    owes at most 52 progress and financial reports per project year (`tranche_interval`)."""
    return await programme.create(res, caller, body)


@router.get("", response_model=list[ProgrammePublic])
async def list_programmes(
    caller: CurrentCaller, res: Res, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[ProgrammePublic]:
    """Programmes, newest first."""
    return await programme.list_recent(res, caller, limit)


@router.get("/{programme_id}", response_model=ProgrammePublic, responses={404: {"model": ApiError}})
async def get_programme(
    programme_id: uuid.UUID, caller: CurrentCaller, res: Res
) -> ProgrammePublic:
    """One programme with its intake state and parameters."""
    return await programme.get(res, caller, programme_id)
