# Set-up and everyday commands. `make test` and `make quickstart` work on a fresh clone.
# GPU users: make install TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install test test-slow quickstart bench data-small clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q --timeout=600

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow --timeout=3600

quickstart: $(STAMP)
	$(BIN)/closure data generate configs/small.toml

bench: $(STAMP)
	$(BIN)/python benchmarks/solver.py

clean:
	rm -rf $(VENV) .pytest_cache
