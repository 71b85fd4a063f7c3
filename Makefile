# Two commands for a fresh machine (see README):
#   make run    install into .venv and run the daemon on the quickstart config
#   make test   install with the dev extra and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/silobridge: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

.PHONY: install run test lint bench
install: $(BIN)/silobridge

run: install
	$(BIN)/silobridge run -c mappings/quickstart.yaml

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check middleware adapters silobridge_demo tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

bench: install
	$(BIN)/python -m bench
