"""The workflow sandbox the worker runs every workflow in, made cheaper to start.

The sandbox stays on: each new workflow run imports its workflow module afresh (its own module
state, with the SDK's restricted view of the standard library), which is what catches a
non-deterministic call in workflow code. Two things make that import cheaper:

- Modules that are deterministic and free of side effects at import are shared with the host
  instead of being imported again per run: our payload models (`schemas`), what workflows
  import only to name activities (`activities`, and through them `store`, `grantflow`,
  `asyncpg`, `structlog`), and the workflows' helpers (`workflows.ids`, `workflows.options`,
  `workflows.deadline`) and pure rules (`workflows.intake`, `workflows.*_rules`). pydantic,
  pydantic_core and the standard library the SDK passes through already. The workflow modules
  already import these under `imports_passed_through`; naming them here also covers an import
  their code makes later.
- A workflow module's source (and its base classes' modules') is compiled once per process,
  not once per run. Without this, every run compiles it again (about 5 ms) whenever no
  bytecode cache is on disk: a source checkout under PYTHONDONTWRITEBYTECODE (`make run`, the
  tests, CI here), about two thirds of the cost of starting a workflow. The image has bytecode
  (pip compiles what it installs), where this saves little.
  Only the compiled code is shared (immutable); every run still executes it into a module
  of its own.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
import types
from collections.abc import Iterable, Sequence

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

PASSTHROUGH_MODULES = (
    "schemas",
    "activities",
    "store",
    "grantflow",
    "asyncpg",
    "structlog",
    "opentelemetry",  # grantflow.observability.temporal_spans, with tracing on
    "workflows.ids",
    "workflows.options",
    "workflows.deadline",
    "workflows.intake",
    "workflows.review_rules",
    "workflows.agreement_rules",
    "workflows.application_rules",
    "workflows.pilot_rules",
    "workflows.council_rules",
)


def sandbox_runner(workflow_classes: Iterable[type]) -> SandboxedWorkflowRunner:
    """The sandboxed runner for these workflows: the modules above passed through, and the
    code of the workflow modules (with those of their base classes) compiled once."""
    share_compiled_code(
        {base.__module__ for cls in workflow_classes for base in cls.__mro__ if base is not object}
    )
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    )


class _CompiledOnceLoader(importlib.machinery.SourceFileLoader):
    """Loads a module from source, compiling it on its first load in the process only."""

    _code: dict[str, types.CodeType] = {}
    _lock = threading.Lock()  # sandboxes start in the worker's threads

    def get_code(self, fullname: str) -> types.CodeType:
        with self._lock:
            code = self._code.get(self.path)
            if code is None:
                code = super().get_code(fullname)
                if code is None:  # only for a loader without source; not ours
                    raise ImportError(f"no code for {fullname}", name=fullname)
                self._code[self.path] = code
            return code


class _CompiledOnceFinder(importlib.abc.MetaPathFinder):
    """Finds the named modules (and their parent packages) as the path finder does, with
    `_CompiledOnceLoader` as their loader."""

    def __init__(self) -> None:
        self.modules: set[str] = set()

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.modules:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if (
            spec is not None
            and spec.origin is not None
            and type(spec.loader) is importlib.machinery.SourceFileLoader
        ):
            spec.loader = _CompiledOnceLoader(fullname, spec.origin)
        return spec


_finder = _CompiledOnceFinder()


def share_compiled_code(modules: Iterable[str]) -> None:
    """Compile these modules (and their packages) once per process from now on."""
    for module in modules:
        parts = module.split(".")
        _finder.modules.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
