# Two commands for a new user: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: help install test test-fast lint typecheck migrations-check docs bench bench-quick bench-profile demo wheel-test matrix browser-deps clean

help:
	@echo "make demo    run the example shop + Datadog sandbox on http://127.0.0.1:8000/"
	@echo "make test    run the test suite (SQLite + django-q2 ORM broker)"
	@echo "make docs    build the documentation into docs/_build/html (warnings are errors)"
	@echo "make lint | typecheck | bench | bench-quick | bench-profile | wheel-test | matrix | browser-deps"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed (set PYTHON=python3.12, for example)."; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Development mode (ResourceWarnings and deprecations are errors, see setup.cfg) and a
# branch-coverage gate.
COVERAGE_GATE ?= 96
test: $(STAMP)
	PYTHONDEVMODE=1 $(BIN)/python -m pytest --cov --cov-report=term:skip-covered \
		--cov-fail-under=$(COVERAGE_GATE) $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not e2e and not browser" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy django_datadog_partner tests

migrations-check: $(STAMP)
	$(BIN)/python -m django makemigrations --check --dry-run --settings tests.settings

docs: $(STAMP)
	$(BIN)/python -m sphinx -W --keep-going -q -b html docs docs/_build/html

# The performance suite (bench/README.md): full (~30 min), quick (one round, CI), profile.
bench: $(STAMP)
	$(BIN)/python -m bench

bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick

bench-profile: $(STAMP)
	$(BIN)/python -m bench --profile

demo: $(STAMP)
	$(BIN)/python example_project/demo.py

wheel-test: $(STAMP)
	bash scripts/wheel-test.sh

matrix: $(STAMP)
	bash scripts/matrix.sh

browser-deps:
	bash scripts/install-browser.sh

clean:
	rm -rf $(VENV) .tox build dist docs/_build *.egg-info tests/.*.sqlite3 example_project/db.sqlite3
