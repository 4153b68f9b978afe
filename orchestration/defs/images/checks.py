"""Checks of image requests (docs/images.md): the quality and drift of the image models' selected fits, and the
LoRA adapters that the factor tables cannot charge."""

import datetime as dt

import dagster as dg
import duckdb
import pandas as pd

from orchestration.defs.models.assets import IMAGE_FITS_KEY, IMAGE_FITS_TABLE
from orchestration.defs.models.checks import markdown, read_fits
from orchestration.defs.resources import ImpactSettings
from orchestration.lib.check_messages import adapter_advice, drift_advice, image_fit_quality_advice
from orchestration.lib.energy_models import quality_offenders
from orchestration.lib.images import adapters
from orchestration.lib.images import models as image_models
from orchestration.lib.warehouse import connect

REQUEST_IMPACT_KEY = dg.AssetKey(["marts", "fct_request_impact"])
IMAGE_FIT_QUALITY_CHECK = "image_fit_quality"
IMAGE_COEFFICIENT_DRIFT_CHECK = "image_coefficient_drift"
LORA_FACTOR_COVERAGE_CHECK = "lora_factor_coverage"


def _selected_fits(settings: ImpactSettings, ranks: tuple[int, ...]) -> list[pd.DataFrame] | None:
    """The image fits of each rank of fitted_at (1 = latest), or None before any image fit."""
    return read_fits(settings, ranks, IMAGE_FITS_TABLE)


@dg.asset_check(asset=IMAGE_FITS_KEY, name=IMAGE_FIT_QUALITY_CHECK)
def image_fit_quality(settings: ImpactSettings) -> dg.AssetCheckResult:
    """Warns when a latest selected image fit explains energy or runtime poorly: uncentred R-squared below
    `fit_min_r_squared_uncentered` or CV MAPE above `fit_max_cv_mape` (the text models' thresholds)."""
    fits = _selected_fits(settings, (1,))
    latest = fits[0] if fits is not None else pd.DataFrame()
    latest = latest[latest["selected"].astype(bool)] if len(latest) else latest
    bad = (
        quality_offenders(latest, settings.fit_min_r_squared_uncentered, settings.fit_max_cv_mape)
        if len(latest)
        else latest
    )
    return dg.AssetCheckResult(
        passed=bool(len(bad) == 0),
        severity=dg.AssetCheckSeverity.WARN,
        description=image_fit_quality_advice(bad, settings.fit_min_r_squared_uncentered, settings.fit_max_cv_mape),
        metadata={
            "fits_checked": len(latest),
            "fits_below": len(bad),
            "details": dg.MetadataValue.md(markdown(bad)),
        },
    )


@dg.asset_check(asset=IMAGE_FITS_KEY, name=IMAGE_COEFFICIENT_DRIFT_CHECK)
def image_coefficient_drift(settings: ImpactSettings) -> dg.AssetCheckResult:
    """Warns when a coefficient of a selected image fit moved by more than `drift_k_standard_errors` standard
    errors (of the previous fit of the same model, hardware, source, target and form) since the previous fit."""
    fits = _selected_fits(settings, (1, 2))
    if fits is None or fits[1].empty:
        return dg.AssetCheckResult(
            passed=True,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"details": dg.MetadataValue.md("no previous fit")},
        )
    offenders, compared = image_models.coefficient_drift(fits[0], fits[1], settings.drift_k_standard_errors)
    return dg.AssetCheckResult(
        passed=bool(offenders.empty),
        severity=dg.AssetCheckSeverity.WARN,
        description=drift_advice(offenders, settings.drift_k_standard_errors),
        metadata={
            "k_standard_errors": settings.drift_k_standard_errors,
            "groups_compared": compared,
            "coefficients_drifted": len(offenders),
            "details": dg.MetadataValue.md(markdown(offenders)),
        },
    )


@dg.asset_check(asset=REQUEST_IMPACT_KEY, name=LORA_FACTOR_COVERAGE_CHECK)
def lora_factor_coverage(
    context: dg.AssetCheckExecutionContext, settings: ImpactSettings
) -> dg.AssetCheckResult:
    """Warns when the day's requests name a LoRA adapter that factors/models.yml has no entry for (its fine-tuning
    footprint is not charged: listed in adapters_without_factor, never a silent zero), or one whose entry's
    base_model is not the model the request ran."""
    key = context.run.tags.get("dagster/partition")
    day = dt.date.fromisoformat(key) if key else None
    con = connect(settings.warehouse_path, read_only=True)
    try:
        problems = adapters.adapter_problems(con, day)
    except duckdb.CatalogException:  # no impact mart yet
        problems = []
    finally:
        con.close()
    unknown = [p for p in problems if p[1].startswith("no entry")]
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.WARN,
        description=adapter_advice(problems),
        metadata={
            "adapters_without_factor": len(unknown),
            "requests_with_unknown_adapter": sum(n for _, _, n in unknown),
            "adapters_with_problems": len(problems),
            "details": dg.MetadataValue.md(
                markdown(pd.DataFrame(problems, columns=["adapter", "problem", "requests"]))
            ),
        },
    )
