"""Every route of the app, found from the app itself, so that a new route is never missed by
the tests that walk them (authorization, mass assignment, page sizes)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel

from grantflow.pages.web import PageRoute


def api_routes(app: FastAPI) -> list[tuple[str, str, APIRoute]]:
    """(method, path, route) for every API route (the pages aside: tests/pages walks those)."""
    return [r for r in all_routes(app) if not isinstance(r[2], PageRoute)]


def page_routes(app: FastAPI) -> list[tuple[str, str, APIRoute]]:
    """(method, path, route) for every page."""
    return [r for r in all_routes(app) if isinstance(r[2], PageRoute)]


def all_routes(app: FastAPI) -> list[tuple[str, str, APIRoute]]:
    """(method, path, route) for every route, whether the app keeps included routers as
    copies (older FastAPI) or as wrappers around the original router (newer)."""
    found: list[tuple[str, str, APIRoute]] = []

    def walk(routes: Iterable[Any], prefix: str) -> None:
        for route in routes:
            if isinstance(route, APIRoute):
                found.extend((m, prefix + route.path, route) for m in sorted(route.methods or ()))
            elif (router := getattr(route, "original_router", None)) is not None:
                context = getattr(route, "include_context", None)
                walk(router.routes, prefix + getattr(context, "prefix", ""))

    walk(app.routes, "")
    return found


def body_model(route: APIRoute) -> type[BaseModel] | None:
    """The pydantic model of the route's JSON body, if it takes one."""
    params = route.dependant.body_params
    if not params:
        return None
    annotation = params[0].field_info.annotation
    return (
        annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    )
