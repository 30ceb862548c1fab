# flaxbert — every target sets up what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export FLAXBERT_ASSETS ?= $(HOME)/.cache/flaxbert/assets

.PHONY: install assets test test-fast demo bench lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

assets: install
	$(VENV)/bin/distill assets

# Two workers: most tests are bound by single-threaded compilation and Python, not by XLA's
# thread pool, so both cores stay busy; a worker that runs out steals queued tests from the other.
# Expensive shared runs are built once (helpers.build_once).
test: install assets
	$(PY) -m pytest -q -n 2 --dist worksteal --durations=25 tests

test-fast: install assets
	$(PY) -m pytest -q -m "not slow" tests

demo: install assets
	$(VENV)/bin/distill recipe --config recipe.py:demo --workdir runs/demo

bench: install assets
	$(PY) benchmarks/run.py --out docs/benchmarks.md

lint: install
	$(PY) -m pip install -q ruff==0.17.6 && $(VENV)/bin/ruff check flaxbert distill tests experiments benchmarks tools

clean:
	rm -rf $(VENV) build dist *.egg-info
