"""The report as one self-contained HTML page: the charts embedded as base64 PNG data URIs, the styles inline, no
script, font or link that would reach the network, so the file can be mailed or archived as it is."""

from __future__ import annotations

import base64
import datetime as dt
import html
from collections.abc import Mapping, Sequence

import pandas as pd

from orchestration.lib.report.checks import CheckRow

STYLE = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: #222; margin: 2rem auto;
       max-width: 960px; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; } h2 { font-size: 1.2rem; margin-top: 2.2rem; }
.meta { color: #666; font-size: 0.9rem; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.6rem 0; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.85rem; }
.passed { color: #1a7f37; font-weight: 600; } .warning { color: #9a6700; font-weight: 600; }
.failed { color: #cf222e; font-weight: 600; }
"""

SUMMARY_COLUMNS = (  # column, header, format
    ("cluster", "cluster", "{}"), ("zone", "grid zone", "{}"), ("requests", "requests", "{:,}"),
    ("metered_it_kwh", "metered IT kWh", "{:,.3f}"), ("facility_kwh", "facility kWh", "{:,.3f}"),
    ("operational_kg_co2e", "operational kg CO2e", "{:,.3f}"), ("total_kg_co2e", "total kg CO2e", "{:,.3f}"),
    ("total_water_l", "water L", "{:,.2f}"), ("telemetry_coverage", "telemetry coverage", "{:.1%}"),
)  # fmt: skip


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _cell(value: object, fmt: str) -> tuple[str, bool]:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "–", True
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return html.escape(fmt.format(value)), numeric


def frame_table(frame: pd.DataFrame, columns: Sequence[tuple[str, str, str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in columns)
    body = []
    for record in frame.to_dict("records"):
        cells = []
        for column, _, fmt in columns:
            text, numeric = _cell(record.get(column), fmt)
            cells.append(f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def checks_table(rows: Sequence[CheckRow]) -> str:
    body = "".join(
        f"<tr><td><code>{html.escape(r.name)}</code><br>{html.escape(r.checks)}</td>"
        f'<td class="{r.status}">{r.status}</td><td>{html.escape(r.result)}'
        + (f"<br><em>{html.escape(r.advice)}</em>" if r.advice else "")
        + "</td></tr>"
        for r in rows
    )
    return f"<table><thead><tr><th>check</th><th>status</th><th>result</th></tr></thead><tbody>{body}</tbody></table>"


def render(
    day: dt.date,
    summary: pd.DataFrame,
    charts: Mapping[str, tuple[str, str, bytes]],
    checks: Sequence[CheckRow],
    rejected: pd.DataFrame,
    notes: Sequence[str],
    source: str,
) -> str:
    """The page: the day's figures per cluster, each chart (title, caption, image), the checks and rejected rows.
    ``charts`` maps a file name to (title, how to read it, PNG bytes)."""
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    sections = [
        f"<h1>Inference impact: daily report for {day}</h1>",
        (f'<p class="meta">Generated {generated} from {html.escape(source)} by <code>impact report</code>. '
        "Energy is metered and attributed per request (docs/method.md); carbon and water use the factors in the "
        "warehouse's factors schema (docs/impact-and-factors.md).</p>"),
        "<h2>The day per cluster</h2>",
        frame_table(summary, SUMMARY_COLUMNS),
    ]
    for name, (title, caption, png) in charts.items():
        sections.append(f"<h2>{html.escape(title)}</h2>")
        sections.append(
            f'<figure><img src="{data_uri(png)}" alt="{html.escape(title)}">'
            f"<figcaption>{html.escape(caption)} (also saved as {html.escape(name)})</figcaption></figure>"
        )
    sections.append("<h2>The day's checks</h2>")
    sections.append(
        "<p>The invariants and coverage checks run again on this day by the report (the same queries as the Dagster "
        "asset checks), the latest energy models' fit quality, and the input rows rejected.</p>"
    )
    sections.append(checks_table(checks))
    sections.append("<h2>Rejected input rows</h2>")
    if rejected.empty:
        sections.append("<p>None: every input row of the day was loaded.</p>")
    else:
        sections.append(
            "<p>Kept with their reason in <code>raw.rejected_rows</code> (factor files' rows have no day and are "
            "listed with every day).</p>"
        )
        sections.append(frame_table(rejected, (("input", "input", "{}"), ("reason", "reason", "{}"),
                                               ("rows", "rows", "{:,}"))))  # fmt: skip
    if notes:
        sections.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>Inference impact, {day}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(sections)
        + "\n</body>\n</html>\n"
    )
