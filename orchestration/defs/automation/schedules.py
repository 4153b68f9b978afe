"""The daily schedule: yesterday's partition, a configurable number of hours after the UTC day closes."""

import os

import dagster as dg

from orchestration import settings
from orchestration.defs.automation.jobs import impact_advice_job, impact_daily_job, impact_models_job

DAILY_SCHEDULE_NAME = "impact_daily_schedule"
MODELS_SCHEDULE_NAME = "impact_models_schedule"
ADVICE_SCHEDULE_NAME = "impact_advice_schedule"


def schedule_lag_hours() -> int:
    """Hours to wait after midnight UTC before processing the day that just closed (late telemetry, log
    shipping). IMPACT_SCHEDULE_LAG_HOURS, 0-23, default 2."""
    raw = os.environ.get(settings.SCHEDULE_LAG_HOURS_ENV, str(settings.DEFAULT_SCHEDULE_LAG_HOURS))
    hours = int(raw)
    if not 0 <= hours <= 23:
        raise ValueError(f"{settings.SCHEDULE_LAG_HOURS_ENV} must be 0-23 hours, not {raw}")
    return hours


impact_daily_schedule = dg.build_schedule_from_partitioned_job(
    impact_daily_job,
    name=DAILY_SCHEDULE_NAME,
    hour_of_day=schedule_lag_hours(),
    minute_of_hour=0,
    description="Yesterday's partition (UTC), after the configured lag for late data.",
)


impact_models_schedule = dg.ScheduleDefinition(
    name=MODELS_SCHEDULE_NAME,
    job=impact_models_job,
    cron_schedule=f"0 {(schedule_lag_hours() + 1) % 24} * * *",
    execution_timezone="UTC",
    description="Refit the models an hour after the daily partition job, on the trailing window of the marts.",
)


impact_advice_schedule = dg.build_schedule_from_partitioned_job(
    impact_advice_job,
    name=ADVICE_SCHEDULE_NAME,
    hour_of_day=min(schedule_lag_hours() + 2, 23),
    minute_of_hour=0,
    description="Yesterday's advice (advice.yml), after the daily job and the model fits (runs are queued one at a "
    "time).",
)
