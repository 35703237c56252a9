# OpenVisit: two commands.
#   make demo   run the whole product on the embedded default (SQLite, in-process bus)
#   make test   install everything needed and pass every test (SQLite and PostgreSQL/Redis passes, side by side)

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# `make demo` installs only what the product needs to run; `make test` everything (and then
# marks the demo's part done too, so a later `make demo` starts at once).
DEMO_STAMP := $(VENV)/.installed-demo
DEMO_DIR ?= var/demo
DEMO_PORT ?= 8000
SANDBOX_PORT ?= 9000
MLLP_PORT ?= 2575
PYTEST_ARGS ?=

.PHONY: demo demo-reset test lint typecheck deps venv system clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,twilio,smpp,devicetest,docs,livekit]'
	@touch $(STAMP) $(DEMO_STAMP)

$(DEMO_STAMP): pyproject.toml
	@echo "demo: first start: installing OpenVisit into $(VENV) (about a minute; later starts skip this)"
	@test -x $(PY) || { echo "demo: creating the virtualenv $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "demo: installing OpenVisit and its runtime dependencies (no test or lint tools)"
	@$(PY) -m pip install --quiet --disable-pip-version-check -e '.[docs]'
	@touch $(DEMO_STAMP)

venv: $(STAMP)

system:
	bash scripts/bootstrap-system.sh
	bash scripts/ensure-services.sh

deps: system venv
	bash scripts/bootstrap-npm.sh

lint: venv
	$(VENV)/bin/ruff check openvisit tests bench

typecheck: venv
	$(VENV)/bin/mypy --strict openvisit

# pytest exits 5 when it collected no test: run-tests.sh fails on any non-zero exit of either pass.
test: deps lint typecheck
	PY=$(PY) PYTEST_ARGS='$(PYTEST_ARGS)' bash scripts/run-tests.sh

demo: $(DEMO_STAMP)
	@bash scripts/demo.sh $(DEMO_DIR) $(DEMO_PORT) $(SANDBOX_PORT) $(MLLP_PORT)

# Start the demo from scratch: its database, sandbox data and logs go (nothing else).
demo-reset:
	rm -rf $(DEMO_DIR)
	@echo "demo: reset; the next make demo starts fresh"

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache
