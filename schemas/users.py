"""Users and their tokens."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from schemas.common import Input, OrganisationType, Output, Role


class UserCreate(Input):
    """A new user. Applicants and reviewers belong to an institution (created on first use);
    reviewers have a specialty, which review assignment matches."""

    name: str = Field(min_length=1, max_length=200)
    role: Role
    institution: str | None = Field(default=None, min_length=1, max_length=120)
    organisation_type: OrganisationType | None = None
    specialty: str | None = Field(default=None, min_length=2, max_length=80)

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
