"""The Python steps' warehouse SQL on the Spark engine: the per-day parts of the fits' sample and of the EcoLogits
comparison, the window readers, and the predictions view. Each function is the Spark counterpart of the DuckDB one
named in its docstring (same tables, same columns, same rules); the callers dispatch with engines.is_spark().

Differences, all of them deliberate (docs/spark.md, "Python steps"):
- Parts tables are Parquet partitioned by (day, spanning); replacing a day's parts overwrites those partitions
  (static INSERT OVERWRITE per partition, so a part that became empty is emptied), where DuckDB deletes and
  inserts in one transaction.
- The fits' sample ranks requests by Spark's xxhash64(request_id) where DuckDB uses its hash(): the samples are the
  same requests whenever a group has at most FIT_MAX_ROWS (200,000) requests a day, and two different but equally
  random samples above that.
- No hash-threshold thinning before the rank (a DuckDB speed trick): Spark ranks each group with a window.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pandas as pd

from orchestration.lib import day_parts

PART_PARTITIONS = ("day", "spanning")


def _columns(engine, table: str) -> list[str]:
    schema, name = table.split(".")
    return [r[0] for r in engine.execute(f"describe table `{schema}`.`{name}`").fetchall()
            if r[0] and not r[0].startswith("#")]


def _partitions(first: dt.date, last: dt.date, span_first: dt.date) -> list[tuple[dt.date, bool]]:
    """The (day, spanning) parts a reduction replaces (day_parts.DELETE_SQL)."""
    out = []
    d = min(first, span_first)
    while d <= last:
        if d >= first:
            out.append((d, False))
        if d >= span_first:
            out.append((d, True))
        d += dt.timedelta(days=1)
    return out


def _inline(sql: str, values: dict[str, dt.date]) -> str:
    """The reduction's day parameters as date literals (CACHE TABLE takes no parameter markers)."""
    for name in sorted(values, key=len, reverse=True):
        sql = sql.replace(f"${name}", f"date '{dt.date.fromisoformat(str(values[name])[:10])}'")
    return sql


def replace_parts(engine, parts: Sequence[tuple[str, str]], values: dict[str, dt.date]) -> list[int]:
    """day_parts.replace on Spark: for each (table, select), create the table (Parquet, partitioned by day and
    spanning) if needed and overwrite the parts the reduction covers with the select's rows. Returns the rows
    written. The select is computed once (cached) for all its partitions."""
    written = []
    for target, sql in parts:
        schema, name = target.split(".")
        engine.execute(f"create database if not exists `{schema}`")
        engine.execute("drop view if exists _impact_parts")
        engine.execute(f"cache table _impact_parts as {_inline(sql, values)}")
        try:
            if not engine.has_table(target):
                engine.execute(
                    f"create table `{schema}`.`{name}` using parquet partitioned by (day, spanning) "
                    "as select * from _impact_parts limit 0"
                )
            columns = [f"`{c}`" for c in _columns(engine, target) if c not in PART_PARTITIONS]
            for day, spanning in _partitions(values["first"], values["last"], values["span_first"]):
                engine.execute(
                    f"insert overwrite table `{schema}`.`{name}` partition (day = date '{day}', spanning = {spanning}) "
                    f"select {', '.join(columns)} from _impact_parts where day = date '{day}' and spanning = {spanning}"
                )
            (n,) = engine.execute("select count(*) from _impact_parts").fetchone()
            written.append(int(n))
        finally:
            engine.execute("uncache table if exists _impact_parts")
            engine.execute("drop view if exists _impact_parts")
    return written


# ------------------------------------------------------------------------------------- the fits' sample (models)


def _fit_source_sql() -> str:
    from orchestration.lib.predictions import _DAY_SOURCE_SQL

    return _DAY_SOURCE_SQL.replace("hash(r.request_id) as request_hash", "xxhash64(r.request_id) as request_hash")


def replace_fit_sample_days(engine, first: dt.date, last: dt.date, span_first: dt.date | None = None) -> tuple[int, int]:
    """predictions.replace_fit_sample_days on Spark."""
    from orchestration.lib.predictions import FIT_COUNTS_TABLE, FIT_MAX_ROWS, FIT_SAMPLE_TABLE

    values = day_parts.params(first, last, span_first)
    source = _fit_source_sql()
    counts = (
        f"select day, spanning, model, hardware, count(*) as requests from ({source}) as s "
        "group by day, spanning, model, hardware"
    )
    sample = f"""
        select request_id, model, hardware, cluster, day, start_time, input_tokens, output_tokens, it_energy_j,
               duration_s, mean_concurrency, spanning, request_hash
        from (
            select s.*, row_number() over (
                partition by day, spanning, model, hardware order by request_hash, request_id
            ) as sample_rank
            from ({source}) as s
        ) as ranked
        where sample_rank <= {int(FIT_MAX_ROWS)}
    """
    return tuple(replace_parts(engine, [(FIT_COUNTS_TABLE, counts), (FIT_SAMPLE_TABLE, sample)], values))


def window_sample(engine, start: dt.date, end: dt.date, cap: int) -> pd.DataFrame:
    """The rows of predictions.window_sample from the window's parts on Spark: per model x hardware, the ``cap``
    requests with the smallest hash, sorted by day and request_id."""
    from orchestration.lib.predictions import _SAMPLE_COLUMNS, FIT_SAMPLE_TABLE

    return engine.query(
        f"""
        select {_SAMPLE_COLUMNS} from (
            select *, row_number() over (partition by model, hardware order by request_hash, request_id) as k
            from {FIT_SAMPLE_TABLE}
            where day between $start and $end
        ) as ranked
        where k <= {int(cap)}
        order by day, request_id
        """,
        {"start": start, "end": end},
    )


# --------------------------------------------------------------------------------- predictions (models schema)


def predictions_view_sql(duckdb_sql: str) -> str:
    """predictions.create_predictions_view's view on Spark: the latest fit per group without QUALIFY."""
    old = """            select * from models.energy_model_fits
            where form = 'paper' and t_975 is not null and alpha_in is not null
            qualify row_number() over (
                partition by model, hardware, target order by (source = 'telemetry') desc, fitted_at desc
            ) = 1"""
    new = """            select * from (
                select *, row_number() over (
                    partition by model, hardware, target order by (source = 'telemetry') desc, fitted_at desc
                ) as fit_rank
                from models.energy_model_fits
                where form = 'paper' and t_975 is not null and alpha_in is not null
            ) as ranked
            where fit_rank = 1"""
    from orchestration.lib.images.predict import LATEST_FITS_SQL

    image_old = LATEST_FITS_SQL
    image_new = """
    select * from (
        select *, row_number() over (
            partition by model, hardware, target order by (source = 'telemetry') desc, fitted_at desc
        ) as fit_rank
        from models.image_model_fits
        where selected and t_975 is not null
    ) as ranked
    where fit_rank = 1
"""
    if old not in duckdb_sql or image_old not in duckdb_sql or "qualify" in image_new:
        raise ValueError("the predictions view changed: port its Spark variant (orchestration/lib/engines/spark_steps.py)")
    return _spark_lists(duckdb_sql.replace(old, new).replace(image_old, image_new))


def image_training_sql(duckdb_sql: str, cap: int | None) -> str:
    """images.predict.training_requests' query on Spark (without its order and cap): Spark's array_size for the
    number of adapters, and the cap per model x hardware by xxhash64(request_id) (the same requests whenever a
    group has at most ``cap``), sorted by day and request_id."""
    sql = _spark_lists(duckdb_sql)
    if cap is None:
        return sql + " order by f.day, f.request_id"
    return f"""
        select request_id, model, hardware, cluster, day, start_time, width, height, images, steps, strength,
               input_width, input_height, guidance, lora, energy_j, runtime_s
        from (
            select q.*, row_number() over (
                partition by model, hardware order by xxhash64(request_id), request_id
            ) as sample_rank
            from ({sql}) as q
        ) as ranked
        where sample_rank <= $cap
        order by day, request_id
    """


def _spark_lists(sql: str) -> str:
    """DuckDB's len(list) as Spark's array_size (null for a null list, where size() gives -1)."""
    return sql.replace("len(", "array_size(")


# ------------------------------------------------------------------------- the EcoLogits comparison's day parts


def cmp_replace_day_parts(engine, first: dt.date, last: dt.date, span_first: dt.date | None, table: str) -> tuple[int, int]:
    """ecologits_cmp.replace_day_parts on Spark (the groups are grouped on their keys, not numbered first)."""
    from orchestration.lib import ecologits_cmp as cmp

    values = day_parts.params(first, last, span_first)
    keys = ", ".join(cmp._GROUP_KEYS)
    requests = f"""
        select
            r.day, r.model, r.hardware, r.cluster, r.days_spanned > 1 as spanning,
            r.pue,
            r.output_tokens,
            {cmp.latency_bucket_sql()} as latency_s,
            coalesce({_spark(cmp.HAS_ENERGY_SQL)}, false) as has_energy,
            coalesce({cmp.METERED_SQL}, false) as metered,
            r.input_tokens, r.duration_s, r.it_energy_j, r.facility_energy_j, r.accelerator_energy_j,
            r.host_energy_j, r.operational_location_g_co2e, r.water_onsite_l, r.water_offsite_l
        from {table} as r
        where {day_parts.DAYS_SQL} and r.modality = 'text'
    """
    counts = ", ".join(f"count(case when {expr} then 1 end) as {name}" for name, expr in cmp._COMBO_COUNTS.items())
    sums = ", ".join(f"sum({expr}) as {name}" for name, expr in cmp._COMBO_SUMS.items())
    combo_keys = f"{keys}, q.pue, q.output_tokens, q.latency_s, q.has_energy"
    combos = f"select {combo_keys}, {counts}, {sums} from ({requests}) as q group by {combo_keys}"
    bins = " union all ".join(
        f"select {keys}, '{measure}' as measure, {cmp.significant_sql(value)} as value, count(*) as requests "
        f"from ({requests}) as q where {value} is not null group by {keys}, {cmp.significant_sql(value)}"
        for measure, (value, _) in cmp.MEDIAN_MEASURES.items()
    )
    combos_n, bins_n = replace_parts(engine, [(cmp.DAY_COMBOS_TABLE, combos), (cmp.DAY_BINS_TABLE, bins)], values)
    return combos_n, bins_n


def _spark(sql: str) -> str:
    return sql.replace("starts_with(", "startswith(")


def cmp_request_combos(engine, start: dt.date, end: dt.date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ecologits_cmp.request_combos on Spark (group by the keys named, `div` for integer division)."""
    from orchestration.lib import ecologits_cmp as cmp

    params = {"start": start, "end": end}
    keys = ", ".join(cmp._COMBO_KEYS)
    sums = ", ".join(
        [f"cast(sum({c}) as bigint) as {c}" for c in cmp._COMBO_COUNTS] + [f"sum({c}) as {c}" for c in cmp._COMBO_SUMS]
    )
    combos = engine.query(
        f"select {keys}, {sums} from {cmp.DAY_COMBOS_TABLE} where day between $start and $end and has_energy "
        f"group by {keys}",
        params,
    )
    medians = ",\n    ".join(
        f"any_value(m.median) filter (where m.measure = '{measure}') as {col}"
        for measure, (_, col) in cmp.MEDIAN_MEASURES.items()
    )
    counts = engine.query(
        f"""
        with bins as (
            select model, hardware, cluster, measure, value, cast(sum(requests) as bigint) as n
            from {cmp.DAY_BINS_TABLE}
            where day between $start and $end
            group by model, hardware, cluster, measure, value
        ),
        ranked as (
            select
                *,
                sum(n) over (partition by model, hardware, cluster, measure order by value) - n as first_rank,
                sum(n) over (partition by model, hardware, cluster, measure) as total
            from bins
        ),
        medians as (
            select
                model, hardware, cluster, measure,
                (
                    any_value(value) filter (where first_rank <= (total - 1) div 2 and (total - 1) div 2 < first_rank + n)
                    + any_value(value) filter (where first_rank <= total div 2 and total div 2 < first_rank + n)
                ) / 2 as median
            from ranked
            group by model, hardware, cluster, measure
        ),
        counts as (
            select model, hardware, cluster, cast(sum(requests) as bigint) as requests
            from {cmp.DAY_COMBOS_TABLE}
            where day between $start and $end
            group by model, hardware, cluster
        )
        select
            c.model, c.hardware, c.cluster, c.requests,
            {medians}
        from counts as c
        left join medians as m
            on c.model <=> m.model and c.hardware <=> m.hardware and c.cluster <=> m.cluster
        group by c.model, c.hardware, c.cluster, c.requests
        order by c.model, c.hardware, c.cluster, c.requests
        """,
        params,
    )
    return combos, counts
