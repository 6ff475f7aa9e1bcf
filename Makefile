# Two commands set up a fresh machine: `make dev` runs Relay locally, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: install dev test lint unit synth bench soak screenshots clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(wildcard package.json package-lock.json)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@if [ -f package.json ]; then npm ci --no-audit --no-fund; fi
	@if [ -f stacks/bundling.py ]; then $(PY) -m stacks.bundling; fi
	@touch $@

dev: install
	$(VENV)/bin/relay dev --port $(PORT)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy functions relay stacks app.py
	$(VENV)/bin/lint-imports

test: install lint
	$(PY) -m pytest

unit: install
	$(PY) -m pytest tests/unit -q

synth: install
	$(PY) app.py

# Throughput, latency, cold start, asset sizes and cost per million; BENCH_SCALE=5 for a bigger run.
bench: install
	$(PY) -m bench

# Guarantees at size (issue 16): backlog, senders, replays, racing runs, outage; ~30-40 minutes.
# SOAK_SCALE=0.1 for a tenth; writes bench/results/soak.{json,md}; exit 1 when an invariant breaks.
# `make test` runs a small version of each scenario (tests/soak).
soak: install
	$(PY) -m bench.soak

# The web console's pictures in docs/console/ (README, "Console"): headless Chromium against a fresh
# relay. Needs Chromium (`apt-get install chromium`), as `make test` does for tests/browser.
screenshots: install
	$(PY) -m tests.browser.screenshots

clean:
	rm -rf .build cdk.out .pytest_cache .mypy_cache .ruff_cache
