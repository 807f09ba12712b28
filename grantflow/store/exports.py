"""A programme's records for export: applications, reviews (anonymised), decisions, the ledger
and reports, streamed row by row so that a large programme never sits in memory."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from typing import Any

from grantflow.store import Conn
from schemas.admin import Dataset

APPLICATIONS_SQL = """
SELECT id, content ->> 'title' AS title, institution_id, specialty, stage, requested_rub,
       approved_rub, review_score, review_spread, reviews_submitted, outcome, submitted_at,
       updated_at
FROM applications WHERE programme_id = $1 ORDER BY submitted_at, id"""
# Blind, as the applicant and the council see reviews: no reviewer's id, name or institution;
# each application's reviewers are numbered in the order their reviews came in.
REVIEWS_SQL = """
SELECT r.application_id,
       'reviewer ' || row_number() OVER (PARTITION BY r.application_id
                                         ORDER BY r.submitted_at, r.task_id) AS reviewer,
       r.score, r.recommendation, r.scores, r.comments, r.submitted_at
FROM reviews r JOIN applications a ON a.id = r.application_id
WHERE a.programme_id = $1 ORDER BY r.application_id, r.submitted_at, r.task_id"""
# The decision and its reasons; never how each member voted.
DECISIONS_SQL = """
SELECT d.application_id, d.session_id, s.name AS session, d.outcome, d.amount_rub, d.reason,
       d.decided_at
FROM decisions d JOIN council_sessions s ON s.id = d.session_id
WHERE s.programme_id = $1 ORDER BY d.decided_at, d.application_id"""
LEDGER_SQL = """
SELECT id, application_id, kind, amount_rub, reason, at
FROM ledger_entries WHERE programme_id = $1 ORDER BY id"""
REPORTS_SQL = """
SELECT application_id, seq, kind, due_at, status, overdue, submitted_at, reviewed_at, body,
       comment
FROM reports WHERE programme_id = $1 ORDER BY application_id, seq"""
COUNT_APPLICATIONS_SQL = "SELECT count(*) FROM applications WHERE programme_id = $1"
COUNT_REVIEWS_SQL = """
SELECT count(*) FROM reviews r JOIN applications a ON a.id = r.application_id
WHERE a.programme_id = $1"""
COUNT_DECISIONS_SQL = """
SELECT count(*) FROM decisions d JOIN council_sessions s ON s.id = d.session_id
WHERE s.programme_id = $1"""
COUNT_LEDGER_SQL = "SELECT count(*) FROM ledger_entries WHERE programme_id = $1"
COUNT_REPORTS_SQL = "SELECT count(*) FROM reports WHERE programme_id = $1"

QUERIES = {
    Dataset.applications: (APPLICATIONS_SQL, COUNT_APPLICATIONS_SQL),
    Dataset.reviews: (REVIEWS_SQL, COUNT_REVIEWS_SQL),
    Dataset.decisions: (DECISIONS_SQL, COUNT_DECISIONS_SQL),
    Dataset.ledger: (LEDGER_SQL, COUNT_LEDGER_SQL),
    Dataset.reports: (REPORTS_SQL, COUNT_REPORTS_SQL),
}
JSON_COLUMNS = {"scores"}  # jsonb, exported as JSON (a string in CSV)


async def count(conn: Conn, dataset: Dataset, programme_id: uuid.UUID) -> int:
    total: int = await conn.fetchval(QUERIES[dataset][1], programme_id)
    return total


async def rows(
    conn: Conn, dataset: Dataset, programme_id: uuid.UUID
) -> AsyncIterator[dict[str, Any]]:
    """Every row, as plain JSON values. Call in a transaction (a server-side cursor)."""
    async for record in conn.cursor(QUERIES[dataset][0], programme_id, prefetch=500):
        yield {k: _plain(k, v) for k, v in record.items()}


def _plain(column: str, value: Any) -> Any:
    if column in JSON_COLUMNS and isinstance(value, str):
        return json.loads(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


async def columns(conn: Conn, dataset: Dataset) -> list[str]:
    """The dataset's column names, from the statement itself (a CSV header even when empty)."""
    statement = await conn.prepare(QUERIES[dataset][0])
    return [a.name for a in statement.get_attributes()]


class CsvLines:
    """Rows to CSV text, one chunk per row."""

    def __init__(self, fieldnames: list[str]) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.DictWriter(self._buffer, fieldnames=fieldnames)

    def header(self) -> str:
        self._writer.writeheader()
        return self._take()

    def line(self, row: dict[str, Any]) -> str:
        self._writer.writerow(
            {k: json.dumps(v) if k in JSON_COLUMNS else v for k, v in row.items()}
        )
        return self._take()

    def _take(self) -> str:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text


PROGRAMME_EXISTS_SQL = "SELECT EXISTS (SELECT 1 FROM programmes WHERE id = $1)"


def json_chunk(row: dict[str, Any], first: bool) -> str:
    """One element of a JSON array; the caller writes `[` before and `]` after."""
    return ("\n" if first else ",\n") + json.dumps(row, ensure_ascii=False)
