# Two commands for a fresh clone: `make run` serves the API, `make test` checks everything.
# Both create .venv and install the pinned requirements first (again when they change):
# `make run` only what the app needs, `make test` the test tools too.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed
BENCH := $(VENV)/.bench-installed
# What `make bench` serves the app from: the runtime requirements only, as a deployment has.
SERVE_VENV := .venv-serve
SERVE := $(SERVE_VENV)/.runtime-installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint format migrate bench bench-scale openapi seed-demo screenshot

$(RUNTIME): requirements.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -c constraints.txt
	touch $@

$(DEV): $(RUNTIME) requirements-dev.txt
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	touch $@

$(SERVE): requirements.txt constraints.txt
	$(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SERVE_VENV)/bin/python -m pip install --quiet -r requirements.txt -c constraints.txt
	touch $@

$(BENCH): $(DEV) requirements-bench.txt
	$(BIN)/python -m pip install --quiet -r requirements-bench.txt -c constraints.txt
	touch $@

run: $(RUNTIME)
	$(BIN)/uvicorn main:app --reload --host $(HOST) --port $(PORT) --log-config log_config.json --no-server-header

# The tests start about a hundred server workers and commands. Where PYTHONDONTWRITEBYTECODE is
# set (this machine sets it), each would compile every module of the app again: compiling them
# once here saves about 5 % of each start (Python still ignores a stale file).
test: lint
	$(BIN)/python -m compileall -q -l . alembic alembic/versions bench
	$(BIN)/pytest

lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(DEV)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

openapi: $(RUNTIME)
	$(BIN)/python manage.py openapi openapi.json

seed-demo: $(RUNTIME)
	$(BIN)/python manage.py seed-demo

screenshot: $(DEV)
	SWAGGER_SCREENSHOT=docs/swagger.png $(BIN)/pytest --no-cov -q tests/browser

bench: $(DEV) $(SERVE)
	BENCH_SERVE_PYTHON=$(SERVE_VENV)/bin/python $(BIN)/python -m bench.run

# GET /order at 1k, 10k, 100k and 1M orders; PostgreSQL too when SCALE_DATABASE_URL is set.
bench-scale: $(BENCH) $(SERVE)
	BENCH_SERVE_PYTHON=$(SERVE_VENV)/bin/python $(BIN)/python -m bench.scale

migrate: $(RUNTIME)
	$(BIN)/alembic upgrade head
