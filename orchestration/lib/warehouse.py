"""DuckDB warehouse helpers: connections, schemas and the raw-layer DDL.

Every connection runs in UTC so timestamp casts never depend on the host's zone. All raw tables carry the
partition key `partition_day` so a re-materialised day replaces its rows instead of adding to them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

RAW_DDL: tuple[str, ...] = (
    "create schema if not exists raw",
    """
    create table if not exists raw.clusters (
        cluster varchar primary key,
        region varchar,
        gpu_model varchar,
        gpus_per_node integer,
        gpu_idle_w double,
        host_idle_w double,
        host_max_w double,
        pue double,
        wue_onsite_l_per_kwh double,
        gpu_embodied_kg_co2e double,
        server_embodied_kg_co2e double,
        lifetime_years double,
        water_embodied_l double,
        attribution_level varchar,
        source_file varchar,
        loaded_at timestamp
    )
    """,
    # added with the impact factors: a warehouse created before keeps working
    "alter table raw.clusters add column if not exists provider varchar",
    """
    create table if not exists raw.requests (
        partition_day date not null,
        request_id varchar not null,
        cluster varchar not null,
        model varchar not null,
        start_time timestamp not null,
        duration_s double not null,
        input_tokens bigint,
        output_tokens bigint,
        tenant varchar,
        endpoint varchar,
        node varchar,
        gpu varchar,
        input_pixels bigint,
        output_pixels bigint,
        quality_steps bigint,
        lora varchar,
        source_file varchar not null,
        source_row bigint not null,
        loaded_at timestamp
    )
    """,
    # added with the request-day table: the row's key within its partition (int_request_days joins on it)
    "alter table raw.requests add column if not exists request_key bigint",
    # Telemetry in two tables: each series once (its labels, 64-bit key = hash of the labels), and its samples.
    # raw.telemetry_samples is the view that joins them (the columns of one long-format input row).
    """
    create table if not exists raw.telemetry_series (
        series_key ubigint primary key,
        cluster varchar not null,
        node varchar not null,
        gpu varchar,
        cpu varchar,
        mode varchar,
        metric varchar not null,
        quantity varchar not null
    )
    """,
    """
    create table if not exists raw.telemetry_points (
        partition_day date not null,
        series_key ubigint not null,
        sample_time timestamp not null,
        value double not null,
        source_file varchar not null,
        source_row bigint not null,
        loaded_at timestamp
    )
    """,
    """
    create table if not exists raw.rejected_rows (
        partition_day date,
        input varchar not null,
        source_file varchar not null,
        source_row bigint,
        reason varchar not null,
        raw_record varchar,
        rejected_at timestamp
    )
    """,
)


TELEMETRY_SAMPLES_VIEW = """
    create or replace view raw.telemetry_samples as
    select p.partition_day, s.cluster, s.node, s.gpu, s.cpu, s.mode, s.metric, s.quantity, p.sample_time, p.value,
           p.source_file, p.source_row, p.loaded_at, p.series_key
    from raw.telemetry_points as p
    inner join raw.telemetry_series as s on p.series_key = s.series_key
"""


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    """The raw schema's tables and the raw.telemetry_samples view (idempotent)."""
    for ddl in RAW_DDL:
        con.execute(ddl)
    _ensure_telemetry_view(con)


def _ensure_telemetry_view(con: duckdb.DuckDBPyConnection) -> None:
    """raw.telemetry_samples as the view over series and points; a warehouse from before the split (a table of that
    name, one row per sample with its labels) is migrated in place."""
    (kind,) = fetch_one(
        con,
        "select coalesce(max(table_type), '') from information_schema.tables "
        "where table_schema = 'raw' and table_name = 'telemetry_samples'"
    )
    if kind == "VIEW":
        return
    if kind == "BASE TABLE":
        con.execute("begin transaction")
        con.execute(
            """
            insert into raw.telemetry_series
            select distinct hash(cluster, node, gpu, cpu, mode, metric), cluster, node, gpu, cpu, mode, metric, quantity
            from raw.telemetry_samples
            where hash(cluster, node, gpu, cpu, mode, metric) not in (select series_key from raw.telemetry_series)
            """
        )
        con.execute(
            """
            insert into raw.telemetry_points
            select partition_day, hash(cluster, node, gpu, cpu, mode, metric), sample_time, value, source_file,
                   source_row, loaded_at
            from raw.telemetry_samples
            """
        )
        con.execute("drop table raw.telemetry_samples")
        con.execute(TELEMETRY_SAMPLES_VIEW)
        con.execute("commit")
        return
    con.execute(TELEMETRY_SAMPLES_VIEW)


MEMORY_LIMIT_ENV = "IMPACT_DUCKDB_MEMORY_LIMIT"
DEFAULT_MEMORY_LIMIT = "6GB"


def memory_limit() -> str:
    """DuckDB's memory limit for the pipeline (IMPACT_DUCKDB_MEMORY_LIMIT, default 6GB; dbt's profile reads the
    same variable). Above it DuckDB spills to disk instead of growing."""
    return os.environ.get(MEMORY_LIMIT_ENV) or DEFAULT_MEMORY_LIMIT


def connect(path: str | Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the warehouse (creating its folder) with the session pinned to UTC and the memory limit applied."""
    path = Path(path)
    if not read_only and str(path) != ":memory:":
        path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path), read_only=read_only, config={"memory_limit": memory_limit()})
    con.execute("set TimeZone = 'UTC'")
    return con


@contextmanager
def warehouse(path: str | Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A writable connection with the raw schema present; closed on exit."""
    con = connect(path)
    try:
        ensure_raw_schema(con)
        yield con
    finally:
        con.close()


def fetch_one(con: duckdb.DuckDBPyConnection, sql: str, params: object = None) -> tuple | None:
    """The first row of `sql` (None when it returns none), with the result read to its end. DuckDB 2 streams
    results: a result read with fetchone() stays open and keeps the connection from the relational API."""
    rows = con.execute(sql, params).fetchall()
    return rows[0] if rows else None


def has_table(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Whether ``schema.table`` exists (a table or a view)."""
    schema, name = table.split(".")
    (n,) = fetch_one(
        con,
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [schema, name],
    )
    return n > 0


def quote_ident(name: str) -> str:
    """Quote an SQL identifier (DuckDB/ANSI double quotes)."""
    return '"' + name.replace('"', '""') + '"'


def replace_table(con: duckdb.DuckDBPyConnection, table: str, types: dict[str, str], df) -> None:
    """Replace ``schema.table`` with the pandas frame's columns cast to ``types`` (column -> DuckDB type), in that
    order; an empty frame still yields the (empty) table. Identifiers are quoted; the frame is read by DuckDB's
    replacement scan, not row by row."""
    if hasattr(con, "write_table"):  # an Engine (orchestration.lib.engines): Spark's writes its own way
        con.write_table(table, df, types)
        return
    schema, name = table.split(".")
    target = f"{quote_ident(schema)}.{quote_ident(name)}"
    con.execute(f"create schema if not exists {quote_ident(schema)}")
    ddl = ", ".join(f"{quote_ident(c)} {t}" for c, t in types.items())
    con.execute(f"create or replace table {target} ({ddl})")
    if len(df):
        frame = df.reindex(columns=list(types))  # noqa: F841 - read by DuckDB's replacement scan below
        casts = ", ".join(f"cast({quote_ident(c)} as {t})" for c, t in types.items())
        con.execute(f"insert into {target} select {casts} from frame")
