"""How the pages say things: stage names in plain words for each reader, the lifecycle's
status bar, what an applicant must do next, the timeline's entries, and the menu per role.

Strings are marked with `N_` here and translated where they are shown, in the reader's
language. A stage's internal name (`under_review`) never reaches an applicant."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from grantflow import i18n
from schemas.application import ApplicationPublic
from schemas.common import STEP_OF_STAGE, Role, Stage


def N_(message: str) -> str:
    return message


# What an applicant reads (Hypha keeps a staff name and an applicant's name per phase).
APPLICANT_STAGE = {
    Stage.submitted: N_("Received"),
    Stage.screening: N_("Being checked"),
    Stage.revision_requested: N_("Changes needed"),
    Stage.under_review: N_("With the experts"),
    Stage.reviewed: N_("Reviewed, waiting for the council"),
    Stage.in_council: N_("Before the council"),
    Stage.deferred: N_("Moved to the next council session"),
    Stage.approved: N_("Approved"),
    Stage.agreement: N_("Agreement accepted"),
    Stage.piloting: N_("Pilot testing in clinics"),
    Stage.reporting: N_("Reporting"),
    Stage.closed: N_("Completed"),
    Stage.rejected: N_("Not funded"),
    Stage.ineligible: N_("Not eligible"),
    Stage.withdrawn: N_("Withdrawn"),
    Stage.expired: N_("Closed: changes not sent in time"),
    Stage.cancelled: N_("Cancelled"),
}
# What staff read (reviewers, council, coordinators, admins): the process's own words.
STAFF_STAGE = {
    Stage.submitted: N_("Submitted"),
    Stage.screening: N_("Screening"),
    Stage.revision_requested: N_("Revision requested"),
    Stage.under_review: N_("Under review"),
    Stage.reviewed: N_("Reviewed"),
    Stage.in_council: N_("In council"),
    Stage.deferred: N_("Deferred"),
    Stage.approved: N_("Approved"),
    Stage.agreement: N_("Agreement"),
    Stage.piloting: N_("Piloting"),
    Stage.reporting: N_("Reporting"),
    Stage.closed: N_("Closed"),
    Stage.rejected: N_("Rejected"),
    Stage.ineligible: N_("Ineligible"),
    Stage.withdrawn: N_("Withdrawn"),
    Stage.expired: N_("Expired"),
    Stage.cancelled: N_("Cancelled"),
}
# A stage's tone on the badge: what needs the applicant, what went well, what ended badly.
TONE = {
    Stage.revision_requested: "attention",
    Stage.approved: "good",
    Stage.closed: "good",
    Stage.rejected: "ended",
    Stage.ineligible: "ended",
    Stage.withdrawn: "ended",
    Stage.expired: "ended",
    Stage.cancelled: "ended",
}

STEPS = [
    N_("Submitted"),
    N_("Checked"),
    N_("Expert review"),
    N_("Council"),
    N_("Agreement"),
    N_("Pilot"),
    N_("Reports"),
    N_("Completed"),
]
STEP_OF = STEP_OF_STAGE


@dataclass(frozen=True)
class Step:
    label: str
    state: str  # done, current, attention, ended, todo


def stage_name(stage: Stage | str, role: Role | None = Role.applicant) -> str:
    names = APPLICANT_STAGE if role in (Role.applicant, None) else STAFF_STAGE
    return i18n.gettext(names[Stage(stage)])


def status_bar(stage: Stage | str) -> list[Step]:
    """The lifecycle's steps, each done, current (or needing attention, or where it ended),
    or still ahead. A withdrawn or cancelled application has no place on it: empty."""
    stage = Stage(stage)
    at = STEP_OF.get(stage)
    if at is None:
        return []
    here = TONE.get(stage, "current")
    if stage == Stage.closed:
        here = "done"
    states = ["done" if i < at else here if i == at else "todo" for i in range(len(STEPS))]
    return [Step(i18n.gettext(label), state) for label, state in zip(STEPS, states, strict=True)]


@dataclass(frozen=True)
class NextStep:
    what: str
    by: datetime | None = None
    otherwise: str | None = None
    yours: bool = True  # False: someone else acts; the applicant only waits


_WAITING = {
    Stage.submitted: N_("Nothing to do now: the application is being checked."),
    Stage.screening: N_("Nothing to do now: the application is being checked."),
    Stage.under_review: N_("Nothing to do now: independent experts are reviewing it."),
    Stage.reviewed: N_("Nothing to do now: it goes to the next council session."),
    Stage.in_council: N_("Nothing to do now: the council is deciding."),
    Stage.deferred: N_("Nothing to do now: the council decides at its next session."),
    Stage.approved: N_("Nothing to do now: the agreement is being prepared."),
    Stage.agreement: N_("Nothing to do now: the pilot in the clinics is being planned."),
    Stage.piloting: N_("Clinics are testing the project; send your reports when they are due."),
    Stage.reporting: N_("Send your reports when they are due, until the final report."),
}


def next_step(app: ApplicationPublic, accept_by: datetime | None = None) -> NextStep | None:
    """What the applicant must do next, and by when; None once the application has ended.
    `accept_by`: the deadline of the agreement offered to an approved application and not yet
    answered (services/agreement.py's `offered`), which is then the applicant's to accept."""
    if app.stage == Stage.approved and accept_by is not None:
        return agreement_step(accept_by)
    if app.stage == Stage.revision_requested:
        return NextStep(
            i18n.gettext("Fix what the check found and send the application again."),
            app.deadline,
            i18n.gettext("Otherwise the application closes."),
        )
    waiting = _WAITING.get(app.stage)
    return NextStep(i18n.gettext(waiting), yours=False) if waiting else None


def agreement_step(accept_by: datetime) -> NextStep:
    """Once the approval's agreement is offered (the application is still `approved`)."""
    return NextStep(
        i18n.gettext("Accept the agreement."),
        accept_by,
        i18n.gettext("Otherwise the approval lapses."),
    )


# Screening's rules, said for the applicant, and the form field each one is about.
FINDINGS = {
    "intake_window": (N_("It arrived outside the call's window."), None),
    "organisation_type": (N_("Your type of organisation is not admitted to this call."), None),
    "specialty": (N_("This call does not fund this specialty."), "specialty"),
    "max_grant": (N_("The amount asked for is over the call's maximum grant."), "requested_rub"),
    "investment": (
        N_("The amount asked for is more than the project's total investment."),
        "total_investment_rub",
    ),
    "budget_lines": (
        N_("The budget lines do not add up to the amount asked for."),
        "budget_lines",
    ),
    "budget_years": (
        N_("Some budget lines fall after the project's last year."),
        "budget_lines",
    ),
    "complex_share": (
        N_("A complex project's grant is over the call's share of its total investment."),
        "requested_rub",
    ),
    "complex_annual_cap": (
        N_("A complex project's grant is over the call's limit for one year."),
        "budget_lines",
    ),
    "complex_costs": (
        N_("A complex project may fund only direct costs and loan interest."),
        "budget_lines",
    ),
}


def finding_text(rule: str) -> str | None:
    found = FINDINGS.get(rule)
    return i18n.gettext(found[0]) if found else None


def finding_field(rule: str) -> str | None:
    found = FINDINGS.get(rule)
    return found[1] if found else None


TIMELINE = {
    "submitted": N_("Application received"),
    "screened": N_("Checked"),
    "rescreened": N_("Checked again after changes"),
    "resubmitted": N_("Changes sent"),
    "revision_missed": N_("Changes were not sent in time"),
    "revision_deadline_extended": N_("Deadline for changes extended"),
    "review_submitted": N_("An expert sent a review"),
    "review_extra_reviewer": N_("One more expert asked to review"),
    "reviewed": N_("Expert review complete"),
    "on_agenda": N_("On the council's agenda"),
    "council_approved": N_("Approved by the council"),
    "council_rejected": N_("Not funded by the council"),
    "council_deferred": N_("Moved to the next council session"),
    "agreement_accepted": N_("Agreement accepted"),
    "agreement_declined": N_("Agreement declined"),
    "agreement_lapsed": N_("Agreement not accepted in time"),
    "pilot_planned": N_("Pilot planned"),
    "pilot_implement": N_("Pilot complete: to be implemented"),
    "project_stopped": N_("Project stopped"),
    "withdrawn": N_("Withdrawn"),
    "cancelled": N_("Cancelled"),
}


def timeline_text(kind: str, stage: Stage | None) -> str:
    if kind in ("screened", "rescreened") and stage is not None:
        # What the check concluded is the news: "Checked: changes needed".
        return f"{i18n.gettext(TIMELINE[kind])}: {stage_name(stage).lower()}"
    if kind in TIMELINE:
        return i18n.gettext(TIMELINE[kind])
    if stage is not None:
        return stage_name(stage)
    return kind.replace("_", " ").capitalize()


ORGANISATION_TYPES = {
    "medical_institution": N_("Medical institution"),
    "university": N_("University"),
    "research_institute": N_("Research institute"),
    "company": N_("Company"),
}
COST_CATEGORIES = {
    "direct_costs": N_("Direct costs"),
    "loan_interest": N_("Loan interest (at most the key rate)"),
    "other": N_("Other"),
}


def organisation_type(value: str) -> str:
    return i18n.gettext(ORGANISATION_TYPES.get(value, value))


def cost_category(value: str) -> str:
    return i18n.gettext(COST_CATEGORIES.get(value, value))


@dataclass(frozen=True)
class NavItem:
    href: str
    label: str


# The menu per role. Reviewer, council, coordinator and admin pages add their lines here.
NAV: dict[Role | None, list[tuple[str, str]]] = {
    None: [("/sign-in", N_("Sign in")), ("/register", N_("Register"))],
    Role.applicant: [("/", N_("My applications")), ("/calls", N_("Open calls"))],
    Role.reviewer: [("/reviews", N_("My tasks")), ("/reviews/past", N_("My past reviews"))],
    Role.council: [("/council", N_("My council sessions")), ("/calls", N_("Calls"))],
    Role.coordinator: [("/sites", N_("My clinic's pilots")), ("/calls", N_("Calls"))],
    Role.admin: [
        ("/admin", N_("Dashboard")),
        ("/admin/applications", N_("Applications")),
        ("/admin/programmes", N_("Programmes")),
        ("/admin/reports", N_("Reports")),
        ("/admin/users", N_("Users")),
        ("/calls", N_("Calls")),
    ],
}


def navigation(role: Role | None) -> list[NavItem]:
    return [NavItem(href, i18n.gettext(label)) for href, label in NAV[role]]


# The services' refusals are written for API users, in English; those an applicant meets on
# these pages are said again in the reader's language (by how they begin).
REFUSALS = [
    ("intake for ", " closed at ", N_("The call is closed: late applications are refused.")),
    ("intake for ", " opens at ", N_("The call is not open for applications yet.")),
    ("the application is already ", "", N_("The application has already ended.")),
    ("no revision is expected", "", N_("No changes are asked for now.")),
    ("only the applicant", "", N_("Only the applicant may do this.")),
]


SERVER_DOWN = N_("A server is down, so nothing was changed. Try again in a minute.")
# The rest of the refusals a page can show (the services' and the workflows' validators'), by
# their whole wording; a number they name ("report 2") is said again in the translation.
REFUSAL_PATTERNS = [
    (
        r"too many changes to this object in flight.*",
        N_("Too many changes at once. Try again in a second."),
    ),
    (r"the workflow service is unavailable.*", SERVER_DOWN),
    (r"this needs the role .*", N_("Your role may not do this.")),
    (
        r"your account has no institution",
        N_("Your account names no institution: ask the operator to add it."),
    ),
    (
        r"this draft was submitted; it can no longer be changed",
        N_("This draft was submitted: it can no longer be changed."),
    ),
    (
        r"this draft was submitted; it can no longer be deleted",
        N_("This draft was submitted: it can no longer be deleted."),
    ),
    (
        r"a draft is submitted to its own programme",
        N_("A draft is submitted to the call it was started for."),
    ),
    (r"no such review task|no such task on this application", N_("There is no such task.")),
    (r"this review task is not yours", N_("This task is not yours.")),
    (r"this review task is \w+", N_("This task is no longer open.")),
    (r"this review has already been submitted", N_("This review has already been submitted.")),
    (
        r"accept the task before submitting a review",
        N_("Accept the task before submitting a review."),
    ),
    (
        r"the task is no longer open; its review cannot be changed",
        N_("The task is no longer open: its review cannot be changed."),
    ),
    (r"the draft is too long", N_("The draft is too long.")),
    (
        r"(missing scores|unknown criteria|scores must be) .*",
        N_("Some scores are missing or out of range: check the form."),
    ),
    (
        r"report (?P<seq>\d+) is \w+, not submitted",
        N_("Report %(seq)s is not waiting for a decision."),
    ),
    (r"report (?P<seq>\d+) is \w+", N_("Report %(seq)s cannot change now.")),
    (r"there is no report (?P<seq>\d+)", N_("There is no report %(seq)s.")),
    (
        r"report (?P<seq>\d+) must be accepted before the final one",
        N_("Report %(seq)s must be accepted before the final one."),
    ),
    (
        r"accepting the final report needs the project's outcome",
        N_("To accept the final report, say how the project ends."),
    ),
    (
        r"only accepting the final report sets the outcome",
        N_("Only accepting the final report says how the project ends."),
    ),
    (
        r"only an admin or the assigned expert can review a report",
        N_("Only the expert assigned to these reports (or an admin) may decide on them."),
    ),
    (r"the agreement is \w+", N_("The agreement is not in force, so its reports cannot change.")),
    (
        r"only the pilot's evaluator can evaluate it",
        N_("Only the pilot's evaluator may evaluate it."),
    ),
    (
        r"the pilot is \w+, not being evaluated",
        N_("The pilot is not waiting for an evaluation now."),
    ),
]
_PATTERNS = [(re.compile(pattern), said) for pattern, said in REFUSAL_PATTERNS]


def refusal(message: str) -> str:
    """A service's refusal as the page shows it, in the reader's language; one not in the
    catalogue stays in the service's own words."""
    for start, within, said in REFUSALS:
        if message.startswith(start) and within in message:
            return i18n.gettext(said)
    for pattern, said in _PATTERNS:
        if found := pattern.fullmatch(message):
            return i18n.gettext(said, **found.groupdict())
    return message


# Amounts as the workflows write them in reasons ("for 30 000 000 RUB", "15000000 RUB").
_AMOUNT = re.compile(r"(?<![\d.,])(\d{1,3}(?: \d{3})+|\d+) RUB\b")


def why(reason: str | None) -> str:
    """A recorded reason as the pages show it: its amounts in roubles, grouped as everywhere
    else on the pages ("30 000 000 RUB" reads "30 000 000 ₽", or "30,000,000 ₽" in English)."""
    if not reason:
        return ""
    return _AMOUNT.sub(lambda found: i18n.money(int(found[1].replace(" ", ""))), reason)


GLOBALS: dict[str, Any] = {
    "money": i18n.money,
    "number": i18n.number,
    "percent": i18n.percent,
    "when": i18n.when,
    "day": i18n.day,
    "relative": i18n.relative,
    "duration": i18n.duration,
    "language_name": i18n.language_name,
    "LOCALES": i18n.LOCALES,
    "stage_name": stage_name,
    "status_bar": status_bar,
    "next_step": next_step,
    "finding_text": finding_text,
    "timeline_text": timeline_text,
    "why": why,
    "organisation_type": organisation_type,
    "cost_category": cost_category,
    "ORGANISATION_TYPES": ORGANISATION_TYPES,
    "COST_CATEGORIES": COST_CATEGORIES,
    "ngettext_": i18n.ngettext,
}
