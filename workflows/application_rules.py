"""The application workflow's texts and small rules: what the applicant, the council and the
admins are told at each stage, how a child workflow's outcome becomes the next stage, and who
must act next. Pure functions of their arguments (no clock, no workflow); screening's rules are
in workflows/intake.py."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from temporalio.exceptions import ApplicationError

from schemas.admin import AdminAction
from schemas.agreement import AgreementOutcome, AgreementStatus, ProjectOutcome
from schemas.application import Finding, StageChange, WaitingFor
from schemas.common import Role, Stage
from schemas.history import Waiting, WaitingAnswer

SCREENING = WaitingFor(who="system", what="screening")
REVIEW = WaitingFor(who="expert reviewers", what="review the application")
COUNCIL = WaitingFor(who="council", what="decide on the application")
VOTE = WaitingFor(who="council", what="vote and decide")
LATER_SESSION = WaitingFor(who="council", what="decide at a later session")
PROJECT = WaitingFor(who="applicant", what="plan the pilot and report progress as scheduled")
PILOT = WaitingFor(who="clinics", what="run the pilot and report its metrics")
REPORTING = WaitingFor(who="applicant", what="report until the final report")
REVISION_LAPSES = "the application expires"


class Ending(NamedTuple):
    """The final stage an ended agreement leads to, and why."""

    stage: Stage
    kind: str
    reason: str
    outcome: ProjectOutcome | None = None


def reasons(findings: list[Finding]) -> str:
    return "; ".join(f.message for f in findings)


def revision_wanted(findings: list[Finding], by: datetime) -> WaitingFor:
    return WaitingFor(
        who="applicant",
        by=by,
        otherwise=REVISION_LAPSES,
        what="revise the application: " + reasons(findings),
    )


def revision_extended(asked: WaitingFor | None, until: datetime) -> WaitingFor:
    """The applicant's revision request with its new deadline."""
    return WaitingFor(
        who="applicant",
        what=asked.what if asked else "revise the application",
        by=until,
        otherwise=REVISION_LAPSES,
    )


def agreement_offered(by: datetime) -> WaitingFor:
    return WaitingFor(
        who="applicant",
        what="accept the agreement",
        by=by,
        otherwise="the approval lapses and its money returns to the budget",
    )


def reviewed(reviews: int, score: float, spread: float) -> str:
    return f"{reviews} reviews, score {score:g}, spread {spread:g}"


def agreement_ending(result: AgreementOutcome) -> Ending | None:
    """The stage the agreement's end leads to (None: it ended without one, cancelled)."""
    if result.status == AgreementStatus.lapsed:
        return Ending(Stage.expired, "agreement_lapsed", "the agreement was not accepted in time")
    if result.status == AgreementStatus.declined:
        return Ending(Stage.withdrawn, "agreement_declined", "the applicant declined the agreement")
    if result.status == AgreementStatus.stopped:
        return Ending(
            Stage.closed,
            "project_stopped",
            "the pilot's decision stopped the project",
            ProjectOutcome.not_implemented,
        )
    if result.project_outcome is not None:
        return Ending(
            Stage.closed,
            f"project_{result.project_outcome.value}",
            "the final report was accepted",
            result.project_outcome,
        )
    return None


def why_ended(ended_by: StageChange | None) -> str:
    """Why the application ended early, as its children's records say it."""
    if ended_by is not None and ended_by.stage == Stage.cancelled and ended_by.actor is not None:
        return (
            f"the application was cancelled by an admin ({ended_by.actor.name}): {ended_by.reason}"
        )
    return "the application was withdrawn"


def check_admin(request: AdminAction) -> None:
    if request.actor.role != Role.admin:
        raise ApplicationError("only an admin can do this")
    if not request.reason.strip():
        raise ApplicationError("a reason is required")


def waiting_for(
    workflow_id: str,
    stage: Stage,
    own: WaitingFor | None,
    applicant_id: str,
    ask: list[str],
) -> WaitingAnswer:
    """Who must act next, what, by when and what happens otherwise; in the stages a child
    workflow (or the council session) holds, `ask` names it for the rest of the answer."""
    if own is None or stage.is_final or (ask and stage != Stage.agreement):
        return WaitingAnswer(workflow_id=workflow_id, ask=ask)
    waiting = Waiting(
        workflow_id=workflow_id,
        who=own.who,
        user_ids=[applicant_id] if own.who == "applicant" else [],
        what=own.what,
        by=own.by,
        otherwise=own.otherwise,
    )
    return WaitingAnswer(workflow_id=workflow_id, waiting=[waiting], ask=ask)
