# NotifyHub — the two commands: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: run test lint install bench clean

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@touch $(STAMP)

install: $(STAMP)

## make run — set everything up and start web + worker + beat (embedded defaults).
run: export DEBUG ?= true
run: export PORT := $(PORT)
run: export PATH := $(abspath $(BIN)):$(PATH)
run: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py compilemessages --ignore=.venv -v0
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py ensure_dev_admin --url http://127.0.0.1:$(PORT)/admin/
	@echo "Starting web (http://127.0.0.1:$(PORT)/admin/), worker and beat — Ctrl-C stops all three."
	$(BIN)/honcho start --procfile Procfile --port $(PORT)

## make test — set up, lint (ruff), compile the translations, then the whole pytest suite.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python manage.py compilemessages --ignore=.venv -v0
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## make lint — ruff and mypy.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

## make bench — benchmarks (tests/benchmarks) on PostgreSQL; numbers go to BENCHMARKS.md.
bench: export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
bench: $(STAMP)
	$(BIN)/python -m pytest tests/benchmarks -m benchmark -p no:randomly -s --create-db $(PYTEST_ARGS)

clean:
	rm -rf var staticfiles .pytest_cache .mypy_cache .ruff_cache test-artifacts
