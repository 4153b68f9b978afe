"""`impact report` and the reports/daily_report asset on the demo warehouse (conftest's demo_build): the HTML page
and the PNGs are written, the page is self-contained, the charts' figures are the marts' own, and the day's checks
say what the Dagster checks said."""

from __future__ import annotations

import base64
import datetime as dt
import html
import struct
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from orchestration.lib import report
from orchestration.lib.report import charts
from orchestration.lib.report.checks import day_checks
from orchestration.lib.report.data import read_day
from orchestration.lib.warehouse import connect

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("webserver")]  # shares demo_build

DAY = dt.date(2023, 11, 16)
CHARTS = set(report.CHART_TEXT)


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
    return width, height


class _Refs(HTMLParser):
    """Every tag and every attribute that could load something."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.refs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "poster", "action") or (value or "").startswith("url("):
                self.refs.append((tag, name, value or ""))


@pytest.fixture(scope="module")
def written(demo_build, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("report")
    code = report.report_main(["--out", str(out), "--warehouse", str(demo_build.warehouse)])
    assert code == 0
    return out / DAY.isoformat(), (out / DAY.isoformat() / report.HTML_NAME).read_text(encoding="utf-8")


def test_report_writes_the_page_and_every_chart_as_png(written):
    folder, page = written
    assert {p.name for p in folder.iterdir()} == CHARTS | {report.HTML_NAME}
    for name in CHARTS:
        width, height = _png_size((folder / name).read_bytes())
        assert width == 900 and 300 <= height <= 1600, (name, width, height)
    assert f"daily report for {DAY}" in page


def test_the_page_is_self_contained(written):
    """Nothing on the page reaches the network or another file: the images are the PNGs, embedded; no script,
    stylesheet link, font or frame."""
    folder, page = written
    parser = _Refs()
    parser.feed(page)
    assert not {"script", "link", "iframe", "object", "embed"} & set(parser.tags)
    images = [value for tag, name, value in parser.refs if tag == "img" and name == "src"]
    assert len(images) == len(CHARTS) and len(parser.refs) == len(images), parser.refs
    embedded = {base64.b64decode(src.removeprefix("data:image/png;base64,")) for src in images}
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert embedded == {(folder / name).read_bytes() for name in CHARTS}  # the same charts as the files
    assert "http://" not in page and "https://" not in page and "@import" not in page


def test_charts_carry_the_marts_figures(demo_build):
    """The report re-aggregates the marts, independently: hourly operational carbon recomputed from the windows
    adds up to the cluster's operational carbon; the histogram holds every request with energy; the shares of
    facility energy add up to 1."""
    con = connect(demo_build.warehouse, read_only=True)
    try:
        data = read_day(con, None)
        marts = con.execute(
            "select cluster, operational_location_g_co2e, requests from marts.fct_cluster_impact_daily "
            "where day = $d", {"d": DAY},
        ).df().set_index("cluster")  # fmt: skip
        (requests,) = con.execute(
            "select count(*) from marts.fct_request_impact where day = $d and it_energy_j > 0", {"d": DAY}
        ).fetchone()
    finally:
        con.close()
    assert data.day == DAY
    hourly = data.hourly.groupby("cluster")["operational_g_co2e"].sum()
    pd.testing.assert_series_equal(
        hourly.sort_index(), marts["operational_location_g_co2e"].sort_index(), check_names=False, rtol=1e-9
    )
    assert (data.hourly.groupby("cluster").size() == 24).all()
    assert int(data.energy_hist["requests"].sum()) == requests == int(marts["requests"].sum())
    shares = data.split[[column for column, _, _ in charts.SPLIT_PARTS]]
    assert (shares.sum(axis=1) - 1).abs().max() < 1e-9, shares
    assert data.top_models["total_kg_co2e"].sum() == pytest.approx(data.summary["total_kg_co2e"].sum(), rel=1e-9)
    assert len(data.fit_points) == 2 * 2000  # a 2,000-request sample on each of the two fitted clusters


def test_the_days_checks_match_the_dagster_checks(written, demo_build):
    """On the demo every invariant passes and fit_quality warns, as in `impact run`'s output; the report explains
    the warning with the same one-liner."""
    _, page = written
    con = connect(demo_build.warehouse, read_only=True)
    try:
        data = read_day(con, DAY)
        rows = day_checks(con, DAY, data.fits)
    finally:
        con.close()
    status = {r.name: r.status for r in rows}
    assert status.pop("fit_quality") == "warning"
    assert set(status.values()) == {"passed"}, status
    advice = next(r.advice for r in rows if r.name == "fit_quality")
    assert "batching" in advice and advice.split("(docs/")[0] in demo_build.output
    assert html.escape(advice) in page
    assert "checks not passed: fit_quality on models/energy_model_fits" in demo_build.output


def test_impact_run_writes_the_latest_days_report(demo_build):
    """The reports/daily_report asset runs in `impact run`'s models job: the report sits beside the warehouse and
    the summary says where."""
    page = report.reports_dir(demo_build.warehouse) / DAY.isoformat() / report.HTML_NAME
    assert page.is_file() and {p.name for p in page.parent.iterdir()} == CHARTS | {report.HTML_NAME}
    assert f"Charts and checks of the latest day: {page}" in demo_build.output


def test_report_errors_name_the_cause(demo_build, tmp_path, capsys):
    assert report.report_main(["--out", str(tmp_path), "--warehouse", str(tmp_path / "none.duckdb")]) == 2
    assert "no such warehouse file" in capsys.readouterr().err
    args = ["--out", str(tmp_path), "--warehouse", str(demo_build.warehouse), "--day", "2023-11-17"]
    assert report.report_main(args) == 2
    assert "2023-11-17 is not materialised in this warehouse (latest days: 2023-11-16)" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------- charts, no warehouse


def test_charts_without_data_say_why():
    empty = pd.DataFrame()
    for png in (
        charts.energy_per_request_png(empty, empty, DAY),
        charts.hourly_carbon_png(empty, DAY),
        charts.facility_split_png(empty, DAY),
        charts.top_carbon_png(empty, empty, DAY),
        charts.fitted_vs_observed_png(empty, empty, DAY),
    ):
        width, height = _png_size(png)
        assert width == 900 and height < 300


def test_many_groups_are_drawn_as_boxes_per_model():
    """More model x cluster groups than a histogram can show: boxes, per model x cluster up to 15 groups, per
    model beyond (the chart's title says which)."""
    rows = [
        {"model": f"org/model-{m}", "cluster": c, "requests": 100 - m, "p05_wh": 0.1, "p25_wh": 0.5,
         "p50_wh": 1.0 + m, "p75_wh": 3.0 + m, "p95_wh": 30.0, "mean_wh": 2.0 + m}
        for m in range(8) for c in (None, "c1", "c2")
    ]  # fmt: skip
    quantiles = pd.DataFrame(rows)
    hist = pd.DataFrame({"model": ["x"], "cluster": ["c1"], "bin_low_wh": [1.0], "bin_high_wh": [1.26],
                         "requests": [1]})  # fmt: skip
    per_model = charts.energy_per_request_png(hist, quantiles, DAY)  # 16 model x cluster groups: per model
    per_cluster = charts.energy_per_request_png(hist, quantiles[quantiles["model"] < "org/model-5"], DAY)
    assert _png_size(per_model)[1] < _png_size(per_cluster)[1]  # 8 boxes, then 10
