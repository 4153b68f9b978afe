"""Diagnostic plots of an energy / runtime model fit, rendered to PNG bytes (matplotlib, Agg; no Dagster).

Two standard OLS diagnostics per fit (METHODOLOGY section 4): residuals against fitted values (structure or a
funnel shape means the form misses something or the errors are heteroskedastic) and fitted against observed
values (points on the diagonal mean a good fit). Figures are built with the object API (no pyplot global state),
so rendering is safe in worker threads and never
touches the process-wide backend: the canvas is Agg explicitly.
"""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING

import numpy as np

from orchestration.lib.energy_models import FitResult

if TYPE_CHECKING:  # matplotlib loads when a figure is drawn, not with the module (see lib/preload.py)
    from matplotlib.figure import Figure

FIGSIZE = (4.0, 3.0)
DPI = 72
MAX_POINTS = 2000  # larger fits are subsampled (deterministically) to keep the PNG small


def _fitted_observed_residuals(fit: FitResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fitted, observed, residual) on the scale the model was fitted on (log for loglog)."""
    fitted = np.asarray(fit.results.fittedvalues, dtype=float)
    resid = np.asarray(fit.results.resid, dtype=float)
    observed = fitted + resid
    if len(fitted) > MAX_POINTS:
        keep = np.random.default_rng(0).choice(len(fitted), MAX_POINTS, replace=False)
        fitted, observed, resid = fitted[keep], observed[keep], resid[keep]
    return fitted, observed, resid


def _figure() -> Figure:
    from matplotlib.figure import Figure

    # fixed margins: matplotlib's constrained layout measures every text (a third of a second per figure)
    fig = Figure(figsize=FIGSIZE)
    fig.subplots_adjust(left=0.2, bottom=0.17, right=0.96, top=0.9)
    return fig


def _png(fig: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _unit(fit: FitResult) -> str:
    unit = {"energy_j": "J", "runtime_s": "s"}.get(fit.target, "")
    return f"log({unit})" if fit.form == "loglog" else unit


def residuals_vs_fitted_png(fit: FitResult, title: str = "") -> bytes:
    """Residuals against fitted values, with the zero line."""
    fitted, _, resid = _fitted_observed_residuals(fit)
    fig = _figure()
    ax = fig.add_subplot()
    ax.scatter(fitted, resid, s=6, alpha=0.5, linewidths=0)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel(f"fitted ({_unit(fit)})")
    ax.set_ylabel("residual")
    ax.set_title(title or "residuals vs fitted", fontsize=8)
    return _png(fig)


def fitted_vs_observed_png(fit: FitResult, title: str = "") -> bytes:
    """Fitted against observed values, with the y = x diagonal."""
    fitted, observed, _ = _fitted_observed_residuals(fit)
    fig = _figure()
    ax = fig.add_subplot()
    ax.scatter(observed, fitted, s=6, alpha=0.5, linewidths=0)
    if len(observed):
        lo = float(min(observed.min(), fitted.min()))
        hi = float(max(observed.max(), fitted.max()))
        ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8)
    ax.set_xlabel(f"observed ({_unit(fit)})")
    ax.set_ylabel(f"fitted ({_unit(fit)})")
    ax.set_title(title or "fitted vs observed", fontsize=8)
    return _png(fig)


def png_data_uri(png: bytes) -> str:
    """A data URI for embedding a PNG in markdown: ``![](data:image/png;base64,...)``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def diagnostics_markdown(fit: FitResult, title: str) -> str:
    """Markdown with both diagnostic plots of one fit embedded as base64 PNG images."""
    resid = png_data_uri(residuals_vs_fitted_png(fit, f"{title}: residuals vs fitted"))
    fvo = png_data_uri(fitted_vs_observed_png(fit, f"{title}: fitted vs observed"))
    return f"**{title}**\n\n![residuals vs fitted]({resid})\n\n![fitted vs observed]({fvo})\n"
