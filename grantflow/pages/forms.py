"""Forms: what a posted form holds, kept as typed (a draft saves it as it is), and turned into
the service's model with every error tied to its field.

Numbers may be typed with spaces ("30 000 000"); anything else stays as typed, so that the
model's own validation says what is wrong, beside the field, in the reader's language."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData

from grantflow.i18n import gettext as _
from grantflow.pages.display import N_
from grantflow.services.errors import Invalid
from schemas.application import ApplicationContent, ApplicationCreate

TEXT_FIELDS = ("title", "summary", "specialty", "expected_results")
NUMBER_FIELDS = ("requested_rub", "total_investment_rub", "duration_months")
LINE_FIELDS = ("item", "category", "year", "amount_rub")
MAX_LINES = 200
M = TypeVar("M", bound=BaseModel)
Errors = dict[str, str]  # field key ("title", "budget_lines.0.amount_rub") -> message


def empty_line() -> dict[str, str]:
    return {"item": "", "category": "direct_costs", "year": "1", "amount_rub": ""}


def application_values(form: FormData) -> dict[str, Any]:
    """The application form's values as typed, budget lines in order."""
    values: dict[str, Any] = {name: _text(form, name) for name in (*TEXT_FIELDS, *NUMBER_FIELDS)}
    values["complex_project"] = form.get("complex_project") == "on"
    values["partner_institutions"] = _text(form, "partner_institutions")
    columns = [form.getlist(f"line_{name}") for name in LINE_FIELDS]
    lines = [
        {name: str(value)[:10_000] for name, value in zip(LINE_FIELDS, row, strict=True)}
        for row in zip(*columns, strict=False)
    ]
    values["budget_lines"] = lines[:MAX_LINES]
    return values


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value[:20_000] if isinstance(value, str) else ""


def with_action(values: dict[str, Any], action: str) -> dict[str, Any]:
    """Add or remove a budget line in place (the buttons beside the lines)."""
    lines = list(values.get("budget_lines") or [])
    if action == "add_line" and len(lines) < MAX_LINES:
        lines.append(empty_line())
    elif action.startswith("remove_line:"):
        index = action.removeprefix("remove_line:")
        if index.isdigit() and int(index) < len(lines):
            lines.pop(int(index))
    return {**values, "budget_lines": lines}


def content_values(content: ApplicationContent) -> dict[str, Any]:
    """An application's content as the form shows it (for a revision)."""
    raw = content.model_dump(mode="json")
    return {
        **{k: raw[k] for k in TEXT_FIELDS},
        **{k: _grouped(raw[k]) for k in NUMBER_FIELDS},
        "complex_project": content.complex_project,
        "partner_institutions": "\n".join(content.partner_institutions),
        "budget_lines": [
            {**{k: str(line[k]) for k in LINE_FIELDS}, "amount_rub": _grouped(line["amount_rub"])}
            for line in raw["budget_lines"]
        ],
    }


def _grouped(value: int) -> str:
    """30000000 as "30 000 000": what a person types and reads (and `_number` reads back)."""
    return f"{value:,}".replace(",", " ")


_SPACES = re.compile(r"[\s\u00a0\u202f_]")


def number(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    compact = _SPACES.sub("", value)
    return int(compact) if compact.isdigit() else (compact or None)


def _partners(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"[\n;]", text or "") if p.strip()]


def _filled(values: dict[str, Any]) -> dict[str, Any]:
    """Blank boxes left out: the model then says "missing", which reads as "fill this in"."""
    return {k: v for k, v in values.items() if v not in (None, "")}


def _payload(values: Mapping[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = {k: str(values.get(k) or "").strip() for k in TEXT_FIELDS}
    payload.update({k: number(values.get(k)) for k in NUMBER_FIELDS})
    payload["complex_project"] = bool(values.get("complex_project"))
    payload["partner_institutions"] = _partners(values.get("partner_institutions") or "")
    payload["budget_lines"] = [
        _filled(
            {
                "item": str(line.get("item") or "").strip(),
                "category": line.get("category"),
                "year": number(line.get("year")),
                "amount_rub": number(line.get("amount_rub")),
            }
        )
        for line in values.get("budget_lines") or []
    ]
    return _filled(payload)


def to_content(values: Mapping[str, Any]) -> ApplicationContent:
    """The form's values as the model; Invalid with every field error otherwise."""
    return _validate(ApplicationContent, _payload(values))


def to_create(values: Mapping[str, Any], programme_id: str) -> ApplicationCreate:
    return _validate(ApplicationCreate, {**_payload(values), "programme_id": programme_id})


def _validate(model: type[M], payload: dict[str, Any]) -> M:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise Invalid(
            "invalid input", [dict(e) for e in exc.errors(include_url=False, include_input=False)]
        ) from None


def field_errors(errors: Sequence[Mapping[str, Any]]) -> Errors:
    """pydantic's (or a service's) errors by field key, each said for a person."""
    found: Errors = {}
    for error in errors:
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body",)]
        key = ".".join(loc) or "form"
        found.setdefault(key, message(error))
    return found


def message(error: Mapping[str, Any]) -> str:
    """One error in the reader's language, from its type and limits."""
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    if kind == "missing" or (kind == "string_too_short" and ctx.get("min_length") == 1):
        return _("Fill this in.")
    if kind == "too_short" and error.get("loc", [""])[-1] == "budget_lines":
        return _("Add at least one budget line.")
    if kind == "string_too_short":
        return _("At least %(n)s characters.", n=ctx.get("min_length"))
    if kind == "string_too_long":
        return _("At most %(n)s characters.", n=ctx.get("max_length"))
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return _("Enter a whole number, digits only.")
    if kind in ("greater_than",):
        return _("Must be more than %(n)s.", n=ctx.get("gt"))
    if kind in ("greater_than_equal",):
        return _("Must be at least %(n)s.", n=ctx.get("ge"))
    if kind in ("less_than_equal",):
        return _("Must be at most %(n)s.", n=ctx.get("le"))
    if kind == "enum":
        return _("Choose one of the options.")
    if kind == "too_long":
        return _("Too many entries.")
    return str(error.get("msg", ""))


LINE_LABELS = {
    "item": N_("What it pays for"),
    "category": N_("Kind of cost"),
    "year": N_("Project year"),
    "amount_rub": N_("Amount, roubles"),
}


def summary_labels(errors: Errors, labels: Mapping[str, str]) -> dict[str, str]:
    """What the error summary calls each field: a budget line's box by its line and column."""
    named = {}
    for key in errors:
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "budget_lines" and parts[1].isdigit():
            line = _("Line %(n)s", n=int(parts[1]) + 1)
            named[key] = f"{line}, {_(LINE_LABELS.get(parts[2], parts[2])).lower()}"
        else:
            named[key] = labels.get(parts[0], "")
    return named


def line_errors(errors: Errors) -> dict[int, dict[str, str]]:
    """The budget lines' errors by line and column."""
    found: dict[int, dict[str, str]] = {}
    for key, text in errors.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "budget_lines" and parts[1].isdigit():
            found.setdefault(int(parts[1]), {})[parts[2]] = text
    return found


FIELD_ORDER = (
    "title", "specialty", "summary", "requested_rub", "total_investment_rub", "complex_project",
    "duration_months", "budget_lines", "partner_institutions", "expected_results",
)  # fmt: skip


def first_error(errors: Errors) -> str | None:
    """The field key that gets the focus: the first with an error, in the form's order."""
    for name in FIELD_ORDER:
        for key in errors:
            if key == name or key.startswith(f"{name}."):
                return key
    return next(iter(errors), None)
