# One-command entry points (see README). Everything installs into .venv from scratch.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The exact set of releases CI tested (pip constraints); `make lock` refreshes it. LOCK= installs the newest
# releases inside pyproject.toml's ranges instead.
LOCK ?= requirements.txt
LATEST_VENV ?= .venv-latest
# Offline data mirror, where there is one; without it (or with MLALIGN_DATA_DIR= ) the data is downloaded from the
# pinned public sources.
export MLALIGN_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data))

.PHONY: install test lint demo bench test-latest lock

install:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(if $(LOCK),-c $(LOCK)) torch==2.13.0 -e ".[test]"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# MLALIGN_LOCK tells the tests which lock was installed (empty: none, as in `make test-latest`).
test: install
	bash scripts/install_chromium.sh
	$(BIN)/ruff check .
	MLALIGN_LOCK=$(LOCK) $(BIN)/python -m pytest

demo: install
	$(BIN)/mlalign run

bench: install
	$(BIN)/python bench/run_all.py

# The newest releases inside pyproject.toml's ranges, in a fresh $(LATEST_VENV), then the tests.
test-latest:
	rm -rf $(LATEST_VENV)
	$(MAKE) test VENV=$(LATEST_VENV) LOCK=

# Refresh the lock: `make test-latest`, and only when it passes, write what it installed to $(LOCK).
lock: test-latest
	{ echo "# The exact releases CI tested, from \`make lock\` (pip freeze of $(LATEST_VENV) after \`make test-latest\`)."; \
	  echo "# pip constraints, used by \`make install\`; torch is the CPU build named without its +cpu label."; \
	  $(LATEST_VENV)/bin/python -m pip freeze --all --exclude-editable | grep -v '^pip==' | sed -E 's/^(torch==[^+]*)\+cpu$$/\1/'; \
	} > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)
	@echo "$(LOCK) written: review it with git diff, then commit it"
