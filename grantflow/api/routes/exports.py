"""Admins download a programme's records: applications, reviews (blind: no reviewer's
identity), council decisions (no member's vote), the budget ledger and reports."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from grantflow.api.deps import Admin, Res
from grantflow.services import export as export_service
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
    caller: Admin,
    res: Res,
    format: ExportFormat = ExportFormat.csv,
) -> StreamingResponse:
    """One dataset of the programme as CSV (a header, then a row per record) or a JSON array,
    streamed. Reviews are anonymised as the blindness rules require (`reviewer 1`, `reviewer 2`
    … per application, in the order the reviews came in); decisions carry their reasons, never
    the members' votes. `grantflow export` writes every dataset to a folder."""
    body = await export_service.download(res, caller, programme_id, dataset, format)
    filename = f"{dataset.value}-{programme_id}.{format.value}"
    return StreamingResponse(
        body,
        media_type=MEDIA[format],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
