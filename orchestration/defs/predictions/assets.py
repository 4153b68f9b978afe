"""Predicted duration, inferences and energy (with 95 % prediction intervals) of every recent request.

A thin wrapper over orchestration.lib.predictions: read the trailing window of marts.fct_request_energy, fit the
paper form once per model x hardware, predict every request, replace models.request_predictions and
models.prediction_errors.
"""

import dagster as dg
import pandas as pd

from orchestration.defs.resources import ImpactSettings
from orchestration.lib import predictions
from orchestration.lib.warehouse import replace_table, warehouse

OWNERS = ["team:sustainability"]
REQUEST_PREDICTIONS_KEY = dg.AssetKey(["models", "request_predictions"])
FCT_REQUEST_ENERGY_KEY = dg.AssetKey(["marts", "fct_request_energy"])
CLUSTERS_KEY = dg.AssetKey(["raw", "clusters"])


@dg.asset(
    key=REQUEST_PREDICTIONS_KEY,
    group_name="models",
    kinds={"statsmodels", "duckdb"},
    owners=OWNERS,
    deps=[FCT_REQUEST_ENERGY_KEY, CLUSTERS_KEY],
)
def request_predictions(context: dg.AssetExecutionContext, settings: ImpactSettings) -> dg.MaterializeResult:
    """Predicted request duration (r_K), predicted inferences (output tokens + 1) and predicted energy (e_K) with
    95 % prediction intervals for every request of marts.fct_request_energy in the trailing 28 days, trained on the
    same window (at most FIT_MAX_ROWS = 200,000 requests per model x hardware, a fixed hash sample): one
    no-intercept fit of the paper form per model x hardware (hardware = the cluster's GPU model).
    Predicted energy is comparable with it_energy_j (dynamic + idle shares as attributed). Replaces
    models.request_predictions and models.prediction_errors (MAPE, median ratio and interval coverage of
    predicted vs attributed energy per model x hardware)."""
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    with warehouse(settings.warehouse_path) as con:
        reqs = predictions.window_requests(con)
        train = predictions.window_requests(con, max_rows_per_group=predictions.FIT_MAX_ROWS)
        pred = predictions.predict_requests(reqs, train)
        pred["attributed_it_energy_j"] = pred["it_energy_j"]
        pred["predicted_at"] = now
        errors = predictions.prediction_errors(pred)
        errors["computed_at"] = now
        con.execute("create schema if not exists models")
        replace_table(con, "models.request_predictions", predictions.REQUEST_PREDICTIONS_SCHEMA, pred)
        replace_table(con, "models.prediction_errors", predictions.PREDICTION_ERRORS_SCHEMA, errors)
    n_ok = int((pred["prediction_status"] == predictions.STATUS_OK).sum())
    unfitted = pred.loc[
        pred["prediction_status"] != predictions.STATUS_OK, "prediction_status"
    ].value_counts()
    for reason, n in unfitted.items():
        context.log.warning(f"{n} request(s) without a prediction: {reason}")
    window = (
        f"{reqs['day'].min()} to {reqs['day'].max()}"
        if len(reqs)
        else "no requests in marts.fct_request_energy"
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(len(pred)),
            "rows_predicted": dg.MetadataValue.int(n_ok),
            "window": dg.MetadataValue.text(window),
            "energy_definition": dg.MetadataValue.text(predictions.ENERGY_DEFINITION),
            "prediction_errors": dg.MetadataValue.md(predictions.errors_markdown(errors)),
        }
    )
