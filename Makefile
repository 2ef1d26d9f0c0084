# One command for the main job (`make lab`, or `make demo` in a terminal), one for the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test test-core test-slow test-notebooks lint demo lab bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test-core: $(STAMP)
	$(BIN)/python -m pytest -q

# Tests marked slow (the binder build), left out of plain `pytest`.
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

test-notebooks: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env --nbval-cell-timeout 300 \
		--nbval-sanitize-with notebooks/sanitize.cfg notebooks/

test: lint test-core test-slow test-notebooks

demo: $(STAMP)
	$(BIN)/d365sync demo

# JupyterLab refuses to start as root without --allow-root (CI and these machines run as root).
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root)
lab: $(STAMP)
	cd notebooks && ../$(BIN)/jupyter lab $(LAB_ARGS) 01-quickstart.ipynb

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_sync.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
