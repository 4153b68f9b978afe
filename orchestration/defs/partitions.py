"""Daily UTC partitions: one partition per calendar day of telemetry and requests."""

import os

import dagster as dg

from orchestration import settings

DAILY_PARTITIONS = dg.DailyPartitionsDefinition(
    start_date=os.environ.get(settings.PARTITIONS_START_ENV, settings.DEFAULT_PARTITIONS_START),
    timezone="UTC",
    end_offset=1,
)
