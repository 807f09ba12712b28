"""What every route needs, as `Annotated` dependencies: the pool, the client, the caller."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import structlog
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from grantflow import store
from grantflow.services.context import Caller as Caller  # routes name it in their signatures
from grantflow.services.context import Resources
from grantflow.services.context import require as services_require
from grantflow.store import users
from schemas.common import OrganisationType, Role


def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


Res = Annotated[Resources, Depends(get_resources)]


def get_db(res: Res) -> store.Db:
    # The pool, not a borrowed connection: each statement borrows one for itself, so a
    # request that waits on a workflow update holds no connection the worker may need.
    return res.pool


DbConn = Annotated[store.Db, Depends(get_db)]
_bearer = HTTPBearer(auto_error=False, description="A token from `grantflow users create`.")


async def get_caller(
    conn: DbConn, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller:
    unauthorized = HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        "missing or invalid bearer token",
        headers={"WWW-Authenticate": "Bearer"},
    )
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise unauthorized
    found = await users.actor_for_token(conn, credentials.credentials)
    if found is None:
        raise unauthorized
    actor, org = found
    structlog.contextvars.bind_contextvars(user_id=actor.user_id, role=actor.role.value)
    return Caller(actor=actor, organisation_type=OrganisationType(org) if org else None)


CurrentCaller = Annotated[Caller, Depends(get_caller)]


def require(*roles: Role) -> Callable[[Caller], Caller]:
    """A dependency that lets only `roles` through (403 for the others)."""

    def check(caller: CurrentCaller) -> Caller:
        return services_require(caller, *roles)

    return check


Admin = Annotated[Caller, Depends(require(Role.admin))]
Applicant = Annotated[Caller, Depends(require(Role.applicant))]
ApplicantOrAdmin = Annotated[Caller, Depends(require(Role.applicant, Role.admin))]
