"""Impact factors: grid carbon intensity (hourly and annual), water, PUE/WUE, embodied hardware, model training.

One multi-asset loads every factor table from the shipped defaults (data/factors, see its NOTICE.md) with the data
directory's factors/ overriding them key by key; every row keeps its origin, source, licence and version, and bad
rows go to raw.rejected_rows (input 'factors/<table>') with the reason.
"""

import dagster as dg

from orchestration import settings as paths
from orchestration.defs.resources import ImpactSettings
from orchestration.lib import factors
from orchestration.lib.warehouse import warehouse

OWNERS = ["team:sustainability"]
FACTOR_TABLES: dict[str, str] = {
    "grid_intensity_hourly": "Hourly grid carbon intensity per zone: location-based (direct), lifecycle, market.",
    "grid_intensity_annual": "Annual grid carbon intensity per zone, country and WORLD: the flagged fallback.",
    "water_intensity": "Water consumed per kWh generated (EWIF) per zone, country and WORLD.",
    "datacenter": "PUE and on-site WUE per provider, with ranges.",
    "hardware": "Embodied carbon and water and lifetime per GPU model prefix and server, with ranges.",
    "gpu_power": "Maximum power per GPU model prefix: the ceiling every telemetry sample is checked against.",
    "models": "Training and fine-tuning footprints, parameter counts, projected lifetime inferences per model.",
    "model_aliases": "The names requests may use for each factor model (normalised keys).",
    "image_quality": "Image quality labels (standard, hd, ...): the denoising steps and default size they stand for.",
}


def _summary_markdown(summaries: dict[str, factors.FactorSummary]) -> str:
    lines = ["| table | rows | shipped | user | shipped rows overridden | rejected |", "|---|---:|---:|---:|---:|---:|"]
    for table, s in summaries.items():
        lines.append(
            f"| {table} | {s.loaded_shipped + s.loaded_user} | {s.loaded_shipped} | {s.loaded_user} "
            f"| {s.overridden_shipped} | {s.rejected} |"
        )
    return "\n".join(lines)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            key=dg.AssetKey(["factors", table]),
            group_name="factors",
            kinds={"duckdb", "csv"},
            owners=OWNERS,
            description=description,
        )
        for table, description in FACTOR_TABLES.items()
    ],
    name="impact_factors",
)
def impact_factors(context: dg.AssetExecutionContext, settings: ImpactSettings):
    """Load the factor tables (shipped defaults + the data directory's factors/ overrides). When the files and the
    loader are byte for byte those of the last load, the stored tables are kept (metadata `reloaded`: false)."""
    with warehouse(settings.warehouse_path) as con:
        summaries = factors.load_factors(con, settings.data_path, paths.SHIPPED_FACTORS_DIR)
    first = next(iter(summaries.values()))
    if not first.reloaded:
        context.log.info(f"factor files unchanged since {first.loaded_at}: the stored tables are kept")
    for table, s in summaries.items():
        if s.rejected:
            context.log.warning(
                f"factors/{table}: {s.rejected} row(s) rejected: "
                + "; ".join(f"{n} x {reason}" for reason, n in s.rejected_by_reason.items())
            )
    overview = _summary_markdown(summaries)
    for table in FACTOR_TABLES:
        s = summaries.get(table)
        if s is None:
            continue
        yield dg.MaterializeResult(
            asset_key=dg.AssetKey(["factors", table]),
            metadata={
                "dagster/row_count": dg.MetadataValue.int(s.loaded_shipped + s.loaded_user),
                "rows_shipped": dg.MetadataValue.int(s.loaded_shipped),
                "rows_user": dg.MetadataValue.int(s.loaded_user),
                "rows_overriding_shipped": dg.MetadataValue.int(s.overridden_shipped),
                "shipped_defaults_only": dg.MetadataValue.bool(s.shipped_defaults_only),
                "rows_rejected": dg.MetadataValue.int(s.rejected),
                "loaded_at": dg.MetadataValue.text(s.loaded_at or ""),
                "reloaded": dg.MetadataValue.bool(s.reloaded),
                "factor_tables": dg.MetadataValue.md(overview),
            },
        )
