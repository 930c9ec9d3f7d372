# Set-up and everyday commands. `make test` and `make quickstart` work on a fresh clone.
# GPU users: make install TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install test quickstart study-small bench bench-all data-small clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q --timeout=600

# A fresh timestamped folder each time: a run directory is never overwritten.
quickstart: $(STAMP)
	$(BIN)/closure quickstart --members 128 --out runs/quickstart-$$(date +%Y%m%d-%H%M%S)

# The README's results table (a-posteriori comparison of every closure, small preset).
study-small: $(STAMP)
	$(BIN)/closure study configs/small.toml --data checkpoints/small/reference.h5 --members 32 --duration 2 --out runs/study-small-$$(date +%Y%m%d-%H%M%S)

# Regenerate the small DNS dataset (data/small.h5) the shipped models were trained on.
data-small: $(STAMP)
	$(BIN)/closure data generate configs/small.toml

# Performance targets: benchmarks/results.json and results.md.
bench: $(STAMP)
	$(BIN)/python benchmarks/targets.py

# The component benchmarks behind the README's tables.
bench-all: bench
	$(BIN)/python benchmarks/solver.py
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/sampling.py --paper-grid --extra checkpoints/small/subpixel/flow.safetensors \
		--extra checkpoints/small/light/joint-lcdm.safetensors --extra checkpoints/small/light/flow.safetensors
	$(BIN)/python benchmarks/ensemble.py --scale
	$(BIN)/python benchmarks/closure_shells.py
	$(BIN)/python benchmarks/energy_input.py

clean:
	rm -rf $(VENV) .pytest_cache
