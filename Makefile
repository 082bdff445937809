# twotower: `make setup` once, then `make run-notebooks`; `make test` runs the tests; `make help` lists every target.
# Python 3.11 (the tested default), 3.12 or 3.13: `make setup PYTHON=python3.12` (a .venv of another Python is rebuilt).
VENV   ?= .venv
BIN     = $(VENV)/bin
# The Python of an existing .venv stays the default, so `make test` after `make setup PYTHON=python3.12` keeps 3.12.
VENV_PYTHON := $(shell cat $(VENV)/.python-version 2>/dev/null)
PYTHON ?= $(shell command -v python$(or $(VENV_PYTHON),3.11) || command -v python3)
PYTHON_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
KERNEL ?= twotower
OUTPUT_DIR ?= results

# Notebook parameters, e.g. `make run-notebooks EMBEDDING_DIM=64 EPOCHS=3`, or any parameter of the notebooks'
# parameters cells with PARAMS="seeds=1 best_epochs=5"; the runner refuses names no notebook has.
EMBEDDING_DIM ?=
EPOCHS ?=
LEARNING_RATE ?=
BATCH_SIZE ?=
SEED ?=
DATASET ?=
PARAMS ?=
RUN_PARAMS = $(if $(EMBEDDING_DIM),-p embedding_dim=$(EMBEDDING_DIM)) $(if $(EPOCHS),-p epochs=$(EPOCHS)) \
         $(if $(LEARNING_RATE),-p learning_rate=$(LEARNING_RATE)) $(if $(BATCH_SIZE),-p batch_size=$(BATCH_SIZE)) \
         $(if $(SEED),-p seed=$(SEED)) $(if $(DATASET),-p dataset=$(DATASET)) $(foreach p,$(PARAMS),-p $(p))

# Variables this Makefile reads from the command line; any other `make X=...` is a typo and stops here.
KNOWN_VARIABLES = PYTHON VENV KERNEL OUTPUT_DIR EMBEDDING_DIM EPOCHS LEARNING_RATE BATCH_SIZE SEED DATASET PARAMS DIMS \
         SEEDS SWEEP_DIR FOLDS GRID INDEX FROM EXPORT_DIR K USER CATALOGUES MT_FOLDS RK_FOLDS SEQ_EPOCHS LAB_PORT SIZES WORKERS \
         EXECUTED
COMMAND_LINE_VARIABLES = $(foreach v,$(.VARIABLES),$(if $(filter command line,$(origin $(v))),$(v)))
UNKNOWN_VARIABLES = $(filter-out $(KNOWN_VARIABLES),$(COMMAND_LINE_VARIABLES))
ifneq ($(strip $(UNKNOWN_VARIABLES)),)
$(error unknown variable(s) $(UNKNOWN_VARIABLES); this Makefile reads $(KNOWN_VARIABLES) (notebook parameters: PARAMS="name=value ..."))
endif

export TF_USE_LEGACY_KERAS = 1
export TF_CPP_MIN_LOG_LEVEL = 2

.PHONY: help setup all run-notebooks test test-browser lint format lab bench sweep tune export recommend bench-serving \
        study multitask-tune ranking-tune sequence-tune bench-scale rating-study reranker-study sequence-study headline docs book clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  make %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "variables: $(KNOWN_VARIABLES)"

all: setup run-notebooks ## setup, then run every notebook

setup: $(VENV)/.installed-$(or $(PYTHON_VERSION),none) ## create .venv with the pinned stack, the package and the twotower kernel

$(VENV)/.installed-%: requirements.txt constraints.txt pyproject.toml jupyter/overrides.json
	@test "$*" != none || { echo "error: '$(PYTHON)' does not run as Python; use e.g. make setup PYTHON=python3.12" >&2; exit 1; }
	@case "$*" in 3.11|3.12|3.13) ;; *) echo "error: twotower supports Python 3.11 to 3.13; $(PYTHON) is $*" >&2; exit 1;; esac
	@if test -x $(BIN)/python && test "$$(cat $(VENV)/.python-version 2>/dev/null)" != "$*"; then \
		echo "rebuilding $(VENV) for Python $*"; rm -rf $(VENV); fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python 3 (twotower)" \
		--env TF_USE_LEGACY_KERAS 1 --env TF_CPP_MIN_LOG_LEVEL 2
	mkdir -p $(VENV)/share/jupyter/lab/settings
	cp jupyter/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	echo $* > $(VENV)/.python-version
	touch $@

run-notebooks: setup ## run the numbered notebooks headless into results/ (EMBEDDING_DIM=, EPOCHS=, DATASET=, PARAMS=...)
	$(BIN)/python -m twotower_utils run --output-dir $(OUTPUT_DIR) --kernel $(KERNEL) $(RUN_PARAMS)

study: setup ## the full studies behind docs/results.md: every notebook with 3 seeds and whole grids (runner's STUDY)
	$(BIN)/python -m twotower_utils run --study --output-dir $(OUTPUT_DIR) --kernel $(KERNEL) $(RUN_PARAMS)

test: setup ## run the tests (unit tests and the notebooks' smoke run; needs TFDS_DATA_DIR)
	$(BIN)/python -m pytest

test-browser: setup ## headless Chromium: notebook 05's panel in JupyterLab, then the book (make book first; screenshots in results/browser)
	$(BIN)/python -m pip install --quiet -c constraints.txt playwright
	TWOTOWER_SCREENSHOTS=$(OUTPUT_DIR)/browser $(BIN)/python -m pytest -m browser -p no:cacheprovider tests/test_browser.py
	TWOTOWER_SCREENSHOTS=$(OUTPUT_DIR)/browser TWOTOWER_BOOK=build/book \
		$(BIN)/python -m pytest -m browser -p no:cacheprovider tests/test_book.py

lint: setup ## ruff (lint, formatting, notebooks included), import-linter (imports point down), notebooks without outputs
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m twotower_utils.notebook.hygiene notebooks/*.ipynb
	$(BIN)/lint-imports

format: setup ## ruff format everything (notebooks included)
	$(BIN)/ruff format .

bench: setup ## training speed: the TFRS tutorial's loop vs the package's, printed and in results/bench
	$(BIN)/python benchmarks/bench_training.py --output $(OUTPUT_DIR)/bench/training.json

# Scaling benchmark (notebook 11): synthetic sets of ML-25M's shape, one process and 2 local workers.
SIZES   ?= 1000000,10000000,25000000
WORKERS ?= 1,2
bench-scale: setup ## epoch/evaluation time and peak RSS vs data size on synthetic ML-25M-shaped sets (SIZES=, WORKERS=)
	$(BIN)/python benchmarks/bench_scale.py --sizes $(SIZES) --workers $(WORKERS) --output $(OUTPUT_DIR)/bench/scale.json

LAB_PORT ?= 8888
lab: setup ## JupyterLab on the notebooks, with the twotower kernel (no news pop-up)
	$(BIN)/jupyter lab --port $(LAB_PORT) --KernelManager.transport=ipc notebooks/

# Embedding-dimension sweep (notebook 05): cached per (dim, seed, config), a rerun only trains what is missing.
DIMS  ?= 8 16 32 64 128 256
SEEDS ?=
SWEEP_DIR ?= $(OUTPUT_DIR)/sweep
sweep: setup ## embedding-dimension sweep of notebook 05, cached (DIMS=, SEEDS=, EPOCHS=)
	$(BIN)/python -m twotower_utils sweep --dims $(DIMS) $(if $(SEEDS),--seeds $(SEEDS)) $(if $(EPOCHS),--epochs $(EPOCHS)) \
		$(if $(LEARNING_RATE),--learning-rate $(LEARNING_RATE)) $(if $(BATCH_SIZE),--batch-size $(BATCH_SIZE)) \
		--output-dir $(SWEEP_DIR)

# k-fold validation of the two-tower switches (notebook 06's choices), cached per (config, fold).
FOLDS ?= 5
GRID  ?=
tune: setup ## k-fold validation of notebook 06's switches, cached (FOLDS=, GRID=)
	$(BIN)/python -m twotower_utils tune --folds $(FOLDS) $(if $(GRID),--grid $(GRID)) --output-dir $(OUTPUT_DIR)/tuning

# Export a SavedModel for TF Serving (default: notebook 06's best two-tower, trained once into $(OUTPUT_DIR)/serving;
# INDEX=scann for a ScaNN index, FROM=results to export the model the notebooks saved instead).
INDEX ?= exact
FROM ?=
EXPORT_DIR ?= $(OUTPUT_DIR)/export/twotower$(if $(filter scann,$(INDEX)),_scann)
export: setup ## export the best two-tower as a SavedModel for TF Serving (INDEX=exact|scann, FROM=)
	$(BIN)/python -m twotower_utils export --output-dir $(OUTPUT_DIR) --export-dir $(EXPORT_DIR) --index $(INDEX) \
		$(if $(FROM),--from $(FROM))

# Recommendations from the export: `make recommend USER=42 K=10` (USER only from the command line, not your login).
K ?= 10
RECOMMEND_USER = $(if $(filter command line,$(origin USER)),$(USER),42)
recommend: setup ## top-K movies for a user from the export (USER=42 K=10)
	$(BIN)/python -m twotower_utils recommend --model $(EXPORT_DIR) --user $(RECOMMEND_USER) --k $(K)

# Serving benchmark: the export's latency, exact vs ScaNN on synthetic catalogues of CATALOGUES candidates, then
# 1,000,000 ids through the command line (`python benchmarks/bench_serving.py --streaming-only` runs that row alone).
CATALOGUES ?= 1000000 10000000
bench-serving: setup ## serving latency, exact vs ScaNN on synthetic catalogues (CATALOGUES=), 1M ids through the CLI
	test -e $(EXPORT_DIR) || $(MAKE) export EXPORT_DIR=$(EXPORT_DIR)
	$(BIN)/python benchmarks/bench_serving.py --model $(EXPORT_DIR) --catalogues $(CATALOGUES) \
		--streaming-ids 1000000 --output $(OUTPUT_DIR)/bench/serving.json

# Notebook 07's validation choices: the rating head (rating-only RMSE), then the joint task weights; cached per fold.
MT_FOLDS ?= 3
multitask-tune: setup ## notebook 07's validation choices (MT_FOLDS=)
	$(BIN)/python -m twotower_utils multitask --folds $(MT_FOLDS) --output-dir $(OUTPUT_DIR)/multitask

# Notebook 08's validation choices: rating baselines and models, then the two stages' N and blend weight; cached per fold.
RK_FOLDS ?= 3
ranking-tune: setup ## notebook 08's validation choices (RK_FOLDS=)
	$(BIN)/python -m twotower_utils ranking --folds $(RK_FOLDS) --output-dir $(OUTPUT_DIR)/ranking

# Notebook 09's validation choices: sequence towers (validation HR@10 per epoch), then L; the baselines' a, tau, lambda.
SEQ_EPOCHS ?= 5
sequence-tune: setup ## notebook 09's validation choices (SEQ_EPOCHS=)
	$(BIN)/python -m twotower_utils sequence --epochs $(SEQ_EPOCHS) --output-dir $(OUTPUT_DIR)/sequence

RATING_STUDY = --refit --tf-models multitask
rating-study: setup ## stronger rating models (Bayesian MF, I-AutoRec, GLocal-K, a blend) on u1 and the seed split, 3 seeds
	$(BIN)/python benchmarks/study_rating_models.py --splits u1 $(RATING_STUDY) --output $(OUTPUT_DIR)/studies/rating_models_u1.json
	$(BIN)/python benchmarks/study_rating_models.py --splits random $(RATING_STUDY) \
		--output $(OUTPUT_DIR)/studies/rating_models_random.json

reranker-study: setup ## stage one re-ranked with every signal: linear vs LightGBM lambdarank, 3 seeds, two random splits
	$(BIN)/python benchmarks/study_reranker.py --folds 3 --output $(OUTPUT_DIR)/ranking/study_reranker.json

SEQUENCE_STUDY = --protocols leave_one_out leave_latest --patience 5 --batch-size 64 --learning-rate 0.002 --targets-ahead 5
sequence-study: setup ## SASRec and GRU towers trained on every position, early-stopped, blended with recency-weighted EASE
	$(BIN)/python benchmarks/study_sequence.py $(SEQUENCE_STUDY) --kinds sasrec --grid "L=200,blocks=2,dropout=0.2,dim=64" \
		--unseen --output $(OUTPUT_DIR)/sequence/study_sequence_sasrec.json
	$(BIN)/python benchmarks/study_sequence.py $(SEQUENCE_STUDY) --kinds gru --gru-grid "L=200,dropout=0.2,dim=64" \
		--output $(OUTPUT_DIR)/sequence/study_sequence_gru.json

headline: setup ## the README's headline table (four models, 3 model seeds) into results/headline.json; make docs shows it
	$(BIN)/python -m twotower_utils headline --output-dir $(OUTPUT_DIR)

docs: setup ## the results page docs/results.md, from what the runs recorded in results/ (metrics.json, bench, studies)
	$(BIN)/python -m twotower_utils.notebook.docs --results $(OUTPUT_DIR) --output docs/results.md

# The book: the executed notebooks of EXECUTED (make run-notebooks runs them there when it is missing;
# EXECUTED=results/smoke/executed: the tests' smoke run), docs/*.md and the results page, as a static site.
EXECUTED ?= $(OUTPUT_DIR)/executed
BOOK_PACKAGES = mkdocs mkdocs-material mkdocs-jupyter jupyter-server-mathjax
book: setup ## the series as a static site in build/book: notebooks in order, figures, search (EXECUTED=)
	$(BIN)/python -m pip install --quiet -c constraints.txt $(BOOK_PACKAGES)
	test -n "$$(ls $(EXECUTED)/[0-9][0-9]_*.ipynb 2>/dev/null)" || $(MAKE) run-notebooks OUTPUT_DIR=$(patsubst %/executed,%,$(EXECUTED))
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m twotower_utils.notebook.book --executed $(EXECUTED) --output build/book

clean: ## remove results/ and pytest's cache
	rm -rf $(OUTPUT_DIR) .pytest_cache
