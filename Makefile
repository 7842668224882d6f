# NeuroQuant — the user's front door. `make run` and `make test` are all a fresh machine needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export SDL_VIDEODRIVER ?= dummy
export SDL_AUDIODRIVER ?= dummy
export PYGAME_HIDE_SUPPORT_PROMPT := 1

# Pipeline defaults: small enough to finish in minutes on 2 cores.
TARGET ?= x86
EPISODES ?= 100
POLICY ?= mixed
SEED ?= 0
DATASET ?= data/replay_buffer.npz

.PHONY: help setup run test test-fast lint collect viz bench-env clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[edge,train,export,report,dev]"
	touch $(STAMP)

setup: $(STAMP)  ## create .venv with the pinned versions (idempotent)

run: collect  ## the whole pipeline on the default target (grows with each stage)
	@echo "dataset: $(DATASET)  plots: $(dir $(DATASET))plots/"

collect: $(STAMP)  ## collect the offline dataset and draw its plots
	$(PY) -m train.collect --episodes $(EPISODES) --policy $(POLICY) --seed $(SEED) --out $(DATASET)

viz: $(STAMP)  ## redraw the dataset plots
	$(PY) -m train.viz $(DATASET)

test: $(STAMP)  ## the whole test suite (slow end-to-end tests included)
	$(PY) -m pytest -q

test-fast: $(STAMP)  ## the test suite without the slow end-to-end tests
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)  ## ruff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench-env: $(STAMP)  ## environment speed (single and vector steps/s)
	$(PY) -m benchmarks.env_speed

clean:  ## remove generated outputs (keeps .venv)
	rm -rf data runs artifacts results reports/out
