"""The raw layer for the Spark engine: what ingestion loaded (and validated) into its DuckDB store, written as
Parquet that the Spark warehouse registers as tables of the same names (docs/spark.md, "The raw layer").

Ingestion keeps its validation and ``raw.rejected_rows`` (orchestration/lib/ingestion/ingest.py, DuckDB, set-based). For a
Spark warehouse each day's loaded rows are then copied out of that store as day-partitioned Parquet:

    <lake>/raw/requests/partition_day=YYYY-MM-DD/part-0.parquet
    <lake>/raw/telemetry_samples/partition_day=YYYY-MM-DD/part-0.parquet   (series x points, joined)
    <lake>/raw/clusters/, <lake>/raw/rejected_rows/, <lake>/raw/telemetry_series/, <lake>/factors/<table>/
                                                                            (small tables, whole)

and registered as external Parquet tables (raw.requests partitioned by partition_day, ...). Re-publishing a day
replaces its folder (an empty day writes an empty file, so its partition is emptied). Timestamps are written as
UTC instants; the 64-bit unsigned series key is shifted into Spark's signed bigint (one to one).
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb

from orchestration.lib import warehouse

PARTITIONED = {"raw.requests": "partition_day", "raw.telemetry_samples": "partition_day"}
WHOLE = (
    "raw.clusters", "raw.rejected_rows", "raw.telemetry_series",
    "factors.gpu_power", "factors.image_quality", "factors.grid_intensity_hourly", "factors.grid_intensity_annual", "factors.water_intensity",
    "factors.datacenter", "factors.hardware", "factors.models", "factors.model_aliases",
)  # fmt: skip

_SPARK_TYPE = {
    "VARCHAR": "string", "BIGINT": "bigint", "INTEGER": "int", "DOUBLE": "double", "FLOAT": "float",
    "DATE": "date", "BOOLEAN": "boolean", "TIMESTAMP": "timestamp", "TIMESTAMP WITH TIME ZONE": "timestamp",
    "UBIGINT": "bigint", "HUGEINT": "decimal(38,0)", "SMALLINT": "smallint", "TINYINT": "tinyint",
}  # fmt: skip


@dataclass(frozen=True)
class Column:
    name: str
    duckdb_type: str

    @property
    def spark_type(self) -> str:
        t = self.duckdb_type.upper()
        if t.startswith("DECIMAL"):
            return t.lower()
        if t.endswith("[]"):  # a list (LoRA adapters): Parquet's list, Spark's array
            return f"array<{Column(self.name, t[:-2]).spark_type}>"
        if t not in _SPARK_TYPE:
            raise ValueError(f"no Spark type for DuckDB type {t} of column {self.name}")
        return _SPARK_TYPE[t]

    def export_sql(self) -> str:
        """The column as written to Parquet (see the module docstring)."""
        q = warehouse.quote_ident(self.name)
        t = self.duckdb_type.upper()
        if t == "TIMESTAMP":
            return f"cast({q} as timestamptz) as {q}"
        if t == "UBIGINT":
            return f"cast(cast({q} as hugeint) - 9223372036854775808 as bigint) as {q}"
        return q


def columns(con: duckdb.DuckDBPyConnection, table: str) -> list[Column]:
    return [Column(r[0], r[1]) for r in con.execute(f"describe select * from {table}").fetchall()]


def table_location(lake: Path, table: str) -> Path:
    schema, name = table.split(".")
    return lake / schema / name


def _sql_text(path: Path) -> str:
    return str(path).replace("'", "''")


def _copy(con: duckdb.DuckDBPyConnection, select: str, params: dict, target: Path) -> int:
    """Write the rows of ``select`` as one Parquet file ``target`` (its folder replaced); returns the rows."""
    folder = target.parent
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    con.execute(f"copy ({select}) to '{_sql_text(target)}' (format parquet)", params)
    (n,) = warehouse.fetch_one(con, f"select count(*) from read_parquet('{_sql_text(target)}')")
    return int(n)


def _ensure_table(engine, table: str, cols: list[Column], location: Path, partition: str | None) -> None:
    """The external Parquet table at ``location`` with these columns; recreated (data kept) when they changed."""
    schema, name = table.split(".")
    engine.execute(f"create database if not exists `{schema}`")
    wanted = [(c.name.lower(), c.spark_type) for c in cols if c.name != partition]
    if partition:
        wanted.append((partition, "date"))
    if engine.has_table(table):
        have = [
            (r[0].lower(), r[1].lower())
            for r in engine.execute(f"describe table `{schema}`.`{name}`").fetchall()
            if r[0] and not r[0].startswith("#")
        ]
        # (a partition column is listed twice: once among the columns, once in its own section)
        if list(dict.fromkeys(have)) == wanted:
            return
        engine.execute(f"drop table `{schema}`.`{name}`")  # external: the files stay
    ddl = ", ".join(f"`{n}` {t}" for n, t in wanted)
    partitioned = f"partitioned by (`{partition}`)" if partition else ""
    engine.execute(
        f"create table `{schema}`.`{name}` ({ddl}) using parquet {partitioned} location '{_sql_text(location)}'"
    )
    if partition:
        engine.execute(f"msck repair table `{schema}`.`{name}`")


def publish_day(con: duckdb.DuckDBPyConnection, engine, lake: Path, day: dt.date) -> dict[str, int]:
    """Write the day's partitions of the partitioned raw tables and every small table; returns rows per table."""
    written: dict[str, int] = {}
    for table, partition in PARTITIONED.items():
        cols = columns(con, table)
        location = table_location(lake, table)
        select = ", ".join(c.export_sql() for c in cols if c.name != partition)
        n = _copy(
            con,
            f"select {select} from {table} where {partition} = $day",
            {"day": day},
            location / f"{partition}={day.isoformat()}" / "part-0.parquet",
        )
        _ensure_table(engine, table, cols, location, partition)
        schema, name = table.split(".")
        engine.execute(f"alter table `{schema}`.`{name}` add if not exists partition (`{partition}` = date '{day}')")
        engine.execute(f"refresh table `{schema}`.`{name}`")
        written[table] = n
    written.update(publish_whole(con, engine, lake))
    return written


def publish_whole(con: duckdb.DuckDBPyConnection, engine, lake: Path) -> dict[str, int]:
    """Write the small raw and factor tables whole (they change with clusters.yml and the factor files)."""
    written = {}
    for table in WHOLE:
        if not warehouse.has_table(con, table):
            continue
        cols = columns(con, table)
        location = table_location(lake, table)
        select = ", ".join(c.export_sql() for c in cols)
        written[table] = _copy(con, f"select {select} from {table}", {}, location / "part-0.parquet")
        _ensure_table(engine, table, cols, location, None)
        schema, name = table.split(".")
        engine.execute(f"refresh table `{schema}`.`{name}`")
    return written
