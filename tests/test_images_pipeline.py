"""Image requests end to end on a simulated day the code never saw (fresh seed): a diffusion cluster (DCGM
counters, autoscaling, per-GPU batching, LoRA and image-to-image mix) beside a text cluster sharing nothing but the
run, an image cluster without telemetry (its energy predicted), image profiling runs from a known physical model, a
factors/models.yml with two LoRA adapters (a third adapter the requests name has no entry), and bad image rows.

One module fixture: the daily job, then the models job (the fits), then the day again (its uncovered time now
predicted, and re-materialising it replaces it).
"""

import json

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from conftest import run_days

from orchestration.lib import invariants, predictions
from orchestration.lib.images import models as im
from orchestration.lib.images import simulate as image_sim
from orchestration.lib.images.physics import SDXL_A100, profiling_runs
from orchestration.lib.simulation import simulate as sim
from orchestration.lib.warehouse import connect

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("pipeline")]

DAY = "2024-06-12"
ADAPTERS = {
    "pixel-art-xl": (2.0, 10.0, 5.0e5),
    "watercolor-xl": (3.0, 20.0, 2.0e6),
}  # kg, L, lifetime inferences
WORKLOAD = image_sim.ImageWorkload(
    adapters=("pixel-art-xl", "watercolor-xl", "brand-style"), lora_shares=(0.3, 0.1)
)
IMAGES = image_sim.ImageClusterSpec(
    cluster_id="mix-img", nodes=2, min_nodes=1, gpus_per_node=4, requests_per_day=3000, workload=WORKLOAD,
    region="US-TEX-ERCO",
)  # fmt: skip
DARK = image_sim.ImageClusterSpec(cluster_id="mix-dark", nodes=1, gpus_per_node=2, requests_per_day=150)
TEXT = sim.ClusterSpec(
    cluster_id="mix-text", nodes=1, gpus_per_node=4, arrivals="poisson", requests_per_day=800
)
# profiling grid and held-out sizes / step counts (none of them in the grid)
GRID = {"sizes": [(512, 512), (768, 768), (1024, 1024), (1024, 1536)], "steps": [20, 30, 50], "images": [1, 4],
        "strengths": [1.0, 0.5], "guidance": [True, False], "loras": [0, 1]}  # fmt: skip
HELD_OUT = [
    {"width": 1536, "height": 1536, "steps": 40},
    {"width": 896, "height": 1152, "steps": 25, "images": 2},
    {"width": 1280, "height": 720, "steps": 60, "no_guidance": True},
    {"width": 640, "height": 640, "steps": 45, "images": 3, "strength": 0.7, "lora": 1},
]
BAD_ROWS = [
    ({"modality": "image", "width": 1024, "height": 1024, "steps": 0}, "steps must be at least 1 (0)"),
    ({"modality": "image", "width": "big", "height": 1024, "steps": 30}, "non-numeric width 'big'"),
    ({"modality": "image", "quality": "ultra"}, "unknown quality 'ultra' (not in the quality table: factors/image_quality.csv)"),
    ({"modality": "image", "width": 1024, "height": 1024, "steps": 30, "strength": 2}, "strength 2 outside 0-1"),
    ({"width": 512, "height": 512, "input_tokens": 4}, "image field width, height on a text request (modality is text: set modality to image)"),
]  # fmt: skip


def _names(v) -> list:
    """A LoRA list as DuckDB hands it to pandas (a list, an array, or NA), as a list."""
    return [] if v is None or (np.ndim(v) == 0 and pd.isna(v)) else list(v)


def _models_yml() -> str:
    entries = [
        f"  - model: {name}\n    base_model: stable-diffusion-xl-base-1.0\n    fine_tuning_kg_co2e: {kg}\n"
        f"    fine_tuning_water_l: {water}\n    projected_lifetime_inferences: {p}\n    service_start: 2024-01-01\n"
        for name, (kg, water, p) in ADAPTERS.items()
    ]
    return "models:\n" + "".join(entries)


def _models_job(instance):
    from orchestration.definitions import defs
    from orchestration.defs.automation.jobs import MODELS_JOB_NAME

    result = (
        defs().resolve_job_def(MODELS_JOB_NAME).execute_in_process(instance=instance, raise_on_error=False)
    )
    assert result.success
    return result


def _checks(results) -> dict[str, bool]:
    return {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
        for r in results for e in r.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    cfg = sim.SimConfig(days=[DAY], clusters=[TEXT, IMAGES, DARK], seed=20260612)
    result = image_sim.simulate(cfg)
    root = tmp_path_factory.mktemp("images")
    data = root / "inputs"
    image_sim.write_dataset(
        result, data, requests_format={"mix-text": "jsonl", "mix-img": "csv", "mix-dark": "parquet"}
    )
    for path in (data / "telemetry" / "mix-dark").iterdir():  # a cluster whose telemetry never arrives
        path.unlink()
    (data / "factors").mkdir()
    (data / "factors" / "models.yml").write_text(_models_yml())
    (data / "profiling").mkdir()
    profiling_runs(SDXL_A100, **GRID, seed=7).to_csv(data / "profiling" / "sdxl.csv", index=False)
    base = {"cluster": "mix-img", "model": "stable-diffusion-xl-base-1.0", "start_time": f"{DAY}T12:00:00Z",
            "duration_s": 3}  # fmt: skip
    lines = [json.dumps({**base, "request_id": f"bad-{i}", **row}) for i, (row, _) in enumerate(BAD_ROWS)]
    (data / "requests" / "mix-img" / "bad.jsonl").write_text("\n".join(lines) + "\n")
    warehouse = root / "wh.duckdb"
    instance = dg.DagsterInstance.ephemeral()
    first = run_days(data, warehouse, [DAY])
    models = _models_job(instance)
    second = run_days(data, warehouse, [DAY])  # uncovered time predicted with the fits; the day replaced
    return {"result": result, "warehouse": warehouse, "checks": _checks([*first, models, *second])}


def _query(world, sql, params=None) -> pd.DataFrame:
    con = connect(world["warehouse"], read_only=True)
    try:
        return con.execute(sql, params).df()
    finally:
        con.close()


def test_metered_energy_matches_truth_and_closure_is_exact(world):
    got = _query(world, "select cluster, metered_it_energy_j, attributed_energy_j, unattributed_energy_j, requests "
                        "from marts.fct_cluster_energy_daily")  # fmt: skip
    truth = world["result"].truth_cluster_day.merge(got, on="cluster").set_index("cluster")
    # the cluster whose telemetry never came: its requests are there, its metered energy is none
    assert truth.loc["mix-dark", "metered_it_energy_j"] == 0 and truth.loc["mix-dark", "requests_y"] == 150
    truth = truth.drop(index="mix-dark")
    assert ((truth["metered_it_energy_j"] / truth["it_energy_j"] - 1).abs() < 0.005).all(), truth
    con = connect(world["warehouse"], read_only=True)
    try:
        assert invariants.conservation_violations(con) == []
        assert invariants.negative_energy_rows(con) == []
        bad, tested = invariants.single_request_rule(con)
        assert bad == [] and tested > 1000
    finally:
        con.close()


def test_a_lone_image_request_gets_its_true_dynamic_energy(world):
    truth = world["result"].truth_requests
    got = _query(
        world, "select request_id, dynamic_energy_j from marts.fct_request_energy where cluster = 'mix-img'"
    )
    both = truth[truth["alone_on_gpu"]].merge(got, on="request_id")
    assert len(both) > 1000
    ratio = both["dynamic_energy_j"] / both["true_dynamic_energy_j"]
    assert float(np.median((ratio - 1).abs())) < 0.01, ratio.describe()
    # batching happened: requests that shared a GPU are there too, and every request is in the mart once
    assert (~truth.loc[truth["cluster"] == "mix-img", "alone_on_gpu"]).sum() > 20
    assert len(got) == (world["result"].requests["cluster"] == "mix-img").sum()


def test_image_fields_and_per_image_figures_reach_the_marts(world):
    log = world["result"].requests.set_index("request_id")
    got = _query(world, "select * from marts.fct_request_impact where modality = 'image'").set_index(
        "request_id"
    )
    assert len(got) == (log["modality"] == "image").sum()
    img = log.loc[got.index]
    assert (got["images"] == img["images"]).all()
    assert (got["lora"].map(_names) == img["lora"].map(lambda v: sorted(_names(v)))).all()
    labelled = img["quality"].notna()
    assert labelled.any() and (got.loc[labelled, "steps"].isin([30, 50])).all()  # from the quality table
    assert (got["predicted_inferences"] == got["images"]).all()
    assert np.allclose(got["total_g_co2e_per_image"], got["total_g_co2e"] / got["images"])
    mp_steps = got["images"] * got["width"] * got["height"] / 1e6 * np.floor(got["steps"] * got["strength"])
    assert np.allclose(got["megapixel_steps"], mp_steps)
    agg = _query(world, "select modality, sum(requests) as requests, sum(images) as images from marts.agg_impact_daily "
                        "group by modality order by modality")  # fmt: skip
    assert agg["modality"].tolist() == ["image", "text"] and agg["requests"].tolist() == [len(got), 800]
    assert agg["images"].iloc[0] == got["images"].sum() and pd.isna(agg["images"].iloc[1])


def test_lora_fine_tuning_is_the_adapters_rate_times_images_exactly(world):
    got = _query(world, "select request_id, images, lora, fine_tuning_g_co2e, training_water_l, "
                        "adapters_without_factor from marts.fct_request_impact where modality = 'image'")  # fmt: skip
    rate = {name: kg * 1000 / p for name, (kg, _, p) in ADAPTERS.items()}
    water = {name: w / p for name, (_, w, p) in ADAPTERS.items()}
    names = got["lora"].map(_names)
    want = names.map(lambda n: sum(rate.get(a, 0.0) for a in n)) * got["images"]
    assert (want > 0).sum() > 500
    assert np.allclose(got["fine_tuning_g_co2e"], want, rtol=1e-12, atol=0)
    assert np.allclose(got["training_water_l"], names.map(lambda n: sum(water.get(a, 0.0) for a in n)) * got["images"],
                       rtol=1e-12, atol=0)  # fmt: skip
    # the adapter without an entry: listed on its requests, never a silent zero; the check warns
    unknown = names.map(lambda n: "brand-style" in n)
    assert unknown.sum() > 100
    assert got.loc[unknown, "adapters_without_factor"].map(_names).map(["brand-style"].__eq__).all()
    assert got.loc[~unknown, "adapters_without_factor"].map(_names).map([].__eq__).all()
    assert world["checks"]["lora_factor_coverage"] is False
    rates = _query(world, "select factor_model, base_model, inferences from marts.dim_model_training_rates "
                          f"where month = date '{DAY[:8]}01' and base_model is not null order by 1")  # fmt: skip
    served = {a: int(got.loc[names.map(lambda n, a=a: a in n), "images"].sum()) for a in ADAPTERS}
    assert dict(zip(rates["factor_model"], rates["inferences"])) == served


def test_bad_image_rows_are_all_rejected_with_their_reason(world):
    got = _query(
        world, "select source_row, reason from raw.rejected_rows where input = 'requests' order by 1"
    )
    assert list(got.itertuples(index=False, name=None)) == [
        (i + 1, why) for i, (_, why) in enumerate(BAD_ROWS)
    ]


def test_uncovered_image_requests_get_the_fit_prediction_with_interval(world):
    fits = _query(world, "select * from models.image_model_fits where selected")
    assert set(fits["source"]) == {"telemetry", "profiling"}
    assert set(zip(fits["source"], fits["target"])) == {(s, t) for s in ("telemetry", "profiling")
                                                         for t in ("energy", "runtime")}  # fmt: skip
    energy = fits[(fits["source"] == "telemetry") & (fits["target"] == "energy")].iloc[0].to_dict()
    dark = _query(world, "select * from marts.fct_request_impact where cluster = 'mix-dark'")
    assert len(dark) == 150 and (dark["energy_source"] == "predicted").all()
    want = im.predict(energy, dark.assign(lora=dark["lora"].map(lambda v: len(_names(v)))))
    assert np.allclose(dark["it_energy_predicted_j"], want["mean"], rtol=1e-9)
    assert np.allclose(dark["it_energy_predicted_high_j"], want["high"], rtol=1e-9)
    assert (dark["it_energy_predicted_low_j"] <= dark["it_energy_predicted_j"]).all()
    assert dark["prediction_fit"].str.contains("telemetry image fit").all()
    assert world["checks"]["image_fit_quality"] is True and world["checks"]["image_coefficient_drift"] is True
    comparison = _query(world, "select * from models.model_comparison where modality = 'image'")
    assert comparison.groupby(["source", "target"])["selected"].sum().eq(1).all()
    statuses = _query(world, "select modality, prediction_status, count(*) as n from models.request_predictions "
                             "group by all")  # fmt: skip
    assert set(statuses.loc[statuses["modality"] == "image", "prediction_status"]) == {"ok"}


def test_impact_predict_from_profiling_runs_at_held_out_sizes(world, capsys):
    """Profiling runs of a known physical model (1 % noise) -> `impact run` loads them -> `impact predict --source
    profiling` at sizes and step counts the runs did not have: within 5 % of the physics."""
    for request in HELD_OUT:
        args = ["--model", "stable-diffusion-xl-base-1.0", "--hardware", "A100-SXM4-80GB", "--source", "profiling",
                "--warehouse", str(world["warehouse"]), "--json"]  # fmt: skip
        for key, value in request.items():
            args += (
                [f"--{key.replace('_', '-')}"]
                if value is True
                else [f"--{key.replace('_', '-')}", str(value)]
            )
        assert predictions.predict_main(args) == 0
        out = json.loads(capsys.readouterr().out)
        frame = pd.DataFrame([{"images": 1, "strength": 1.0, "lora": 0, **request,
                               "guidance": not request.get("no_guidance", False)}])  # fmt: skip
        truth_j, truth_s = SDXL_A100.gpu_energy_j(frame)[0], SDXL_A100.runtime_s(frame)[0]
        assert out["predicted_energy_j"] == pytest.approx(truth_j, rel=0.05), (request, out)
        assert out["predicted_request_duration_s"] == pytest.approx(truth_s, rel=0.05), (request, out)
        assert out["predicted_energy_low_j"] < out["predicted_energy_j"] < out["predicted_energy_high_j"]
        assert out["source"] == "profiling" and out["modality"] == "image"
    # telemetry: the metered image requests; --hardware works for text requests too
    assert predictions.predict_main(["--model", "stable-diffusion-xl-base-1.0", "--cluster", "mix-img", "--width",
                                     "1024", "--height", "1024", "--steps", "30", "--warehouse",
                                     str(world["warehouse"])]) == 0  # fmt: skip
    assert "form: " in capsys.readouterr().out
    assert predictions.predict_main(["--model", "llama2-70b", "--hardware", "a100-sxm4-80gb", "--input-tokens",
                                     "300", "--output-tokens", "50", "--warehouse", str(world["warehouse"]),
                                     "--json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["hardware"] == "A100-SXM4-80GB"
