"""Jobs: the daily partitioned pipeline (raw -> staging -> intermediate -> marts, with checks)."""

import dagster as dg

from orchestration.defs.comparisons.assets import DAY_PARTS_KEYS
from orchestration.defs.models.assets import FIT_SAMPLE_DAYS_KEY
from orchestration.defs.operations.assets import PUBLISHED_ADVICE_KEY, PUBLISHED_DAY_KEY, PUBLISHED_MODELS_KEY

DAILY_JOB_NAME = "impact_daily"
MODELS_JOB_NAME = "impact_models"
ADVICE_JOB_NAME = "impact_advice"

# The per-day parts of the models' and the comparison's trailing windows are reduced with their day (daily job);
# the fits and the comparison read the window's parts (models job).
PER_DAY_PARTS = dg.AssetSelection.assets(*DAY_PARTS_KEYS, FIT_SAMPLE_DAYS_KEY)
DAILY_SELECTION = dg.AssetSelection.groups("raw", "factors", "staging", "intermediate", "marts") | PER_DAY_PARTS
MODELS_SELECTION = dg.AssetSelection.groups("models", "comparisons", "reports") - PER_DAY_PARTS
# Advice (docs/advice.md) in its own job, after the models job: routing prices candidates with the latest fits, and a
# mistake in advice.yml fails advice assets only, never the day's energy and impact run.
ADVICE_SELECTION = dg.AssetSelection.groups("advice")
# each job ends by publishing the warehouse for analysts (defs/operations: skipped when the job failed)
DAILY_SELECTION = DAILY_SELECTION | dg.AssetSelection.assets(PUBLISHED_DAY_KEY)
MODELS_SELECTION = MODELS_SELECTION | dg.AssetSelection.assets(PUBLISHED_MODELS_KEY)
ADVICE_SELECTION = ADVICE_SELECTION | dg.AssetSelection.assets(PUBLISHED_ADVICE_KEY)

impact_daily_job = dg.define_asset_job(
    name=DAILY_JOB_NAME,
    selection=DAILY_SELECTION,
    description="Materialise one UTC day: load inputs and factors, attribute energy and impact, run the invariants.",
)

impact_models_job = dg.define_asset_job(
    name=MODELS_JOB_NAME,
    selection=MODELS_SELECTION,
    description="Fit the energy and runtime models on the marts' trailing window and profiling runs, with ANOVA, "
    "form comparison and per-request predictions; compare measured impact with EcoLogits and ML.ENERGY; draw the "
    "latest day's report.",
)

impact_advice_job = dg.define_asset_job(
    name=ADVICE_JOB_NAME,
    selection=ADVICE_SELECTION,
    description="Advise on one UTC day from its measured data (advice.yml): energy-optimal routing, rightsizing, "
    "carbon-aware shifting, operating settings, and the trailing-window summary.",
)
