"""`impact migrate`: convert a warehouse built by an earlier version to the storage of this one, in place.

Earlier versions stored intermediate.int_request_days (58 columns, every total and product stored) and
marts.fct_window_energy as DuckDB tables. They are now Parquet day files behind views (parquet_partition): the
per-request table keeps the parts of each quantity and the factors, and derives the rest when read. migrate()
writes every day of the old tables as day files, computing the stored columns from the old ones (the factors
from intermediate.int_cluster_day_factors and int_cluster_hour_intensity, which such a warehouse holds), registers
them, drops the old tables, and has dbt rebuild the newest day of both models, which creates their views over all
the days. Values read back equal the old ones to ~1e-15 relative (sums of parts recomputed), bounds' ends to
single precision rounded outward. No input file is needed: the raw data of the warehouse is used.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from orchestration.lib.operations import parts
from orchestration.lib.warehouse import fetch_one

REQUEST_DAYS = "intermediate.int_request_days"
WINDOW_ENERGY = "marts.fct_window_energy"
LEGACY_SUFFIX = "__before_migration"


def _single_precision(expression: str, direction: str | None = None) -> str:
    """As the dbt macro single_precision (macros/stored_columns.sql)."""
    if direction is None:
        return f"cast({expression} as float)"
    beyond, towards = (">", "-inf") if direction == "down" else ("<", "inf")
    return (
        f"case when cast(cast({expression} as float) as double) {beyond} {expression} "
        f"then nextafter(cast({expression} as float), cast('{towards}' as float)) "
        f"else cast({expression} as float) end"
    )


# the stored columns of int_request_days (models/intermediate/int_request_days.sql `stored`) from the columns of
# the table earlier versions wrote (r), the cluster-day factors (f) and the start hour's grid factors (h)
_PREDICTED_LOW = (
    "case when r.it_energy_predicted_low_j > 0 "
    "then r.it_energy_predicted_low_j * h.location_low_g_co2e_per_kwh / 3.6e6 else 0 end"
)
_PREDICTED_HIGH = (
    "case when r.it_energy_predicted_high_j > 0 "
    "then r.it_energy_predicted_high_j * h.location_high_g_co2e_per_kwh / 3.6e6 else 0 end"
)
_PREDICTED_MARKET = (
    "case when r.it_energy_predicted_j > 0 and h.market_g_co2e_per_kwh is not null "
    "then r.it_energy_predicted_j * h.market_g_co2e_per_kwh / 3.6e6 end"
)
_INFERENCES = "case when cast(r.start_time as date) = r.day then coalesce(r.output_tokens, 0) + 1 else 0 end"
_WATER_ONSITE_LOW = "(r.it_energy_j + r.it_energy_predicted_low_j) * f.wue_low_l_per_kwh / 3.6e6"
_WATER_OFFSITE_LOW = "f.pue_low * (r.it_energy_j + r.it_energy_predicted_low_j) * f.ewif_low_l_per_kwh / 3.6e6"
_WATER_ONSITE_HIGH = "(r.it_energy_j + r.it_energy_predicted_high_j) * f.wue_high_l_per_kwh / 3.6e6"
_WATER_OFFSITE_HIGH = "f.pue_high * (r.it_energy_j + r.it_energy_predicted_high_j) * f.ewif_high_l_per_kwh / 3.6e6"
REQUEST_DAY_COLUMNS = {
    "day": "r.day",
    "request_key": "r.request_key",
    "request_id": "r.request_id",
    "cluster": "r.cluster",
    "model": "r.model",
    "start_time": "r.start_time",
    "duration_s": "r.duration_s",
    "input_tokens": "r.input_tokens",
    "output_tokens": "r.output_tokens",
    "tenant": "r.tenant",
    "endpoint": "r.endpoint",
    "node": "r.node",
    "gpu": "r.gpu",
    # earlier versions served text requests only (no image fields, no adapters)
    "image_fields": "cast(null as varchar)",
    "images_generated": "cast(null as integer)",
    "days_spanned": "r.days_spanned",
    "request_seconds": "r.request_seconds",
    "concurrency_seconds": _single_precision("r.concurrency_seconds"),
    "overlap_without_telemetry_s": "r.request_seconds - r.telemetry_covered_s",
    "it_energy_j": "r.it_energy_j",
    "accelerator_idle_energy_j": "greatest(r.accelerator_energy_j - r.accelerator_dynamic_energy_j, 0)",
    "accelerator_dynamic_energy_j": "r.accelerator_dynamic_energy_j",
    "host_idle_energy_j": "greatest(r.idle_energy_j - (r.accelerator_energy_j - r.accelerator_dynamic_energy_j), 0)",
    "unallocated_idle_energy_j_per_s": "r.unallocated_idle_energy_j / nullif(r.request_seconds, 0)",
    "max_pool_requests": "r.max_pool_requests",
    "pool_dynamic_energy_j": "case when r.max_pool_requests = 1 then r.pool_dynamic_energy_j end",
    "uncovered_s": "r.uncovered_s",
    "it_energy_predicted_j": "r.it_energy_predicted_j",
    "it_energy_predicted_low_j": "r.it_energy_predicted_low_j",
    "it_energy_predicted_high_j": "r.it_energy_predicted_high_j",
    "prediction_fit": "r.prediction_fit",
    "it_location_g_co2e": "r.it_location_g_co2e",
    "it_location_low_g_co2e": _single_precision(
        f"greatest(r.operational_location_low_g_co2e / nullif(f.pue_low, 0) - {_PREDICTED_LOW}, 0)", "down"),
    "it_location_high_g_co2e": _single_precision(
        f"greatest(r.operational_location_high_g_co2e / nullif(f.pue_high, 0) - {_PREDICTED_HIGH}, 0)", "up"),
    "it_market_g_co2e": (
        "case when r.market_factor_energy_j > 0 then r.operational_market_g_co2e / nullif(f.pue, 0) - "
        "r.it_energy_predicted_j * coalesce(h.market_g_co2e_per_kwh, h.location_g_co2e_per_kwh, 0) / 3.6e6 end"
    ),
    "predicted_location_g_co2e": (
        "case when r.it_energy_predicted_j > 0 then r.it_energy_predicted_j * h.location_g_co2e_per_kwh / 3.6e6 "
        "else 0 end"
    ),
    "predicted_location_low_g_co2e": _PREDICTED_LOW,
    "predicted_location_high_g_co2e": _PREDICTED_HIGH,
    "predicted_market_g_co2e": _PREDICTED_MARKET,
    "market_factor_energy_j": "r.market_factor_energy_j",
    "annual_factor_energy_j": "r.annual_factor_energy_j",
    "embodied_g_co2e": "r.embodied_g_co2e",
    "embodied_low_g_co2e": _single_precision("r.embodied_low_g_co2e", "down"),
    "embodied_high_g_co2e": _single_precision("r.embodied_high_g_co2e", "up"),
    "water_embodied_l": "r.water_embodied_l",
    "water_embodied_low_l": _single_precision(
        f"greatest(r.total_water_l_low - ({_WATER_ONSITE_LOW}) - ({_WATER_OFFSITE_LOW}) - r.training_water_l, 0)",
        "down"),
    "water_embodied_high_l": _single_precision(
        f"greatest(r.total_water_l_high - ({_WATER_ONSITE_HIGH}) - ({_WATER_OFFSITE_HIGH}) - r.training_water_l, 0)",
        "up"),
    "pue": "f.pue",
    "pue_low": "f.pue_low",
    "pue_high": "f.pue_high",
    "wue_onsite_l_per_kwh": "f.wue_onsite_l_per_kwh",
    "wue_low_l_per_kwh": "f.wue_low_l_per_kwh",
    "wue_high_l_per_kwh": "f.wue_high_l_per_kwh",
    "ewif_l_per_kwh": "f.ewif_l_per_kwh",
    "ewif_low_l_per_kwh": "f.ewif_low_l_per_kwh",
    "ewif_high_l_per_kwh": "f.ewif_high_l_per_kwh",
    "factor_model": "r.factor_model",
    "training_g_co2e_per_inference": f"r.training_g_co2e / nullif({_INFERENCES}, 0)",
    "fine_tuning_g_co2e_per_inference": f"r.fine_tuning_g_co2e / nullif({_INFERENCES}, 0)",
    "training_water_l_per_inference": f"r.training_water_l / nullif({_INFERENCES}, 0)",
    "adapter_g_co2e_per_inference": "cast(null as double)",
    "adapter_water_l_per_inference": "cast(null as double)",
    # earlier versions attributed every request of a cluster-day at the day's level
    "attribution_level": "coalesce(d.attribution_level, 'none')",
}


@dataclass
class Migration:
    converted: dict[str, int] = field(default_factory=dict)  # relation -> rows converted to day files
    days: list[dt.date] = field(default_factory=list)
    rebuilt_day: dt.date | None = None
    bytes_before: int = 0
    bytes_after: int = 0


def _is_table(con: duckdb.DuckDBPyConnection, relation: str) -> bool:
    schema, name = relation.split(".")
    row = fetch_one(
        con,
        "select table_type from information_schema.tables where table_schema = ? and table_name = ?",
        [schema, name],
    )
    return row is not None and row[0] == "BASE TABLE"


def needs_migration(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r for r in (REQUEST_DAYS, WINDOW_ENERGY) if _is_table(con, r)]


def _convert(con: duckdb.DuckDBPyConnection, warehouse: Path, relation: str, query: str) -> int:
    """Write `query`'s rows as one Parquet file per day and register them (as the dbt materialization does)."""
    folder = parts.parts_root(warehouse) / relation / f"migrated-{uuid.uuid4()}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    con.execute(
        f"copy ({query}) to {parts.sql_string(str(folder))} "
        "(format parquet, compression lz4_raw, parquet_version v2, partition_by (day))"
    )
    files = sorted(str(p) for p in folder.glob("day=*/*.parquet"))
    for ddl in parts.PARTS_DDL:
        con.execute(ddl)
    con.execute(f"delete from {parts.PARTS_TABLE} where relation = ?", [relation])
    if files:
        con.execute(
            f"insert into {parts.PARTS_TABLE} select ?, cast(regexp_extract(file_name, '/day=([0-9-]+)/', 1) "
            "as date), file_name, num_rows, cast(now() as timestamp), 'migrate' from parquet_file_metadata(?)",
            [relation, files],
        )
    (rows,) = fetch_one(con, f"select coalesce(sum(row_count), 0) from {parts.PARTS_TABLE} where relation = ?",
                        [relation])
    return int(rows)


def migrate(warehouse: Path, dbt_command: list[str], env: dict[str, str] | None = None) -> Migration:
    """Convert the old tables (the caller holds the run lock), then run `dbt_command` (a `dbt run` of the two
    models; IMPACT_PARTITION_DAY is set to the newest day) to create their views over the day files."""
    from orchestration.lib.warehouse import connect

    warehouse = Path(warehouse).resolve()
    report = Migration(bytes_before=_footprint(warehouse))
    con = connect(warehouse)
    try:
        todo = needs_migration(con)
        if not todo:
            return report
        for relation in todo:
            legacy = relation + LEGACY_SUFFIX
            con.execute("begin transaction")
            con.execute(f"alter table {relation} rename to {legacy.split('.')[1]}")
            if relation == REQUEST_DAYS:
                columns = ",\n".join(f"{expr} as {name}" for name, expr in REQUEST_DAY_COLUMNS.items())
                query = (
                    f"select {columns} from {legacy} as r "
                    "left join intermediate.int_cluster_day_factors as f on r.cluster = f.cluster and r.day = f.day "
                    "left join marts.fct_cluster_energy_daily as d on r.cluster = d.cluster and r.day = d.day "
                    "left join intermediate.int_cluster_hour_intensity as h "
                    "on r.cluster = h.cluster and date_trunc('hour', r.start_time) = h.hour_start"
                )
            else:
                query = f"select * from {legacy}"
            try:
                report.converted[relation] = _convert(con, warehouse, relation, query)
            except BaseException:
                con.execute("rollback")  # the old table stays as it was (files written are collected later)
                raise
            con.execute("commit")
        report.days = [d for (d,) in con.execute(
            f"select distinct day from {parts.PARTS_TABLE} order by day").fetchall()]
        con.execute("checkpoint")
    finally:
        con.close()
    if report.days:
        report.rebuilt_day = report.days[-1]
        done = subprocess.run(
            dbt_command,
            env={**os.environ, **(env or {}), "IMPACT_PARTITION_DAY": report.rebuilt_day.isoformat()},
            capture_output=True, text=True, check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"dbt could not rebuild {report.rebuilt_day} after converting the tables (they are kept as "
                f"*{LEGACY_SUFFIX}):\n{done.stdout[-3000:]}{done.stderr[-1000:]}"
            )
    con = connect(warehouse)
    try:
        for relation in report.converted:
            con.execute(f"drop table if exists {relation + LEGACY_SUFFIX}")
        con.execute("checkpoint")
    finally:
        con.close()
    report.bytes_after = _footprint(warehouse)
    return report


def _footprint(warehouse: Path) -> int:
    """Bytes of the warehouse file and its Parquet parts."""
    total = warehouse.stat().st_size if warehouse.exists() else 0
    root = parts.parts_root(warehouse)
    return total + (sum(p.stat().st_size for p in root.rglob("*.parquet")) if root.is_dir() else 0)
