"""The invariants of METHODOLOGY section 3, as queries that return the offending rows (empty = holds).

Used by the Dagster asset checks and by the tests, so both check exactly the same thing.
"""

from __future__ import annotations

import datetime as dt

import duckdb

CONSERVATION_REL_TOL = 1e-9


def _day_filter(day: dt.date | None, column: str = "day") -> tuple[str, dict[str, object]]:
    if day is None:
        return "true", {}
    return f"{column} = $day", {"day": day}


def conservation_violations(con: duckdb.DuckDBPyConnection, day: dt.date | None = None) -> list[tuple]:
    """Cluster-days where attributed + unattributed differs from metered IT energy by more than 1e-9 relative,
    recomputing 'attributed' from the per-request table (not trusting the mart's own sum)."""
    where, params = _day_filter(day, "d.day")
    return con.execute(
        f"""
        with per_request as (
            select cluster, day, sum(it_energy_j) as attributed_j
            from intermediate.int_request_day_energy
            group by cluster, day
        )
        select d.cluster, d.day, d.metered_it_energy_j, coalesce(r.attributed_j, 0) as attributed_j,
               d.unattributed_energy_j
        from marts.fct_cluster_energy_daily as d
        left join per_request as r using (cluster, day)
        where {where}
          and abs(coalesce(r.attributed_j, 0) + d.unattributed_energy_j - d.metered_it_energy_j)
              > {CONSERVATION_REL_TOL} * greatest(abs(d.metered_it_energy_j), 1)
        order by d.day, d.cluster
        """,
        params,
    ).fetchall()


def negative_energy_rows(con: duckdb.DuckDBPyConnection, day: dt.date | None = None) -> list[tuple]:
    """Any negative energy in the marts (a counter reset must never become negative energy)."""
    where, params = _day_filter(day)
    return con.execute(
        f"""
        select 'fct_window_energy' as tbl, cluster, cast(window_start as varchar) as at, it_energy_j
        from marts.fct_window_energy
        where {where} and (it_energy_j < 0 or idle_energy_j < 0 or dynamic_energy_j < 0)
        union all
        select 'fct_request_energy', cluster, request_id, it_energy_j
        from marts.fct_request_energy
        where {where} and (it_energy_j < 0 or idle_energy_j < 0 or dynamic_energy_j < 0
                           or unallocated_idle_energy_j < 0)
        limit 20
        """,
        params,
    ).fetchall()


def low_coverage_days(
    con: duckdb.DuckDBPyConnection, threshold: float, day: dt.date | None = None
) -> list[tuple]:
    """Cluster-days whose telemetry coverage is below the threshold."""
    where, params = _day_filter(day)
    return con.execute(
        f"""
        select cluster, day, telemetry_coverage from marts.fct_cluster_energy_daily
        where {where} and telemetry_coverage < $threshold order by day, cluster
        """,
        {**params, "threshold": threshold},
    ).fetchall()


def single_request_rule(
    con: duckdb.DuckDBPyConnection, day: dt.date | None = None, rel_tol: float = 1e-9
) -> tuple[list[tuple], int]:
    """(offenders, requests tested): requests alone in every pool-window they touch (no other request in the
    same GPU/host pool and window; at cluster level, alone on the cluster) must get exactly the metered dynamic
    energy of those pool-windows. Returns up to 20 offenders and how many request-days were tested, so a check
    that tested nothing shows it."""
    where, params = _day_filter(day, "o.day")
    con.execute(
        f"""
        create or replace temp table _alone as
        with o as (
            select o.* from intermediate.int_request_window_overlaps o where {where}
        ),
        -- one overlap row per request and window, so rows count requests
        gpu_load as (
            select day, cluster, gpu_pool, window_index, count(*) as n from o group by all
        ),
        host_load as (
            select day, cluster, host_pool, window_index, count(*) as n from o group by all
        ),
        per_request as (
            select o.request_id, o.day, max(greatest(g.n, h.n)) as most,
                   sum(coalesce(pg.dynamic_energy_j, 0) + coalesce(ph.dynamic_energy_j, 0)) as window_dynamic_j
            from o
            join gpu_load g using (day, cluster, gpu_pool, window_index)
            join host_load h using (day, cluster, host_pool, window_index)
            left join intermediate.int_pool_window_energy pg
              on pg.day = o.day and pg.cluster = o.cluster and pg.component = 'gpu' and pg.pool = o.gpu_pool
             and pg.window_index = o.window_index
            left join intermediate.int_pool_window_energy ph
              on ph.day = o.day and ph.cluster = o.cluster and ph.component = 'host' and ph.pool = o.host_pool
             and ph.window_index = o.window_index
            group by o.request_id, o.day
        )
        select request_id, day, window_dynamic_j from per_request where most = 1
        """,
        params,
    )
    try:
        (tested,) = con.execute("select count(*) from _alone").fetchone()
        bad = con.execute(
            f"""
            select a.request_id, a.day, a.window_dynamic_j, r.dynamic_energy_j
            from _alone a
            join intermediate.int_request_day_energy r on r.request_id = a.request_id and r.day = a.day
            where abs(r.dynamic_energy_j - a.window_dynamic_j) > {rel_tol} * greatest(abs(a.window_dynamic_j), 1)
            limit 20
            """
        ).fetchall()
    finally:
        con.execute("drop table if exists _alone")
    return bad, int(tested)
