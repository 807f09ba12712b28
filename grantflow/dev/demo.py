"""The demo users `grantflow dev` creates on first start, so a newcomer can try every role."""

from __future__ import annotations

from grantflow.store import Conn, users
from schemas.common import OrganisationType, Role
from schemas.users import UserCreate, UserWithToken

_MED = OrganisationType.medical_institution
DEMO_USERS = [
    UserCreate(name="Admin", role=Role.admin),
    UserCreate(
        name="Anna Applicant",
        role=Role.applicant,
        institution="City Clinic 5",
        organisation_type=_MED,
    ),
    UserCreate(
        name="Boris Applicant",
        role=Role.applicant,
        institution="Botkin Hospital",
        organisation_type=_MED,
    ),
    UserCreate(
        name="Clara Applicant",
        role=Role.applicant,
        institution="MedTech Labs",
        organisation_type=OrganisationType.company,
    ),
    *(
        UserCreate(
            name=name, role=Role.reviewer, institution=inst, specialty=spec, organisation_type=org
        )
        for name, inst, spec, org in [
            ("Dmitri Reviewer", "Sechenov University", "cardiology", OrganisationType.university),
            ("Elena Reviewer", "Pirogov University", "cardiology", OrganisationType.university),
            ("Fedor Reviewer", "City Clinic 5", "radiology", _MED),
            (
                "Galina Reviewer",
                "Oncology Research Institute",
                "oncology",
                OrganisationType.research_institute,
            ),
            ("Igor Reviewer", "Botkin Hospital", "radiology", _MED),
            ("Julia Reviewer", "Sechenov University", "oncology", OrganisationType.university),
        ]
    ),
    UserCreate(name="Kirill Council", role=Role.council),
    UserCreate(name="Lidia Council", role=Role.council),
    UserCreate(name="Maxim Council", role=Role.council),
]


async def create_demo_users(conn: Conn) -> list[UserWithToken]:
    """Create the demo users if there are no users at all; returns them with their tokens."""
    async with conn.transaction():
        await conn.execute("LOCK TABLE users IN EXCLUSIVE MODE")
        if await users.count_users(conn):
            return []
        return [await users.create_user(conn, new) for new in DEMO_USERS]
