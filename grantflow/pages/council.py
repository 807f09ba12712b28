"""Council members' pages: the sessions I sit on, and a session's agenda ranked by score with
each item's reviews (never the reviewers' names), the amount asked for, the budget left, the
tally and my vote. Voting calls the same service function as the JSON API; its refusals (not a
member, an amount above the request, the session closed) show beside the item voted on.

The standing (budget, tallies, decisions) is polled by htmx while the session is open; without
JavaScript the page shows it as of its loading, with a link to look again."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from grantflow.i18n import gettext as _
from grantflow.i18n import money
from grantflow.pages import display, forms
from grantflow.pages.display import N_
from grantflow.pages.review import recommendation_name
from grantflow.pages.web import PageRoute, Res, Viewer, is_htmx, redirect, render, signed_in
from grantflow.services import council
from grantflow.services.errors import Conflict, Forbidden, NotFound
from schemas.common import Role
from schemas.council import (
    AgendaItem,
    Choice,
    Decision,
    Outcome,
    SessionBudget,
    SessionState,
    Tally,
    VoteCreate,
    VoteSpec,
)

router = APIRouter(route_class=PageRoute, include_in_schema=False)
POLL_SECONDS = 3  # how often an open session's standing is looked at again
MAX_AMOUNT = 10**13  # schemas.common.Roubles' limit: anything above is no amount at all


async def member(viewer: Annotated[Viewer, Depends(signed_in)]) -> Viewer:
    if viewer.role != Role.council:
        raise Forbidden(_("This page is for council members."))
    return viewer


MemberViewer = Annotated[Viewer, Depends(member)]

CHOICES = {
    Choice.approve: N_("Approve"),
    Choice.reject: N_("Reject"),
    Choice.defer: N_("Defer to the next session"),
}
OUTCOMES = {
    Outcome.approved: N_("Approved"),
    Outcome.rejected: N_("Rejected"),
    Outcome.deferred: N_("Deferred to the next session"),
}
# The session's refusals, written for API users, said again for a member; each with the field
# it is about (None: the whole item).
REFUSALS = [
    ("you are not a member", None, N_("You are not a member of this session: only members vote.")),
    ("the session is closed", None, N_("The session is closed: it takes no more votes.")),
    ("the session is not open yet", None, N_("The session is not open yet: try again shortly.")),
    ("this item has already been decided", None, N_("This item is decided: it takes no votes.")),
    ("this application is not on", None, N_("This application is not on the agenda.")),
    ("only an approval can name", "amount", N_("Only an approval names an amount: clear it.")),
]  # fmt: skip


# A decision's reason as the session workflow writes it, said again in the member's language.
DECISION_REASONS = [
    (r"^quorum not met: (?P<cast>\d+) of (?P<quorum>\d+) votes$",
     N_("The quorum was not met: %(cast)s of %(quorum)s votes.")),
    (r"^no majority", N_("No choice had a majority of the votes.")),
    (r"^the programme has (?P<left>.+) left; approving (?P<amount>.+) would overspend it$",
     N_("The budget could not cover it: %(left)s left, %(amount)s to approve.")),
    (r"^approved \d+ of \d+ for ", ""),
    (r"^(rejected|deferred) \d+ of \d+: (?P<reasons>.*)$", N_("The members' reasons: %(reasons)s")),
]  # fmt: skip


def decision_reason(reason: str) -> str:
    for pattern, said in DECISION_REASONS:
        found = re.match(pattern, reason, re.DOTALL)
        if found:
            return _(said, **found.groupdict()) if said else ""
    return reason


def choice_name(value: Choice | str) -> str:
    return _(CHOICES[Choice(value)])


def outcome_name(value: Outcome | str) -> str:
    return _(OUTCOMES[Outcome(value)])


def refusal(message: str, item: AgendaItem) -> tuple[str | None, str]:
    """A vote's refusal in the member's language, and the field it belongs beside."""
    if message.startswith("the amount ") and "above the requested" in message:
        return "amount", _("At most the %(amount)s asked for.", amount=money(item.requested_rub))
    for start, field, said in REFUSALS:
        if message.startswith(start):
            return field, _(said)
    return None, display.refusal(message)


@dataclass(frozen=True)
class Row:
    """One agenda item as the page shows it."""

    item: AgendaItem
    tally: Tally
    decision: Decision | None
    mine: VoteSpec | None
    left_after: int | None  # the budget left if it and every open item above are approved


def rows(state: SessionState, budget: SessionBudget, mine: list[VoteSpec]) -> list[Row]:
    """The agenda in rank order; an open item says what the budget would be down to if it and
    every open item ranked above it were approved in full."""
    decided = {d.application_id: d for d in state.decisions}
    votes = {v.application_id: v for v in mine}
    left = budget.remaining_rub
    found = []
    for item in state.agenda:
        decision = decided.get(item.application_id)
        if decision is None:
            left -= item.requested_rub
        found.append(
            Row(
                item=item,
                tally=state.tallies.get(item.application_id, Tally()),
                decision=decision,
                mine=votes.get(item.application_id),
                left_after=None if decision else left,
            )
        )
    return found


def _context(**values: Any) -> dict[str, Any]:
    return {
        "choice_name": choice_name,
        "outcome_name": outcome_name,
        "decision_reason": decision_reason,
        "recommendation_name": recommendation_name,
        "CHOICES": [(c.value, choice_name(c)) for c in Choice],
        "poll_seconds": POLL_SECONDS,
        **values,
    }


@router.get("/council")
async def sessions(request: Request, viewer: MemberViewer, res: Res) -> Response:
    """The sessions I sit on, open ones first, with how many items I have voted on."""
    found = await council.my_sessions(res, viewer.caller)
    return render(request, "council_sessions.html", _context(sessions=found))


async def _standing(res: Res, viewer: Viewer, session_id: str) -> dict[str, Any]:
    state = await council.get_session(res, viewer.caller, session_id)
    budget = await council.session_budget(res, viewer.caller, session_id)
    mine = await council.my_votes(res, viewer.caller, session_id)
    return {
        "state": state,
        "budget": budget,
        "rows": rows(state, budget, mine),
        "is_member": viewer.caller.actor.user_id in state.members,
        "voted": len(mine),
        "institutions": await council.institution_names(res, viewer.caller, state),
    }


async def _session_page(
    request: Request,
    res: Res,
    viewer: Viewer,
    session_id: str,
    *,
    at: str | None = None,
    errors: forms.Errors | None = None,
    values: dict[str, str] | None = None,
    done: bool = False,
) -> Response:
    """The whole agenda, or (for htmx) the item `at` with the standing swapped beside it."""
    standing = await _standing(res, viewer, session_id)
    context = _context(**standing, at=at, errors=errors or {}, values=values or {}, done=done)
    row = next((r for r in standing["rows"] if r.item.application_id == at), None)
    if row is not None and is_htmx(request):
        return render(request, "council_vote_answer.html", {**context, "row": row})
    return render(request, "council_session.html", context)


@router.get("/council/{session_id}")
async def session(request: Request, viewer: MemberViewer, res: Res, session_id: str) -> Response:
    """The agenda ranked by score: per item its reviews, the amount asked for, the budget
    left, the tally and my vote, with the form to vote (or change my vote)."""
    voted = request.query_params.get("voted")
    return await _session_page(request, res, viewer, session_id, at=voted, done=bool(voted))


@router.get("/council/{session_id}/standing")
async def standing(request: Request, viewer: MemberViewer, res: Res, session_id: str) -> Response:
    """The budget, the tallies and the decisions as they are now (what htmx polls)."""
    context = _context(**await _standing(res, viewer, session_id), oob=True)
    return render(request, "council_standing.html", context)


def vote_values(form: FormData) -> dict[str, str]:
    """The vote form as typed."""

    def text(name: str, limit: int) -> str:
        value = form.get(name)
        return value.strip()[:limit] if isinstance(value, str) else ""

    return {
        "application_id": text("application_id", 100),
        "choice": text("choice", 20),
        "amount": text("amount", 40),
        "reason": text("reason", 5_000),
    }


def to_vote(values: dict[str, str]) -> VoteCreate | forms.Errors:
    """The form as the service's model, or each error by its field."""
    errors: forms.Errors = {}
    if values["choice"] not in {c.value for c in Choice}:
        errors["choice"] = _("Choose one of the options.")
    amount = forms.number(values["amount"])
    if amount is not None and not isinstance(amount, int):
        errors["amount"] = _("Enter a whole number of roubles, digits only.")
    elif isinstance(amount, int) and amount <= 0:
        errors["amount"] = _("Must be more than %(n)s.", n=0)
    elif isinstance(amount, int) and amount > MAX_AMOUNT:
        errors["amount"] = _("Must be at most %(n)s.", n=money(MAX_AMOUNT))
    if not values["reason"]:
        errors["reason"] = _("Say why, in a sentence or two.")
    elif len(values["reason"]) > 2_000:
        errors["reason"] = _("At most %(n)s characters.", n=2_000)
    if errors:
        return errors
    return VoteCreate(
        application_id=values["application_id"],
        choice=Choice(values["choice"]),
        amount_rub=amount,
        reason=values["reason"],
    )


@router.post("/council/{session_id}/votes")
async def vote(request: Request, viewer: MemberViewer, res: Res, session_id: str) -> Response:
    """Vote on one item (again, to change the vote): the item comes back with the tally, or
    with the refusal beside it and the vote as typed."""
    values = vote_values(await request.form())
    state = await council.get_session(res, viewer.caller, session_id)
    item = next((i for i in state.agenda if i.application_id == values["application_id"]), None)
    if item is None:
        return redirect(f"/council/{session_id}")
    body = to_vote(values)
    if isinstance(body, dict):
        return await _session_page(
            request, res, viewer, session_id, at=item.application_id, errors=body, values=values
        )
    try:
        await council.vote(res, viewer.caller, session_id, body)
    except NotFound:  # the state was read a moment ago: its workflow has ended since, closed
        field, said = None, _("The session is closed: it takes no more votes.")
        return await _session_page(
            request, res, viewer, session_id, at=item.application_id,
            errors={"form": said}, values=values,
        )  # fmt: skip
    except Conflict as exc:
        field, said = refusal(exc.message, item)
        return await _session_page(
            request, res, viewer, session_id, at=item.application_id,
            errors={field or "form": said}, values=values,
        )  # fmt: skip
    if is_htmx(request):
        return await _session_page(
            request, res, viewer, session_id, at=item.application_id, done=True
        )
    return redirect(f"/council/{session_id}?voted={item.application_id}#item-{item.rank}")
