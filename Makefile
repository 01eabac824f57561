# reelstream: `make demo` runs the main job on the local stack, `make test` runs the suite.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_SECONDS ?= 60
DEMO_RATE ?= 200
# e.g. STACK_FLAGS=--prometheus (Prometheus on 127.0.0.1:9090) or --secure (SASL/SCRAM, Redis ACL)
STACK_FLAGS ?=

.PHONY: help venv stack-up stack-down stack-status demo test unit integration lint format clean test-tools test-data

help:
	@echo "make demo    set up, start Kafka+Redis, run a worker on live synthetic traffic"
	@echo "make test    set up, start Kafka+Redis, run unit and integration tests"
	@echo "make lint    ruff check and format check"
	@echo "make test-data   fetch the Open Bandit Dataset sample into .cache/obd (make test does)"
	@echo "make stack-down   stop the Kafka and Redis this project started"

$(STAMP): pyproject.toml
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PY=python3.11)")'
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

stack-up: venv
	$(BIN)/reelstream stack up $(STACK_FLAGS)

stack-down: venv
	$(BIN)/reelstream stack down

stack-status: venv
	$(BIN)/reelstream stack status

demo: stack-up
	$(BIN)/reelstream demo --seconds $(DEMO_SECONDS) --rate $(DEMO_RATE)

# promtool (Debian's `prometheus` package) checks deploy/prometheus in the suite; kcat
# (librdkafka) is the Kafka client that is not ours in the integration tests.
test-tools:
	@command -v promtool >/dev/null 2>&1 && command -v kcat >/dev/null 2>&1 || deploy/install-test-tools.sh

# The Open Bandit Dataset sample (obp's sdist from PyPI, SHA-256 pinned) for
# tests/unit/test_artwork_eval_obd.py, into .cache/obd/ (git-ignored); silent once there.
test-data: venv
	@$(BIN)/python -m streams.tools.obd_sample

# Unit tests and doctests on two processes (they share nothing); the integration tests
# one at a time, since their workers and timings share the machine.
UNIT_PATHS := tests/unit streams features online_models

test: stack-up test-tools test-data
	$(BIN)/pytest -n 2 $(UNIT_PATHS)
	$(BIN)/pytest tests/integration

unit: venv test-tools test-data
	$(BIN)/pytest -n 2 $(UNIT_PATHS)

integration: stack-up test-tools
	$(BIN)/pytest tests/integration

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache data
