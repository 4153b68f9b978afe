"""marts.cmp_ecologits: per model x hardware x cluster, our measured per-request energy and carbon next to what
EcoLogits estimates for the same tokens, latency and model size, and ML.ENERGY's measured GPU energy per token.

A thin wrapper over orchestration.lib.ecologits_cmp (the method and its conventions are documented there)."""

import datetime as dt

import dagster as dg

from orchestration.defs.partitions import DAILY_BACKFILL_POLICY, DAILY_PARTITIONS
from orchestration.defs.resources import ImpactSettings
from orchestration.lib import ecologits_cmp
from orchestration.lib.warehouse import connect

OWNERS = ["team:sustainability"]
CMP_ECOLOGITS_KEY = dg.AssetKey(["marts", "cmp_ecologits"])
FCT_REQUEST_IMPACT_KEY = dg.AssetKey(["marts", "fct_request_impact"])
FCT_REQUEST_ENERGY_KEY = dg.AssetKey(["marts", "fct_request_energy"])  # the window's last day is read there
FACTORS_MODELS_KEY = dg.AssetKey(["factors", "models"])
CMP_TABLE = "marts.cmp_ecologits"
DAY_COMBOS_KEY = dg.AssetKey(["marts", "cmp_ecologits_day_combos"])
DAY_BINS_KEY = dg.AssetKey(["marts", "cmp_ecologits_day_bins"])
# the per-day parts run in the daily job, the comparison over the window in the models job
DAY_PARTS_KEYS = (DAY_COMBOS_KEY, DAY_BINS_KEY)


# the per-day parts: what each table holds
DAY_PARTS = {
    DAY_COMBOS_KEY: "Per start day x model x hardware x cluster x PUE x output tokens x latency bucket: the requests "
    "and the sums marts.cmp_ecologits adds up over its window (additive, so the window costs the same however much "
    "history the warehouse holds).",
    DAY_BINS_KEY: "Per start day x model x hardware x cluster x measure (facility Wh, accelerator Wh, operational "
    "gCO2e per request): how many requests had each value to 4 significant figures. The window's medians of "
    "marts.cmp_ecologits are read from the summed counts.",
}


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            key,
            group_name="comparisons",
            kinds={"duckdb"},
            owners=OWNERS,
            deps=[FCT_REQUEST_IMPACT_KEY],
            description=description,
        )
        for key, description in DAY_PARTS.items()
    ],
    partitions_def=DAILY_PARTITIONS,
    backfill_policy=DAILY_BACKFILL_POLICY,
)
def cmp_ecologits_day_parts(context: dg.AssetExecutionContext, settings: ImpactSettings):
    """The day's requests reduced for marts.cmp_ecologits (orchestration/lib/ecologits_cmp.py). The requests of
    earlier days that ran past midnight into this one are reduced again (this day completes them).
    Re-materialising a day replaces its rows."""
    day = dt.date.fromisoformat(context.partition_key)
    with connect(settings.warehouse_path) as con:
        combos, bins = ecologits_cmp.reduce_day(settings.marts(con), day, settings.max_request_duration_s)
    days = f"{day} (and the requests that ran into it from the days before)"
    yield dg.MaterializeResult(
        asset_key=DAY_COMBOS_KEY,
        metadata={"dagster/row_count": dg.MetadataValue.int(combos), "start_days": dg.MetadataValue.text(days)},
    )
    yield dg.MaterializeResult(
        asset_key=DAY_BINS_KEY,
        metadata={"dagster/row_count": dg.MetadataValue.int(bins), "start_days": dg.MetadataValue.text(days)},
    )


@dg.asset(
    key=CMP_ECOLOGITS_KEY,
    group_name="comparisons",
    kinds={"ecologits", "duckdb"},
    owners=OWNERS,
    deps=[*DAY_PARTS_KEYS, FCT_REQUEST_IMPACT_KEY, FCT_REQUEST_ENERGY_KEY, FACTORS_MODELS_KEY],
)
def cmp_ecologits(context: dg.AssetExecutionContext, settings: ImpactSettings) -> dg.MaterializeResult:
    """Measured vs estimated, per model x hardware x cluster over the trailing 28 days of
    marts.fct_request_impact: our mean IT, accelerator, host and facility energy (Wh/request) and operational
    carbon (g/request) against EcoLogits 0.11.3's estimate for the same output tokens and latency of each request
    and the model's parameter count (factors.models), at our PUE and at the grid mix each request actually used
    (and, labelled, at EcoLogits' default world mix). EcoLogits min/mean/max, ratios ours/EcoLogits and a verdict
    (within EcoLogits range +-25 %, below, above). Also ML.ENERGY v2's measured GPU J/output token (best-batched,
    smallest batch, batch-1 bound) for the same or a same-size model on the nearest GPU class, and whether our
    accelerator J/output token lies in its plausibility band (check mlenergy_plausibility). A model with no
    parameter count gets a row with that status. Replaces the table on each run."""
    with connect(settings.warehouse_path) as con:
        marts = settings.marts(con)  # (the Spark engine's, or this DuckDB warehouse)
        df = ecologits_cmp.build(marts)
        ecologits_cmp.replace_table(marts, df, CMP_TABLE)
    reduced = df.attrs.get("days_reduced", [])
    if reduced:
        context.log.info(
            f"reduced {len(reduced)} day(s) of the window that had no parts: {reduced[0]} to {reduced[-1]}"
        )
    for r in df[df["status"] != ecologits_cmp.STATUS_OK].itertuples(index=False):
        context.log.warning(f"{r.model} on {r.hardware} ({r.cluster}): {r.status}")
    window = (
        f"{df['window_start'].iloc[0]} to {df['window_end'].iloc[0]}"
        if len(df)
        else "no requests in marts.fct_request_impact"
    )
    calls = int(df["ecologits_calls"].max()) if len(df) and df["ecologits_calls"].notna().any() else 0
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(len(df)),
            "window": dg.MetadataValue.text(window),
            "ecologits_calls": dg.MetadataValue.int(calls),
            "days_reduced_here": dg.MetadataValue.int(len(reduced)),
            "comparison": dg.MetadataValue.md(ecologits_cmp.to_markdown(df)),
            "method": dg.MetadataValue.text(
                "EcoLogits 0.11.3 compute_llm_impacts per distinct (parameters, PUE, output tokens, latency to 3 "
                "significant figures); usage GWP scaled per request by the grid mix it used; ML.ENERGY v2 "
                "(Apache-2.0) band = [best-batched J/token / 1.5, batch-1 bound x 1.5]"
            ),
        }
    )
