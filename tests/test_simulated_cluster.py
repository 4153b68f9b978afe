"""Acceptance on simulated clusters this code never saw (fresh seed): autoscaling, an exporter restart off the
scrape grid, a telemetry gap, two days with requests across midnight, DCGM counters and Triton power-only."""

import numpy as np
import pytest
from conftest import run_days

from orchestration.lib import invariants
from orchestration.lib.simulation.simulate import ClusterSpec, SimConfig, simulate, write_dataset
from orchestration.lib.warehouse import connect

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("pipeline")]

DAYS = ["2024-03-09", "2024-03-10"]
DCGM = ClusterSpec(cluster_id="acc-dcgm", nodes=3, min_nodes=1, gpus_per_node=4, exporter="dcgm")
TRITON = ClusterSpec(
    cluster_id="acc-triton", nodes=2, gpus_per_node=4, exporter="triton", with_energy_counter=False,
    gpu_model="H100-SXM5-80GB", gpu_idle_w=70.0, gpu_max_w=700.0, host_idle_w=400.0, host_max_w=1200.0,
)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    cfg = SimConfig(
        days=DAYS,
        clusters=[DCGM, TRITON],
        requests_per_day=3000,
        arrivals="poisson",
        restart_at=[("acc-dcgm", "gpu-node-00", "2024-03-09T10:00:07Z")],
        gaps=[("acc-dcgm", "gpu-node-00", "2024-03-10T03:00:00Z", "2024-03-10T03:30:00Z")],
        seed=20241122,
    )
    result = simulate(cfg)
    root = tmp_path_factory.mktemp("acceptance")
    data = root / "inputs"
    write_dataset(result, data, telemetry_format="parquet", requests_format="jsonl")
    warehouse = root / "wh.duckdb"
    run_days(data, warehouse, DAYS)
    con = connect(warehouse, read_only=True)
    yield result, con
    con.close()


def test_metered_it_energy_matches_truth(simulated):
    result, con = simulated
    got = con.execute(
        "select cluster, cast(day as varchar), metered_it_energy_j from marts.fct_cluster_energy_daily"
    ).df()
    truth = result.truth_cluster_day.merge(got, left_on=["cluster", "day"], right_on=["cluster", "CAST(\"day\" AS VARCHAR)"])
    assert len(truth) == 4
    error = (truth["metered_it_energy_j"] / truth["it_energy_j"] - 1).abs()
    counters = truth["cluster"] == "acc-dcgm"
    # docs/validation.md: with DCGM energy counters within 0.01 % of the truth on both days (+0.004 %, +0.007 %),
    # with the exporter restart and the 30-minute outage
    assert (error[counters] < 1e-4).all(), truth
    # power-only telemetry (Triton): trapezoids of 15 s samples within 0.25 % over a day (+0.02 %, +0.20 %)
    assert (error[~counters] < 2.5e-3).all(), truth


def test_conservation_is_exact_and_nothing_negative(simulated):
    _, con = simulated
    assert invariants.conservation_violations(con) == []
    assert invariants.negative_energy_rows(con) == []
    bad, tested = invariants.single_request_rule(con)
    assert bad == [] and tested > 100


def test_incidents_are_reported(simulated):
    _, con = simulated
    rows = con.execute(
        "select cluster, cast(day as varchar), counter_resets, gap_windows, telemetry_coverage "
        "from marts.fct_cluster_energy_daily where cluster = 'acc-dcgm' order by day"
    ).fetchall()
    day1, day2 = rows
    assert day1[2] >= 1  # the restart (and nodes re-joining after scale-in) reset counters
    assert day1[4] == pytest.approx(1.0)  # scale-in absences are not missing telemetry
    assert day2[3] > 0 and day2[4] < 0.995  # the 30 min outage: flagged, not counted as covered


def test_every_request_once_with_energy(simulated):
    result, con = simulated
    got = con.execute("select request_id, it_energy_j, days_spanned from marts.fct_request_energy").df()
    assert sorted(got["request_id"]) == sorted(result.requests["request_id"])
    assert (got["it_energy_j"] >= 0).all()
    assert (got["days_spanned"] == 2).any(), "no request crossed midnight: the scenario lost its point"


def test_request_alone_on_gpu_gets_its_true_dynamic_energy(simulated):
    result, con = simulated
    got = con.execute(
        "select request_id, dynamic_energy_j from marts.fct_request_energy where cluster = 'acc-dcgm'"
    ).df()
    truth = result.truth_requests
    both = truth[truth["alone_on_gpu"]].merge(got, on="request_id")
    assert len(both) > 100
    ratio = both["dynamic_energy_j"] / both["true_dynamic_energy_j"]
    # docs/validation.md: median relative error below 1e-6 (3e-7) over the ~5,600 requests alone on their GPU
    assert float(np.median((ratio - 1).abs())) < 1e-6, ratio.describe()


def test_power_only_telemetry_cannot_see_short_lone_requests(simulated):
    """docs/validation.md, Limitations: with power samples every 15 s and no energy counter (the Triton cluster),
    the dynamic energy of a request alone on its GPU is mostly missed (median ratio to the truth 0.03), although
    the cluster's daily energy is within 0.25 % (test_metered_it_energy_matches_truth)."""
    result, con = simulated
    got = con.execute(
        "select request_id, dynamic_energy_j from marts.fct_request_energy where cluster = 'acc-triton'"
    ).df()
    both = result.truth_requests[result.truth_requests["alone_on_gpu"]].merge(got, on="request_id")
    assert len(both) > 100
    assert round(float(np.median(both["dynamic_energy_j"] / both["true_dynamic_energy_j"])), 2) == 0.03
