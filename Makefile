# timecrisis developer workflow. `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install demo test test-deps lint typecheck format bench screenshots clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "timecrisis needs Python 3.11 or newer (set PYTHON=python3.11)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install timecrisis with its dev tools

demo: $(STAMP) ## run the demo: a worker on a SQLite file for ~15 s, with a live view
	$(BIN)/timecrisis demo

test-deps: ## start PostgreSQL, create its `test` database, install Chromium, when missing
	scripts/ensure-test-deps

test: $(STAMP) test-deps ## run the whole test suite (sets up what it needs first: test-deps)
	$(BIN)/pytest

lint: $(STAMP) ## ruff (lint + format check) and mypy --strict
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

typecheck: $(STAMP) ## mypy --strict only
	$(BIN)/mypy

format: $(STAMP) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) ## W1-W6 + fork mode vs Procrastinate, pgqueuer, SAQ, BullMQ; BENCH_QUICK=1: smoke run
	BENCH_QUICK=$(BENCH_QUICK) $(BIN)/python -m benchmarks $(BENCH_ARGS)

screenshots: $(STAMP) ## retake the dashboard screenshots in docs/images (browser tests)
	TIMECRISIS_SCREENSHOTS_DIR=docs/images $(BIN)/pytest tests/dashboard/test_browser.py -k screenshots

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
