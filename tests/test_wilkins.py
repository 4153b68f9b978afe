"""Integration on real paired data: Wilkins et al.'s nvidia-smi trace of Llama-2-13B on one A100 (Argonne Swing,
2024-04-18) and the harness's per-request log with the NVML energy it measured for each request.

The trace is converted (set-based, pandas) into the product's input layout in a temporary directory, the real daily
job is run for the one UTC day covered, and the pipeline's per-request GPU energy is compared with

* the NVML energy the harness logged per request (``GPU-0 Energy (mJ)``), and
* the reference trapezoid integral of nvidia-smi power per request
  (``reference_results/llama2-13b_telemetry_vs_logged_energy.csv``: median 0.944 of NVML, IQR 0.88-0.98, 61
  complete requests). That file integrates only from the first to the last sample inside each request's interval
  (reproduced here to 1e-6), so it drops up to ~0.1 s at each edge; the test also integrates the same samples over
  the exact interval (median ~1.00 of NVML) and anchors its tolerances on that. See the constants below.

The Wilkins data has no licence: it is read from ../shared/data and never copied into the repository; the module is
skipped when that folder is absent (a failure with IMPACT_REQUIRE_SHARED_DATA=1, see conftest.py).

Conversion choices (the product is left to judge the data; the converter does not clean it):
* nvidia-smi timestamps are local America/Chicago time (CDT = UTC-5 on 2024-04-18) and become RFC 3339 UTC 'Z'.
  A timestamp that does not parse (the file's last line was cut at a 4 KiB boundary: ``2024/04/18 10:13:28.``) is
  passed through verbatim with an empty value, so the product's quarantine (raw.rejected_rows) records it rather
  than the converter silently dropping it.
* ``52.61 W`` -> 52.61 (nv_gpu_power_usage, W); ``37 %`` -> 0.37 (nv_gpu_utilization, 0-1).
* clusters.yml: host_idle_w = host_max_w = 0, so IT energy = GPU energy and every comparison is GPU vs GPU.
  gpu_idle_w is omitted on purpose: the pipeline then estimates it from telemetry (5th percentile of power at zero
  utilisation), which exercises that path. The compared figure (idle + dynamic) does not depend on it: within a
  window both parts are shared by the same o_i,w / RS_w, and idle is clipped to the metered energy, so
  idle + dynamic = the request's request-second share of the metered energy whatever the idle power is.
* requests: one row per ``Phase`` containing "inference"; start = ``Timestamp`` (epoch s, UTC), duration =
  ``Runtime (s)``. output_tokens is the logged ``Output Token Limit`` (the harness does not log the actual count;
  with min_new_tokens = 0.9 x limit the real count is 90-100 % of it). node/gpu are set (one GPU), so the day's
  attribution level is 'gpu'.
* Window: the job's window_s is left at its default (dbt var window_s = null -> the median scrape interval rounded
  to whole seconds, at least 1 s). The trace's median step is 0.104 s, so windows are 1 s. A request (1.16-11.3 s
  here) therefore shares its first and last window with its neighbours (the harness leaves ~8 ms between
  requests) in proportion to request-seconds, and a window it touches alone is charged to it entirely, so the
  pipeline's figure is close to, not equal to, the exact-interval trapezoid.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import SHARED_DATA, assert_invariants, require_shared_data, run_days

pytestmark = [pytest.mark.integration, pytest.mark.shared_data, pytest.mark.xdist_group("pipeline")]

WILKINS = SHARED_DATA / "wilkins-energy-inference"
TRACE = (
    WILKINS / "telemetry/plots/parameter-scale-input-test/raw_stats/llama2-13b/2024-04-18/10-08-41/nvidia-smi.csv"
)
RUN_LOG = WILKINS / "summary_csv/plots/parameter-scale-input-test/Llama-2-13b-chat-hf-argonne-swing-1.csv"
REFERENCE = WILKINS / "reference_results/llama2-13b_telemetry_vs_logged_energy.csv"

require_shared_data(TRACE, RUN_LOG, REFERENCE, allow_module_level=True)

CLUSTER = "swing-a100"
NODE = "swing-node"
GPU = "0"
DAY = "2024-04-18"
LOCAL_TZ = "America/Chicago"
REQUEST_PREFIX = "wilkins-llama2-13b-"

# What the reference's trapezoid is: reproduced below to 1e-6, it integrates only between the first and the last
# nvidia-smi sample INSIDE [Timestamp, Timestamp + Runtime], so it misses up to one sample interval (~0.1 s) at each
# edge: ~10 % of a 1.16 s request, ~1 % of an 11.3 s one. Its median 0.944 of NVML is mostly that truncation; the
# same samples integrated over the exact interval (linear interpolation to the edges) give ~1.00 of NVML.
# So the bands are anchored on the exact-interval trapezoid, and the reference is compared where its truncation is
# small (long requests).
#
# Pipeline / NVML, median: 0.85-1.05. The low end admits the reference method's own 0.944 (and its IQR low 0.88);
# the high end is 5 % above the exact-interval trapezoid (~1.00), room for whole-second windows charging a request
# for the idle slivers (~8 ms) between requests. A unit (W vs mW, mJ vs J), timezone (a 5 h shift puts every
# request outside the trace) or double-counting error lands far outside.
NVML_RATIO_BAND = (0.85, 1.05)
# Pipeline / exact-interval trapezoid: the same samples over slightly different edges (whole-second windows shared
# by request-seconds). Median within 3 %; the middle half of the requests within -5 % / +8 %.
EXACT_MEDIAN_TOL = 0.03
EXACT_IQR_BAND = (0.95, 1.08)
# Pipeline / reference trapezoid for requests of at least LONG_REQUEST_S, where the reference's edge truncation
# (<= ~0.2 s) is <= ~2-4 %: median within 4 %. Over all requests the median is ~1.10 (the truncation), and the
# pipeline must never be below the reference by more than rounding: it integrates a superset of the interval.
LONG_REQUEST_S = 5.0
REFERENCE_LONG_MEDIAN_TOL = 0.04


# ------------------------------------------------------------------------------------------------------------------
# Conversion of the Wilkins files into the product's input layout (set-based: pandas column operations only)
# ------------------------------------------------------------------------------------------------------------------


def _rfc3339_z(ts: pd.Series) -> pd.Series:
    """tz-aware UTC timestamps -> 'YYYY-MM-DDTHH:MM:SS.ffffffZ'."""
    return ts.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def convert_trace(trace: Path) -> pd.DataFrame:
    """nvidia-smi CSV (local time, units inside the values) -> the contract's long telemetry format.

    Rows whose timestamp does not parse keep their original text and whatever value text they had (blank for the
    truncated last line), so the product rejects them with a reason instead of this converter dropping them."""
    raw = pd.read_csv(trace, dtype=str, skipinitialspace=True, keep_default_na=False)
    raw.columns = [c.strip() for c in raw.columns]
    # strict: pandas would read the truncated '2024/04/18 10:13:28.' as 10:13:28.000, a time nobody measured
    complete = raw["timestamp"].str.fullmatch(r"\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}\.\d{3}")
    local = pd.to_datetime(raw["timestamp"].where(complete), format="%Y/%m/%d %H:%M:%S.%f", errors="coerce")
    utc = local.dt.tz_localize(LOCAL_TZ, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")
    timestamp = _rfc3339_z(utc).where(utc.notna(), raw["timestamp"])

    def numeric(column: str, unit: str, scale: float) -> pd.Series:
        text = raw[column].str.strip()
        number = pd.to_numeric(text.str.removesuffix(unit).str.strip(), errors="coerce")
        # a value that is not '<number> <unit>' is passed through as text for the product to judge
        return (number * scale).map(repr).where(number.notna(), text)

    base = pd.DataFrame({"timestamp": timestamp, "cluster": CLUSTER, "node": NODE, "gpu": GPU})
    power = base.assign(metric="nv_gpu_power_usage", value=numeric("power.draw [W]", "W", 1.0))
    util = base.assign(metric="nv_gpu_utilization", value=numeric("utilization.gpu [%]", "%", 0.01))
    return pd.concat([power, util], ignore_index=True)[["timestamp", "cluster", "metric", "value", "node", "gpu"]]


def convert_run_log(run_log: Path) -> pd.DataFrame:
    """The harness's per-request log -> the contract's request records (inference phases only), with the logged
    NVML energy kept aside for the comparison (it is not an input of the product)."""
    log = pd.read_csv(run_log)
    inf = log[log["Phase"].str.contains("inference")].copy()
    energy_j = (
        inf["GPU-0 Energy (mJ)"] / 1000.0 if "GPU-0 Energy (mJ)" in inf.columns else inf["GPU Energy (J)"]
    )
    # epoch seconds as float -> whole microseconds first (unit="s" on a float truncates 0.451715 to 0.451714)
    start = pd.to_datetime((inf["Timestamp"].astype(float) * 1e6).round().astype("int64"), unit="us", utc=True)
    return pd.DataFrame(
        {
            "request_id": REQUEST_PREFIX + inf["Phase"],
            "cluster": CLUSTER,
            "model": inf["Model"],
            "start_time": _rfc3339_z(start),
            "duration_s": inf["Runtime (s)"].astype(float),
            "input_tokens": inf["Number of Input Tokens"].astype(int),
            "output_tokens": inf["Output Token Limit"].astype(int),
            "node": NODE,
            "gpu": GPU,
            "phase": inf["Phase"],
            "start_epoch_s": inf["Timestamp"].astype(float),
            "nvml_energy_j": energy_j.astype(float),
        }
    ).reset_index(drop=True)


def write_inputs(data: Path) -> pd.DataFrame:
    (data / "telemetry" / CLUSTER).mkdir(parents=True)
    (data / "requests").mkdir()
    cluster = {
        "id": CLUSTER,
        "region": "US-MIDA-PJM",  # Argonne (Lemont, IL) is in PJM
        "gpu_model": "A100-SXM4-40GB",
        "gpus_per_node": 1,
        "host_idle_w": 0,  # host excluded: IT energy = GPU energy, so comparisons are GPU vs GPU
        "host_max_w": 0,
        # gpu_idle_w omitted on purpose: estimated from telemetry (see the module docstring)
    }
    (data / "clusters.yml").write_text(yaml.safe_dump({"clusters": [cluster]}, sort_keys=False))
    convert_trace(TRACE).to_csv(data / "telemetry" / CLUSTER / "trace.csv", index=False)
    requests = convert_run_log(RUN_LOG)
    contract = ["request_id", "cluster", "model", "start_time", "duration_s", "input_tokens", "output_tokens",
                "node", "gpu"]
    requests[contract].to_json(data / "requests" / "log.jsonl", orient="records", lines=True)
    return requests


# ------------------------------------------------------------------------------------------------------------------
# One run of the real daily job, shared by the tests of this module
# ------------------------------------------------------------------------------------------------------------------


def _query(warehouse: Path, sql: str, params=None) -> pd.DataFrame:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(sql, params or {}).df()
    finally:
        con.close()


@pytest.fixture(scope="module")
def wilkins_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("wilkins")
    data = root / "inputs"
    requests = write_inputs(data)
    warehouse = root / "wh.duckdb"
    run_days(data, warehouse, [DAY])
    return data, warehouse, requests


def _quantiles(x: pd.Series) -> tuple[float, float, float]:
    q = x.quantile([0.25, 0.5, 0.75])
    return float(q[0.25]), float(q[0.5]), float(q[0.75])


# ------------------------------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------------------------------


def test_conversion_is_exact_on_the_known_rows():
    """The local -> UTC shift, unit stripping and scaling, on the first row of the trace and on a request."""
    tel = convert_trace(TRACE)
    first = tel.iloc[0]
    assert first["timestamp"] == "2024-04-18T15:08:41.761000Z"  # 10:08:41.761 CDT = UTC-5
    assert float(first["value"]) == pytest.approx(52.61)
    util = tel[tel["metric"] == "nv_gpu_utilization"]
    assert util["value"].isin(["0.0", "1.0"]).any()
    requests = convert_run_log(RUN_LOG)
    a0 = requests.set_index("phase").loc["start-inference-A-0"]
    assert a0["start_time"] == "2024-04-18T15:10:19.451715Z"  # epoch 1713453019.451715
    assert a0["nvml_energy_j"] == pytest.approx(427.694)


def test_ingestion_quarantines_the_truncated_line_and_accepts_zero_host_power(wilkins_run):
    _, warehouse, requests = wilkins_run
    clusters = _query(warehouse, "select * from raw.clusters")
    assert list(clusters["cluster"]) == [CLUSTER]
    assert clusters.loc[0, "host_idle_w"] == 0 and clusters.loc[0, "host_max_w"] == 0
    assert math.isnan(clusters.loc[0, "gpu_idle_w"])

    rejected = _query(
        warehouse, "select input, partition_day, source_file, source_row, reason, raw_record "
        "from raw.rejected_rows order by input, source_row")
    print(f"\n[wilkins] raw.rejected_rows: {len(rejected)}")
    for row in rejected.itertuples():
        print(f"  {row.input} {row.source_file}:{row.source_row}: {row.reason} | {row.raw_record}")
    # The one truncated line of the trace (2 long-format rows: power and utilisation), on the trace's day.
    tel_rejects = rejected[rejected["input"] == "telemetry"]
    n_trace_lines = sum(1 for _ in TRACE.open()) - 1  # data lines, the truncated one included
    assert len(tel_rejects) == 2
    # The verbatim local-time stamp '2024/04/18 10:13:28.' has no UTC offset: refused, never guessed (a local-time
    # trace read as UTC would be 5 h off); filed under the day most of the file's rows belong to.
    assert set(tel_rejects["reason"]) == {"unparseable timestamp '2024/04/18 10:13:28.'"}
    assert tel_rejects["raw_record"].str.contains("2024/04/18 10:13:28.", regex=False).all()
    assert str(tel_rejects["partition_day"].iloc[0])[:10] == DAY
    # Request G-3's logged start (713453..., a leading "1" lost: 1992) is quarantined as implausible.
    req_rejects = rejected[rejected["input"] == "requests"]
    assert len(req_rejects) == 1
    assert req_rejects["reason"].iloc[0].startswith("implausible start_time '1992-08-10T13:24:49")
    assert set(rejected["input"]) == {"telemetry", "requests"}

    loaded = _query(warehouse, "select count(*) as n from raw.telemetry_samples")["n"][0]
    assert loaded == 2 * (n_trace_lines - 1)  # every other line, both metrics: lines = loaded + rejected

    # G-3's logged Timestamp lacks its leading '1' (713453... = 1992-08-10): quarantined above, so it gets no
    # energy from 2024-04-18.
    g3 = requests.set_index("phase").loc["start-inference-G-3"]
    assert g3["start_time"].startswith("1992-08-10")
    loaded_ids = set(_query(warehouse, "select request_id from raw.requests")["request_id"])
    assert REQUEST_PREFIX + "start-inference-G-3" not in loaded_ids
    assert len(loaded_ids) == len(requests) - 1


def test_window_and_idle_parameters(wilkins_run):
    _, warehouse, _ = wilkins_run
    params = _query(warehouse, "select * from intermediate.int_cluster_day_params")
    p = params.iloc[0]
    print(f"\n[wilkins] scrape interval {p['scrape_interval_s']:.3f} s -> window_s {p['window_s']} s; "
          f"gpu_idle_w {p['gpu_idle_w']:.2f} W ({p['gpu_idle_source']}); attribution {p['attribution_level']}")
    assert p["scrape_interval_s"] == pytest.approx(0.104, abs=0.002)
    assert p["window_s"] == 1.0
    assert p["gpu_idle_source"].startswith("telemetry")
    assert 30 < p["gpu_idle_w"] < 100  # an A100-40GB idles at ~50-60 W
    assert p["attribution_level"] == "gpu"
    assert set(_query(warehouse, "select distinct window_s from marts.fct_window_energy")["window_s"]) == {1.0}


def test_invariants_hold_on_real_data(wilkins_run):
    _, warehouse, _ = wilkins_run
    assert_invariants(warehouse)
    # The single-request rule at this (gpu) level: a request that is the only one in every window it touches gets
    # exactly the metered energy (idle + dynamic) of those windows.
    alone = _query(
        warehouse,
        """
        with o as (select * from intermediate.int_request_window_overlaps),
        load as (select window_index, count(distinct request_id) as n from o group by all),
        alone as (select request_id from o join load using (window_index) group by request_id having max(n) = 1),
        expected as (
            select o.request_id, sum(w.it_energy_j) as metered_j
            from o semi join alone using (request_id)
            join marts.fct_window_energy w
              on w.window_start = to_timestamp(o.window_index + epoch(date '2024-04-18'))::timestamp
            group by o.request_id
        )
        select e.request_id, e.metered_j, r.idle_energy_j + r.dynamic_energy_j as attributed_j
        from expected e join marts.fct_request_energy r using (request_id)
        """,
    )
    assert len(alone) >= 1
    np.testing.assert_allclose(alone["attributed_j"], alone["metered_j"], rtol=1e-9)


def _power_trace(telemetry: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(epoch seconds, W) of the converted trace's well-formed power samples, sorted."""
    power = telemetry[(telemetry["metric"] == "nv_gpu_power_usage") & telemetry["timestamp"].str.endswith("Z")]
    power = power[pd.to_numeric(power["value"], errors="coerce").notna()]
    t = pd.to_datetime(power["timestamp"], utc=True).astype("int64").to_numpy() / 1e9
    order = np.argsort(t)
    return t[order], power["value"].astype(float).to_numpy()[order]


def trapezoid_energy(t: np.ndarray, p: np.ndarray, a: np.ndarray, b: np.ndarray, exact_edges: bool) -> np.ndarray:
    """Trapezoid integral of power over [a, b] per request, vectorised over requests (cumulative integral and
    searchsorted, no loop). exact_edges=False is the reference file's method (first to last sample inside the
    interval); True interpolates the power linearly to a and b. NaN where the interval is not inside the trace."""
    cum = np.concatenate([[0.0], np.cumsum(np.diff(t) * (p[1:] + p[:-1]) / 2)])
    inside = (a >= t[0]) & (b <= t[-1])
    if not exact_edges:
        i0 = np.searchsorted(t, a, side="left")  # first sample >= a
        i1 = np.searchsorted(t, b, side="right") - 1  # last sample <= b
        ok = i1 > i0
        return np.where(ok, cum[np.clip(i1, 0, len(t) - 1)] - cum[np.clip(i0, 0, len(t) - 1)], np.nan)

    def cum_at(x: np.ndarray) -> np.ndarray:
        k = np.clip(np.searchsorted(t, x, side="right") - 1, 0, len(t) - 1)
        return cum[k] + (x - t[k]) * (p[k] + np.interp(x, t, p)) / 2

    return np.where(inside, cum_at(b) - cum_at(a), np.nan)


def test_attributed_energy_matches_nvml_and_trapezoids(wilkins_run):
    _, warehouse, requests = wilkins_run
    energy = _query(
        warehouse,
        "select request_id, idle_energy_j, dynamic_energy_j, unallocated_idle_energy_j, it_energy_j "
        "from marts.fct_request_energy where cluster = $c",
        {"c": CLUSTER},
    )
    span = _query(
        warehouse,
        "select epoch(min(sample_time)) as t0, epoch(max(sample_time)) as t1 from raw.telemetry_samples "
        "where quantity = 'gpu_power_w'",
    ).iloc[0]
    reference = pd.read_csv(REFERENCE)

    cmp = requests.merge(energy, on="request_id", how="inner").merge(
        reference[["phase", "nvidia_smi_trapz_energy_J", "telemetry_truncated"]], on="phase", how="left"
    )
    # Fully covered: every whole-second window the request touches lies inside the loaded trace.
    a = cmp["start_epoch_s"].to_numpy()
    b = a + cmp["duration_s"].to_numpy()
    cmp = cmp[(np.floor(a) >= span["t0"]) & (np.ceil(b) <= span["t1"])].copy()
    excluded = sorted(set(requests["phase"]) - set(cmp["phase"]))

    t, p = _power_trace(convert_trace(TRACE))
    a = cmp["start_epoch_s"].to_numpy()
    b = a + cmp["duration_s"].to_numpy()
    cmp["inner_trapz_j"] = trapezoid_energy(t, p, a, b, exact_edges=False)
    cmp["exact_trapz_j"] = trapezoid_energy(t, p, a, b, exact_edges=True)
    cmp["pipeline_j"] = cmp["idle_energy_j"] + cmp["dynamic_energy_j"]
    ratios = {
        "pipeline (idle+dynamic) / NVML logged": cmp["pipeline_j"] / cmp["nvml_energy_j"],
        "pipeline it_energy (incl. unallocated) / NVML": cmp["it_energy_j"] / cmp["nvml_energy_j"],
        "pipeline (idle+dynamic) / reference trapezoid": cmp["pipeline_j"] / cmp["nvidia_smi_trapz_energy_J"],
        "pipeline / reference trapezoid, >= 5 s requests":
            (cmp["pipeline_j"] / cmp["nvidia_smi_trapz_energy_J"])[cmp["duration_s"] >= LONG_REQUEST_S],
        "pipeline / exact-interval trapezoid": cmp["pipeline_j"] / cmp["exact_trapz_j"],
        "reference trapezoid / NVML": cmp["nvidia_smi_trapz_energy_J"] / cmp["nvml_energy_j"],
        "exact-interval trapezoid / NVML": cmp["exact_trapz_j"] / cmp["nvml_energy_j"],
    }
    lines = [f"\n[wilkins] n = {len(cmp)} requests compared; excluded: {', '.join(excluded)}"]
    for label, r in ratios.items():
        q25, q50, q75 = _quantiles(r)
        lines.append(f"  {label:50s} n {len(r):2d}  median {q50:.4f}  IQR {q25:.4f}-{q75:.4f}  "
                     f"min {r.min():.4f}  max {r.max():.4f}")
    totals = cmp[["nvml_energy_j", "nvidia_smi_trapz_energy_J", "exact_trapz_j", "pipeline_j", "it_energy_j",
                  "unallocated_idle_energy_j"]].sum()
    worst = cmp.assign(r=ratios["pipeline / exact-interval trapezoid"]).nlargest(3, "r")
    lines.append("  largest pipeline / exact-interval: " + ", ".join(
        f"{row.phase} {row.r:.3f} ({row.duration_s:.2f} s)" for row in worst.itertuples()))
    lines.append("  totals J: " + ", ".join(f"{k} {v:.1f}" for k, v in totals.items()))
    print("\n".join(lines))

    # 63 inference rows: G-3 has a corrupt start (1992), I-6 runs past the truncated end of the trace.
    assert excluded == ["start-inference-G-3", "start-inference-I-6"]
    assert len(cmp) == 61
    assert not cmp["telemetry_truncated"].any()
    # We know exactly what the reference computed: first-to-last inner sample trapezoid, to 1e-6.
    np.testing.assert_allclose(cmp["inner_trapz_j"], cmp["nvidia_smi_trapz_energy_J"], rtol=1e-6)
    assert ratios["reference trapezoid / NVML"].median() == pytest.approx(0.944, abs=0.001)

    lo, hi = NVML_RATIO_BAND
    assert lo <= ratios["pipeline (idle+dynamic) / NVML logged"].median() <= hi
    # the figure docs/validation.md states: median 1.002, interquartile range 0.98-1.03, 61 requests
    q25, q50, q75 = _quantiles(ratios["pipeline (idle+dynamic) / NVML logged"])
    assert (round(q50, 3), round(q25, 2), round(q75, 2)) == (1.002, 0.98, 1.03), (q25, q50, q75)
    exact = ratios["pipeline / exact-interval trapezoid"]
    assert exact.median() == pytest.approx(1.0, abs=EXACT_MEDIAN_TOL)
    q25, _, q75 = _quantiles(exact)
    assert EXACT_IQR_BAND[0] <= q25 and q75 <= EXACT_IQR_BAND[1]
    long_ref = ratios["pipeline / reference trapezoid, >= 5 s requests"]
    assert len(long_ref) >= 5
    assert long_ref.median() == pytest.approx(1.0, abs=REFERENCE_LONG_MEDIAN_TOL)
    assert (ratios["pipeline (idle+dynamic) / reference trapezoid"] > 0.99).all()
    # unallocated idle (model load, G-3's slot, the trace before the first request) only adds energy
    assert (cmp["it_energy_j"] >= cmp["pipeline_j"]).all()
    # the NVML figure is only the oracle, never an input of the product
    first = json.loads((wilkins_run[0] / "requests" / "log.jsonl").read_text().splitlines()[0])
    assert "nvml_energy_j" not in first and "phase" not in first
