# The two commands a newcomer runs: `make run` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test test-fast lint typecheck pytest histories clean vendor chromium messages

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

# pytest's processes (pytest-xdist): most tests wait on Temporal, PostgreSQL, a browser or a
# fault's timeout, so three keep two cores busier than two did (the suite in 8 min 8 s instead
# of 11 min 2 s, docs/tests.md); each starts its own servers and browser. `make test
# WORKERS=0`: one. Whole modules go to a process, longest first (tests/conftest.py).
WORKERS ?= 3

## make test: lint, types and the whole suite (every tier: unit, workflow, system, slow)
test: $(VENV)/.test-installed lint typecheck pytest

## make test-fast: the unit and workflow tiers and the quick system tests, within 90 s on a
## quiet 2-core machine (no lint, no types, nothing marked slow: see the markers in pyproject.toml)
test-fast: $(VENV)/.test-installed
	$(BIN)/pytest -n $(WORKERS) -m "not slow"

## make lint: ruff, and the layer contracts in pyproject.toml (docs/architecture.md)
lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache --no-logo  # under a second: no cache folder worth keeping

typecheck: $(VENV)/.test-installed
	$(BIN)/mypy

# The 20 slowest steps close every run: what tests/conftest.py's MODULE_SECONDS is refreshed from.
pytest: $(VENV)/.test-installed chromium
	$(BIN)/pytest -n $(WORKERS) --durations=20

## make histories: re-record the workflow histories the replay tests use (after a patch)
histories: $(VENV)/.test-installed
	GRANTFLOW_RECORD_HISTORIES=1 $(BIN)/pytest --ignore=tests/test_replay.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

## make vendor: re-derive the pages' JavaScript from its npm package (no CDN, no build step)
HTMX_VERSION := 2.0.11
STATIC       := grantflow/pages/static
vendor:
	rm -rf .vendor && mkdir -p .vendor
	cd .vendor && npm pack --silent htmx.org@$(HTMX_VERSION) && tar xzf htmx.org-$(HTMX_VERSION).tgz
	cp .vendor/package/dist/htmx.min.js $(STATIC)/htmx.min.js
	cp .vendor/package/LICENSE $(STATIC)/htmx.LICENSE
	rm -rf .vendor

## make chromium: the browser the page tests drive (Debian's; Playwright cannot download its own)
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; \
	  else \
	    echo "the page tests need chromium: sudo apt-get install --no-install-recommends chromium"; \
	  fi; }

## make messages: after changing a page's text, bring the ru/en catalogues up to date (then
## translate the new entries in grantflow/locale/ru; the .po files are read as they are)
messages: $(VENV)/.test-installed
	$(BIN)/pybabel extract -F grantflow/locale/babel.cfg -k N_ --no-location -o .messages.pot .
	$(BIN)/pybabel update -i .messages.pot -d grantflow/locale --no-fuzzy-matching -w 100
	rm -f .messages.pot
