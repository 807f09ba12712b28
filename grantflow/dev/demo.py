"""The demo users `grantflow dev` creates on first start, so a newcomer can try every role:
each with a bearer token (the API, the CLI) and an e-mail and password (the pages)."""

from __future__ import annotations

import secrets
import uuid

from grantflow.services.account import set_demo_passwords
from grantflow.store import Conn, users
from schemas.common import OrganisationType, Role
from schemas.users import UserCreate, UserWithToken


class DemoUser(UserWithToken):
    """A demo user with its token and, for the pages, its e-mail and password."""

    email: str
    password: str


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
    UserCreate(name="Nina Coordinator", role=Role.coordinator, institution="City Clinic 5"),
]


def demo_email(name: str) -> str:
    """ "Anna Applicant" -> anna@demo.test (a reserved domain: mail never leaves)."""
    return f"{name.split()[0].lower()}@demo.test"


async def create_demo_users(conn: Conn) -> list[DemoUser]:
    """Create the demo users if there are no users at all; returns them with their tokens,
    e-mails and passwords (random: shown once, in the banner and the demo file)."""
    async with conn.transaction():
        await conn.execute("LOCK TABLE users IN EXCLUSIVE MODE")
        if await users.count_users(conn):
            return []
        made = []
        for new in DEMO_USERS:
            created = await users.create_user(conn, new)
            email, password = demo_email(new.name), secrets.token_urlsafe(9)
            made.append(DemoUser(**created.model_dump(), email=email, password=password))
        await set_demo_passwords(conn, [(uuid.UUID(d.user.id), d.email, d.password) for d in made])
        return made
