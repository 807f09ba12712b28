"""Users and their tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from schemas.common import Input, OrganisationType, Output, Reason, Role

TOKEN_DAYS = 90  # a token's life unless the admin says otherwise
MAX_TOKEN_DAYS = 3650


class UserCreate(Input):
    """A new user. Applicants and reviewers belong to an institution (created on first use);
    reviewers have a specialty, which review assignment matches."""

    name: str = Field(min_length=1, max_length=200)
    role: Role
    institution: str | None = Field(default=None, min_length=1, max_length=120)
    organisation_type: OrganisationType | None = None
    specialty: str | None = Field(default=None, min_length=2, max_length=80)
    token_expires_in_days: int = Field(
        default=TOKEN_DAYS,
        ge=1,
        le=MAX_TOKEN_DAYS,
        description="Days until its bearer token expires.",
    )

    model_config = Input.model_config | {
        "json_schema_extra": {
            "examples": [
                {
                    "name": "Dr. Irina Volkova",
                    "role": "reviewer",
                    "institution": "City Clinical Hospital 52",
                    "organisation_type": "medical_institution",
                    "specialty": "cardiology",
                }
            ]
        }
    }


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
    token_expires_at: datetime


class TokenStatus(Output):
    """A user's bearer token as admins see it (never the token itself)."""

    user_id: str
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None = Field(
        description="Written at most once a minute: up to a minute behind."
    )


class UserListed(Output):
    """A user as the admins' list shows it: never a token or a password, only whether one
    was chosen (`has_password`: false while an invitation waits)."""

    id: str
    name: str
    email: str | None
    role: Role
    institution_id: str | None
    institution_name: str | None
    specialty: str | None
    created_at: datetime
    deactivated_at: datetime | None
    has_password: bool


class Invitation(UserCreate):
    """A new person for the pages: the user, and the address its set-password link goes to,
    in the language it reads."""

    email: str = Field(min_length=3, max_length=254)
    locale: Literal["ru", "en"] = "ru"


class RoleChange(Input):
    """An admin gives a user another role, with the reason on record. A reviewer needs a
    specialty (its own, or this one)."""

    role: Role
    specialty: str | None = Field(default=None, min_length=2, max_length=80)
    reason: Reason


class Deactivation(Input):
    """An admin deactivates a user, with the reason on record."""

    reason: Reason
