"""DuckDB warehouse helpers: connections, schemas and the raw-layer DDL.

Every connection runs in UTC so timestamp casts never depend on the host's zone. All raw tables carry the
partition key `partition_day` so a re-materialised day replaces its rows instead of adding to them.
"""

from __future__ import annotations

import os
import tempfile
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
    # added with the telemetry fault handling (docs/telemetry-faults.md): the GPU's maximum power (overrides the
    # factor table), and how this cluster's telemetry and request logs name its nodes
    "alter table raw.clusters add column if not exists gpu_max_w double",
    "alter table raw.clusters add column if not exists node_pattern varchar",
    "alter table raw.clusters add column if not exists node_aliases varchar",
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
        modality varchar,
        width bigint,
        height bigint,
        images bigint,
        steps bigint,
        strength double,
        input_width bigint,
        input_height bigint,
        guidance boolean,
        quality varchar,
        lora varchar[],
        source_file varchar not null,
        source_row bigint not null,
        loaded_at timestamp
    )
    """,
    # added with the request-day table: the row's key within its partition (int_request_days joins on it)
    "alter table raw.requests add column if not exists request_key bigint",
    # image requests (lib/images/requests.py) replaced the placeholder columns input_pixels, output_pixels,
    # quality_steps and lora (text) that nothing filled: a warehouse created before gets the new columns
    *(f"alter table raw.requests drop column if exists {c}" for c in ("input_pixels", "output_pixels", "quality_steps")),
    *(
        f"alter table raw.requests add column if not exists {c} {t}"
        for c, t in (
            ("modality", "varchar"), ("width", "bigint"), ("height", "bigint"), ("images", "bigint"),
            ("steps", "bigint"), ("strength", "double"), ("input_width", "bigint"), ("input_height", "bigint"),
            ("guidance", "boolean"), ("quality", "varchar"),
        )
    ),
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
    # added with the telemetry fault handling: node and gpu are the normalised node name and the GPU's one name
    # (index, UUID and PCI bus id mapped together); the labels as exported, the GPU's other names, and the key of
    # the logical series (cluster, node, gpu, cpu, mode, metric after normalisation) that relabelled or duplicated
    # raw series share
    "alter table raw.telemetry_series add column if not exists node_label varchar",
    "alter table raw.telemetry_series add column if not exists gpu_label varchar",
    "alter table raw.telemetry_series add column if not exists gpu_uuid varchar",
    "alter table raw.telemetry_series add column if not exists pci_bus_id varchar",
    "alter table raw.telemetry_series add column if not exists logical_key ubigint",
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
           p.source_file, p.source_row, p.loaded_at, p.series_key, s.logical_key, s.node_label, s.gpu_label
    from raw.telemetry_points as p
    inner join raw.telemetry_series as s on p.series_key = s.series_key
"""


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    """The raw schema's tables and the raw.telemetry_samples view (idempotent)."""
    for ddl in RAW_DDL:
        con.execute(ddl)
    _ensure_lora_list(con)
    _ensure_telemetry_view(con)


def _ensure_lora_list(con: duckdb.DuckDBPyConnection) -> None:
    """raw.requests.lora as a list of adapter names: the placeholder text column of earlier versions (never
    filled) is replaced."""
    row = fetch_one(
        con,
        "select data_type from information_schema.columns "
        "where table_schema = 'raw' and table_name = 'requests' and column_name = 'lora'",
    )
    if row is not None and row[0] == "VARCHAR":
        con.execute("alter table raw.requests drop column lora")
        row = None
    if row is None:
        con.execute("alter table raw.requests add column lora varchar[]")


def _ensure_telemetry_view(con: duckdb.DuckDBPyConnection) -> None:
    """raw.telemetry_samples as the view over series and points; a warehouse from before the split (a table of that
    name, one row per sample with its labels) is migrated in place."""
    (kind,) = fetch_one(
        con,
        "select coalesce(max(table_type), '') from information_schema.tables "
        "where table_schema = 'raw' and table_name = 'telemetry_samples'"
    )
    if kind == "VIEW":
        (current,) = fetch_one(
            con,
            "select count(*) from information_schema.columns "
            "where table_schema = 'raw' and table_name = 'telemetry_samples' and column_name = 'logical_key'"
        )
        if not current:  # a view of an earlier version: the new series columns added
            con.execute(TELEMETRY_SAMPLES_VIEW)
        return
    if kind == "BASE TABLE":
        con.execute("begin transaction")
        con.execute(
            """
            insert into raw.telemetry_series (series_key, cluster, node, gpu, cpu, mode, metric, quantity)
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
TEMP_DIRECTORY_ENV = "IMPACT_DUCKDB_TEMP_DIRECTORY"
MEMORY_SHARE = 0.4  # of the machine's physical memory, by default
MEMORY_LIMIT_MIN_GB, MEMORY_LIMIT_MAX_GB = 1, 6


def physical_memory_bytes() -> int | None:
    """The machine's physical memory (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def default_memory_limit(physical: int | None = None) -> str:
    """40 % of the machine's physical memory, between 1 GB and 6 GB (6 GB keeps a 50 M-request day within 8 GB of
    peak RSS: DuckDB's limit covers its buffers, not Python's or dbt's own memory)."""
    physical = physical_memory_bytes() if physical is None else physical
    if not physical:
        return f"{MEMORY_LIMIT_MAX_GB}GB"
    gb = min(max(MEMORY_SHARE * physical / 1e9, MEMORY_LIMIT_MIN_GB), MEMORY_LIMIT_MAX_GB)
    return f"{gb:.1f}GB"


def memory_limit() -> str:
    """DuckDB's memory limit for the pipeline: IMPACT_DUCKDB_MEMORY_LIMIT, else default_memory_limit(). Above it
    DuckDB spills to its temp directory instead of growing. dbt's profile reads the same variable (the settings
    resource sets it to this value for the dbt subprocess)."""
    return os.environ.get(MEMORY_LIMIT_ENV) or default_memory_limit()


def temp_directory(path: str | Path) -> str | None:
    """Where DuckDB spills what exceeds the memory limit: IMPACT_DUCKDB_TEMP_DIRECTORY, else `<warehouse>.tmp` beside
    the warehouse file (DuckDB's own default); None for an in-memory database without the variable."""
    override = os.environ.get(TEMP_DIRECTORY_ENV)
    if override:
        return str(Path(override).expanduser())
    if str(path) == ":memory:":
        return None
    return str(path) + ".tmp"


class TempDirectoryError(Exception):
    """DuckDB's temp directory cannot be created or written."""


def check_temp_directory(path: str | Path) -> Path:
    """Create the warehouse's temp directory if needed and check that a file can be written in it, so that a run
    fails at its start with the cause, not when DuckDB first needs to spill hours later."""
    folder = Path(temp_directory(path) or tempfile_dir())
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
        if created:
            folder.rmdir()  # DuckDB creates it when it first spills
    except OSError as exc:
        raise TempDirectoryError(
            f"DuckDB's temp directory {folder} is not writable ({exc.strerror or exc}): set "
            f"{TEMP_DIRECTORY_ENV} to a folder with free space that this user can write"
        ) from None
    return folder


def tempfile_dir() -> str:
    return tempfile.gettempdir()


def connect(path: str | Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the warehouse (creating its folder) with the session pinned to UTC and the memory limit and temp
    directory applied."""
    path = Path(path)
    if not read_only and str(path) != ":memory:":
        path.parent.mkdir(parents=True, exist_ok=True)
    config = {"memory_limit": memory_limit()}
    spill = temp_directory(path)
    if spill:
        config["temp_directory"] = spill
    con = duckdb.connect(str(path), read_only=read_only, config=config)
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
