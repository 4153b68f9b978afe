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


# ------------------------------------------------------------------------------------------- impact (section 5)

IMPACT_REL_TOL = 1e-9


def impact_sum_violations(con: duckdb.DuckDBPyConnection, day: dt.date | None = None) -> list[tuple]:
    """Requests whose totals are not the sum of their parts (CONTRACT section 3), whose facility energy is not
    PUE x IT energy (requests that ran within one day, where one PUE applies), or whose bounds do not bracket the
    central value."""
    where, params = _day_filter(day)
    tol = IMPACT_REL_TOL
    return con.execute(
        f"""
        select request_id, cluster, day,
            case
                when abs(total_g_co2e - (operational_location_g_co2e + embodied_g_co2e + training_g_co2e
                                         + fine_tuning_g_co2e)) > {tol} * greatest(abs(total_g_co2e), 1e-9)
                    then 'total_g_co2e is not operational + embodied + training + fine-tuning'
                when abs(consumer_sci_g_co2e - (operational_location_g_co2e + embodied_g_co2e))
                     > {tol} * greatest(abs(consumer_sci_g_co2e), 1e-9)
                    then 'consumer_sci_g_co2e is not operational + embodied'
                when abs(total_water_l - (water_onsite_l + water_offsite_l + water_embodied_l + training_water_l))
                     > {tol} * greatest(abs(total_water_l), 1e-12)
                    then 'total_water_l is not the sum of the four waters'
                when days_spanned = 1 and abs(facility_energy_j - pue * it_energy_j)
                     > {tol} * greatest(facility_energy_j, 1e-9)
                    then 'facility_energy_j is not pue x it_energy_j'
                when total_g_co2e_low > total_g_co2e * (1 + {tol}) or total_g_co2e_high < total_g_co2e * (1 - {tol})
                    then 'carbon bounds do not bracket total_g_co2e'
                when total_water_l_low > total_water_l * (1 + {tol}) or total_water_l_high < total_water_l * (1 - {tol})
                    then 'water bounds do not bracket total_water_l'
                when least(it_energy_j, facility_energy_j, operational_location_g_co2e, embodied_g_co2e,
                           training_g_co2e, water_onsite_l, water_offsite_l, water_embodied_l) < 0
                    then 'negative impact'
            end as problem
        from marts.fct_request_impact
        where {where} and problem is not null
        limit 20
        """,
        params,
    ).fetchall()


def impact_conservation_violations(con: duckdb.DuckDBPyConnection, day: dt.date | None = None) -> list[tuple]:
    """Cluster-days where operational carbon, embodied carbon or embodied water attributed to requests (recomputed
    from the per-request-day table) plus the unattributed part differs from the cluster's total by more than 1e-9
    relative: they must conserve like energy."""
    where, params = _day_filter(day, "d.day")
    checks = (
        ("operational_location_g_co2e", "d.pue * r.location_g"),
        ("embodied_g_co2e", "r.embodied_g"),
        ("water_embodied_l", "r.water_l"),
    )
    clauses = " union all ".join(
        f"""
        select d.cluster, d.day, '{total}' as quantity, d.{total} as total,
               coalesce({attributed}, 0) as attributed, d.unattributed_share * d.{total} as unattributed
        from marts.fct_cluster_impact_daily as d
        left join per_request as r using (cluster, day)
        where {where}
        """
        for total, attributed in checks
    )
    return con.execute(
        f"""
        with per_request as (
            select cluster, day, sum(it_location_g_co2e) as location_g, sum(embodied_g_co2e) as embodied_g,
                   sum(water_embodied_l) as water_l
            from intermediate.int_request_day_energy
            group by cluster, day
        ),
        sides as ({clauses})
        select * from sides
        where abs(attributed + unattributed - total) > {IMPACT_REL_TOL} * greatest(abs(total), 1e-9)
        order by day, cluster, quantity
        """,
        params,
    ).fetchall()


def impact_factor_gaps(con: duckdb.DuckDBPyConnection, day: dt.date | None = None) -> dict[str, int]:
    """How many requests lack a factor or rest on a flagged fallback, by kind (0 everywhere = every request has
    an hourly grid factor, a training factor and metered energy)."""
    where, params = _day_filter(day)
    row = con.execute(
        f"""
        select
            count(*) as requests,
            count(case when operational_location_g_co2e is null or grid_resolution = 'none' then 1 end),
            count(case when grid_resolution = 'annual' then 1 end),
            count(case when operational_market_g_co2e is null then 1 end),
            count(case when factor_model is null then 1 end),
            count(case when energy_source like 'none%' or energy_source like '%no energy model%' then 1 end),
            count(case when energy_source in ('predicted', 'telemetry+predicted') then 1 end),
            count(case when embodied_water_source like 'none%' then 1 end)
        from marts.fct_request_impact
        where {where}
        """,
        params,
    ).fetchone()
    keys = (
        "requests",
        "no_grid_factor",
        "annual_grid_fallback",
        "no_market_factor",
        "no_training_factor",
        "no_energy_for_uncovered_time",
        "predicted_energy",
        "no_embodied_water_factor",
    )
    return dict(zip(keys, (int(v) for v in row), strict=True))
