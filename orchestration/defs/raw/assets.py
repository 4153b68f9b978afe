"""Raw layer: inputs loaded as they are into the warehouse, bad rows kept in raw.rejected_rows with a reason."""


import datetime as dt

import dagster as dg

from orchestration.defs.partitions import DAILY_PARTITIONS
from orchestration.defs.resources import ImpactSettings
from orchestration.lib import ingest
from orchestration.lib.warehouse import warehouse

OWNERS = ["team:platform"]
CLUSTERS_KEY = dg.AssetKey(["raw", "clusters"])
REQUESTS_KEY = dg.AssetKey(["raw", "requests"])
TELEMETRY_KEY = dg.AssetKey(["raw", "telemetry_samples"])


def summary_markdown(summary: ingest.IngestSummary) -> str:
    """A short report of one load: counts, then rejections and ignored rows by reason."""
    lines = [
        (
            f"**{summary.input}** {summary.partition_day or ''}: {summary.files} file(s), "
            f"{summary.lines_in_scope} rows in scope = {summary.loaded} loaded + {summary.rejected} rejected"
        )
    ]
    for title, counts in (("Rejected", summary.rejected_by_reason), ("Ignored", summary.ignored_by_reason)):
        if counts:
            where = " (see raw.rejected_rows)" if title == "Rejected" else ""
            lines += ["", f"| {title}{where} | rows |", "|---|---:|"]
            lines += [f"| {reason} | {n} |" for reason, n in counts.items()]
    return "\n".join(lines)


def _result(context: dg.AssetExecutionContext, summary: ingest.IngestSummary) -> dg.MaterializeResult:
    if summary.rejected:
        context.log.warning(
            f"{summary.input} {summary.partition_day}: {summary.rejected} row(s) rejected: "
            + "; ".join(f"{n} x {reason}" for reason, n in summary.rejected_by_reason.items())
        )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(summary.loaded),
            "rows_rejected": dg.MetadataValue.int(summary.rejected),
            "rows_in_scope": dg.MetadataValue.int(summary.lines_in_scope),
            "files": dg.MetadataValue.int(summary.files),
            "summary": dg.MetadataValue.md(summary_markdown(summary)),
        }
    )


@dg.asset(
    key=CLUSTERS_KEY,
    group_name="raw",
    kinds={"duckdb", "yaml"},
    owners=OWNERS,
)
def raw_clusters(context: dg.AssetExecutionContext, settings: ImpactSettings) -> dg.MaterializeResult:
    """Cluster descriptions from clusters.yml: region, GPU model and count per node, host idle/max power, PUE,
    WUE, embodied carbon and lifetime. Invalid entries are rejected with the reason; the rest replace the table."""
    with warehouse(settings.warehouse_path) as con:
        summary = ingest.ingest_clusters(con, settings.data_path)
    return _result(context, summary)


@dg.asset(
    key=REQUESTS_KEY,
    group_name="raw",
    kinds={"duckdb"},
    owners=OWNERS,
    partitions_def=DAILY_PARTITIONS,
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=1),
    deps=[CLUSTERS_KEY],
)
def raw_requests(context: dg.AssetExecutionContext, settings: ImpactSettings) -> dg.MaterializeResult:
    """Request log rows (JSON lines, CSV, Parquet or OTLP GenAI spans) of every request that overlaps the day.
    Malformed rows, bad timestamps, missing/negative/NaN durations, bad token counts, missing model, unknown
    cluster and duplicate request ids go to raw.rejected_rows. Re-materialising a day replaces it."""
    day = dt.date.fromisoformat(context.partition_key)
    with warehouse(settings.warehouse_path) as con:
        summary = ingest.ingest_requests(con, settings.data_path, day, settings.max_request_duration_s)
    return _result(context, summary)


@dg.asset(
    key=TELEMETRY_KEY,
    group_name="raw",
    kinds={"duckdb", "prometheus"},
    owners=OWNERS,
    partitions_def=DAILY_PARTITIONS,
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=1),
    deps=[CLUSTERS_KEY],
)
def raw_telemetry_samples(context: dg.AssetExecutionContext, settings: ImpactSettings) -> dg.MaterializeResult:
    """GPU and host telemetry samples (DCGM exporter, Triton, node_exporter names; long-format CSV/Parquet or
    Prometheus text with timestamps) for the day plus a margin, in SI units: DCGM % -> 0-1, mJ -> J. Samples of
    metrics the method does not use are counted as ignored; bad samples go to raw.rejected_rows."""
    day = dt.date.fromisoformat(context.partition_key)
    with warehouse(settings.warehouse_path) as con:
        summary = ingest.ingest_telemetry(con, settings.data_path, day, settings.telemetry_margin_s)
    return _result(context, summary)
