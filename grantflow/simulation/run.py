"""A whole competition, played through the HTTP API: the programme and its people are set up,
every lifecycle runs to its final stage, then the funnel, the timings and the consistency
check are gathered into one result."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from temporalio.client import Client

from grantflow.services.consistency import check
from grantflow.simulation.actors import FINAL, Council, Lifecycle, World
from grantflow.simulation.http import Api, Person
from grantflow.simulation.plan import OPERATOR_BUDGET_RUB, SPECIALTIES, plan
from grantflow.store import Db
from grantflow.store.users import create_user
from schemas.common import OrganisationType, Role
from schemas.users import UserCreate
from workflows import ids


@dataclass(frozen=True)
class Options:
    applications: int = 186
    institutions: int = 46
    reviewers: int = 60
    clinics: int = 30
    council_members: int = 5
    seed: int = 1
    poll: float | None = None  # seconds between looks; default: longer for bigger crowds
    params: dict[str, Any] = field(default_factory=dict)  # over PARAMS, e.g. shorter windows
    timeout: float = 1800


# Second-scale durations: a competition plays out in minutes. Missed deadlines are missed by
# not acting, so they cost the simulation its revision window or acceptance window in waiting.
PARAMS: dict[str, Any] = {
    "revision_window": 60,
    "review_acceptance_window": 20,
    "review_deadline": 40,
    "reminder_lead_time": 5,
    "reviews_required": 3,
    "council_quorum": 3,
    "agreement_window": 120,
    "tranche_interval": 3,
    "report_interval": 3,
    "financial_report_interval": 0,
    "pilot_report_window": 30,
}
PILOT_SECONDS = 2.0
Advance = Callable[[str], None]


async def simulate(
    db: Db, client: Client, api: Api, options: Options, advance: Advance | None = None
) -> dict[str, Any]:
    """Play the competition and return its figures (the keys `--json` prints)."""
    tag = uuid.uuid4().hex[:6]  # this run's specialties and institutions are its own
    plans = plan(options.seed, options.applications, options.institutions, options.clinics)
    admin = await _admin(db, tag)
    world = await _people(api, admin, options, tag, advance or (lambda _: None))
    # Generous windows: a loaded machine must never turn an applicant who meant to be on time
    # (or to revise in time) into a late one, or the funnel would depend on the machine.
    intake_seconds = max(20.0, options.applications * 0.6)
    params = PARAMS | options.params
    world.programme = await _programme(api, admin, world.specialties, plans, intake_seconds, params)
    started = time.perf_counter()
    loop = asyncio.get_running_loop()
    opened = loop.time()
    council = Council(world, batch=max(5, options.applications // 8), gap=8)
    council_task = asyncio.create_task(council.run())
    lifecycles: asyncio.Future[list[str | None]] = asyncio.gather(
        *(Lifecycle(world, p).run(opened, intake_seconds) for p in plans)
    )
    timed_out = False
    try:
        async with asyncio.timeout(options.timeout):
            both: set[asyncio.Future[Any]] = {council_task, lifecycles}
            # The council meets until the lifecycles are over: it ends first only by failing.
            await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
            if council_task.done():
                council_task.result()
            await lifecycles
    except TimeoutError:
        timed_out = True  # the figures show where the applications stopped
    finally:
        world.done.set()
        council_task.cancel()
        lifecycles.cancel()
    duration = time.perf_counter() - started
    figures = await _figures(db, client, world, duration, council.sessions)
    return {**figures, "timed_out": timed_out}


async def _admin(db: Db, tag: str) -> Person:
    """The one user made straight in the database (as `grantflow users create` does): the
    admin who then creates everyone else through the API."""
    new = UserCreate(name=f"Simulation admin {tag}", role=Role.admin)
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            made = await create_user(conn, new)
    else:
        made = await create_user(db, new)
    return Person(made.user.id, made.user.name, made.token)


async def _user(api: Api, admin: Person, **body: Any) -> Person:
    made = await api.ok("POST", "/v1/users", admin, body)
    user = made["user"]
    return Person(user["id"], user["name"], made["token"], user["institution_id"])


async def _people(api: Api, admin: Person, o: Options, tag: str, advance: Advance) -> World:
    specialties = [f"{s}-{tag}" for s in SPECIALTIES]
    applicants = [
        _user(
            api,
            admin,
            role="applicant",
            name=f"Applicant {i + 1}",
            institution=f"City Hospital {i + 1} {tag}",
            organisation_type=OrganisationType.medical_institution.value,
        )
        for i in range(o.institutions)
    ]
    reviewers = [
        _user(
            api,
            admin,
            role="reviewer",
            name=f"Expert {i + 1}",
            institution=f"Research Institute {i % 20 + 1} {tag}",
            organisation_type=OrganisationType.research_institute.value,
            specialty=specialties[i % len(specialties)],
        )
        for i in range(o.reviewers)
    ]
    clinics = [
        _user(
            api,
            admin,
            role="coordinator",
            name=f"Coordinator {i + 1}",
            institution=f"City Polyclinic {i + 1} {tag}",
            organisation_type=OrganisationType.medical_institution.value,
        )
        for i in range(o.clinics)
    ]
    members = [
        _user(api, admin, role="council", name=f"Chief Physician {i + 1}")
        for i in range(o.council_members)
    ]
    made = [await asyncio.gather(*group) for group in (applicants, reviewers, clinics, members)]
    return World(
        api=api,
        seed=o.seed,
        programme={},
        specialties=specialties,
        admin=admin,
        applicants=made[0],
        reviewers=[(r, i % len(specialties)) for i, r in enumerate(made[1])],
        clinics=made[2],
        members=made[3],
        pilot_seconds=PILOT_SECONDS,
        poll=o.poll or max(1.0, o.applications / 40),
        advance=advance,
        # Misses (declines, silences, late reviews) per application stop short of running out
        # of eligible experts: the required reviews, one spare for a split score, one more.
        miss_cap=max(0, min(3, o.reviewers // len(specialties) - PARAMS["reviews_required"] - 1)),
    )


async def _programme(
    api: Api,
    admin: Person,
    specialties: list[str],
    plans: list[Any],
    intake_seconds: float,
    params: dict[str, Any],
) -> dict[str, Any]:
    """The operator's budget, unless the approvals the seed intends would not fit in it."""
    intended = sum(p.requested_rub for p in plans if "approve" in p.council)
    now = datetime.now(UTC)
    body = {
        "name": f"Simulated competition {now:%Y-%m-%d %H:%M:%S}",
        "budget_rub": max(OPERATOR_BUDGET_RUB, intended),
        "max_grant_rub": 200_000_000,
        "organisation_types": ["medical_institution"],
        "specialties": specialties,
        "intake_opens": (now - timedelta(seconds=5)).isoformat(),
        "intake_closes": (now + timedelta(seconds=intake_seconds)).isoformat(),
        "params": params,
    }
    programme: dict[str, Any] = await api.ok("POST", "/v1/programmes", admin, body)
    return programme


async def _figures(
    db: Db, client: Client, world: World, duration: float, sessions: int
) -> dict[str, Any]:
    """The funnel as the admin sees it, the timings, and the consistency check."""
    pid = world.programme["id"]
    figures = await world.api.ok("GET", f"/v1/programmes/{pid}/figures", world.admin)
    outcomes = await world.api.ok("GET", f"/v1/programmes/{pid}/outcomes", world.admin)
    ids = list(world.plans)
    events = await _events(client, ids)
    consistency = await check(db, client, pid, every=True)
    final_stages = dict(sorted(figures["by_stage"].items()))
    pilots = sum(sum(by.values()) for by in outcomes["pilots_by_clinic"].values())
    approved = figures["approved"]
    return {
        "seed": world.seed,
        "applications": figures["applications"],
        "late_refused": world.late_refused,
        "final_stages": final_stages,
        "all_final": all(s in FINAL for s in final_stages),
        "approved": approved,
        "approval_rate": figures["approval_rate"],
        "implemented": outcomes["implemented"],
        "implemented_share": round(outcomes["implemented"] / approved, 4) if approved else 0.0,
        "pilots": pilots,
        "clinics_piloting": len(outcomes["pilots_by_clinic"]),
        "council_sessions": sessions,
        "budget": {
            "total": figures["budget_rub"],
            "requested": figures["requested_rub"],
            "approved": figures["approved_rub"],
            "disbursed": figures["disbursed_rub"],
            "remaining": figures["remaining_rub"],
        },
        "duration_s": round(duration, 1),
        "lifecycles_per_s": round(len(ids) / duration, 3) if duration else 0.0,
        "http_requests": len(world.api.latencies),
        "http_p50_ms": world.api.percentile_ms(0.50),
        "http_p99_ms": world.api.percentile_ms(0.99),
        "http_by_kind": world.api.by_kind_ms(),
        "events_per_application": round(sum(events) / len(events), 1) if events else 0.0,
        "consistent": consistency.consistent,
        "disagreements": consistency.as_json()["disagreements"],
    }


async def _events(client: Client, application_ids: list[str]) -> list[int]:
    """History events per application: its workflow's and its children's (review, council
    agreement, pilot and its sites)."""
    gate = asyncio.Semaphore(8)

    async def count(workflow_id: str) -> int:
        async with gate:
            history = await client.get_workflow_handle(workflow_id).fetch_history()
        children = [
            e.child_workflow_execution_started_event_attributes.workflow_execution.workflow_id
            for e in history.events
            if e.HasField("child_workflow_execution_started_event_attributes")
        ]
        return len(history.events) + sum([await count(c) for c in children])

    return list(await asyncio.gather(*(count(ids.application(i)) for i in application_ids)))
