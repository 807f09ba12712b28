"""What admins read about one application: the merged history of what happened, and what its
workflows are waiting for (each workflow's `waiting_for` Query)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from schemas.common import Output, Stage


class Waiting(Output):
    """One party that must act next: who, what, by when, and what happens if they don't."""

    workflow_id: str
    who: str = Field(description="In words: 'applicant', 'reviewer Dr. Volkova', 'admins'.")
    user_ids: list[str] = Field(default_factory=list, description="The users who can act.")
    what: str
    by: datetime | None = None
    otherwise: str | None = Field(default=None, description="What happens if nobody acts.")
    application_id: str | None = Field(
        default=None, description="Set by workflows that serve many applications (councils)."
    )


class WaitingAnswer(Output):
    """A workflow's `waiting_for` Query: what it waits for itself, and which other workflows
    (its children, the council session) hold the rest of the answer."""

    workflow_id: str
    waiting: list[Waiting] = Field(default_factory=list)
    ask: list[str] = Field(default_factory=list)


class WaitingPublic(Output):
    """What an open application is waiting for, from its workflows' own state."""

    application_id: str
    stage: Stage
    waiting: list[Waiting]


class HistoryActor(Output):
    user_id: str | None = None
    role: str | None = None
    name: str | None = None


class HistoryEntry(Output):
    """One line of an application's history: a domain event from the audit trail or an event
    of one of its workflows, in plain words, with a link to the Temporal Web UI."""

    at: datetime
    source: Literal["audit", "temporal"]
    workflow_id: str
    run_id: str | None = None
    event_id: int | None = None
    kind: str = Field(description="The audit event's kind, or the Temporal event type.")
    text: str
    actor: HistoryActor | None = None
    link: str


class HistoryPublic(Output):
    """An application's whole history, oldest first, and what it is waiting for now."""

    application_id: str
    stage: Stage
    waiting: list[Waiting]
    workflows: list[str] = Field(description="Every workflow run read, as `<id>/<run id>`.")
    entries: list[HistoryEntry]
