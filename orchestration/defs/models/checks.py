"""Checks on the energy models: fit quality of the latest fits, and coefficient drift against the previous fit
(a serving-stack or driver upgrade shows up as drift)."""

import math

import dagster as dg
import pandas as pd

from orchestration.defs.models.assets import FITS_KEY, FITS_TABLE
from orchestration.defs.resources import ImpactSettings
from orchestration.lib import engines
from orchestration.lib.check_messages import drift_advice, fit_quality_advice
from orchestration.lib.energy_models import coefficient_drift, quality_offenders

FIT_QUALITY_CHECK = "fit_quality"
COEFFICIENT_DRIFT_CHECK = "coefficient_drift"

MAX_ROWS_SHOWN = 20


def _fits_at(con, rank: int, table: str = FITS_TABLE) -> pd.DataFrame:
    """The fits of the `rank`-th most recent fitted_at (1 = latest); empty when there is none."""
    return con.execute(
        f"""
        with runs as (
            select fitted_at, row_number() over (order by fitted_at desc) as k
            from (select distinct fitted_at from {table}) as fit_times
        )
        select f.* from {table} as f join runs using (fitted_at) where runs.k = $rank
        """,
        {"rank": rank},
    ).df()


def read_fits(settings: ImpactSettings, ranks: tuple[int, ...], table: str = FITS_TABLE) -> list[pd.DataFrame] | None:
    """The fits of each rank of `table` (models.energy_model_fits, or the image fits), or None when the table does
    not exist yet."""
    con = settings.open_engine()
    try:
        return [_fits_at(con, k, table) for k in ranks] if engines.has_table(con, table) else None
    finally:
        con.close()


def markdown(df: pd.DataFrame) -> str:
    if df.empty:
        return "none"
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    for r in df.head(MAX_ROWS_SHOWN).itertuples(index=False):  # display only
        cells = [f"{v:.4g}" if isinstance(v, float) and math.isfinite(v) else str(v) for v in r]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dg.asset_check(asset=FITS_KEY, name=FIT_QUALITY_CHECK)
def fit_quality(settings: ImpactSettings) -> dg.AssetCheckResult:
    """Warns when a latest fit explains energy or runtime poorly: uncentred R-squared below
    `fit_min_r_squared_uncentered` (default 0.9) or an out-of-sample MAPE above `fit_max_cv_mape` (default 25 %).
    Its predictions for that model and hardware should not be trusted as is."""
    fits = read_fits(settings, (1,))
    latest = fits[0] if fits is not None else pd.DataFrame()
    min_r2, max_mape = settings.fit_min_r_squared_uncentered, settings.fit_max_cv_mape
    bad = quality_offenders(latest, min_r2, max_mape) if len(latest) else latest
    return dg.AssetCheckResult(
        passed=bool(len(bad) == 0),
        severity=dg.AssetCheckSeverity.WARN,
        description=fit_quality_advice(bad, min_r2, max_mape),
        metadata={
            "min_r_squared_uncentered": min_r2,
            "max_cv_mape": max_mape,
            "fits_checked": len(latest),
            "fits_below": len(bad),
            "lowest_r_squared_uncentered": float(latest["r_squared_uncentered"].min()) if len(latest) else 1.0,
            "details": dg.MetadataValue.md(markdown(bad)),
        },
    )


@dg.asset_check(asset=FITS_KEY, name=COEFFICIENT_DRIFT_CHECK)
def coefficient_drift_check(settings: ImpactSettings) -> dg.AssetCheckResult:
    """Warns when a coefficient of a model moved by more than `drift_k_standard_errors` (default 3) standard errors
    (of the previous fit) since the previous fit of the same model, hardware, source and target: the serving
    stack, the hardware or the traffic changed, and the energy estimates built on the old coefficients are stale."""
    fits = read_fits(settings, (1, 2))
    if fits is None or fits[1].empty:
        return dg.AssetCheckResult(
            passed=True,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "k_standard_errors": settings.drift_k_standard_errors,
                "details": dg.MetadataValue.md("no previous fit"),
            },
        )
    latest, previous = fits
    offenders, compared = coefficient_drift(latest, previous, settings.drift_k_standard_errors)
    return dg.AssetCheckResult(
        passed=bool(offenders.empty),
        severity=dg.AssetCheckSeverity.WARN,
        description=drift_advice(offenders, settings.drift_k_standard_errors),
        metadata={
            "k_standard_errors": settings.drift_k_standard_errors,
            "latest_fitted_at": str(latest["fitted_at"].iloc[0]) if len(latest) else "none",
            "previous_fitted_at": str(previous["fitted_at"].iloc[0]),
            "groups_compared": compared,
            "coefficients_drifted": len(offenders),
            "details": dg.MetadataValue.md(markdown(offenders)),
        },
    )
