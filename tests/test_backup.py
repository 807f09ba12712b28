"""`grantflow backup` of a running `grantflow dev`, `grantflow restore` into a new home: the
restored stack holds every application in the stage it was in, `grantflow check --all` finds
every workflow and its row in agreement, and each application can still move on."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from grantflow.dev import backup as backups
from grantflow.settings import Settings
from tests.conftest import SESSION, application_body, programme_body
from tests.test_dev import (
    GRANTFLOW,
    START_WITHIN,
    STOP_WITHIN,
    bearer,
    demo_tokens,
    dev_env,
    running,
    stop,
)

# Blocking work (subprocesses, polling) runs in a thread, as in tests/test_dev.py.
pytestmark = pytest.mark.slow
WITHIN = 30.0
# Second-scale where nothing should lapse meanwhile: one review each, the council's three.
PARAMS = {
    "revision_window": 3600,
    "reviews_required": 1,
    "review_acceptance_window": 3600,
    "review_deadline": 7200,
    "reminder_lead_time": 60,
}
REVIEW = {
    "scores": {"clinical_value": 8, "novelty": 7, "feasibility": 7},
    "recommendation": "fund",
    "comments": "Sound plan.",
}


@pytest.fixture
def place() -> Iterator[Path]:
    """Outside pytest's 0700 temporary root: as root, PostgreSQL runs as a user of its own."""
    made = Path(tempfile.mkdtemp(prefix="grantflow-backup-"))
    yield made
    shutil.rmtree(made, ignore_errors=True)


def grantflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GRANTFLOW), *args],
        env=env,
        cwd=env["HOME"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def until(check: Any, what: str) -> Any:
    deadline = time.monotonic() + WITHIN
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {WITHIN}s; last: {last!r}")


class People:
    """The demo users of one home, acting through its API."""

    def __init__(self, api: httpx.Client, home: Path) -> None:
        self.api, self.demo = api, demo_tokens(home)

    def token(self, name: str) -> str:
        return str(self.demo[name]["token"])

    def post(self, who: str, path: str, body: Any = None, **headers: str) -> Any:
        response = self.api.post(path, json=body, headers={**bearer(self.token(who)), **headers})
        assert response.status_code in (200, 201), f"{who} {path}: {response.text}"
        return response.json()

    def stage(self, app_id: str) -> str:
        response = self.api.get(f"/v1/applications/{app_id}", headers=bearer(self.token("Admin")))
        assert response.status_code == 200, response.text
        return str(response.json()["stage"])

    def reaches(self, app_id: str, stage: str) -> None:
        until(lambda: self.stage(app_id) == stage, f"{app_id} in {stage}")

    def review(self, app_id: str) -> None:
        """The reviewer offered its task accepts it and reviews."""
        reviewers = [n for n, d in self.demo.items() if d["user"]["role"] == "reviewer"]

        def offered() -> tuple[str, str] | None:
            for name in reviewers:
                inbox = self.api.get("/v1/reviews", headers=bearer(self.token(name))).json()
                for item in inbox["items"]:
                    if item["application_id"] == app_id and item["status"] == "offered":
                        return name, item["task_id"]
            return None

        name, task = until(offered, f"a review task for {app_id}")
        self.post(name, f"/v1/reviews/{task}/acceptance")
        self.post(name, f"/v1/reviews/{task}/review", REVIEW)

    def council_session(self, programme_id: str) -> str:
        members = [d["user"]["id"] for d in self.demo.values() if d["user"]["role"] == "council"]
        body = {"name": "Spring session", "member_ids": members}
        return str(
            self.post("Admin", f"/v1/programmes/{programme_id}/council-sessions", body)[
                "session_id"
            ]
        )

    def approve(self, session: str, app_id: str) -> None:
        for name, d in self.demo.items():
            if d["user"]["role"] == "council":
                vote = {"application_id": app_id, "choice": "approve", "reason": "Strong."}
                self.post(name, f"/v1/council-sessions/{session}/votes", vote)
        self.post("Admin", f"/v1/council-sessions/{session}/close")


def consistent(env: dict[str, str]) -> bool:
    """`grantflow check --all` finds every workflow and its row in agreement (exit 0)."""
    checked = grantflow(env, "check", "--all")
    assert checked.returncode in (0, 1), checked.stdout + checked.stderr
    return checked.returncode == 0 and "workflows and rows agree" in checked.stdout


@SESSION
@pytest.mark.timeout(2 * START_WITHIN + 4 * STOP_WITHIN + 240)
async def test_a_backup_restores_every_application_where_it_was(place: Path) -> None:
    await asyncio.to_thread(backup_restores_every_application_where_it_was, place)


def backup_restores_every_application_where_it_was(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    env = dev_env(first)
    backup = tmp_path / "backup"

    with running(first, env, "original") as dev, httpx.Client(base_url=dev.api, timeout=30) as api:
        people = People(api, Path(env["GRANTFLOW_HOME"]))
        programme = people.post("Admin", "/v1/programmes", programme_body(params=PARAMS))["id"]

        def submit(applicant: str, specialty: str) -> str:
            body = application_body(programme, specialty=specialty)
            made = people.post(
                applicant, "/v1/applications", body, **{"Idempotency-Key": specialty}
            )
            return str(made["id"])

        waiting = submit("Anna Applicant", "radiology")  # its reviewer has yet to accept
        people.reaches(waiting, "under_review")
        heard = submit("Clara Applicant", "cardiology")  # reviewed, then before the council
        people.review(heard)
        people.reaches(heard, "reviewed")
        session = people.council_session(programme)
        people.reaches(heard, "in_council")
        gone = submit("Boris Applicant", "oncology")  # withdrawn: final
        people.post("Boris Applicant", f"/v1/applications/{gone}/withdrawal", {"reason": "Later."})
        stages = {app: people.stage(app) for app in (waiting, heard, gone)}
        assert stages == {waiting: "under_review", heard: "in_council", gone: "withdrawn"}

        taken = grantflow(env, "backup", "--out", str(backup))
        assert taken.returncode == 0, taken.stdout + taken.stderr
        assert "Temporal (SQLite)" in taken.stderr and "PostgreSQL (pg_dump)" in taken.stderr
        stop(dev, times=1)

    restored_env = dev_env(second)
    home = Path(restored_env["GRANTFLOW_HOME"])
    restored = grantflow(restored_env, "restore", str(backup))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    again = grantflow(restored_env, "restore", str(backup))
    assert again.returncode == 2
    assert again.stderr.strip() == (
        f"{home} is not empty: restore into an empty or new GRANTFLOW_HOME"
    )

    with (
        running(second, restored_env, "restored") as dev,
        httpx.Client(base_url=dev.api, timeout=30) as api,
    ):
        people = People(api, home)  # the demo tokens came along; their hashes are in the dump
        assert {app: people.stage(app) for app in stages} == stages
        until(lambda: consistent(restored_env), "check --all consistent after the restore")

        # Each can still move on: the timers, tasks and session survived with their workflows.
        people.review(waiting)
        people.reaches(waiting, "reviewed")
        people.approve(session, heard)
        people.reaches(heard, "approved")
        until(lambda: consistent(restored_env), "check --all consistent after moving on")
        stop(dev, times=2)  # the restore's own PostgreSQL stopped once in this home already


def test_a_backup_needs_the_running_embedded_stack(place: Path) -> None:
    home = place / "home"
    refusal = backups.BackupError
    with pytest.raises(refusal) as none_running:
        backups.backup(Settings(home=home), place / "out", lambda *_: None)
    assert str(none_running.value) == (
        f"no running grantflow stack under {home}: start it with `make run` (a backup is taken "
        "from the running stack)"
    )
    real = Settings(home=home, database_url="postgresql://db/grantflow")
    with pytest.raises(refusal) as of_real_servers:
        backups.backup(real, place / "out", lambda *_: None)
    assert str(of_real_servers.value) == (
        "`grantflow backup` works on the embedded stack, but DATABASE_URL names a real server: "
        "unset it, or back up the real servers as docs/operations.md says"
    )
    assert not (place / "out").exists()
