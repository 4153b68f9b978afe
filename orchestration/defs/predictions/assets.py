"""Predicted duration, inferences and energy (with 95 % prediction intervals) of every request.

A thin wrapper over orchestration.lib.predictions: models.request_predictions is a view that predicts each request
of marts.fct_request_energy with the latest stored fit of its model and hardware (models.energy_model_fits keeps
each fit's coefficient covariance, so DuckDB computes statsmodels' exact prediction interval, set-based);
models.prediction_errors compares the predictions with the attributed energy over the trailing window.
"""

import dagster as dg

from orchestration.defs.models.assets import FITS_KEY, IMAGE_FITS_KEY
from orchestration.defs.resources import ImpactSettings
from orchestration.lib import predictions
from orchestration.lib.warehouse import warehouse

OWNERS = ["team:sustainability"]
REQUEST_PREDICTIONS_KEY = dg.AssetKey(["models", "request_predictions"])
FCT_REQUEST_ENERGY_KEY = dg.AssetKey(["marts", "fct_request_energy"])
CLUSTERS_KEY = dg.AssetKey(["raw", "clusters"])


@dg.asset(
    key=REQUEST_PREDICTIONS_KEY,
    group_name="models",
    kinds={"statsmodels", "duckdb"},
    owners=OWNERS,
    deps=[FITS_KEY, IMAGE_FITS_KEY, FCT_REQUEST_ENERGY_KEY, CLUSTERS_KEY],
)
def request_predictions(context: dg.AssetExecutionContext, settings: ImpactSettings) -> dg.MaterializeResult:
    """Predicted request duration (r_K), predicted inferences (output tokens + 1; an image request's images) and
    predicted energy (e_K) with 95 % prediction intervals for every request of marts.fct_request_energy, from the
    latest paper-form fit of its model x hardware (hardware = the cluster's GPU model; telemetry fit preferred) in
    models.energy_model_fits (an image request: the latest selected fit in models.image_model_fits).
    Predicted energy is comparable with it_energy_j (dynamic + idle shares as attributed). A view (always the
    current fits); models.prediction_errors (MAPE, median ratio and interval coverage of predicted vs attributed
    energy per model x hardware, trailing 28 days) is replaced each run."""
    with warehouse(settings.warehouse_path) as con:
        marts = settings.marts(con)  # (the Spark engine's, or this DuckDB warehouse)
        predictions.create_predictions_view(marts)
        errors, statuses, n, (first, last) = predictions.replace_prediction_errors(marts)
    for reason, count in statuses.items():
        if reason != predictions.STATUS_OK:
            context.log.warning(f"{count} request(s) without a prediction: {reason}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(n),
            "rows_predicted": dg.MetadataValue.int(statuses.get(predictions.STATUS_OK, 0)),
            "window": dg.MetadataValue.text(
                f"{first} to {last}" if first else "no requests in marts.fct_request_energy"
            ),
            "energy_definition": dg.MetadataValue.text(predictions.ENERGY_DEFINITION),
            "prediction_errors": dg.MetadataValue.md(predictions.errors_markdown(errors)),
        }
    )
