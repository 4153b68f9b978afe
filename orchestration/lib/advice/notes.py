"""What each part of the advice assumed, in words (kept in advice.status and printed by `impact advise`)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from orchestration.lib.advice.config import RightsizingConfig, RoutingConfig, SettingsConfig, ShiftingConfig
from orchestration.lib.advice.routing import DayRouting, RoutedCandidate

NOT_PROMISED = ("offline and counterfactual: what the measured day would have cost under another plan, priced "
                "with the fitted models within their fitted range; not a forecast")  # fmt: skip


def no_advice(data_dir, part: str, section: str | None) -> str:
    """Why a part gives no advice: no advice.yml, or no section for it."""
    if section is None:
        return f"no advice.yml in {data_dir}: no {part} advice (docs/advice.md says how to configure it)"
    return f"advice.yml has no {section} section: no {part} advice"


def routing(cfg: RoutingConfig, models: Sequence[RoutedCandidate], result: DayRouting) -> str:
    lines = [
        (f"requests: {result.requests:,} re-routable requests started on the day "
        f"({'all' if cfg.reroutable.is_empty else cfg.reroutable.describe()}; with token counts); "
        f"{result.requests_not_routed:,} in bins no candidate's model covers stay as they ran and are left out"),
        (f"bins: {cfg.bins_per_doubling} per doubling of tau_in and of tau_out, exact sums per bin; a bin split "
        "between candidates charges each the bin's mean per query"),
        ("objective: zeta x energy / reference energy - (1 - zeta) x accuracy / reference accuracy, accuracy weighted "
        f"by {cfg.accuracy_weight}; reference: {result.reference}"),
        f"shares: each candidate serves between {cfg.min_share:g} and {1 - cfg.min_share:g} of the routed queries"
        if cfg.min_share > 0 and len(models) > 1 else "shares: unconstrained (min_share 0 or one candidate)",
    ]
    for m in models:
        c = m.candidate
        rng = ""
        if m.token_range:
            (i0, i1), (o0, o1) = m.token_range
            rng = f" [{i0}-{i1} input x {o0}-{o1} output tokens]"
        capacity = f"; capacity {c.capacity_gpu_s:g} GPU-s at {c.gpus} GPU(s) per request" if c.capacity_gpu_s else ""
        lines.append(f"{c.name}: accuracy {c.accuracy:g} ({c.accuracy_source}); energy model: {m.energy_source}; "
                     f"fitted range: {m.range_source}{rng}{capacity}")  # fmt: skip
    lines += [
        ("energy: IT energy per request as the candidates' models predict it (for warehouse fits: the attributed "
        "energy, idle shares included: the saving assumes capacity follows the load); coefficients given in "
        "advice.yml must be on the same basis for the comparison to hold"),
        ("carbon: each request's predicted energy x PUE x grid intensity of the hour it started, in the zone of the "
        "candidate's cluster (a candidate given by hardware serves where the request ran)"),
        "saving_kwh: the day as it ran priced with the fits of the model x hardware each request ran on, minus the "
        "plan (like for like); saving_vs_measured_kwh: against the measured energy"
        + (f"; no fit for {', '.join(result.actual_fit_missing)}: modelled actual not available"
           if result.actual_fit_missing else ""),
    ]  # fmt: skip
    return "\n".join(lines)


def rightsizing(cfg: RightsizingConfig, daily: pd.DataFrame) -> str:
    lines = [
        "load: the hour's peak of the cluster's mean concurrency per telemetry window; scaling once per hour",
        ("avoidable: hardware-seconds present beyond what that load needed x the hour's measured idle energy per "
        "GPU-second and node-second; dynamic energy taken as unchanged (consolidation savings not claimed)"),
        ("carbon: that energy x the day's PUE x the hour's grid intensity; embodied: the hardware-seconds x the "
        "embodied rate per second (avoidable only if the released hardware does other work or is not bought)"),
    ]
    for c in cfg.clusters:
        row = daily[daily["cluster"] == c.cluster]
        source = row["capacity_source"].iloc[0] if len(row) else "no telemetry that day"
        lines.append(f"{c.cluster}: capacity per GPU {source}; at least {c.min_gpus} GPU(s); scaled by {c.scale_unit}")
    return "\n".join(lines)


def shifting(cfg: ShiftingConfig) -> str:
    return "\n".join([
        f"deferrable: {cfg.deferrable.describe()}; each may start up to {cfg.max_delay_h} h later, at a whole UTC hour",
        ("shifted: the request's measured facility energy x the lowest hourly grid intensity of its zone among the "
        "allowed hours (hours without an hourly factor are not candidates), if below what it emitted; never more"),
        "energy unchanged by the move; its idle shares move with it only if capacity follows the load",
    ])  # fmt: skip


def settings(cfg: SettingsConfig, runs: int, bad: int) -> str:
    slo = (f"p{round(cfg.slo_quantile * 100)} latency per output token within {cfg.slo_s_per_output_token:g} s"
           if cfg.slo_s_per_output_token is not None else "no SLO given: the lowest energy per token is marked")
    return "\n".join([
        f"{runs:,} profiling runs with settings columns; {bad} left out (a settings value not a number)",
        (f"recommended: the least energy per output token among the measured settings with at least {cfg.min_runs} "
        f"runs that meet the SLO ({slo}); nothing claimed for a setting that was not profiled"),
        ("each profiling row is one request as measured: energy per output token = sum of energy / sum of output "
        "tokens; latency per output token = runtime / output tokens"),
    ])  # fmt: skip
