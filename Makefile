# Two commands for a fresh machine: `make demo` (set up, then run the offline demo) and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
CORES ?= 2
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1

.PHONY: setup demo test lint dry-run-paper clean

setup: $(VENV)/.installed

# torch is pinned in the same install as transformers, else pip resolves a newer torch with CUDA packages.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0" -e ".[test]"
	touch $@

demo: setup
	$(BIN)/snakemake --cores $(CORES)

test: setup
	$(BIN)/python -m pytest -ra

lint: setup
	$(BIN)/snakemake --lint

dry-run-paper: setup
	$(BIN)/snakemake -n --configfile config/paper.yaml

clean:
	rm -rf results logs resources .snakemake
