"""The Spark engine: a Spark Connect session (SPARK_REMOTE: the run's local server, or a production endpoint such
as Databricks' Spark Connect) with the Engine interface (orchestration.lib.engines)."""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from collections.abc import Mapping
from typing import Self

import pandas as pd

from orchestration.lib.engines.spark_server import REMOTE_ENV, SESSION_CONF

_SESSIONS: dict[str, object] = {}

# DuckDB type names (what the Python steps declare their small tables with) -> Spark SQL types
SPARK_TYPES = {
    "varchar": "string", "text": "string", "string": "string", "double": "double", "float": "float",
    "bigint": "bigint", "integer": "int", "int": "int", "boolean": "boolean", "date": "date",
    "timestamp": "timestamp", "ubigint": "decimal(20,0)", "hugeint": "decimal(38,0)",
}  # fmt: skip


class EngineError(RuntimeError):
    """The engine is not reachable or not configured."""


def spark_type(duckdb_type: str) -> str:
    t = duckdb_type.strip().lower()
    return SPARK_TYPES.get(t, t)


def session(remote: str | None = None):
    """The process's Spark Connect session to ``remote`` (default $SPARK_REMOTE), created once and reused."""
    remote = remote or os.environ.get(REMOTE_ENV)
    if not remote:
        raise EngineError(
            f"the Spark engine needs a Spark Connect server: set {REMOTE_ENV} (sc://host:port), or let `impact run "
            "--engine spark` / `impact sql --engine spark` start a local one (docs/spark.md)"
        )
    if remote not in _SESSIONS:
        from pyspark.sql import SparkSession

        spark = SparkSession.builder.remote(remote).getOrCreate()
        for key, value in SESSION_CONF.items():
            try:
                spark.conf.set(key, value)
            except Exception:  # noqa: BLE001, S110 - a static conf of a production cluster is what it is
                pass
        _SESSIONS[remote] = spark
    return _SESSIONS[remote]


def close_sessions() -> None:
    """Close this process's Spark Connect sessions (before their server stops)."""
    for spark in list(_SESSIONS.values()):
        try:
            spark.stop()
        except Exception:  # noqa: BLE001, S110 - the server may be gone already
            pass
    _SESSIONS.clear()


_PARAM = re.compile(r"\$(\w+)")
# a string literal, or a $name outside one
_LITERAL_OR_PARAM = re.compile(r"'(?:[^']|'')*'|\$(\w+)")


def spark_sql_params(sql: str, params: Mapping[str, object] | list | tuple | None) -> tuple[str, object]:
    """DuckDB's $name parameters as Spark's :name (positional ? are the same in both)."""
    if params is None:
        return sql, None
    if isinstance(params, Mapping):
        used = set(_PARAM.findall(_LITERAL_OR_PARAM.sub(lambda m: m.group(0) if m.group(1) else "", sql)))
        text = _LITERAL_OR_PARAM.sub(lambda m: ":" + m.group(1) if m.group(1) else m.group(0), sql)
        return text, {k: _value(v) for k, v in params.items() if k in used}
    return sql, [_value(v) for v in params]


def _value(v: object) -> object:
    # Spark Connect sends Python dates and datetimes as typed literals; lists become arrays
    if isinstance(v, (list, tuple)):
        return [_value(x) for x in v]
    if isinstance(v, pd.Timestamp):
        return v.to_pydatetime()
    return v


class SparkResult:
    """The rows of a Spark query, read like a DuckDB result: fetchall(), fetchone(), df()."""

    def __init__(self, frame):
        self.frame = frame
        self._rows: list[tuple] | None = None

    def fetchall(self) -> list[tuple]:
        if self._rows is None:
            self._rows = [tuple(r) for r in self.frame.collect()]
        return self._rows

    def fetchone(self) -> tuple | None:
        rows = self.fetchall()
        return rows[0] if rows else None

    def df(self) -> pd.DataFrame:
        return self.frame.toPandas()


class SparkEngine:
    """The Spark warehouse through Spark Connect, with the Engine interface."""

    name = "spark"

    def __init__(self, remote: str | None = None):
        self.spark = session(remote)

    def execute(self, sql: str, params: Mapping[str, object] | list | None = None) -> SparkResult:
        text, args = spark_sql_params(sql, params)
        return SparkResult(self.spark.sql(text, args=args) if args else self.spark.sql(text))

    def query(self, sql: str, params: Mapping[str, object] | list | None = None) -> pd.DataFrame:
        return self.execute(sql, params).df()

    def has_table(self, table: str) -> bool:
        schema, name = table.split(".")
        return bool(self.spark.catalog.tableExists(f"{schema}.{name}"))

    def write_table(self, table: str, df: pd.DataFrame, types: dict[str, str], mode: str = "replace") -> None:
        """Replace (or append to) ``schema.table`` with the frame's columns cast to ``types`` (DuckDB type names,
        mapped to Spark's); an empty frame still yields the (empty) table. For small tables only (fits,
        comparisons): the frame travels to the server as Arrow."""
        if mode not in ("replace", "append"):
            raise ValueError(f"mode must be replace or append, not {mode!r}")
        schema, name = table.split(".")
        self.spark.sql(f"create database if not exists `{schema}`")
        ddl = ", ".join(f"`{c}` {spark_type(t)}" for c, t in types.items())
        frame = df.reindex(columns=list(types))
        if len(frame):
            source = self.spark.createDataFrame(_arrow_safe(frame))
            casts = ", ".join(f"cast(`{c}` as {spark_type(t)}) as `{c}`" for c, t in types.items())
            source.createOrReplaceTempView("_impact_write")
            rows = self.spark.sql(f"select {casts} from _impact_write")
        else:
            rows = self.spark.createDataFrame([], ddl)
        rows.write.mode("overwrite" if mode == "replace" else "append").format("parquet").saveAsTable(
            f"`{schema}`.`{name}`"
        )

    def close(self) -> None:
        """Sessions are shared by the process (close_sessions() ends them)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _arrow_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns Arrow cannot infer (all-null objects, mixed values) as text; the casts above restore the types."""
    out = frame.copy()
    for c in out.columns:
        if out[c].dtype == object:
            values = out[c].dropna()
            if values.empty or not all(isinstance(v, (str, dt.date, dt.datetime)) for v in values):
                out[c] = out[c].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    return out
