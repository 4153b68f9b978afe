"""Per-request impact (METHODOLOGY section 5) on a simulated cluster this code never saw, with known factors:
facility = PUE x IT exactly, location-based carbon follows the hourly intensity, embodied carbon and water sum to
the hardware's provisioned seconds, training is one rate per model and month times (output tokens + 1), totals add
up; a cluster without telemetry falls back to the annual grid factor and to the energy model's prediction."""

import math

import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, run_days

from orchestration.lib import invariants
from orchestration.lib.simulation.simulate import ClusterSpec, SimConfig, simulate, write_dataset
from orchestration.lib.warehouse import connect

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("impact")]

DAY = "2024-06-12"
YEAR_S = 365.25 * 86400
METERED = ClusterSpec(
    cluster_id="imp-metered", region="ZZ-NORTH-GRID", nodes=2, gpus_per_node=4, exporter="dcgm",
    pue=1.25, wue_onsite_l_per_kwh=0.5, gpu_embodied_kg_co2e=200.0, server_embodied_kg_co2e=4000.0,
    lifetime_years=4.0,
)  # fmt: skip
# same hardware, no telemetry at all: its requests are predicted from the metered cluster's energy model
BLIND = ClusterSpec(cluster_id="imp-blind", region="YY-SOUTH", nodes=1, gpus_per_node=4, exporter="dcgm")
NODE_WATER_L = 12_000.0
TRAINING_KG, FINE_TUNING_KG, TRAINING_WATER_L, LIFETIME_INFERENCES = 1000.0, 100.0, 5000.0, 1.0e6
EWIF = {"ZZ-NORTH-GRID": 2.0, "YY": 3.0}
ANNUAL_YY = 400.0


def hourly_ci(hour: int) -> float:
    return 100.0 + 20.0 * hour


def write_factors(data) -> None:
    factors = data / "factors"
    (factors / "grid_intensity").mkdir(parents=True)
    hours = pd.date_range(f"{DAY}T00:00:00Z", periods=72, freq="h") - pd.Timedelta(days=1)
    pd.DataFrame(
        {
            "zone": "ZZ-NORTH-GRID",
            "datetime_utc": hours.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "location_g_co2e_per_kwh": [hourly_ci(h.hour) for h in hours],
            "market_g_co2e_per_kwh": [50.0 if h.hour % 2 == 0 else None for h in hours],
        }
    ).to_csv(factors / "grid_intensity" / "zz.csv", index=False)
    pd.DataFrame(
        [{"zone": "YY", "year": "", "location_g_co2e_per_kwh": ANNUAL_YY, "low_g_co2e_per_kwh": 300.0,
          "high_g_co2e_per_kwh": 500.0, "source": "test annual factor", "licence": "test", "version": "t1"}]
    ).to_csv(factors / "grid_annual.csv", index=False)  # fmt: skip
    pd.DataFrame(
        [{"zone": z, "ewif_l_per_kwh": v, "low_l_per_kwh": v / 2, "high_l_per_kwh": v * 2} for z, v in EWIF.items()]
    ).to_csv(factors / "water.csv", index=False)
    # the mapping form keyed by model name (the shipped file uses the list form, which every other test loads):
    # the training assertions below check that it prices training like the list form
    models = {
        "models": {
            "Llama-2-70B": {
                "aliases": ["llama2-70b"],
                "total_parameters_b": 70,
                "active_parameters_b": 70,
                "training_kg_co2e": TRAINING_KG,
                "training_water_l": TRAINING_WATER_L,
                "fine_tuning_kg_co2e": FINE_TUNING_KG,
                "projected_lifetime_inferences": LIFETIME_INFERENCES,
                "service_start": "2024-06-01",
                "service_months": 12,
                "source": "test footprint",
                "licence": "test",
                "version": "t1",
            }
        }
    }
    (factors / "models.yml").write_text(yaml.safe_dump(models, sort_keys=False))


@pytest.fixture(scope="module")
def impact(tmp_path_factory):
    cfg = SimConfig(days=[DAY], clusters=[METERED, BLIND], requests_per_day=1500, arrivals="poisson", seed=612)
    result = simulate(cfg)
    data = tmp_path_factory.mktemp("impact") / "inputs"
    write_dataset(result, data, telemetry_format="parquet", requests_format="jsonl")
    for path in (data / "telemetry" / BLIND.cluster_id).iterdir():
        path.unlink()
    clusters = yaml.safe_load((data / "clusters.yml").read_text())
    clusters["clusters"][0]["water_embodied_l"] = NODE_WATER_L
    for key in ("pue", "wue_onsite_l_per_kwh"):  # the blind cluster takes the shipped datacenter default
        del clusters["clusters"][1][key]
    (data / "clusters.yml").write_text(yaml.safe_dump(clusters, sort_keys=False))
    write_factors(data)
    warehouse = data.parent / "wh.duckdb"

    run_days(data, warehouse, [DAY])
    con = connect(warehouse, read_only=True)
    before = con.execute(
        "select energy_source, count(*) from marts.fct_request_impact where cluster = $c group by all",
        {"c": BLIND.cluster_id},
    ).fetchall()
    con.close()
    # fit the energy model on the metered cluster, then re-run the day: the blind cluster gets predictions
    import dagster as dg

    from orchestration.definitions import defs
    from orchestration.defs.automation.jobs import MODELS_JOB_NAME

    models = defs().resolve_job_def(MODELS_JOB_NAME).execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert models.success
    run_days(data, warehouse, [DAY])
    con = connect(warehouse, read_only=True)
    yield result, con, before
    con.close()


def frame(con, sql: str, **params) -> pd.DataFrame:
    return con.execute(sql, params).df()


def test_totals_add_up_and_conserve(impact):
    _, con, _ = impact
    assert invariants.impact_sum_violations(con) == []
    assert invariants.impact_conservation_violations(con) == []
    assert invariants.conservation_violations(con) == []


def test_the_checks_name_the_offending_request(impact):
    """The per-request checks report the request-day they find wrong: corrupt one in a copy and it is the one
    named (and nothing before)."""
    _, con, _ = impact
    copy = duckdb.connect()
    for schema, table in (("intermediate", "int_request_days"), ("intermediate", "int_cluster_day_factors")):
        rows = con.execute(f"select * from {schema}.{table}").df()  # noqa: F841 - read by DuckDB below
        copy.execute(f"create schema if not exists {schema}")
        copy.execute(f"create table {schema}.{table} as select * from rows")
    request_id, key, day, cluster = copy.execute(
        "select request_id, request_key, day, cluster from intermediate.int_request_days "
        "where max_pool_requests = 1 order by request_id limit 1"
    ).fetchone()
    assert invariants.impact_sum_violations(copy) == [] and invariants.single_request_rule(copy)[0] == []
    copy.execute(
        "update intermediate.int_request_days set total_g_co2e = total_g_co2e + 1, "
        "dynamic_energy_j = 2 * dynamic_energy_j + 1 where request_key = $key and day = $day",
        {"key": key, "day": day},
    )
    assert invariants.impact_sum_violations(copy) == [
        (request_id, cluster, day, "total_g_co2e is not operational + embodied + training + fine-tuning")]
    assert [row[:2] for row in invariants.single_request_rule(copy)[0]] == [(request_id, day)]
    copy.close()


def test_facility_is_pue_times_it_exactly(impact):
    """Facility energy is the PUE the cluster was given (clusters.yml, the simulator's spec; the shipped default for
    the blind cluster, read from data/factors/datacenter.csv) x IT energy, and over the metered cluster's day the
    spec's PUE x the simulator's true IT energy to the metering precision: not the mart's own pue column."""
    result, con, _ = impact
    df = frame(con, "select it_energy_j, facility_energy_j, cluster from marts.fct_request_impact")
    default_pue = pd.read_csv(REPO / "data" / "factors" / "datacenter.csv").set_index("provider").loc["default", "pue"]
    pue = df["cluster"].map({METERED.cluster_id: METERED.pue, BLIND.cluster_id: float(default_pue)})
    np.testing.assert_allclose(df["facility_energy_j"], pue * df["it_energy_j"], rtol=1e-12)
    truth = result.truth_cluster_day.set_index("cluster").loc[METERED.cluster_id, "it_energy_j"]
    facility = df.loc[df["cluster"] == METERED.cluster_id, "facility_energy_j"].sum()
    assert facility == pytest.approx(METERED.pue * truth, rel=1e-4)


def test_location_carbon_follows_the_hourly_intensity(impact):
    _, con, _ = impact
    # cluster level: PUE x sum over windows of IT energy x the intensity of the window's hour, recomputed here
    windows = frame(
        con, "select window_start, it_energy_j from marts.fct_window_energy where cluster = $c", c=METERED.cluster_id
    )
    expected = METERED.pue * sum(
        e * hourly_ci(t.hour) / 3.6e6 for t, e in zip(windows["window_start"], windows["it_energy_j"], strict=True)
    )
    (total,) = con.execute(
        "select operational_location_g_co2e from marts.fct_cluster_impact_daily where cluster = $c",
        {"c": METERED.cluster_id},
    ).fetchone()
    assert total == pytest.approx(expected, rel=1e-9)
    # request level: a request inside one hour pays that hour's intensity on its own energy, and the day's one
    # unallocated-energy intensity on its share of the unallocated idle energy
    df = frame(
        con,
        """
        select operational_location_g_co2e, idle_energy_j + dynamic_energy_j as own_j, unallocated_idle_energy_j,
               hour(start_time) as h
        from marts.fct_request_impact
        where cluster = $c and hour(start_time) = hour(start_time + to_microseconds(cast(duration_s * 1e6 as bigint)))
          and unallocated_idle_energy_j > 0
        """,
        c=METERED.cluster_id,
    )
    assert len(df) > 100 and df["h"].nunique() > 12
    residual = df["operational_location_g_co2e"] / METERED.pue * 3.6e6 - df["own_j"] * df["h"].map(hourly_ci)
    unallocated_ci = residual / df["unallocated_idle_energy_j"]
    assert hourly_ci(0) <= unallocated_ci.median() <= hourly_ci(23)
    np.testing.assert_allclose(unallocated_ci, unallocated_ci.median(), rtol=1e-6)
    # market-based: every other hour has a market factor, the rest falls back to location-based
    (market_share,) = con.execute(
        "select avg(market_factor_energy_share) from marts.fct_request_impact where cluster = $c",
        {"c": METERED.cluster_id},
    ).fetchone()
    assert 0.2 < market_share < 0.8


def test_embodied_carbon_and_water_sum_to_the_provisioned_hardware(impact):
    result, con, _ = impact
    truth = result.truth_cluster_day.set_index("cluster").loc[METERED.cluster_id]
    life_s = METERED.lifetime_years * YEAR_S
    expected_g = (
        truth["gpu_seconds"] * METERED.gpu_embodied_kg_co2e * 1000 / life_s
        + truth["node_seconds"] * METERED.server_embodied_kg_co2e * 1000 / life_s
    )
    got = con.execute(
        """
        select sum(embodied_g_co2e), sum(water_embodied_l), sum(water_onsite_l), sum(water_offsite_l),
               sum(it_energy_j), sum(facility_energy_j)
        from marts.fct_request_impact where cluster = $c
        """,
        {"c": METERED.cluster_id},
    ).fetchone()
    embodied_g, water_embodied_l, onsite_l, offsite_l, it_j, facility_j = got
    assert embodied_g == pytest.approx(expected_g, rel=2e-3)  # presence measured from 15 s telemetry
    assert water_embodied_l == pytest.approx(truth["node_seconds"] * NODE_WATER_L / life_s, rel=2e-3)
    assert onsite_l == pytest.approx(METERED.wue_onsite_l_per_kwh * it_j / 3.6e6, rel=1e-9)
    assert offsite_l == pytest.approx(EWIF["ZZ-NORTH-GRID"] * facility_j / 3.6e6, rel=1e-9)


def test_training_is_one_rate_per_model_and_month_times_inferences(impact):
    _, con, _ = impact
    df = frame(
        con,
        "select training_g_co2e, fine_tuning_g_co2e, training_water_l, output_tokens from marts.fct_request_impact",
    )
    inferences = df["output_tokens"] + 1
    # first service month: the footprint over the projected lifetime inferences
    np.testing.assert_allclose(df["training_g_co2e"], inferences * TRAINING_KG * 1000 / LIFETIME_INFERENCES)
    np.testing.assert_allclose(df["fine_tuning_g_co2e"], inferences * FINE_TUNING_KG * 1000 / LIFETIME_INFERENCES)
    np.testing.assert_allclose(df["training_water_l"], inferences * TRAINING_WATER_L / LIFETIME_INFERENCES)


def test_blind_cluster_uses_annual_grid_factor_and_predicted_energy(impact):
    _, con, before = impact
    assert [source for source, _ in before] == ["none: no telemetry and no energy model"]
    df = frame(
        con,
        """
        select i.*, f.alpha_in, f.alpha_out, f.alpha_in_out
        from marts.fct_request_impact as i
        cross join (
            select * from models.energy_model_fits
            where target = 'energy' and form = 'paper' and source = 'telemetry' and hardware = $hw
            order by fitted_at desc limit 1
        ) as f
        where i.cluster = $c
        """,
        c=BLIND.cluster_id,
        hw=BLIND.gpu_model,
    )
    assert len(df) > 100 and set(df["energy_source"]) == {"predicted"}
    predicted = (
        df["alpha_in"] * df["input_tokens"] + df["alpha_out"] * df["output_tokens"]
        + df["alpha_in_out"] * df["input_tokens"] * df["output_tokens"]
    )  # fmt: skip
    np.testing.assert_allclose(df["it_energy_j"], predicted, rtol=1e-9)
    assert (df["it_energy_predicted_low_j"] <= df["it_energy_j"]).all()
    assert (df["it_energy_predicted_high_j"] > df["it_energy_j"]).all()
    assert set(df["grid_resolution"]) == {"annual"}
    assert df["grid_source"].str.contains("grid_intensity_annual YY").all()
    pue = df["pue"].iloc[0]
    assert pue != METERED.pue and not math.isnan(pue)  # the shipped datacenter default
    np.testing.assert_allclose(df["operational_location_g_co2e"], pue * df["it_energy_j"] * ANNUAL_YY / 3.6e6)
    np.testing.assert_allclose(df["water_offsite_l"], EWIF["YY"] * df["facility_energy_j"] / 3.6e6)
    assert (df["total_g_co2e_low"] < df["total_g_co2e"]).all() and (df["total_g_co2e"] < df["total_g_co2e_high"]).all()


def test_rollups_match_the_requests(impact):
    _, con, _ = impact
    (requests, carbon, water) = con.execute(
        "select count(*), sum(total_g_co2e), sum(total_water_l) from marts.fct_request_impact"
    ).fetchone()
    (agg_requests, agg_carbon, agg_water) = con.execute(
        "select sum(requests), sum(total_g_co2e), sum(total_water_l) from marts.agg_impact_daily"
    ).fetchone()
    assert agg_requests == requests
    assert agg_carbon == pytest.approx(carbon, rel=1e-12) and agg_water == pytest.approx(water, rel=1e-12)
    shares = con.execute(
        """
        select accelerator_dynamic_share + accelerator_idle_share + host_share + idle_machines_share + overhead_share
        from marts.fct_cluster_impact_daily where cluster = $c
        """,
        {"c": METERED.cluster_id},
    ).fetchone()[0]
    assert shares == pytest.approx(1.0, rel=1e-9)


def test_predict_prices_a_hypothetical_request_like_the_mart(impact):
    from orchestration.lib.predictions import predict_one

    _, con, _ = impact
    p = predict_one(con, "llama2-70b", 400, 150, cluster=BLIND.cluster_id, at=f"{DAY}T10:30:00Z")
    i = p["impact"]
    assert i["zone"] == "YY-SOUTH" and i["grid_resolution"] == "annual"
    assert i["operational_location_g_co2e"] == pytest.approx(
        i["facility_energy_j"] / 3.6e6 * ANNUAL_YY, rel=1e-12
    )
    assert i["training_g_co2e"] == pytest.approx(151 * TRAINING_KG * 1000 / LIFETIME_INFERENCES * 1.1, rel=1e-12)
    assert i["total_g_co2e_low"] < i["total_g_co2e"] < i["total_g_co2e_high"]
