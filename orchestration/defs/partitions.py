"""Daily UTC partitions: one partition per calendar day of telemetry and requests."""

import os
import warnings

import dagster as dg

from orchestration import settings

DAILY_PARTITIONS = dg.DailyPartitionsDefinition(
    start_date=os.environ.get(settings.PARTITIONS_START_ENV, settings.DEFAULT_PARTITIONS_START),
    timezone="UTC",
    end_offset=1,
)

# A backfill launches one run per day: each run replaces exactly one day's rows, the same unit a scheduled run
# works in (and dbt receives the day as a single variable). Every daily-partitioned asset uses this policy.
DAILY_BACKFILL_POLICY = dg.BackfillPolicy.multi_run(max_partitions_per_run=1)

# Dagster marks the `backfill_policy` parameter of @asset as beta and warns on every load of the definitions,
# i.e. on every `impact run`. The product relies on it deliberately (above); only that one warning is silenced.
warnings.filterwarnings(
    "ignore", message=r"Parameter `backfill_policy` of function `asset`", category=dg.BetaWarning
)
