# Quick start: `make run` (serve on the embedded dev node) and `make test`.
# Settings for `make run`: serve flags in ARGS (make run ARGS="--port 8081")
# or LNPLUGIN_* environment variables.
PYTHON ?= python3
ARGS ?=
VENV ?= .venv
BIN := $(VENV)/bin
# The JavaScript client some tests drive (@getalby/sdk, tests/js), from npm.
# Without npm it is not installed and those tests skip (CI fails them instead).
JS := tests/js
NPM := $(shell command -v npm 2>/dev/null)

.PHONY: run test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(BIN)/.installed-test: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

$(JS)/node_modules/.installed: $(JS)/package.json $(JS)/package-lock.json
	cd $(JS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: $(BIN)/.installed
	$(BIN)/lnplugin serve $(ARGS)

# `compileall` writes the bytecode of the ~800 processes the tests start
# (servers, plugins, CLI commands) once: where PYTHONDONTWRITEBYTECODE is set
# (it is on the machines this project is built on), each of them would
# otherwise compile every lnplugin module from source, about 0.3 s of CPU a
# start.
test: $(BIN)/.installed-test $(if $(NPM),$(JS)/node_modules/.installed)
	$(BIN)/ruff check lnplugin lnplugin_sim tests contrib
	$(BIN)/ruff format --check lnplugin lnplugin_sim tests contrib
	$(BIN)/mypy
	$(BIN)/python -m compileall -q lnplugin lnplugin_sim tests
	$(BIN)/pytest --numprocesses 2

bench: $(BIN)/.installed-test
	$(BIN)/python contrib/bench/bench_api.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis $(JS)/node_modules
