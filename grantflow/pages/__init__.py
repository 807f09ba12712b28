"""The web pages people use: server-rendered (Jinja2, htmx only to enhance), Russian and
English, on the same service layer as the JSON API. `router` holds every page; `STATIC` is
what `/static` serves (the CSS and the vendored htmx: no page loads anything off its host)."""

from pathlib import Path

from fastapi import APIRouter

from grantflow.pages import (
    account,
    admin_application,
    admin_dashboard,
    agreement,
    application,
    council,
    manage,
    pilot,
    programme,
    reporting,
    review,
    site,
)

STATIC = Path(__file__).resolve().parent / "static"

router = APIRouter(include_in_schema=False)
# One module per stage, as the API's routes; reviewer, council and admin pages join here.
for module in (
    account,
    programme,
    application,
    agreement,
    review,
    reporting,
    pilot,
    council,
    site,
    manage,
    admin_dashboard,
    admin_application,
):
    router.include_router(module.router)
