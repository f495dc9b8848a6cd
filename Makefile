# Every target bootstraps .venv from pyproject.toml on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-slow bench bench-gpu clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[experiments,dev]'
	touch $(STAMP)

# The main job: a small real experiment, a printed comparison table and a plot in runs/.
run: $(STAMP)
	$(PY) -m experiments.make_run --outdir=runs/make_run

# The test suite CI runs (slow checks excluded; see test-slow).
test: $(STAMP)
	$(PY) -m pytest -n auto -q

# Long statistical and training checks skipped by `make test`.
test-slow: $(STAMP)
	$(PY) -m pytest -n auto -q -m slow

# Benchmarks: writes benchmarks/results/<device>.json; see BENCHMARKS.md.
bench: $(STAMP)
	$(PY) -m benchmarks.run_all

# Every GPU target in one command on a lent H100/H200, with the machine's own python3
# (no .venv: it cannot install there); see BENCHMARKS.md, "GPU run".
bench-gpu:
	bash benchmarks/gpu.sh

clean:
	rm -rf $(VENV) runs .pytest_cache
