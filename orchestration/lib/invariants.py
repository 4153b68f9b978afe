"""The invariants of METHODOLOGY section 3, as queries that return the offending rows (empty = holds).

Used by the Dagster asset checks and by the tests, so both check exactly the same thing. Each takes a DuckDB
connection or an Engine (orchestration.lib.engines): the SQL is in the subset DuckDB and Spark SQL share.
"""

from __future__ import annotations

import datetime as dt

import duckdb

from orchestration.lib.warehouse import fetch_one

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
            from intermediate.int_request_days
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
        select 'fct_window_energy' as tbl, cluster, cast(window_start as string) as at, it_energy_j
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
    energy of those pool-windows. int_request_days carries, per request and day, the most requests that shared
    any of its pool-windows (max_pool_requests, from the pool loads) and those pool-windows' metered dynamic energy
    (pool_dynamic_energy_j, from the pool energy); its own dynamic share is computed from the shares formula.
    Returns up to 20 offenders and how many request-days were tested, so a check that tested nothing shows it."""
    where, params = _day_filter(day)
    (tested,) = fetch_one(
        con,
        f"select count(*) from intermediate.int_request_days where {where} and max_pool_requests = 1", params
    )
    bad = con.execute(
        f"""
        select request_id, day, pool_dynamic_energy_j, dynamic_energy_j
        from intermediate.int_request_days
        where {where} and max_pool_requests = 1
          and abs(dynamic_energy_j - pool_dynamic_energy_j) > {rel_tol} * greatest(abs(pool_dynamic_energy_j), 1)
        limit 20
        """,
        params,
    ).fetchall()
    return bad, int(tested)


# ------------------------------------------------------------------------------------------- impact (section 5)

IMPACT_REL_TOL = 1e-9


def impact_sum_violations(con: duckdb.DuckDBPyConnection, day: dt.date | None = None) -> list[tuple]:
    """Request-days (intermediate.int_request_days, where every impact term is computed; the marts' views add up
    the days of a request) whose totals are not the sum of their parts (CONTRACT section 3), whose facility energy
    is not that day's PUE x IT energy (metered + predicted), whose bounds do not bracket the central value, or
    with a negative impact."""
    where, params = _day_filter(day, "r.day")
    tol = IMPACT_REL_TOL
    return con.execute(
        f"""
        select * from (
        select r.request_id, r.cluster, r.day,
            case
                when abs(r.total_g_co2e - (r.operational_location_g_co2e + r.embodied_g_co2e + r.training_g_co2e
                                           + r.fine_tuning_g_co2e)) > {tol} * greatest(abs(r.total_g_co2e), 1e-9)
                    then 'total_g_co2e is not operational + embodied + training + fine-tuning'
                when abs(r.total_water_l - (r.water_onsite_l + r.water_offsite_l + r.water_embodied_l
                                            + r.training_water_l)) > {tol} * greatest(abs(r.total_water_l), 1e-12)
                    then 'total_water_l is not the sum of the four waters'
                when f.pue is null or abs(r.facility_energy_j - f.pue * (r.it_energy_j + r.it_energy_predicted_j))
                     > {tol} * greatest(r.facility_energy_j, 1e-9)
                    then 'facility_energy_j is not pue x it_energy_j'
                when r.total_g_co2e_low > r.total_g_co2e * (1 + {tol})
                     or r.total_g_co2e_high < r.total_g_co2e * (1 - {tol})
                    then 'carbon bounds do not bracket total_g_co2e'
                when r.total_water_l_low > r.total_water_l * (1 + {tol})
                     or r.total_water_l_high < r.total_water_l * (1 - {tol})
                    then 'water bounds do not bracket total_water_l'
                when least(r.it_energy_j, r.facility_energy_j, r.operational_location_g_co2e, r.embodied_g_co2e,
                           r.training_g_co2e, r.water_onsite_l, r.water_offsite_l, r.water_embodied_l) < 0
                    then 'negative impact'
            end as problem
        from intermediate.int_request_days as r
        left join intermediate.int_cluster_day_factors as f on f.cluster = r.cluster and f.day = r.day
        where {where}
        ) as checked
        where problem is not null
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
            from intermediate.int_request_days
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
    row = fetch_one(
        con,
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
    )
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
