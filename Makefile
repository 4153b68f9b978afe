# inference-impact: `make demo` sets up from nothing and materialises the sample data; `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MANIFEST := dbt_project/target/manifest.json
WAREHOUSE ?= data/warehouse.duckdb
DATA_DIR ?= data/sample/inputs
# run history for the demo and the UI (tests use ephemeral Dagster instances)
DAGSTER_HOME ?= $(CURDIR)/dagster_home

.PHONY: demo test ui docs docs-serve setup manifest lint benchmark clean

$(STAMP): pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

$(MANIFEST): $(STAMP) $(shell find dbt_project/models dbt_project/macros -type f 2>/dev/null) dbt_project/dbt_project.yml
	$(BIN)/python -c "from orchestration.dbt_manifest import prepare_manifest; prepare_manifest()"
	touch $(MANIFEST)

manifest: $(MANIFEST)

demo: $(MANIFEST)
	DAGSTER_HOME=$(DAGSTER_HOME) $(BIN)/impact run --data-dir $(DATA_DIR) --warehouse $(WAREHOUSE)
	@if [ -f $(DATA_DIR)/advice.yml ]; then echo; $(BIN)/impact advise --warehouse $(WAREHOUSE); fi

test: $(MANIFEST)
	$(BIN)/python -m pytest -n 2 --dist loadgroup

# The UI on 127.0.0.1 only. `dagster dev` is run from the repository root with no -m: it loads the code location
# that pyproject's [tool.dg.project] names (orchestration.definitions, shown as `inference_impact`). Dagster now
# points to `dg dev` (package dagster-dg-cli, 20 more dependencies) for the same thing; the one warning saying so
# is filtered. tests/test_webserver.py starts the UI with this recipe and checks it prints no warning.
UI_PORT ?= 3000
ui: $(MANIFEST)
	@mkdir -p $(DAGSTER_HOME)
	DAGSTER_HOME=$(DAGSTER_HOME) IMPACT_DATA_DIR=$(abspath $(DATA_DIR)) IMPACT_WAREHOUSE=$(abspath $(WAREHOUSE)) \
		$(BIN)/python -W 'ignore:Function `dev_command` is superseded' -m dagster dev -h 127.0.0.1 -p $(UI_PORT)

# dbt's catalogue of the warehouse for analysts: every table and column with its description and type, sources,
# exposures and lineage (`dbt docs generate` against $(WAREHOUSE), the demo's by default). It opens the warehouse
# file, so run it while no `impact run` writes to that file (DuckDB has one writer). static_index.html is one file
# that opens in a browser without a server; `make docs-serve` serves the same on 127.0.0.1. (The SQL is parsed, not
# compiled: the models' SQL depends on the day being built.)
DOCS_PORT ?= 8080
DOCS_DIR ?= target/docs
REFERENCE ?= docs/warehouse.md
docs: $(MANIFEST)
	@test -f $(WAREHOUSE) || { echo "$(WAREHOUSE): no warehouse; run make demo, or pass WAREHOUSE=/path/to/file"; exit 1; }
	$(BIN)/python -m orchestration.lib.warehouse_reference $(REFERENCE)
	cd dbt_project && export IMPACT_WAREHOUSE=$(abspath $(WAREHOUSE)) && \
		$(abspath $(BIN))/dbt parse --quiet --profiles-dir . --project-dir . --target-path $(DOCS_DIR) && \
		$(abspath $(BIN))/dbt docs generate --quiet --static --no-compile --profiles-dir . --project-dir . \
		--target-path $(DOCS_DIR)
	@echo "dbt docs of $(WAREHOUSE): open $(if $(filter /%,$(DOCS_DIR)),,dbt_project/)$(DOCS_DIR)/static_index.html, or run make docs-serve"

docs-serve: docs
	cd dbt_project && IMPACT_WAREHOUSE=$(abspath $(WAREHOUSE)) $(abspath $(BIN))/dbt docs serve --host 127.0.0.1 \
		--port $(DOCS_PORT) --no-browser --profiles-dir . --project-dir . --target-path $(DOCS_DIR)

lint: $(STAMP)
	$(BIN)/ruff check orchestration tests benchmarks
	cd dbt_project && IMPACT_PARTITION_DAY=2024-01-01 IMPACT_WAREHOUSE=$(CURDIR)/.tmp-lint.duckdb \
		../$(BIN)/sqlfluff lint models --processes 2

benchmark: $(MANIFEST)
	$(BIN)/python benchmarks/run_benchmark.py

clean:
	rm -rf $(VENV) dbt_project/target dbt_project/logs .pytest_cache
