# Two commands for a fresh machine: `make demo` (set up, then run the offline demo) and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
CORES ?= 2
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1

.PHONY: setup demo test browser lint dry-run-paper clean

setup: $(VENV)/.installed

# torch is pinned in the same install as transformers, else pip resolves a newer torch with CUDA packages.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0" -e ".[test]"
	touch $@

demo: setup
	$(BIN)/snakemake --cores $(CORES)

test: setup browser
	$(BIN)/python -m pytest -ra

# The report test renders it in headless Chromium: install Debian's when missing and we may (root with apt-get);
# otherwise that test skips.
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium for the report's browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

lint: setup
	$(BIN)/snakemake --lint

dry-run-paper: setup
	$(BIN)/snakemake -n --configfile config/paper.yaml

clean:
	rm -rf results logs resources .snakemake
