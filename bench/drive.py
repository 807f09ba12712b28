"""Full grantflow lifecycles through the HTTP API, with second-scale durations, as the people
in them act: submit, three reviews, one council session for the cohort, the agreement, reports
and tranches, a pilot at one clinic, the final report and the close."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.harness import STEP, Grantflow, User, create_programme, eventually, make_user, ok
from schemas.common import Role
from tests.support import application_body

METRICS = [{"name": "patients", "unit": "patients", "target": 400}]
# Second-scale durations; the windows nobody should miss are an hour long. The second tranche
# falls due TRANCHE seconds after acceptance and is released once report 1 is accepted.
TRANCHE = 4
PARAMS = {
    "revision_window": 3600,
    "review_acceptance_window": 3600,
    "review_deadline": 7200,
    "reminder_lead_time": 1,
    "reviews_required": 3,
    "council_quorum": 3,
    "agreement_window": 3600,
    "tranche_interval": TRANCHE,
    "report_interval": TRANCHE,
    "financial_report_interval": 0,
    "pilot_report_window": 3600,
}


@dataclass
class Cohort:
    """One programme and the people of N lifecycles."""

    gf: Grantflow
    admin: User
    programme_id: str
    specialty: str
    reviewers: dict[str, User]
    members: list[User]
    applicants: list[User]
    coordinators: list[User]
    app_ids: list[str] = field(default_factory=list)
    seconds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time one stage of one lifecycle (wall time, waits for the workflows included)."""
        began = time.monotonic()
        yield
        self.seconds[name].append(time.monotonic() - began)

    @property
    def api(self) -> Any:
        return self.gf.api


async def cohort(gf: Grantflow, n: int, *, reviewers: int = 6) -> Cohort:
    pool = gf.pool
    specialty = f"cardiology-{uuid.uuid4().hex[:6]}"
    admin = await make_user(pool, Role.admin)
    now = datetime.now(UTC)
    programme = await create_programme(
        gf,
        admin,
        specialty,
        PARAMS,
        name=f"Bench {uuid.uuid4().hex[:6]}",
        budget_rub=max(2_540_000_000, 40_000_000 * n),
        organisation_types=["medical_institution", "company"],
        intake_opens=(now - timedelta(minutes=1)).isoformat(),
        intake_closes=(now + timedelta(hours=2)).isoformat(),
    )
    experts = [
        await make_user(pool, Role.reviewer, specialty=specialty) for _ in range(max(reviewers, 4))
    ]
    return Cohort(
        gf,
        admin,
        programme["id"],
        specialty,
        {r.id: r for r in experts},
        [await make_user(pool, Role.council) for _ in range(3)],
        [await make_user(pool, Role.applicant) for _ in range(n)],
        [await make_user(pool, Role.coordinator) for _ in range(n)],
    )


async def submit_and_review(c: Cohort, i: int) -> str:
    with c.stage("1 submit, screening, 3 reviews"):
        return await _submit_and_review(c, i)


async def _submit_and_review(c: Cohort, i: int) -> str:
    applicant = c.applicants[i]
    STEP.set("submit")
    app = ok(
        await c.api.post(
            "/v1/applications",
            json=application_body(c.programme_id, specialty=c.specialty),
            headers={**applicant.headers, "Idempotency-Key": f"bench-{i}"},
        )
    )
    app_id: str = app["id"]
    STEP.set("review")

    async def offered() -> list[dict[str, Any]] | None:
        body = ok(
            await c.api.get(f"/v1/admin/applications/{app_id}/reviews", headers=c.admin.headers)
        )
        tasks: list[dict[str, Any]] = body["tasks"]
        return tasks if len(tasks) >= 3 else None

    for task in await eventually(offered):
        reviewer = c.reviewers[task["reviewer_id"]]
        base = f"/v1/reviews/{task['task_id']}"
        ok(await c.api.post(f"{base}/acceptance", headers=reviewer.headers))
        review = {
            "scores": {"clinical_value": 8, "novelty": 7, "feasibility": 7},
            "recommendation": "fund",
            "comments": "Sound plan.",
        }
        ok(await c.api.post(f"{base}/review", json=review, headers=reviewer.headers))
    await stage(c, app_id, "reviewed")
    return app_id


async def council(c: Cohort) -> None:
    """One session for the whole cohort: every member approves every item, then it closes."""
    STEP.set("council")
    session = ok(
        await c.api.post(
            f"/v1/programmes/{c.programme_id}/council-sessions",
            json={"name": "Bench session", "member_ids": [m.id for m in c.members]},
            headers=c.admin.headers,
        )
    )
    sid = session["session_id"]
    # Temporal takes at most 10 Updates in flight on one workflow (the session): keep under it,
    # as a council's members voting in a meeting would.
    in_flight = asyncio.Semaphore(8)

    async def votes(app_id: str) -> None:
        for member in c.members:
            async with in_flight:
                response = await c.api.post(
                    f"/v1/council-sessions/{sid}/votes",
                    json={"application_id": app_id, "choice": "approve", "reason": "Strong."},
                    headers=member.headers,
                )
            ok(response)

    await asyncio.gather(*(votes(a) for a in c.app_ids))
    decided = ok(await c.api.post(f"/v1/council-sessions/{sid}/close", headers=c.admin.headers))
    assert all(d["outcome"] == "approved" for d in decided), decided


async def after_council(c: Cohort, i: int) -> None:
    app_id, applicant = c.app_ids[i], c.applicants[i]
    base = f"/v1/applications/{app_id}"
    STEP.set("agreement")
    with c.stage("3 agreement offered, accepted"):
        await stage(c, app_id, "approved")
        await eventually(lambda: _found(c, f"{base}/agreement", applicant))
        ok(await c.api.post(f"{base}/agreement/acceptance", headers=applicant.headers))
        await stage(c, app_id, "agreement")
    # Report 1 goes in while the pilot runs, so that the second tranche is released on time.
    with c.stage("4 pilot (1 s site) and report 1"):
        await asyncio.gather(report(c, app_id, 1, applicant), pilot(c, i))
    STEP.set("reports")

    async def tranche_released() -> bool:
        state = await _found(c, f"{base}/agreement", applicant)
        return state is not None and state["tranches"][-1]["status"] == "released"

    with c.stage(f"5 tranche 2 due ({TRANCHE} s after acceptance)"):
        await eventually(tranche_released)
    with c.stage("6 final report, closed"):
        await report(c, app_id, 2, applicant, outcome="implemented")
        await stage(c, app_id, "closed")


async def report(c: Cohort, app_id: str, seq: int, applicant: User, **decision: Any) -> None:
    STEP.set("reports")
    base = f"/v1/applications/{app_id}/reports/{seq}"
    ok(await c.api.post(base, json={"body": f"Report {seq}."}, headers=applicant.headers))
    ok(
        await c.api.post(
            f"/v1/admin/applications/{app_id}/reports/{seq}/decision",
            json={"accept": True, "comment": "Accepted.", **decision},
            headers=c.admin.headers,
        )
    )


async def pilot(c: Cohort, i: int) -> None:
    STEP.set("pilot")
    app_id, applicant, clinic = c.app_ids[i], c.applicants[i], c.coordinators[i]
    base = f"/v1/applications/{app_id}/pilot"
    site = {
        "clinic_id": clinic.institution_id,
        "starts_at": datetime.now(UTC).isoformat(),
        "duration": 1,
        "metrics": METRICS,
    }
    ok(await c.api.post(base, json={"sites": [site]}, headers=applicant.headers))
    state = await pilot_state(c, app_id, lambda p: p["sites"])
    site_id = state["sites"][0]["site_id"]
    ok(await c.api.post(f"/v1/sites/{site_id}/acceptance", headers=clinic.headers))
    # The clinic reports once its period is over, which the pilot's state says: trying until
    # the site takes the report cost a refused Update (a workflow task) every 0.1 s.
    ends_at = datetime.fromisoformat(state["sites"][0]["ends_at"])
    await asyncio.sleep(max(0.0, (ends_at - datetime.now(UTC)).total_seconds()))

    async def reported() -> Any:
        response = await c.api.post(
            f"/v1/sites/{site_id}/report",
            json={"measured": {"patients": 420}},
            headers=clinic.headers,
        )
        return None if response.status_code == 409 else ok(response)

    await eventually(reported)
    state = await pilot_state(
        c, app_id, lambda p: p["status"] == "evaluating" and p["evaluator_id"]
    )
    expert = c.reviewers[state["evaluator_id"]]
    ok(
        await c.api.post(
            f"{base}/evaluation",
            json={"recommendation": "implement", "comments": "Targets met."},
            headers=expert.headers,
        )
    )
    ok(
        await c.api.post(
            f"/v1/admin/applications/{app_id}/pilot/decision",
            json={"decision": "implement", "reason": "Targets met."},
            headers=c.admin.headers,
        )
    )


async def pilot_state(c: Cohort, app_id: str, ready: Any) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        response = await c.api.get(f"/v1/applications/{app_id}/pilot", headers=c.admin.headers)
        if response.status_code != 200:
            return None
        state: dict[str, Any] = response.json()
        return state if ready(state) else None

    found: dict[str, Any] = await eventually(check)
    return found


async def stage(c: Cohort, app_id: str, wanted: str) -> None:
    async def check() -> bool:
        body = ok(await c.api.get(f"/v1/applications/{app_id}", headers=c.admin.headers))
        return bool(body["stage"] == wanted)

    await eventually(check)


async def _found(c: Cohort, path: str, user: User) -> dict[str, Any] | None:
    response = await c.api.get(path, headers=user.headers)
    return response.json() if response.status_code == 200 else None


async def lifecycles(c: Cohort, *, concurrency: int) -> None:
    """The cohort's lifecycles from submission to close, `concurrency` of them at a time."""
    n = len(c.applicants)
    gate = asyncio.Semaphore(concurrency)

    async def first_half(i: int) -> str:
        async with gate:
            return await submit_and_review(c, i)

    c.app_ids = list(await asyncio.gather(*(first_half(i) for i in range(n))))
    with c.stage("2 council session (whole cohort)"):
        await council(c)

    async def second_half(i: int) -> None:
        async with gate:
            await after_council(c, i)

    await asyncio.gather(*(second_half(i) for i in range(n)))
