"""Every workflow id, in one place: the API, the CLI, the pages and the workflows that start
children all build them here, so an id's shape can never differ between two callers.

Pure string functions, safe in the workflow sandbox. Changing a shape would
orphan every running workflow: these strings are part of the recorded histories."""

from __future__ import annotations

from uuid import UUID

Id = str | UUID


def programme(programme_id: Id) -> str:
    return f"programme-{programme_id}"


def application(application_id: Id) -> str:
    return f"application-{application_id}"


def review(application_id: Id) -> str:
    return f"review-{application_id}"


def council(session_id: Id) -> str:
    return f"council-{session_id}"


def agreement(application_id: Id) -> str:
    return f"agreement-{application_id}"


def pilot(application_id: Id) -> str:
    return f"pilot-{application_id}"


def site(application_id: Id, seq: int) -> str:
    return f"site-{application_id}-{seq}"


def is_council(workflow_id: str) -> bool:
    return workflow_id.startswith("council-")
