"""Operations: the analysts' published warehouse and retention (orchestration/lib/operations, docs/operations.md).

`operations/published_day`, `operations/published_models` and `operations/published_advice` come last in the daily,
the models and the advice job: they run once everything upstream has materialised and no blocking check has failed,
and publish the working warehouse for analysts (an atomic swap of a small catalogue; the per-request rows are
shared Parquet day files, not copied). A run that fails leaves the analysts' warehouse as it was. `operations/retention` deletes the days each layer no
longer keeps, then publishes, so the analysts' warehouse drops them too.
"""

import dagster as dg

from orchestration.defs.advice.assets import (
    advice_summary,
    rightsizing_advice,
    routing_advice,
    settings_advice,
    shifting_daily,
)
from orchestration.defs.comparisons.assets import cmp_ecologits, cmp_ecologits_day_parts
from orchestration.defs.factors.assets import impact_factors
from orchestration.defs.models.assets import energy_models, fit_sample_days
from orchestration.defs.partitions import DAILY_BACKFILL_POLICY, DAILY_PARTITIONS
from orchestration.defs.predictions.assets import request_predictions
from orchestration.defs.raw.assets import raw_clusters, raw_requests, raw_telemetry_samples
from orchestration.defs.reports.assets import daily_report
from orchestration.defs.resources import ImpactSettings
from orchestration.defs.transform.assets import impact_dbt_models
from orchestration.lib.operations import publish, retention
from orchestration.lib.warehouse import connect

OWNERS = ["team:platform"]
GROUP = "operations"
PUBLISHED_DAY_KEY = dg.AssetKey(["operations", "published_day"])
PUBLISHED_MODELS_KEY = dg.AssetKey(["operations", "published_models"])
PUBLISHED_ADVICE_KEY = dg.AssetKey(["operations", "published_advice"])
RETENTION_KEY = dg.AssetKey(["operations", "retention"])

# what each publication waits for: every asset of the daily job, every asset of the models job
# (tests/test_definitions.py checks that no asset of either job is missing here)
DAILY_ASSETS = (raw_clusters, raw_requests, raw_telemetry_samples, impact_factors, impact_dbt_models,
                cmp_ecologits_day_parts, fit_sample_days)
MODELS_ASSETS = (energy_models, request_predictions, cmp_ecologits, daily_report)
ADVICE_ASSETS = (routing_advice, rightsizing_advice, shifting_daily, settings_advice, advice_summary)


def _keys(assets) -> list[dg.AssetKey]:
    return sorted({key for a in assets for key in a.keys}, key=lambda k: k.to_user_string())


def publication_metadata(report: publish.Publication) -> dict[str, dg.MetadataValue]:
    rows = "\n".join(f"| {name} | {n:,} |" for name, n in report.tables.items())
    shared = "\n".join(f"| {name} | {n} |" for name, n in report.parquet_relations.items())
    metadata = {
        "path": dg.MetadataValue.path(str(report.path)),
        "version": dg.MetadataValue.text(report.version),
        "seconds": dg.MetadataValue.float(round(report.seconds, 3)),
        "catalogue_mb": dg.MetadataValue.float(round(report.catalogue_bytes / 1e6, 3)),
        "rows_copied": dg.MetadataValue.int(sum(report.tables.values())),
        "views": dg.MetadataValue.int(len(report.views)),
        "parquet_files_shared": dg.MetadataValue.int(sum(report.parquet_relations.values())),
        "files_deleted": dg.MetadataValue.int(report.garbage.files),
        "mb_deleted": dg.MetadataValue.float(round(report.garbage.bytes / 1e6, 3)),
        "contents": dg.MetadataValue.md(
            "| copied table | rows |\n|---|---:|\n" + rows
            + "\n\n| shared (Parquet files, not copied) | files |\n|---|---:|\n" + shared
        ),
    }
    if report.left_out:
        metadata["left_out"] = dg.MetadataValue.md(
            "\n".join(f"- {name}: {why}" for name, why in report.left_out.items())
        )
    return metadata


def _publish(context: dg.AssetExecutionContext, settings: ImpactSettings) -> dg.MaterializeResult:
    if skipped := settings.duckdb_only("The analysts' publication"):
        context.log.info(skipped)
        return dg.MaterializeResult(metadata={"skipped": dg.MetadataValue.text(skipped)})
    report = publish.publish(settings.warehouse_path, settings.published_path)
    context.log.info(f"published for analysts: {report.summary()}")
    return dg.MaterializeResult(metadata=publication_metadata(report))


@dg.asset(
    key=PUBLISHED_DAY_KEY,
    group_name=GROUP,
    kinds={"duckdb", "parquet"},
    owners=OWNERS,
    partitions_def=DAILY_PARTITIONS,
    backfill_policy=DAILY_BACKFILL_POLICY,
    deps=_keys(DAILY_ASSETS),
)
def published_day(context: dg.AssetExecutionContext, settings: ImpactSettings) -> dg.MaterializeResult:
    """The analysts' warehouse (`<warehouse stem>.analysts.duckdb`, or IMPACT_PUBLISHED_WAREHOUSE) with this day:
    republished once every asset of the day has materialised and no blocking check failed. A new connection sees
    the new version; one already open keeps a consistent view of the version it opened."""
    return _publish(context, settings)


@dg.asset(
    key=PUBLISHED_MODELS_KEY,
    group_name=GROUP,
    kinds={"duckdb", "parquet"},
    owners=OWNERS,
    deps=_keys(MODELS_ASSETS),
)
def published_models(context: dg.AssetExecutionContext, settings: ImpactSettings) -> dg.MaterializeResult:
    """The analysts' warehouse with the new model fits, predictions and comparisons: republished once the models
    job's assets have materialised."""
    return _publish(context, settings)


@dg.asset(
    key=PUBLISHED_ADVICE_KEY,
    group_name=GROUP,
    kinds={"duckdb", "parquet"},
    owners=OWNERS,
    partitions_def=DAILY_PARTITIONS,
    backfill_policy=DAILY_BACKFILL_POLICY,
    deps=_keys(ADVICE_ASSETS),
)
def published_advice(context: dg.AssetExecutionContext, settings: ImpactSettings) -> dg.MaterializeResult:
    """The analysts' warehouse with the day's advice: republished once the advice job's assets have
    materialised (a mistake in advice.yml fails the advice only: the day's energy and impact were published)."""
    return _publish(context, settings)


@dg.asset(key=RETENTION_KEY, group_name=GROUP, kinds={"duckdb"}, owners=OWNERS)
def warehouse_retention(context: dg.AssetExecutionContext, settings: ImpactSettings) -> dg.MaterializeResult:
    """Deletes the days each layer no longer keeps (raw inputs 35 days, per-request and per-window rows 400 days,
    daily aggregates kept: IMPACT_RETAIN_RAW_DAYS, IMPACT_RETAIN_REQUEST_DAYS, IMPACT_RETAIN_AGGREGATE_DAYS), counted
    back from the newest day in the warehouse, then republishes the analysts' warehouse without them. Retired raw
    days are recorded: re-materialising one without its input files fails instead of writing zeros."""
    if skipped := settings.duckdb_only("Retention"):
        context.log.info(skipped)
        return dg.MaterializeResult(metadata={"skipped": dg.MetadataValue.text(skipped)})
    policy = retention.Policy.from_env()
    with connect(settings.warehouse_path) as con:
        report = retention.apply(con, settings.warehouse_path, policy)
    publication = publish.publish(settings.warehouse_path, settings.published_path)
    for table in report.not_covered:
        context.log.warning(f"{table} has a day column but no retention layer: kept whole")
    return dg.MaterializeResult(metadata={**retention_metadata(report), "published": publication.summary()})


def retention_metadata(report: retention.Report) -> dict[str, dg.MetadataValue]:
    lines = ["| table | layer | before | days | rows |", "|---|---|---|---:|---:|"]
    lines += [f"| {d.table} | {d.layer} | {d.cutoff} | {len(d.days)} | {d.rows:,} |" for d in report.deletions]
    layers = report.by_layer()
    metadata = {
        "as_of": dg.MetadataValue.text(str(report.as_of)),
        "rows_deleted": dg.MetadataValue.int(report.rows),
        "deleted": dg.MetadataValue.md("\n".join(lines) if report.deletions else "nothing to delete"),
        "prometheus_pulls_deleted": dg.MetadataValue.int(len(report.prometheus_files)),
        "policy": dg.MetadataValue.json(
            {layer: report.policy.days(layer) or "keep" for layer in retention.DEFAULT_DAYS}
        ),
    }
    for layer, (days, rows) in layers.items():
        metadata[f"{layer}_days_deleted"] = dg.MetadataValue.int(days)
        metadata[f"{layer}_rows_deleted"] = dg.MetadataValue.int(rows)
    return metadata
