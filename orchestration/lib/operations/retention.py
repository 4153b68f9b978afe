"""Retention: how long each layer of the warehouse keeps its days (docs/operations.md, "Retention").

Layers and their defaults (environment variables; a number of days, or `keep`):

  raw        IMPACT_RETAIN_RAW_DAYS, 35       the loaded inputs (raw.requests, raw.telemetry_points,
                                              raw.rejected_rows, Prometheus pulls) and the per-sample and per-pool-
                                              window working tables derived from them
  requests   IMPACT_RETAIN_REQUEST_DAYS, 400  per-request and per-window rows (int_request_days, fct_window_energy)
                                              and the per-day parts of the models job's windows
  aggregates IMPACT_RETAIN_AGGREGATE_DAYS,    daily roll-ups (fct_cluster_*_daily, agg_impact_daily, the cluster-day
             keep                             factors and parameters): small, kept by default

A layer keeps the `days` most recent days up to the newest day materialised in the warehouse (or `as_of`), so a
backfill of old data is not deleted as soon as it is loaded. A day-partitioned table that is in no layer is never
touched (reported). Retired raw days are recorded (storage.retired_days): re-materialising such a day without its
input files would replace its kept results with zeros, and the daily job refuses to (refuse_retired_day).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from orchestration.lib.operations import parts
from orchestration.lib.warehouse import fetch_one, has_table, quote_ident

ENV = {
    "raw": "IMPACT_RETAIN_RAW_DAYS",
    "requests": "IMPACT_RETAIN_REQUEST_DAYS",
    "aggregates": "IMPACT_RETAIN_AGGREGATE_DAYS",
}
DEFAULT_DAYS: dict[str, int | None] = {"raw": 35, "requests": 400, "aggregates": None}
# the models job reads the trailing 28 days of per-request rows and per-day parts; a request that ran past
# midnight is completed by the next day's raw inputs
MIN_DAYS = {"raw": 2, "requests": 35, "aggregates": 35}

# table -> (layer, partition column)
LAYERS: dict[str, tuple[str, str]] = {
    "raw.requests": ("raw", "partition_day"),
    "raw.telemetry_points": ("raw", "partition_day"),
    "raw.rejected_rows": ("raw", "partition_day"),
    "intermediate.int_telemetry_intervals": ("raw", "day"),
    "intermediate.int_pool_window_energy": ("raw", "day"),
    "intermediate.int_pool_window_load": ("raw", "day"),
    "intermediate.int_cluster_day_pools": ("raw", "day"),
    "intermediate.int_request_days": ("requests", "day"),
    "marts.fct_window_energy": ("requests", "day"),
    "models.fit_sample_days": ("requests", "day"),
    "marts.cmp_ecologits_day_combos": ("requests", "day"),
    "marts.cmp_ecologits_day_bins": ("requests", "day"),
    "marts.fct_cluster_energy_daily": ("aggregates", "day"),
    "marts.fct_cluster_impact_daily": ("aggregates", "day"),
    "marts.agg_impact_daily": ("aggregates", "day"),
    "intermediate.int_cluster_day_params": ("aggregates", "day"),
    "intermediate.int_cluster_day_factors": ("aggregates", "day"),
    "intermediate.int_cluster_hour_intensity": ("aggregates", "day"),
    "intermediate.int_model_day_volumes": ("aggregates", "day"),
    "models.fit_sample_day_counts": ("aggregates", "day"),
}
# the tables whose days tell which days the warehouse holds (the reference of the layers' windows)
DAY_TABLES = ("marts.fct_cluster_energy_daily", "raw.requests", "raw.telemetry_points")
PROMETHEUS_SUFFIX = ".prometheus"  # lib/ingestion/prometheus.py keeps each day's pull there: telemetry-<day>.parquet

RETIRED_DDL = (
    "create schema if not exists storage",
    """
    create table if not exists storage.retired_days (
        layer varchar not null,
        day date not null,
        retired_at timestamp not null,
        keep_days integer not null
    )
    """,
)


@dataclass(frozen=True)
class Policy:
    """Days each layer keeps (None: kept)."""

    raw: int | None = DEFAULT_DAYS["raw"]
    requests: int | None = DEFAULT_DAYS["requests"]
    aggregates: int | None = DEFAULT_DAYS["aggregates"]

    def __post_init__(self) -> None:
        for layer, minimum in MIN_DAYS.items():
            days = getattr(self, layer)
            if days is not None and days < minimum:
                raise ValueError(
                    f"retention of the {layer} layer: {days} days is below its minimum of {minimum} "
                    f"({ENV[layer]}; the models job reads 28 days, a day's rebuild reads the day before)"
                )

    @classmethod
    def from_env(cls, **overrides: int | None) -> Policy:
        values: dict[str, int | None] = {}
        for layer, name in ENV.items():
            raw = os.environ.get(name, "").strip().lower()
            if not raw:
                values[layer] = DEFAULT_DAYS[layer]
            elif raw in ("keep", "none", "forever"):
                values[layer] = None
            else:
                try:
                    values[layer] = int(raw)
                except ValueError:
                    raise ValueError(f"{name} must be a number of days or 'keep', not {raw!r}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def days(self, layer: str) -> int | None:
        return getattr(self, layer)


@dataclass
class Deletion:
    table: str
    layer: str
    cutoff: dt.date  # rows of days before this are deleted
    days: list[dt.date] = field(default_factory=list)
    rows: int = 0


@dataclass
class Report:
    as_of: dt.date | None
    policy: Policy
    dry_run: bool
    deletions: list[Deletion] = field(default_factory=list)
    prometheus_files: list[str] = field(default_factory=list)
    not_covered: list[str] = field(default_factory=list)  # day-partitioned tables in no layer

    @property
    def rows(self) -> int:
        return sum(d.rows for d in self.deletions)

    def by_layer(self) -> dict[str, tuple[int, int]]:
        """layer -> (days, rows) deleted."""
        out: dict[str, tuple[set, int]] = {}
        for d in self.deletions:
            days, rows = out.get(d.layer, (set(), 0))
            out[d.layer] = (days | set(d.days), rows + d.rows)
        return {layer: (len(days), rows) for layer, (days, rows) in out.items()}


def newest_day(con: duckdb.DuckDBPyConnection) -> dt.date | None:
    """The newest day materialised in the warehouse."""
    days = []
    for table in DAY_TABLES:
        if has_table(con, table):
            column = LAYERS[table][1]
            (day,) = fetch_one(con, f"select max({column}) from {table}")
            days.append(day)
    return max((d for d in days if d is not None), default=None)


def _partitioned_tables(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """'schema.table' -> its day column, of every base table or parts view with a day column."""
    rows = con.execute(
        """
        select c.table_schema || '.' || c.table_name, c.column_name
        from information_schema.columns as c
        join information_schema.tables as t using (table_schema, table_name)
        where c.column_name in ('day', 'partition_day') and c.data_type = 'DATE' and t.table_type = 'BASE TABLE'
          and c.table_schema <> 'storage'
        """
    ).fetchall()
    found = dict(rows)
    for relation in parts.parquet_relations(con):
        found[relation] = "day"
    return found


def plan(con: duckdb.DuckDBPyConnection, policy: Policy, as_of: dt.date | None = None) -> Report:
    """What apply() would delete (no change to the warehouse)."""
    as_of = as_of or newest_day(con)
    report = Report(as_of=as_of, policy=policy, dry_run=True)
    present = _partitioned_tables(con)
    report.not_covered = sorted(t for t in present if t not in LAYERS)
    if as_of is None:
        return report
    stored = parts.parquet_relations(con)
    for table, (layer, column) in LAYERS.items():
        keep = policy.days(layer)
        if keep is None or table not in present:
            continue
        cutoff = as_of - dt.timedelta(days=keep - 1)
        if table in stored:
            rows = con.execute(
                f"select day, sum(row_count) from {parts.PARTS_TABLE} where relation = ? and day < ? "
                "group by day order by day",
                [table, cutoff],
            ).fetchall()
        else:
            rows = con.execute(
                f"select {quote_ident(column)}, count(*) from {table} where {quote_ident(column)} < ? "
                "group by all order by 1",
                [cutoff],
            ).fetchall()
        if rows:
            report.deletions.append(
                Deletion(table, layer, cutoff, [d for d, _ in rows], int(sum(n for _, n in rows)))
            )
    return report


def prometheus_pulls(warehouse: Path, cutoff: dt.date) -> list[Path]:
    folder = Path(str(warehouse) + PROMETHEUS_SUFFIX)
    out = []
    for path in sorted(folder.glob("telemetry-*.parquet")) if folder.is_dir() else []:
        try:
            day = dt.date.fromisoformat(path.stem.removeprefix("telemetry-"))
        except ValueError:
            continue
        if day < cutoff:
            out.append(path)
    return out


def apply(
    con: duckdb.DuckDBPyConnection,
    warehouse: Path,
    policy: Policy,
    as_of: dt.date | None = None,
    dry_run: bool = False,
    now: dt.datetime | None = None,
) -> Report:
    """Delete the days each layer no longer keeps (the caller holds the run lock, and publishes afterwards so the
    analysts' warehouse drops them too). Returns what was (or, with dry_run, would be) deleted."""
    report = plan(con, policy, as_of)
    report.dry_run = dry_run
    if report.as_of is not None and policy.raw is not None:
        cutoff = report.as_of - dt.timedelta(days=policy.raw - 1)
        report.prometheus_files = [str(p) for p in prometheus_pulls(warehouse, cutoff)]
    if dry_run or (not report.deletions and not report.prometheus_files):
        return report
    now = parts.utc_naive(now)
    stored = parts.parquet_relations(con)
    for ddl in RETIRED_DDL:
        con.execute(ddl)
    con.execute("begin transaction")
    try:
        for d in report.deletions:
            if d.table in stored:
                con.execute(f"delete from {parts.PARTS_TABLE} where relation = ? and day < ?", [d.table, d.cutoff])
                (paths,) = fetch_one(
                    con,
                    f"select coalesce(list(path order by day, path), []) from {parts.PARTS_TABLE} where relation = ?",
                    [d.table],
                )
                parts.rewrite_parts_view(con, d.table, list(paths))
            else:
                column = LAYERS[d.table][1]
                con.execute(f"delete from {d.table} where {quote_ident(column)} < ?", [d.cutoff])
        retired = sorted({(d.layer, day, now, policy.days(d.layer)) for d in report.deletions for day in d.days})
        if retired:
            con.executemany("insert into storage.retired_days values (?, ?, ?, ?)", retired)
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    con.execute("checkpoint")
    for path in report.prometheus_files:
        Path(path).unlink(missing_ok=True)
    return report


def retired(con: duckdb.DuckDBPyConnection, day: dt.date, layer: str = "raw") -> tuple[dt.datetime, int] | None:
    """(when, keep_days) if `day` of `layer` was retired, else None."""
    if not has_table(con, "storage.retired_days"):
        return None
    return fetch_one(
        con,
        "select max(retired_at), any_value(keep_days) from storage.retired_days where layer = ? and day = ? "
        "having count(*) > 0",
        [layer, day],
    )


class RetiredDay(Exception):
    """A day whose raw inputs retention deleted, materialised again without them."""


def refuse_retired_day(con: duckdb.DuckDBPyConnection, day: dt.date) -> bool:
    """Before the day's models are rebuilt: raise RetiredDay when retention deleted the day's raw inputs and the
    inputs hold none for it again (rebuilding would replace its kept per-request rows and daily results with
    zeros). With the inputs loaded again (restored input files), the day is no longer retired: returns True."""
    was = retired(con, day)
    if was is None:
        return False
    loaded = 0
    for table in ("raw.requests", "raw.telemetry_points"):
        if has_table(con, table):
            (n,) = fetch_one(con, f"select count(*) from {table} where partition_day = ?", [day])
            loaded += n
    if loaded == 0:
        when, keep = was
        raise RetiredDay(
            f"{day}: its raw inputs were deleted by retention on {when:%Y-%m-%d %H:%M} UTC (raw data is kept "
            f"{keep} days) and the input files hold none for it any more; re-materialising it would replace its "
            f"kept results (per-request rows, daily aggregates) with zeros. Restore the day's input files to "
            f"re-materialise it, or leave it as it is."
        )
    con.execute("delete from storage.retired_days where layer = 'raw' and day = ?", [day])
    return True
