"""Exports of a programme as CSV or JSON: one stream per dataset, used by the API's download
and by `grantflow export`, which writes every dataset to a folder with a progress bar."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from grantflow.services import admin
from grantflow.services.context import Caller, Resources, require
from grantflow.services.errors import NotFound
from grantflow.services.programme import NOT_FOUND as PROGRAMME_NOT_FOUND
from grantflow.store import Conn, exports
from schemas.admin import AdminApplicationPage, Dataset, ExportFormat
from schemas.common import Role


async def stream(
    conn: Conn,
    dataset: Dataset,
    programme_id: uuid.UUID,
    fmt: ExportFormat,
    on_row: Callable[[], None] | None = None,
) -> AsyncIterator[str]:
    """The dataset as text chunks: a CSV header then one line per row, or a JSON array."""
    async with conn.transaction(readonly=True):
        if fmt == ExportFormat.csv:
            lines = exports.CsvLines(await exports.columns(conn, dataset))
            yield lines.header()
        else:
            yield "["
        first = True
        async for row in exports.rows(conn, dataset, programme_id):
            yield lines.line(row) if fmt == ExportFormat.csv else exports.json_chunk(row, first)
            first = False
            if on_row is not None:
                on_row()
        if fmt == ExportFormat.json:
            yield "\n]\n"


async def download(
    res: Resources, caller: Caller, programme_id: uuid.UUID, dataset: Dataset, fmt: ExportFormat
) -> AsyncIterator[str]:
    """One dataset of the programme as CSV or a JSON array, streamed (admins). Reviews are
    anonymised, decisions carry no member's vote. NotFound for an unknown programme, raised
    here, before the first chunk, so that a download can still answer with a 404."""
    await _exported(res, caller, programme_id)
    return _streamed(res, dataset, programme_id, fmt)


async def _streamed(
    res: Resources, dataset: Dataset, programme_id: uuid.UUID, fmt: ExportFormat
) -> AsyncIterator[str]:
    # Its own connection for as long as the download lasts, not one borrowed per statement.
    async with res.pool.acquire() as conn:
        async for chunk in stream(conn, dataset, programme_id, fmt):
            yield chunk


async def to_folder(
    res: Resources,
    caller: Caller,
    programme_id: uuid.UUID,
    fmt: ExportFormat,
    out: Path,
    progress: Callable[[Dataset, int], Callable[[], None]],
) -> list[Path]:
    """Write every dataset to `out/<dataset>.<format>`, making `out` if need be (admins);
    `progress(dataset, total)` returns what to call after each row. Returns the files
    written. NotFound for an unknown programme, before anything is written."""
    await _exported(res, caller, programme_id)
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    written = []
    async with res.pool.acquire() as conn:
        for dataset in Dataset:
            advance = progress(dataset, await exports.count(conn, dataset, programme_id))
            path = out / f"{dataset.value}.{fmt.value}"
            with path.open("w", encoding="utf-8", newline="") as file:
                async for chunk in stream(conn, dataset, programme_id, fmt, advance):
                    file.write(chunk)
            written.append(path)
    return written


async def _exported(res: Resources, caller: Caller, programme_id: uuid.UUID) -> None:
    require(caller, Role.admin)
    if not await res.pool.fetchval(exports.PROGRAMME_EXISTS_SQL, programme_id):
        raise NotFound(PROGRAMME_NOT_FOUND)


# The filtered list's columns, in the order of the admins' list.
LIST_COLUMNS = (
    "id", "title", "programme_id", "institution_id", "specialty", "stage", "requested_rub",
    "approved_rub", "review_score", "deadline", "overdue", "flag_reason", "submitted_at",
    "updated_at",
)  # fmt: skip
LIST_PAGE = 200


async def filtered_applications(
    res: Resources, caller: Caller, **filters: Any
) -> AsyncIterator[str]:
    """The admins' filtered application list as CSV (admins): exactly what
    services/admin.py's `page` lists with the same filters (`programme_id`, `stages`,
    `institution_id`, `specialty`, `overdue`, `flagged`), newest first, every page of it. Its
    refusals (Forbidden, a bad filter) are raised here, before the first line."""
    first = await admin.page(res, caller, limit=LIST_PAGE, **filters)
    return _list_lines(res, caller, first, filters)


async def _list_lines(
    res: Resources, caller: Caller, found: AdminApplicationPage, filters: dict[str, Any]
) -> AsyncIterator[str]:
    yield _csv_row(LIST_COLUMNS)
    while True:
        for item in found.items:
            values = item.model_dump(mode="json")
            yield _csv_row(["" if values[c] is None else values[c] for c in LIST_COLUMNS])
        if found.next_cursor is None:
            return
        found = await admin.page(res, caller, limit=LIST_PAGE, cursor=found.next_cursor, **filters)


def _csv_row(values: Sequence[object]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(values)
    return out.getvalue()
