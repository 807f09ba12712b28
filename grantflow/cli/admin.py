"""What admins run in a terminal: users and their tokens, finding applications, exports,
and the inspection of one application or of all of them. Each command is a few lines over
the same service function as its API route, done as the CLI's admin (grantflow/cli/common.py)."""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from grantflow import i18n
from grantflow.cli.common import AS_ADMIN, data, fail, messages, run
from grantflow.cli.output import print_check
from grantflow.services import account, admin, inspection, user
from grantflow.services import export as export_service
from grantflow.services.context import Caller, Resources
from schemas.admin import AdminApplicationPage, Dataset, ExportFormat
from schemas.common import OrganisationType, Role, Stage
from schemas.history import Waiting
from schemas.users import MAX_TOKEN_DAYS, TOKEN_DAYS, UserCreate, UserWithToken

users_app = typer.Typer(help=f"Users and their bearer tokens. {AS_ADMIN}", no_args_is_help=True)
token_app = typer.Typer(
    help=f"A user's bearer token: rotate, revoke, show. {AS_ADMIN}", no_args_is_help=True
)
users_app.add_typer(token_app, name="token")
applications_app = typer.Typer(help=f"Find applications. {AS_ADMIN}", no_args_is_help=True)

UserId = Annotated[uuid.UUID, typer.Argument(help="The user's id.")]
ExpiresInDays = Annotated[
    int, typer.Option(min=1, max=MAX_TOKEN_DAYS, help="Days until the bearer token expires.")
]


@users_app.command("create")
def users_create(
    role: Annotated[Role, typer.Option(help="applicant, reviewer, council, admin or coordinator.")],
    name: Annotated[str, typer.Option(help="The person's name.")],
    institution: Annotated[
        str | None, typer.Option(help="Applicants, reviewers; a coordinator's clinic.")
    ] = None,
    organisation_type: Annotated[
        OrganisationType, typer.Option(help="The institution's type (when it is new).")
    ] = OrganisationType.medical_institution,
    specialty: Annotated[str | None, typer.Option(help="Reviewers.")] = None,
    expires_in_days: ExpiresInDays = TOKEN_DAYS,
    email: Annotated[
        str | None,
        typer.Option(help="Staff who use the pages: sends (and prints) a set-password link."),
    ] = None,
) -> None:
    """Create a user and print its bearer token alone on the last line of stdout (shown once,
    stored only as a hash); what was created, and when the token expires, goes to stderr. With
    --email, the person also gets a single-use link to choose a password for the pages (sent
    through the notification outbox and printed on stdout before the token). Runs as an admin,
    with no token."""
    try:
        new = UserCreate(
            name=name,
            role=role,
            institution=institution,
            specialty=specialty,
            organisation_type=organisation_type if institution else None,
            token_expires_in_days=expires_in_days,
        )
    except ValidationError as exc:
        fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))

    async def create(res: Resources, caller: Caller) -> tuple[UserWithToken, str | None]:
        if email:  # checked first: a taken or malformed address creates no user
            await account.email_available(res.pool, email)
        made = await user.create(res, caller, new)
        if email is None:
            return made, None
        return made, await account.invite(res.pool, res.settings, uuid.UUID(made.user.id), email)

    with i18n.using("en"):  # the command line speaks English, as its other messages do
        made, link = run(create)
    messages.print(f"created {made.user.role} {made.user.name} ({made.user.id})", highlight=False)
    messages.print(f"its token expires {made.token_expires_at:%Y-%m-%d %H:%M %Z}", highlight=False)
    if link:
        messages.print(f"set-password link for {email} (single use, 7 days):", highlight=False)
        print(link)
    print(made.token)


@token_app.command("rotate")
def token_rotate(user_id: UserId, expires_in_days: ExpiresInDays = TOKEN_DAYS) -> None:
    """Replace the user's bearer token (revoked or not) and print the new one alone on stdout,
    shown once; the old one is refused from now on. Runs as an admin, with no token."""
    made = run(lambda res, caller: user.rotate_token(res, caller, user_id, expires_in_days))
    messages.print(
        f"new token for {made.user.name} ({made.user.id}), expires"
        f" {made.token_expires_at:%Y-%m-%d %H:%M %Z}; the old one no longer works",
        highlight=False,
    )
    print(made.token)


@token_app.command("revoke")
def token_revoke(user_id: UserId) -> None:
    """Revoke the user's bearer token: refused (401, saying so) until it is rotated. Prints
    the token's state as JSON on stdout. Runs as an admin, with no token."""
    found = run(lambda res, caller: user.revoke_token(res, caller, user_id))
    messages.print(f"revoked the token of {user_id}", highlight=False)
    print(found.model_dump_json(indent=2))


@token_app.command("show")
def token_show(user_id: UserId) -> None:
    """The user's bearer token as JSON on stdout (never the token): when it expires, when it
    was revoked, when it was last used (to the minute). Runs as an admin, with no token."""
    print(
        run(lambda res, caller: user.token_status(res, caller, user_id)).model_dump_json(indent=2)
    )


@applications_app.command("list")
def list_applications(
    programme: Annotated[uuid.UUID | None, typer.Option(help="A programme's id.")] = None,
    stage: Annotated[list[Stage] | None, typer.Option(help="A stage (repeat for several).")] = None,
    institution: Annotated[str | None, typer.Option(help="An institution's id.")] = None,
    specialty: Annotated[str | None, typer.Option()] = None,
    overdue: Annotated[bool, typer.Option(help="Only those with a deadline passed.")] = False,
    flagged: Annotated[bool, typer.Option(help="Only those waiting for an admin.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 50,
    cursor: Annotated[str | None, typer.Option(help="A page's next cursor.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The API's JSON, not a table.")] = False,
) -> None:
    """Applications matching every filter, newest first, with the counts by stage: the same
    filters and pages as `GET /v1/admin/applications`. Runs as an admin, with no token."""
    page = run(
        lambda res, caller: admin.page(
            res,
            caller,
            programme_id=programme,
            stages=tuple(stage or ()),
            institution_id=institution,
            specialty=specialty,
            overdue=overdue,
            flagged=flagged,
            cursor=cursor,
            limit=limit,
        )
    )
    if as_json:
        print(page.model_dump_json(indent=2))
        return
    _print(page)


def _print(page: AdminApplicationPage) -> None:
    table = Table("id", "stage", "title", "institution", "specialty", "submitted", "!")
    for a in page.items:
        marks = ("overdue " if a.overdue else "") + ("flagged" if a.flag_reason else "")
        table.add_row(
            a.id,
            a.stage.value,
            a.title[:40],
            a.institution_id or "",
            a.specialty,
            a.submitted_at.strftime("%Y-%m-%d %H:%M"),
            marks.strip(),
        )
    data.print(table)
    stages = ", ".join(f"{s}: {n}" for s, n in sorted(page.by_stage.items()))
    data.print(f"{page.total} match ({stages or 'none'})")
    if page.next_cursor:
        data.print(f"next page: --cursor {page.next_cursor}")


def export(
    programme_id: Annotated[uuid.UUID, typer.Argument(help="The programme's id.")],
    format: Annotated[ExportFormat, typer.Option("--format", help="csv or json.")] = (
        ExportFormat.csv
    ),
    out: Annotated[Path, typer.Option(help="The folder to write the files to.")] = Path("export"),
) -> None:
    """Export a programme's applications, reviews (anonymised), council decisions, budget
    ledger and reports, one file per dataset in OUT, with a progress bar on stderr and the
    files written as a JSON list on stdout. Runs as an admin, with no token."""
    columns = (TextColumn("{task.description:<13}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=messages) as progress:

        def track(dataset: Dataset, total: int) -> Callable[[], None]:
            task = progress.add_task(dataset.value, total=total)
            return lambda: progress.advance(task)

        written = run(
            lambda res, caller: export_service.to_folder(
                res, caller, programme_id, format, out, track
            )
        )
    for path in written:
        messages.print(f"wrote {path}", highlight=False)
    print(json.dumps([str(p) for p in written]))


def _print_waiting(stage: str, waiting: list[Waiting]) -> None:
    data.print(f"[bold]stage[/] {stage}")
    if not waiting:
        data.print("waiting for nothing")
    for w in waiting:
        by = f" by {w.by.isoformat()}" if w.by else ""
        otherwise = f"; otherwise {w.otherwise}" if w.otherwise else ""
        data.print(f"waiting for [bold]{w.who}[/]: {w.what}{by}{otherwise}", highlight=False)


def history(
    application_id: Annotated[uuid.UUID, typer.Argument(help="The application's id.")],
    as_json: Annotated[bool, typer.Option("--json", help="The same, as JSON.")] = False,
) -> None:
    """Everything that happened to an application, oldest first: its audit trail and its
    workflows' events in plain words (with links to the Temporal Web UI), under a header
    saying what it is waiting for now. Runs as an admin, with no token."""
    found = run(lambda res, caller: inspection.history(res, caller, application_id))
    if as_json:
        print(found.model_dump_json(indent=2))
        return
    _print_waiting(found.stage, found.waiting)
    for e in found.entries:
        where = "audit" if e.source == "audit" else e.workflow_id.split("-", 1)[0]
        data.print(f"{e.at:%Y-%m-%d %H:%M:%S} [dim]{where:<11}[/] {e.text}", highlight=False)


def waiting(
    application_id: Annotated[uuid.UUID, typer.Argument(help="The application's id.")],
    as_json: Annotated[bool, typer.Option("--json", help="The same, as JSON.")] = False,
) -> None:
    """What an open application is waiting for: who must act, what, by when, and what
    happens if they don't (from its workflows' own state). Runs as an admin, with no token."""
    found = run(lambda res, caller: inspection.waiting(res, caller, application_id))
    if as_json:
        print(found.model_dump_json(indent=2))
        return
    _print_waiting(found.stage, found.waiting)


def check(
    programme: Annotated[
        uuid.UUID | None, typer.Option(help="Only this programme's applications (its id).")
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Final applications too, not only open ones.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Compare every open application's workflow with its PostgreSQL row (stage, change
    number, amounts, outcome) and list each disagreement; exits 1 if there is any. Runs as
    an admin, with no token."""
    result = run(
        lambda res, caller: inspection.check(res, caller, programme, every=every),
        wait_for_temporal=True,
    )
    print_check(result, as_json=as_json)
    # The exit status is the answer scripts read. The Temporal client's native runtime has been
    # seen to abort the interpreter's shutdown (SIGABRT after the report was printed), which
    # would turn "disagreements" into a crash: leave without that shutdown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if result.consistent else 1)
