"""Exports of a programme as admins take them: through the API (CSV or JSON, one dataset at a
time) and `grantflow export` (every dataset to a folder), with reviews anonymised."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SESSION, Stack, User, UserFactory, create_programme
from tests.test_agreement import agreement
from tests.test_cli import grantflow
from tests.test_council import Council
from tests.test_pilot import Project

pytestmark = [SESSION, pytest.mark.system]
DATASETS = ["applications", "reviews", "decisions", "ledger", "reports"]


@pytest.fixture
def council(stack: Stack, admin: User, make_user: UserFactory) -> Council:
    return Council(stack, admin, make_user)


async def download(council: Council, dataset: str, fmt: str) -> str:
    response = await council.stack.api.get(
        f"/v1/admin/programmes/{council.programme['id']}/export/{dataset}",
        params={"format": fmt},
        headers=council.admin.headers,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv" if fmt == "csv" else "app")
    return response.text


@pytest.mark.slow
async def test_a_programme_exports_as_csv_and_json_with_reviews_anonymised(
    council: Council, applicant: User, tmp_path: Path
) -> None:
    project = await Project.accepted(council, applicant, tranche_interval=3600)
    app_id = project.app["id"]
    rejected = await council.reviewed(applicant, 2)
    exported = {d: json.loads(await download(council, d, "json")) for d in DATASETS}

    assert {a["id"] for a in exported["applications"]} == {app_id, rejected["id"]}
    mine = next(a for a in exported["applications"] if a["id"] == app_id)
    assert (mine["stage"], mine["approved_rub"]) == ("agreement", 30_000_000)
    assert [(d["application_id"], d["outcome"]) for d in exported["decisions"]] == [
        (app_id, "approved")
    ]
    assert "votes" not in exported["decisions"][0]
    ledger = await council.ledger()
    assert [(e["kind"], e["amount_rub"]) for e in exported["ledger"]] == [
        (e["kind"], e["amount_rub"]) for e in ledger["entries"]
    ]
    owed = (await agreement(council, applicant, project.app))["reports"]
    assert [(r["application_id"], r["seq"], r["kind"]) for r in exported["reports"]] == [
        (app_id, r["seq"], r["kind"]) for r in owed
    ]

    # Blind: the reviews' scores and comments, never who wrote them.
    reviews = exported["reviews"]
    assert sorted(r["application_id"] for r in reviews) == sorted([app_id, rejected["id"]])
    assert {r["reviewer"] for r in reviews} == {"reviewer 1"}
    assert all(set(r["scores"]) == {"clinical_value", "novelty", "feasibility"} for r in reviews)
    text = json.dumps(reviews) + await download(council, "reviews", "csv")
    for reviewer in council.reviewers:
        assert reviewer.id not in text and reviewer.name not in text
    assert "reviewer_id" not in text

    # CSV: the same rows, a header first; an empty dataset is a header alone.
    for dataset in DATASETS:
        rows = list(csv.DictReader(io.StringIO(await download(council, dataset, "csv"))))
        assert len(rows) == len(exported[dataset]), dataset
        for row, entry in zip(rows, exported[dataset], strict=True):
            assert list(row) == list(entry), dataset
            # Every id, name, amount and count as in the JSON (times and nested values are
            # only spelled differently in CSV).
            plain = {
                k: str(v)
                for k, v in entry.items()
                if isinstance(v, str | int) and not isinstance(v, bool) and not k.endswith("_at")
            }
            assert {k: row[k] for k in plain} == plain, dataset
    fresh = await create_programme(council.stack, council.admin)
    response = await council.stack.api.get(
        f"/v1/admin/programmes/{fresh['id']}/export/decisions", headers=council.admin.headers
    )
    assert (
        response.text
        == "application_id,session_id,session,outcome,amount_rub,reason,decided_at\r\n"
    )
    none = await council.stack.api.get(
        f"/v1/admin/programmes/{fresh['id']}/export/decisions",
        params={"format": "json"},
        headers=council.admin.headers,
    )
    assert none.json() == []

    # The CLI writes the same rows to a folder, one file per dataset.
    out = tmp_path / "export"
    run = await grantflow(
        council.stack,
        tmp_path,
        "export",
        council.programme["id"],
        "--format",
        "json",
        "--out",
        str(out),
    )
    assert run.code == 0, run.err
    assert sorted(Path(p).name for p in json.loads(run.out.splitlines()[-1])) == sorted(
        f"{d}.json" for d in DATASETS
    )
    for dataset in DATASETS:
        written: list[dict[str, Any]] = json.loads((out / f"{dataset}.json").read_text())
        assert written == exported[dataset], dataset
    as_csv = await grantflow(
        council.stack, tmp_path, "export", council.programme["id"], "--out", str(out)
    )
    assert as_csv.code == 0, as_csv.err
    header = (out / "reviews.csv").read_text().splitlines()[0]
    assert header == "application_id,reviewer,score,recommendation,scores,comments,submitted_at"


async def test_an_unknown_programme_is_a_404_and_a_cli_error(
    stack: Stack, admin: User, tmp_path: Path
) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    response = await stack.api.get(
        f"/v1/admin/programmes/{missing}/export/ledger", headers=admin.headers
    )
    assert response.status_code == 404
    bad_dataset = await stack.api.get(
        f"/v1/admin/programmes/{missing}/export/passwords", headers=admin.headers
    )
    assert bad_dataset.status_code == 422
    run = await grantflow(stack, tmp_path, "export", missing, "--out", str(tmp_path / "x"))
    assert run.code == 2 and "programme not found" in run.err
    assert not (tmp_path / "x").exists()
