"""Retention runs daily, after the daily and the models jobs."""

import dagster as dg

from orchestration.defs.automation.schedules import schedule_lag_hours
from orchestration.defs.operations.jobs import impact_retention_job

RETENTION_SCHEDULE_NAME = "impact_retention_schedule"

impact_retention_schedule = dg.ScheduleDefinition(
    name=RETENTION_SCHEDULE_NAME,
    job=impact_retention_job,
    cron_schedule=f"30 {(schedule_lag_hours() + 1) % 24} * * *",
    execution_timezone="UTC",
    description="Apply the retention settings (IMPACT_RETAIN_*_DAYS) half an hour after the models job starts.",
)
