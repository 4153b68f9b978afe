"""Predictions from the e_K / r_K models: point estimates, 95 % prediction intervals, missing fits, the CLI."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from orchestration.lib import predictions

# known coefficients of the paper form: y = a_in tau_in + a_out tau_out + a_io tau_in tau_out + noise
ENERGY = (0.02, 0.5, 0.0004)
RUNTIME = (0.0001, 0.02, 0.000001)
ENERGY_SD, RUNTIME_SD = 5.0, 0.2


def synthetic(n: int, seed: int, model: str = "m7b", hardware: str = "A100") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tin = rng.integers(10, 2000, n)
    tout = rng.integers(1, 500, n)

    def paper(c):
        return c[0] * tin + c[1] * tout + c[2] * tin * tout

    return pd.DataFrame(
        {
            "model": model,
            "hardware": hardware,
            "input_tokens": tin,
            "output_tokens": tout,
            "true_energy_j": paper(ENERGY),
            "true_duration_s": paper(RUNTIME),
            "it_energy_j": paper(ENERGY) + rng.normal(0, ENERGY_SD, n),
            "duration_s": paper(RUNTIME) + rng.normal(0, RUNTIME_SD, n),
        }
    )


def test_predictions_match_known_coefficients_and_intervals_cover():
    train, test = synthetic(3000, seed=1), synthetic(4000, seed=2)
    p = predictions.predict_requests(test, train)
    assert (p["prediction_status"] == predictions.STATUS_OK).all()
    np.testing.assert_allclose(p["predicted_energy_j"], p["true_energy_j"], rtol=0.02, atol=1.0)
    np.testing.assert_allclose(p["predicted_request_duration_s"], p["true_duration_s"], rtol=0.02, atol=0.05)
    assert (p["predicted_energy_low_j"] <= p["predicted_energy_j"]).all()
    assert (p["predicted_energy_j"] <= p["predicted_energy_high_j"]).all()
    assert (p["predicted_energy_low_j"] >= 0).all() and (p["predicted_duration_low_s"] >= 0).all()
    e_cov = p["it_energy_j"].between(p["predicted_energy_low_j"], p["predicted_energy_high_j"]).mean()
    # duration intervals are clipped at 0, which can only raise coverage of the (noisy, sometimes negative) truth
    d_cov = p["duration_s"].between(p["predicted_duration_low_s"], p["predicted_duration_high_s"]).mean()
    assert 0.90 <= e_cov <= 0.99, e_cov
    assert 0.90 <= d_cov <= 0.99, d_cov
    # the half-width of a prediction interval is about 1.96 sigma when the coefficients are well determined
    half = (p["predicted_energy_high_j"] - p["predicted_energy_low_j"]) / 2
    assert half.median() == pytest.approx(1.96 * ENERGY_SD, rel=0.1)


def test_predicted_inferences_is_output_plus_one_and_order_is_kept():
    train = synthetic(200, seed=3)
    test = synthetic(50, seed=4).sample(frac=1.0, random_state=0)
    p = predictions.predict_requests(test, train)
    assert list(p.index) == list(test.index)
    assert (p["predicted_inferences"] == test["output_tokens"] + 1).all()


def test_model_without_training_data_gets_a_status():
    train = synthetic(200, seed=5)
    test = pd.concat(
        [synthetic(5, seed=6), synthetic(3, seed=7, model="other"), synthetic(2, seed=8, hardware="H100")],
        ignore_index=True,
    )
    test.loc[1, "output_tokens"] = None
    test.loc[9, "hardware"] = None
    p = predictions.predict_requests(test, train)
    status = p["prediction_status"]
    assert (status.iloc[[0, 2, 3, 4]] == "ok").all()
    assert status.iloc[1] == "missing token counts"
    assert pd.isna(p["predicted_inferences"].iloc[1])
    assert status.iloc[5].startswith("no fit for model other on hardware A100")
    assert status.iloc[8].startswith("no fit for model m7b on hardware H100")
    assert status.iloc[9].startswith("no fit for model m7b")
    assert p.loc[5:, "predicted_energy_j"].isna().all()
    assert (p.loc[5:, "predicted_inferences"] == test.loc[5:, "output_tokens"] + 1).all()


def test_too_few_rows_gives_status_with_reason():
    p = predictions.predict_requests(synthetic(5, seed=9), synthetic(2, seed=10))
    assert p["prediction_status"].str.contains("too few rows").all()
    assert p["predicted_energy_j"].isna().all()


def test_prediction_errors():
    pred = pd.DataFrame(
        {
            "model": ["a", "a", "a", "b"],
            "hardware": ["A100"] * 4,
            "attributed_it_energy_j": [100.0, 200.0, 0.0, 10.0],
            "predicted_energy_j": [110.0, 180.0, 5.0, np.nan],
            "predicted_energy_low_j": [90.0, 190.0, 0.0, np.nan],
            "predicted_energy_high_j": [120.0, 210.0, 10.0, np.nan],
        }
    )
    e = predictions.prediction_errors(pred).set_index("model")
    assert e.loc["a", "n_requests"] == 3 and e.loc["a", "n"] == 2
    assert e.loc["a", "mape"] == pytest.approx(0.1)
    assert e.loc["a", "median_ratio"] == pytest.approx((1.1 + 0.9) / 2)
    assert e.loc["a", "interval_coverage"] == pytest.approx(1.0)
    assert e.loc["b", "n"] == 0 and np.isnan(e.loc["b", "mape"])
    assert "| a | A100 | 3 | 2 | 10.0 % |" in predictions.errors_markdown(e.reset_index())


def _small_warehouse(path: Path) -> None:
    frame = synthetic(400, seed=11)
    frame["request_id"] = [f"r{i}" for i in range(len(frame))]
    frame["cluster"] = np.where(np.arange(len(frame)) % 2 == 0, "c1", "c2")
    frame["start_time"] = pd.Timestamp("2024-05-01") + pd.to_timedelta(np.arange(len(frame)) * 300, unit="s")
    frame["day"] = frame["start_time"].dt.date
    con = duckdb.connect(str(path))
    con.execute("create schema marts")
    con.execute("create schema raw")
    con.execute(
        "create table marts.fct_request_energy as select request_id, cluster, model, start_time, duration_s, "
        "input_tokens, output_tokens, it_energy_j, cast(day as date) as day, 1.0 as mean_concurrency, "
        "'text' as modality from frame"
    )
    con.execute("create table raw.clusters (cluster varchar, gpu_model varchar)")
    con.execute("insert into raw.clusters values ('c1', 'A100'), ('c2', 'A100'), ('c3', 'H100')")
    con.close()


def test_cli_predict_json(tmp_path, capsys):
    wh = tmp_path / "wh.duckdb"
    _small_warehouse(wh)
    args = ["--model", "m7b", "--input-tokens", "500", "--output-tokens", "100", "--warehouse", str(wh)]
    assert predictions.predict_main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    truth = ENERGY[0] * 500 + ENERGY[1] * 100 + ENERGY[2] * 500 * 100
    assert out["predicted_energy_j"] == pytest.approx(truth, rel=0.05)
    assert out["predicted_energy_low_j"] < out["predicted_energy_j"] < out["predicted_energy_high_j"]
    assert (
        out["predicted_duration_low_s"]
        < out["predicted_request_duration_s"]
        < out["predicted_duration_high_s"]
    )
    assert out["predicted_inferences"] == 101
    assert out["nobs"] == 400 and out["hardware"] == "A100"
    assert out["training_clusters"] == ["c1", "c2"]
    assert out["prediction_status"] == "ok"

    assert predictions.predict_main([*args, "--cluster", "c1", "--at", "2024-05-01T12:00:00Z", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["nobs"] == 144  # 12 h of one request every 5 minutes, both A100 clusters

    assert predictions.predict_main(args) == 0
    assert "predicted energy" in capsys.readouterr().out


def test_cli_predict_errors(tmp_path, capsys):
    wh = tmp_path / "wh.duckdb"
    args = ["--input-tokens", "5", "--output-tokens", "5", "--warehouse"]
    assert predictions.predict_main(["--model", "m7b", *args, str(wh)]) == 2
    assert "no warehouse" in capsys.readouterr().err
    _small_warehouse(wh)
    assert predictions.predict_main(["--model", "nope", *args, str(wh)]) == 2
    assert "no attributed requests of model 'nope'" in capsys.readouterr().err
    assert predictions.predict_main(["--model", "m7b", *args, str(wh), "--cluster", "c3"]) == 2
    assert "H100" in capsys.readouterr().err
    assert predictions.predict_main(["--model", "m7b", *args, str(wh), "--cluster", "zz"]) == 2
    assert "unknown cluster" in capsys.readouterr().err


@pytest.mark.integration
@pytest.mark.xdist_group("pipeline")
def test_request_predictions_asset(tmp_path):
    import dagster as dg
    from conftest import run_days

    from orchestration.defs.models.assets import energy_models
    from orchestration.defs.predictions.assets import request_predictions
    from orchestration.defs.resources import ImpactSettings
    from orchestration.lib.simulation.simulate import ClusterSpec, SimConfig, simulate, write_dataset
    from orchestration.lib.warehouse import connect

    cfg = SimConfig(
        days=["2024-05-01"],
        clusters=[ClusterSpec(cluster_id="p-a100", nodes=2, gpus_per_node=2)],
        requests_per_day=1500,
        arrivals="poisson",
        seed=5,
    )
    data_dir, warehouse = tmp_path / "inputs", tmp_path / "wh.duckdb"
    write_dataset(simulate(cfg), data_dir)
    run_days(data_dir, warehouse, ["2024-05-01"])
    result = dg.materialize(
        [energy_models, request_predictions],
        resources={"settings": ImpactSettings(data_dir=str(data_dir), warehouse=str(warehouse))},
    )
    assert result.success
    con = connect(warehouse, read_only=True)
    try:
        n_fct = con.execute("select count(*) from marts.fct_request_energy").fetchone()[0]
        missing = con.execute(
            "select count(*) from marts.fct_request_energy f anti join models.request_predictions p "
            "using (request_id)"
        ).fetchone()[0]
        n_pred, n_ok, bad_inf = con.execute(
            "select count(*), count(*) filter (prediction_status = 'ok'), "
            "count(*) filter (predicted_inferences != output_tokens + 1) from models.request_predictions"
        ).fetchone()
        errors = con.execute("select * from models.prediction_errors").df()
        # the view's SQL intervals are statsmodels' get_prediction on the same fit (the stored training sample)
        view = con.execute("select * from models.request_predictions order by request_id").df()
        train = predictions.window_requests(con, max_rows_per_group=predictions.FIT_MAX_ROWS)
        expected = predictions.predict_requests(
            predictions.window_requests(con).sort_values("request_id").reset_index(drop=True), train
        )
    finally:
        con.close()
    for col in ("predicted_energy_j", "predicted_energy_low_j", "predicted_energy_high_j",
                "predicted_request_duration_s", "predicted_duration_low_s", "predicted_duration_high_s"):
        np.testing.assert_allclose(view[col].to_numpy(float), expected[col].to_numpy(float), rtol=1e-9, err_msg=col)
    assert n_fct > 1000 and missing == 0 and n_pred == n_fct
    assert n_ok == n_pred and bad_inf == 0
    assert len(errors) >= 1 and (errors["n"] > 0).all() and errors["mape"].notna().all()
    mat = result.asset_materializations_for_node(request_predictions.op.name)[0]
    assert mat.metadata["dagster/row_count"].value == n_fct
    assert "MAPE" in mat.metadata["prediction_errors"].value


def test_fit_sample_is_capped_per_group_and_stable(tmp_path, monkeypatch):
    wh = tmp_path / "wh.duckdb"
    _small_warehouse(wh)
    con = duckdb.connect(str(wh), read_only=True)
    try:
        full = predictions.window_requests(con)
        sample = predictions.window_requests(con, max_rows_per_group=50)
        again = predictions.window_requests(con, max_rows_per_group=50)
        smallest = {r[0] for r in con.execute(
            "select request_id from marts.fct_request_energy order by hash(request_id), request_id limit 50"
        ).fetchall()}  # fmt: skip
        # a hash threshold that keeps too few rows: the group is ranked in full, to the same sample
        monkeypatch.setattr(predictions, "THIN_MARGIN", 0.01)
        reranked = predictions.window_requests(con, max_rows_per_group=50)
    finally:
        con.close()
    assert len(full) == 400 and len(sample) == 50  # one model x hardware (both clusters are A100)
    assert sample["request_id"].tolist() == again["request_id"].tolist()
    assert set(sample["request_id"]) == smallest and set(sample["request_id"]) < set(full["request_id"])
    pd.testing.assert_frame_equal(reranked, sample)
    assert sample[["day", "request_id"]].equals(sample[["day", "request_id"]].sort_values(["day", "request_id"]))


def test_prediction_errors_table_statuses_and_window_from_one_scan():
    con = duckdb.connect()
    con.execute("create schema marts; create schema models")
    con.execute("create table marts.fct_request_energy as select date '2024-03-28' as day")
    con.execute(
        """
        create table models.request_predictions as select * from (values
            ('a', 'H100', date '2024-03-28', 10.0, 11.0, 9.0, 12.0, 'ok'),
            ('a', 'H100', date '2024-03-20', 20.0, 18.0, 17.0, 19.0, 'ok'),
            ('a', 'H100', date '2024-03-01', 10.0, null, null, null, 'missing token counts'),
            ('a', 'H100', date '2024-02-29', 10.0, 99.0, 0.0, 200.0, 'ok'),  -- before the 28-day window
            ('b', 'A100', date '2024-03-10', 0.0, null, null, null, 'no fit for model b on hardware A100'),
            ('b', 'A100', date '2024-03-11', 5.0, null, null, null, 'no fit for model b on hardware A100')
        ) as t(model, hardware, day, attributed_it_energy_j, predicted_energy_j, predicted_energy_low_j,
               predicted_energy_high_j, prediction_status)
        """
    )
    errors, statuses, n, span = predictions.replace_prediction_errors(con)
    stored = con.execute("select * from models.prediction_errors order by model").df()
    con.close()
    assert n == 5 and span == (dt.date(2024, 3, 1), dt.date(2024, 3, 28))
    assert statuses == {"ok": 2, "missing token counts": 1, "no fit for model b on hardware A100": 2}
    assert list(stored.columns) == list(predictions.PREDICTION_ERRORS_SCHEMA)
    a, b = stored.iloc[0], stored.iloc[1]
    assert (a["n_requests"], a["n"], b["n_requests"], b["n"]) == (3, 2, 2, 0)
    assert a["mape"] == pytest.approx((0.1 + 0.1) / 2) and a["median_ratio"] == pytest.approx((1.1 + 0.9) / 2)
    assert a["interval_coverage"] == pytest.approx(0.5)  # 10 in [9, 12]; 20 not in [17, 19]
    assert pd.isna(b["mape"]) and pd.isna(b["median_ratio"])
    pd.testing.assert_frame_equal(errors, stored)


# ------------------------------------------------------------------------ the fits' sample from per-day parts


def _days_mart(con, n: int = 60_000) -> None:
    """marts.fct_request_energy over six start days, two models on two clusters of different hardware
    (independent of the day), some requests that ran past midnight."""
    con.execute("create schema if not exists marts; create schema if not exists raw")
    con.execute("create or replace table raw.clusters as select * from (values ('c1', 'A100'), ('c2', 'H100')) "
                "as t(cluster, gpu_model)")
    con.execute(
        f"""
        create or replace table marts.fct_request_energy as
        select
            'r' || i as request_id,
            case when hash(i, 'cluster') % 3 = 0 then 'c2' else 'c1' end as cluster,
            case when hash(i, 'model') % 2 = 0 then 'm1' else 'm2' end as model,
            timestamp '2024-05-10 00:00:00' - to_days(cast(i % 6 as integer)) + to_seconds(i % 80000) as start_time,
            1.0 + i % 7 as duration_s, i % 500 as input_tokens, i % 300 as output_tokens,
            10.0 * (i % 97) as it_energy_j, date '2024-05-10' - cast(i % 6 as integer) as day,
            1.0 as mean_concurrency, case when i % 53 = 0 then 2 else 1 end as days_spanned, 'text' as modality
        from range({n}) as t(i)
        """
    )


@pytest.mark.parametrize(("cap", "margin"), [(50, 1.2), (700, 1.2), (700, 0.01), (20_000, 1.2)])
def test_window_sample_from_day_parts_is_the_window_sample(monkeypatch, cap, margin):
    """The fits' sample from the days' parts (each keeping its FIT_MAX_ROWS smallest hashes) is row for row the
    sample window_requests ranks from the whole window: a bottom-k sample merges exactly. Also when a hash
    threshold keeps too few rows (margin 0.01: ranked again in full) and when groups are smaller than the cap."""
    monkeypatch.setattr(predictions, "FIT_MAX_ROWS", cap)
    monkeypatch.setattr(predictions, "THIN_MARGIN", margin)
    con = duckdb.connect()
    _days_mart(con)
    want = predictions.window_requests(con, days=4, max_rows_per_group=cap)
    got = predictions.window_sample(con, days=4)
    pd.testing.assert_frame_equal(got, want)
    (groups,) = con.execute(f"select count(distinct (model, hardware, day)) from {predictions.FIT_COUNTS_TABLE}").fetchone()
    assert groups == 4 * 4  # every group of every window day reduced once
    (stored, per_part) = con.execute(
        f"select sum(n), max(n) from (select count(*) as n from {predictions.FIT_SAMPLE_TABLE} group by day, "
        "spanning, model, hardware)"
    ).fetchone()
    (largest,) = con.execute(f"select max(requests) from {predictions.FIT_COUNTS_TABLE}").fetchone()
    assert per_part == min(cap, largest)  # a part keeps the cap, or every request when it has fewer
    assert len(got) == 4 * min(cap, want.groupby(["model", "hardware"]).size().min()) or cap >= 20_000
    # a second call reads the parts (none missing) and gives the same sample
    pd.testing.assert_frame_equal(predictions.window_sample(con, days=4), want)
    assert con.execute(f"select count(*) from {predictions.FIT_SAMPLE_TABLE}").fetchone()[0] == stored
    with pytest.raises(ValueError):
        predictions.window_sample(con, days=4, cap=cap + 1)


def test_fit_sample_daily_reduction_follows_the_requests_that_ran_into_the_day(monkeypatch):
    monkeypatch.setattr(predictions, "FIT_MAX_ROWS", 300)
    con = duckdb.connect()
    _days_mart(con)
    predictions.window_sample(con, days=6)
    # materialising 2024-05-10 completes the requests of 2024-05-09 that ran past midnight
    con.execute("update marts.fct_request_energy set it_energy_j = it_energy_j + 1000 "
                "where day = date '2024-05-09' and days_spanned > 1")
    predictions.reduce_fit_sample_day(con, dt.date(2024, 5, 10), 6 * 3600.0)
    want = predictions.window_requests(con, days=6, max_rows_per_group=300)
    pd.testing.assert_frame_equal(predictions.window_sample(con, days=6), want)
    (spanning_energy,) = con.execute(
        f"select min(it_energy_j) from {predictions.FIT_SAMPLE_TABLE} where day = date '2024-05-09' and spanning"
    ).fetchone()
    assert spanning_energy >= 1000


def test_cli_predict_text_from_the_stored_profiling_fit(tmp_path, capsys):
    """`impact predict --source profiling` uses the latest stored profiling fit (models.energy_model_fits) of the
    model on the hardware asked for (--hardware, case-insensitive): statsmodels' prediction and interval."""
    from orchestration.defs.models.assets import append_fits
    from orchestration.lib.energy_models import fit_energy_model, fit_groups

    runs = synthetic(300, seed=5).rename(columns={"it_energy_j": "energy_j", "duration_s": "runtime_s"})
    fits = fit_groups(runs, source="profiling")
    wh = tmp_path / "wh.duckdb"
    con = duckdb.connect(str(wh))
    con.execute("create schema raw; create table raw.clusters (cluster varchar, gpu_model varchar)")
    append_fits(con, fits)
    con.close()
    args = ["--model", "m7b", "--input-tokens", "800", "--output-tokens", "120", "--warehouse", str(wh), "--json"]
    assert predictions.predict_main([*args, "--source", "profiling", "--hardware", "a100"]) == 0
    out = json.loads(capsys.readouterr().out)
    want = fit_energy_model(runs, "energy_j").results.get_prediction(np.array([[800, 120, 800 * 120]]))
    frame = want.summary_frame(alpha=0.05).iloc[0]
    assert out["predicted_energy_j"] == pytest.approx(frame["mean"], rel=1e-9)
    assert out["predicted_energy_high_j"] == pytest.approx(frame["obs_ci_upper"], rel=1e-9)
    assert out["source"] == "profiling" and out["hardware"] == "A100" and out["nobs"] == 300
    assert predictions.predict_main([*args, "--source", "profiling", "--hardware", "H100"]) == 2
    assert "no profiling fit of model 'm7b' on hardware H100" in capsys.readouterr().err
