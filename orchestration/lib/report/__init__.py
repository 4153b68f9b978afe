"""The daily visual report (`impact report`, and the `reports/daily_report` asset in the UI).

    impact report [--day YYYY-MM-DD] --out DIR [--warehouse FILE]

writes DIR/<day>/report.html (one self-contained page: charts embedded, no network) and the same charts as PNG
files beside it: energy per request by model, hourly operational carbon against grid intensity, the split of
facility energy beside Google's published split, the tenants and models with the most carbon, the energy model's
fitted-vs-observed plot, and the day's checks. Reads the warehouse read-only; pure code, no Dagster.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestration import settings
from orchestration.lib.report import charts
from orchestration.lib.report.checks import (
    COVERAGE_WARN_BELOW,
    FIT_MAX_CV_MAPE,
    FIT_MIN_R2,
    CheckRow,
    day_checks,
)
from orchestration.lib.report.data import DayData, ReportError, read_day
from orchestration.lib.report.page import data_uri, render

__all__ = ["CHART_TEXT", "CheckRow", "Report", "ReportError", "data_uri", "report_main", "reports_dir", "write_report"]

HTML_NAME = "report.html"


def reports_dir(warehouse: Path) -> Path:
    """Where the daily_report asset writes its reports: <warehouse>.reports/ beside the warehouse file."""
    return warehouse.with_name(warehouse.name + ".reports")

# file name -> (title, how to read it)
CHART_TEXT: dict[str, tuple[str, str]] = {
    "energy_per_request.png": (
        "Energy per request by model",
        ("How much IT energy (accelerators and host, before the PUE) each request took: the share of each model and "
        "cluster's requests per bin of a log scale, dotted lines at the medians. Wide distributions are normal: "
        "energy grows with input and output tokens and falls when requests share a GPU."),
    ),
    "hourly_carbon.png": (
        "Hourly operational carbon against grid intensity",
        ("Bars: the clusters' operational (location-based) carbon in each UTC hour, metered energy x PUE x the grid "
        "intensity of that hour. Lines: the intensity of each grid zone. High bars under low lines are load; high "
        "lines are the grid."),
    ),
    "facility_split.png": (
        "The split of facility energy, beside Google's",
        ("Facility energy = IT energy x PUE, split into the accelerators' dynamic and idle energy while requests ran, "
        "the hosts, idle capacity (provisioned hardware no request used) and data-centre overhead (PUE - 1). "
        "Google's split of its median Gemini prompt (58 / 25 / 10 / 8 %) is a fleet at scale: a large idle share "
        "means an under-used cluster."),
    ),
    "top_carbon.png": (
        "Top tenants and models by carbon",
        ("Total carbon of the requests each tenant and model sent that day, split into operational, embodied and "
        "amortised training (the training share rests on the model's projected lifetime inferences: see "
        "factors/models.yml)."),
    ),
    "fitted_vs_observed.png": (
        "Energy model: fitted vs observed",
        ("The day's metered requests against the latest energy model e = a0 tau_in + a1 tau_out + a2 tau_in tau_out "
        "of their model and hardware (a fixed sample of at most 2,000 per panel). Points on the diagonal: the model "
        "predicts well; a fan or a bend: it misses something, often batching (docs/models.md)."),
    ),
}


@dataclass
class Report:
    day: dt.date
    html_path: Path
    charts: dict[str, Path]
    checks: list[CheckRow]
    data: DayData


def chart_pngs(data: DayData) -> dict[str, bytes]:
    """Each chart of the day as PNG bytes, by file name (the order of the page)."""
    return {
        "energy_per_request.png": charts.energy_per_request_png(data.energy_hist, data.energy_quantiles, data.day),
        "hourly_carbon.png": charts.hourly_carbon_png(data.hourly, data.day),
        "facility_split.png": charts.facility_split_png(data.split, data.day),
        "top_carbon.png": charts.top_carbon_png(data.top_tenants, data.top_models, data.day),
        "fitted_vs_observed.png": charts.fitted_vs_observed_png(data.fits, data.fit_points, data.day),
    }


def write_report(
    warehouse: Path,
    out_dir: Path,
    day: dt.date | None = None,
    coverage_warn_below: float = COVERAGE_WARN_BELOW,
    fit_min_r2: float = FIT_MIN_R2,
    fit_max_cv_mape: float = FIT_MAX_CV_MAPE,
) -> Report:
    """Write out_dir/<day>/report.html and the charts as PNG beside it; returns what was written."""
    from orchestration.lib.warehouse import connect

    warehouse = Path(warehouse)
    if not warehouse.is_file():
        raise ReportError(f"{warehouse}: no such warehouse file (run `impact run` first, or pass --warehouse)")
    con = connect(warehouse, read_only=True)
    try:
        data = read_day(con, day)
        checks = day_checks(con, data.day, data.fits, coverage_warn_below, fit_min_r2, fit_max_cv_mape)
    finally:
        con.close()
    pngs = chart_pngs(data)
    folder = Path(out_dir) / data.day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, png in pngs.items():
        paths[name] = folder / name
        paths[name].write_bytes(png)
    page = render(
        data.day,
        data.summary,
        {name: (*CHART_TEXT[name], png) for name, png in pngs.items()},
        checks,
        data.rejected,
        data.notes,
        source=warehouse.name,
    )
    html_path = folder / HTML_NAME
    html_path.write_text(page, encoding="utf-8")
    return Report(day=data.day, html_path=html_path, charts=paths, checks=checks, data=data)


def _parse_day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {text!r}") from exc


def report_main(argv: Sequence[str] | None = None) -> int:
    """`impact report`: exit 0 with the written paths, 2 with the reason when there is nothing to report."""
    parser = argparse.ArgumentParser(prog="impact report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--day", type=_parse_day, help="the UTC day (default: the latest day in the warehouse)")
    parser.add_argument("--out", required=True, type=Path, help="folder for <day>/report.html and the PNG charts")
    parser.add_argument(
        "--warehouse", type=Path, default=settings.warehouse_path(),
        help="DuckDB warehouse file (default: $IMPACT_WAREHOUSE, else data/warehouse.duckdb)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        report = write_report(args.warehouse.expanduser(), args.out.expanduser(), args.day)
    except ReportError as exc:
        print(f"impact report: {exc}", file=sys.stderr)
        return 2
    not_passed = [c for c in report.checks if c.status != "passed"]
    print(f"Report of {report.day}: {report.html_path}")
    print(f"Charts: {', '.join(str(p) for p in report.charts.values())}")
    if not_passed:
        print("Checks not passed: " + ", ".join(f"{c.name} ({c.status})" for c in not_passed))
    return 0
