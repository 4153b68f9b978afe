"""The daily report's charts, rendered to PNG bytes with matplotlib's object API (Agg canvas, no pyplot state, safe
in worker threads). matplotlib is imported when a chart is drawn, not with the module (see lib/preload.py).

Every chart has a title, axes with units and a legend that does not cover the data; each function returns the PNG
of one chart. Inputs are the small frames of report.data.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100
MAX_GROUPS = 8  # lines / bar segments per chart; the rest are summed as 'other' or left out (said in the title)
MAX_FIT_PANELS = 4
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")

# Google's split of the median Gemini text prompt's comprehensive energy (May 2025; arXiv 2508.15734;
# METHODOLOGY section 6): the accelerators are not split into dynamic and idle there
GOOGLE_SPLIT = {"accelerators": 0.58, "host": 0.25, "idle capacity": 0.10, "overhead": 0.08}
SPLIT_PARTS = (  # column, label, colour
    ("accelerator_dynamic_share", "accelerator dynamic", "#08519c"),
    ("accelerator_idle_share", "accelerator idle", "#6baed6"),
    ("host_share", "host (CPU, memory)", "#fd8d3c"),
    ("idle_machines_share", "idle capacity (no request)", "#bdbdbd"),
    ("overhead_share", "data-centre overhead (PUE - 1)", "#8c6d31"),
)
GOOGLE_COLOURS = {"accelerators": "#3182bd", "host": "#fd8d3c", "idle capacity": "#bdbdbd", "overhead": "#8c6d31"}


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    fig.get_layout_engine().set(h_pad=0.08, w_pad=0.08)
    return fig


def _png(fig: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _style(ax: Axes) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", color="#e0e0e0", linewidth=0.6)
    ax.set_axisbelow(True)


def _wh(value: float) -> str:
    return f"{value:.3g} Wh" if value >= 0.01 else f"{value * 3600:.3g} J"


def _short(text: str, n: int = 32) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _model(name: str, n: int = 28) -> str:
    """A model name for a label: without its organisation prefix ('meta-llama/Llama-2-13b' -> 'Llama-2-13b')."""
    return _short(str(name).rsplit("/", 1)[-1], n)


def _plain_log_ticks(axis, low: float, high: float) -> None:
    """Tick labels of a log axis as plain numbers (0.1, 1, 10), not powers of ten; the minor ticks (2, 3, ... 9)
    are labelled only when the data spans less than about a decade (else their labels would collide)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")
    axis.set_major_formatter(plain)
    narrow = low > 0 and high / low < 20
    axis.set_minor_formatter(plain if narrow else NullFormatter())


def _darker(colour: str, factor: float = 0.65) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    return tuple(c * factor for c in to_rgb(colour))


def message_png(title: str, message: str) -> bytes:
    """A chart-sized image that says why there is no chart (no data for the day, no fit yet)."""
    fig = _figure(9, 2.2)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title, loc="left", fontsize=12)
    ax.text(0.0, 0.5, message, fontsize=10, color="#555555", va="center", transform=ax.transAxes, wrap=True)
    return _png(fig)


# ----------------------------------------------------------------------------------------------------- charts


HISTOGRAM_MAX_GROUPS = 4  # up to this many model x cluster groups: their histograms; more: a box per group
BOX_MAX_GROUPS = 15


def energy_per_request_png(hist: pd.DataFrame, quantiles: pd.DataFrame, day: object) -> bytes:
    """Distribution of IT energy per request. Up to HISTOGRAM_MAX_GROUPS model x cluster groups: a histogram per
    group (the share of its requests per log-spaced bin, median dotted). More: a box per group (5th-95th
    percentile whiskers, quartile box, median), per model x cluster, or per model when that is still too many."""
    if hist.empty or quantiles.empty:
        return message_png(f"IT energy per request by model, {day}", "No request with energy on this day.")
    by_cluster = quantiles[quantiles["cluster"].notna()]
    if len(by_cluster) <= HISTOGRAM_MAX_GROUPS:
        return _energy_histograms(hist, by_cluster, f"IT energy per request by model and cluster, {day}")
    if len(by_cluster) <= BOX_MAX_GROUPS:
        return _energy_boxes(by_cluster, f"IT energy per request by model and cluster, {day}", len(by_cluster))
    by_model = quantiles[quantiles["cluster"].isna()]
    title = f"IT energy per request by model (all clusters), {day}"
    return _energy_boxes(by_model.head(BOX_MAX_GROUPS), title, len(by_model))


def _energy_histograms(hist: pd.DataFrame, groups: pd.DataFrame, title: str) -> bytes:
    fig = _figure(9, 4.2 + 0.25 * len(groups))
    ax = fig.add_subplot()
    _style(ax)
    for colour, g in zip(PALETTE, groups.itertuples(index=False)):
        rows = hist[(hist["model"] == g.model) & (hist["cluster"] == g.cluster)]
        bins = np.round(np.log10(rows["bin_low_wh"].to_numpy()) * 10).astype(int)
        share = rows["requests"].to_numpy() / max(rows["requests"].sum(), 1) * 100
        # one step line over contiguous bins (empty bins inside the range drawn at 0)
        values = np.zeros(bins.max() - bins.min() + 1)
        values[bins - bins.min()] = share
        edges = 10 ** (np.arange(bins.min(), bins.max() + 2) / 10)
        ax.stairs(values, edges, color=colour, linewidth=1.6,
                  label=f"{_model(g.model)} on {_short(g.cluster, 26)}: median {_wh(g.p50_wh)}, "
                        f"n = {g.requests:,}")  # fmt: skip
        ax.axvline(g.p50_wh, color=colour, linewidth=0.8, linestyle=":")
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis, float(hist["bin_low_wh"].min()), float(hist["bin_high_wh"].max()))
    ax.set_xlabel("IT energy per request (Wh, log scale; accelerators + host, before PUE)")
    ax.set_ylabel("share of the group's requests (%)")
    ax.set_title(title, loc="left", fontsize=12)
    fig.legend(loc="outside lower left", ncols=1, fontsize=9, frameon=False)
    return _png(fig)


def _energy_boxes(groups: pd.DataFrame, title: str, total: int) -> bytes:
    fig = _figure(9, 1.6 + 0.42 * len(groups))
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="x", color="#e0e0e0", linewidth=0.6)
    ax.set_axisbelow(True)
    ys = np.arange(len(groups))[::-1]
    labels = []
    for y, g in zip(ys, groups.itertuples(index=False)):
        ax.plot([g.p05_wh, g.p95_wh], [y, y], color="#555555", linewidth=1.0)
        ax.barh(y, g.p75_wh - g.p25_wh, left=g.p25_wh, height=0.55, color="#9ecae1", edgecolor="#3182bd")
        ax.plot([g.p50_wh, g.p50_wh], [y - 0.3, y + 0.3], color="#08519c", linewidth=2.2)
        ax.plot(g.mean_wh, y, marker="D", markersize=4, color="#d62728", linestyle="none")
        where = "" if pd.isna(g.cluster) else f" on {_short(g.cluster, 24)}"
        labels.append(f"{_model(g.model)}{where}\nmedian {_wh(g.p50_wh)}, n = {g.requests:,}")
    ax.set_yticks(ys, labels, fontsize=8)
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis, float(groups["p05_wh"].min()), float(groups["p95_wh"].max()))
    ax.set_xlabel("IT energy per request (Wh, log scale; accelerators + host, before PUE)")
    more = f" (the {len(groups)} busiest of {total})" if total > len(groups) else ""
    ax.set_title(title + more, loc="left", fontsize=12)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    fig.legend(
        handles=[Line2D([], [], color="#555555", label="5th-95th percentile"),
                 Patch(facecolor="#9ecae1", edgecolor="#3182bd", label="25th-75th percentile"),
                 Line2D([], [], color="#08519c", linewidth=2.2, label="median"),
                 Line2D([], [], color="#d62728", marker="D", markersize=4, linestyle="none", label="mean")],
        loc="outside lower left", ncols=4, fontsize=9, frameon=False,
    )  # fmt: skip
    return _png(fig)


def hourly_carbon_png(hourly: pd.DataFrame, day: object) -> bytes:
    """Operational carbon of each hour, stacked by cluster (bars, left axis), and the grid intensity of each zone
    (lines, right axis): which hours cost carbon because of load and which because of the grid."""
    title = f"Operational carbon per hour against grid intensity, {day} (UTC)"
    if hourly.empty:
        return message_png(title, "No metered energy on this day.")
    fig = _figure(9, 4.8)
    ax = fig.add_subplot()
    _style(ax)
    totals = hourly.groupby("cluster")["operational_g_co2e"].sum().sort_values(ascending=False)
    shown = list(totals.index[: MAX_GROUPS - 1]) if len(totals) > MAX_GROUPS else list(totals.index)
    hours = np.arange(24)
    bottom = np.zeros(24)
    frame = hourly.assign(
        hour_of_day=pd.to_datetime(hourly["hour"]).dt.hour,
        group=hourly["cluster"].where(hourly["cluster"].isin(shown), "other clusters"),
    )
    colours = {}
    for colour, group in zip(PALETTE, [*shown, *(["other clusters"] if len(shown) < len(totals) else [])]):
        colours[group] = colour
        kg = frame[frame["group"] == group].groupby("hour_of_day")["operational_g_co2e"].sum() / 1e3
        values = kg.reindex(hours, fill_value=0.0).to_numpy()
        ax.bar(hours, values, bottom=bottom, width=0.8, color=colour, alpha=0.7,
               label=f"{_short(group, 28)}: carbon (bars)")  # fmt: skip
        bottom += values
    ax.set_xlim(-0.6, 23.6)
    ax.set_xticks(hours[::2], [f"{h:02d}:00" for h in hours[::2]])
    ax.set_xlabel("hour of the day (UTC)")
    ax.set_ylabel("operational carbon (kg CO2e per hour)")
    ax.set_ylim(0, max(bottom.max(), 1e-9) * 1.15)
    right = ax.twinx()
    right.spines[["top"]].set_visible(False)
    zones = (
        hourly.groupby("zone")["operational_g_co2e"].sum().sort_values(ascending=False).index[:MAX_GROUPS].tolist()
    )
    for zone in zones:
        in_zone = frame[frame["zone"] == zone]
        first = in_zone.groupby("group")["operational_g_co2e"].sum().idxmax()  # the zone's main cluster's colour
        series = in_zone.groupby("hour_of_day")["intensity_g_per_kwh"].mean().reindex(hours)
        right.plot(hours, series.to_numpy(), color=_darker(colours.get(first, "#7f7f7f")), linewidth=2.0,
                   marker="o", markersize=3, label=f"{_short(zone, 24)}: grid intensity (line)")  # fmt: skip
    right.set_ylabel("grid intensity (g CO2e/kWh)")
    right.set_ylim(0, np.nanmax(frame["intensity_g_per_kwh"].to_numpy()) * 1.15)
    ax.set_title(title, loc="left", fontsize=12)
    fig.legend(loc="outside lower left", ncols=2, fontsize=9, frameon=False)
    return _png(fig)


def facility_split_png(split: pd.DataFrame, day: object) -> bytes:
    """The split of facility energy per cluster (and over all clusters) beside Google's published split of the
    median Gemini prompt: 100 % bars, shares written inside the segments of 5 % or more."""
    title = f"Where the facility energy went, {day}, beside Google's published split"
    if split.empty:
        return message_png(title, "No cluster impact on this day.")
    rows = split.head(MAX_GROUPS + 1)
    labels = [f"{_short(r.cluster, 26)}\n{r.facility_kwh:,.1f} kWh" for r in rows.itertuples(index=False)]
    labels.append("Google, median Gemini\ntext prompt (May 2025)")
    fig = _figure(9, 1.7 + 0.62 * len(labels))
    ax = fig.add_subplot()
    ys = np.arange(len(labels))[::-1]
    for y, r in zip(ys, rows.itertuples(index=False)):
        left = 0.0
        for column, label, colour in SPLIT_PARTS:
            share = float(getattr(r, column) or 0.0)
            ax.barh(y, share * 100, left=left, color=colour, height=0.62, label=label if y == ys[0] else None)
            if share >= 0.05:
                ax.text(left + share * 50, y, f"{share:.0%}", ha="center", va="center", fontsize=9,
                        color="white" if colour in ("#08519c", "#8c6d31") else "black")  # fmt: skip
            left += share * 100
    left = 0.0
    for part, share in GOOGLE_SPLIT.items():
        hatch = "//" if part == "accelerators" else None
        ax.barh(ys[-1], share * 100, left=left, color=GOOGLE_COLOURS[part], height=0.62, hatch=hatch,
                edgecolor="white", linewidth=0, label="accelerators (Google: not split)" if hatch else None)  # fmt: skip
        ax.text(left + share * 50, ys[-1], f"{share:.0%}", ha="center", va="center", fontsize=9,
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.85})
        left += share * 100
    ax.set_yticks(ys, labels, fontsize=9)
    ax.set_xlim(0, 101)
    ax.set_xlabel("share of facility energy (%); Google's published shares add up to 101 % (rounding)")
    ax.spines[["top", "right", "left"]].set_visible(False)
    ax.tick_params(axis="y", length=0)
    ax.set_title(title, loc="left", fontsize=12)
    fig.legend(loc="outside lower left", ncols=3, fontsize=9, frameon=False)
    return _png(fig)


def top_carbon_png(tenants: pd.DataFrame, models: pd.DataFrame, day: object) -> bytes:
    """The tenants and the models that carried the most carbon, split into operational, embodied and amortised
    training (+ fine-tuning), in kg CO2e."""
    title = f"Top tenants and models by carbon, {day}"
    if tenants.empty and models.empty:
        return message_png(title, "No request impact on this day.")
    height = 1.6 + 0.32 * (len(tenants) + len(models))
    fig = _figure(9, max(height, 4.0))
    axes = fig.subplots(2, 1, height_ratios=[max(len(tenants), 1), max(len(models), 1)])
    parts = (("operational_kg_co2e", "operational", "#d62728"), ("embodied_kg_co2e", "embodied", "#9467bd"),
             ("training_kg_co2e", "training + fine-tuning (amortised)", "#7f7f7f"))  # fmt: skip
    for ax, frame, name, what in ((axes[0], tenants, "tenant", "tenants"), (axes[1], models, "model", "models")):
        ax.spines[["top", "right"]].set_visible(False)
        ax.grid(axis="x", color="#e0e0e0", linewidth=0.6)
        ax.set_axisbelow(True)
        ys = np.arange(len(frame))[::-1]
        left = np.zeros(len(frame))
        for column, label, colour in parts:
            values = frame[column].to_numpy(dtype=float)
            ax.barh(ys, values, left=left, color=colour, height=0.7, label=label)
            left += values
        for y, total in zip(ys, left):
            ax.text(total, y, f" {total:,.2f}", va="center", fontsize=8)
        names = [_model(v, 30) if name == "model" else _short(str(v), 30) for v in frame[name]]
        ax.set_yticks(ys, names, fontsize=9)
        ax.set_xlim(0, max(left.max() if len(left) else 0, 1e-9) * 1.18)
        ax.set_title(f"{what} (the {len(frame)} with the most carbon)", loc="left", fontsize=10)
        ax.set_xlabel("carbon (kg CO2e)")
    fig.suptitle(title, x=0.01, ha="left", fontsize=12)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower left", ncols=3, fontsize=9, frameon=False)
    return _png(fig)


def fitted_vs_observed_png(fits: pd.DataFrame, points: pd.DataFrame, day: object) -> bytes:
    """Per model x hardware (up to MAX_FIT_PANELS), the day's metered IT energy per request against the latest
    fit's prediction a0 tau_in + a1 tau_out + a2 tau_in tau_out, on log axes, with the y = x diagonal."""
    title = f"Energy model: fitted vs observed IT energy per request, {day}"
    if fits.empty:
        return message_png(title, "No energy model fitted yet: the models job fits them (impact run runs it).")
    if points.empty:
        return message_png(title, "No fully metered request of a fitted model and hardware on this day.")
    groups = [g for g in fits.itertuples(index=False)
              if ((points["model"] == g.model) & (points["hardware"] == g.hardware)).any()][:MAX_FIT_PANELS]  # fmt: skip
    cols = min(len(groups), 2)
    rows = (len(groups) + cols - 1) // cols
    fig = _figure(9, 0.8 + 3.6 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, g in zip(axes, groups):
        pts = points[(points["model"] == g.model) & (points["hardware"] == g.hardware)]
        keep = (pts["observed_j"] > 0) & (pts["fitted_j"] > 0)
        observed, fitted = pts.loc[keep, "observed_j"].to_numpy(), pts.loc[keep, "fitted_j"].to_numpy()
        ax.scatter(observed, fitted, s=5, alpha=0.35, linewidths=0, color="#1f77b4")
        if len(observed):
            lo = float(min(observed.min(), fitted.min()))
            hi = float(max(observed.max(), fitted.max()))
            ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8, label="y = x")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("observed (metered) IT energy (J)")
        ax.set_ylabel("fitted IT energy (J)")
        ax.set_title(
            f"{_model(g.model, 24)} on {_short(g.hardware or '-', 18)}\nR² (uncentred) {g.r_squared_uncentered:.2f}, "
            f"CV MAPE {g.cv_mape:.0%}, fitted on {int(g.nobs):,}",
            fontsize=9, loc="left",
        )
        ax.grid(color="#e0e0e0", linewidth=0.6)
        dropped = int((~keep).sum())
        ax.legend(loc="upper left", fontsize=8, frameon=False,
                  title=f"{int(keep.sum()):,} requests" + (f" ({dropped} at 0 J left out)" if dropped else ""),
                  title_fontsize=8)  # fmt: skip
    for ax in axes[len(groups):]:
        ax.set_axis_off()
    shown = f" ({len(groups)} of {len(fits)} fits, the most requests first)" if len(fits) > len(groups) else ""
    fig.suptitle(title + shown, x=0.01, ha="left", fontsize=12)
    return _png(fig)
