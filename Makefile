# The README's two commands: `make run` (whole pipeline, embedded defaults) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
DATA_DIR ?= ./data

.PHONY: install install-test prometheus postgres chromium dashboard run demo test lint typecheck bench chaos clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

# torch first, pinned: the CPU build; anything unpinned would pull a multi-GB CUDA build.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -e '.[test]'
	touch $@

# prometheus and promtool (Debian's package) for the alert-rule unit tests and the live
# Prometheus test; installed when missing where root and apt-get allow, otherwise those tests
# skip and say why (this never fails the build).
prometheus:
	@bash deploy/install-prometheus.sh

# The PostgreSQL server (Debian's package) for the PostgreSQL runs of the store, relay, lease and
# reconcile suites; tests start their own throwaway server. `make test` requires it.
postgres:
	@bash deploy/install-postgres.sh

# Chromium (Debian's package) for the browser test of the search page, driven headless by
# Playwright with this system browser (no browser download). `make test` requires it.
chromium:
	@bash deploy/install-chromium.sh

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test prometheus postgres chromium

# Regenerates deploy/grafana/dashboards/handwerk.json (committed; a test checks it is current).
dashboard: install-test
	$(BIN)/python scripts/build_dashboard.py

# API + relay + consumer in one process, local tansu broker, Qdrant Edge, bundled model;
# loads a few hundred demo projects through the API once it is ready.
run: install
	DATA_DIR=$(DATA_DIR) PORT=$(PORT) BIN=$(BIN) bash scripts/run-local.sh

# Loads demo projects through the REST API of a running `make run` (which does it once itself).
demo: install
	$(BIN)/handwerk demo-data --url http://127.0.0.1:$(PORT)

# HANDWERK_REQUIRE_POSTGRES=1, HANDWERK_REQUIRE_BROWSER=1: the PostgreSQL suites and the
# browser test fail instead of skipping when the server or chromium is missing, so CI can never
# pass by skipping them.
test: install-test
	HANDWERK_REQUIRE_POSTGRES=1 HANDWERK_REQUIRE_BROWSER=1 $(BIN)/pytest

lint: install-test
	$(BIN)/ruff check .

# mypy is not in the test extras yet: installed on demand.
typecheck: install-test
	bash scripts/typecheck.sh

bench: install-test
	$(BIN)/python scripts/bench.py

# Random kills of the serving process, the relay and the broker under write load, then the
# checker's verdict (see README).
chaos: install-test
	$(BIN)/python scripts/chaos.py --faults 20 --writes 5000

clean:
	rm -rf $(VENV) $(DATA_DIR)
