"""The pilot's and its sites' rules and texts: when a round of sites is done, what the clinics,
the evaluator and the admins are told, and who the pilot waits for. Pure functions of their
arguments (no clock, no workflow), so the pilot and site workflows run them in-process and
replays get the same answers."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from schemas.history import Waiting, WaitingAnswer
from schemas.pilot import PilotState, PilotStatus, SiteState, SiteStatus

OPEN_SITE = (SiteStatus.proposed, SiteStatus.accepted, SiteStatus.running)


class Text(NamedTuple):
    """A notification's subject and body."""

    subject: str
    body: str


# --- the pilot -------------------------------------------------------------------------------


def round_done(state: PilotState, replaced: set[str], running: int) -> bool:
    """Every site of the round has ended, each declined one was replaced, and one reported."""
    sites = [s for s in state.sites if s.round == state.round]
    unreplaced = [s for s in sites if s.status == SiteStatus.declined and s.site_id not in replaced]
    done = [s for s in sites if s.status == SiteStatus.completed]
    return running == 0 and not unreplaced and bool(done)


def declined(site: SiteState) -> str:
    return f"{site.clinic_id} declined the pilot ({site.reason}): propose another clinic"


def needs_an_admin(title: str, reason: str) -> Text:
    return Text(f"Pilot needs an admin: {title}", reason)


def evaluation_requested(title: str) -> Text:
    return Text(
        f"Pilot evaluation requested: {title}",
        "Every site has reported; please evaluate the results against the targets.",
    )


def pilot_waiting(workflow_id: str, state: PilotState) -> WaitingAnswer:
    """While the sites run, `ask` names the open sites' workflows; then the evaluator, then
    the admins' decision. A flag (a declined site, no evaluator) waits on the admins."""
    waiting = []
    if state.flag_reason is not None:
        waiting.append(
            Waiting(
                workflow_id=workflow_id,
                who="admins",
                what=state.flag_reason,
                otherwise="the pilot cannot go on to its evaluation",
            )
        )
    if state.status == PilotStatus.running:
        ask = [s.site_id for s in state.sites if s.round == state.round and s.status in OPEN_SITE]
        return WaitingAnswer(workflow_id=workflow_id, waiting=waiting, ask=ask)
    if state.status == PilotStatus.evaluating and state.evaluator_id is not None:
        waiting.append(
            Waiting(
                workflow_id=workflow_id,
                who="the evaluating expert",
                user_ids=[state.evaluator_id],
                what="evaluate the pilot's results against their targets",
                otherwise="the pilot waits; an admin may assign another evaluator",
            )
        )
    elif state.status == PilotStatus.deciding:
        waiting.append(
            Waiting(
                workflow_id=workflow_id,
                who="admins",
                what="decide on the evaluated pilot: implement, extend or stop",
                otherwise="the pilot waits for the decision; reporting goes on",
            )
        )
    return WaitingAnswer(workflow_id=workflow_id, waiting=waiting)


# --- a site ----------------------------------------------------------------------------------


def site_reminder_at(state: SiteState, lead: timedelta) -> datetime:
    """When a running site is reminded of its report: `lead` before the deadline, not before
    the period ends."""
    return max(state.ends_at, state.report_by - lead)


def site_proposed(title: str, starts_at: datetime, duration: timedelta) -> Text:
    return Text(
        f"Pilot proposed at your clinic: {title}",
        f"Starting {starts_at.isoformat()} for {duration}. Please accept or decline.",
    )


def site_report_due(title: str, by: datetime) -> Text:
    return Text(
        f"Site report due: {title}", f"Please report the measured metrics by {by.isoformat()}."
    )


def site_overdue(title: str, clinic_id: str, by: datetime) -> Text:
    return Text(
        f"Pilot site overdue: {title}",
        f"{clinic_id} has not reported; it was due {by.isoformat()}.",
    )


def site_waiting(
    workflow_id: str, state: SiteState, lead: timedelta, now: datetime
) -> Waiting | None:
    """The clinic's answer to the proposal, the start of the period, then the clinic's report
    of the measured metrics (reminded, then escalated to the admins)."""
    clinic = f"the coordinators of {state.clinic_id}"
    if state.status == SiteStatus.proposed:
        return Waiting(
            workflow_id=workflow_id,
            who=clinic,
            what="accept or decline the pilot at the clinic",
            otherwise="the site stays proposed: the pilot cannot run there",
        )
    if state.status == SiteStatus.accepted:
        return Waiting(
            workflow_id=workflow_id,
            who="nobody (a timer)",
            what="the pilot period starts at the clinic",
            by=state.starts_at,
        )
    if state.status != SiteStatus.running:
        return None
    remind_at = site_reminder_at(state, lead)
    return Waiting(
        workflow_id=workflow_id,
        who=clinic,
        what=(
            f"run the pilot until {state.ends_at.isoformat()}, then report the metrics"
            if now < state.ends_at
            else "report the measured metrics"
        ),
        by=state.report_by,
        otherwise=(
            "it is overdue and escalated to the admins"
            if state.escalated
            else ("" if state.reminded else f"a reminder at {remind_at.isoformat()}, ")
            + "then escalation to the admins"
        ),
    )
