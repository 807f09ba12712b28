"""The layer rules (docs/architecture.md) can fail.

`make lint` runs pyproject.toml's import-linter contracts on the code. Here the very same
contracts run on a small model of grantflow's packages written into tmp_path: as written it keeps
every contract, and one forbidden import added to it breaks exactly the contract that forbids it.
A contract that matches nothing any more (a package renamed, a module mistyped) fails here
instead of passing for ever.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

# Runs lint-imports in a subprocess for each case: a few seconds each.
pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

# The model: one module per layer, importing what the layer rules let it import.
LAYOUT = {
    "schemas/__init__.py": "",
    "schemas/application.py": "from pydantic import BaseModel\n",
    "grantflow/__init__.py": "",
    "grantflow/logging.py": "import structlog\n",
    "grantflow/settings.py": "from pydantic_settings import BaseSettings\n",
    "grantflow/store/__init__.py": "import asyncpg\n",
    "grantflow/store/application.py": (
        "from grantflow.store import Db\nfrom schemas.application import BaseModel\n"
    ),
    "grantflow/services/__init__.py": "",
    "grantflow/services/application.py": (
        "from temporalio.client import Client\n"
        "from grantflow.store import application\n"
        "from workflows.application import ApplicationWorkflow\n"
    ),
    "grantflow/api/__init__.py": "",
    "grantflow/api/deps.py": "from fastapi import Depends\nfrom grantflow.store import Db\n",
    "grantflow/api/routes/__init__.py": "",
    "grantflow/api/routes/application.py": (
        "from fastapi import APIRouter\n"
        "from grantflow.api.deps import Depends\n"
        "from grantflow.services import application\n"
        "from schemas.application import BaseModel\n"
    ),
    "grantflow/api/routes/programme.py": "from fastapi import APIRouter\n",
    "grantflow/pages/__init__.py": (
        "from fastapi import APIRouter\nfrom grantflow.services import application\n"
    ),
    "workflows/__init__.py": "",
    "workflows/ids.py": "from uuid import UUID\n",
    "workflows/application.py": (
        "from temporalio import workflow\n"
        "from workflows import ids\n"
        "with workflow.unsafe.imports_passed_through():\n"
        "    from activities import application as acts\n"
        "    from schemas.application import BaseModel\n"
    ),
    "activities/__init__.py": "",
    "activities/application.py": (
        "import asyncpg\nimport structlog\nfrom grantflow.store import application\n"
    ),
    "workers/__init__.py": "",
    "workers/main.py": "from activities import application\nfrom workflows import application\n",
}

ROUTE = "grantflow/api/routes/programme.py"
SCHEMA = "schemas/application.py"
STORE = "grantflow/store/application.py"
WORKFLOW = "workflows/application.py"
SERVICE = "grantflow/services/application.py"

# One forbidden import added to one module of the model, and the contract (its id in
# pyproject.toml) that must break because of it, and no other.
OFFENCES = [
    pytest.param(
        "grantflow/pages/__init__.py",
        "from grantflow.store import application",
        "routes",
        id="a page reads the store",
    ),
    pytest.param(ROUTE, "from grantflow.store import Db", "routes", id="a route reads the store"),
    pytest.param(
        ROUTE, "from temporalio.client import Client", "routes", id="a route calls Temporal"
    ),
    pytest.param(ROUTE, "import asyncpg", "routes", id="a route opens a connection"),
    pytest.param(ROUTE, "from workflows import ids", "routes", id="a route names a workflow"),
    pytest.param(
        ROUTE,
        "from grantflow.api.routes import application",
        "route-modules",
        id="a route imports a route",
    ),
    pytest.param(
        SCHEMA, "from grantflow import settings", "schemas", id="a schema reads the settings"
    ),
    pytest.param(
        STORE, "from grantflow.services import application", "store", id="the store calls a service"
    ),
    pytest.param(STORE, "import activities.application", "store", id="the store runs an activity"),
    pytest.param(WORKFLOW, "import asyncpg", "workflows", id="a workflow opens a connection"),
    pytest.param(
        WORKFLOW,
        "from grantflow.store import application",
        "workflows",
        id="a workflow reads the store",
    ),
    pytest.param(
        "workflows/ids.py",
        "from grantflow import logging",
        "workflows",
        id="a workflow logs through a helper",
    ),
    pytest.param(
        SERVICE,
        "from fastapi import HTTPException",
        "services",
        id="a service raises HTTPException",
    ),
    pytest.param(
        SERVICE, "from grantflow.api import deps", "services", id="a service imports the API"
    ),
]


def _config() -> dict[str, Any]:
    config: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
    importlinter: dict[str, Any] = config["tool"]["importlinter"]
    return importlinter


def _write_model(root: Path, offence: tuple[str, str] | None = None) -> None:
    for name, source in LAYOUT.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    if offence:
        module, line = offence
        with (root / module).open("a") as f:
            f.write(line + "\n")


def _broken_contracts(root: Path) -> set[str]:
    """The ids of the contracts the model under `root` breaks, checked with the real
    pyproject.toml. A subprocess, so that the model's packages are found first (PYTHONPATH), not
    the real ones this session has imported."""
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(ROOT / "pyproject.toml")],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    by_name = {c["name"]: c["id"] for c in _config()["contracts"]}
    verdicts = dict(
        re.findall(rf"^({'|'.join(map(re.escape, by_name))}) (KEPT|BROKEN)", result.stdout, re.M)
    )
    assert set(verdicts) == set(by_name), result.stdout + result.stderr
    broken = {by_name[name] for name, verdict in verdicts.items() if verdict == "BROKEN"}
    assert result.returncode == (1 if broken else 0), result.stdout + result.stderr
    return broken


def test_the_model_of_the_layers_keeps_every_contract(tmp_path: Path) -> None:
    _write_model(tmp_path)
    assert _broken_contracts(tmp_path) == set()


@pytest.mark.parametrize(("module", "line", "contract"), OFFENCES)
def test_one_forbidden_import_breaks_its_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    _write_model(tmp_path, (module, line))
    assert _broken_contracts(tmp_path) == {contract}


def test_every_contract_is_shown_able_to_fail() -> None:
    contracts = {c["id"] for c in _config()["contracts"]}
    assert contracts == {offence.values[2] for offence in OFFENCES}


def _activities_imports_outside_passthrough(source: str) -> list[int]:
    """Lines importing `activities` anywhere but directly inside a
    `with workflow.unsafe.imports_passed_through():` block."""
    nodes = list(ast.walk(ast.parse(source)))
    imports = [n for n in nodes if isinstance(n, ast.Import | ast.ImportFrom)]
    inside = {
        id(statement)
        for node in nodes
        if isinstance(node, ast.With)
        and any(
            ast.unparse(item.context_expr) == "workflow.unsafe.imports_passed_through()"
            for item in node.items
        )
        for statement in node.body
    }
    return sorted(
        node.lineno for node in imports if _imports_activities(node) and id(node) not in inside
    )


def _imports_activities(node: ast.Import | ast.ImportFrom) -> bool:
    if isinstance(node, ast.ImportFrom):
        return (node.module or "").split(".")[0] == "activities"
    return any(alias.name.split(".")[0] == "activities" for alias in node.names)


def test_workflows_import_activities_only_through_the_sandbox_passthrough() -> None:
    """The workflows contract ignores workflows -> activities: the one exception, allowed only
    to name the activities a workflow schedules, inside imports_passed_through."""
    sources = sorted((ROOT / "workflows").glob("*.py"))
    assert any("from activities import" in path.read_text() for path in sources)
    outside = {
        path.name: lines
        for path in sources
        if (lines := _activities_imports_outside_passthrough(path.read_text()))
    }
    assert outside == {}


def test_an_activities_import_outside_the_passthrough_is_found() -> None:
    source = (
        "from temporalio import workflow\n"
        "import activities.review\n"
        "with workflow.unsafe.imports_passed_through():\n"
        "    from activities import application as acts\n"
        "def helper() -> None:\n"
        "    from activities import council\n"
    )
    assert _activities_imports_outside_passthrough(source) == [2, 6]
