# Two commands for a fresh machine: `make run` and `make test`.
# Each creates .venv (once) and installs pinned dependencies through constraints.txt.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# Keeps torch on CPU from page-fault storms (large allocations are kept instead of returned to the OS).
export GLIBC_TUNABLES := glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=4294967296:glibc.malloc.top_pad=268435456
export MPLBACKEND := Agg

ARGS ?=

.PHONY: run test test-all bench lint clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11 ...'"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) install --quiet --disable-pip-version-check -c constraints.txt -e .
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	@touch $@

run: $(VENV)/.installed
	$(BIN)/dynafolio run $(ARGS)

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(ARGS)

test-all: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m "" $(ARGS)

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/backtest_speed.py

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) runs build src/*.egg-info .pytest_cache
