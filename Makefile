# Two commands for a fresh clone: `make run` serves the API, `make test` checks everything.
# Both create .venv and install the pinned requirements first (again when they change).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint format migrate bench openapi seed-demo screenshot

$(STAMP): requirements.txt requirements-dev.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	touch $@

run: $(STAMP)
	$(BIN)/uvicorn main:app --reload --host $(HOST) --port $(PORT)

test: lint
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

openapi: $(STAMP)
	$(BIN)/python manage.py openapi openapi.json

seed-demo: $(STAMP)
	$(BIN)/python manage.py seed-demo

screenshot: $(STAMP)
	SWAGGER_SCREENSHOT=docs/swagger.png $(BIN)/pytest --no-cov -q tests/browser

bench: $(STAMP)
	$(BIN)/python -m bench.run

migrate: $(STAMP)
	$(BIN)/alembic upgrade head
