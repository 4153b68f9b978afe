"""The retention job (operations/retention: lib/operations/retention.py)."""

import dagster as dg

from orchestration.defs.operations.assets import RETENTION_KEY

RETENTION_JOB_NAME = "impact_retention"

impact_retention_job = dg.define_asset_job(
    name=RETENTION_JOB_NAME,
    selection=dg.AssetSelection.assets(RETENTION_KEY),
    description="Delete the days each warehouse layer no longer keeps, then republish the analysts' warehouse.",
)
