# Quick start: `make run` (serve on the embedded dev node) and `make test`.
# Settings for `make run`: serve flags in ARGS (make run ARGS="--port 8081")
# or LNPLUGIN_* environment variables.
PYTHON ?= python3
ARGS ?=
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(BIN)/.installed-test: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/lnplugin serve $(ARGS)

test: $(BIN)/.installed-test
	$(BIN)/ruff check lnplugin lnplugin_sim tests contrib
	$(BIN)/ruff format --check lnplugin lnplugin_sim tests contrib
	$(BIN)/mypy
	$(BIN)/pytest --numprocesses 2

bench: $(BIN)/.installed-test
	$(BIN)/python contrib/bench/bench_api.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
