"""What every actor of a simulated competition will do, drawn from the seed before anything
runs. Each application's behaviour comes from its own generator, `Random(f"{seed}:{index}")`,
and each reviewer's or council member's choice from the seed, the application and that
person: never from arrival order or timing, so one seed always gives one funnel."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum

SPECIALTIES = ["cardiology", "oncology", "radiology", "neurology", "endocrinology"]
OPERATOR_BUDGET_RUB = 2_540_000_000
REVIEW_MISSES_PER_APPLICATION = 3  # then the next experts all review: nobody eligible runs out


class Fate(StrEnum):
    """How the applicant's part ends, before the council has its say."""

    council = "council"  # goes all the way to the council
    ineligible = "ineligible"  # applies with a specialty the call does not cover
    withdraws = "withdraws"  # withdraws while under review
    lets_expire = "lets_expire"  # has a fixable gap and never revises
    late = "late"  # tries after intake has closed: refused, never an application


class ReviewerMove(StrEnum):
    review = "review"
    decline = "decline"
    ignore = "ignore"  # never answers the offer: it expires
    miss_deadline = "miss_deadline"  # accepts, never reviews: the deadline passes


@dataclass(frozen=True)
class Behaviour:
    """Shares of the funnel; the defaults give the operator's shape (DESIGN.md, section 1)."""

    ineligible: float = 0.03
    withdraws: float = 0.03
    lets_expire: float = 0.03
    late_attempts: float = 0.04  # extra tries after the close, as a share of applications
    fixable_gap: float = 0.12  # of those who go on: revise once, then go on
    approve: float = 0.4725  # of those reaching the council: 0.91 x 0.4725 = 43 %
    deferred_once: float = 0.15  # of those reaching the council
    joint: float = 0.4  # with a university partner
    implemented: float = 0.30  # of approved projects
    stopped: float = 0.50  # of approved projects: the pilot's decision stops it


@dataclass(frozen=True)
class ApplicationPlan:
    index: int
    applicant: int  # which institution's applicant
    specialty: int  # index in SPECIALTIES; -1: one the call does not cover
    requested_rub: int
    duration_months: int
    fate: Fate
    gap: bool
    quality: int  # the score reviewers converge on
    council: list[str] = field(default_factory=list)  # intended decision per appearance
    amount_share: float = 1.0
    clinics: list[int] = field(default_factory=list)
    pilot: str = "implement"  # the evaluation's recommendation and the admin's decision
    outcome: str = "implemented"  # the final report's outcome
    targets_met: bool = True
    arrival: float = 0.0  # share of the intake window before it applies

    @property
    def joint_partner(self) -> str | None:
        return None if self.index % 5 >= 2 else f"university-{self.index % 7}"


def _rng(key: str) -> random.Random:
    """A generator of its own for each decision: reproducible by design, never secret."""
    return random.Random(key)  # noqa: S311


def plan(seed: int, applications: int, institutions: int, clinics: int) -> list[ApplicationPlan]:
    """Every application's behaviour (and the late attempts after them)."""
    behaviour = Behaviour()
    late = round(applications * behaviour.late_attempts)
    return [
        _one(seed, i, institutions, clinics, behaviour, late=i >= applications)
        for i in range(applications + late)
    ]


def _one(
    seed: int, index: int, institutions: int, clinics: int, b: Behaviour, *, late: bool
) -> ApplicationPlan:
    rng = _rng(f"{seed}:{index}")
    applicant = index % institutions if index < institutions else rng.randrange(institutions)
    u = rng.random()
    fate = Fate.council
    for name, share in (
        (Fate.ineligible, b.ineligible),
        (Fate.withdraws, b.withdraws),
        (Fate.lets_expire, b.lets_expire),
    ):
        if u < share:
            fate = name
            break
        u -= share
    if late:
        fate = Fate.late
    approve = rng.random() < b.approve
    decisions = ["approve" if approve else "reject"]
    if rng.random() < b.deferred_once:
        decisions.insert(0, "defer")
    end = rng.random()
    pilot, outcome = "implement", "implemented"
    if end >= b.implemented:
        pilot = "stop" if end < b.implemented + b.stopped else "implement"
        outcome = "not_implemented"
    return ApplicationPlan(
        index=index,
        applicant=applicant,
        specialty=-1 if fate == Fate.ineligible else rng.randrange(len(SPECIALTIES)),
        requested_rub=rng.randrange(10, 51) * 1_000_000,
        duration_months=rng.choice([12, 18, 24, 36]),
        fate=fate,
        gap=fate == Fate.lets_expire or rng.random() < b.fixable_gap,
        quality=rng.randint(7, 9) if approve else rng.randint(3, 6),
        council=decisions,
        amount_share=rng.choice([1.0, 1.0, 0.9, 0.8]),
        clinics=sorted(rng.sample(range(clinics), k=min(clinics, rng.choice([1, 1, 1, 2])))),
        pilot=pilot,
        outcome=outcome,
        targets_met=pilot == "implement",
        arrival=rng.random() * 0.6,
    )


def reviewer_move(seed: int, index: int, reviewer: int) -> ReviewerMove:
    """What reviewer `reviewer` does with application `index` when it is offered."""
    u = _rng(f"{seed}:{index}:reviewer:{reviewer}").random()
    if u < 0.08:
        return ReviewerMove.decline
    if u < 0.12:
        return ReviewerMove.ignore
    if u < 0.15:
        return ReviewerMove.miss_deadline
    return ReviewerMove.review


def review_score(seed: int, index: int, reviewer: int, quality: int) -> int:
    """A reviewer's score on every criterion: the application's quality, give or take one."""
    noise = _rng(f"{seed}:{index}:score:{reviewer}").choice([-1, 0, 0, 1])
    return max(1, min(10, quality + noise))


def vote(seed: int, plan: ApplicationPlan, appearance: int, member: int) -> str:
    """A council member's vote on the application at its `appearance`-th session (from 0):
    the intended decision, with one dissenter in five, until the third session, where all
    agree so that every application is decided in the end."""
    intended = plan.council[min(appearance, len(plan.council) - 1)]
    if appearance >= 2:
        return intended
    u = _rng(f"{seed}:{plan.index}:vote:{appearance}:{member}").random()
    if u < 0.85:
        return intended
    return "reject" if intended != "reject" else "defer"


def council_decision(seed: int, plan: ApplicationPlan, members: int) -> str:
    """What the council will decide in the end, from its members' votes session by session
    (the majority of the votes cast; no majority defers to the next session)."""
    for appearance in range(10):
        votes = [vote(seed, plan, appearance, m) for m in range(members)]
        for choice in ("approve", "reject"):
            if votes.count(choice) * 2 > members:
                return choice
    raise AssertionError("the council's votes never settle")  # vote() agrees by the third


def expected_final_stages(seed: int, plans: list[ApplicationPlan], members: int) -> dict[str, int]:
    """The funnel the seed intends: what `grantflow simulate` must end with, whatever the
    timing."""
    stages: dict[str, int] = {}
    ends = {Fate.ineligible: "ineligible", Fate.withdraws: "withdrawn", Fate.lets_expire: "expired"}
    for p in plans:
        if p.fate == Fate.late:
            continue
        if p.fate == Fate.council:
            stage = "closed" if council_decision(seed, p, members) == "approve" else "rejected"
        else:
            stage = ends[p.fate]
        stages[stage] = stages.get(stage, 0) + 1
    return dict(sorted(stages.items()))
