"""What the inputs got wrong, read back from the warehouse: for the asset checks and the `impact run` summary.

Nothing here changes a number; it names what the pipeline flagged (docs/telemetry-faults.md):

- telemetry faults per cluster-day: samples rejected (counter glitches, stale counters, power above the GPU's
  ceiling), energy quarantined (above the ceiling), intervals bridged, duplicate scrapes skipped;
- requests whose node or GPU matched no telemetry series that day, by name, and the level they were attributed
  at instead;
- request durations that look like the wrong unit: a median above DURATION_S_PER_TOKEN_LIMIT seconds per output
  token (no LLM serving stack decodes at under half a token a second), or more than IDLE_GPU_SHARE_LIMIT of the
  request-seconds on GPUs that drew no dynamic power at the time;
- power windows above the ceiling (the blocking check: quarantine must have left none).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import duckdb

from orchestration.lib.engines import dialect, has_table

DURATION_S_PER_TOKEN_LIMIT = 2.0
IDLE_GPU_SHARE_LIMIT = 0.8
CEILING_REL_TOL = 1e-9
# Clock skew: the lag (in windows, either way) at which a node's GPU dynamic energy best matches its requests'
# load is searched up to SKEW_MAX_WINDOWS; a lag other than 0 whose match beats lag 0 by SKEW_MIN_GAIN is reported.
SKEW_MAX_WINDOWS = 8
SKEW_MIN_GAIN = 1.2
SKEW_MIN_REQUEST_S = 600.0


def _days(days: Sequence[dt.date] | None, column: str = "day") -> tuple[str, dict[str, object]]:
    """`column in ($day0, ...)` and its parameters (SQL both engines read: these queries run on DuckDB or Spark)."""
    if days is None:
        return "true", {}
    params = {f"day{i}": d for i, d in enumerate(days)}
    return (f"{column} in ({', '.join('$' + p for p in params)})" if params else "false"), params


def power_ceiling_violations(con: duckdb.DuckDBPyConnection, day: dt.date | None = None) -> list[tuple]:
    """Stored pool-windows whose energy is above what their hardware can draw in the seconds it was present: a GPU
    pool above gpu_power_ceiling_w x GPU-seconds, a host pool above host_power_ceiling_w x node-seconds. Up to 20."""
    where, params = _days(None if day is None else [day], "e.day")
    return con.execute(
        f"""
        select e.cluster, cast(e.day as string), e.component, e.pool, e.window_index, round(e.energy_j, 3),
               round(e.energy_j / nullif(e.covered_s, 0), 1) as mean_w,
               case when e.component = 'gpu' then p.gpu_power_ceiling_w else p.host_power_ceiling_w end as ceiling_w
        from intermediate.int_pool_window_energy as e
        inner join intermediate.int_cluster_day_params as p using (cluster, day)
        where {where}
          and e.energy_j > (case when e.component = 'gpu' then p.gpu_power_ceiling_w else p.host_power_ceiling_w end)
              * e.covered_s * (1 + {CEILING_REL_TOL}) + 1e-6
        order by e.day, e.cluster, e.window_index
        limit 20
        """,
        params,
    ).fetchall()


def telemetry_faults(con: duckdb.DuckDBPyConnection, days: Sequence[dt.date] | None = None) -> list[tuple]:
    """(day, cluster, rejected_samples, quarantined_gpu_s, quarantined_kwh, bridged_intervals, duplicate_samples)
    of the cluster-days where any of them is not zero."""
    where, params = _days(days)
    return con.execute(
        f"""
        select cast(day as string), cluster, rejected_samples, round(quarantined_gpu_s, 1),
               round(quarantined_energy_j / 3.6e6, 3), bridged_intervals, duplicate_samples
        from marts.fct_cluster_energy_daily
        where {where}
          and (rejected_samples > 0 or quarantined_gpu_s > 0 or bridged_intervals > 0 or duplicate_samples > 0)
        order by day, cluster
        """,
        params,
    ).fetchall()


def unmatched_requests(con: duckdb.DuckDBPyConnection, days: Sequence[dt.date] | None = None) -> list[tuple]:
    """(day, cluster, node, gpu, attributed at, requests): the names requests used that matched no telemetry series
    of the day, with the level their requests were attributed at instead, most requests first."""
    where, params = _days(days)
    return con.execute(
        f"""
        select cast(day as string), cluster, coalesce(node, '(none)'), coalesce(gpu, '(none)'), attribution_level,
               requests
        from intermediate.int_request_pools
        where {where} and attribution_level <> cluster_level
        order by requests desc, day, cluster, node, gpu
        limit 50
        """,
        params,
    ).fetchall()


def duration_findings(
    con: duckdb.DuckDBPyConnection, days: Sequence[dt.date] | None = None, with_telemetry: bool = True
) -> list[str]:
    """Sentences naming duration_s where it looks like the wrong unit, per cluster-day, with counts: from the
    request log alone, and (with_telemetry) from the request-seconds that fell on idle GPUs."""
    where, params = _days(days, "partition_day")
    median = dialect(con, "median(duration_s / (output_tokens + 1))", "percentile(duration_s / (output_tokens + 1), 0.5)")
    rows = con.execute(
        f"""
        with pace as (
            select partition_day as day, cluster, count(*) as requests,
                   {median} as s_per_token
            from raw.requests
            where {where} and output_tokens is not null and duration_s > 0
            group by partition_day, cluster
        ),
        too_long as (
            select partition_day as day, count(*) as rejected
            from raw.rejected_rows
            where input = 'requests' and {where}
              and reason like 'duration_s % exceeds the limit of %'
            group by partition_day
        )
        select cast(p.day as string), p.cluster, p.requests, p.s_per_token, coalesce(t.rejected, 0)
        from pace as p left join too_long as t using (day)
        where p.s_per_token > {DURATION_S_PER_TOKEN_LIMIT}
        order by p.day, p.cluster
        """,
        params,
    ).fetchall()
    findings = [
        f"{day} {cluster}: duration_s looks like milliseconds, not seconds: median {pace:,.1f} s per output token over "
        f"{n:,} requests (no serving stack decodes under {1 / DURATION_S_PER_TOKEN_LIMIT:g} token/s; in ms that is "
        f"{pace:,.1f} ms a token)" + (f"; {rejected:,} request row(s) of the day rejected as longer than the limit" if rejected else "")
        for day, cluster, n, pace, rejected in rows
    ]
    if with_telemetry and has_table(con, "marts.fct_cluster_energy_daily"):
        where, params = _days(days)
        idle = con.execute(
            f"""
            select cast(day as string), cluster, idle_gpu_request_seconds_share
            from marts.fct_cluster_energy_daily
            where {where} and idle_gpu_request_seconds_share > {IDLE_GPU_SHARE_LIMIT}
            order by day, cluster
            """,
            params,
        ).fetchall()
        findings += [
            f"{day} {cluster}: {share:.0%} of the request-seconds fell on GPUs that drew no dynamic power at the time: "
            "durations too long (duration_s in milliseconds?) or requests naming the wrong GPU"
            for day, cluster, share in idle
        ]
    return findings


def clock_skew_findings(con: duckdb.DuckDBPyConnection, days: Sequence[dt.date] | None = None) -> list[str]:
    """Nodes whose telemetry clock looks shifted against the request log: per node, the GPU dynamic energy of each
    window against the request-seconds of the node's requests, matched (cosine similarity) at lags of up to
    SKEW_MAX_WINDOWS windows either way; a best lag other than 0 that matches SKEW_MIN_GAIN times better than lag 0
    is reported. Needs requests that name their node (GPU or node attribution level)."""
    where, params = _days(days, "e.day")
    lags = dialect(
        con, f"unnest(range(-{SKEW_MAX_WINDOWS}, {SKEW_MAX_WINDOWS} + 1))",
        f"explode(sequence(-{SKEW_MAX_WINDOWS}, {SKEW_MAX_WINDOWS}))",
    )
    best_lag = dialect(con, "arg_max(lag, match)", "max_by(lag, match)")
    rows = con.execute(
        f"""
        with dynamic as (
            select e.day, e.cluster, split_part(e.pool, '/', 1) as node, e.window_index,
                   sum(e.dynamic_energy_j) as dynamic_j
            from intermediate.int_pool_window_energy as e
            where {where} and e.component = 'gpu' and e.pool <> '*'
            group by e.day, e.cluster, split_part(e.pool, '/', 1), e.window_index
        ),
        load as (
            -- the host pool of a node carries its requests' seconds once each
            select l.day, l.cluster, l.pool as node, l.window_index, l.request_seconds
            from intermediate.int_pool_window_load as l
            where {where.replace('e.day', 'l.day')} and l.component = 'host' and l.pool <> '*'
              and l.pool_window_key is not null
        ),
        lags as (select {lags} as lag),
        scored as (
            select l.day, l.cluster, l.node, g.lag,
                   sum(l.request_seconds * d.dynamic_j)
                   / sqrt(sum(l.request_seconds * l.request_seconds) * sum(d.dynamic_j * d.dynamic_j)) as match
            from load as l
            cross join lags as g
            inner join dynamic as d
                on l.day = d.day and l.cluster = d.cluster and l.node = d.node
                and d.window_index = l.window_index + g.lag
            group by l.day, l.cluster, l.node, g.lag
        ),
        best as (
            select day, cluster, node,
                   {best_lag} as lag, max(match) as best_match,
                   max(case when lag = 0 then match end) as match_at_0
            from scored
            group by day, cluster, node
        ),
        window_length as (
            select cluster, day, window_s from intermediate.int_cluster_day_params
        ),
        load_size as (
            select day, cluster, node, sum(request_seconds) as request_s from load group by day, cluster, node
        )
        select cast(b.day as string), b.cluster, b.node, b.lag * w.window_s, b.best_match, b.match_at_0
        from best as b
        inner join window_length as w on b.cluster = w.cluster and b.day = w.day
        inner join load_size as s on b.day = s.day and b.cluster = s.cluster and b.node = s.node
        where b.lag <> 0 and s.request_s >= {SKEW_MIN_REQUEST_S}
          and b.best_match > {SKEW_MIN_GAIN} * coalesce(b.match_at_0, 0)
        order by b.day, b.cluster, b.node
        """,
        params,
    ).fetchall()
    return [
        f"{day} {cluster}: the GPU power of node {node} follows its requests {abs(shift):g} s "
        f"{'later' if shift > 0 else 'earlier'} than the request log says (match {best:.2f} against {at0 or 0:.2f} "
        "unshifted, to the window): the node's clock or the log's is skewed, so its requests' energy shares are "
        "misplaced"
        for day, cluster, node, shift, best, at0 in rows
    ]


def summary_lines(con: duckdb.DuckDBPyConnection, days: Sequence[dt.date]) -> list[str]:
    """What the `impact run` summary prints under 'Inputs that look wrong' (empty when nothing does)."""
    lines: list[str] = []
    if has_table(con, "marts.fct_cluster_energy_daily"):
        for day, cluster, rejected, q_s, q_kwh, bridged, dups in telemetry_faults(con, days):
            parts = [
                f"{rejected:,} sample(s) rejected" if rejected else "",
                f"{q_s:,.0f} GPU-s quarantined ({q_kwh:,.3f} kWh above the power ceiling, not counted)" if q_s else "",
                f"{bridged:,} interval(s) bridged by the counter" if bridged else "",
                f"{dups:,} duplicate scrape(s) skipped" if dups else "",
            ]
            where = " (intermediate.int_telemetry_quarantine)" if rejected or q_s or bridged else ""
            lines.append(f"{day} {cluster} telemetry: " + ", ".join(p for p in parts if p) + where)
    if has_table(con, "intermediate.int_request_pools"):
        for day, cluster, node, gpu, level, n in unmatched_requests(con, days):
            lines.append(
                f"{day} {cluster}: {n:,} request(s) name node {node!r} gpu {gpu!r}, which sent no telemetry that day: "
                f"attributed at {level} level"
            )
    if has_table(con, "raw.requests"):
        lines += duration_findings(con, days)
    if has_table(con, "intermediate.int_pool_window_load"):
        lines += clock_skew_findings(con, days)
    return lines
