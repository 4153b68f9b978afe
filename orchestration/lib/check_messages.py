"""What each asset check that does not pass means, in one line, and what to do about it.

Shown under "checks not passed" by `impact run`, as the check's description in the UI (the result's
``description``), and in the daily report's checks table. Pure functions of the offending rows: the checks in
``defs/*/checks.py`` call them, the report calls them on the rows of its own queries. Each line names the page of
the documentation that explains the check (``docs/<page>.md#<section>``; tests/test_check_messages.py keeps those
links pointing at real sections).
"""

from __future__ import annotations

import pandas as pd

# What a failed invariant means for the user: these are bugs of the product, not problems of the input data.
REPORT_BUG = (
    "a bug in the attribution, not a problem of your data: keep the warehouse and the inputs of that day and report "
    "it with this check's details (docs/validation.md#invariants)"
)


def invariant_advice(what: str, bad: list[tuple]) -> str | None:
    """One line for the run summary and the UI: how many rows break the invariant, the first one, and what to do."""
    if not bad:
        return None
    first = ", ".join(str(v) for v in bad[0][:3])
    return f"{len(bad)}{'+' if len(bad) >= 20 else ''} {what} (first: {first}): {REPORT_BUG}"


def coverage_advice(low: list[tuple], threshold: float) -> str | None:
    """One line: which cluster-day has too little telemetry, and how to fill it in once the data has arrived."""
    if not low:
        return None
    cluster, day, coverage = min(low, key=lambda row: row[2])
    more = f" (and {len(low) - 1} more cluster-day(s))" if len(low) > 1 else ""
    return (
        f"telemetry covers {coverage:.1%} of {cluster} on {day}, below {threshold:.0%}{more}: gaps in the "
        f"exporters or data that arrived late. Energy of uncovered time is predicted, not metered. When the data "
        f"is in, re-run the day: impact run --start {day} --end {day} (docs/scheduling.md#late-data)"
    )


def factor_gaps_advice(gaps: dict[str, int]) -> str | None:
    """One line: requests without a grid factor or without energy for part of their time, and what to add."""
    parts = []
    if gaps["no_grid_factor"]:
        parts.append(
            f"{gaps['no_grid_factor']} request(s) have no grid carbon factor: add their zone (or its country) to "
            "factors/grid_annual.csv or hourly files under factors/grid_intensity/ "
            "(docs/impact-and-factors.md#grid-carbon-intensity)"
        )
    if gaps["no_energy_for_uncovered_time"]:
        parts.append(
            f"{gaps['no_energy_for_uncovered_time']} request(s) ran where no telemetry covered them and no energy "
            "model exists yet for their model and hardware: let the models job fit one (impact run does), then "
            "re-run the day (docs/models.md#requests-without-telemetry)"
        )
    return "; ".join(parts) or None


def fit_quality_advice(bad: pd.DataFrame, min_r2: float, max_mape: float) -> str | None:
    """One line for the run summary and the UI: which fits are poor, what it means and what to do."""
    if bad.empty:
        return None
    worst = bad.sort_values("r_squared_uncentered", na_position="first").iloc[0]
    found = []
    if not float(worst["r_squared_uncentered"]) >= min_r2:
        found.append(f"uncentred R² {float(worst['r_squared_uncentered']):.2f} < {min_r2:.2f}")
    if not float(worst["cv_mape"]) <= max_mape:
        found.append(f"CV MAPE {float(worst['cv_mape']):.0%} > {max_mape:.0%}")
    more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
    return (
        f"the paper's form fits {worst['model']} on {worst['hardware'] or '-'} ({worst['target']} from "
        f"{worst['source']}) poorly: {', '.join(found)}{more}. Usually batching: energy per request falls as "
        "requests share a GPU, which that form cannot see. Metered figures are unaffected; predictions from this "
        "fit (requests without telemetry, `impact predict`) are rough: models.model_comparison shows which form "
        "fits better (docs/models.md#fit-quality)"
    )


def drift_advice(offenders: pd.DataFrame, k: float) -> str | None:
    """One line for the run summary and the UI: which coefficient moved, what it means and what to do."""
    if offenders.empty:
        return None
    first = offenders.sort_values("shift_se", ascending=False).iloc[0]
    more = f" (and {len(offenders) - 1} more)" if len(offenders) > 1 else ""
    return (
        f"{first['coefficient']} of {first['model']} on {first['hardware'] or '-'} ({first['target']} from "
        f"{first['source']}) moved {float(first['shift_se']):.1f} standard errors since the previous fit (limit "
        f"{k:g}){more}: the serving stack, hardware or traffic changed. Find out what changed; predictions made "
        "with the previous fit are stale (docs/models.md#coefficient-drift)"
    )


def mlenergy_advice(bad: pd.DataFrame) -> str | None:
    """One line for the run summary and the UI: which model is outside the band, what it means, what to do."""
    if bad.empty:
        return None
    first = bad.iloc[0]
    side = "above" if first["mlenergy_verdict"] == "above band" else "below"
    meaning = (
        "idle capacity dominates (an under-used cluster): consider fewer GPUs or more load per GPU"
        if side == "above"
        else "energy is missing from the attribution: check the telemetry coverage and the GPU power units"
    )
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    return (
        f"{first['model']} on {first['hardware']}: {float(first['ours_accelerator_j_per_output_token']):.3g} J per "
        f"output token is {side} ML.ENERGY's band {float(first['mlenergy_band_low_j_per_token']):.3g}-"
        f"{float(first['mlenergy_band_high_j_per_token']):.3g}{more}. Usually {meaning} "
        "(docs/comparisons.md#mlenergy)"
    )


def advice_invariant_advice(problems: list[str]) -> str | None:
    """One line for an advice check (defs/advice/checks.py): what must hold whatever advice.yml says does not."""
    if not problems:
        return None
    return (
        f"{len(problems)} violation(s) (first: {problems[0]}): the advice contradicts itself whatever advice.yml "
        "says, so this is a bug, not your configuration: keep the warehouse and report it with this check's "
        "details (docs/advice.md)"
    )


def image_fit_quality_advice(bad: pd.DataFrame, min_r2: float, max_mape: float) -> str | None:
    """One line for an image model (defs/images/checks.py): which selected fit is poor and what to do."""
    if bad.empty:
        return None
    worst = bad.sort_values("r_squared_uncentered", na_position="first").iloc[0]
    more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
    return (
        f"the image model of {worst['model']} on {worst['hardware'] or '-'} ({worst['target']} from "
        f"{worst['source']}) fits poorly: uncentred R² {float(worst['r_squared_uncentered']):.2f} (at least "
        f"{min_r2:.2f}), CV MAPE {float(worst['cv_mape']):.0%} (at most {max_mape:.0%}){more}. Check the logged "
        "sizes and steps, or profile the sizes and step counts you serve; predictions from this fit are rough "
        "(docs/images.md#4-image-energy-and-runtime-models)"
    )


def adapter_advice(problems: list[tuple[str, str, int]]) -> str | None:
    """One line for lora_factor_coverage: the LoRA adapters the factor tables cannot charge, and what to add."""
    if not problems:
        return None
    adapter, problem, requests = problems[0]
    more = f" (and {len(problems) - 1} more adapter(s))" if len(problems) > 1 else ""
    return (
        f"LoRA adapter {adapter} ({requests} request(s)): {problem}{more}. Its fine-tuning is not in "
        "fine_tuning_g_co2e: add it to factors/models.yml with base_model, fine_tuning_kg_co2e and "
        "projected_lifetime_inferences (docs/images.md#3-inferences-training-and-lora-adapters)"
    )


def power_ceiling_advice(bad: list[tuple]) -> str | None:
    """One line: stored pool-windows holding more energy than their hardware can draw (blocking)."""
    if not bad:
        return None
    cluster, day, component, pool = bad[0][:4]
    return (
        f"{len(bad)}{'+' if len(bad) >= 20 else ''} pool-window(s) hold more energy than the hardware can draw "
        f"(first: {cluster} {day} {component} {pool}): telemetry above the ceiling is quarantined before this, so "
        "either gpu_max_w / host_max_w in clusters.yml (or factors/gpu_power.csv) is too low for this hardware, or "
        "it is a bug: check the hardware's rated power, fix the factor and re-run the day "
        "(docs/telemetry-faults.md#physical-plausibility)"
    )


def telemetry_faults_advice(flagged: list[tuple]) -> str | None:
    """One line: the cluster-days whose telemetry had samples rejected, energy quarantined or intervals bridged
    (rows: day, cluster, rejected samples, quarantined GPU-s, quarantined kWh, bridged, duplicates)."""
    if not flagged:
        return None
    day, cluster, rejected, quarantined_s, quarantined_kwh, bridged = flagged[0][:6]
    more = f" (and {len(flagged) - 1} more cluster-day(s))" if len(flagged) > 1 else ""
    return (
        f"{cluster} on {day}: {rejected} telemetry sample(s) rejected, {quarantined_kwh:.3f} kWh quarantined over "
        f"{quarantined_s:.0f} GPU-s, {bridged} interval(s) bridged{more}. The faulty samples are not counted as "
        "energy; look at the exporter of the series listed in intermediate.int_telemetry_quarantine "
        "(docs/telemetry-faults.md#where-to-look)"
    )


def unmatched_requests_advice(rows: list[tuple]) -> str | None:
    """One line: requests naming a node or GPU that sent no telemetry (rows: day, cluster, node, gpu, level,
    requests)."""
    if not rows:
        return None
    day, cluster, node, gpu, level, n = rows[0][:6]
    more = f" (and {len(rows) - 1} more name(s))" if len(rows) > 1 else ""
    return (
        f"{n} request(s) of {cluster} on {day} name node {node!r} GPU {gpu!r}, which sent no telemetry: attributed "
        f"at {level} level{more}. Their energy is kept, but shared with their neighbours: map the names in "
        "clusters.yml (node_aliases, node_pattern) if the log and the exporter spell them differently "
        "(docs/telemetry-faults.md#requests-that-match-no-telemetry)"
    )


def durations_advice(findings: list[str]) -> str | None:
    """One line: request durations that look like the wrong unit."""
    if not findings:
        return None
    more = f" (and {len(findings) - 1} more finding(s))" if len(findings) > 1 else ""
    return (
        f"{findings[0]}{more}: check the unit of duration_s in the request log (seconds expected) "
        "(docs/telemetry-faults.md#logs-that-are-not-what-they-claim)"
    )
