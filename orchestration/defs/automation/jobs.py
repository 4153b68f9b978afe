"""Jobs: the daily partitioned pipeline (raw -> staging -> intermediate -> marts, with checks)."""

import dagster as dg

from orchestration.defs.partitions import DAILY_PARTITIONS

DAILY_JOB_NAME = "impact_daily"
MODELS_JOB_NAME = "impact_models"

DAILY_SELECTION = dg.AssetSelection.groups("raw", "factors", "staging", "intermediate", "marts")

impact_daily_job = dg.define_asset_job(
    name=DAILY_JOB_NAME,
    selection=DAILY_SELECTION,
    partitions_def=DAILY_PARTITIONS,
    description="Materialise one UTC day: load inputs and factors, attribute energy and impact, run the invariants.",
)

impact_models_job = dg.define_asset_job(
    name=MODELS_JOB_NAME,
    selection=dg.AssetSelection.groups("models", "comparisons"),
    description="Fit the energy and runtime models on the marts' trailing window and profiling runs, with ANOVA, "
    "form comparison and per-request predictions; compare measured impact with EcoLogits and ML.ENERGY.",
)
