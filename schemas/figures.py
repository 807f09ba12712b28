"""Programme figures for admins, from Postgres."""

from __future__ import annotations

from schemas.common import Output


class InstitutionFigures(Output):
    institution_id: str | None
    applications: int
    approved: int
    requested_rub: int
    approved_rub: int


class ProgrammeFigures(Output):
    """`approval_rate` is approved / applications, the operator's own measure (80 of 186)."""

    programme_id: str
    applications: int
    by_stage: dict[str, int]
    approved: int
    approval_rate: float
    requested_rub: int
    approved_rub: int
    reserved_rub: int
    disbursed_rub: int
    remaining_rub: int
    budget_rub: int
    by_institution: list[InstitutionFigures]
