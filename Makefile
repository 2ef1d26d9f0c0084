# One command for the main job (`make lab`, or `make demo` in a terminal), one for the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv cards test test-core test-slow test-notebooks lint demo lab bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Microsoft's adaptivecards SDK (npm), with which tests/test_adaptive_card.py validates the
# Teams card; without npm that test is skipped (it says so).
CARDS := tests/adaptivecards
CARDS_STAMP := $(CARDS)/node_modules/.installed
$(CARDS_STAMP): $(CARDS)/package.json $(CARDS)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix $(CARDS) --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: the Adaptive Card check (tests/test_adaptive_card.py) will be skipped"; fi

cards: $(CARDS_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test-core: $(STAMP) $(CARDS_STAMP)
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
	$(BIN)/python benchmarks/bench_kernel.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info $(CARDS)/node_modules
