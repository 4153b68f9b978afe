"""What the daily report shows, read from the warehouse: small frames computed in DuckDB (histograms, hourly sums,
top lists, a hashed sample for the scatter), never the day's requests in Python.

Every quantity is a mart's (or the fits') own figure, re-aggregated: the report adds no method of its own. The one
derived series, hourly operational carbon, is computed the way the method does (METHODOLOGY section 5: each
window's IT energy x the grid intensity of the hour the window starts in x the day's PUE), so its sum over the day
equals marts.fct_cluster_impact_daily.operational_location_g_co2e (tests/test_report.py checks it).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import duckdb
import pandas as pd

from orchestration.lib.warehouse import fetch_one

HISTOGRAM_BINS_PER_DECADE = 10  # energy per request: log-spaced bins, 10 per factor of 10
FIT_SAMPLE_PER_GROUP = 2000  # requests per model x hardware in the fitted-vs-observed scatter (a fixed hash sample)
TOP = 10  # tenants and models in the carbon ranking


class ReportError(Exception):
    """A problem the user can fix (no such warehouse, day or table); printed without a traceback."""


@dataclass
class DayData:
    day: dt.date
    summary: pd.DataFrame  # per cluster: requests, energy, carbon, water, coverage
    energy_hist: pd.DataFrame  # model, cluster, bin_low_wh, bin_high_wh, requests
    energy_quantiles: pd.DataFrame  # model, cluster (null: all clusters), requests, p05-p95 and mean (Wh)
    hourly: pd.DataFrame  # cluster, zone, hour, it_kwh, operational_g_co2e, intensity_g_per_kwh
    split: pd.DataFrame  # cluster (and 'all clusters'), facility_kwh and the five shares
    top_tenants: pd.DataFrame  # tenant, operational/embodied/training kg, total kg, requests
    top_models: pd.DataFrame  # model, same
    fits: pd.DataFrame  # the latest paper-form energy fits (model, hardware, source, coefficients, R2, MAPE, nobs)
    fit_points: pd.DataFrame  # model, hardware, observed_j, fitted_j (a sample of the day's metered requests)
    rejected: pd.DataFrame  # input, reason kind, rows
    notes: list[str] = field(default_factory=list)


def available_days(con: duckdb.DuckDBPyConnection) -> list[dt.date]:
    if not _has_table(con, "marts", "fct_cluster_energy_daily"):
        raise ReportError("the warehouse has no marts.fct_cluster_energy_daily: run `impact run` first")
    return [r[0] for r in con.execute("select distinct day from marts.fct_cluster_energy_daily order by 1").fetchall()]


def _has_table(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    (n,) = fetch_one(
        con,
        "select count(*) from information_schema.tables where table_schema = $s and table_name = $t",
        {"s": schema, "t": table},
    )
    return n > 0


def read_day(con: duckdb.DuckDBPyConnection, day: dt.date | None) -> DayData:
    """The report's data for ``day`` (default: the latest day of marts.fct_cluster_energy_daily)."""
    days = available_days(con)
    if not days:
        raise ReportError("the warehouse holds no materialised day yet: run `impact run` first")
    if day is None:
        day = days[-1]
    elif day not in days:
        shown = ", ".join(str(d) for d in days[-5:])
        raise ReportError(f"{day} is not materialised in this warehouse (latest days: {shown})")
    params = {"day": day}
    data = DayData(
        day=day,
        summary=_df(con, SUMMARY_SQL, params),
        energy_hist=_df(con, ENERGY_HIST_SQL, {**params, "per_decade": HISTOGRAM_BINS_PER_DECADE}),
        energy_quantiles=_df(con, ENERGY_QUANTILES_SQL, params),
        hourly=_df(con, HOURLY_SQL, params),
        split=_df(con, SPLIT_SQL, params),
        top_tenants=_df(con, TOP_SQL.format(by="coalesce(tenant, '(no tenant)')", name="tenant"), {**params, "n": TOP}),
        top_models=_df(con, TOP_SQL.format(by="model", name="model"), {**params, "n": TOP}),
        fits=_latest_fits(con),
        fit_points=pd.DataFrame(columns=["model", "hardware", "observed_j", "fitted_j"]),
        rejected=_df(con, REJECTED_SQL, params),
    )
    if data.fits.empty:
        data.notes.append("no energy model fitted yet (the models job fits them: `impact run` runs it)")
    else:
        data.fit_points = _df(con, FIT_POINTS_SQL, {**params, "n": FIT_SAMPLE_PER_GROUP})
    return data


def _df(con: duckdb.DuckDBPyConnection, sql: str, params: dict) -> pd.DataFrame:
    return con.execute(sql, params).df()


SUMMARY_SQL = """
select d.cluster, i.zone, d.requests, d.metered_it_energy_j / 3.6e6 as metered_it_kwh,
       i.facility_energy_j / 3.6e6 as facility_kwh, i.pue,
       coalesce(r.total_g_co2e, 0) / 1e3 as total_kg_co2e,
       coalesce(r.operational_g_co2e, 0) / 1e3 as operational_kg_co2e,
       coalesce(r.total_water_l, 0) as total_water_l, d.telemetry_coverage, d.counter_resets
from marts.fct_cluster_energy_daily as d
left join marts.fct_cluster_impact_daily as i using (cluster, day)
left join (
    select cluster, sum(total_g_co2e) as total_g_co2e, sum(operational_location_g_co2e) as operational_g_co2e,
           sum(total_water_l) as total_water_l
    from marts.agg_impact_daily where day = $day group by cluster
) as r using (cluster)
where d.day = $day
order by d.cluster
"""

# IT energy per request (metered + predicted), in log-spaced bins: the distribution without reading the requests
ENERGY_HIST_SQL = """
with requests as (
    select model, cluster, it_energy_j / 3600 as wh
    from marts.fct_request_impact
    where day = $day and it_energy_j > 0
)
select model, cluster, power(10, bin / $per_decade) as bin_low_wh, power(10, (bin + 1) / $per_decade) as bin_high_wh,
       requests
from (
    select model, cluster, floor(log10(wh) * $per_decade) as bin, count(*) as requests
    from requests group by all
)
order by model, cluster, bin
"""

# quantiles of IT energy per request (Wh) per model x cluster, and per model over all clusters (cluster null)
ENERGY_QUANTILES_SQL = """
select model, cluster, count(*) as requests,
       quantile_cont(it_energy_j, 0.05) / 3600 as p05_wh, quantile_cont(it_energy_j, 0.25) / 3600 as p25_wh,
       median(it_energy_j) / 3600 as p50_wh, quantile_cont(it_energy_j, 0.75) / 3600 as p75_wh,
       quantile_cont(it_energy_j, 0.95) / 3600 as p95_wh, avg(it_energy_j) / 3600 as mean_wh
from marts.fct_request_impact
where day = $day and it_energy_j > 0
group by grouping sets ((model, cluster), (model))
order by cluster is null, requests desc, model, cluster
"""

# METHODOLOGY section 5: operational (location-based) carbon of the cluster's metered energy, hour by hour: each
# window's IT energy x the intensity of the hour it starts in x the day's PUE (as int_pool_window_impact does)
HOURLY_SQL = """
with windows as (
    select cluster, cast(floor(epoch(window_start - cast($day as timestamp)) / 3600) as integer) as hour_of_day,
           sum(it_energy_j) as it_energy_j
    from marts.fct_window_energy
    where day = $day
    group by all
)
select w.cluster, i.zone, i.hour_start as hour, w.it_energy_j / 3.6e6 as it_kwh,
       w.it_energy_j / 3.6e6 * f.pue * i.location_g_co2e_per_kwh as operational_g_co2e,
       i.location_g_co2e_per_kwh as intensity_g_per_kwh, i.resolution
from windows as w
join intermediate.int_cluster_hour_intensity as i
  on i.day = $day and i.cluster = w.cluster and i.hour_of_day = w.hour_of_day
join marts.fct_cluster_impact_daily as f on f.day = $day and f.cluster = w.cluster
order by w.cluster, hour
"""

SHARES = (
    "accelerator_dynamic_share", "accelerator_idle_share", "host_share", "idle_machines_share", "overhead_share",
)  # fmt: skip
SPLIT_SQL = f"""
with clusters as (
    select cluster, facility_energy_j, {", ".join(SHARES)}
    from marts.fct_cluster_impact_daily where day = $day
)
select cluster, facility_energy_j / 3.6e6 as facility_kwh, {", ".join(SHARES)}, 0 as sort_key from clusters
union all
select 'all clusters', sum(facility_energy_j) / 3.6e6,
       {", ".join(f"sum({s} * facility_energy_j) / nullif(sum(facility_energy_j), 0)" for s in SHARES)}, 1
from clusters
having count(*) > 1
order by sort_key, cluster
"""

TOP_SQL = """
select {by} as {name}, sum(requests) as requests,
       sum(operational_location_g_co2e) / 1e3 as operational_kg_co2e, sum(embodied_g_co2e) / 1e3 as embodied_kg_co2e,
       sum(training_g_co2e + fine_tuning_g_co2e) / 1e3 as training_kg_co2e, sum(total_g_co2e) / 1e3 as total_kg_co2e
from marts.agg_impact_daily
where day = $day
group by all
order by total_kg_co2e desc, {name}
limit $n
"""


def _latest_fits(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The latest paper-form energy fit of each model x hardware (telemetry preferred over profiling)."""
    if not _has_table(con, "models", "energy_model_fits"):
        return pd.DataFrame()
    return con.execute(
        """
        select model, hardware, source, alpha_in, alpha_out, alpha_in_out, r_squared_uncentered, cv_mape, nobs,
               fitted_at
        from models.energy_model_fits
        where target = 'energy' and coalesce(form, 'paper') = 'paper'
        qualify row_number() over (partition by model, hardware
                                   order by fitted_at desc, source = 'telemetry' desc) = 1
        order by nobs desc, model, hardware
        """
    ).df()


# The day's fully metered requests against the latest fit of their model and hardware (the cluster's GPU model,
# as the fits group them): a fixed hash sample per group, so re-running the report draws the same points
FIT_POINTS_SQL = """
with fits as (
    select model, hardware, alpha_in, alpha_out, alpha_in_out
    from models.energy_model_fits
    where target = 'energy' and coalesce(form, 'paper') = 'paper'
    qualify row_number() over (partition by model, hardware
                               order by fitted_at desc, source = 'telemetry' desc) = 1
)
select r.model, r.hardware, r.it_energy_measured_j as observed_j,
       f.alpha_in * r.input_tokens + f.alpha_out * r.output_tokens
       + f.alpha_in_out * r.input_tokens * r.output_tokens as fitted_j
from marts.fct_request_impact as r
join fits as f on f.model = r.model and f.hardware = r.hardware
where r.day = $day and r.energy_source = 'telemetry'
qualify row_number() over (partition by r.model, r.hardware order by hash(r.request_id)) <= $n
"""

REJECTED_SQL = """
select input, regexp_replace(reason, ' ''[^'']*''| \\([^)]*\\)|: .*', '', 'g') as reason, count(*) as rows
from raw.rejected_rows
where partition_day = $day or partition_day is null
group by all
order by rows desc, input, reason
"""
