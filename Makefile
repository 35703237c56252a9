# OpenVisit: two commands.
#   make demo   run the whole product on the embedded default (SQLite, in-process bus)
#   make test   install everything needed and pass every test (SQLite pass + PostgreSQL/Redis pass)

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= var/demo
DEMO_PORT ?= 8000
SANDBOX_PORT ?= 9000
MLLP_PORT ?= 2575
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck deps venv system clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,twilio,smpp,devicetest,docs,livekit]'
	@touch $(STAMP)

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

# pytest exits 5 when it collected no test: make treats any non-zero exit as failure.
test: deps lint typecheck
	OPENVISIT_TEST_BACKEND=sqlite $(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)
	OPENVISIT_TEST_BACKEND=postgres $(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

demo: venv
	bash scripts/demo.sh $(DEMO_DIR) $(DEMO_PORT) $(SANDBOX_PORT) $(MLLP_PORT)

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache
