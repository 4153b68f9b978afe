"""Tests of the cluster simulator: its telemetry must reproduce its own ground truth exactly."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from orchestration.lib.simulation.simulate import (
    CPU_UTIL_PER_REQUEST,
    DAY_S,
    DEMO_INPUTS_DIR,
    SAMPLE_DIR,
    ClusterSpec,
    SimConfig,
    SimResult,
    build_demo_dataset,
    dataset_inventory,
    main,
    parse_utc,
    simulate,
    write_dataset,
)

DAY = "2024-03-05"
DAY_START = parse_utc(f"{DAY}T00:00:00Z")
RESTART = f"{DAY}T12:00:00Z"
AUTOSCALED = ClusterSpec(cluster_id="t-a100", nodes=3, min_nodes=1, gpus_per_node=4)
CLUSTERS_YML_KEYS = {
    "id",
    "region",
    "gpu_model",
    "gpus_per_node",
    "gpu_idle_w",
    "host_idle_w",
    "host_max_w",
    "pue",
    "wue_onsite_l_per_kwh",
    "gpu_embodied_kg_co2e",
    "server_embodied_kg_co2e",
    "lifetime_years",
}
TELEMETRY_COLUMNS = ["timestamp", "cluster", "metric", "value", "node", "gpu"]
MAX_SAMPLE_BYTES = 15_000_000


def _small_config(seed: int = 0, **overrides: object) -> SimConfig:
    settings: dict[str, object] = {
        "days": [DAY],
        "clusters": [AUTOSCALED],
        "requests_per_day": 3000,
        "arrivals": "poisson",
        "restart_at": [("t-a100", "gpu-node-00", RESTART)],
        "seed": seed,
    }
    settings.update(overrides)
    return SimConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def small() -> SimResult:
    return simulate(_small_config())


@pytest.fixture(scope="module")
def sparse() -> SimResult:
    """A lightly loaded Triton cluster with energy counters: most requests run alone."""
    spec = ClusterSpec(
        cluster_id="t-h100", gpu_model="H100-SXM5-80GB", nodes=1, gpus_per_node=2, exporter="triton"
    )
    return simulate(SimConfig(days=[DAY], clusters=[spec], requests_per_day=150, arrivals="poisson", seed=3))


def _counter_energy_j(telemetry: pd.DataFrame, metric: str, scale: float) -> float:
    """Sum of counter deltas per GPU series, a negative delta being a reset (then the new value counts)."""
    rows = telemetry[telemetry["metric"] == metric].sort_values(["node", "gpu", "timestamp"])
    delta = rows.groupby(["node", "gpu"])["value"].diff().dropna()
    value_after = rows.loc[delta.index, "value"]
    return float(np.where(delta < 0, value_after, delta).sum() * scale)


def test_energy_counter_deltas_reproduce_truth_gpu_energy(small: SimResult) -> None:
    tel = small.telemetry
    truth = small.truth_cluster_day.iloc[0]
    energy = _counter_energy_j(tel, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 1e-3)
    assert energy == pytest.approx(truth["gpu_energy_j"], rel=1e-12, abs=0.05)  # integer mJ readings

    counter = tel[(tel["metric"] == "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION") & (tel["node"] == "gpu-node-00")]
    restart = parse_utc(RESTART)
    at = counter[counter["timestamp"] == restart].set_index("gpu")["value"]
    after = counter[counter["timestamp"] == restart + AUTOSCALED.scrape_interval_s].set_index("gpu")["value"]
    assert (after < at).all()  # reset seen one scrape after the restart
    assert (after <= AUTOSCALED.gpu_max_w * AUTOSCALED.scrape_interval_s * 1e3).all()  # counts since restart


def test_power_and_utilisation_within_bounds(small: SimResult) -> None:
    tel = small.telemetry
    power = tel.loc[tel["metric"] == "DCGM_FI_DEV_POWER_USAGE", "value"]
    assert power.between(AUTOSCALED.gpu_idle_w, AUTOSCALED.gpu_max_w).all()
    assert power.max() > AUTOSCALED.gpu_idle_w + AUTOSCALED.dyn1_w - 1e-9
    util = tel.loc[tel["metric"] == "DCGM_FI_DEV_GPU_UTIL", "value"]
    assert util.between(0, 100).all() and (util == util.round()).all()
    cpu = tel.loc[tel["metric"] == "nv_cpu_utilization", "value"]
    assert cpu.between(0, 1).all()
    assert tel.loc[tel["metric"] == "nv_cpu_utilization", "gpu"].isna().all()
    assert list(tel.columns) == TELEMETRY_COLUMNS


def test_mean_cpu_utilisation_reproduces_truth_host_energy(small: SimResult) -> None:
    spec = AUTOSCALED
    cpu = small.telemetry[small.telemetry["metric"] == "nv_cpu_utilization"].sort_values(
        ["node", "timestamp"]
    )
    step = cpu.groupby("node")["timestamp"].diff()
    closes = step.round(9) == spec.scrape_interval_s  # the window (t - interval, t] is covered by samples
    power = spec.host_idle_w + cpu["value"] * (spec.host_max_w - spec.host_idle_w)
    energy = float((power[closes] * spec.scrape_interval_s).sum())
    assert energy == pytest.approx(small.truth_cluster_day.iloc[0]["host_energy_j"], rel=1e-9)


def test_lone_request_gpu_energy_is_dyn1_times_duration(sparse: SimResult) -> None:
    spec = ClusterSpec(gpu_model="H100-SXM5-80GB", gpus_per_node=2, exporter="triton")
    truth = sparse.truth_requests
    alone = truth[truth["alone_on_gpu"]]
    assert len(alone) > 0.8 * len(truth)
    np.testing.assert_allclose(
        alone["true_gpu_dynamic_energy_j"], spec.dyn1_w * alone["duration_s"], rtol=1e-9
    )
    host_w = CPU_UTIL_PER_REQUEST * (spec.host_max_w - spec.host_idle_w)
    np.testing.assert_allclose(truth["true_host_dynamic_energy_j"], host_w * truth["duration_s"], rtol=1e-9)

    # From telemetry: counter delta over the scrape window around a lone request, minus idle.
    interval = spec.scrape_interval_s
    counter = sparse.telemetry[sparse.telemetry["metric"] == "nv_energy_consumption"]
    ends = truth["start_time"] + truth["duration_s"]
    checked = 0
    for row in alone.head(40).itertuples():
        lo = np.floor((row.start_time - DAY_START) / interval) * interval + DAY_START
        hi = np.ceil((row.start_time + row.duration_s - DAY_START) / interval) * interval + DAY_START
        others = (truth["gpu"] == row.gpu) & (truth["start_time"] < hi) & (ends > lo)
        if others.sum() != 1:
            continue
        series = counter[counter["gpu"] == row.gpu].set_index("timestamp")["value"]
        dynamic = series[hi] - series[lo] - spec.gpu_idle_w * (hi - lo)
        assert dynamic == pytest.approx(spec.dyn1_w * row.duration_s, abs=1e-6)
        checked += 1
    assert checked >= 10


def test_autoscaling_absent_nodes_have_no_samples_and_no_requests(small: SimResult) -> None:
    tel, requests = small.telemetry, small.requests
    interval = AUTOSCALED.scrape_interval_s
    full_day = int(DAY_S / interval) + 1
    samples = tel[tel["metric"] == "nv_cpu_utilization"].groupby("node")["timestamp"]
    counts = samples.size()
    assert counts["gpu-node-00"] == full_day
    assert counts.min() < full_day  # some node was scaled down for part of the day

    for node, times in samples:
        present = set(np.round(times.to_numpy() - DAY_START, 6))
        mine = requests[requests["node"] == node]
        lo = np.floor((mine["start_time"] - DAY_START) / interval) * interval
        hi = np.ceil((mine["start_time"] + mine["duration_s"] - DAY_START) / interval) * interval
        for a, b in zip(lo, np.minimum(hi, DAY_S), strict=True):  # every scrape instant it spans was sampled
            assert all(round(t, 6) in present for t in np.arange(a, b + interval / 2, interval))
    gpus = tel[tel["metric"] == "DCGM_FI_DEV_POWER_USAGE"].groupby("node")["gpu"].nunique()
    assert (gpus == AUTOSCALED.gpus_per_node).all()


def test_truth_is_conserved(small: SimResult) -> None:
    spec = AUTOSCALED
    day = small.truth_cluster_day.iloc[0]
    truth = small.truth_requests
    # With this seed no request runs past midnight, so the day's dynamic energy is all the requests'.
    assert (truth["start_time"] + truth["duration_s"] < DAY_START + DAY_S).all()
    node_s = day["idle_energy_j"] / (spec.gpus_per_node * spec.gpu_idle_w + spec.host_idle_w)
    gpu_dynamic = day["gpu_energy_j"] - spec.gpus_per_node * spec.gpu_idle_w * node_s
    assert truth["true_gpu_dynamic_energy_j"].sum() == pytest.approx(gpu_dynamic, rel=1e-9)
    host_floor = spec.cpu_util_floor * (spec.host_max_w - spec.host_idle_w) * node_s
    host_dynamic = day["host_energy_j"] - spec.host_idle_w * node_s - host_floor
    assert truth["true_host_dynamic_energy_j"].sum() == pytest.approx(host_dynamic, rel=1e-9)
    assert day["it_energy_j"] == pytest.approx(day["gpu_energy_j"] + day["host_energy_j"])
    assert day["requests"] == len(small.requests) == len(truth)
    assert small.requests["request_id"].is_unique


def test_deterministic_with_seed(small: SimResult) -> None:
    again = simulate(_small_config())
    pd.testing.assert_frame_equal(small.telemetry, again.telemetry)
    pd.testing.assert_frame_equal(small.requests, again.requests)
    pd.testing.assert_frame_equal(small.truth_requests, again.truth_requests)
    other = simulate(_small_config(seed=1))
    assert not other.requests["start_time"].equals(small.requests["start_time"])


def test_gaps_remove_samples_not_energy(small: SimResult) -> None:
    gap = ("t-a100", "gpu-node-00", f"{DAY}T03:00:00Z", f"{DAY}T03:10:00Z")
    gapped = simulate(_small_config(gaps=[gap]))
    node0 = gapped.telemetry[gapped.telemetry["node"] == "gpu-node-00"]["timestamp"]
    inside = (node0 >= parse_utc(gap[2])) & (node0 < parse_utc(gap[3]))
    assert not inside.any()
    before = small.telemetry[small.telemetry["node"] == "gpu-node-00"]
    assert len(before) - len(node0) == 40 * 13  # 40 scrapes x (4 GPUs x 3 metrics + 1 cpu)
    pd.testing.assert_frame_equal(small.truth_cluster_day, gapped.truth_cluster_day)


def test_two_days_split_without_duplicate_samples(tmp_path: Path) -> None:
    cfg = _small_config(days=[DAY, "2024-03-06"], requests_per_day=800, restart_at=[])
    result = simulate(cfg)
    write_dataset(result, tmp_path, telemetry_format="parquet", requests_format="parquet")
    files = sorted((tmp_path / "telemetry" / "t-a100").glob("*.parquet"))
    assert [f.name for f in files] == ["2024-03-05.parquet", "2024-03-06.parquet"]
    tel = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    assert not tel.duplicated(["node", "gpu", "metric", "timestamp"]).any()
    assert tel["timestamp"].max() == DAY_START + 2 * DAY_S  # the closing sample of the last day
    energy = _counter_energy_j(tel, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 1e-3)
    assert energy == pytest.approx(result.truth_cluster_day["gpu_energy_j"].sum(), rel=1e-12, abs=0.05)
    requests = pd.concat([pd.read_parquet(f) for f in (tmp_path / "requests" / "t-a100").glob("*.parquet")])
    assert len(requests) == 1600 and requests["start_time"].dtype == np.float64


def test_cli_writes_the_input_layout(tmp_path: Path) -> None:
    argv = ["--out", str(tmp_path), "--day", "2023-11-16", "--requests-per-day", "600", "--nodes", "2"]
    argv += ["--min-nodes", "1", "--gpus-per-node", "2", "--restart", "gpu-node-00@2023-11-16T06:00:00Z"]
    argv += ["--telemetry-format", "csv.gz", "--requests-format", "csv", "--cluster-id", "cli", "--seed", "1"]
    assert main(argv) == 0  # default arrivals replay the shipped Azure trace copy

    clusters = yaml.safe_load((tmp_path / "clusters.yml").read_text())["clusters"]
    assert [c["id"] for c in clusters] == ["cli"] and set(clusters[0]) == CLUSTERS_YML_KEYS
    tel = pd.read_csv(tmp_path / "telemetry" / "cli" / "2023-11-16.csv.gz", keep_default_na=False)
    assert list(tel.columns) == TELEMETRY_COLUMNS
    assert tel["timestamp"].str.fullmatch(r"2023-11-1[67]T\d\d:\d\d:\d\d\.\d{3}Z").all()
    assert (tel.loc[tel["metric"] == "nv_cpu_utilization", "gpu"] == "").all()
    requests = pd.read_csv(tmp_path / "requests" / "cli" / "2023-11-16.csv")
    assert len(requests) == 600 and set(requests["tenant"]) <= {"code", "chat"}
    assert requests["start_time"].str.endswith("Z").all()
    truth = pd.read_csv(tmp_path / "truth" / "cluster_day.csv")
    assert truth["requests"].tolist() == [600]
    assert (tmp_path / "truth" / "requests.parquet").exists()


def _truth_checksum(inputs: Path) -> str:
    digest = hashlib.sha256((inputs / "truth" / "cluster_day.csv").read_bytes())
    requests = pd.read_parquet(inputs / "truth" / "requests.parquet")
    digest.update(pd.util.hash_pandas_object(requests, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def test_shipped_demo_dataset_is_reproducible(tmp_path: Path) -> None:
    from orchestration.lib.images.simulate import build_image_demo

    build_demo_dataset(tmp_path)
    build_image_demo(tmp_path)  # the image-generation cluster beside the two text clusters (docs/images.md)
    shipped = dataset_inventory(DEMO_INPUTS_DIR)
    shipped = shipped[shipped["path"] != "advice.yml"].reset_index(drop=True)  # configuration, not simulated
    rebuilt = dataset_inventory(tmp_path)
    pd.testing.assert_frame_equal(shipped[["path", "rows"]], rebuilt[["path", "rows"]])
    assert _truth_checksum(DEMO_INPUTS_DIR) == _truth_checksum(tmp_path)
    assert 25_000 <= rebuilt.loc[rebuilt["path"].str.startswith("requests/"), "rows"].sum() <= 45_000
    assert sum(p.stat().st_size for p in SAMPLE_DIR.rglob("*") if p.is_file()) < MAX_SAMPLE_BYTES
