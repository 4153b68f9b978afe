"""Carbon-aware shifting: the operational carbon the day's deferrable requests would have emitted had each waited
for the cleanest hour within its allowed delay.

* **Which requests.** Those advice.yml marks deferrable (by tenant, endpoint, model or cluster), started on the
  day (marts.fct_request_impact).
* **Allowed hours.** A request started at t may start instead at any UTC hour H with t < H <= t + max_delay_h
  (whole hours, so the set depends only on the hour t falls in), in its own cluster's zone, where
  factors.grid_intensity_hourly has a value (an hour without one is not a candidate: the comparison needs
  hour-resolved data). The grid basis is the one the day's impact used (direct, or lifecycle with the dbt var).
* **Shifted carbon** = the request's measured facility energy (PUE x IT energy, idle shares included) x the lowest
  intensity among the allowed hours, if that is below what it actually emitted (its measured operational
  carbon, priced window by window); otherwise it stays. A request only moves to a cleaner hour, so the saving is
  never negative. The energy is taken as unchanged by the move; the idle shares move with it only if the
  cluster's capacity follows the load (see rightsizing).
"""

from __future__ import annotations

import duckdb
import pandas as pd

from orchestration.lib.advice.config import ShiftingConfig

DAILY_COLUMNS: dict[str, str] = {
    "day": "date", "cluster": "varchar", "requests": "bigint", "requests_moved": "bigint",
    "requests_without_grid_factor": "bigint", "facility_energy_kwh": "double", "actual_kg_co2e": "double",
    "shifted_kg_co2e": "double", "saving_kg_co2e": "double", "max_delay_h": "bigint", "deferrable": "varchar",
    "grid_basis": "varchar",
}  # fmt: skip


def shifting_daily(con: duckdb.DuckDBPyConnection, day, cfg: ShiftingConfig) -> pd.DataFrame:
    """advice.shifting_daily for ``day``: per cluster, the deferrable requests' actual and shifted carbon."""
    predicate, params = cfg.deferrable.sql("r")
    return con.execute(
        f"""
        with basis as (
            select case when bool_or(grid_source like '%(lifecycle)%') then 'lifecycle' else 'direct' end as basis
            from intermediate.int_cluster_hour_intensity where day = $day
        ),

        requests as (
            select
                r.cluster, r.zone, date_trunc('hour', r.start_time) as start_hour, r.facility_energy_j,
                r.operational_location_g_co2e as actual_g
            from marts.fct_request_impact as r
            where r.day = $day and {predicate}
        ),

        hourly as (
            select
                g.zone, g.hour_start,
                case when b.basis = 'lifecycle' then g.lifecycle_g_co2e_per_kwh else g.location_g_co2e_per_kwh end
                    as ci
            from staging.stg_factors__grid_intensity_hourly as g
            cross join basis as b
        ),

        options as (
            select s.cluster, s.start_hour, min(h.ci) as best_ci
            from (select distinct cluster, zone, start_hour from requests) as s
            inner join hourly as h
                on h.zone = s.zone and h.hour_start > s.start_hour
                and h.hour_start <= s.start_hour + to_hours(cast($delay as bigint))
            where h.ci is not null
            group by all
        ),

        per_request as (
            select
                r.cluster, r.facility_energy_j, r.actual_g,
                case
                    when r.actual_g is null then null
                    when o.best_ci is null then r.actual_g
                    else least(r.actual_g, r.facility_energy_j / 3.6e6 * o.best_ci)
                end as shifted_g
            from requests as r
            left join options as o on o.cluster = r.cluster and o.start_hour = r.start_hour
        )

        select
            cast($day as date) as day, cluster, count(*) as requests,
            count(*) filter (where shifted_g < actual_g) as requests_moved,
            count(*) filter (where actual_g is null) as requests_without_grid_factor,
            sum(facility_energy_j) / 3.6e6 as facility_energy_kwh,
            sum(actual_g) / 1e3 as actual_kg_co2e,
            sum(shifted_g) / 1e3 as shifted_kg_co2e,
            sum(actual_g - shifted_g) / 1e3 as saving_kg_co2e,
            cast($delay as bigint) as max_delay_h,
            $rule as deferrable,
            (select basis from basis) as grid_basis
        from per_request
        group by cluster
        order by cluster
        """,
        {**params, "day": day, "delay": cfg.max_delay_h, "rule": cfg.deferrable.describe()},
    ).df()
