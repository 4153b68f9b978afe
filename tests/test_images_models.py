"""Image energy and runtime models (orchestration.lib.images): regressors in Python and SQL, the physics and its
calibration, fits that recover a known physical model, form selection, profiling files, `impact fit`."""

import json
import math

import duckdb
import numpy as np
import pandas as pd
import pytest

from orchestration.lib import energy_models as em
from orchestration.lib.images import models as im
from orchestration.lib.images import predict as ip
from orchestration.lib.images.physics import SDXL_A100, profiling_runs

REQUESTS = pd.DataFrame(
    {
        "width": [1024, 512, 1536, 1024, 768],
        "height": [1024, 512, 1024, 768, 768],
        "images": [1, 4, 2, 1, 1],
        "steps": [30, 20, 100, 30, 25],
        "strength": [1.0, 1.0, 0.29, 0.5, None],
        "guidance": [True, False, True, None, True],
        "lora": [None, ["a", "b"], "pixel;water", 1, pd.NA],
        "input_width": [None, None, 640, None, None],
        "input_height": [None, None, 480, None, None],
    }
)


def test_regressors_by_hand():
    x = im.regressors(REQUESTS)
    mp = 1024 * 1024 / 1e6
    assert x.loc[0].to_dict() == pytest.approx(
        {
            "request": 1,
            "step": 30,
            "denoise": 60 * mp,
            "attention": 60 * mp * mp,
            "decode": mp,
            "encode": 0,
            "lora": 0,
        }
    )
    # no guidance: one denoiser branch; two adapters from a list
    assert x.loc[1, "denoise"] == pytest.approx(4 * 20 * 1 * 0.262144)
    assert x.loc[1, "lora"] == pytest.approx(2 * x.loc[1, "denoise"])
    # image-to-image: the steps diffusers runs, int(steps x strength) in doubles: int(28.999999999999996) = 28;
    # the input size given
    assert x.loc[2, "step"] == 28 == int(100 * 0.29)
    assert x.loc[2, "encode"] == pytest.approx(640 * 480 / 1e6)
    assert x.loc[2, "lora"] == pytest.approx(2 * x.loc[2, "denoise"])
    # strength < 1 without an input size: the input is taken at the output's size; guidance unknown = on
    assert x.loc[3, "encode"] == pytest.approx(1024 * 768 / 1e6) and x.loc[3, "step"] == 15
    assert (
        x.loc[3, "denoise"] == pytest.approx(15 * 2 * 1024 * 768 / 1e6)
        and x.loc[3, "lora"] == 1 * x.loc[3, "denoise"]
    )
    assert x.loc[4, "lora"] == 0  # a missing list (pd.NA) is no adapter, not one


def test_sql_regressors_agree_with_python(con):
    """models.request_predictions computes the regressors in SQL (images.predict.term_sql; int_request_days the
    same in macros/images.sql): they must be the Python ones."""
    frame = REQUESTS.assign(
        lora=[None, ["a", "b"], ["pixel", "water"], ["x"], None],
        strength=REQUESTS["strength"].astype(float),
        guidance=REQUESTS["guidance"].astype("boolean"),
        input_width=REQUESTS["input_width"].astype("Int64"),
        input_height=REQUESTS["input_height"].astype("Int64"),
    )
    con.register("frame", frame)
    columns = ", ".join(f"{ip.term_sql(t, 'f')} as {t}" for t in im.TERMS)
    got = con.execute(f"select {columns} from frame as f").df()
    pd.testing.assert_frame_equal(got, im.regressors(frame)[list(im.TERMS)], check_dtype=False, rtol=1e-12)


def test_stored_fit_prediction_in_sql_is_statsmodels_prediction_interval(con):
    runs = profiling_runs(SDXL_A100, sizes=[(512, 512), (1024, 1024), (768, 1024)], steps=[20, 30, 50], images=[1, 2],
                          loras=[0, 1])  # fmt: skip
    fit = im.fit_image_model(runs, "energy_j", "attention")
    frame = REQUESTS.assign(lora=[None, ["a", "b"], ["p", "w"], ["x"], None])
    want = fit.results.get_prediction(im.regressors(frame)[fit.terms].to_numpy()).summary_frame(alpha=0.05)
    got = im.predict(fit.row, frame)
    assert got["mean"].to_numpy() == pytest.approx(want["mean"].to_numpy(), rel=1e-9)
    assert got["high"].to_numpy() == pytest.approx(want["obs_ci_upper"].to_numpy(), rel=1e-9)
    con.register("frame", frame)
    con.register("fits", pd.DataFrame([fit.row]))
    sql = con.execute(f"select {ip.mean_sql('g', 'f')} as mean, {ip.half_width_sql('g', 'f')} as half "
                      "from frame as f cross join fits as g").df()  # fmt: skip
    assert sql["mean"].to_numpy() == pytest.approx(want["mean"].to_numpy(), rel=1e-9)
    assert (sql["mean"] + sql["half"]).to_numpy() == pytest.approx(want["obs_ci_upper"].to_numpy(), rel=1e-9)


def test_physics_is_calibrated_to_ml_energy_sdxl_on_a100():
    """ML.ENERGY v2 (SDXL base, A100-SXM4-40GB, batch 1, 1024 x 1024, guidance on): 3.394 s / 1307.3 J at 30
    steps, 4.469 s / 1719.7 J at 40 (the shared data's file; the constants here so that the test needs no file)."""
    q = pd.DataFrame({"width": [1024, 1024], "height": [1024, 1024], "steps": [30, 40], "images": [1, 1]})
    runtime, energy = SDXL_A100.runtime_s(q), SDXL_A100.gpu_energy_j(q)
    assert runtime == pytest.approx([3.3944, 4.4686], rel=0.01)
    assert energy == pytest.approx([1307.3, 1719.7], rel=0.06)
    assert energy[1] - energy[0] == pytest.approx(1719.7 - 1307.3, rel=0.02)  # the step slope


HELD_OUT = pd.DataFrame(
    {
        "width": [1536, 896, 1280, 1024, 640],
        "height": [1536, 1152, 720, 1024, 640],
        "steps": [40, 25, 60, 35, 45],
        "images": [1, 2, 1, 3, 1],
        "guidance": [True, True, False, True, True],
        "lora": [0, 1, 0, 2, 0],
        "strength": [1.0, 1.0, 1.0, 0.7, 1.0],
    }
)


@pytest.fixture(scope="module")
def grid_runs() -> pd.DataFrame:
    return profiling_runs(
        SDXL_A100, sizes=[(512, 512), (768, 768), (1024, 1024), (1024, 1536)], steps=[20, 30, 50], images=[1, 4],
        strengths=[1.0, 0.5], guidance=[True, False], loras=[0, 1], seed=3,
    )  # fmt: skip


def test_fits_recover_the_physics_at_held_out_sizes_and_steps(grid_runs):
    fits, comparison, _ = im.fit_groups(grid_runs, "profiling")
    chosen = fits[fits["selected"].astype(bool)].set_index("target")
    assert set(chosen.index) == {"energy", "runtime"}
    # the attention term is what the data need beyond 1 megapixel
    assert (chosen["form"] == "attention").all(), comparison[["target", "form", "cv_rmse"]]
    for target, truth in (("energy", SDXL_A100.gpu_energy_j), ("runtime", SDXL_A100.runtime_s)):
        p = im.predict(chosen.loc[target].to_dict(), HELD_OUT)
        assert (p["mean"] / truth(HELD_OUT) - 1).abs().max() < 0.03, p.assign(truth=truth(HELD_OUT))
        assert ((p["low"] <= truth(HELD_OUT)) & (truth(HELD_OUT) <= p["high"])).mean() >= 0.8
    # the runtime coefficients are the physics' seconds per unit of work
    runtime = chosen.loc["runtime"]
    for term in ("denoise", "attention", "step"):
        assert runtime[f"alpha_{term}"] == pytest.approx(SDXL_A100.seconds[term], rel=0.05)
    row = chosen.loc["energy"]
    assert row["r_squared"] > 0.999 and row["nobs"] == len(grid_runs)
    assert (
        math.isfinite(row["se_hc3_denoise"])
        and row["ci_low_denoise"] < row["alpha_denoise"] < row["ci_high_denoise"]
    )
    assert set(comparison["form"]) == {"pixel_steps", "linear", "attention", "loglog"}
    assert (comparison.loc[comparison["form"] == "loglog", "aic_scale"] == "log").all()


def test_terms_the_data_cannot_identify_are_left_out():
    """At one size and one image count, attention is a multiple of denoise and decode of the per-call term: the
    forms keep what the runs can tell apart, and say so in `terms`."""
    runs = profiling_runs(SDXL_A100, sizes=[(1024, 1024)], steps=[20, 25, 30, 40, 50])
    fit = im.fit_image_model(runs, "energy_j", "attention")
    assert fit.terms == ["request", "step"]
    with pytest.raises(em.SingularDesignError):
        im.fit_image_model(runs.head(3), "energy_j", "linear")


def test_profiling_csv_batch_size_and_rejects(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text(
        "model,hardware,width,height,steps,images,batch_size,strength,guidance,lora,energy_j,runtime_s\n"
        "sdxl,A100,1024,1024,30,1,4,,true,,4891.2,12.59\n"
        "sdxl,A100,1024,1024,30,1,,0.5,off,a;b,700,2\n"
        "sdxl,A100,1024.5,1024,30,1,,,,,1,1\n"
        "sdxl,A100,1024,1024,30,1,,1.5,maybe,,-1,1\n"
        ",A100,1024,,30,1,0,,,,1,1\n"
    )
    rows, rejects = im.read_profiling_csv(path)
    assert rows[["images", "batch_size", "strength", "guidance", "lora"]].to_dict("records") == [
        {"images": 4.0, "batch_size": 4.0, "strength": 1.0, "guidance": True, "lora": None},
        {"images": 1.0, "batch_size": 1.0, "strength": 0.5, "guidance": False, "lora": "a;b"},
    ]
    assert im.regressors(rows)["lora"].tolist()[1] == pytest.approx(2 * im.regressors(rows)["denoise"][1])
    assert rejects[["source_row", "reason"]].to_records(index=False).tolist() == [
        (3, "width not a whole number >= 1"),
        (4, "strength not in 0-1; guidance not true/false; energy_j not a positive number"),
        (5, "empty model; height not a finite number; batch_size not a whole number >= 1"),
    ]


def test_impact_fit_reads_image_and_text_profiling_files(tmp_path, grid_runs, capsys):
    from test_energy_models import FIXTURE

    (tmp_path / "text.csv").write_bytes(FIXTURE.read_bytes())
    grid_runs.to_csv(tmp_path / "images.csv", index=False)
    assert em.fit_main([str(tmp_path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    image = [r for r in rows if r.get("modality") == "image"]
    assert {(r["target"], r["form"]) for r in image} == {("energy", "attention"), ("runtime", "attention")}
    assert all(set(im.FITS_SCHEMA) <= set(r) and r["selected"] for r in image)
    assert any("alpha_in" in r for r in rows)  # the text runs' rows, as before
    assert em.fit_main([str(tmp_path / "images.csv")]) == 0
    out = capsys.readouterr().out
    assert "image form attention" in out and "alpha_attention" in out and "per MP^2-step" in out


def test_image_coefficient_drift():
    base = {"model": "m", "hardware": "h", "source": "telemetry", "target": "energy", "form": "linear",
            "selected": True, "alpha_denoise": 10.0, "se_denoise": 0.1, "alpha_step": 3.0, "se_step": 1.0}  # fmt: skip
    previous = pd.DataFrame([base])
    latest = pd.DataFrame([{**base, "alpha_denoise": 10.5, "alpha_step": 3.5}])
    offenders, compared = im.coefficient_drift(latest, previous, 3.0)
    assert compared == 1 and offenders["coefficient"].tolist() == ["alpha_denoise"]
    assert offenders["shift_se"].iloc[0] == pytest.approx(5.0)


@pytest.fixture
def con():
    connection = duckdb.connect()
    yield connection
    connection.close()


def test_select_form_prefers_the_simpler_within_one_percent():
    table = pd.DataFrame(
        {
            "form": ["pixel_steps", "linear", "attention", "loglog"],
            "terms": ["a", "b", "c", "d"],
            "cv_rmse": [10.0, 9.95, 9.0, 1.0],
            "error": [None] * 4,
        }
    )
    assert im.select_form(table) == "attention"  # the log-log form is compared, never selected
    assert im.select_form(table.assign(cv_rmse=[10.0, 9.95, 9.9, 1.0])) == "linear"  # within 1 % of 9.9
    assert im.select_form(table.assign(error="x")) is None


def test_the_dbt_macros_have_the_same_terms():
    """int_request_days predicts with dbt_project/macros/images.sql: its terms must be TERMS, in order (the
    pipeline test checks their values against Python's)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "dbt_project" / "macros" / "images.sql").read_text()
    (listed,) = re.findall(r"macro image_terms\(\).*?return\(\[([^\]]*)\]\)", text, flags=re.DOTALL)
    assert tuple(t.strip(" '") for t in listed.split(",")) == im.TERMS
    assert all(f"term == '{t}'" in text for t in im.TERMS[1:]) and "term == 'request'" in text


def test_impact_simulate_images_writes_a_diffusion_cluster(tmp_path):
    from orchestration.cli import main

    argv = ["simulate", "--images", "--out", str(tmp_path), "--day", "2024-05-01", "--requests-per-day", "300",
            "--nodes", "1", "--requests-format", "csv", "--profiling", "--seed", "3"]  # fmt: skip
    assert main(argv) == 0
    requests = pd.read_csv(tmp_path / "requests" / "sim-sdxl" / "2024-05-01.csv")
    assert len(requests) == 300 and (requests["modality"] == "image").all()
    assert (
        requests["lora"].dropna().str.fullmatch(r"[a-z-]+(;[a-z-]+)?").all()
    )  # names separated by ';' in CSV
    assert {"tokens", "input_tokens"}.isdisjoint(requests.columns)
    truth = pd.read_parquet(tmp_path / "truth" / "requests.parquet")
    alone = truth[truth["alone_on_gpu"]]
    # alone on its GPU, a request's GPU dynamic energy is its physics' dynamic energy alone
    assert np.allclose(
        alone["true_gpu_dynamic_energy_j"], alone["true_gpu_energy_alone_j"] - 60.0 * alone["duration_s"]
    )
    assert len(pd.read_csv(tmp_path / "profiling" / "sim-sdxl.csv")) == 192


def test_the_image_checks_explain_themselves_in_one_line():
    from orchestration.lib import check_messages as cm

    bad = pd.DataFrame([{"model": "sdxl", "hardware": "A100", "source": "telemetry", "target": "energy",
                         "r_squared_uncentered": 0.7, "cv_mape": 0.4}])  # fmt: skip
    line = cm.image_fit_quality_advice(bad, 0.9, 0.25)
    assert "sdxl on A100 (energy from telemetry)" in line and "R² 0.70" in line and "CV MAPE 40%" in line
    assert line.endswith("(docs/images.md#4-image-energy-and-runtime-models)") and "\n" not in line
    line = cm.adapter_advice([("brand-style", "no entry in factors/models.yml: not charged", 12), ("x", "y", 1)])
    assert line.startswith("LoRA adapter brand-style (12 request(s)): no entry") and "and 1 more adapter" in line
    assert line.endswith("(docs/images.md#3-inferences-training-and-lora-adapters)")
    assert cm.image_fit_quality_advice(bad.iloc[0:0], 0.9, 0.25) is None and cm.adapter_advice([]) is None
