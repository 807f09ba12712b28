"""Drafts of applications: saved as the applicant types, so that a reload, a closed tab or a
sign-out loses nothing. A draft is not an application: it has no workflow and no stage until
it is submitted, and then its id is the submission's idempotency key (a double click on
"Submit" makes one application)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from grantflow.services import application
from grantflow.services.context import Caller, Resources, require
from grantflow.services.errors import Conflict, NotFound
from grantflow.services.programme import NOT_FOUND as PROGRAMME_NOT_FOUND
from grantflow.services.programme import intake_refusal
from grantflow.store import draft, programme
from grantflow.store.draft import Draft as Draft  # what the pages show
from schemas.application import ApplicationCreate, ApplicationPublic
from schemas.common import Role

NOT_FOUND = "draft not found"
MAX_CONTENT_CHARS = 200_000  # what a form can hold, with room: the body limit is 1 MB


def _owner(caller: Caller) -> uuid.UUID:
    require(caller, Role.applicant)
    return uuid.UUID(caller.actor.user_id)


async def start(res: Resources, caller: Caller, programme_id: str) -> Draft:
    """A new, empty draft for a programme whose intake is open (applicants). NotFound for no
    such programme; Conflict when its intake is not open."""
    owner = _owner(caller)
    pid = application.parse_id(programme_id, PROGRAMME_NOT_FOUND)
    public = await programme.get(res.pool, pid)
    if public is None:
        raise NotFound(PROGRAMME_NOT_FOUND)
    if (refusal := intake_refusal(public, datetime.now(UTC))) is not None:
        raise Conflict(refusal)
    created = await draft.get(res.pool, await draft.create(res.pool, owner, pid, {}))
    assert created is not None
    return created


async def get(res: Resources, caller: Caller, draft_id: str) -> Draft:
    """One of the caller's drafts (another applicant's is NotFound)."""
    owner = _owner(caller)
    found = await draft.get(res.pool, application.parse_id(draft_id, NOT_FOUND))
    if found is None or found.applicant_id != owner:
        raise NotFound(NOT_FOUND)
    return found


async def save(res: Resources, caller: Caller, draft_id: str, content: dict[str, Any]) -> Draft:
    """Keep what the form holds, valid or not (its applicant). Conflict once submitted."""
    found = await get(res, caller, draft_id)
    if found.application_id is not None:
        raise Conflict("this draft was submitted; it can no longer be changed")
    await draft.save(res.pool, found.id, found.applicant_id, content)
    return await get(res, caller, draft_id)


async def mine(res: Resources, caller: Caller) -> list[Draft]:
    """The caller's drafts not submitted yet, last edited first (applicants)."""
    return await draft.open_drafts(res.pool, _owner(caller))


async def discard(res: Resources, caller: Caller, draft_id: str) -> None:
    """Delete a draft that was not submitted (its applicant)."""
    found = await get(res, caller, draft_id)
    if not await draft.delete(res.pool, found.id, found.applicant_id):
        raise Conflict("this draft was submitted; it can no longer be deleted")


async def submit(
    res: Resources, caller: Caller, draft_id: str, body: ApplicationCreate
) -> ApplicationPublic:
    """Submit the draft as an application (its applicant), through the same service as
    `POST /v1/applications`, keyed by the draft: a second click, or a retry after a lost
    answer, returns the first application."""
    found = await get(res, caller, draft_id)
    if found.application_id is not None:
        return await application.get(res, caller, str(found.application_id))
    if body.programme_id != str(found.programme_id):
        raise Conflict("a draft is submitted to its own programme")
    submitted = await application.submit(res, caller, body, idempotency_key=f"draft:{found.id}")
    await draft.mark_submitted(res.pool, found.id, uuid.UUID(submitted.application.id))
    return submitted.application
