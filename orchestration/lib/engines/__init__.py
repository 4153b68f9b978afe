"""Engines the warehouse runs on: DuckDB (embedded, the default) and Apache Spark (docs/spark.md).

The dbt models run on either (dbt-duckdb or dbt-spark, with the engine-specific SQL in dbt_project/macros/engines).
The Python steps (asset checks, fits, comparisons, predictions, the run summary) read samples and aggregates
through an :class:`Engine`, never whole per-request tables:

    engine.query(sql, params) -> pandas.DataFrame
    engine.execute(sql, params).fetchall() / .df()     (the subset of DuckDB's connection API the steps use)
    engine.write_table(table, df, types, mode)         (replace or append a small table)

SQL given to an engine uses DuckDB's named parameters (``$day``); the Spark engine passes them as Spark's
(``:day``). Where the two dialects differ, callers pick the text with :func:`dialect` (the same rule as the dbt
macros: one expression per engine, side by side).

Pure library code (no Dagster).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

ENGINE_ENV = "IMPACT_ENGINE"
ENGINES = ("duckdb", "spark")
DEFAULT_ENGINE = "duckdb"


def engine_name(value: str | None = None) -> str:
    """The engine to use: ``value``, else $IMPACT_ENGINE, else duckdb; anything else is refused."""
    name = (value or os.environ.get(ENGINE_ENV) or DEFAULT_ENGINE).strip().lower()
    if name not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {name!r} (--engine or ${ENGINE_ENV})")
    return name


def dialect(con, duckdb: str, spark: str) -> str:
    """The SQL text for the engine behind ``con`` (a DuckDB connection or an Engine)."""
    return spark if getattr(con, "name", None) == "spark" else duckdb


def is_spark(con) -> bool:
    return getattr(con, "name", None) == "spark"


def bind(sql: str, params: Mapping[str, object] | None) -> dict[str, object]:
    """The named parameters of ``params`` that ``sql`` uses (DuckDB and Spark both refuse unused ones)."""
    import re

    if not params:
        return {}
    used = set(re.findall(r"\$(\w+)", sql))
    return {k: v for k, v in params.items() if k in used}


def open_engine(name: str, duckdb_path, read_only: bool = True):
    """An Engine on the warehouse: Spark through SPARK_REMOTE, or the DuckDB file at ``duckdb_path``."""
    if engine_name(name) == "spark":
        from orchestration.lib.engines.spark_engine import SparkEngine

        return SparkEngine()
    from orchestration.lib.engines.duckdb_engine import DuckDBEngine

    return DuckDBEngine(duckdb_path, read_only=read_only)


def has_table(con, table: str) -> bool:
    """Whether ``schema.table`` exists, on a DuckDB connection or an Engine."""
    if hasattr(con, "has_table"):
        return con.has_table(table)
    from orchestration.lib.warehouse import has_table as duckdb_has_table

    return duckdb_has_table(con, table)
