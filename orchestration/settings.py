"""Where things live, resolved once: repository paths and the environment variables users set.

Paths come from the environment (IMPACT_DATA_DIR, IMPACT_WAREHOUSE); defaults point at the bundled sample data and
`data/warehouse.duckdb` in the repository so `make demo` and `make ui` work with nothing set.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
DEFAULT_DATA_DIR = REPO_ROOT / "data" / "sample" / "inputs"
DEFAULT_WAREHOUSE = REPO_ROOT / "data" / "warehouse.duckdb"
# the Spark engine's warehouse directory (docs/spark.md)
DEFAULT_SPARK_WAREHOUSE = REPO_ROOT / "data" / "spark-warehouse"
# factor tables shipped with the product (grid intensity, water, PUE/WUE, embodied, training), used where the data
# directory's factors/ gives none: see data/factors/NOTICE.md for their sources and licences
SHIPPED_FACTORS_DIR = REPO_ROOT / "data" / "factors"

DATA_DIR_ENV = "IMPACT_DATA_DIR"
WAREHOUSE_ENV = "IMPACT_WAREHOUSE"
PARTITIONS_START_ENV = "IMPACT_PARTITIONS_START"
SCHEDULE_LAG_HOURS_ENV = "IMPACT_SCHEDULE_LAG_HOURS"
# the engine the models run on (duckdb, the default, or spark: docs/spark.md) and, for spark, the warehouse
# directory (metastore, tables, the raw layer's Parquet and ingestion's DuckDB store under it)
ENGINE_ENV = "IMPACT_ENGINE"
SPARK_WAREHOUSE_ENV = "IMPACT_SPARK_WAREHOUSE"
# a production dbt profile for the Spark engine (docs/spark.md): its folder and target
DBT_PROFILES_DIR_ENV = "IMPACT_DBT_PROFILES_DIR"
DBT_TARGET_ENV = "IMPACT_DBT_TARGET"

DEFAULT_PARTITIONS_START = "2023-01-01"
DEFAULT_SCHEDULE_LAG_HOURS = 2


def warehouse_path() -> Path:
    return Path(os.environ.get(WAREHOUSE_ENV) or DEFAULT_WAREHOUSE).resolve()
