"""The routing frontier as a PNG (energy against accuracy; matplotlib's object API on an Agg canvas, loaded when a
figure is drawn, not with the module: see lib/preload.py)."""

from __future__ import annotations

import io

import pandas as pd

FIGSIZE = (5.0, 3.6)
DPI = 72


def pareto_png(frontier: pd.DataFrame, title: str = "") -> bytes:
    """Energy (kWh) against accuracy for each zeta of the frontier (labelled), the plan's point ringed, and the
    day as it ran (modelled and measured energy; at its accuracy when every request's model is a candidate)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE)
    fig.subplots_adjust(left=0.16, bottom=0.15, right=0.97, top=0.9)
    ax = fig.add_subplot()
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
    ax.set_title(title or "routing frontier", fontsize=8)
    ax.legend(fontsize=6)
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()
