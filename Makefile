# Two commands for a fresh machine: `make run` (Airflow UI on the sandbox) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint format bench clean install

$(STAMP): requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (or make PYTHON=/path/to/python3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

## Sets up, migrates, starts the simulators and `airflow standalone` (UI on :8080). Ctrl-C stops all.
run: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" ./scripts/run-local.sh

## Sets up and runs the whole test suite (SQLite and PostgreSQL at 127.0.0.1:5432/test).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not e2e" -x

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

## Benchmarks (outside CI): each prints JSON figures; see the README's performance section.
bench: $(STAMP)
	$(BIN)/python benchmarks/order_to_cash_throughput.py --orders 2000
	$(BIN)/python benchmarks/order_to_cash_throughput.py --orders 2000 --stripe-rps 80
	$(BIN)/python benchmarks/order_to_cash_throughput.py --orders 1000 --stripe-rps 80 --latency-ms 25
	$(BIN)/python benchmarks/dag_parse_time.py
	$(BIN)/python benchmarks/mapping_suggest.py
	$(BIN)/python benchmarks/reconciliation_1m.py
	psql -h 127.0.0.1 -U postgres -d test -c 'DROP DATABASE IF EXISTS chaos' -c 'CREATE DATABASE chaos'
	$(BIN)/python benchmarks/chaos_run.py --orders 1000 --state-url postgresql+psycopg2://postgres@127.0.0.1/chaos

clean:
	rm -rf $(VENV) .airflow .pytest_cache
