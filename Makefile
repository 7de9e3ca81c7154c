# Every target installs what it needs into .venv first, so on a fresh machine
# `make demo` and `make test` are the only two commands needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install test test-quick demo lint format completions clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-quick: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not multirank" $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/python -m plsc_cli.engine.demo_job

lint: $(STAMP)
	$(BIN)/ruff check plsc_cli tests benchmarks
	$(BIN)/ruff format --check plsc_cli tests benchmarks
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format plsc_cli tests benchmarks
	$(BIN)/ruff check --fix plsc_cli tests benchmarks

completions: $(STAMP)
	$(BIN)/python -m plsc_cli.cli.completions completions

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
