# pedlib: the table of contents. `make help` lists the targets.
STUDY  ?= pocket
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Pocket-study assets: the local mirror beside the project when it exists (see README).
ASSETS ?= $(if $(wildcard ../shared/assets/MANIFEST.tsv),../shared/assets,)
# absolute, so that notebooks and tests running in another folder find it too
export PEDLIB_ASSETS := $(if $(ASSETS),$(abspath $(ASSETS)),)
# glibc hands every allocation over 128 KB-32 MB back to the kernel when freed, so each batch of
# activations is page-faulted in anew; on some VMs that was half the CPU time of extraction and
# fine-tuning (2-3x slower). Keep up to 1 GiB per process for reuse instead. Numbers do not change
# (torch aligns its buffers itself); see docs/speed.md.
export MALLOC_MMAP_THRESHOLD_ ?= 1073741824
export MALLOC_TRIM_THRESHOLD_ ?= 1073741824
# The same numbers on every x86-64 machine with AVX2: float32 kernels round differently per
# instruction set (another machine's committed tables differed here by up to 0.13 in a weighted tau), so torch,
# oneDNN, MKL and OpenBLAS are held to their AVX2 kernels. On a newer CPU, `make reproduce
# ATEN_CPU_CAPABILITY=avx512 ONEDNN_MAX_CPU_ISA=ALL` is faster and differs in the last bits.
ifneq ($(shell grep -m1 -o -w avx2 /proc/cpuinfo 2>/dev/null),)
export ATEN_CPU_CAPABILITY ?= avx2
export ONEDNN_MAX_CPU_ISA ?= AVX2
export MKL_CBWR ?= AVX2
export OPENBLAS_CORETYPE ?= Haswell
endif

# `pedlib notebooks` runs notebooks headless (papermill) from the project root with the study's
# name as parameter: params checked first, progress in this terminal, executed notebooks in
# results/$(STUDY)/notebooks/ (a failed one as NAME.failed.ipynb, its traceback in results/$(STUDY)/logs/).
RUN_NB  = $(BIN)/python -m pedlib notebooks $(STUDY)
# JupyterLab as root (containers, CI) needs --allow-root; headless, it prints its URL.
LAB_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: help setup lock verify test bench bench-extract lab reproduce report finetune groundtruth extract score evaluate figures notebooks

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/' | expand -t 14

setup: $(BIN)/.installed  ## create .venv with exactly requirements.lock, and pedlib (editable) in it

# scripts/environment.py: uv installs the lock (hashes checked), then the installed set is
# compared with the lock. The lock is for CPython 3.11 on Linux x86-64 (its header).
$(BIN)/.installed: pyproject.toml requirements.lock scripts/environment.py
	@$(PYTHON) scripts/environment.py setup $(VENV)
	@touch $@

lock:  ## resolve pyproject.toml's ranges into requirements.lock (UPGRADE=1: newest in range)
	@$(PYTHON) scripts/environment.py lock $(if $(UPGRADE),--upgrade,)

# Two pytest workers (pytest-xdist), each test file on one of them, the long files first
# (tests/conftest.py): a file's fixtures (the smoke and paper studies run end to end) are made
# once. TEST_WORKERS=0 runs the suite in this process.
TEST_WORKERS ?= 2
# OpenMP threads that finish early spin at the barrier by default: with two test workers on two
# cores, every multi-threaded torch call waits on a busy core (the GPU benchmark's CPU run: 17 s
# alone, 30 s beside a busy core, 19 s with passive waiting). Numbers do not change.
test: export OMP_WAIT_POLICY ?= PASSIVE
test: setup  ## run the test suite (TEST_WORKERS=2 processes)
	$(BIN)/python -m pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)

bench: setup  ## print PED's cost relative to LogME, then wall time and peak memory of every metric
	$(BIN)/python benchmarks/bench_metrics.py

bench-extract: setup  ## extraction img/s of every pocket model: the module as written and its rewrite (one thread)
	$(BIN)/python benchmarks/bench_extract.py

lab: setup  ## start JupyterLab on the notebooks (open the URL it prints)
	$(BIN)/jupyter lab --no-browser --ip=127.0.0.1 $(LAB_ROOT) notebooks/

reproduce: setup  ## run the study STUDY (default: pocket) end to end: the five notebooks, then the verdict
	@$(RUN_NB)
	@echo "done: executed notebooks in results/$(STUDY)/notebooks, figures in figures/$(STUDY); make report STUDY=$(STUDY) bundles them"
	@$(BIN)/python -m pedlib verify $(STUDY) --no-fail

verify: setup  ## compare figures/STUDY with the committed files: tables numerically, figures by bytes
	@$(BIN)/python -m pedlib verify $(STUDY)

report: setup  ## one self-contained HTML of the executed notebooks: results/STUDY/report.html
	@$(BIN)/python -m pedlib report $(STUDY)

groundtruth: setup  ## stage 01: linear probe + fine-tuning table (committed table when it matches)
	@$(RUN_NB) 01_groundtruth

# One job per (model, dataset) or, for the paper studies' sweep, per (model, dataset, grid
# point) plus final retrains; finished jobs are skipped. `make -j4 finetune` runs 4 at once.
FT_JOBS = results/$(STUDY)/groundtruth/finetune-jobs.mk
finetune: setup  ## fine-tuning ground truth as resumable jobs (slow: see README); make -jN runs N at once
	$(BIN)/python -m pedlib finetune $(STUDY) --makefile $(FT_JOBS)
	$(MAKE) --no-print-directory -f $(FT_JOBS) all
	$(BIN)/python -m pedlib finetune $(STUDY) --collect

extract: setup  ## stage 02: features of every model on every target (cached)
	@$(RUN_NB) 02_extract

score: setup  ## stage 03: every metric with and without PED (cached per model and target)
	@$(RUN_NB) 03_score

evaluate: setup  ## stage 04: weighted tau and other correlations against each ground truth
	@$(RUN_NB) 04_evaluate

figures: setup  ## stage 05: plots and tables into figures/STUDY
	@$(RUN_NB) 05_figures

notebooks: setup  ## sync each notebook with its jupytext twin (notebooks/*.py), whichever was edited last
	$(BIN)/jupytext --sync notebooks/*.ipynb
