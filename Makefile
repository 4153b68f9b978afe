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

.PHONY: demo test ui setup manifest lint benchmark clean

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

ui: $(MANIFEST)
	@mkdir -p $(DAGSTER_HOME)
	DAGSTER_HOME=$(DAGSTER_HOME) IMPACT_DATA_DIR=$(abspath $(DATA_DIR)) IMPACT_WAREHOUSE=$(abspath $(WAREHOUSE)) \
		$(BIN)/dagster dev -m orchestration.definitions -h 127.0.0.1 -p 3000

lint: $(STAMP)
	$(BIN)/ruff check orchestration tests benchmarks
	cd dbt_project && IMPACT_PARTITION_DAY=2024-01-01 IMPACT_WAREHOUSE=$(CURDIR)/.tmp-lint.duckdb \
		../$(BIN)/sqlfluff lint models --processes 2

benchmark: $(MANIFEST)
	$(BIN)/python benchmarks/run_benchmark.py

clean:
	rm -rf $(VENV) dbt_project/target dbt_project/logs .pytest_cache
