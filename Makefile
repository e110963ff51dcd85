# Two commands for a fresh machine: `make demo` (set up, then run the offline demo) and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
CORES ?= 2
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1

.PHONY: setup demo test browser lint format dry-run-paper

setup: $(VENV)/.installed

# torch is pinned in the same install as transformers, else pip resolves a newer torch with CUDA packages.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0" -e ".[test]"
	touch $@

demo: setup
	$(BIN)/snakemake --cores $(CORES)

test: setup browser lint
	$(BIN)/python -m pytest -ra

# The report test renders it in headless Chromium: install Debian's when missing and we may (root with apt-get);
# otherwise that test skips.
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium for the report's browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

# The style gate `make test` runs first: ruff (lint and format) on the Python, snakefmt on the Snakemake files,
# Snakemake's own linter on the workflow. `make format` applies both formatters.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check .
	$(BIN)/snakemake --lint

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/snakefmt .

dry-run-paper: setup
	$(BIN)/snakemake -n --configfile config/paper.yaml

