# twotower: `make setup` once, then `make run-notebooks`; `make test` runs the tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN     = $(VENV)/bin
KERNEL ?= twotower
OUTPUT_DIR ?= results

# Notebook parameters, e.g. `make run-notebooks EMBEDDING_DIM=64 EPOCHS=3`
EMBEDDING_DIM ?=
EPOCHS ?=
LEARNING_RATE ?=
BATCH_SIZE ?=
SEED ?=
PARAMS = $(if $(EMBEDDING_DIM),-p embedding_dim=$(EMBEDDING_DIM)) $(if $(EPOCHS),-p epochs=$(EPOCHS)) \
         $(if $(LEARNING_RATE),-p learning_rate=$(LEARNING_RATE)) $(if $(BATCH_SIZE),-p batch_size=$(BATCH_SIZE)) \
         $(if $(SEED),-p seed=$(SEED))

export TF_USE_LEGACY_KERAS = 1
export TF_CPP_MIN_LOG_LEVEL = 2

.PHONY: setup all run-notebooks test lint format lab bench sweep tune export recommend bench-serving multitask-tune ranking-tune sequence-tune clean

all: setup run-notebooks

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python 3 (twotower)" \
		--env TF_USE_LEGACY_KERAS 1 --env TF_CPP_MIN_LOG_LEVEL 2
	touch $@

run-notebooks: setup
	$(BIN)/python -m twotower_utils run --output-dir $(OUTPUT_DIR) --kernel $(KERNEL) $(PARAMS)

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .

format: setup
	$(BIN)/ruff format twotower_utils tests benchmarks

bench: setup
	$(BIN)/python benchmarks/bench_training.py --output $(OUTPUT_DIR)/bench/training.json

lab: setup
	$(BIN)/jupyter lab notebooks/

# Embedding-dimension sweep (notebook 05): cached per (dim, seed, config), a rerun only trains what is missing.
DIMS  ?= 8 16 32 64 128 256
SEEDS ?=
SWEEP_DIR ?= $(OUTPUT_DIR)/sweep
sweep: setup
	$(BIN)/python -m twotower_utils sweep --dims $(DIMS) $(if $(SEEDS),--seeds $(SEEDS)) $(if $(EPOCHS),--epochs $(EPOCHS)) \
		$(if $(LEARNING_RATE),--learning-rate $(LEARNING_RATE)) $(if $(BATCH_SIZE),--batch-size $(BATCH_SIZE)) \
		--output-dir $(SWEEP_DIR)

# k-fold validation of the two-tower switches (notebook 06's choices), cached per (config, fold).
FOLDS ?= 5
GRID  ?=
tune: setup
	$(BIN)/python -m twotower_utils tune --folds $(FOLDS) $(if $(GRID),--grid $(GRID)) --output-dir $(OUTPUT_DIR)/tuning

# Export a SavedModel for TF Serving (default: notebook 06's best two-tower, trained once into $(OUTPUT_DIR)/serving;
# INDEX=scann for a ScaNN index, FROM=results to export the model the notebooks saved instead).
INDEX ?= exact
FROM ?=
EXPORT_DIR ?= $(OUTPUT_DIR)/export/twotower$(if $(filter scann,$(INDEX)),_scann)
export: setup
	$(BIN)/python -m twotower_utils export --output-dir $(OUTPUT_DIR) --export-dir $(EXPORT_DIR) --index $(INDEX) \
		$(if $(FROM),--from $(FROM))

# Recommendations from the export: `make recommend USER=42 K=10` (USER only from the command line, not your login).
K ?= 10
RECOMMEND_USER = $(if $(filter command line,$(origin USER)),$(USER),42)
recommend: setup
	$(BIN)/python -m twotower_utils recommend --model $(EXPORT_DIR) --user $(RECOMMEND_USER) --k $(K)

# Serving benchmark: the export's latency, then exact vs ScaNN on synthetic catalogues of CATALOGUES candidates.
CATALOGUES ?= 1000000 10000000
bench-serving: setup
	test -e $(EXPORT_DIR) || $(MAKE) export EXPORT_DIR=$(EXPORT_DIR)
	$(BIN)/python benchmarks/bench_serving.py --model $(EXPORT_DIR) --catalogues $(CATALOGUES) \
		--output $(OUTPUT_DIR)/bench/serving.json

# Notebook 08's validation choices: the rating head (rating-only RMSE), then the joint task weights; cached per fold.
MT_FOLDS ?= 3
multitask-tune: setup
	$(BIN)/python -m twotower_utils multitask --folds $(MT_FOLDS) --output-dir $(OUTPUT_DIR)/multitask

# Notebook 07's validation choices: rating baselines and models, then the two stages' N and blend weight; cached per fold.
RK_FOLDS ?= 3
ranking-tune: setup
	$(BIN)/python -m twotower_utils ranking --folds $(RK_FOLDS) --output-dir $(OUTPUT_DIR)/ranking

# Notebook 10's validation choices: sequence towers (validation HR@10 per epoch), then L; the baselines' a, tau, lambda.
SEQ_EPOCHS ?= 5
sequence-tune: setup
	$(BIN)/python -m twotower_utils sequence --epochs $(SEQ_EPOCHS) --output-dir $(OUTPUT_DIR)/sequence

clean:
	rm -rf $(OUTPUT_DIR) .pytest_cache
