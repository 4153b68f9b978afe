"""The routing frontier (energy against accuracy) and the GPUs present and needed per hour, as PNGs (matplotlib's
object API on an Agg canvas, loaded when a figure is drawn, not with the module: see lib/preload.py)."""

from __future__ import annotations

import io

import pandas as pd

FIGSIZE = (5.0, 3.6)
DPI = 72


def _axes(title: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE)
    fig.subplots_adjust(left=0.16, bottom=0.15, right=0.97, top=0.9)
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=8)
    return fig, ax


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def pareto_png(frontier: pd.DataFrame, title: str = "") -> bytes:
    """Energy (kWh) against accuracy for each zeta of the frontier (labelled), the plan's point ringed, and the
    day as it ran (modelled and measured energy; at its accuracy when every request's model is a candidate)."""
    fig, ax = _axes(title or "routing frontier")
    f = frontier.sort_values("zeta")
    ax.plot(f["accuracy"], f["energy_kwh"], marker="o", markersize=4, linewidth=1, label="plan at zeta")
    for r in f.itertuples(index=False):  # one label per zeta (about 11)
        ax.annotate(f"{r.zeta:g}", (r.accuracy, r.energy_kwh), fontsize=6, xytext=(3, 3), textcoords="offset points")
    chosen = f[f["is_plan"]]
    ax.scatter(chosen["accuracy"], chosen["energy_kwh"], s=80, facecolors="none", edgecolors="black",
               label="chosen zeta")  # fmt: skip
    first = f.iloc[0]
    if pd.notna(first["actual_accuracy"]):
        for column, marker, label in (("actual_modelled_kwh", "x", "as ran (modelled)"),
                                      ("actual_measured_kwh", "+", "as ran (measured)")):  # fmt: skip
            if pd.notna(first[column]):
                ax.scatter([first["actual_accuracy"]], [first[column]], marker=marker, s=50, color="red", label=label)
    ax.set_xlabel("accuracy (query-weighted mean score)")
    ax.set_ylabel("IT energy (kWh)")
    ax.legend(fontsize=6)
    return _png(fig)


def rightsizing_png(hours: pd.DataFrame, title: str = "") -> bytes:
    """Per cluster and hour, the GPUs present (mean) and the GPUs rightsizing keeps (present - avoidable: what the
    hour's peak load needed, in whole nodes with scale_unit node, at least min_gpus)."""
    fig, ax = _axes(title or "GPUs present and kept")
    for cluster, h in hours.sort_values("hour").groupby("cluster"):  # a few clusters
        hour = list(h["hour"].dt.hour) + [24]  # each hour drawn to its end
        present = list(h["gpus_provisioned"])
        kept = list(h["gpus_provisioned"] - h["avoidable_gpu_hours"])
        line = ax.step(hour, present + present[-1:], where="post", linewidth=1, label=f"{cluster} present")[0]
        ax.step(hour, kept + kept[-1:], where="post", linewidth=1, linestyle="--", color=line.get_color(),
                label=f"{cluster} kept")  # fmt: skip
    ax.set_xlabel("UTC hour")
    ax.set_ylabel("GPUs")
    ax.legend(fontsize=6)
    return _png(fig)
