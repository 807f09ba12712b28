"""What every route needs, as `Annotated` dependencies: the pool, the client, the caller."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import structlog
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from grantflow.api.throttle import RefusalThrottle
from grantflow.services.context import Caller as Caller  # routes name it in their signatures
from grantflow.services.context import Resources
from grantflow.services.context import require as services_require
from grantflow.store import users
from schemas.common import OrganisationType, Role


# Every dependency here is `async def` though few await: FastAPI runs a plain `def` one in its
# thread pool, a thread hand-off per dependency per request that cost more CPU than solving
# the rest of the graph.
async def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


Res = Annotated[Resources, Depends(get_resources)]
_bearer = HTTPBearer(auto_error=False, description="A token from `grantflow users create`.")


INVALID = "missing or invalid bearer token"


def _unauthorized(reason: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, reason, headers={"WWW-Authenticate": "Bearer"}
    )


async def get_caller(
    request: Request,
    res: Res,  # the routes' own: solved once per request, one node less in the graph
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized(INVALID)
    # Refused tokens are counted per client address and throttled before the lookup that
    # each one would cost (grantflow/api/throttle.py).
    throttle: RefusalThrottle = request.app.state.refusals
    address = request.client.host if request.client else "unknown"
    if (wait := throttle.retry_after(address)) is not None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many refused bearer tokens from your address; retry after {wait} s",
            headers={"Retry-After": str(wait)},
        )
    # The pool, not a borrowed connection: each statement borrows one for itself, so a
    # request that waits on a workflow update holds no connection the worker may need.
    found = await users.token_owner(res.pool, credentials.credentials)
    refusal = INVALID if found is None else found.refusal
    if found is None or refusal is not None:
        throttle.refused(address)
        raise _unauthorized(refusal or INVALID)
    structlog.contextvars.bind_contextvars(user_id=found.actor.user_id, role=found.actor.role.value)
    org = found.organisation_type
    return Caller(actor=found.actor, organisation_type=OrganisationType(org) if org else None)


CurrentCaller = Annotated[Caller, Depends(get_caller)]


def require(*roles: Role) -> Callable[[Caller], Awaitable[Caller]]:
    """A dependency that lets only `roles` through (403 for the others)."""

    async def check(caller: CurrentCaller) -> Caller:
        return services_require(caller, *roles)

    return check


Admin = Annotated[Caller, Depends(require(Role.admin))]
Applicant = Annotated[Caller, Depends(require(Role.applicant))]
ApplicantOrAdmin = Annotated[Caller, Depends(require(Role.applicant, Role.admin))]
