"""reports/daily_report: the latest day's charts (the same as `impact report`) as metadata the UI shows, and the
report's HTML page and PNG files written beside the warehouse (<warehouse>.reports/<day>/).

A thin wrapper over orchestration.lib.report. It runs in the models job, after the fits its fitted-vs-observed
chart reads: one report per `impact run` (of its latest day), not one per day of a backfill; `impact report --day D`
draws any other day. matplotlib is imported when the charts are drawn (the models job preloads it).
"""

import dagster as dg

from orchestration.defs.models.assets import FITS_KEY
from orchestration.defs.resources import ImpactSettings
from orchestration.lib import report

OWNERS = ["team:sustainability"]
REPORT_KEY = dg.AssetKey(["reports", "daily_report"])
MART_KEYS = [
    dg.AssetKey(["marts", table])
    for table in ("fct_cluster_energy_daily", "fct_window_energy", "fct_request_impact", "fct_cluster_impact_daily",
                  "agg_impact_daily")
]  # fmt: skip


def checks_markdown(rows: list[report.CheckRow]) -> str:
    lines = ["| check | status | result |", "|---|---|---|"]
    for r in rows:
        advice = f"<br>{r.advice}" if r.advice else ""
        lines.append(f"| `{r.name}` | {r.status} | {r.result}{advice} |")
    return "\n".join(lines)


@dg.asset(
    key=REPORT_KEY,
    group_name="reports",
    kinds={"duckdb", "matplotlib"},
    owners=OWNERS,
    deps=[*MART_KEYS, FITS_KEY],
)
def daily_report(context: dg.AssetExecutionContext, settings: ImpactSettings) -> dg.MaterializeResult:
    """A picture of the latest materialised day: energy per request by model, hourly operational carbon against
    grid intensity, the split of facility energy beside Google's published split, the tenants and models with
    the most carbon, the energy model's fitted-vs-observed plot, and the day's checks. The charts are this
    materialisation's metadata; the self-contained HTML page and the PNGs are written to
    <warehouse>.reports/<day>/ (`impact report --day D --out DIR` writes any day's)."""
    if skipped := settings.duckdb_only("The daily report"):
        context.log.info(skipped)
        return dg.MaterializeResult(metadata={"skipped": dg.MetadataValue.text(skipped)})
    try:
        written = report.write_report(
            settings.warehouse_path,
            report.reports_dir(settings.warehouse_path),
            None,
            coverage_warn_below=settings.coverage_warn_below,
            fit_min_r2=settings.fit_min_r_squared_uncentered,
            fit_max_cv_mape=settings.fit_max_cv_mape,
        )
    except report.ReportError as exc:
        raise dg.Failure(description=str(exc)) from None
    not_passed = [c for c in written.checks if c.status != "passed"]
    context.log.info(f"report of {written.day}: {written.html_path}")
    charts = {
        f"chart/{name.removesuffix('.png')}": dg.MetadataValue.md(
            f"**{report.CHART_TEXT[name][0]}**\n\n![{name}]({report.data_uri(path.read_bytes())})\n\n"
            f"{report.CHART_TEXT[name][1]}"
        )
        for name, path in written.charts.items()
    }
    return dg.MaterializeResult(
        metadata={
            "day": dg.MetadataValue.text(written.day.isoformat()),
            "html": dg.MetadataValue.path(str(written.html_path)),
            "checks_not_passed": dg.MetadataValue.int(len(not_passed)),
            "checks": dg.MetadataValue.md(checks_markdown(written.checks)),
            **charts,
        }
    )
