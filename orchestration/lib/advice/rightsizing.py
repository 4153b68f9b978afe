"""Rightsizing: per cluster and UTC hour, the GPUs the measured load needed against the GPUs that were present,
and the idle energy, operational carbon and embodied carbon that scaling in would have avoided.

* **Load.** The hour's peak of the cluster's mean concurrency per window (marts.fct_window_energy: request-seconds
  / window length, requests counted once), so the counterfactual keeps capacity for the busiest window of the
  hour, not its average. The counterfactual scales once per hour.
* **Capacity per GPU.** Either declared (``max_concurrency_per_gpu``) or measured: the highest load level (a
  request's time-weighted concurrency on its own GPU, rounded) at which the ``slo_quantile`` of latency per
  output token (duration / output tokens) over the trailing ``capacity_window_days`` stays within
  ``slo_s_per_output_token``, at every level up to it that has at least ``min_requests_per_level`` requests.
  Measuring needs requests that name their GPU (attribution level gpu); the column capacity_source says which.
* **GPUs needed** = max(min_gpus, ceil(peak / capacity)); with ``scale_unit: node`` (the default, since powering
  down means removing whole servers) rounded up to whole nodes.
* **Avoidable** = the hardware-seconds present beyond that (GPU-seconds and node-seconds from the telemetry)
  x the hour's measured idle energy per present GPU-second and node-second (intermediate.int_pool_window_energy:
  idle power x presence, clipped to the metered energy): only idle energy is claimed; the work's dynamic energy
  is taken as unchanged (with sublinear power per batch, packing the load on fewer GPUs would lower it further:
  not claimed). Operational carbon = that energy x the day's PUE x the hour's grid intensity (the same
  factors the impact marts use); embodied = the hardware-seconds x the embodied rates per second
  (intermediate.int_cluster_day_factors): avoidable only if the released hardware does other work or is not
  bought.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from orchestration.lib.advice.config import AdviceConfigError, ClusterCapacity, RightsizingConfig

LEVEL_COLUMNS = ["level", "requests", "latency_s_per_output_token"]

HOURLY_COLUMNS: dict[str, str] = {
    "day": "date", "cluster": "varchar", "hour": "timestamp", "gpus_provisioned": "double",
    "nodes_provisioned": "double", "peak_concurrency": "double", "mean_concurrency": "double",
    "capacity_per_gpu": "double", "gpus_needed": "bigint", "nodes_needed": "bigint", "avoidable_gpu_hours": "double",
    "avoidable_node_hours": "double", "idle_energy_kwh": "double", "avoidable_energy_kwh": "double",
    "avoidable_operational_kg_co2e": "double", "avoidable_embodied_kg_co2e": "double",
    "grid_g_co2e_per_kwh": "double", "pue": "double",
}  # fmt: skip
DAILY_COLUMNS: dict[str, str] = {
    "day": "date", "cluster": "varchar", "gpu_hours_provisioned": "double", "gpu_hours_needed": "double",
    "avoidable_gpu_hours": "double", "metered_it_energy_kwh": "double", "idle_energy_kwh": "double",
    "avoidable_energy_kwh": "double", "avoidable_share_of_metered": "double",
    "avoidable_operational_kg_co2e": "double", "avoidable_embodied_kg_co2e": "double",
    "operational_kg_co2e": "double", "embodied_kg_co2e": "double", "peak_concurrency": "double", "capacity_per_gpu": "double", "capacity_source": "varchar", "min_gpus": "bigint", "scale_unit": "varchar",
}  # fmt: skip


def load_levels(con: duckdb.DuckDBPyConnection, day, cluster: str, quantile: float, window_days: int) -> pd.DataFrame:
    """Per load level (a request's time-weighted concurrency on its GPU pool, rounded, at least 1): requests and
    the ``quantile`` of latency per output token, over the ``window_days`` days ending on ``day``."""
    return con.execute(
        """
        select cast(greatest(1, round(mean_concurrency)) as bigint) as level, count(*) as requests,
               quantile_cont(duration_s / output_tokens, $q) as latency_s_per_output_token
        from marts.fct_request_energy
        where cluster = $cluster and day > cast($day as date) - $window and day <= cast($day as date)
            and output_tokens > 0 and mean_concurrency is not null
        group by all order by level
        """,
        {"cluster": cluster, "q": quantile, "day": day, "window": window_days},
    ).df()


def capacity_from_levels(levels: pd.DataFrame, slo: float, min_requests: int) -> float | None:
    """The highest load level whose latency quantile meets the SLO, at every sufficiently measured level up to it
    (levels with fewer than ``min_requests`` requests are skipped); None when the first measured one misses."""
    best = None
    for level, n, latency in levels.sort_values("level").itertuples(index=False):  # a few levels
        if n < min_requests:
            continue
        if latency > slo:
            break
        best = float(level)
    return best


def capacities(con: duckdb.DuckDBPyConnection, day, cfg: RightsizingConfig) -> pd.DataFrame:
    """Per cluster: capacity per GPU, where it comes from, min_gpus and scale unit."""
    levels_of_day = dict(
        con.execute(
            "select cluster, attribution_level from intermediate.int_cluster_day_params where day = $day",
            {"day": day},
        ).fetchall()
    )
    rows = []
    for c in cfg.clusters:  # a loop over clusters
        rows.append({"cluster": c.cluster, "min_gpus": c.min_gpus, "scale_unit": c.scale_unit,
                     **_capacity_of(con, day, c, cfg.capacity_window_days, levels_of_day.get(c.cluster))})  # fmt: skip
    return pd.DataFrame(rows, columns=["cluster", "min_gpus", "scale_unit", "capacity_per_gpu", "capacity_source"])


def _capacity_of(con, day, c: ClusterCapacity, window_days: int, level: str | None) -> dict:
    if c.max_concurrency_per_gpu is not None:
        return {"capacity_per_gpu": c.max_concurrency_per_gpu,
                "capacity_source": f"declared: max_concurrency_per_gpu = {c.max_concurrency_per_gpu:g}"}  # fmt: skip
    if level is not None and level != "gpu":
        raise AdviceConfigError(
            "rightsizing.slo_s_per_output_token",
            f"cluster {c.cluster} attributes per {level}, not per GPU (its requests do not name their GPU), so the "
            "load on a GPU cannot be measured: declare max_concurrency_per_gpu for it",
        )
    levels = load_levels(con, day, c.cluster, c.slo_quantile, window_days)
    capacity = capacity_from_levels(levels, c.slo_s_per_output_token, c.min_requests_per_level)
    measured = ", ".join(
        f"{int(r.level)}: {r.latency_s_per_output_token:.4g} s ({int(r.requests)})" for r in levels.itertuples()
    ) or "no requests"
    what = (f"measured: the highest load per GPU at which p{round(c.slo_quantile * 100)} latency per output token "
            f"stays within {c.slo_s_per_output_token:g} s over the {window_days} days to {day}")  # fmt: skip
    if capacity is None:
        return {"capacity_per_gpu": None, "capacity_source": f"{what}: none does (level: latency (requests): "
                f"{measured}); nothing claimed"}  # fmt: skip
    return {"capacity_per_gpu": capacity, "capacity_source": f"{what} = {capacity:g} (level: latency (requests): "
            f"{measured})"}  # fmt: skip


def hourly(con: duckdb.DuckDBPyConnection, day, caps: pd.DataFrame) -> pd.DataFrame:
    """advice.rightsizing_hourly for ``day`` (module docstring); one row per cluster in ``caps`` x UTC hour."""
    caps_frame = caps.astype({"capacity_per_gpu": "float64"})  # noqa: F841 - read by DuckDB's replacement scan
    return con.execute(
        """
        with caps as (
            select * from caps_frame
        ),

        day_factors as (
            select cluster, pue, gpus_per_node, gpu_embodied_g_per_s, server_embodied_g_per_s
            from intermediate.int_cluster_day_factors where day = $day
        ),

        hours as (
            select cluster, hour_of_day, hour_start, location_g_co2e_per_kwh as ci
            from intermediate.int_cluster_hour_intensity where day = $day
        ),

        hardware as (
            select
                cluster,
                cast(floor((window_start_s - epoch(cast($day as timestamp))) / 3600) as integer) as hour_of_day,
                coalesce(sum(covered_s) filter (where component = 'gpu'), 0) as gpu_s,
                coalesce(sum(covered_s) filter (where component = 'host'), 0) as node_s,
                coalesce(sum(idle_energy_j) filter (where component = 'gpu'), 0) as gpu_idle_j,
                coalesce(sum(idle_energy_j) filter (where component = 'host'), 0) as host_idle_j
            from intermediate.int_pool_window_energy where day = $day
            group by all
        ),

        load as (
            select
                cluster,
                cast(floor((epoch(window_start) - epoch(cast($day as timestamp))) / 3600) as integer) as hour_of_day,
                max(mean_concurrency) as peak_concurrency,
                sum(request_seconds) / 3600 as mean_concurrency
            from marts.fct_window_energy where day = $day
            group by all
        ),

        needed as (
            select
                h.cluster, h.hour_of_day, h.hour_start, h.ci, f.pue, f.gpus_per_node, f.gpu_embodied_g_per_s,
                f.server_embodied_g_per_s, c.capacity_per_gpu, c.min_gpus, c.scale_unit,
                coalesce(w.gpu_s, 0) as gpu_s, coalesce(w.node_s, 0) as node_s,
                coalesce(w.gpu_idle_j, 0) as gpu_idle_j, coalesce(w.host_idle_j, 0) as host_idle_j,
                coalesce(l.peak_concurrency, 0) as peak_concurrency, coalesce(l.mean_concurrency, 0) as mean_concurrency,
                -- no capacity (the SLO is met at no measured load): nothing needed is known, nothing is claimed
                case
                    when c.capacity_per_gpu is not null
                        then cast(greatest(c.min_gpus, ceil(coalesce(l.peak_concurrency, 0) / c.capacity_per_gpu - 1e-9))
                            as bigint)
                end as gpus_needed
            from hours as h
            inner join day_factors as f on f.cluster = h.cluster
            inner join caps as c on c.cluster = h.cluster
            left join hardware as w on w.cluster = h.cluster and w.hour_of_day = h.hour_of_day
            left join load as l on l.cluster = h.cluster and l.hour_of_day = h.hour_of_day
        ),

        avoidable as (
            select
                *,
                case when scale_unit = 'node' then cast(ceil(gpus_needed / gpus_per_node) as bigint) end
                    as nodes_needed,
                -- (greatest and least skip nulls: an unknown need must stay unknown)
                case
                    when gpus_needed is null then null
                    when scale_unit = 'node'
                        then greatest(gpu_s - ceil(gpus_needed / gpus_per_node) * gpus_per_node * 3600, 0)
                    else greatest(gpu_s - gpus_needed * 3600, 0)
                end as avoidable_gpu_s,
                case
                    when gpus_needed is null then null
                    when scale_unit = 'node' then greatest(node_s - ceil(gpus_needed / gpus_per_node) * 3600, 0)
                    else least(greatest(gpu_s - gpus_needed * 3600, 0) / gpus_per_node, node_s)
                end as avoidable_node_s
            from needed
        ),

        final as (
            select
                cast($day as date) as day,
                cluster,
                hour_start as hour,
                gpu_s / 3600 as gpus_provisioned,
                node_s / 3600 as nodes_provisioned,
                peak_concurrency,
                mean_concurrency,
                capacity_per_gpu,
                gpus_needed,
                nodes_needed,
                avoidable_gpu_s / 3600 as avoidable_gpu_hours,
                avoidable_node_s / 3600 as avoidable_node_hours,
                (gpu_idle_j + host_idle_j) / 3.6e6 as idle_energy_kwh,
                (coalesce(avoidable_gpu_s * gpu_idle_j / nullif(gpu_s, 0), avoidable_gpu_s * 0)
                    + coalesce(avoidable_node_s * host_idle_j / nullif(node_s, 0), avoidable_node_s * 0)) / 3.6e6
                    as avoidable_energy_kwh,
                ci,
                pue,
                (avoidable_gpu_s * gpu_embodied_g_per_s + avoidable_node_s * server_embodied_g_per_s) / 1e3
                    as avoidable_embodied_kg_co2e
            from avoidable
        )

        select
            day, cluster, hour, gpus_provisioned, nodes_provisioned, peak_concurrency, mean_concurrency,
            capacity_per_gpu, gpus_needed, nodes_needed, avoidable_gpu_hours, avoidable_node_hours, idle_energy_kwh,
            avoidable_energy_kwh, avoidable_energy_kwh * pue * ci / 1e3 as avoidable_operational_kg_co2e,
            avoidable_embodied_kg_co2e, ci as grid_g_co2e_per_kwh, pue
        from final
        order by cluster, hour
        """,
        {"day": day},
    ).df()


def daily(con: duckdb.DuckDBPyConnection, day, hours: pd.DataFrame, caps: pd.DataFrame) -> pd.DataFrame:
    """advice.rightsizing_daily: the day's hours summed per cluster, with the capacity used and its source."""
    hours_frame = hours  # noqa: F841 - read by DuckDB's replacement scan
    caps_frame = caps.astype({"capacity_per_gpu": "float64"})  # noqa: F841
    return con.execute(
        """
        with metered as (
            select cluster, metered_it_energy_j, operational_location_g_co2e, embodied_g_co2e
            from marts.fct_cluster_impact_daily where day = $day
        )
        select
            cast($day as date) as day, h.cluster, sum(h.gpus_provisioned) as gpu_hours_provisioned,
            sum(least(h.gpus_needed, h.gpus_provisioned)) as gpu_hours_needed,
            sum(h.avoidable_gpu_hours) as avoidable_gpu_hours,
            any_value(m.metered_it_energy_j) / 3.6e6 as metered_it_energy_kwh,
            sum(h.idle_energy_kwh) as idle_energy_kwh,
            sum(h.avoidable_energy_kwh) as avoidable_energy_kwh,
            sum(h.avoidable_energy_kwh) / nullif(any_value(m.metered_it_energy_j) / 3.6e6, 0)
                as avoidable_share_of_metered,
            sum(h.avoidable_operational_kg_co2e) as avoidable_operational_kg_co2e,
            sum(h.avoidable_embodied_kg_co2e) as avoidable_embodied_kg_co2e,
            any_value(m.operational_location_g_co2e) / 1e3 as operational_kg_co2e,
            any_value(m.embodied_g_co2e) / 1e3 as embodied_kg_co2e,
            max(h.peak_concurrency) as peak_concurrency,
            any_value(c.capacity_per_gpu) as capacity_per_gpu, any_value(c.capacity_source) as capacity_source,
            any_value(c.min_gpus) as min_gpus, any_value(c.scale_unit) as scale_unit
        from hours_frame as h
        inner join caps_frame as c on c.cluster = h.cluster
        left join metered as m on m.cluster = h.cluster
        group by h.cluster
        order by h.cluster
        """,
        {"day": day},
    ).df()


def check_hours(hours: pd.DataFrame) -> list[str]:
    """Invariants of the hourly table: avoidable energy within the hour's measured idle energy, hardware
    avoided within the hardware present, nothing negative. Returns the offending rows, described."""
    known = hours[hours["avoidable_energy_kwh"].notna()]
    energy = known["avoidable_energy_kwh"]
    bad_energy = known[(energy < -1e-12) | (energy > known["idle_energy_kwh"] * (1 + 1e-9) + 1e-12)]
    bad_gpus = known[known["avoidable_gpu_hours"] > known["gpus_provisioned"] + 1e-9]
    return [
        *(f"{r.cluster} {r.hour}: avoidable {r.avoidable_energy_kwh:.6g} kWh outside [0, idle "
          f"{r.idle_energy_kwh:.6g} kWh]" for r in bad_energy.itertuples(index=False)),
        *(f"{r.cluster} {r.hour}: {r.avoidable_gpu_hours:.6g} GPU-hours avoided of {r.gpus_provisioned:.6g} present"
          for r in bad_gpus.itertuples(index=False)),
    ]  # fmt: skip
