"""The pages' server time at scale: bulk-load the `bench.queries` data (100,000 applications
with their review tasks, agreements, reports and ledger, by COPY), sign one person of each role
in, and time every page in `PAGES` through the app in-process (httpx's ASGI transport: the
page's whole server side, no network); print p50/p99 per page against the 50 ms target, the
JavaScript + CSS each page loads against 100 KB, and fail when a page asks for anything off its
own host.

The bulk-loaded applications have no workflow, and the admins' application page reads Temporal
(grantflow/services/history.py, waiting.py): the application's `status` Query (a completed
workflow's Stage search attribute instead) and the `waiting_for` Queries down its children,
then the event history of each run of its workflow, its children and its council session
(the events page puts them in words). So the bench also starts the Temporal dev server and
grantflow's worker in-process (bench/harness.py, as the lifecycle bench does), and plays two
applications through the API into the same database with second-scale durations
(bench/drive.py): one to its close
(submission, three reviews, a council session, the agreement, a pilot at one clinic, two
reports), one as far as its first report (left open, its agreement's workflow running). The
worker stays up while the pages are timed: their pages make the Temporal reads production
makes, the Queries answered by it.

    .venv/bin/python -m bench.pages                       # 100,000 applications
    .venv/bin/python -m bench.pages --applications 5000   # a quick check

A new page is one line in PAGES: (name, path, role); the path's {placeholders} are the ids
`subjects` finds in the loaded data for that role's person, and the played applications'
({closed}, {open}).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import time
import uuid
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import asyncpg
import httpx

from bench import drive
from bench.drive import Cohort, after_council, cohort, council, pilot, stage, submit_and_review
from bench.harness import Grantflow, eventually, grantflow, ok, servers
from bench.queries import REVIEWERS, SPECIALTIES, Seed, connect, load
from grantflow.api.app import create_app
from grantflow.db import create_pool
from grantflow.services import account
from grantflow.services.context import Resources
from grantflow.settings import Settings
from tests.support import application_body

TARGET_MS = 50.0
ASSETS_LIMIT = 100 * 1024
PASSWORD = "bench horse battery"  # noqa: S105 - a throwaway database's


@dataclass(frozen=True)
class Page:
    name: str
    path: str  # with {placeholders} from `subjects`
    role: str  # whose session asks for it


# Every page people use day to day; admin, council and coordinator pages add a line each.
PAGES = [
    Page("applicant: dashboard", "/", "applicant"),
    Page("applicant: open calls", "/calls", "applicant"),
    Page("applicant: a call", "/calls/{programme}", "applicant"),
    Page("applicant: application", "/applications/{application}", "applicant"),
    Page("applicant: revision form", "/applications/{revision}/revision", "applicant"),
    Page("applicant: withdraw form", "/applications/{application}/withdraw", "applicant"),
    Page("applicant: draft form", "/drafts/{draft}", "applicant"),
    Page("applicant: draft check", "/drafts/{draft}/review", "applicant"),
    Page("applicant: account", "/account", "applicant"),
    Page("reviewer: inbox", "/reviews", "reviewer"),
    Page("reviewer: past reviews", "/reviews/past", "reviewer"),
    Page("reviewer: task", "/reviews/{task}", "reviewer"),
    Page("reviewer: rubric form", "/reviews/{accepted}/review", "reviewer"),
    Page("reviewer: review check", "/reviews/{accepted}/confirm", "reviewer"),
    Page("admin: dashboard with charts", "/admin?programme_id={programme}", "admin"),
    Page("admin: application list", "/admin/applications", "admin"),
    Page("admin: list, a programme", "/admin/applications?programme_id={programme}", "admin"),
    Page("admin: list, a stage", "/admin/applications?stage=under_review", "admin"),
    Page("admin: list, overdue", "/admin/applications?overdue=1", "admin"),
    Page("admin: application, closed", "/admin/applications/{closed}", "admin"),
    Page("admin: application, open", "/admin/applications/{open}", "admin"),
    # The workflow events in the engine's words, which the application page loads when asked.
    Page("admin: workflow events, closed", "/admin/applications/{closed}/events", "admin"),
    Page("stranger: sign-in", "/sign-in", "stranger"),
]


async def person(pool: asyncpg.Pool, role: str, seed: Seed) -> uuid.UUID:
    """The busiest person of the role in the loaded data (the most applications; the most
    tasks, offered and accepted among them): the worst case of the role's pages."""
    if role == "applicant":
        found = await pool.fetchval(
            "SELECT applicant_id FROM applications GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
        )
    elif role == "reviewer":
        found = await pool.fetchval(
            "SELECT reviewer_id FROM review_tasks GROUP BY 1 HAVING bool_or(status = 'offered') "
            "AND bool_or(status = 'accepted') ORDER BY count(*) DESC LIMIT 1"
        )
    elif role == "admin":
        found = seed.admin
    else:  # council, coordinator: one of their own, as `grantflow users create` makes
        found = uuid.uuid4()
        await pool.execute(
            "INSERT INTO users (id, name, role, token_hash) VALUES ($1, $2, $3, $4)",
            found,
            f"{role} of the bench",
            role,
            found.bytes,
        )
    return cast(uuid.UUID, found)


async def subjects(
    pool: asyncpg.Pool, people: dict[str, uuid.UUID], played: dict[str, str]
) -> dict[str, str]:
    """The ids the pages' paths name: the applicant's own application (open), one awaiting
    its revision, a draft and a call; the reviewer's offered and accepted tasks; the
    applications played through their workflows (`play`: closed, open)."""
    applicant, reviewer = people["applicant"], people["reviewer"]

    async def one(sql: str, *args: Any) -> str:
        found = await pool.fetchval(sql, *args)
        return str(found) if found else str(uuid.uuid4())

    application = await pool.fetchval(
        "SELECT id FROM applications WHERE applicant_id = $1 AND stage = ANY($2::text[]) "
        "ORDER BY id LIMIT 1",
        applicant,
        ["under_review", "reviewed", "in_council", "deferred", "agreement", "piloting"],
    )
    revision = await pool.fetchval(
        "SELECT id FROM applications WHERE applicant_id = $1 AND stage = 'revision_requested' "
        "LIMIT 1",
        applicant,
    ) or await pool.fetchval(  # none of its own awaits changes: another one is sent back
        "UPDATE applications SET stage = 'revision_requested', deadline = now() + "
        "interval '7 days' WHERE id = (SELECT id FROM applications WHERE applicant_id = $1 "
        "AND id <> $2 LIMIT 1) RETURNING id",
        applicant,
        application,
    )
    programme = await one("SELECT programme_id FROM applications WHERE id = $1", revision)
    draft = await one(
        "INSERT INTO drafts (id, applicant_id, programme_id, content) VALUES ($1, $2, $3, $4) "
        "RETURNING id",
        uuid.uuid4(),
        applicant,
        uuid.UUID(programme),
        json.dumps(_content(programme)),
    )
    return {
        "application": str(application),
        "revision": str(revision),
        "programme": programme,
        "draft": draft,
        "task": await one(
            "SELECT id FROM review_tasks WHERE reviewer_id = $1 AND status = 'offered' LIMIT 1",
            reviewer,
        ),
        "accepted": await one(
            "SELECT id FROM review_tasks WHERE reviewer_id = $1 AND status = 'accepted' LIMIT 1",
            reviewer,
        ),
        **played,
    }


async def play(gf: Grantflow) -> dict[str, str]:
    """Two applications through the API and the worker, with second-scale durations: both
    submitted, reviewed by three experts and approved in one council session; then one lives
    to its close, the other accepts its agreement, runs its pilot and has its first report
    accepted, and stays open (its agreement waits for the final report). Then the cohort's
    specialty gets as many reviewers as each of the loaded data's has: the page lists them."""
    c = await cohort(gf, 2)
    c.app_ids = list(await asyncio.gather(*(submit_and_review(c, i) for i in range(2))))
    await council(c)
    await asyncio.gather(after_council(c, 0), _first_report(c, 1))
    await gf.pool.executemany(
        "INSERT INTO users (id, name, role, specialty, token_hash) VALUES ($1, $2, $3, $4, $5)",
        [
            (u, f"reviewer {u}", "reviewer", c.specialty, u.bytes)
            for u in (uuid.uuid4() for _ in range(REVIEWERS // SPECIALTIES))
        ],
    )
    return {"closed": c.app_ids[0], "open": c.app_ids[1]}


async def _first_report(c: Cohort, i: int) -> None:
    """`after_council` up to the report before the final one."""
    app_id, applicant = c.app_ids[i], c.applicants[i]
    base = f"/v1/applications/{app_id}"
    await stage(c, app_id, "approved")

    async def offered() -> bool:
        response = await c.api.get(f"{base}/agreement", headers=applicant.headers)
        return bool(response.status_code == 200)

    await eventually(offered)
    ok(await c.api.post(f"{base}/agreement/acceptance", headers=applicant.headers))
    await stage(c, app_id, "agreement")
    await asyncio.gather(drive.report(c, app_id, 1, applicant), pilot(c, i))


def _content(programme_id: str) -> dict[str, Any]:
    body = application_body(programme_id)
    body.pop("programme_id", None)
    return body


async def fill_content(conn: asyncpg.Connection) -> None:
    """The seed's applications hold only a title; the pages read a whole application."""
    body = _content(str(uuid.uuid4()))
    body.pop("title", None)
    await conn.execute(
        "UPDATE applications SET content = $1::jsonb || jsonb_build_object('title', "
        "content->>'title')",
        json.dumps(body),
    )
    await conn.execute("VACUUM ANALYZE applications")


async def sign_in(
    app: Any, pool: asyncpg.Pool, settings: Settings, role: str, user_id: uuid.UUID | None
) -> httpx.AsyncClient:
    """A client with the person's session cookie (a stranger has none)."""
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://grantflow.bench",
        headers={"accept-language": "ru"},
    )
    if user_id is not None:
        email = f"{role}-{user_id.hex[:8]}@bench.example"
        await account.set_demo_password(pool, user_id, email, PASSWORD)
        signed = await account.sign_in(pool, settings, email, PASSWORD, client_addr="127.0.0.1")
        client.cookies.set("gf_session", signed.session_id)
    return client


_ASSET = re.compile(r'<(?:script|link|img|iframe|source)\b[^>]*?\b(?:src|href)="([^"]+)"')
_CSS_URL = re.compile(r"url\(\s*['\"]?([^'\")]+)|@import\s+['\"]([^'\"]+)")


def _off_host(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.netloc) or parts.scheme not in ("", "data")


async def assets(client: httpx.AsyncClient, html: str) -> tuple[int, list[str]]:
    """Bytes of the JavaScript and CSS the page loads, and every address it would ask off
    its own host (in the page and in its style sheets)."""
    size, elsewhere = 0, []
    for url in _ASSET.findall(html):
        if _off_host(url):
            elsewhere.append(url)
            continue
        if url.startswith("data:"):
            continue
        body = (await client.get(url)).content
        if url.endswith((".js", ".css")):
            size += len(body)
        if url.endswith(".css"):
            css = body.decode(errors="replace")
            elsewhere += [u for pair in _CSS_URL.findall(css) for u in pair if u and _off_host(u)]
    return size, elsewhere


@dataclass(frozen=True)
class Timing:
    p50: float
    p99: float
    cpu: float  # this process's CPU per request, ms: what load on the machine does not inflate


async def measure(client: httpx.AsyncClient, path: str, runs: int) -> tuple[Timing, str]:
    """The page's times in milliseconds after a few warm-up requests, and its HTML."""
    html = ""
    for _ in range(5):
        response = await client.get(path)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
        html = response.text
    times = []
    cpu = time.process_time()
    for _ in range(runs):
        start = time.perf_counter()
        response = await client.get(path)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    cpu_ms = (time.process_time() - cpu) * 1000 / runs
    cuts = statistics.quantiles(times, n=100, method="inclusive")
    return Timing(cuts[49], cuts[98], cpu_ms), html


async def bench(args: argparse.Namespace) -> int:
    async with servers() as srv:
        url = srv.database_url  # migrated
        conn = await connect(url)
        try:
            started = time.perf_counter()
            seed = Seed(args.applications)
            await load(conn, seed)
            await fill_content(conn)  # one statement over every row: past the pool's timeout
        finally:
            await conn.close()
        print(f"loaded {len(seed.applications):,} applications, {len(seed.tasks):,} review tasks "
              f"in {time.perf_counter() - started:.1f} s")  # fmt: skip
        # The worker stays up while the pages are timed: the application page's Queries are
        # answered by it (a closed workflow's by replaying its history), as in production.
        async with grantflow(srv) as gf:
            started = time.perf_counter()
            played = await play(gf)
            print(f"played 2 applications through their workflows in "
                  f"{time.perf_counter() - started:.1f} s")  # fmt: skip
            pool = await create_pool(url, min_size=1, max_size=4)
            try:
                results = await time_pages(gf.settings, Resources(gf.settings, pool, srv.client),
                                           seed, played, args.runs)  # fmt: skip
            finally:
                await pool.close()
    return report(results, args.runs)


async def time_pages(
    settings: Settings, res: Resources, seed: Seed, played: dict[str, str], runs: int
) -> list[tuple[str, Timing, int, list[str]]]:
    """Every page of PAGES timed by its role's person."""
    app = create_app(settings, res)
    pool = res.pool
    roles = sorted({p.role for p in PAGES} - {"stranger"})
    people = {role: await person(pool, role, seed) for role in roles}
    ids = await subjects(pool, people, played)
    clients = {
        role: await sign_in(app, pool, settings, role, people.get(role))
        for role in [*roles, "stranger"]
    }
    results = []
    try:
        for page in PAGES:
            path = page.path.format(**ids)
            timing, html = await measure(clients[page.role], path, runs)
            size, elsewhere = await assets(clients[page.role], html)
            results.append((page.name, timing, size, elsewhere))
    finally:
        for client in clients.values():
            await client.aclose()
    return results


def report(results: list[tuple[str, Timing, int, list[str]]], runs: int) -> int:
    print(
        f"\n{'page':<30} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms':>7} {'JS+CSS KB':>10}"
        f"  ({runs} runs each; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )
    over = []
    for name, t, size, elsewhere in results:
        problems = []
        if t.p99 >= TARGET_MS:
            problems.append("over 50 ms")
        if size >= ASSETS_LIMIT:
            problems.append("over 100 KB")
        if elsewhere:
            problems.append(f"off the host: {', '.join(elsewhere)}")
        if problems:
            over.append(name)
        verdict = f"  {'; '.join(problems)}" if problems else ""
        print(f"{name:<30} {t.p50:8.2f} {t.p99:8.2f} {t.cpu:7.2f} {size / 1024:10.1f}{verdict}")
    print(
        f"\ntargets: p99 under {TARGET_MS:g} ms, JS+CSS under {ASSETS_LIMIT // 1024} KB, nothing "
        "off the host: " + ("met" if not over else "missed by " + ", ".join(over))
    )
    return 1 if over else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--applications", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=200, help="timed requests per page")
    args = parser.parse_args()
    raise SystemExit(asyncio.run(bench(args)))


if __name__ == "__main__":
    main()
