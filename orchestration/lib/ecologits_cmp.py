"""Measured vs estimated: this product's per-request energy and carbon against EcoLogits and ML.ENERGY.

Pure library code (DuckDB / pandas in, pandas out; no Dagster). Two independent references:

1. **EcoLogits** (PyPI ``ecologits`` 0.11.3, MPL-2.0, used offline): a bottom-up *estimate* of one request from
   the model's parameter count, its output tokens and its latency (``ecologits.impacts.llm.compute_llm_impacts``):
   GPU energy per token = (alpha exp(beta x batch) x active params + gamma), times the GPUs needed to hold the
   weights (16-bit, x1.2, rounded up to a power of two of 80 GB GPUs), plus the non-GPU server power (1.2 kW per 8
   GPUs) over the generation latency shared by a batch of 64; times the PUE; times the electricity mix's GWP.
   We give it our cluster's PUE and, for carbon, the grid intensity our request actually used
   (operational_location_g_co2e / facility_energy_j), so ours/EcoLogits isolates the *energy* difference; a second
   carbon figure uses EcoLogits' own default mix (world, ``WOR``), labelled as such.
2. **ML.ENERGY** (leaderboard v2, Apache-2.0, shipped in data/reference/ml-energy-v2): GPU energy per output
   token *measured* with vLLM at saturating load over a range of batch sizes on A100 and H100. Our accelerator
   energy per output token (idle + dynamic GPU share) is compared with a plausibility band built from it
   (``mlenergy_band``).

Vectorisation: EcoLogits is a per-call Python function (~0.2 ms). Requests are first aggregated in DuckDB by
model x hardware x cluster x PUE x output tokens x latency bucket (latency rounded to 3 significant figures, at
most 0.5 % off; EcoLogits uses latency only to cap its generation latency), and EcoLogits is called once per
distinct (active params, total params, PUE, output tokens, latency bucket); the count of calls is reported. Its
usage GWP is linear in the mix (request_energy x if_electricity_mix_gwp), so it is called with a mix of
1 kg/kWh and scaled per request by that request's own mix (exact; tests/test_ecologits_cmp.py checks it against a
direct call).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from orchestration.lib import day_parts, engines, warehouse
from orchestration.settings import REPO_ROOT

try:  # the shared normalisation rule (factors engineer); the same rule is kept here if it is not there
    from orchestration.lib.factors import model_key as _shared_model_key
except ImportError:  # pragma: no cover - depends on what has landed
    _shared_model_key = None

try:
    from orchestration.lib.predictions import WINDOW_DAYS
except ImportError:  # pragma: no cover
    WINDOW_DAYS = 28

MLENERGY_V2_CSV = REPO_ROOT / "data" / "reference" / "ml-energy-v2" / "mlenergy_v2_llm_configs.csv"
MLENERGY_SOURCE = "ML.ENERGY Leaderboard v2 (Apache-2.0), data/reference/ml-energy-v2"

# EcoLogits gives a point when the parameter count is exact (a RangeValue only when it is a range); "within"
# accepts ours when it lies in [min / (1 + t), max x (1 + t)]. Our convention, not EcoLogits'.
ECOLOGITS_BAND_TOLERANCE = 0.25
# ML.ENERGY plausibility band: [best-batched J/token / F, batch-1 bound x F] (see mlenergy_band)
MLENERGY_WIDEN_FACTOR = 1.5
# a size-class proxy (no ML.ENERGY model of the same name): same architecture, total parameters within this ratio
PROXY_MAX_SIZE_RATIO = 1.15
DEFAULT_MIX_ZONE = "WOR"
LATENCY_SIGNIFICANT_DIGITS = 3

VERDICT_WITHIN = "within EcoLogits range"
VERDICT_BELOW = "below"
VERDICT_ABOVE = "above"
STATUS_OK = "ok"
STATUS_NO_ENERGY = "no request with attributed or predicted energy"

J_PER_KWH = 3.6e6
J_PER_WH = 3600.0

# marts.cmp_ecologits (column -> DuckDB type)
CMP_SCHEMA: dict[str, str] = {
    "model": "varchar",
    "hardware": "varchar",
    "cluster": "varchar",
    "status": "varchar",
    "factors_model": "varchar",
    "total_parameters_b": "double",
    "active_parameters_b": "double",
    "requests": "bigint",
    "requests_with_energy": "bigint",
    "requests_metered": "bigint",
    "mean_input_tokens": "double",
    "mean_output_tokens": "double",
    "mean_duration_s": "double",
    "pue": "double",
    "ours_it_wh_per_request": "double",
    "ours_accelerator_wh_per_request": "double",
    "ours_host_wh_per_request": "double",
    "ours_facility_wh_per_request": "double",
    "ours_operational_g_co2e_per_request": "double",
    "ours_water_onsite_ml_per_request": "double",
    "ours_water_offsite_ml_per_request": "double",
    "ours_facility_wh_median": "double",
    "ours_accelerator_wh_median": "double",
    "ours_operational_g_co2e_median": "double",
    "ours_mix_kg_co2e_per_kwh": "double",
    "ours_accelerator_j_per_output_token": "double",
    "ours_accelerator_share": "double",
    "ours_host_share": "double",
    "ours_unallocated_idle_share": "double",
    "ours_overhead_share": "double",
    "ecologits_energy_wh_min": "double",
    "ecologits_energy_wh_mean": "double",
    "ecologits_energy_wh_max": "double",
    "ecologits_gwp_usage_g_min": "double",
    "ecologits_gwp_usage_g_mean": "double",
    "ecologits_gwp_usage_g_max": "double",
    "ecologits_default_mix_zone": "varchar",
    "ecologits_default_mix_kg_co2e_per_kwh": "double",
    "ecologits_default_mix_gwp_usage_g_mean": "double",
    "ecologits_gpu_j_per_output_token": "double",
    "ecologits_gpus": "bigint",
    "ecologits_calls": "bigint",
    "ratio_energy": "double",
    "ratio_gwp_usage": "double",
    "verdict_energy": "varchar",
    "verdict_gwp_usage": "varchar",
    "verdict_tolerance": "double",
    "mlenergy_model": "varchar",
    "mlenergy_match": "varchar",
    "mlenergy_gpu": "varchar",
    "mlenergy_j_per_token_best": "double",
    "mlenergy_best_batch": "double",
    "mlenergy_j_per_token_smallest_batch": "double",
    "mlenergy_smallest_batch": "double",
    "mlenergy_batch1_bound_j_per_token": "double",
    "mlenergy_band_low_j_per_token": "double",
    "mlenergy_band_high_j_per_token": "double",
    "mlenergy_verdict": "varchar",
    "window_start": "date",
    "window_end": "date",
    "computed_at": "timestamp",
}


# --------------------------------------------------------------------------------------------------------------
# names


def model_key(name: str | None) -> str:
    """Normalised model name: drop an 'org/' prefix, lower-case, keep letters and digits
    ('meta-llama/Llama-2-70b-chat-hf' -> 'llama270bchathf'). The rule of orchestration.lib.factors.model_key."""
    if name is None:
        return ""
    if _shared_model_key is not None:
        return _shared_model_key(name)
    return re.sub(r"[^a-z0-9]", "", str(name).split("/")[-1].lower())


def gpu_class(hardware: str | None) -> str | None:
    """The ML.ENERGY GPU class nearest to a GPU model name: 'A100' or 'H100' (H200 and H800 count as H100:
    same Hopper die); None for anything else (no comparable measurement)."""
    h = hardware.upper() if isinstance(hardware, str) else ""
    if "A100" in h or "A800" in h:
        return "A100"
    if "H100" in h or "H200" in h or "H800" in h:
        return "H100"
    return None


def no_parameter_status(model: str) -> str:
    return f"no parameter count for model {model} in factors/models.yml"


def resolve_parameters(
    model: str, factor_models: pd.DataFrame, aliases: pd.DataFrame | None = None
) -> tuple[str | None, float | None, float | None]:
    """(factors model, total parameters B, active parameters B) of a request's model name, matched by model_key on
    factors.models.model or factors.model_aliases.alias_key; active defaults to total (dense)."""
    key = model_key(model)
    target = None
    if aliases is not None and len(aliases):
        hit = aliases.loc[aliases["alias_key"] == key, "model"]
        if len(hit):
            target = hit.iloc[0]
    fm = factor_models
    if target is not None:
        row = fm.loc[fm["model"] == target]
    else:
        row = fm.loc[fm["model"].map(model_key) == key]
    if row.empty:
        return None, None, None
    r = row.iloc[0]
    total = _num(r.get("total_parameters_b"))
    active = _num(r.get("active_parameters_b"))
    if active is None:
        active = total
    return r["model"], total, active


def _num(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f > 0 else None


# --------------------------------------------------------------------------------------------------------------
# EcoLogits


def latency_bucket(seconds: float) -> float:
    """Round a latency to LATENCY_SIGNIFICANT_DIGITS significant figures (0 for non-positive)."""
    if not seconds or seconds <= 0 or not math.isfinite(seconds):
        return 0.0
    digits = LATENCY_SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(seconds))
    return round(seconds, digits)


def default_mix(zone: str = DEFAULT_MIX_ZONE):
    """EcoLogits' electricity mix of a zone (adpe, pe, gwp kgCO2eq/kWh, wue L/kWh); 'WOR' = world."""
    from ecologits.electricity_mix_repository import electricity_mixes

    mix = electricity_mixes.find_electricity_mix(zone=zone)
    if mix is None:
        raise ValueError(f"EcoLogits has no electricity mix for zone {zone!r}")
    return mix


def ecologits_request(
    active_b: float,
    total_b: float,
    output_tokens: float,
    latency_s: float,
    pue: float,
    gwp_kg_per_kwh: float = 1.0,
) -> dict[str, float]:
    """One EcoLogits estimate (compute_llm_impacts), in Wh and g: energy_wh_min/max (facility, x PUE) and
    gwp_usage_g_min/max at the given mix. Water/ADPe/PE are not compared (mix factors 0)."""
    from ecologits.impacts.llm import compute_llm_impacts

    impacts = compute_llm_impacts(
        model_active_parameter_count=float(active_b),
        model_total_parameter_count=float(total_b),
        output_token_count=float(output_tokens),
        request_latency=float(latency_s),
        if_electricity_mix_adpe=0.0,
        if_electricity_mix_pe=0.0,
        if_electricity_mix_gwp=float(gwp_kg_per_kwh),
        if_electricity_mix_wue=0.0,
        datacenter_pue=float(pue),
        datacenter_wue=0.0,
    )
    e_lo, e_hi = _bounds(impacts.energy.value)
    g_lo, g_hi = _bounds(impacts.usage.gwp.value)
    return {
        "energy_wh_min": e_lo * 1000.0,
        "energy_wh_max": e_hi * 1000.0,
        "gwp_usage_g_min": g_lo * 1000.0,
        "gwp_usage_g_max": g_hi * 1000.0,
    }


def _bounds(value) -> tuple[float, float]:
    if hasattr(value, "min") and hasattr(value, "max"):
        return float(value.min), float(value.max)
    return float(value), float(value)


def ecologits_gpu_per_token(active_b: float, total_b: float) -> tuple[float, int]:
    """EcoLogits' GPU energy per output token (J, all the GPUs it assumes) and that GPU count, from its DAG."""
    from ecologits.impacts.llm import compute_llm_impacts_dag

    res = compute_llm_impacts_dag(
        model_active_parameter_count=float(active_b),
        model_total_parameter_count=float(total_b),
        output_token_count=1.0,
        request_latency=math.inf,
        if_electricity_mix_adpe=0.0,
        if_electricity_mix_pe=0.0,
        if_electricity_mix_gwp=0.0,
        if_electricity_mix_wue=0.0,
        datacenter_pue=1.0,
        datacenter_wue=0.0,
    )
    gpus = int(res["gpu_required_count"])
    return float(res["gpu_energy"]) * gpus * J_PER_KWH, gpus


def ecologits_for_combos(
    combos: pd.DataFrame, call: Callable[..., dict[str, float]] = ecologits_request
) -> pd.DataFrame:
    """EcoLogits at mix 1 kg/kWh for each distinct (active_b, total_b, pue, output_tokens, latency_s) row of
    combos; returns combos with energy_wh_min/max and gwp1_g_min/max (g at 1 kg/kWh) columns.

    With EcoLogits itself (the default `call`), a model of exact parameter counts is evaluated through
    ecologits_line: EcoLogits' energy is pue x (a x min(latency, b x tokens + c) + d x tokens), so a few calls
    give a, b, c and d and every combination follows exactly (each group is checked against direct calls, and
    called directly if it does not match, e.g. a parameter range). Millions of requests have ~10^5 distinct
    combinations: direct calls would cost ~0.3 ms each."""
    keys = ["active_b", "total_b", "pue", "output_tokens", "latency_s"]
    distinct = combos[keys].drop_duplicates().reset_index(drop=True)
    parts = []
    for (active_b, total_b, pue), group in distinct.groupby(["active_b", "total_b", "pue"], sort=False):
        line = ecologits_line(active_b, total_b, pue, group) if call is ecologits_request and len(group) > 8 else None
        if line is not None:
            energy = line(group["output_tokens"].to_numpy(float), group["latency_s"].to_numpy(float))
            res = pd.DataFrame(
                {"energy_wh_min": energy, "energy_wh_max": energy, "gwp1_g_min": energy, "gwp1_g_max": energy},
                index=group.index,
            )
        else:
            out = [
                call(r.active_b, r.total_b, r.output_tokens, r.latency_s, r.pue, 1.0)
                for r in group.itertuples(index=False)
            ]
            res = pd.DataFrame(out, index=group.index).rename(
                columns={"gwp_usage_g_min": "gwp1_g_min", "gwp_usage_g_max": "gwp1_g_max"}
            )
        parts.append(res)
    if not parts:
        return distinct.assign(energy_wh_min=[], energy_wh_max=[], gwp1_g_min=[], gwp1_g_max=[])
    return distinct.join(pd.concat(parts))


def ecologits_line(
    active_b: float, total_b: float, pue: float, check: pd.DataFrame | None = None, rtol: float = 1e-9
) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """EcoLogits' facility energy (Wh) of a model as a function of (output tokens, latency s), from EcoLogits
    calls: pue x (a x min(latency, b x tokens + c) + d x tokens) (its server energy over the generation latency,
    capped by the measured latency, plus its GPU energy per token). None when the parameters are a range (min <>
    max) or when the function does not reproduce direct calls at up to 3 rows of `check` (or at probe points)."""

    def e(tokens: float, latency: float) -> float | None:
        r = ecologits_request(active_b, total_b, tokens, latency, pue, 1.0)
        if r["energy_wh_min"] != r["energy_wh_max"]:
            return None
        return r["energy_wh_min"] / pue

    # latencies far below any generation latency: energy = a x latency + d x tokens there
    short = 1e-4
    probes = [e(1.0, short), e(1.0, 2 * short), e(0.0, math.inf), e(1000.0, math.inf)]
    if any(p is None for p in probes):
        return None
    e1s, e1s2, e00, e1k = probes
    a = (e1s2 - e1s) / short
    if not a > 0:
        return None
    d = e1s - a * short
    c = e00 / a
    b = (e1k - 1000.0 * d - a * c) / (1000.0 * a)

    def energy(tokens: np.ndarray, latency: np.ndarray) -> np.ndarray:
        return pue * (a * np.minimum(latency, b * tokens + c) + d * tokens)

    rows = check.head(3) if check is not None and len(check) else pd.DataFrame(
        {"output_tokens": [1.0, 250.0], "latency_s": [0.5, 40.0]}
    )
    for r in rows.itertuples(index=False):
        want = ecologits_request(active_b, total_b, r.output_tokens, r.latency_s, pue, 1.0)["energy_wh_min"]
        got = float(energy(np.array([r.output_tokens], float), np.array([r.latency_s], float))[0])
        if not math.isclose(got, want, rel_tol=rtol, abs_tol=1e-12):
            return None
    return energy


def verdict(ours: float | None, lo: float | None, hi: float | None, tol: float = ECOLOGITS_BAND_TOLERANCE):
    """'within EcoLogits range' when lo / (1 + tol) <= ours <= hi x (1 + tol); else 'below' or 'above'."""
    if ours is None or lo is None or hi is None or any(not math.isfinite(x) for x in (ours, lo, hi)):
        return None
    if ours < lo / (1.0 + tol):
        return VERDICT_BELOW
    if ours > hi * (1.0 + tol):
        return VERDICT_ABOVE
    return VERDICT_WITHIN


# --------------------------------------------------------------------------------------------------------------
# requests: per-day parts, summed over the window
#
# The comparison covers the trailing 28 days. Scanning the request mart over that window on every run would grow
# with history (at 5 M requests a day: ~3 s more per day of history, ~90 s a run after four weeks). Each day's
# requests are therefore reduced once, when the day is materialised (asset cmp_ecologits_day_parts
# in the daily job; re-materialising a day replaces its parts), to
# - DAY_COMBOS_TABLE: per start day x model x hardware x cluster x PUE x output tokens x latency bucket, the
#   request count and the sums the comparison needs (additive: the window's sums are sums of the days' sums);
# - DAY_BINS_TABLE: per start day x model x hardware x cluster x measure, how many requests had each value
#   rounded to MEDIAN_SIGNIFICANT_DIGITS significant figures. The window's median is read from the summed bins:
#   exactly the median of the rounded values (DuckDB's median: the mean of the two middle values for an even
#   count), within 0.05 % of the exact median, and the same however many requests the window holds.
# The run reads the window's parts (some 10^5 rows a day at 5 M requests) and reduces any day of the window that
# has requests but no parts yet (a warehouse from before the parts, or a day loaded by other means). The rules
# that keep the parts exact (requests that ran past midnight, replacement) are in orchestration/lib/day_parts.py.

DAY_COMBOS_TABLE = "marts.cmp_ecologits_day_combos"
DAY_BINS_TABLE = "marts.cmp_ecologits_day_bins"
MEDIAN_SIGNIFICANT_DIGITS = 4
# energy_source: 'telemetry' | 'telemetry+predicted' | 'predicted' | 'telemetry (partial: ...)' | 'none: ...'
HAS_ENERGY_SQL = "r.it_energy_j is not null and not starts_with(coalesce(r.energy_source, 'none'), 'none')"
METERED_SQL = "r.energy_source = 'telemetry'"

# measure of DAY_BINS_TABLE -> (its value per request q of _DAY_REQUESTS_SQL or null, the column of the counts
# frame its window median fills)
MEDIAN_MEASURES = {
    "facility_wh": ("case when q.has_energy then q.facility_energy_j / 3600.0 end", "ours_facility_wh_median"),
    # (the accelerator part exists for fully metered requests only)
    "accelerator_wh": ("case when q.metered then q.accelerator_energy_j / 3600.0 end", "ours_accelerator_wh_median"),
    "operational_g_co2e": ("case when q.has_energy then q.operational_location_g_co2e end",
                           "ours_operational_g_co2e_median"),
}

# the sums of DAY_COMBOS_TABLE (column -> expression over one request q of _DAY_REQUESTS_SQL)
_COMBO_SUMS = {
    "input_tokens_sum": "q.input_tokens",
    "duration_s_sum": "q.duration_s",
    "it_energy_j": "q.it_energy_j",
    "facility_energy_j": "q.facility_energy_j",
    # the parts (accelerator, host) exist for the metered energy only: taken over fully metered requests
    "metered_accelerator_energy_j": "case when q.metered then q.accelerator_energy_j end",
    "metered_host_energy_j": "case when q.metered then q.host_energy_j end",
    "metered_it_energy_j": "case when q.metered then q.it_energy_j end",
    "metered_facility_energy_j": "case when q.metered then q.facility_energy_j end",
    "operational_g_co2e": "q.operational_location_g_co2e",
    "water_onsite_l": "q.water_onsite_l",
    "water_offsite_l": "q.water_offsite_l",
    # the request's own grid mix, kg/kWh (= g/J x 3.6e6 / 1000), summed for the per-request EcoLogits carbon
    "mix_kg_per_kwh_sum": "case when q.facility_energy_j > 0 then q.operational_location_g_co2e / q.facility_energy_j"
    " * 3600.0 end",
}
_COMBO_COUNTS = {
    "requests": "true",
    "requests_metered": "q.metered",
    "requests_with_mix": "q.facility_energy_j > 0 and q.operational_location_g_co2e is not null",
}
_COMBO_KEYS = ("model", "hardware", "cluster", "pue", "output_tokens", "latency_s")
_GROUP_KEYS = ("day", "model", "hardware", "cluster", "spanning")

# A reduction first numbers the (day, model, hardware, cluster, spanning) groups of its requests and copies the
# requests, with their group number and the flags, into a temporary table: the aggregates then group on integers
# (grouping millions of rows on three strings costs several times as much).
_DAY_GROUPS_SQL = """
create or replace temp table _cmp_day_groups as
select row_number() over () as gid, *
from (select distinct r.day, r.model, r.hardware, r.cluster, r.days_spanned > 1 as spanning from {table} as r
      where {days})
"""

_DAY_REQUESTS_SQL = """
create or replace temp table _cmp_day_requests as
select
    g.gid,
    r.pue,
    r.output_tokens,
    {bucket} as latency_s,
    coalesce({has_energy}, false) as has_energy,
    coalesce({metered}, false) as metered,
    r.input_tokens, r.duration_s, r.it_energy_j, r.facility_energy_j, r.accelerator_energy_j, r.host_energy_j,
    r.operational_location_g_co2e, r.water_onsite_l, r.water_offsite_l
from {table} as r
inner join _cmp_day_groups as g
    on r.day = g.day and r.model is not distinct from g.model and r.hardware is not distinct from g.hardware
    and r.cluster is not distinct from g.cluster and (r.days_spanned > 1) = g.spanning
where {days}
"""

_DAY_COMBOS_SQL = """
select {groups}, c.* exclude (gid)
from (
    select q.gid, q.pue, q.output_tokens, q.latency_s, q.has_energy, {counts}, {sums}
    from _cmp_day_requests as q
    group by all
) as c
inner join _cmp_day_groups as g using (gid)
"""

_DAY_BINS_SQL = """
select {groups}, b.* exclude (gid)
from ({bins}) as b
inner join _cmp_day_groups as g using (gid)
"""

_DAY_BIN_SQL = """
select q.gid, '{measure}' as measure, {rounded} as value, count(*) as requests
from _cmp_day_requests as q
where {value} is not null
group by all
"""

# the window: the days' combos of requests with energy added up; per model x hardware x cluster, all requests
_WINDOW_COMBOS_SQL = """
select {keys}, {sums}
from {combos}
where day between $start and $end and has_energy
group by all
"""

# the median of each measure over the window's bins: with n values, the mean of the values at 0-based ranks
# floor((n - 1) / 2) and ceil((n - 1) / 2), each found as the bin whose cumulative count range holds it
_WINDOW_COUNTS_SQL = """
with bins as (
    select model, hardware, cluster, measure, value, cast(sum(requests) as bigint) as n
    from {bins}
    where day between $start and $end
    group by all
),
ranked as (
    select
        *,
        sum(n) over (partition by model, hardware, cluster, measure order by value) - n as first_rank,
        sum(n) over (partition by model, hardware, cluster, measure) as total
    from bins
),
medians as (
    select
        model, hardware, cluster, measure,
        (
            any_value(value) filter (where first_rank <= (total - 1) // 2 and (total - 1) // 2 < first_rank + n)
            + any_value(value) filter (where first_rank <= total // 2 and total // 2 < first_rank + n)
        ) / 2 as median
    from ranked
    group by all
),
counts as (
    select model, hardware, cluster, cast(sum(requests) as bigint) as requests
    from {combos}
    where day between $start and $end
    group by all
)
select
    c.model, c.hardware, c.cluster, c.requests,
    {medians}
from counts as c
left join medians as m
    on c.model is not distinct from m.model and c.hardware is not distinct from m.hardware
    and c.cluster is not distinct from m.cluster
group by all
order by all
"""


def latency_bucket_sql(col: str = "r.duration_s", digits: int = LATENCY_SIGNIFICANT_DIGITS) -> str:
    """SQL for latency_bucket (3 significant figures)."""
    scale = f"pow(10, floor(log10({col})) - {digits - 1})"
    return f"case when {col} > 0 then round({col} / {scale}) * {scale} else 0 end"


def significant_sql(col: str, digits: int = MEDIAN_SIGNIFICANT_DIGITS) -> str:
    """SQL rounding ``col`` to ``digits`` significant figures (0 stays 0; the sign is kept)."""
    scale = f"pow(10, floor(log10(abs({col}))) - {digits - 1})"
    return f"case when {col} = 0 then 0.0 else round({col} / {scale}) * {scale} end"


def window(con: duckdb.DuckDBPyConnection, table: str = "marts.fct_request_impact", days: int = WINDOW_DAYS):
    """(start, end) of the trailing ``days`` days ending with the table's latest day; (None, None) when empty."""
    (end,) = warehouse.fetch_one(con, f"select max(day) from {table}")
    if end is None:
        return None, None
    return end - dt.timedelta(days=days - 1), end


def _day_parts_sql(table: str) -> tuple[str, str, str, str]:
    """(groups, requests, combos, bins) SQL of a reduction of ``table``."""
    # text requests only: EcoLogits estimates text generation (image requests: docs/images.md)
    days = f"{day_parts.DAYS_SQL} and r.modality = 'text'"
    fmt = {"table": table, "has_energy": HAS_ENERGY_SQL, "metered": METERED_SQL, "days": days}
    groups = _DAY_GROUPS_SQL.format(**fmt)
    requests = _DAY_REQUESTS_SQL.format(bucket=latency_bucket_sql(), **fmt)
    keys = ", ".join(f"g.{k}" for k in _GROUP_KEYS)
    counts = ", ".join(f"count(case when {expr} then 1 end) as {name}" for name, expr in _COMBO_COUNTS.items())
    sums = ", ".join(f"sum({expr}) as {name}" for name, expr in _COMBO_SUMS.items())
    combos = _DAY_COMBOS_SQL.format(groups=keys, counts=counts, sums=sums)
    bins = _DAY_BINS_SQL.format(
        groups=keys,
        bins=" union all ".join(
            _DAY_BIN_SQL.format(measure=measure, value=value, rounded=significant_sql(value))
            for measure, (value, _) in MEDIAN_MEASURES.items()
        ),
    )
    return groups, requests, combos, bins


def replace_day_parts(
    con: duckdb.DuckDBPyConnection,
    first: dt.date,
    last: dt.date,
    span_first: dt.date | None = None,
    table: str = "marts.fct_request_impact",
) -> tuple[int, int]:
    """Replace the parts (DAY_COMBOS_TABLE, DAY_BINS_TABLE) of the requests of ``table`` that started in
    [first, last], and of those that ran past midnight and started in [span_first, last] (default: first), in one
    transaction (orchestration/lib/day_parts.py); returns the (combo, bin) rows written."""
    if engines.is_spark(con):
        from orchestration.lib.engines import spark_steps

        return spark_steps.cmp_replace_day_parts(con, first, last, span_first, table)
    groups_sql, requests_sql, combos_sql, bins_sql = _day_parts_sql(table)
    values = day_parts.params(first, last, span_first)
    try:
        con.execute(groups_sql, values)
        con.execute(requests_sql, values)
        combos, bins = day_parts.replace(con, [(DAY_COMBOS_TABLE, combos_sql), (DAY_BINS_TABLE, bins_sql)], values)
    finally:
        con.execute("drop table if exists _cmp_day_requests")
        con.execute("drop table if exists _cmp_day_groups")
    return combos, bins


def reduce_day(
    con: duckdb.DuckDBPyConnection,
    day: dt.date,
    max_request_duration_s: float,
    table: str = "marts.fct_request_impact",
) -> tuple[int, int]:
    """The daily reduction of ``day``: its requests that ran within it, and the requests of the days before that
    ran past midnight (day_parts.look_back)."""
    return replace_day_parts(con, day, day, day_parts.look_back(day, max_request_duration_s), table)


def days_without_parts(
    con: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date, days_table: str = "marts.fct_request_energy"
) -> list[dt.date]:
    """The start days in [start, end] with requests in ``days_table`` but no final parts in DAY_COMBOS_TABLE."""
    return day_parts.missing_days(con, start, end, days_table, DAY_COMBOS_TABLE)


def reduce_missing_days(
    con: duckdb.DuckDBPyConnection,
    start: dt.date,
    end: dt.date,
    table: str = "marts.fct_request_impact",
    days_table: str = "marts.fct_request_energy",
) -> list[dt.date]:
    """Reduce the days of [start, end] that have requests but no parts (days_without_parts), each run of
    consecutive days in one scan of ``table``; returns those days."""
    def reduce(first: dt.date, last: dt.date) -> None:
        replace_day_parts(con, first, last, table=table)

    return day_parts.reduce_missing(con, start, end, days_table, DAY_COMBOS_TABLE, reduce)


def request_combos(
    con: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-combo sums of requests with energy, request counts and medians per model x hardware x cluster) over
    the start days [start, end], from the days' parts (replace_day_parts)."""
    if engines.is_spark(con):
        from orchestration.lib.engines import spark_steps

        return spark_steps.cmp_request_combos(con, start, end)
    params = {"start": start, "end": end}
    sums = ", ".join(
        [f"cast(sum({c}) as bigint) as {c}" for c in _COMBO_COUNTS] + [f"sum({c}) as {c}" for c in _COMBO_SUMS]
    )
    combos = con.execute(
        _WINDOW_COMBOS_SQL.format(keys=", ".join(_COMBO_KEYS), sums=sums, combos=DAY_COMBOS_TABLE), params
    ).df()
    medians = ",\n    ".join(
        f"any_value(m.median) filter (where m.measure = '{measure}') as {col}"
        for measure, (_, col) in MEDIAN_MEASURES.items()
    )
    counts = con.execute(
        _WINDOW_COUNTS_SQL.format(bins=DAY_BINS_TABLE, combos=DAY_COMBOS_TABLE, medians=medians), params
    ).df()
    return combos, counts


def read_factors(con: duckdb.DuckDBPyConnection) -> tuple[pd.DataFrame, pd.DataFrame]:
    """factors.models (model, total_parameters_b, active_parameters_b) and factors.model_aliases (may be absent)."""
    models = con.execute("select model, total_parameters_b, active_parameters_b from factors.models").df()
    try:
        aliases = con.execute("select alias_key, model from factors.model_aliases").df()
    except duckdb.CatalogException:
        aliases = pd.DataFrame(columns=["alias_key", "model"])
    return models, aliases


# --------------------------------------------------------------------------------------------------------------
# the comparison


def compare(
    combos: pd.DataFrame,
    counts: pd.DataFrame,
    factor_models: pd.DataFrame,
    aliases: pd.DataFrame | None = None,
    mlenergy: pd.DataFrame | None = None,
    call: Callable[..., dict[str, float]] = ecologits_request,
    tol: float = ECOLOGITS_BAND_TOLERANCE,
    widen: float = MLENERGY_WIDEN_FACTOR,
) -> pd.DataFrame:
    """The rows of marts.cmp_ecologits, one per model x hardware x cluster (columns CMP_SCHEMA but the window
    and computed_at). combos/counts as request_combos returns them; mlenergy as load_mlenergy returns it."""
    world = default_mix()
    groups = ["model", "hardware", "cluster"]
    combos = combos.copy()
    params = {
        m: resolve_parameters(m, factor_models, aliases)
        for m in sorted(set(counts["model"]) | set(combos["model"]))
    }
    combos["total_b"] = combos["model"].map(lambda m: params[m][1])
    combos["active_b"] = combos["model"].map(lambda m: params[m][2])
    known = combos.dropna(subset=["total_b", "active_b"])
    calls = 0
    if len(known):
        eco = ecologits_for_combos(known, call)
        calls = len(eco)
        known = known.merge(eco, on=["active_b", "total_b", "pue", "output_tokens", "latency_s"], how="left")
        n = known["requests"]
        for b in ("min", "max"):
            known[f"eco_energy_{b}_sum"] = known[f"energy_wh_{b}"] * n
            # per request: EcoLogits energy x that request's own mix; summed over the combo's requests
            known[f"eco_gwp_{b}_sum"] = known[f"gwp1_g_{b}"] * known["mix_kg_per_kwh_sum"]
        known["eco_gwp_world_sum"] = (known["energy_wh_min"] + known["energy_wh_max"]) / 2 * n * world.gwp
    rows = []
    for key, cnt in counts.groupby(groups, dropna=False):
        model, hardware, cluster = key
        fmodel, total_b, active_b = params[model]
        sel = _group(combos, groups, key)
        row = {
            "model": model,
            "hardware": hardware,
            "cluster": cluster,
            "factors_model": fmodel,
            "total_parameters_b": total_b,
            "active_parameters_b": active_b,
            "requests": int(cnt["requests"].sum()),
            **{
                c: _first(cnt, c)
                for c in (
                    "ours_facility_wh_median",
                    "ours_accelerator_wh_median",
                    "ours_operational_g_co2e_median",
                )
            },
            "requests_with_energy": int(sel["requests"].sum()),
            "ecologits_default_mix_zone": world.zone,
            "ecologits_default_mix_kg_co2e_per_kwh": world.gwp,
            "verdict_tolerance": tol,
        }
        row.update(_ours(sel))
        if total_b is None:
            row["status"] = no_parameter_status(model)
        elif row["requests_with_energy"] == 0:
            row["status"] = STATUS_NO_ENERGY
        else:
            row["status"] = STATUS_OK
            row.update(_theirs(_group(known, groups, key), row))
            row["ecologits_calls"] = calls
            gpu_jpt, gpus = ecologits_gpu_per_token(active_b, total_b)
            row["ecologits_gpu_j_per_output_token"] = gpu_jpt
            row["ecologits_gpus"] = gpus
            row["ratio_energy"] = _ratio(row["ours_facility_wh_per_request"], row["ecologits_energy_wh_mean"])
            row["ratio_gwp_usage"] = _ratio(
                row["ours_operational_g_co2e_per_request"], row["ecologits_gwp_usage_g_mean"]
            )
            row["verdict_energy"] = verdict(
                row["ours_facility_wh_per_request"],
                row["ecologits_energy_wh_min"],
                row["ecologits_energy_wh_max"],
                tol,
            )
            row["verdict_gwp_usage"] = verdict(
                row["ours_operational_g_co2e_per_request"],
                row["ecologits_gwp_usage_g_min"],
                row["ecologits_gwp_usage_g_max"],
                tol,
            )
        if mlenergy is not None and len(mlenergy):
            row.update(mlenergy_columns(model, fmodel, total_b, active_b, hardware, aliases, mlenergy, widen))
            row["mlenergy_verdict"] = mlenergy_verdict(
                row.get("ours_accelerator_j_per_output_token"),
                row.get("mlenergy_band_low_j_per_token"),
                row.get("mlenergy_band_high_j_per_token"),
            )
        rows.append(row)
    out = pd.DataFrame(rows)
    cols = [c for c in CMP_SCHEMA if c not in ("window_start", "window_end", "computed_at")]
    return out.reindex(columns=cols)


def _group(df: pd.DataFrame, groups: list[str], key: tuple) -> pd.DataFrame:
    if df.empty:
        return df
    mask = np.ones(len(df), dtype=bool)
    for g, v in zip(groups, key, strict=True):
        mask &= (df[g].isna() & pd.isna(v)) | (df[g] == v).fillna(False).to_numpy()
    return df.loc[mask]


def _first(df: pd.DataFrame, col: str) -> float | None:
    if col not in df or df.empty or pd.isna(df[col].iloc[0]):
        return None
    return float(df[col].iloc[0])


def _ratio(a, b) -> float | None:
    if a is None or b is None or not b or not math.isfinite(a) or not math.isfinite(b):
        return None
    return a / b


def _ours(sel: pd.DataFrame) -> dict[str, float | None]:
    n = float(sel["requests"].sum()) if len(sel) else 0.0
    if n == 0:
        return {}
    it, fac = float(sel["it_energy_j"].sum()), float(sel["facility_energy_j"].sum())
    op = float(sel["operational_g_co2e"].sum())
    out_tokens = float((sel["output_tokens"] * sel["requests"]).sum())
    # accelerator and host parts: over the fully metered requests (a predicted part has no split)
    nm = float(sel["requests_metered"].sum())
    m_acc, m_host, m_it, m_fac = (
        float(sel[c].sum())
        for c in (
            "metered_accelerator_energy_j",
            "metered_host_energy_j",
            "metered_it_energy_j",
            "metered_facility_energy_j",
        )
    )
    m_tokens = float((sel["output_tokens"] * sel["requests_metered"]).sum())
    return {
        "mean_input_tokens": float(sel["input_tokens_sum"].sum()) / n,
        "mean_output_tokens": out_tokens / n,
        "mean_duration_s": float(sel["duration_s_sum"].sum()) / n,
        "pue": float((sel["pue"] * sel["requests"]).sum()) / n,
        "ours_it_wh_per_request": it / n / J_PER_WH,
        "requests_metered": int(nm),
        "ours_accelerator_wh_per_request": m_acc / nm / J_PER_WH if nm else None,
        "ours_host_wh_per_request": m_host / nm / J_PER_WH if nm else None,
        "ours_facility_wh_per_request": fac / n / J_PER_WH,
        "ours_operational_g_co2e_per_request": op / n,
        "ours_water_onsite_ml_per_request": float(sel["water_onsite_l"].sum()) / n * 1000.0,
        "ours_water_offsite_ml_per_request": float(sel["water_offsite_l"].sum()) / n * 1000.0,
        "ours_mix_kg_co2e_per_kwh": op / fac * J_PER_KWH / 1000.0 if fac > 0 else None,
        "ours_accelerator_j_per_output_token": m_acc / m_tokens if m_tokens > 0 else None,
        "ours_accelerator_share": m_acc / m_fac if m_fac > 0 else None,
        "ours_host_share": m_host / m_fac if m_fac > 0 else None,
        # IT energy not in the accelerator/host parts: the unallocated idle energy of the provisioned capacity
        "ours_unallocated_idle_share": (m_it - m_acc - m_host) / m_fac if m_fac > 0 else None,
        "ours_overhead_share": (m_fac - m_it) / m_fac if m_fac > 0 else None,
    }


def _theirs(sel: pd.DataFrame, row: dict) -> dict[str, float | None]:
    n = float(sel["requests"].sum())
    n_mix = float(sel["requests_with_mix"].sum())
    e_min = float(sel["eco_energy_min_sum"].sum()) / n
    e_max = float(sel["eco_energy_max_sum"].sum()) / n
    out = {
        "ecologits_energy_wh_min": e_min,
        "ecologits_energy_wh_mean": (e_min + e_max) / 2,
        "ecologits_energy_wh_max": e_max,
        "ecologits_default_mix_gwp_usage_g_mean": float(sel["eco_gwp_world_sum"].sum()) / n,
    }
    if n_mix > 0:
        g_min = float(sel["eco_gwp_min_sum"].sum()) / n_mix
        g_max = float(sel["eco_gwp_max_sum"].sum()) / n_mix
        out.update(
            ecologits_gwp_usage_g_min=g_min,
            ecologits_gwp_usage_g_mean=(g_min + g_max) / 2,
            ecologits_gwp_usage_g_max=g_max,
        )
    return out


# --------------------------------------------------------------------------------------------------------------
# ML.ENERGY


def load_mlenergy(path: str | Path = MLENERGY_V2_CSV) -> pd.DataFrame:
    """ML.ENERGY v2 LLM configurations with j_per_token (= Energy/req / Avg Output Tokens), gpu_class, model_key
    and the model's parameter counts from EcoLogits' model repository (huggingface_hub entries; None if absent)."""
    raw = pd.read_csv(path)
    raw = raw[raw["task"].str.startswith("llm_text_generation/")]
    df = pd.DataFrame(
        {
            "ml_model": raw["Model"],
            "gpu": raw["GPU"],
            "gpu_class": raw["GPU"].map(gpu_class),
            "tp": raw["TP"].astype(int),
            "task": raw["task"].str.split("/").str[-1],
            "max_batch": raw["Max BS (reqs)"].astype(float),
            "avg_batch": raw["Avg BS (reqs)"].astype(float),
            "energy_per_request_j": raw["Energy/req (J)"].astype(float),
            "avg_output_tokens": raw["Avg Output Tokens"].astype(float),
        }
    )
    df["j_per_token"] = df["energy_per_request_j"] / df["avg_output_tokens"]
    df["model_key"] = df["ml_model"].map(model_key)
    sizes = {m: _ecologits_hf_size(m) for m in df["ml_model"].unique()}
    df["total_parameters_b"] = df["ml_model"].map(lambda m: sizes[m][0])
    df["active_parameters_b"] = df["ml_model"].map(lambda m: sizes[m][1])
    return df.reset_index(drop=True)


def _ecologits_hf_size(name: str) -> tuple[float | None, float | None]:
    from ecologits.model_repository import models as repo

    m = repo.find_model(provider="huggingface_hub", model_name=name)
    if m is None:
        return None, None
    p = m.architecture.parameters
    if hasattr(p, "total"):
        total, active = p.total, p.active
    else:
        total = active = p
    t_lo, t_hi = _bounds(total)
    a_lo, a_hi = _bounds(active)
    return (t_lo + t_hi) / 2, (a_lo + a_hi) / 2


def match_mlenergy(
    model: str,
    factors_model: str | None,
    total_b: float | None,
    active_b: float | None,
    aliases: pd.DataFrame | None,
    mlenergy: pd.DataFrame,
) -> tuple[str | None, str | None]:
    """(ML.ENERGY model, how matched). 'exact': its model_key is our model's key, the factors model's key or an
    alias key of the factors model. Else 'size-class proxy': the chat model of the same architecture (dense/MoE)
    whose total parameter count is nearest ours, within PROXY_MAX_SIZE_RATIO. (None, None) when neither."""
    keys = {model_key(model)}
    if factors_model:
        keys.add(model_key(factors_model))
        if aliases is not None and len(aliases):
            keys |= set(aliases.loc[aliases["model"] == factors_model, "alias_key"])
    exact = mlenergy.loc[mlenergy["model_key"].isin(keys), "ml_model"]
    if len(exact):
        return exact.iloc[0], "exact"
    if total_b is None:
        return None, None
    moe = active_b is not None and active_b < total_b
    cand = mlenergy[(mlenergy["task"] == "chat") & mlenergy["total_parameters_b"].notna()].drop_duplicates(
        "ml_model"
    )
    cand = cand[(cand["active_parameters_b"] < cand["total_parameters_b"]) == moe]
    if cand.empty:
        return None, None
    dist = (np.log(cand["total_parameters_b"] / total_b)).abs()
    best = dist.idxmin()
    if dist[best] > math.log(PROXY_MAX_SIZE_RATIO):
        return None, None
    r = cand.loc[best]
    return r["ml_model"], f"size-class proxy ({r['total_parameters_b']:.4g}B vs {total_b:.4g}B)"


def mlenergy_band(configs: pd.DataFrame, widen: float = MLENERGY_WIDEN_FACTOR) -> dict[str, float] | None:
    """Plausibility band for GPU energy per output token from one model's ML.ENERGY configurations on one GPU
    class (all TP degrees and tasks given):
    - best = the lowest measured J/token (the best-batched configuration);
    - smallest = the J/token of the smallest maximum batch size measured (highest J/token among its TP degrees);
    - batch-1 bound = smallest x its average batch size. At batch 1 a decode step takes no longer and draws no
      more power than at batch b, so J/token(1) <= b x J/token(b): an upper bound for an unbatched server (ML.ENERGY
      v2 has no batch-1 run).
    - band = [best / widen, batch-1 bound x widen]; widen (default 1.5) covers the GPU variant (ML.ENERGY's A100
      is the 40 GB part), serving stack and prompt mix (ML.ENERGY's per-token figure includes its prompts' prefill).
    None when configs is empty."""
    if configs.empty:
        return None
    best = configs.loc[configs["j_per_token"].idxmin()]
    small_b = configs["max_batch"].min()
    small = configs[configs["max_batch"] == small_b]
    small = small.loc[small["j_per_token"].idxmax()]
    bound = float(small["j_per_token"] * max(float(small["avg_batch"]), 1.0))
    return {
        "best": float(best["j_per_token"]),
        "best_batch": float(best["max_batch"]),
        "smallest": float(small["j_per_token"]),
        "smallest_batch": float(small_b),
        "batch1_bound": bound,
        "low": float(best["j_per_token"]) / widen,
        "high": bound * widen,
    }


def mlenergy_verdict(ours_j_per_token, low, high) -> str | None:
    """'plausible' when low <= ours <= high; 'below band' / 'above band' otherwise; None without figures."""
    vals = (ours_j_per_token, low, high)
    if any(v is None or (isinstance(v, float) and not math.isfinite(v)) for v in vals):
        return None
    if ours_j_per_token < low:
        return "below band"
    if ours_j_per_token > high:
        return "above band"
    return "plausible"


def mlenergy_columns(
    model: str,
    factors_model: str | None,
    total_b: float | None,
    active_b: float | None,
    hardware: str | None,
    aliases: pd.DataFrame | None,
    mlenergy: pd.DataFrame,
    widen: float = MLENERGY_WIDEN_FACTOR,
) -> dict[str, object]:
    """The mlenergy_* columns of one marts.cmp_ecologits row (no verdict)."""
    ml_model, how = match_mlenergy(model, factors_model, total_b, active_b, aliases, mlenergy)
    cls = gpu_class(hardware)
    out: dict[str, object] = {"mlenergy_model": ml_model, "mlenergy_match": how, "mlenergy_gpu": None}
    if ml_model is None:
        out["mlenergy_match"] = "no ML.ENERGY model of that name or size class"
        return out
    if cls is None:
        out["mlenergy_match"] = f"{how}; no ML.ENERGY measurement for hardware {hardware}"
        return out
    configs = mlenergy[(mlenergy["ml_model"] == ml_model) & (mlenergy["gpu_class"] == cls)]
    band = mlenergy_band(configs, widen)
    if band is None:
        out["mlenergy_match"] = f"{how}; not measured on {cls}"
        return out
    out.update(
        mlenergy_gpu=configs["gpu"].iloc[0],
        mlenergy_j_per_token_best=band["best"],
        mlenergy_best_batch=band["best_batch"],
        mlenergy_j_per_token_smallest_batch=band["smallest"],
        mlenergy_smallest_batch=band["smallest_batch"],
        mlenergy_batch1_bound_j_per_token=band["batch1_bound"],
        mlenergy_band_low_j_per_token=band["low"],
        mlenergy_band_high_j_per_token=band["high"],
    )
    return out


def mlenergy_offenders(cmp: pd.DataFrame) -> pd.DataFrame:
    """Rows of marts.cmp_ecologits compared with ML.ENERGY whose accelerator J/token is outside the band."""
    if cmp.empty or "mlenergy_verdict" not in cmp:
        return cmp.iloc[0:0]
    return cmp[cmp["mlenergy_verdict"].isin(["below band", "above band"])]


# --------------------------------------------------------------------------------------------------------------
# run


def build(
    con: duckdb.DuckDBPyConnection,
    days: int = WINDOW_DAYS,
    mlenergy_path: str | Path | None = MLENERGY_V2_CSV,
    table: str = "marts.fct_request_impact",
    days_table: str | None = "marts.fct_request_energy",
) -> pd.DataFrame:
    """marts.cmp_ecologits over the trailing ``days`` days of ``table`` (an empty frame with the schema's columns
    when there are no requests), from the days' parts (a day of the window with no parts is reduced first and
    listed in the frame's attrs["days_reduced"]). The
    window ends with the latest day of ``days_table`` (default: the energy mart, which has the same requests and
    days as the impact mart, both being views over intermediate.int_request_days, without the impact mart's factor
    joins: its max(day) takes 0.01 s instead of 0.4 s at 5 M requests); None takes it from ``table``."""
    start, end = window(con, days_table or table, days)
    if start is None:
        return pd.DataFrame(columns=list(CMP_SCHEMA))
    reduced = reduce_missing_days(con, start, end, table, days_table or table)
    combos, counts = request_combos(con, start, end)
    factor_models, aliases = read_factors(con)
    ml = load_mlenergy(mlenergy_path) if mlenergy_path is not None and Path(mlenergy_path).exists() else None
    out = compare(combos, counts, factor_models, aliases, ml)
    out["window_start"] = start
    out["window_end"] = end
    out["computed_at"] = pd.Timestamp.now(tz="UTC").tz_localize(None)
    out = out[list(CMP_SCHEMA)]
    out.attrs["days_reduced"] = reduced  # the window's days that had no parts (reduce_missing_days)
    return out


def replace_table(
    con: duckdb.DuckDBPyConnection, df: pd.DataFrame, table: str = "marts.cmp_ecologits"
) -> None:
    """Replace ``table`` with df cast to CMP_SCHEMA (an empty df still yields the table)."""
    warehouse.replace_table(con, table, CMP_SCHEMA, df)


MARKDOWN_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("model", "model", "s"),
    ("hardware", "hardware", "s"),
    ("requests_with_energy", "requests", "d"),
    ("ours_facility_wh_per_request", "ours Wh", ".3g"),
    ("ours_facility_wh_median", "ours median Wh", ".3g"),
    ("ecologits_energy_wh_mean", "EcoLogits Wh", ".3g"),
    ("ratio_energy", "ratio", ".3g"),
    ("verdict_energy", "energy verdict", "s"),
    ("ours_operational_g_co2e_per_request", "ours gCO2e", ".3g"),
    ("ecologits_gwp_usage_g_mean", "EcoLogits gCO2e (our mix)", ".3g"),
    ("ecologits_default_mix_gwp_usage_g_mean", "EcoLogits gCO2e (world mix)", ".3g"),
    ("ours_accelerator_j_per_output_token", "ours GPU J/tok", ".3g"),
    ("ecologits_gpu_j_per_output_token", "EcoLogits GPU J/tok", ".3g"),
    ("mlenergy_j_per_token_best", "ML.ENERGY best J/tok", ".3g"),
    ("mlenergy_batch1_bound_j_per_token", "ML.ENERGY batch-1 bound", ".3g"),
    ("mlenergy_verdict", "ML.ENERGY verdict", "s"),
    ("status", "status", "s"),
)


def to_markdown(df: pd.DataFrame, columns: Iterable[tuple[str, str, str]] = MARKDOWN_COLUMNS) -> str:
    """A markdown table of the comparison (display only)."""
    cols = [c for c in columns if c[0] in df.columns]
    if df.empty:
        return "no requests in the window"
    lines = ["| " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        cells = []
        for col, _, fmt in cols:
            v = r[col]
            if v is None or (isinstance(v, float) and not math.isfinite(v)) or v is pd.NA:
                cells.append("")
            elif fmt == "s":
                cells.append(str(v))
            else:
                cells.append(format(float(v) if fmt != "d" else int(v), fmt))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
