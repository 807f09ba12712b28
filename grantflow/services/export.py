"""Exports of a programme as CSV or JSON: one stream per dataset, used by the API's download
and by `grantflow export`, which writes every dataset to a folder with a progress bar."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg

from grantflow.store import Conn, exports
from schemas.admin import Dataset, ExportFormat


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


async def to_folder(
    url: str,
    programme_id: uuid.UUID,
    fmt: ExportFormat,
    out: Path,
    progress: Callable[[Dataset, int], Callable[[], None]],
) -> list[Path]:
    """Write every dataset to `out/<dataset>.<format>`; `progress(dataset, total)` returns
    what to call after each row. `out` must exist. Returns the files written."""
    conn = await asyncpg.connect(url)
    written = []
    try:
        for dataset in Dataset:
            advance = progress(dataset, await exports.count(conn, dataset, programme_id))
            path = out / f"{dataset.value}.{fmt.value}"
            with path.open("w", encoding="utf-8", newline="") as file:
                async for chunk in stream(conn, dataset, programme_id, fmt, advance):
                    file.write(chunk)
            written.append(path)
    finally:
        await conn.close()
    return written


async def programme_exists(url: str, programme_id: uuid.UUID) -> bool:
    conn = await asyncpg.connect(url)
    try:
        return bool(await conn.fetchval(exports.PROGRAMME_EXISTS_SQL, programme_id))
    finally:
        await conn.close()
