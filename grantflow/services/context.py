"""What every service function is given: the shared resources and the acting user."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from temporalio.client import Client

from grantflow.services.errors import Forbidden
from grantflow.settings import Settings
from schemas.common import Actor, OrganisationType, Role


@dataclass(frozen=True)
class Resources:
    """Made once by the API's lifespan, the CLI or a test, and shared by every action: the
    pool (each statement borrows a connection for itself, so an action that waits on a
    workflow holds none the worker may need), the Temporal client and the settings."""

    settings: Settings
    pool: asyncpg.Pool
    client: Client


@dataclass(frozen=True)
class Caller:
    """The authenticated user an action is done for (a token's, a session's or the CLI's)."""

    actor: Actor
    organisation_type: OrganisationType | None

    @property
    def is_admin(self) -> bool:
        return self.actor.role == Role.admin


def require(caller: Caller, *roles: Role) -> Caller:
    """The caller if its role is one of `roles`; otherwise Forbidden, naming what is needed."""
    if caller.actor.role not in roles:
        allowed = ", ".join(r.value for r in roles)
        raise Forbidden(f"this needs the role {allowed}; you are {caller.actor.role}")
    return caller
