# pedlib: the table of contents. `make help` lists the targets.
STUDY  ?= pocket
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Pocket-study assets: the local mirror beside the project when it exists (see README).
ASSETS ?= $(if $(wildcard ../shared/assets/MANIFEST.tsv),../shared/assets,)
export PEDLIB_ASSETS := $(ASSETS)

.PHONY: help setup test bench lab reproduce

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/' | expand -t 14

setup: $(BIN)/.installed  ## create .venv and install pedlib (editable) with its extras

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[notebooks,dev]'
	touch $@

test: setup  ## run the test suite
	$(BIN)/python -m pytest -q

bench: setup  ## print wall time and peak memory of every metric, with and without PED
	$(BIN)/python benchmarks/bench_metrics.py

lab: setup  ## open JupyterLab on the notebooks
	$(BIN)/jupyter lab notebooks/

reproduce: setup  ## run the study STUDY (default: pocket) end to end
	@echo "make reproduce: the study pipeline (notebooks, params/$(STUDY).yaml) is not built yet;" >&2
	@echo "the scoring core is usable now: see README 'Python API'." >&2
	@exit 2
