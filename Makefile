# One-command entry points (see README). Everything installs into .venv from scratch.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Offline data mirror; unset MLALIGN_DATA_DIR to download from the pinned public sources instead.
export MLALIGN_DATA_DIR ?= $(abspath ../shared/data)

.PHONY: install test lint demo bench

install:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.13.0 -e ".[test]"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: install
	bash scripts/install_chromium.sh
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

demo: install
	$(BIN)/mlalign run

bench: install
	$(BIN)/python bench/run_all.py
