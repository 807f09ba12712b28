"""Admins download a programme's records: applications, reviews (blind: no reviewer's
identity), council decisions (no member's vote), the budget ledger and reports."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import StreamingResponse

from grantflow.api.deps import Admin, DbConn, Res
from grantflow.services.export import stream
from grantflow.store import exports
from schemas.admin import Dataset, ExportFormat
from schemas.common import ApiError

router = APIRouter(prefix="/v1/admin/programmes", tags=["admin"])
MEDIA = {ExportFormat.csv: "text/csv; charset=utf-8", ExportFormat.json: "application/json"}


@router.get(
    "/{programme_id}/export/{dataset}",
    response_class=StreamingResponse,
    responses={
        200: {"content": {MEDIA[ExportFormat.csv]: {}, MEDIA[ExportFormat.json]: {}}},
        404: {"model": ApiError},
    },
)
async def export(
    programme_id: uuid.UUID,
    dataset: Dataset,
    _: Admin,
    db: DbConn,
    res: Res,
    format: ExportFormat = ExportFormat.csv,
) -> StreamingResponse:
    """One dataset of the programme as CSV (a header, then a row per record) or a JSON array,
    streamed. Reviews are anonymised as the blindness rules require (`reviewer 1`, `reviewer 2`
    … per application, in the order the reviews came in); decisions carry their reasons, never
    the members' votes. `grantflow export` writes every dataset to a folder."""
    if not await db.fetchval(exports.PROGRAMME_EXISTS_SQL, programme_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "programme not found")

    async def body() -> AsyncIterator[str]:
        # Its own connection for as long as the download lasts, not one borrowed per statement.
        async with res.pool.acquire() as conn:
            async for chunk in stream(conn, dataset, programme_id, format):
                yield chunk

    filename = f"{dataset.value}-{programme_id}.{format.value}"
    return StreamingResponse(
        body(),
        media_type=MEDIA[format],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
