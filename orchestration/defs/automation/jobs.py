"""Jobs: the daily partitioned pipeline (raw -> staging -> intermediate -> marts, with checks)."""

import dagster as dg

from orchestration.defs.partitions import DAILY_PARTITIONS

DAILY_JOB_NAME = "impact_daily"

DAILY_SELECTION = dg.AssetSelection.groups("raw", "staging", "intermediate", "marts")

impact_daily_job = dg.define_asset_job(
    name=DAILY_JOB_NAME,
    selection=DAILY_SELECTION,
    partitions_def=DAILY_PARTITIONS,
    description="Materialise one UTC day: load inputs, attribute energy, run the invariants.",
)
