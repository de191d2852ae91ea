# Two entry points for a fresh machine with Python >= 3.10:
#   make demo   installs everything into .venv and runs the GTPT demo (shipped weights)
#   make test   installs everything into .venv and runs ruff and the test suite
# Both are idempotent: the install step reruns only when pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# torch is installed first and pinned: an unpinned torch requirement reaching pip
# first would pull the newest CUDA build (several GB).
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test lint install clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m tokenprune_models.gtpt.demo

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
