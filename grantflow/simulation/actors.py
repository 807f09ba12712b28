"""The people of a simulated competition, acting through the HTTP API with their own tokens:
one lifecycle per application (its applicant, the reviewers offered it, its clinics, its
evaluator and the admin who follows it) and the council, which meets in sessions."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from grantflow.simulation.http import Api, Person, SimulationError, taken_meanwhile
from grantflow.simulation.plan import (
    REVIEW_MISSES_PER_APPLICATION,
    ApplicationPlan,
    Fate,
    ReviewerMove,
    review_score,
    reviewer_move,
    vote,
)

FINAL = {"rejected", "closed", "ineligible", "withdrawn", "expired"}
BEFORE_COUNCIL = ("screening", "revision_requested", "under_review")
METRICS = [
    {"name": "patients", "unit": "patients", "target": 400},
    {"name": "minutes_saved", "unit": "min", "target": 10, "higher_is_better": False},
]


@dataclass
class World:
    """Everything the actors share: the programme, the people and what each will do."""

    api: Api
    seed: int
    programme: dict[str, Any]
    specialties: list[str]
    admin: Person
    applicants: list[Person]
    reviewers: list[tuple[Person, int]]  # and the index of their specialty
    clinics: list[Person]
    members: list[Person]
    pilot_seconds: float
    poll: float
    advance: Callable[[str], None]
    miss_cap: int = REVIEW_MISSES_PER_APPLICATION
    plans: dict[str, ApplicationPlan] = field(default_factory=dict)  # by application id
    late_refused: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def recruit(self, specialty: int) -> Person:
        """The admin brings in one more expert of the specialty, when nobody eligible is left
        for a review or a pilot's evaluation."""
        n = len(self.reviewers) + 1
        made = await self.api.ok(
            "POST",
            "/v1/users",
            self.admin,
            {
                "role": "reviewer",
                "name": f"Expert {n}",
                "institution": f"Research Institute {n} {self.specialties[specialty]}",
                "organisation_type": "research_institute",
                "specialty": self.specialties[specialty],
            },
        )
        user = made["user"]
        person = Person(user["id"], user["name"], made["token"], user["institution_id"])
        self.reviewers.append((person, specialty))
        return person

    def reviewer(self, user_id: str) -> tuple[int, Person]:
        for n, (person, _) in enumerate(self.reviewers):
            if person.id == user_id:
                return n, person
        raise SimulationError(f"{user_id} is not one of the simulation's experts")

    async def pause(self, seconds: float | None = None) -> None:
        # Jitter keeps a crowd of pollers from asking in lockstep.
        await asyncio.sleep((seconds or self.poll) * random.uniform(0.75, 1.25))  # noqa: S311


def content(world: World, plan: ApplicationPlan, *, fixed: bool) -> dict[str, Any]:
    """The application as its applicant writes it; with a gap, the budget lines do not add
    up to the amount requested (fixable), until the revision."""
    years = -(-plan.duration_months // 12)
    share = plan.requested_rub // years
    lines: list[dict[str, Any]] = [
        {
            "item": f"Year {y} work",
            "category": "direct_costs",
            "year": y,
            "amount_rub": share + (plan.requested_rub - share * years if y == years else 0),
        }
        for y in range(1, years + 1)
    ]
    if plan.gap and not fixed:
        lines[0] = {**lines[0], "amount_rub": lines[0]["amount_rub"] + 1_000_000}
    specialty = world.specialties[plan.specialty] if plan.specialty >= 0 else "dermatology"
    return {
        "title": f"Project {plan.index + 1}: {specialty} decision support",
        "summary": "A service that helps clinicians decide sooner.",
        "specialty": specialty,
        "requested_rub": plan.requested_rub,
        "total_investment_rub": plan.requested_rub * 4,
        "duration_months": plan.duration_months,
        "budget_lines": lines,
        "partner_institutions": [plan.joint_partner] if plan.joint_partner else [],
        "expected_results": "Time to treatment down 20 % in the pilot clinics.",
    }


class Lifecycle:
    """One application from its first submission to its final stage."""

    def __init__(self, world: World, plan: ApplicationPlan) -> None:
        self.w, self.plan, self.api = world, plan, world.api
        self.applicant = world.applicants[plan.applicant]
        self.id = ""

    async def run(self, intake_opened: float, intake_seconds: float) -> str | None:
        """The application's final stage (None for a late attempt, refused at the door)."""
        loop = asyncio.get_running_loop()
        if self.plan.fate == Fate.late:
            await asyncio.sleep(max(0.0, intake_opened + intake_seconds + 1 - loop.time()))
            await self._late()
            return None
        await asyncio.sleep(
            max(0.0, intake_opened + intake_seconds * self.plan.arrival - loop.time())
        )
        app = await self._submit()
        self.w.advance("intake")
        if app["stage"] == "revision_requested" and self.plan.fate != Fate.lets_expire:
            await self.w.pause(1)
            app = await self._revise()
        if self.plan.fate == Fate.withdraws and app["stage"] not in FINAL:
            await self.w.pause(1)
            await self.api.ok(
                "POST",
                f"/v1/applications/{self.id}/withdrawal",
                self.applicant,
                {"reason": "We found a partner with its own funding."},
            )
        stage = await self._review()
        if stage not in FINAL:
            self.w.advance("review")
            # Decisions come in sessions: no need to look as often as during review.
            stage = await self._until(lambda s: s in FINAL or s == "approved", self.w.poll * 2)
            self.w.advance("council")
        if stage == "approved":
            stage = await self._project()
        self.w.advance("final")
        return stage

    async def _revise(self) -> dict[str, Any]:
        """The applicant sends the fixed application; the answer, or the application as it
        stands when a retry found the revision taken meanwhile."""
        url = f"/v1/applications/{self.id}/revision"
        while True:
            sent = await self.api.call(
                "POST", url, self.applicant, content(self.w, self.plan, fixed=True)
            )
            if sent.status_code < 300:
                return dict(sent.json())
            if not taken_meanwhile(sent) and "no revision is expected" not in sent.text:
                raise SimulationError(f"POST {url} → {sent.status_code}: {sent.text}")
            app: dict[str, Any] = await self.api.ok(
                "GET", f"/v1/applications/{self.id}", self.applicant
            )
            if taken_meanwhile(sent) or app["stage"] != "revision_requested":
                return app
            # Postgres shows the request for a revision, its workflow not yet: a workflow task
            # that timed out on a starved worker wrote it, and its retry is catching up.
            await self.w.pause(1)

    async def _late(self) -> None:
        body = {"programme_id": self.w.programme["id"], **content(self.w, self.plan, fixed=True)}
        response = await self.api.call("POST", "/v1/applications", self.applicant, body)
        if response.status_code != 409:
            raise SimulationError(f"a late application got {response.status_code}, not 409")
        self.w.late_refused += 1
        self.w.advance("intake")

    async def _submit(self) -> dict[str, Any]:
        body = {"programme_id": self.w.programme["id"], **content(self.w, self.plan, fixed=False)}
        key = {"Idempotency-Key": f"sim-{self.w.programme['id']}-{self.plan.index}"}
        while True:
            sent = await self.api.call(
                "POST", "/v1/applications", self.applicant, body, headers=key
            )
            if sent.status_code < 300:
                break
            if not taken_meanwhile(sent):
                raise SimulationError(f"POST /v1/applications → {sent.status_code}: {sent.text}")
            # The server kept the submission it answered 503 for, but it is not on record yet
            # (so intake may have closed meanwhile): the same key finds it once it is.
            await self.w.pause(1)
        app: dict[str, Any] = sent.json()
        self.id = app["id"]
        self.w.plans[self.id] = self.plan
        return app

    async def stage(self) -> str:
        app = await self.api.ok("GET", f"/v1/applications/{self.id}", self.applicant)
        return str(app["stage"])

    async def _until(self, wanted: Callable[[str], bool], poll: float | None = None) -> str:
        while not wanted(stage := await self.stage()):
            await self.w.pause(poll)
        return stage

    # --- review ------------------------------------------------------------------------------

    async def _review(self) -> str:
        """The experts offered the application answer as each of them would."""
        handled: set[str] = set()
        misses = 0
        while (stage := await self.stage()) in BEFORE_COUNCIL:
            if stage == "under_review":
                seen = await self.api.ok(
                    "GET", f"/v1/admin/applications/{self.id}/reviews", self.w.admin
                )
                for task in seen["tasks"]:
                    if task["task_id"] in handled or task["status"] != "offered":
                        continue
                    handled.add(task["task_id"])
                    misses += await self._answer(task, misses)
                if seen["flag_reason"]:
                    await self._add_reviewer(seen)
            await self.w.pause()
        return stage

    async def _answer(self, task: dict[str, Any], misses: int) -> int:
        n, reviewer = self.w.reviewer(task["reviewer_id"])
        move = reviewer_move(self.w.seed, self.plan.index, n)
        if misses >= self.w.miss_cap:
            move = ReviewerMove.review
        base = f"/v1/reviews/{task['task_id']}"
        if move == ReviewerMove.ignore:
            return 1
        if move == ReviewerMove.decline:
            await self._task(f"{base}/decline", reviewer, {"reason": "No time now."})
            return 1
        await self.api.ok("GET", base, reviewer)  # reads the application first
        if not await self._task(f"{base}/acceptance", reviewer) or (
            move == ReviewerMove.miss_deadline
        ):
            return 1
        score = review_score(self.w.seed, self.plan.index, n, self.plan.quality)
        rubric = [c["name"] for c in self.w.programme["params"]["rubric"]]
        recommendation = (
            "fund" if score >= 7 else "fund_with_changes" if score >= 5 else "do_not_fund"
        )
        body = {
            "scores": dict.fromkeys(rubric, score),
            "recommendation": recommendation,
            "comments": f"Scored {score}: see the rubric.",
        }
        return 0 if await self._task(f"{base}/review", reviewer, body) else 1

    async def _task(self, url: str, reviewer: Person, body: Any = None) -> bool:
        """A reviewer's answer; False when it came too late (the task expired meanwhile and
        went to someone else), as happens to a slow reviewer."""
        response = await self.api.call("POST", url, reviewer, body)
        if taken_meanwhile(response):
            return True
        if response.status_code == 409 and (
            "expired" in response.text or "cancelled" in response.text
        ):
            return False
        if response.status_code >= 300:
            raise SimulationError(f"POST {url} → {response.status_code}: {response.text}")
        return True

    async def _add_reviewer(self, seen: dict[str, Any]) -> None:
        """Nobody eligible was left: the admin adds an expert of the specialty who has not
        had the application yet, recruiting one if need be."""
        had = {t["reviewer_id"] for t in seen["tasks"]}
        fresh = [
            p for p, s in self.w.reviewers if s == self.plan.specialty and p.id not in had
        ] or [await self.w.recruit(self.plan.specialty)]
        await self.api.ok(
            "POST",
            f"/v1/admin/applications/{self.id}/reviewers",
            self.w.admin,
            {"reviewer_id": fresh[0].id, "reason": "Nobody eligible was left: one more expert."},
        )

    # --- agreement, pilot, reports -------------------------------------------------------------

    async def _project(self) -> str:
        base = f"/v1/applications/{self.id}"
        while (await self.api.call("GET", f"{base}/agreement", self.applicant)).status_code != 200:
            await self.w.pause()
        await self.api.ok("POST", f"{base}/agreement/acceptance", self.applicant)
        await self._until(lambda s: s == "agreement" or s in FINAL)
        now = datetime.now(UTC).isoformat()
        sites = [
            {
                "clinic_id": self.w.clinics[c].institution_id,
                "starts_at": now,
                "duration": self.w.pilot_seconds,
                "metrics": METRICS,
            }
            for c in self.plan.clinics
        ]
        await self.api.ok("POST", f"{base}/pilot", self.applicant, {"sites": sites})
        await asyncio.gather(*(self._clinic(self.w.clinics[c]) for c in self.plan.clinics))
        await self._evaluate_and_decide()
        self.w.advance("pilot")
        if self.plan.pilot == "implement":
            await self._reports()
        return await self._until(lambda s: s in FINAL)

    async def _clinic(self, clinic: Person) -> None:
        """The clinic accepts the pilot, runs it for its period, then reports its metrics."""
        site = await self._site(clinic, "proposed")
        await self.api.ok("POST", f"/v1/sites/{site['site_id']}/acceptance", clinic)
        site = await self._site(clinic, "running")
        ends = datetime.fromisoformat(site["ends_at"])
        await asyncio.sleep(max(0.0, (ends - datetime.now(UTC)).total_seconds()))
        met = self.plan.targets_met
        measured = {"patients": 450 if met else 250, "minutes_saved": 8 if met else 14}
        url = f"/v1/sites/{site['site_id']}/report"
        while (
            sent := await self.api.call("POST", url, clinic, {"measured": measured})
        ).status_code == 409 and not taken_meanwhile(sent):
            await self.w.pause(0.5)  # the clinic's clock ran a little ahead of the server's

    async def _site(self, clinic: Person, status: str) -> dict[str, Any]:
        while True:
            for site in await self.api.ok("GET", "/v1/clinic/sites", clinic):
                if site["application_id"] == self.id and site["status"] == status:
                    return dict(site)
            await self.w.pause()

    async def _pilot(self, status: str) -> dict[str, Any]:
        while (
            pilot := await self.api.ok("GET", f"/v1/applications/{self.id}/pilot", self.w.admin)
        )["status"] != status:
            await self.w.pause()
        return dict(pilot)

    async def _evaluate_and_decide(self) -> None:
        pilot = await self._pilot("evaluating")
        while pilot["evaluator_id"] is None:
            if pilot["flag_reason"]:  # every expert of the specialty reviewed it: recruit one
                expert = await self.w.recruit(self.plan.specialty)
                url = f"/v1/admin/applications/{self.id}/pilot/evaluator?evaluator_id={expert.id}"
                await self.api.ok("POST", url, self.w.admin)
            await self.w.pause()
            pilot = await self._pilot("evaluating")
        _, expert = self.w.reviewer(pilot["evaluator_id"])
        await self.api.ok(
            "POST",
            f"/v1/applications/{self.id}/pilot/evaluation",
            expert,
            {"recommendation": self.plan.pilot, "comments": "Metrics checked against targets."},
        )
        await self._pilot("deciding")
        await self.api.ok(
            "POST",
            f"/v1/admin/applications/{self.id}/pilot/decision",
            self.w.admin,
            {"decision": self.plan.pilot, "reason": "As the expert recommends."},
        )

    async def _reports(self) -> None:
        """Each report is sent when it falls due and accepted by the admin; the final one
        carries the project's outcome."""
        base = f"/v1/applications/{self.id}"
        agreement = await self.api.ok("GET", f"{base}/agreement", self.applicant)
        for report in sorted(agreement["reports"], key=lambda r: r["seq"]):
            due = datetime.fromisoformat(report["due_at"])
            await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds() - 0.5))
            seq = report["seq"]
            await self.api.ok("POST", f"{base}/reports/{seq}", self.applicant, {"body": "Done."})
            decision: dict[str, Any] = {"accept": True, "comment": "Accepted."}
            if report["final"]:
                decision["outcome"] = self.plan.outcome
            await self.api.ok(
                "POST",
                f"/v1/admin/applications/{self.id}/reports/{seq}/decision",
                self.w.admin,
                decision,
            )


class Council:
    """The council meets when applications wait for it; every member votes on every item,
    then the chair (the admin) closes the session."""

    def __init__(self, world: World, batch: int, gap: float) -> None:
        self.w, self.api, self.batch, self.gap = world, world.api, batch, gap
        self.appearances: dict[str, int] = {}
        self.sessions = 0
        # Temporal takes at most 10 updates in flight per workflow: the session is one.
        self._votes = asyncio.Semaphore(8)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while not self.w.done.is_set():
            figures = await self.api.ok(
                "GET", f"/v1/programmes/{self.w.programme['id']}/figures", self.w.admin
            )
            stages = figures["by_stage"]
            waiting = stages.get("reviewed", 0) + stages.get("deferred", 0)
            before = sum(stages.get(s, 0) for s in BEFORE_COUNCIL)
            if waiting and (waiting >= self.batch or not before or loop.time() - last > self.gap):
                await self.session()
                last = loop.time()
            await self.w.pause()

    async def session(self) -> None:
        self.sessions += 1
        # A busy worker can take longer to start the session than the API waits (503): the
        # retry with the same key finds that session, which holds the agenda, not a new one.
        programme = self.w.programme["id"]
        state = await self.api.ok(
            "POST",
            f"/v1/programmes/{programme}/council-sessions",
            self.w.admin,
            {"name": f"Session {self.sessions}", "member_ids": [m.id for m in self.w.members]},
            {"Idempotency-Key": f"sim-{programme}-session-{self.sessions}"},
        )
        votes = [
            self._vote(state["session_id"], item, n, member)
            for item in state["agenda"]
            for n, member in enumerate(self.w.members)
        ]
        await asyncio.gather(*votes)
        # Closing decides every item in turn: long for a long agenda. A retry that finds the
        # session closed means the first attempt did it.
        url = f"/v1/council-sessions/{state['session_id']}/close"
        closed = await self.api.call("POST", url, self.w.admin, wait=900)
        if not (
            closed.status_code == 200
            or "the session is closed" in closed.text
            or taken_meanwhile(closed)
        ):
            raise SimulationError(f"closing the session: {closed.text}")
        for item in state["agenda"]:
            app_id = item["application_id"]
            self.appearances[app_id] = self.appearances.get(app_id, 0) + 1

    async def _vote(self, session_id: str, item: dict[str, Any], n: int, member: Person) -> None:
        plan = self.w.plans.get(item["application_id"])
        if plan is None:
            raise SimulationError(f"{item['application_id']} is not the simulation's")
        choice = vote(self.w.seed, plan, self.appearances.get(item["application_id"], 0), n)
        body: dict[str, Any] = {
            "application_id": item["application_id"],
            "choice": choice,
            "reason": f"{choice}: on the reviews and the budget",
        }
        if choice == "approve" and plan.amount_share < 1:
            body["amount_rub"] = round(plan.requested_rub * plan.amount_share)
        url = f"/v1/council-sessions/{session_id}/votes"
        for _ in range(50):
            async with self._votes:
                response = await self.api.call("POST", url, member, body)
            if response.status_code == 200:
                return
            if "not open yet" not in response.text:
                raise SimulationError(f"vote refused: {response.text}")
            await asyncio.sleep(0.2)
        raise SimulationError("the council session never opened")
