"""Advice layer: from the measured day to decisions (docs/advice.md). Thin wrappers over orchestration.lib.advice:
routing (Wilkins et al.'s offline energy-optimal routing), rightsizing, carbon-aware shifting and operating
settings, configured by advice.yml in the data dir, plus a trailing-window summary.

Each part is its own asset (or multi-asset), so a mistake in one section of advice.yml fails that part alone,
with a message naming the key; without advice.yml every asset succeeds and says there is no advice. The assets
run in their own job (impact_advice), after the models job: routing prices candidates with the latest fits.
"""

import datetime as dt

import dagster as dg
import pandas as pd

from orchestration.defs.partitions import DAILY_BACKFILL_POLICY, DAILY_PARTITIONS
from orchestration.defs.resources import ImpactSettings
from orchestration.lib.advice import config as cfgs
from orchestration.lib.advice import gpu_settings, notes, rightsizing, routing, shifting, store, summary
from orchestration.lib.advice.config import AdviceConfigError
from orchestration.lib.warehouse import warehouse

OWNERS = ["team:sustainability"]
GROUP = "advice"

ROUTING_FRONTIER_KEY = dg.AssetKey(["advice", "routing_frontier"])
ROUTING_PLAN_KEY = dg.AssetKey(["advice", "routing_plan"])
ROUTING_CANDIDATES_KEY = dg.AssetKey(["advice", "routing_candidates"])
RIGHTSIZING_HOURLY_KEY = dg.AssetKey(["advice", "rightsizing_hourly"])
RIGHTSIZING_DAILY_KEY = dg.AssetKey(["advice", "rightsizing_daily"])
SHIFTING_DAILY_KEY = dg.AssetKey(["advice", "shifting_daily"])
SETTINGS_KEY = dg.AssetKey(["advice", "settings"])
SUMMARY_KEY = dg.AssetKey(["advice", "summary"])

REQUEST_IMPACT_KEY = dg.AssetKey(["marts", "fct_request_impact"])
REQUEST_ENERGY_KEY = dg.AssetKey(["marts", "fct_request_energy"])
WINDOW_ENERGY_KEY = dg.AssetKey(["marts", "fct_window_energy"])
CLUSTER_DAILY_KEY = dg.AssetKey(["marts", "fct_cluster_energy_daily"])
POOL_WINDOW_ENERGY_KEY = dg.AssetKey(["intermediate", "int_pool_window_energy"])
HOUR_INTENSITY_KEY = dg.AssetKey(["intermediate", "int_cluster_hour_intensity"])
DAY_FACTORS_KEY = dg.AssetKey(["intermediate", "int_cluster_day_factors"])
DAY_PARAMS_KEY = dg.AssetKey(["intermediate", "int_cluster_day_params"])
GRID_HOURLY_KEY = dg.AssetKey(["staging", "stg_factors__grid_intensity_hourly"])
FITS_KEY = dg.AssetKey(["models", "energy_model_fits"])
CLUSTERS_KEY = dg.AssetKey(["raw", "clusters"])

TABLES = {
    ROUTING_FRONTIER_KEY: ("advice.routing_frontier", routing.FRONTIER_COLUMNS),
    ROUTING_PLAN_KEY: ("advice.routing_plan", routing.PLAN_COLUMNS),
    ROUTING_CANDIDATES_KEY: ("advice.routing_candidates", routing.CANDIDATE_COLUMNS),
    RIGHTSIZING_HOURLY_KEY: ("advice.rightsizing_hourly", rightsizing.HOURLY_COLUMNS),
    RIGHTSIZING_DAILY_KEY: ("advice.rightsizing_daily", rightsizing.DAILY_COLUMNS),
    SHIFTING_DAILY_KEY: ("advice.shifting_daily", shifting.DAILY_COLUMNS),
}
SETTINGS_TABLE = "advice.settings"
SUMMARY_TABLE = "advice.summary"
DAILY_KEYS = tuple(TABLES)


def _spec(key: dg.AssetKey, deps: list[dg.AssetKey], description: str) -> dg.AssetSpec:
    return dg.AssetSpec(key, group_name=GROUP, kinds={"duckdb"}, owners=OWNERS, deps=deps, description=description)


def _clusters(con) -> dict[str, str]:
    """cluster id -> gpu_model, from raw.clusters (clusters.yml)."""
    return {c: g or "" for c, g in con.execute("select cluster, gpu_model from raw.clusters").fetchall()}


def _md(df: pd.DataFrame, limit: int = 30) -> str:
    """A markdown table of the first ``limit`` rows (numbers to 4 significant digits)."""
    if df.empty:
        return "none"
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    for r in df.head(limit).itertuples(index=False):  # display only
        lines.append("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r) + " |")
    return "\n".join(lines)


def _not_configured(con, keys, day, part: str, note: str):
    """Clear the day's rows of ``keys`` and record why there is no advice; the results say so."""
    for key in keys:
        table, types = TABLES[key]
        store.replace_day(con, table, types, pd.DataFrame(), day)
    store.set_status(con, day, part, store.STATUS_NOT_CONFIGURED, note)
    return [
        dg.MaterializeResult(asset_key=key, metadata={"dagster/row_count": 0, "note": dg.MetadataValue.text(note)})
        for key in keys
    ]


def _refuse_spark(settings: ImpactSettings) -> None:
    if refused := settings.duckdb_only("Advice"):
        raise dg.Failure(description=refused)


def _section(con, settings: ImpactSettings, keys, day, part: str, section: str) -> tuple[dict | None, list]:
    """advice.yml and, when it or its ``section`` is absent, the results that say so (the day's rows cleared)."""
    advice = cfgs.load_advice(settings.data_path)
    if advice is None or advice.get(section) is None:
        note = notes.no_advice(settings.data_path, part, None if advice is None else section)
        return None, _not_configured(con, keys, day, part, note)
    return advice, []


def _fail(con, keys, day, part: str, exc: AdviceConfigError) -> dg.Failure:
    """Clear the day's rows of ``keys`` (no stale advice survives a bad configuration), record the error."""
    for key in keys:
        table, types = TABLES[key]
        store.replace_day(con, table, types, pd.DataFrame(), day)
    store.set_status(con, day, part, store.STATUS_FAILED, str(exc))
    return dg.Failure(description=str(exc), metadata={"key": dg.MetadataValue.text(exc.key)})


# ------------------------------------------------------------------------------------------------- routing

ROUTING_KEYS = (ROUTING_FRONTIER_KEY, ROUTING_PLAN_KEY, ROUTING_CANDIDATES_KEY)
ROUTING_DEPS = [REQUEST_IMPACT_KEY, HOUR_INTENSITY_KEY, DAY_FACTORS_KEY, FITS_KEY, CLUSTERS_KEY]


@dg.multi_asset(
    specs=[
        _spec(
            ROUTING_FRONTIER_KEY, ROUTING_DEPS,
            "What the day would have cost routed energy-optimally (Wilkins, Keshav, Mortier, HotCarbon 2024): per "
            "zeta of the sweep, the plan's IT energy, operational carbon at the hours the requests ran, "
            "query-weighted accuracy and candidate shares, against the day as it ran (measured and modelled) "
            "and a fixed reference (every request on the most accurate candidate). Pareto plot in the metadata.",
        ),
        _spec(
            ROUTING_PLAN_KEY, [ROUTING_FRONTIER_KEY],
            "The plan at the configured zeta: per (tau_in, tau_out) bin of the day's re-routable requests, how many "
            "queries each candidate serves, with their predicted energy and carbon.",
        ),
        _spec(
            ROUTING_CANDIDATES_KEY, ROUTING_DEPS,
            "The routing candidates of the day as priced: accuracy and its source, the energy (and runtime) model "
            "and where it comes from (warehouse fit or advice.yml), its fitted range, and how many requests its "
            "model does not cover (negative prediction, outside the fitted range).",
        ),
    ],
    partitions_def=DAILY_PARTITIONS,
    backfill_policy=DAILY_BACKFILL_POLICY,
)  # fmt: skip
def routing_advice(context: dg.AssetExecutionContext, settings: ImpactSettings):
    """Routing advice for one day; replaces the day's rows."""
    day = dt.date.fromisoformat(context.partition_key)
    _refuse_spark(settings)
    with warehouse(settings.warehouse_path) as con:
        try:
            advice, skipped = _section(con, settings, ROUTING_KEYS, day, "routing", "routing")
            if advice is None:
                yield from skipped
                return
            cfg = cfgs.routing_config(advice, _clusters(con))
            fits = routing.latest_fits(con)
            ranges = routing.fit_token_ranges(con, day, routing.read_profiling(settings.data_path))
            models = routing.resolve_candidates(cfg, fits, ranges)
            cells, targets = routing.read_cells(con, day, cfg, sorted({m.candidate.cluster for m in models
                                                                      if m.candidate.cluster}))  # fmt: skip
            result = routing.route_day(day, cfg, models, cells, targets, fits)
        except AdviceConfigError as exc:
            raise _fail(con, ROUTING_KEYS, day, "routing", exc) from None
        for key, frame in zip(ROUTING_KEYS, (result.frontier, result.plan, result.candidates)):
            table, types = TABLES[key]
            store.replace_day(con, table, types, frame, day)
        assumptions = notes.routing(cfg, models, result)
        store.set_status(con, day, "routing", store.STATUS_OK, f"plan at zeta {cfg.zeta:g}", assumptions)

    frontier = result.frontier
    plan_row = frontier[frontier["is_plan"]]
    numbers = {}
    if len(plan_row):
        r = plan_row.iloc[0]
        numbers = {
            f"plan_{name}": dg.MetadataValue.float(float(r[name]))
            for name in ("energy_kwh", "accuracy", "saving_kwh", "saving_vs_measured_kwh", "operational_kg_co2e")
            if pd.notna(r[name])
        }
    plot = {}
    if len(frontier):
        from orchestration.lib.advice.plots import pareto_png
        from orchestration.lib.model_plots import png_data_uri

        png = png_data_uri(pareto_png(frontier, f"routing frontier {day}"))
        plot = {"pareto": dg.MetadataValue.md(f"![energy against accuracy]({png})")}
    shown = frontier.drop(columns=["reference", "day"]).assign(
        shares=frontier["shares"].map(lambda s: ", ".join(f"{k} {v:.3f}" for k, v in s.items()))
    ) if len(frontier) else frontier  # fmt: skip
    yield dg.MaterializeResult(
        asset_key=ROUTING_FRONTIER_KEY,
        metadata={
            "dagster/row_count": dg.MetadataValue.int(len(frontier)),
            "requests_routed": dg.MetadataValue.int(result.requests),
            "requests_not_routed": dg.MetadataValue.int(result.requests_not_routed),
            "reference": dg.MetadataValue.text(result.reference),
            "frontier": dg.MetadataValue.md(_md(shown)),
            "assumptions": dg.MetadataValue.md("\n".join(f"- {line}" for line in assumptions.splitlines())),
            **numbers,
            **plot,
        },
    )
    yield dg.MaterializeResult(
        asset_key=ROUTING_PLAN_KEY,
        metadata={"dagster/row_count": dg.MetadataValue.int(len(result.plan)),
                  "zeta": dg.MetadataValue.float(cfg.zeta),
                  "by_candidate": dg.MetadataValue.md(_md(
                      result.plan.groupby("candidate", as_index=False)[["requests", "energy_kwh"]].sum()))},
    )  # fmt: skip
    yield dg.MaterializeResult(
        asset_key=ROUTING_CANDIDATES_KEY,
        metadata={"dagster/row_count": dg.MetadataValue.int(len(result.candidates)),
                  "candidates": dg.MetadataValue.md(_md(result.candidates[
                      ["candidate", "accuracy", "energy_source", "fitted_range_source", "requests_eligible",
                       "requests_excluded_negative", "requests_excluded_range"]]))},
    )  # fmt: skip


# --------------------------------------------------------------------------------------------- rightsizing

RIGHTSIZING_KEYS = (RIGHTSIZING_HOURLY_KEY, RIGHTSIZING_DAILY_KEY)


@dg.multi_asset(
    specs=[
        _spec(
            RIGHTSIZING_HOURLY_KEY,
            [WINDOW_ENERGY_KEY, POOL_WINDOW_ENERGY_KEY, HOUR_INTENSITY_KEY, DAY_FACTORS_KEY, DAY_PARAMS_KEY,
             REQUEST_ENERGY_KEY, CLUSTERS_KEY],
            "Per cluster and UTC hour: the GPUs present (mean, from telemetry), the GPUs the hour's peak load needed "
            "at the capacity per GPU (declared, or measured against the latency SLO), and the idle energy, "
            "operational carbon (the hour's grid intensity, PUE) and embodied carbon scaling in would have avoided.",
        ),
        _spec(
            RIGHTSIZING_DAILY_KEY, [RIGHTSIZING_HOURLY_KEY, CLUSTER_DAILY_KEY],
            "Per cluster and day: the hours of advice.rightsizing_hourly summed, against the metered IT energy, with "
            "the capacity per GPU used and where it comes from.",
        ),
    ],
    partitions_def=DAILY_PARTITIONS,
    backfill_policy=DAILY_BACKFILL_POLICY,
)  # fmt: skip
def rightsizing_advice(context: dg.AssetExecutionContext, settings: ImpactSettings):
    """Rightsizing advice for one day; replaces the day's rows."""
    day = dt.date.fromisoformat(context.partition_key)
    _refuse_spark(settings)
    with warehouse(settings.warehouse_path) as con:
        try:
            advice, skipped = _section(con, settings, RIGHTSIZING_KEYS, day, "rightsizing", "rightsizing")
            if advice is None:
                yield from skipped
                return
            cfg = cfgs.rightsizing_config(advice, sorted(_clusters(con)))
            caps = rightsizing.capacities(con, day, cfg)
        except AdviceConfigError as exc:
            raise _fail(con, RIGHTSIZING_KEYS, day, "rightsizing", exc) from None
        hours = rightsizing.hourly(con, day, caps)
        daily = rightsizing.daily(con, day, hours, caps)
        for key, frame in zip(RIGHTSIZING_KEYS, (hours, daily)):
            table, types = TABLES[key]
            store.replace_day(con, table, types, frame, day)
        total = float(daily["avoidable_energy_kwh"].sum()) if len(daily) else 0.0
        store.set_status(con, day, "rightsizing", store.STATUS_OK, f"{total:.3f} kWh avoidable",
                         notes.rightsizing(cfg, daily))  # fmt: skip
    plot = {}
    if len(hours):
        from orchestration.lib.advice.plots import rightsizing_png
        from orchestration.lib.model_plots import png_data_uri

        png = png_data_uri(rightsizing_png(hours, f"GPUs present and kept, {day}"))
        plot = {"gpus": dg.MetadataValue.md(f"![GPUs present and kept per hour]({png})")}
    yield dg.MaterializeResult(
        asset_key=RIGHTSIZING_HOURLY_KEY,
        metadata={"dagster/row_count": dg.MetadataValue.int(len(hours)),
                  "preview": dg.MetadataValue.md(_md(hours.drop(columns=["day"]), limit=48)), **plot},
    )  # fmt: skip
    yield dg.MaterializeResult(
        asset_key=RIGHTSIZING_DAILY_KEY,
        metadata={"dagster/row_count": dg.MetadataValue.int(len(daily)),
                  "avoidable_energy_kwh": dg.MetadataValue.float(total),
                  "daily": dg.MetadataValue.md(_md(daily.drop(columns=["day"])))},
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------ shifting


@dg.asset(
    key=SHIFTING_DAILY_KEY,
    group_name=GROUP,
    kinds={"duckdb"},
    owners=OWNERS,
    deps=[REQUEST_IMPACT_KEY, HOUR_INTENSITY_KEY, GRID_HOURLY_KEY],
    partitions_def=DAILY_PARTITIONS,
    backfill_policy=DAILY_BACKFILL_POLICY,
)
def shifting_daily(context: dg.AssetExecutionContext, settings: ImpactSettings):
    """Carbon-aware shifting: per cluster and day, the operational carbon the deferrable requests (by tenant,
    endpoint, model or cluster in advice.yml) emitted, and what they would have emitted at the cleanest hour within
    their allowed delay, at their measured energy (a request only moves to a cleaner hour: the saving is never
    negative). Replaces the day's rows."""
    day = dt.date.fromisoformat(context.partition_key)
    _refuse_spark(settings)
    with warehouse(settings.warehouse_path) as con:
        try:
            advice, skipped = _section(con, settings, (SHIFTING_DAILY_KEY,), day, "shifting", "deferrable")
            if advice is None:
                yield from skipped
                return
            cfg = cfgs.shifting_config(advice)
        except AdviceConfigError as exc:
            raise _fail(con, (SHIFTING_DAILY_KEY,), day, "shifting", exc) from None
        table = shifting.shifting_daily(con, day, cfg)
        store.replace_day(con, *TABLES[SHIFTING_DAILY_KEY], table, day)
        saving = float(table["saving_kg_co2e"].sum()) if len(table) else 0.0
        store.set_status(con, day, "shifting", store.STATUS_OK, f"{saving:.3f} kg CO2e", notes.shifting(cfg))
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(len(table)),
            "saving_kg_co2e": dg.MetadataValue.float(saving),
            "deferrable": dg.MetadataValue.text(cfg.deferrable.describe()),
            "daily": dg.MetadataValue.md(_md(table.drop(columns=["day"]))),
        }
    )


# ------------------------------------------------------------------------------------------------ settings


# The profiling runs are not an asset: the settings follow the model fits, which read and validate the same runs
# (their rejected rows land in raw.rejected_rows).
@dg.asset(key=SETTINGS_KEY, group_name=GROUP, kinds={"duckdb"}, owners=OWNERS, deps=[FITS_KEY])
def settings_advice(context: dg.AssetExecutionContext, settings: ImpactSettings):
    """Operating settings: per model and hardware, from profiling runs (profiling/**) that carry settings columns
    (gpu_clock_mhz, power_limit_w, tensor_parallel, batch_size), each measured setting's energy per output token
    and latency per output token, and the least-energy setting that meets the latency SLO (advice.yml). Nothing is
    claimed for a setting that was not profiled. Replaced each run."""
    _refuse_spark(settings)
    with warehouse(settings.warehouse_path) as con:
        try:
            advice = cfgs.load_advice(settings.data_path)
            cfg = cfgs.settings_config(advice)
        except AdviceConfigError as exc:
            store.replace_all(con, SETTINGS_TABLE, gpu_settings.TABLE_COLUMNS, pd.DataFrame())
            store.set_status(con, None, "settings", store.STATUS_FAILED, str(exc))
            raise dg.Failure(description=str(exc), metadata={"key": dg.MetadataValue.text(exc.key)}) from None
        if cfg is None:
            note = notes.no_advice(settings.data_path, "settings", None)
            store.replace_all(con, SETTINGS_TABLE, gpu_settings.TABLE_COLUMNS, pd.DataFrame())
            store.set_status(con, None, "settings", store.STATUS_NOT_CONFIGURED, note)
            return dg.MaterializeResult(metadata={"dagster/row_count": 0, "note": dg.MetadataValue.text(note)})
        runs, bad = gpu_settings.read_settings_runs(settings.data_path)
        table = gpu_settings.settings_table(runs, cfg)
        store.replace_all(con, SETTINGS_TABLE, gpu_settings.TABLE_COLUMNS, table)
        detail = (f"{int(table['recommended'].sum())} recommended setting(s)" if len(table) else
                  f"no profiling runs with settings columns ({', '.join(gpu_settings.SETTINGS_COLUMNS)}) under "
                  f"{settings.data_path / 'profiling'}: nothing claimed")  # fmt: skip
        store.set_status(con, None, "settings", store.STATUS_OK if len(table) else store.STATUS_NOT_CONFIGURED,
                         detail, notes.settings(cfg, len(runs), bad))  # fmt: skip
    if bad:
        context.log.warning(f"{bad} profiling row(s) left out: a settings value is not a number")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(len(table)),
            "runs": dg.MetadataValue.int(len(runs)),
            "rows_left_out": dg.MetadataValue.int(bad),
            "note": dg.MetadataValue.text(detail),
            "settings": dg.MetadataValue.md(_md(table)),
        }
    )


# ------------------------------------------------------------------------------------------------- summary


@dg.asset(key=SUMMARY_KEY, group_name=GROUP, kinds={"duckdb"}, owners=OWNERS, deps=list(DAILY_KEYS))
def advice_summary(context: dg.AssetExecutionContext, settings: ImpactSettings):
    """The savings of the trailing 28 days of advice (ending on the latest day advised), per part and cluster:
    routing at the configured zeta against the day as it ran (modelled), rightsizing's avoidable idle energy and
    carbon, shifting's carbon saving; each day is its own counterfactual, the window's figures are their sums.
    Replaced each run."""
    _refuse_spark(settings)
    with warehouse(settings.warehouse_path) as con:
        table = summary.build(con)
        store.replace_all(con, SUMMARY_TABLE, summary.COLUMNS, table)
    window = (f"{table['window_start'].iloc[0]} to {table['window_end'].iloc[0]}" if len(table)
              else "no advice yet (no advice.yml, or no day advised)")  # fmt: skip
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(len(table)),
            "window": dg.MetadataValue.text(window),
            "summary": dg.MetadataValue.md(_md(table.drop(columns=["window_start", "window_end"]))),
        }
    )
