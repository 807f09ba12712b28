"""Exports of a programme as CSV or JSON: one stream per dataset, used by the API's download
and by `grantflow export`, which writes every dataset to a folder with a progress bar."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from grantflow.services.context import Caller, Resources, require
from grantflow.services.errors import NotFound
from grantflow.services.programme import NOT_FOUND as PROGRAMME_NOT_FOUND
from grantflow.store import Conn, exports
from schemas.admin import Dataset, ExportFormat
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
