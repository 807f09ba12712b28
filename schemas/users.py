"""Users and their tokens."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from schemas.common import Input, OrganisationType, Output, Role


class UserCreate(Input):
    name: str = Field(min_length=1, max_length=200)
    role: Role
    institution: str | None = Field(default=None, min_length=1, max_length=120)
    organisation_type: OrganisationType | None = None
    specialty: str | None = Field(default=None, min_length=2, max_length=80)


class UserPublic(Output):
    id: str
    name: str
    role: Role
    institution_id: str | None
    specialty: str | None
    created_at: datetime


class UserWithToken(Output):
    """A new user and its bearer token: shown once, stored only as a hash."""

    user: UserPublic
    token: str
