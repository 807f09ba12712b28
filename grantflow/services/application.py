"""Applications: submit, read, list, revise, withdraw, and the timeline of what happened.

Writes are Updates of the application's workflow (update-with-start for a submission); reads
come from PostgreSQL. Another applicant's application is NotFound, never Forbidden, so that
ids reveal nothing."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from temporalio.client import WithStartWorkflowOperation, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy

from grantflow.services.context import Caller, Resources, require
from grantflow.services.errors import Conflict, Invalid, NotFound, temporal_refusals
from grantflow.services.programme import NOT_FOUND as PROGRAMME_NOT_FOUND
from grantflow.services.programme import intake_refusal
from grantflow.services.updates import answered, send
from grantflow.store import application, audit, programme
from schemas.admin import AdminAction, RescreenRequest
from schemas.application import (
    ApplicationContent,
    ApplicationCreate,
    ApplicationPage,
    ApplicationPublic,
    ApplicationStart,
    ContentSpec,
    RevisionRequest,
    TimelineEntry,
    WithdrawalRequest,
)
from schemas.common import Role, Stage
from workflows import ids
from workflows.application import PROGRAMME, STAGE, ApplicationWorkflow

IDEMPOTENCY_NAMESPACE = uuid.UUID("0f6b3c1e-1d2a-4c55-8a77-51f0b8e4a6d2")
NOT_FOUND = "application not found"
# What an applicant may see of the review stage: that reviews came in, never from whom.
_APPLICANT_REVIEW_EVENTS = {"review_submitted", "review_extra_reviewer"}


@dataclass(frozen=True)
class Submitted:
    application: ApplicationPublic
    created: bool  # False: a retry with the same Idempotency-Key found the first one


def parse_id(value: str, what: str = NOT_FOUND) -> uuid.UUID:
    """An id from a path or a form; one that is not even a uuid is simply not found."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(what) from None


async def get(res: Resources, caller: Caller, application_id: str) -> ApplicationPublic:
    """One application: its stage, what is expected of the applicant (`action_required`) and
    by when (`deadline`), and the screening findings. Its applicant and admins only."""
    found = await application.get(res.pool, parse_id(application_id))
    if found is None or not (caller.is_admin or found.applicant_id == caller.actor.user_id):
        raise NotFound(NOT_FOUND)
    return found


async def get_open(res: Resources, caller: Caller, application_id: str) -> ApplicationPublic:
    """The application if the caller may see it and it is at an open stage (else Conflict)."""
    found = await get(res, caller, application_id)
    if found.stage.is_final:
        raise Conflict(f"the application is already {found.stage}")
    return found


async def submit(
    res: Resources, caller: Caller, body: ApplicationCreate, idempotency_key: str | None = None
) -> Submitted:
    """Apply to a programme (applicants). The application is screened at once by its
    workflow; the answer shows the outcome. A retry with the same idempotency key returns the
    same application (a different application under a used key is Invalid). With no worker
    up, Unavailable."""
    require(caller, Role.applicant)
    digest = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
    applicant = uuid.UUID(caller.actor.user_id)
    if idempotency_key:
        seen = await application.by_idempotency_key(res.pool, applicant, idempotency_key)
        if seen is not None:
            if seen["request_digest"] != digest:
                raise Invalid("this Idempotency-Key was used for a different application")
            return Submitted(await get(res, caller, str(seen["id"])), created=False)
    programme_id = parse_id(body.programme_id, PROGRAMME_NOT_FOUND)
    start_of = await programme.get_start(res.pool, programme_id)
    public = await programme.get(res.pool, programme_id) if start_of else None
    if start_of is None or public is None:
        raise NotFound(PROGRAMME_NOT_FOUND)
    now = datetime.now(UTC)
    if (refusal := intake_refusal(public, now)) is not None:
        raise Conflict(refusal)
    if caller.organisation_type is None:
        raise Conflict("your account has no institution")
    application_id = str(
        uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{applicant}:{idempotency_key}")
        if idempotency_key
        else uuid.uuid4()
    )
    start = ApplicationStart(
        application_id=application_id,
        applicant=caller.actor,
        organisation_type=caller.organisation_type,
        programme=start_of,
        content=ContentSpec.model_validate(body.model_dump(exclude={"programme_id"})),
        submitted_at=now,
        idempotency_key=idempotency_key,
        request_digest=digest,
    )
    # Update-with-start: concurrent retries share one workflow (USE_EXISTING) and one update
    # id, so all of them get the same application once it is on record (also the retry of
    # one refused because no worker was up).
    workflow_id = ids.application(application_id)
    run = WithStartWorkflowOperation(
        ApplicationWorkflow.run,
        start,
        id=workflow_id,
        task_queue=res.settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(PROGRAMME, start_of.programme_id),
                SearchAttributePair(STAGE, Stage.submitted.value),
            ]
        ),
    )
    await answered(
        res,
        workflow_id,
        res.client.execute_update_with_start_workflow(
            ApplicationWorkflow.registered, id="registered", start_workflow_operation=run
        ),
        started=run,
        submission=True,
    )
    return Submitted(await get(res, caller, application_id), created=True)


async def page(
    res: Resources,
    caller: Caller,
    *,
    programme_id: uuid.UUID | None = None,
    stage: Stage | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> ApplicationPage:
    """Applications, newest first: an applicant sees its own, an admin all. A page's
    `next_cursor` given as `cursor` gives the next page (a bad cursor is Invalid)."""
    require(caller, Role.applicant, Role.admin)
    try:
        items, next_cursor = await application.page(
            res.pool,
            limit=limit,
            cursor=cursor,
            programme_id=programme_id,
            stage=stage,
            applicant_id=None if caller.is_admin else uuid.UUID(caller.actor.user_id),
        )
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    return ApplicationPage(items=items, next_cursor=next_cursor)


async def timeline(res: Resources, caller: Caller, application_id: str) -> list[TimelineEntry]:
    """Everything that happened to the application, oldest first. The applicant sees that
    reviews came in, never from whom; admins see every entry with its actor."""
    await get(res, caller, application_id)
    rows = await audit.history(res.pool, uuid.UUID(application_id))
    own = ids.application(application_id)
    entries = _once(
        [
            (
                r["workflow_id"] == own,
                TimelineEntry.model_validate({**dict(r), "detail": json.loads(r["detail"])}),
            )
            for r in rows
        ]
    )
    return entries if caller.is_admin else [e for e in map(_blind, entries) if e is not None]


# How far apart the two records of one change may be: the child workflow records it, then
# signals the application's workflow, which records it as well, moments later.
SAME_CHANGE = timedelta(minutes=5)


def _once(entries: list[tuple[bool, TimelineEntry]]) -> list[TimelineEntry]:
    """One line per change: when the application's workflow (`True`) and one of its children
    (the agreement, the pilot) both record the same change, a single entry with what each
    knew (the stage from the application, the actor and the reason from the child). Two
    children's records of one kind (two reviews sent) stay two lines."""
    kept: list[TimelineEntry] = []
    unpaired: list[tuple[int, bool]] = []  # entries not merged yet: index, from the application
    for own, entry in entries:
        twin = next(
            (
                (k, n)
                for k, (n, other_own) in enumerate(unpaired)
                if other_own != own
                and kept[n].kind == entry.kind
                and entry.at - kept[n].at <= SAME_CHANGE
            ),
            None,
        )
        if twin is None:
            unpaired.append((len(kept), own))
            kept.append(entry)
            continue
        k, n = twin
        del unpaired[k]
        first = kept[n]
        kept[n] = first.model_copy(
            update={
                "stage": first.stage or entry.stage,
                "actor_role": first.actor_role or entry.actor_role,
                "actor_name": first.actor_name or entry.actor_name,
                "reason": first.reason or entry.reason,
                "detail": {**entry.detail, **first.detail},
            }
        )
    return kept


def _blind(entry: TimelineEntry) -> TimelineEntry | None:
    if not entry.kind.startswith("review_"):
        return entry
    if entry.kind not in _APPLICANT_REVIEW_EVENTS:
        return None
    return entry.model_copy(
        update={"actor_role": None, "actor_name": None, "reason": None, "detail": {}}
    )


async def revise(
    res: Resources, caller: Caller, application_id: str, content: ApplicationContent
) -> ApplicationPublic:
    """Send the revised application while it is `revision_requested` (its applicant). It is
    screened again at once; the answer shows the outcome."""
    await get_open(res, caller, application_id)
    handle = res.client.get_workflow_handle_for(
        ApplicationWorkflow.run, ids.application(application_id)
    )
    await send(
        res,
        handle,
        ApplicationWorkflow.revise,
        RevisionRequest(
            actor=caller.actor, content=ContentSpec.model_validate(content.model_dump())
        ),
    )
    return await get(res, caller, application_id)


async def withdraw(
    res: Resources, caller: Caller, application_id: str, reason: str
) -> ApplicationPublic:
    """Withdraw the application at any open stage (its applicant, or an admin on its
    behalf, whose name and reason the timeline records)."""
    await get_open(res, caller, application_id)
    handle = res.client.get_workflow_handle_for(
        ApplicationWorkflow.run, ids.application(application_id)
    )
    await send(
        res,
        handle,
        ApplicationWorkflow.withdraw,
        WithdrawalRequest(actor=caller.actor, reason=reason),
    )
    return await get(res, caller, application_id)


# --- admins' interventions: each an Update with a reason, recorded with the admin's name -----

Send = Callable[[ApplicationPublic], Awaitable[object]]


def workflow(res: Resources, application_id: str) -> WorkflowHandle[ApplicationWorkflow, Stage]:
    """The handle of an application's workflow."""
    return res.client.get_workflow_handle_for(
        ApplicationWorkflow.run, ids.application(application_id)
    )


async def intervene(
    res: Resources, caller: Caller, application_id: str, sender: Send
) -> ApplicationPublic:
    """An admin's intervention on an open application (NotFound, or Conflict once it has
    ended): `sender`, given the application, sends the admin's Update, whose refusal is a
    Conflict with the workflow's reason. Returns the application as it is then."""
    require(caller, Role.admin)
    found = await get_open(res, caller, application_id)
    with temporal_refusals():
        await sender(found)
    return await get(res, caller, application_id)


async def rescreen(
    res: Resources, caller: Caller, application_id: str, reason: str
) -> ApplicationPublic:
    """Screen an application awaiting revision again, against its programme as it stands now
    (after a correction), with a reason (admins); the answer shows the new outcome. Refused
    (Conflict) unless a revision is awaited."""

    async def screen_again(found: ApplicationPublic) -> None:
        start = await programme.get_start(res.pool, uuid.UUID(found.programme_id))
        assert start is not None  # an application's programme is never deleted
        request = RescreenRequest(actor=caller.actor, reason=reason, programme=start)
        await send(res, workflow(res, found.id), ApplicationWorkflow.rescreen, request)

    return await intervene(res, caller, application_id, screen_again)


async def cancel(
    res: Resources, caller: Caller, application_id: str, reason: str
) -> ApplicationPublic:
    """Cancel a stuck application at any open stage, with a reason (admins): its review,
    agreement or pilot stops, and any money reserved for it is back in the budget when this
    returns."""
    request = AdminAction(actor=caller.actor, reason=reason)
    return await intervene(
        res,
        caller,
        application_id,
        lambda found: send(res, workflow(res, found.id), ApplicationWorkflow.cancel, request),
    )
