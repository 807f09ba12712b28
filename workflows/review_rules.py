"""The review stage's rules and texts: scores, deadlines and reminders, what reviewers and
admins are told. Pure functions of their arguments (no clock, no workflow), so the review
workflow runs them in-process and replays get the same answers; tests call them directly."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol

from schemas.history import Waiting
from schemas.review import ReviewSpec, Task, TaskStatus

UNKNOWN_TASK = "no such review task"


class Weighted(Protocol):
    """A rubric criterion as scoring reads it."""

    @property
    def name(self) -> str: ...

    @property
    def weight(self) -> float: ...


class Text(NamedTuple):
    """A notification's subject and body."""

    subject: str
    body: str


# --- scores ----------------------------------------------------------------------------------


def weighted_score(scores: dict[str, int], rubric: Sequence[Weighted]) -> float:
    """One review's score: its criteria's scores weighted by the rubric."""
    total = sum(c.weight for c in rubric)
    return round(sum(scores[c.name] * c.weight for c in rubric) / total, 4)


def aggregate(scores: list[float]) -> tuple[float, float]:
    """The application's score (the mean of its reviews) and their spread (max - min)."""
    return round(sum(scores) / len(scores), 4), round(max(scores) - min(scores), 4)


def review_problems(review: ReviewSpec, rubric: Sequence[Weighted], low: int, high: int) -> str:
    """Everything wrong with a review's scores, in one message ('' when none)."""
    names = [c.name for c in rubric]
    problems = []
    if missing := [n for n in names if n not in review.scores]:
        problems.append(f"missing scores for {', '.join(missing)}")
    if unknown := sorted(set(review.scores) - set(names)):
        problems.append(f"unknown criteria {', '.join(unknown)} (the rubric: {', '.join(names)})")
    if bad := [f"{n}={v}" for n, v in review.scores.items() if n in names and not low <= v <= high]:
        problems.append(f"scores must be integers from {low} to {high}: {', '.join(bad)}")
    return "; ".join(problems)


def extra_reviewer_reason(spread: float, threshold: float) -> str:
    return (
        f"the scores differ by {spread:g}, over the programme's threshold of {threshold:g}: "
        "one more expert"
    )


# --- deadlines -------------------------------------------------------------------------------


def reminder_at(task: Task, lead: timedelta) -> datetime | None:
    """When the task's reviewer is reminded of its current deadline (None: not, or already)."""
    deadline = task.deadline
    if deadline is None or task.reminded:
        return None
    at = deadline - lead
    start = task.offered_at if task.status == TaskStatus.offered else None
    # No reminder when the whole window is shorter than the lead time.
    return None if start is not None and at <= start else at


def next_due(tasks: Iterable[Task], lead: timedelta) -> datetime | None:
    """The open tasks' next deadline or reminder."""
    times = []
    for task in tasks:
        if task.deadline is not None:
            times.append(task.deadline)
        if (at := reminder_at(task, lead)) is not None:
            times.append(at)
    return min(times, default=None)


def no_expert_flag(specialty: str, missing: int) -> str:
    return (
        f"no eligible {specialty} expert is left for this application "
        f"({missing} review(s) missing): add a reviewer by hand"
    )


def nobody_to_reassign_to(specialty: str, task: Task) -> str:
    return (
        f"no eligible {specialty} expert is left to take this task over: "
        f"it stays with {task.reviewer_name}"
    )


# --- what reviewers are told -----------------------------------------------------------------


def _missed(task: Task) -> str:
    return "accept or decline" if task.status == TaskStatus.offered else "submit the review"


def expiry_reason(task: Task, deadline: datetime) -> str:
    return f"{task.reviewer_name} did not {_missed(task)} by {deadline.isoformat()}"


def expired(title: str, task: Task, deadline: datetime) -> Text:
    return Text(
        f"Review task expired: {title}",
        f"You did not {_missed(task)} by {deadline.isoformat()}; "
        "the application has been offered to another expert.",
    )


def reminder(title: str, task: Task, deadline: datetime) -> Text:
    what = "accept or decline" if task.status == TaskStatus.offered else "submit your review"
    return Text(
        f"Reminder: {what} by {deadline.isoformat()}",
        f"Please {what} for '{title}' by {deadline.isoformat()}.",
    )


def extended(title: str, until: datetime, reason: str) -> Text:
    return Text(
        f"New deadline: {until.isoformat()}",
        f"An admin extended your deadline for '{title}' to {until.isoformat()}: {reason}",
    )


def reassigned(title: str, reason: str) -> Text:
    return Text(
        f"Review task withdrawn: {title}",
        f"An admin gave this review to another expert: {reason}",
    )


def flagged(title: str) -> str:
    return f"Needs an admin: {title}"


# --- who the review waits for ----------------------------------------------------------------


def waiting_for_task(
    workflow_id: str, task: Task, lead: timedelta, submitted: int, required: int
) -> Waiting:
    """The task's reviewer: what they must do and by when (a missed deadline offers the
    application to another expert)."""
    at = reminder_at(task, lead)
    otherwise = "the task expires and the application is offered to another expert"
    if at is not None:
        otherwise = f"a reminder at {at.isoformat()}, then {otherwise}"
    return Waiting(
        workflow_id=workflow_id,
        who=f"reviewer {task.reviewer_name}",
        user_ids=[task.reviewer_id],
        what=(
            "accept or decline the review task"
            if task.status == TaskStatus.offered
            else f"submit the review ({submitted} of {required} in)"
        ),
        by=task.deadline,
        otherwise=otherwise,
    )


def waiting_for_admins(workflow_id: str, flag: str) -> Waiting:
    return Waiting(
        workflow_id=workflow_id,
        who="admins",
        what=flag,
        otherwise="the application stays in review, flagged",
    )
