"""Inboxes and admin queues at scale: 100,000 review tasks, read through their indexes, and
pages that follow each other without gaps or repeats."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import pytest

from grantflow.dev.embedded import EmbeddedPostgres
from grantflow.store import application as applications_store
from grantflow.store import notifications as notifications_store
from grantflow.store import review as reviews_store
from schemas.common import Role
from tests.conftest import (
    SESSION,
    Stack,
    User,
    UserFactory,
    application_body,
    create_programme,
    fresh_database,
)

pytestmark = [SESSION, pytest.mark.system]

# 100,000 tasks for 1,000 reviewers over 50,000 applications; a tenth flagged, some overdue.
# Loaded as a replica applies rows (session_replication_role): no foreign-key check and no
# per-row trigger, whose 50,000 updates of one stage counter took minutes on a loaded machine;
# the rows reference each other by construction, and the counters are then counted once, as
# migration 0010 does.
SEED_SQL = """
SET session_replication_role = replica;
INSERT INTO users (id, name, role, specialty, token_hash)
SELECT ('00000000-0000-0000-0000-' || lpad(to_hex(g), 12, '0'))::uuid, 'user ' || g,
       CASE WHEN g = 1 THEN 'admin' WHEN g <= 1001 THEN 'reviewer' ELSE 'applicant' END,
       'cardiology', decode(md5(g::text), 'hex')
FROM generate_series(1, 1101) g;
INSERT INTO programmes (id, name, budget_rub, max_grant_rub, organisation_types, specialties,
                        intake_opens, intake_closes, complex_share_limit, complex_annual_cap_rub,
                        params, created_by)
VALUES ('00000000-0000-0000-0000-000000000001', 'Scale', 10, 10, '{company}', '{cardiology}',
        now(), now() + interval '1 day', 0.15, 1, '{}',
        '00000000-0000-0000-0000-000000000001');
INSERT INTO applications (id, programme_id, applicant_id, workflow_id, specialty, requested_rub,
                          content, stage, stage_seq, request_digest, submitted_at, updated_at,
                          flag_reason, flagged_at)
SELECT md5('app' || g)::uuid, '00000000-0000-0000-0000-000000000001',
       ('00000000-0000-0000-0000-' || lpad(to_hex(1002 + g % 100), 12, '0'))::uuid,
       'application-' || g, 'cardiology', 1, '{"title": "t"}', 'under_review', 2, 'd',
       now() - g * interval '1 minute', now(),
       CASE WHEN g % 10 = 0 THEN 'no eligible expert' END,
       CASE WHEN g % 10 = 0 THEN now() - g * interval '1 second' END
FROM generate_series(1, 50000) g;
INSERT INTO review_tasks (id, application_id, programme_id, reviewer_id, workflow_id, status,
                          version, offered_at, accept_by, deadline, updated_at)
SELECT md5('task' || g)::uuid, md5('app' || (g % 50000 + 1))::uuid,
       '00000000-0000-0000-0000-000000000001',
       ('00000000-0000-0000-0000-' || lpad(to_hex(2 + (g + g / 50000) % 1000), 12, '0'))::uuid,
       'review-' || g,
       (ARRAY['offered', 'accepted', 'submitted', 'declined', 'expired'])[1 + g % 5],
       1, now(), now() + g * interval '1 second',
       now() + (g - 500) * interval '1 second', now()
FROM generate_series(1, 100000) g;
INSERT INTO notifications (key, user_id, kind, subject, body, created_at)
SELECT 'n' || g, ('00000000-0000-0000-0000-' || lpad(to_hex(2 + g % 1000), 12, '0'))::uuid,
       'reminder', 's', 'b', now()
FROM generate_series(1, 100000) g;
INSERT INTO application_stage_counts (programme_id, stage, n)
SELECT programme_id, stage, count(*) FROM applications GROUP BY programme_id, stage;
RESET session_replication_role;
ANALYZE;
"""
REVIEWER = uuid.UUID("00000000-0000-0000-0000-000000000003")


def plan_nodes(plan: dict[str, Any]) -> list[tuple[str, str | None]]:
    nodes = [(plan["Node Type"], plan.get("Index Name"))]
    for child in plan.get("Plans", []):
        nodes += plan_nodes(child)
    return nodes


@pytest.fixture(scope="module")
async def scale_db(postgres: EmbeddedPostgres) -> Any:
    url = await fresh_database(postgres.url, f"scale_{uuid.uuid4().hex[:8]}")
    conn = await asyncpg.connect(url)
    await conn.execute(SEED_SQL)
    yield conn
    await conn.close()


@pytest.mark.parametrize(
    ("name", "sql", "args", "index"),
    [
        (
            "reviewer inbox",
            reviews_store.INBOX_SQL,
            (REVIEWER, None, None, 51),
            "review_tasks_inbox",
        ),
        (
            "overdue tasks",
            reviews_store.OVERDUE_SQL,
            (None, None, 51),
            "review_tasks_open_by_deadline",
        ),
        (
            "flagged applications",
            reviews_store.FLAGGED_SQL,
            (None, None, 51),
            "applications_flagged",
        ),
        (
            "my notifications",
            notifications_store.PAGE_SQL,
            # As the service asks: account links (sign-in links) hidden from the API.
            (REVIEWER, None, 51, ["account_link"]),
            "notifications_by_user",
        ),
        (
            "applications of a stage",
            applications_store.LIST_APPLICATIONS_SQL,
            (None, None, None, None, "under_review", 51),
            # Every seeded application is under review: newest-first through all of them
            # (migration 0006) reads the same page as through the stage's own index.
            "applications_by_stage applications_newest",
        ),
    ],
)
@pytest.mark.slow
async def test_lists_read_one_page_through_their_index_at_100_000_tasks(
    scale_db: asyncpg.Connection, name: str, sql: str, args: tuple[Any, ...], index: str
) -> None:
    explained = await scale_db.fetchval("EXPLAIN (FORMAT JSON) " + sql, *args)
    nodes = plan_nodes(json.loads(explained)[0]["Plan"])
    assert (
        "Seq Scan",
        None,
    ) not in nodes, f"{name} scans a whole table: {nodes}"
    assert any(i in index.split() for _, i in nodes), f"{name} does not use {index}: {nodes}"


async def test_a_reviewer_pages_through_a_long_inbox_soonest_deadline_first(
    stack: Stack, make_user: UserFactory, admin: User
) -> None:
    reviewer = await make_user(Role.reviewer, specialty="inbox-paging")
    programme = uuid.UUID((await create_programme(stack, admin))["id"])
    content = application_body(str(programme), title="Paging", specialty="inbox-paging")
    del content["programme_id"]
    async with stack.pool.acquire() as conn:
        await conn.execute(
            """
            INSERT INTO applications (id, programme_id, applicant_id, workflow_id, specialty,
                                      requested_rub, content, stage, stage_seq, request_digest,
                                      submitted_at, updated_at)
            SELECT md5($1 || g)::uuid, $2, $3, 'application-' || md5($1 || g), 'inbox-paging', 1,
                   $4::jsonb, 'under_review', 2, 'd', now(), now()
            FROM generate_series(1, 120) g""",
            reviewer.id,
            programme,
            uuid.UUID(admin.id),
            # Whole content, as a workflow would record it: admins' lists read every row.
            json.dumps(content),
        )
        await conn.execute(
            """
            INSERT INTO review_tasks (id, application_id, programme_id, reviewer_id, workflow_id,
                                      status, version, offered_at, accept_by, deadline, updated_at)
            SELECT md5($1 || 't' || g)::uuid, md5($1 || g)::uuid, $2, $3::uuid, 'review-x',
                   'offered', 1, now(), now() + (g % 7) * interval '1 hour',
                   now() + (g % 7) * interval '1 hour', now()
            FROM generate_series(1, 120) g""",
            reviewer.id,
            programme,
            reviewer.id,
        )
    seen: list[tuple[str, str]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 50, **({"cursor": cursor} if cursor else {})}
        response = await stack.api.get("/v1/reviews", params=params, headers=reviewer.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        seen += [(t["deadline"], t["task_id"]) for t in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 120 and len(set(seen)) == 120
    assert seen == sorted(seen)
    bad = await stack.api.get("/v1/reviews", params={"cursor": "nope"}, headers=reviewer.headers)
    assert bad.status_code == 422


async def test_admins_see_overdue_tasks_with_their_reviewers_longest_overdue_first(
    stack: Stack, make_user: UserFactory, admin: User
) -> None:
    # Tasks whose deadline passed without their workflow expiring them: what an admin sees
    # while workers are down. (A running workflow expires a task at its deadline.)
    reviewer = await make_user(Role.reviewer, specialty="overdue-list", name="Dr. Late")
    programme = uuid.UUID((await create_programme(stack, admin))["id"])
    late_content = application_body(str(programme), title="Late", specialty="overdue-list")
    del late_content["programme_id"]
    async with stack.pool.acquire() as conn:
        await conn.execute(
            """
            INSERT INTO applications (id, programme_id, applicant_id, workflow_id, specialty,
                                      requested_rub, content, stage, stage_seq, request_digest,
                                      submitted_at, updated_at)
            SELECT md5($1 || g)::uuid, $2, $3, 'application-' || md5($1 || g), 'overdue-list', 1,
                   $4::jsonb, 'under_review', 2, 'd', now(), now()
            FROM generate_series(1, 3) g""",
            reviewer.id,
            programme,
            uuid.UUID(admin.id),
            # Whole content, as a workflow would record it: admins' lists read every row.
            json.dumps(late_content),
        )
        await conn.execute(
            """
            INSERT INTO review_tasks (id, application_id, programme_id, reviewer_id, workflow_id,
                                      status, version, offered_at, accept_by, deadline, updated_at)
            SELECT md5($1 || 't' || g)::uuid, md5($1 || g)::uuid, $2, $3::uuid, 'review-x',
                   'offered', 1, now(), now() + (g - 2.5) * interval '1 day',
                   now() + (g - 2.5) * interval '1 day', now()
            FROM generate_series(1, 3) g""",
            reviewer.id,
            programme,
            reviewer.id,
        )
    response = await stack.api.get("/v1/admin/reviews/overdue", headers=admin.headers)
    assert response.status_code == 200, response.text
    mine = [t for t in response.json()["items"] if t["reviewer_id"] == reviewer.id]
    assert [t["reviewer_name"] for t in mine] == ["Dr. Late", "Dr. Late"]  # the third is not due
    assert all(t["overdue"] for t in mine)
    assert mine[0]["deadline"] < mine[1]["deadline"]
    forbidden = await stack.api.get("/v1/admin/reviews/overdue", headers=reviewer.headers)
    assert forbidden.status_code == 403
