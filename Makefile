# Two commands set up a fresh machine: `make dev` runs Relay locally, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: install dev test lint unit synth bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@if [ -f stacks/bundling.py ]; then $(PY) -m stacks.bundling; fi
	@touch $@

dev: install
	$(VENV)/bin/relay dev --port $(PORT)

lint: install
	$(PY) -m ruff check .
	$(PY) -m mypy functions relay stacks app.py

test: install lint
	$(PY) -m pytest

unit: install
	$(PY) -m pytest tests/unit -q

synth: install
	$(PY) app.py

clean:
	rm -rf .build cdk.out .pytest_cache .mypy_cache .ruff_cache
