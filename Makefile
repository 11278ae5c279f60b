# pedlib: the table of contents. `make help` lists the targets.
STUDY  ?= pocket
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Pocket-study assets: the local mirror beside the project when it exists (see README).
ASSETS ?= $(if $(wildcard ../shared/assets/MANIFEST.tsv),../shared/assets,)
# absolute, so that notebooks and tests running in another folder find it too
export PEDLIB_ASSETS := $(if $(ASSETS),$(abspath $(ASSETS)),)

OUT    := results/$(STUDY)/notebooks
# papermill runs a notebook headless from the project root with the study's name as parameter.
RUN_NB  = $(BIN)/papermill --cwd . --log-level WARNING -p study $(STUDY) $(2) notebooks/$(1).ipynb $(OUT)/$(1).ipynb

.PHONY: help setup test bench lab reproduce finetune groundtruth extract score evaluate figures notebooks

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

reproduce: setup  ## run the study STUDY (default: pocket) end to end: the five notebooks
	@mkdir -p $(OUT)
	$(call RUN_NB,01_finetune)
	$(call RUN_NB,02_extract)
	$(call RUN_NB,03_score)
	$(call RUN_NB,04_evaluate)
	$(call RUN_NB,05_figures)
	@echo "done: executed notebooks in $(OUT), results in results/$(STUDY), figures in figures/$(STUDY)"

groundtruth: setup  ## stage 01: linear probe + fine-tuning table (committed table when it matches)
	@mkdir -p $(OUT)
	$(call RUN_NB,01_finetune)

# One job per (model, dataset) or, for the paper studies' sweep, per (model, dataset, grid
# point) plus final retrains; finished jobs are skipped. `make -j4 finetune` runs 4 at once.
FT_JOBS = results/$(STUDY)/groundtruth/finetune-jobs.mk
finetune: setup  ## fine-tuning ground truth as resumable jobs (slow: see README); make -jN runs N at once
	$(BIN)/python -m pedlib finetune $(STUDY) --makefile $(FT_JOBS)
	$(MAKE) --no-print-directory -f $(FT_JOBS) all
	$(BIN)/python -m pedlib finetune $(STUDY) --collect

extract: setup  ## stage 02: features of every model on every target (cached)
	@mkdir -p $(OUT)
	$(call RUN_NB,02_extract)

score: setup  ## stage 03: every metric with and without PED (cached per model and target)
	@mkdir -p $(OUT)
	$(call RUN_NB,03_score)

evaluate: setup  ## stage 04: weighted tau and other correlations against each ground truth
	@mkdir -p $(OUT)
	$(call RUN_NB,04_evaluate)

figures: setup  ## stage 05: plots and tables into figures/STUDY
	@mkdir -p $(OUT)
	$(call RUN_NB,05_figures)

notebooks:  ## regenerate notebooks/*.ipynb from tools/build_notebooks.py
	$(BIN)/python tools/build_notebooks.py
