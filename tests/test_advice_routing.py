"""Energy-optimal routing (orchestration/lib/advice/routing.py) on published coefficients and synthetic bins."""

import numpy as np
import pandas as pd
import pytest

from orchestration.defs.advice.checks import frontier_problems
from orchestration.lib.advice import config, routing
from orchestration.lib.advice.config import AdviceConfigError

# Wilkins, Keshav, Mortier, "Offline Energy-Optimal LLM Serving", HotCarbon 2024 (arXiv:2407.04014): the energy
# (J) models of Llama-2 7B / 13B / 70B on A100, a_in tau_in + a_out tau_out + a_in_out tau_in tau_out, as the
# authors published and hard-coded them (plots/routing/routing-offline.py), with their accuracy scores.
WILKINS_ENERGY_J = {
    "llama-2-7b": (-3.894991, 31.522735, 0.042712),
    "llama-2-13b": (-6.794323, 56.008311, 0.072861),
    "llama-2-70b": (-12.0294, 414.8197, 0.3145),
}
WILKINS_ACCURACY = {"llama-2-7b": 0.5097, "llama-2-13b": 0.5569, "llama-2-70b": 0.6452}
# Alpaca-GPT4's token totals (the paper's workload): n, sum tau_in, sum tau_out, sum tau_in x tau_out
ALPACA = (52_002, 1_125_669, 8_460_614, 160_504_458)
ALPACA_KWH = {"llama-2-7b": 74.7702, "llama-2-13b": 132.7531, "llama-2-70b": 985.1575}


def _problem(names, bins: routing.Bins, min_share=0.0, eligible=None) -> routing.Problem:
    forms = [routing.Form(*WILKINS_ENERGY_J[m]) for m in names]
    energy = np.column_stack([f.of_sums(bins.col("s_in"), bins.col("s_out"), bins.col("s_io")) for f in forms])
    n = bins.col("n")
    return routing.Problem(
        n=n, energy_j=energy, accuracy=np.array([WILKINS_ACCURACY[m] for m in names]),
        eligible=np.ones(energy.shape, bool) if eligible is None else eligible, accuracy_weight=n,
        min_share=min_share, names=tuple(names),
    )  # fmt: skip


def _plan_kwh(p: routing.Problem, sol: routing.Solution) -> float:
    return float((sol.counts / p.n[:, None] * p.energy_j).sum()) / routing.J_PER_KWH


@pytest.mark.parametrize("model", sorted(WILKINS_ENERGY_J))
def test_alpaca_workload_on_one_model_gives_the_published_energy(model):
    bins = routing.bins_from_sums(*ALPACA)
    p = _problem([model], bins)
    sol = routing.solve(p, 0.5)
    assert sol.counts.sum() == ALPACA[0]
    assert _plan_kwh(p, sol) == pytest.approx(ALPACA_KWH[model], abs=5e-5)


def test_alpaca_extremes_of_zeta_pick_the_cheapest_and_the_most_accurate_model():
    names = list(WILKINS_ENERGY_J)  # 7B, 13B, 70B
    p = _problem(names, routing.bins_from_sums(*ALPACA))
    energy_only, accuracy_only = routing.solve(p, 1.0), routing.solve(p, 0.0)
    assert _plan_kwh(p, energy_only) == pytest.approx(ALPACA_KWH["llama-2-7b"], abs=5e-5)
    assert _plan_kwh(p, accuracy_only) == pytest.approx(ALPACA_KWH["llama-2-70b"], abs=5e-5)


def _random_bins(seed: int, count: int = 120) -> routing.Bins:
    rng = np.random.default_rng(seed)
    n = rng.integers(1, 40, count).astype(float)
    tin = rng.integers(8, 2048, count).astype(float)
    tout = rng.integers(8, 2048, count).astype(float)
    return routing.bins_from_sums(n, n * tin, n * tout, n * tin * tout, box=(tin, tin, tout, tout))


def test_energy_only_without_shares_is_the_per_bin_argmin_of_energy():
    names = list(WILKINS_ENERGY_J)  # 7B, 13B, 70B
    bins = _random_bins(1)
    p = _problem(names, bins)
    # perturb so that the cheapest candidate differs from bin to bin, and some pairs are not allowed
    rng = np.random.default_rng(2)
    p.energy_j = p.energy_j * rng.uniform(0.2, 5.0, p.energy_j.shape)
    p.eligible = rng.random(p.energy_j.shape) > 0.2
    p.eligible[np.arange(len(bins)), rng.integers(0, 3, len(bins))] = True
    sol = routing.solve(p, 1.0)
    cheapest = np.where(p.eligible, p.energy_j, np.inf).argmin(axis=1)
    assert (sol.counts[np.arange(len(bins)), cheapest] == p.n).all()
    assert sol.counts.sum() == p.n.sum()


def test_every_candidate_gets_a_share_between_epsilon_and_one_minus_epsilon():
    names = list(WILKINS_ENERGY_J)  # 7B, 13B, 70B
    p = _problem(names, _random_bins(3), min_share=0.1)
    for zeta in (0.0, 0.5, 1.0):
        sol = routing.solve(p, zeta)
        shares = sol.counts.sum(axis=0) / p.n.sum()
        assert (shares >= 0.1 - 1e-12).all() and (shares <= 0.9 + 1e-12).all(), (zeta, shares)
        assert (sol.counts.sum(axis=1) == p.n).all()  # every query assigned once
        assert (sol.counts == np.round(sol.counts)).all()


def test_shares_that_cannot_be_met_fail_naming_min_share():
    names = list(WILKINS_ENERGY_J)  # 7B, 13B, 70B
    bins = _random_bins(4)
    eligible = np.ones((len(bins), 3), bool)
    eligible[:, 0] = False
    eligible[0, 0] = True  # the 7B may take one bin only
    p = _problem(names, bins, min_share=0.2, eligible=eligible)
    with pytest.raises(AdviceConfigError, match="may take only") as err:
        routing.solve(p, 0.5)
    assert err.value.key == "routing.min_share"


def test_capacity_in_gpu_seconds_is_respected_or_named():
    names = list(WILKINS_ENERGY_J)  # 7B, 13B, 70B
    p = _problem(names, _random_bins(5))
    p.gpu_s = np.ones_like(p.energy_j) * p.n[:, None]  # one GPU-second per query
    cap = 0.3 * p.n.sum()
    p.capacity_gpu_s = np.array([cap, np.nan, np.nan])
    sol = routing.solve(p, 1.0)  # the 7B is cheapest: it fills its capacity, no more
    assert sol.counts[:, 0].sum() <= cap + 1e-9 and sol.counts[:, 0].sum() > 0.25 * p.n.sum()
    p.capacity_gpu_s = np.array([0.1 * p.n.sum()] * 3)
    p.keys = ("routing.candidates[0]", "routing.candidates[1]", "routing.candidates[2]")
    with pytest.raises(AdviceConfigError) as err:
        routing.solve(p, 1.0)
    assert err.value.key == "routing.candidates[0].capacity_gpu_s"


def test_negative_predictions_and_the_fitted_range_exclude_bins():
    seven_b = routing.RoutedCandidate(
        config.Candidate(0, "7b", "llama-2-7b", None, "A100", 0.5, "x"),
        routing.Form(*WILKINS_ENERGY_J["llama-2-7b"]), "given", token_range=((8, 2048), (8, 2048)),
    )  # fmt: skip
    # long prompt, short output: 7B's fit predicts -7,025 J at (2048, 8), so that bin is not for it; nor the
    # 8-1500 x 20-30 bin, positive at its (8, 20) corner but -3,931 J at (1500, 20)
    tin = np.array([[256.0, 512.0], [1900.0, 2048.0], [4000.0, 5000.0], [8.0, 1500.0]])
    tout = np.array([[64.0, 512.0], [8.0, 16.0], [600.0, 700.0], [20.0, 30.0]])
    n = np.array([3.0, 2.0, 2.0, 4.0])
    bins = routing.bins_from_sums(n, n * tin.mean(1), n * tout.mean(1), n * tin.mean(1) * tout.mean(1),
                                  box=(tin[:, 0], tin[:, 1], tout[:, 0], tout[:, 1]))  # fmt: skip
    assert routing.Form(*WILKINS_ENERGY_J["llama-2-7b"]).box_min(2048.0, 2048.0, 8.0, 8.0) < 0
    e = routing.eligibility(bins, [seven_b])
    assert e.eligible[:, 0].tolist() == [True, False, False, False]
    assert e.negative_bins.tolist() == [2] and e.range_bins.tolist() == [1]
    assert e.negative_requests.tolist() == [6.0] and e.range_requests.tolist() == [2.0]


def _cells() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two bins of requests that ran on llama-2-70b (A100), with carbon weights of their own hours."""
    rows = []
    for b, (tin, tout, n) in enumerate([(200.0, 100.0, 50), (600.0, 300.0, 30), (1500.0, 40.0, 20)]):
        w = 300.0 * 1.1  # g/kWh x PUE
        rows.append({"bin_in": b, "bin_out": b, "model": "llama-2-70b", "hardware": "A100", "n": n,
                     "s_in": n * tin, "s_out": n * tout, "s_io": n * tin * tout, "w_in": w * n * tin,
                     "w_out": w * n * tout, "w_io": w * n * tin * tout, "in_min": tin, "in_max": tin,
                     "out_min": tout, "out_max": tout, "tokens": n * (tin + tout), "measured_j": n * 40_000.0,
                     "measured_g": n * 40_000.0 / 3.6e6 * w})  # fmt: skip
    return pd.DataFrame(rows), pd.DataFrame(columns=["bin_in", "bin_out", "target", "w_in", "w_out", "w_io"])


def test_a_day_frontier_is_monotone_with_the_reference_and_the_actual():
    raw = {"routing": {"zeta": 0.3, "min_share": 0.05, "candidates": [
        {"model": m, "hardware": "A100", "accuracy": WILKINS_ACCURACY[m], "accuracy_source": "Wilkins et al.",
         "energy_j": list(WILKINS_ENERGY_J[m])} for m in sorted(WILKINS_ENERGY_J)]}}  # fmt: skip
    cfg = config.routing_config(raw, {})
    fits = pd.DataFrame([{"model": "llama-2-70b", "hardware": "A100", "source": "telemetry", "target": "energy",
                          "alpha_in": 1.0, "alpha_out": 100.0, "alpha_in_out": 0.0, "nobs": 10,
                          "fitted_at": pd.Timestamp("2024-01-01")}])  # fmt: skip
    models = routing.resolve_candidates(cfg, fits)
    cells, targets = _cells()
    day = routing.route_day(pd.Timestamp("2024-05-01").date(), cfg, models, cells, targets, fits)
    f = day.frontier.sort_values("zeta")
    assert list(f["zeta"]) == list(config.DEFAULT_ZETA_SWEEP) and f["is_plan"].sum() == 1
    assert frontier_problems(day.frontier) == []
    assert f["energy_kwh"].iloc[-1] < f["energy_kwh"].iloc[0] and f["accuracy"].iloc[-1] < f["accuracy"].iloc[0]
    # the day as it ran: measured and modelled with the 70B's own fit (1 J per input token, 100 per output token)
    modelled = (cells["s_in"] + 100 * cells["s_out"]).sum() / 3.6e6
    assert f["actual_modelled_kwh"].iloc[0] == pytest.approx(modelled)
    assert f["saving_kwh"].iloc[0] == pytest.approx(modelled - f["energy_kwh"].iloc[0])
    assert f["actual_measured_kwh"].iloc[0] == pytest.approx(100 * 40_000 / 3.6e6)
    # carbon at the hours the requests ran (a candidate given by hardware serves where they ran)
    ratio = f["operational_kg_co2e"] * 1e3 / (f["energy_kwh"] * 330.0)
    assert np.allclose(ratio, 1.0)
    plan = day.plan
    assert plan["requests"].sum() == 100 and set(plan["zeta"]) == {0.3}
    # the reference is every request on the most accurate candidate (the 70B covers every bin)
    assert "llama-2-70b on A100 (100 requests)" in day.reference
    assert f["energy_vs_reference"].iloc[0] <= 1.0 + 1e-12


def test_frontier_check_catches_a_rise_and_shares_off_one():
    frontier = pd.DataFrame({"day": ["d"] * 3, "zeta": [0.0, 0.5, 1.0], "energy_kwh": [3.0, 2.0, 2.5],
                             "accuracy": [0.6, 0.6, 0.5], "is_plan": [False, True, False],
                             "shares": [{"a": 0.5, "b": 0.5}, {"a": 0.7, "b": 0.3}, {"a": 0.9, "b": 0.2}]})  # fmt: skip
    problems = frontier_problems(frontier)
    assert any("energy_kwh rises from zeta 0.5 to 1" in p for p in problems)
    assert any("zeta 1: shares add up to 1.1" in p for p in problems)


@pytest.mark.parametrize(
    ("routing_raw", "key"),
    [
        ({"zeta": 1.5}, "routing.zeta"),
        ({"min_share": 0.4}, "routing.min_share"),  # 0.4 x 3 candidates > 1
        ({"zeta_sweep": [0, 2]}, "routing.zeta_sweep[1]"),
        ({"candidates": [{"model": "m", "cluster": "nowhere", "accuracy": 0.5, "accuracy_source": "s"}]},
         "routing.candidates[0].cluster"),
        ({"candidates": [{"model": "m", "hardware": "A100", "accuracy": 55, "accuracy_source": "s"}]},
         "routing.candidates[0].accuracy"),
        ({"candidates": [{"model": "m", "hardware": "A100", "accuracy": 0.5}]}, "routing.candidates[0].accuracy_source"),
        ({"candidates": [{"model": "m", "hardware": "A100", "accuracy": 0.5, "accuracy_source": "s",
                          "energy_j": [1, 2]}]}, "routing.candidates[0].energy_j"),
        ({"candiates": []}, "routing.candiates"),
    ],
)  # fmt: skip
def test_bad_configuration_names_the_key(routing_raw, key):
    base = {"zeta": 0.5, "candidates": [
        {"model": m, "hardware": "A100", "accuracy": 0.5, "accuracy_source": "s"} for m in ("a", "b", "c")]}
    with pytest.raises(AdviceConfigError) as err:
        config.routing_config({"routing": {**base, **routing_raw}}, {"c1": "A100"})
    assert err.value.key == key and key in str(err.value)


def test_an_unknown_model_without_coefficients_names_the_candidate():
    cfg = config.routing_config({"routing": {"candidates": [
        {"model": "mystery-9b", "cluster": "c1", "accuracy": 0.5, "accuracy_source": "s"}]}}, {"c1": "A100"})
    with pytest.raises(AdviceConfigError, match="no energy model for 'mystery-9b' on 'A100'") as err:
        routing.resolve_candidates(cfg, pd.DataFrame(columns=["model", "hardware", "source", "target"]))
    assert err.value.key == "routing.candidates[0].model"
