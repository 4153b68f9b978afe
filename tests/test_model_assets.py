"""Integration: the models assets on a warehouse built by the daily job, plus profiling runs of known
coefficients; history, drift and quality checks over two materialisations."""

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
from conftest import run_days

from orchestration.defs.automation.jobs import MODELS_JOB_NAME
from orchestration.defs.models import assets as model_assets
from orchestration.defs.models import checks as model_checks
from orchestration.defs.resources import ImpactSettings
from orchestration.lib.energy_models import CONTRACT_COLUMNS, coefficient_drift, quality_offenders
from orchestration.lib.simulation.simulate import ClusterSpec, SimConfig, simulate, write_dataset

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("pipeline")]

DAY = "2024-05-01"
ENERGY = {"in": 0.5, "out": 2.0, "in_out": 0.001}  # J per token, J per token^2
RUNTIME = {"in": 2e-4, "out": 0.02, "in_out": 1e-6}


def _profiling(n: int = 240, seed: int = 11) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tin = rng.integers(16, 2048, n)
    tout = rng.integers(8, 512, n)

    def y(c, noise):
        mean = c["in"] * tin + c["out"] * tout + c["in_out"] * tin * tout
        return mean * (1 + noise * rng.standard_normal(n))

    return pd.DataFrame(
        {"model": "prof-llm", "hardware": "a100-80gb", "input_tokens": tin, "output_tokens": tout,
         "energy_j": y(ENERGY, 0.03), "runtime_s": y(RUNTIME, 0.03)}
    )  # fmt: skip


def _query(warehouse, sql):
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(sql).df()
    finally:
        con.close()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cfg = SimConfig(
        days=[DAY],
        clusters=[ClusterSpec(cluster_id="m-a100", nodes=2, gpus_per_node=2)],
        requests_per_day=1500,
        arrivals="poisson",
        seed=3,
    )
    root = tmp_path_factory.mktemp("models")
    data = root / "inputs"
    write_dataset(simulate(cfg), data)
    warehouse = root / "wh.duckdb"
    run_days(data, warehouse, [DAY])
    (data / "profiling").mkdir()
    prof = _profiling().astype({"energy_j": str})
    prof.loc[len(prof)] = ["prof-llm", "a100-80gb", 100, 10, "-5", 0.1]  # bad row: negative energy
    prof.to_csv(data / "profiling" / "runs.csv", index=False)
    return data, warehouse


def _materialize(data, warehouse, instance):
    return dg.materialize(
        [model_assets.energy_models, model_checks.fit_quality, model_checks.coefficient_drift_check],
        resources={"settings": ImpactSettings(data_dir=str(data), warehouse=str(warehouse))},
        instance=instance,
    )


def _check(result, name):
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def test_models_assets_fit_diagnose_and_keep_history(built):
    data, warehouse = built
    instance = dg.DagsterInstance.ephemeral()
    first = _materialize(data, warehouse, instance)
    assert first.success

    fits = _query(warehouse, f"select * from {model_assets.FITS_TABLE}")
    assert set(CONTRACT_COLUMNS) <= set(fits.columns)
    assert {"form", "cv_rmse", "bp_pvalue", "se_hc3_in"} <= set(fits.columns)
    assert set(fits["source"]) == {"telemetry", "profiling"}
    assert set(fits["target"]) == {"energy", "runtime"}
    telemetry = fits[fits["source"] == "telemetry"]
    assert (telemetry["hardware"] == "A100-SXM4-80GB").all() and (telemetry["nobs"] > 1000).all()

    # the profiling fit recovers the coefficients it was generated with, within 3 standard errors
    prof = fits[fits["source"] == "profiling"].set_index("target")
    assert prof.loc["energy", "nobs"] == 240  # the bad row is not fitted
    for target, truth in (("energy", ENERGY), ("runtime", RUNTIME)):
        for k, value in truth.items():
            est, se = prof.loc[target, f"alpha_{k}"], prof.loc[target, f"se_{k}"]
            assert abs(est - value) <= 3 * se, (target, k, est, value, se)
    assert prof.loc["energy", "r_squared_uncentered"] > 0.99

    rejected = _query(warehouse, "select * from raw.rejected_rows where input = 'profiling'")
    assert len(rejected) == 1 and "energy_j not positive" in rejected["reason"].iloc[0]
    assert rejected["source_row"].iloc[0] == 241 and rejected["partition_day"].isna().all()

    anova = _query(warehouse, f"select * from {model_assets.ANOVA_TABLE}")
    assert {"model", "hardware", "source", "target", "term", "sum_sq", "df", "F", "PR(>F)", "fitted_at"} <= set(
        anova.columns
    )
    assert {"tau_in", "tau_out", "tau_in:tau_out", "Residual"} <= set(anova["term"])
    assert len(anova.groupby(["model", "hardware", "source", "target"])) == len(fits)
    comparison = _query(warehouse, f"select * from {model_assets.COMPARISON_TABLE}")
    assert set(comparison["form"]) == {"paper", "intercept", "loglog", "concurrency"}
    assert set(comparison[comparison["source"] == "profiling"]["form"]) == {"paper", "intercept", "loglog"}

    (mat,) = [
        m for m in first.get_asset_materialization_events()
        if m.asset_key == model_assets.FITS_KEY
    ]  # fmt: skip
    metadata = mat.materialization.metadata
    assert metadata["dagster/row_count"].value == len(fits)
    assert "data:image/png;base64,iVBOR" in metadata["diagnostics/0"].value
    r2 = metadata["r2_uncentered/prof-llm/a100-80gb/profiling/energy"]
    assert isinstance(r2, dg.FloatMetadataValue) and r2.value > 0.99
    quality = _check(first, model_checks.FIT_QUALITY_CHECK)
    assert quality.severity == dg.AssetCheckSeverity.WARN
    assert quality.metadata["fits_checked"].value == len(fits)
    drift = _check(first, model_checks.COEFFICIENT_DRIFT_CHECK)
    assert drift.passed and drift.metadata["details"].value == "no previous fit"

    second = _materialize(data, warehouse, instance)
    assert second.success
    history = _query(warehouse, f"select fitted_at, count(*) as n from {model_assets.FITS_TABLE} group by all")
    assert len(history) == 2 and history["n"].nunique() == 1
    assert len(_query(warehouse, f"select * from {model_assets.ANOVA_TABLE}")) == len(anova)
    assert len(_query(warehouse, "select * from raw.rejected_rows where input = 'profiling'")) == 1
    drift = _check(second, model_checks.COEFFICIENT_DRIFT_CHECK)
    assert drift.passed and drift.metadata["groups_compared"].value == len(fits)
    assert drift.metadata["coefficients_drifted"].value == 0


def test_drift_flags_a_coefficient_moved_beyond_k_standard_errors():
    key = {"model": "m", "hardware": "h", "source": "telemetry", "target": "energy"}
    previous = pd.DataFrame([{**key, "alpha_in": 1.0, "alpha_out": 2.0, "alpha_in_out": 0.0,
                              "se_in": 0.1, "se_out": 0.1, "se_in_out": 0.01}])  # fmt: skip
    latest = previous.assign(alpha_in=1.25, alpha_out=2.5)  # 2.5 SE: fine; 5 SE: drift
    offenders, compared = coefficient_drift(latest, previous, 3.0)
    assert compared == 1
    assert list(offenders["coefficient"]) == ["alpha_out"]
    assert offenders["shift_se"].iloc[0] == pytest.approx(5.0)


def test_quality_flags_low_r_squared_high_mape_and_nan():
    fits = pd.DataFrame(
        {"model": ["a", "b", "c", "d"], "hardware": "h", "source": "profiling", "target": "energy",
         "r_squared_uncentered": [0.95, 0.85, 0.99, float("nan")], "cv_mape": [0.1, 0.1, 0.3, 0.1], "nobs": 10}
    )  # fmt: skip
    bad = quality_offenders(fits, 0.9, 0.25)
    assert list(bad["model"]) == ["b", "c", "d"]


def test_models_assets_are_discovered_but_not_in_the_daily_job():
    from orchestration.definitions import defs
    from orchestration.defs.automation.jobs import DAILY_JOB_NAME

    d = defs()
    keys = {k.to_user_string() for k in d.resolve_job_def(MODELS_JOB_NAME).asset_layer.executable_asset_keys}
    assert {"models/energy_model_fits", "models/energy_model_anova", "models/model_comparison"} <= keys
    daily = {k.to_user_string() for k in d.resolve_job_def(DAILY_JOB_NAME).asset_layer.executable_asset_keys}
    # the fits and the EcoLogits comparison over the window in the models job, their per-day parts with their day
    parts = {"marts/cmp_ecologits_day_combos", "marts/cmp_ecologits_day_bins", "models/fit_sample_days"}
    assert {k for k in daily if k.startswith("models/")} == {"models/fit_sample_days"}
    assert "marts/cmp_ecologits" in keys and not parts & keys
    assert parts <= daily and "marts/cmp_ecologits" not in daily
    checks = {key.name for key in d.resolve_asset_graph().asset_check_keys}
    assert {model_checks.FIT_QUALITY_CHECK, model_checks.COEFFICIENT_DRIFT_CHECK} <= checks
