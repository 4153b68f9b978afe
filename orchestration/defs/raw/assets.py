"""Raw layer: inputs loaded as they are into the warehouse, bad rows kept in raw.rejected_rows with a reason."""


import datetime as dt
from pathlib import Path

import dagster as dg

from orchestration.defs.partitions import DAILY_BACKFILL_POLICY, DAILY_PARTITIONS
from orchestration.defs.resources import ImpactSettings, PrometheusResource
from orchestration.lib.ingestion import fault_report, ingest
from orchestration.lib.ingestion import prometheus as prom_api
from orchestration.lib.warehouse import warehouse

OWNERS = ["team:platform"]
CLUSTERS_KEY = dg.AssetKey(["raw", "clusters"])
REQUESTS_KEY = dg.AssetKey(["raw", "requests"])
TELEMETRY_KEY = dg.AssetKey(["raw", "telemetry_samples"])
TELEMETRY_SERIES_KEY = dg.AssetKey(["raw", "telemetry_series"])
IMAGE_QUALITY_KEY = dg.AssetKey(["factors", "image_quality"])  # quality labels of image requests


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
    backfill_policy=DAILY_BACKFILL_POLICY,
    deps=[CLUSTERS_KEY, IMAGE_QUALITY_KEY],
)
def raw_requests(context: dg.AssetExecutionContext, settings: ImpactSettings) -> dg.MaterializeResult:
    """Request log rows (JSON lines, CSV, Parquet or OTLP GenAI spans) of every request that overlaps the day.
    Image requests (modality image) carry their size, images, steps, strength, guidance, quality label (its steps
    and size from factors.image_quality) and LoRA adapters. Malformed rows, bad timestamps, missing/negative/NaN
    durations, bad token counts, bad image fields, missing model, unknown cluster and duplicate request ids go to
    raw.rejected_rows. Re-materialising a day replaces it."""
    day = dt.date.fromisoformat(context.partition_key)
    with warehouse(settings.warehouse_path) as con:
        summary = ingest.ingest_requests(con, settings.data_path, day, settings.max_request_duration_s)
        findings = fault_report.duration_findings(con, [day], with_telemetry=False)
    for finding in findings:
        context.log.warning(finding)
    result = _result(context, summary)
    return dg.MaterializeResult(
        metadata={
            **(result.metadata or {}),
            "duration_unit_findings": dg.MetadataValue.md("\n".join(f"- {f}" for f in findings) or "none"),
        }
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            key=TELEMETRY_KEY,
            group_name="raw",
            kinds={"duckdb", "prometheus"},
            owners=OWNERS,
            deps=[CLUSTERS_KEY],
            description="Telemetry samples of the day plus a margin, in SI units (raw.telemetry_points, and the view "
            "raw.telemetry_samples over points and series).",
        ),
        dg.AssetSpec(
            key=TELEMETRY_SERIES_KEY,
            group_name="raw",
            kinds={"duckdb"},
            owners=OWNERS,
            deps=[CLUSTERS_KEY],
            description="Each telemetry series once: its labels as exported, the normalised node, the GPU's one name "
            "(index, UUID, PCI bus id tied together) and the logical series key (orchestration/lib/ingestion/identity.py).",
        ),
    ],
    partitions_def=DAILY_PARTITIONS,
    backfill_policy=DAILY_BACKFILL_POLICY,
    name="raw_telemetry_samples",
)
def raw_telemetry_samples(
    context: dg.AssetExecutionContext, settings: ImpactSettings, prometheus: PrometheusResource
):
    """GPU and host telemetry samples (DCGM exporter, Triton, node_exporter names) for the day plus a margin, in SI
    units: DCGM % -> 0-1, mJ -> J. From telemetry/ files (long-format CSV/Parquet or Prometheus text with
    timestamps), or, when a Prometheus URL is configured (IMPACT_PROMETHEUS_URL, `impact run --prometheus-url`),
    the raw samples of the clusters in clusters.yml pulled from that server. Samples of metrics the method does not
    use are counted as ignored; bad samples go to raw.rejected_rows. Node names are normalised and a GPU's index,
    UUID and PCI bus id mapped to one name (raw.telemetry_series). Re-materialising a day replaces it (late data:
    re-run the day)."""
    day = dt.date.fromisoformat(context.partition_key)
    if not prometheus.enabled:
        with warehouse(settings.warehouse_path) as con:
            summary = ingest.ingest_telemetry(con, settings.data_path, day, settings.telemetry_margin_s)
            series = _series_metadata(con)
        result = _result(context, summary)
        metadata = {**(result.metadata or {}), "source": dg.MetadataValue.text("files")}
    else:
        metadata, series = _telemetry_from_prometheus(context, settings, prometheus, day)
    yield dg.MaterializeResult(asset_key=TELEMETRY_KEY, metadata=metadata)
    yield dg.MaterializeResult(asset_key=TELEMETRY_SERIES_KEY, metadata=series)


def _series_metadata(con) -> dict[str, object]:
    """Row count of raw.telemetry_series and the series whose node or GPU name differs from its label."""
    rows = con.execute(
        """
        select count(*),
               count(case when node <> node_label then 1 end),
               count(case when gpu is distinct from gpu_label then 1 end)
        from raw.telemetry_series
        """
    ).fetchall()[0]
    return {
        "dagster/row_count": dg.MetadataValue.int(int(rows[0])),
        "series_with_node_renamed": dg.MetadataValue.int(int(rows[1])),
        "series_with_gpu_renamed": dg.MetadataValue.int(int(rows[2])),
    }


def prometheus_cache_path(warehouse_path: Path, day: dt.date) -> Path:
    """Where a day's pull is kept (Parquet, long format, no credentials): beside the warehouse, one file a day,
    replaced by each run."""
    return warehouse_path.with_name(warehouse_path.name + ".prometheus") / f"telemetry-{day.isoformat()}.parquet"


def _telemetry_from_prometheus(
    context: dg.AssetExecutionContext, settings: ImpactSettings, prometheus: PrometheusResource, day: dt.date
) -> tuple[dict[str, object], dict[str, object]]:
    """Pull the day's raw samples (no warehouse lock held meanwhile), then load them through the same validation
    as files."""
    client = prometheus.client()
    with warehouse(settings.warehouse_path) as con:
        clusters = [r[0] for r in con.execute("select cluster from raw.clusters order by 1").fetchall()]
    day_start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp()
    lo, hi = day_start - settings.telemetry_margin_s, day_start + 86400 + settings.telemetry_margin_s
    cache = prometheus_cache_path(settings.warehouse_path, day)
    if not clusters:
        context.log.warning("no valid cluster in clusters.yml: nothing to pull from Prometheus")
    stats = prom_api.fetch_samples(
        client, clusters, lo, hi, cache, mapping=prometheus.mapping(), chunk_s=prometheus.chunk_s,
        workers=prometheus.workers,
    )
    context.log.info(
        f"Prometheus {client.shown_url}: {stats.samples} samples of {stats.series} series in {stats.queries} "
        f"queries ({stats.splits} chunk splits), {stats.seconds:.1f} s"
    )
    for warning in stats.warnings[:10]:
        context.log.warning(f"Prometheus {client.shown_url}: {warning}")
    with warehouse(settings.warehouse_path) as con:
        # (a view cannot take a bound parameter: the path goes in as an escaped literal)
        con.execute(
            f"create or replace temp view _prometheus_samples as select * from read_parquet('{_sql_literal(cache)}')"
        )
        summary = ingest.ingest_telemetry(
            con, settings.data_path, day, settings.telemetry_margin_s, samples="_prometheus_samples"
        )
        con.execute("drop view _prometheus_samples")
        series = _series_metadata(con)
    result = _result(context, summary)
    return {
        **(result.metadata or {}),
        "source": dg.MetadataValue.text(f"prometheus:{stats.server}"),
        "prometheus_queries": dg.MetadataValue.int(stats.queries),
        "prometheus_chunk_splits": dg.MetadataValue.int(stats.splits),
        "prometheus_samples": dg.MetadataValue.int(stats.samples),
        "prometheus_series": dg.MetadataValue.int(stats.series),
        "prometheus_seconds": dg.MetadataValue.float(round(stats.seconds, 3)),
    }, series


def _sql_literal(path: Path) -> str:
    return str(path).replace("'", "''")
