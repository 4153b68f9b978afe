"""Generate a large, internally consistent cluster day for the `impact run` benchmark (fast, vectorised).

    python benchmarks/generate.py --requests 5000000 --out benchmarks/out/data-5000000

Writes, in the layout of CONTRACT section 1:

    clusters.yml                         one cluster `bench` (NODES x GPUS_PER_NODE, gpu_idle_w given)
    telemetry/bench/<day>.parquet        long format: timestamp (epoch s, DOUBLE), cluster, metric, value (DOUBLE),
                                         node, gpu (null for node-level metrics)
    requests/bench/<day>.parquet         request_id, cluster, model, start_time (epoch s, DOUBLE), duration_s,
                                         input_tokens, output_tokens, node, gpu
    benchmark.json                       generation parameters and the expected energies (not read by the pipeline)

Telemetry: every 15 s from 00:00:00 to 24:00:00 inclusive (5,761 samples a series), per GPU
DCGM_FI_DEV_POWER_USAGE (W), DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION (mJ, monotone counter) and
DCGM_FI_DEV_GPU_UTIL (%), per node nv_cpu_utilization (0-1).

Physical model (simpler than orchestration/lib/simulation/simulate.py, but exact within itself)
    Requests: arrivals with the diurnal intensity ``1 + 0.6 cos(2 pi (hour - 18) / 24)`` (inverse-CDF sampling on a
    1 s grid), start rounded to the ms; token counts log-normal (the Poisson-mode fits of simulate.py, chat tenant);
    two models; ``duration = prefill_s_per_token * input + decode_s_per_token * output`` rounded to the us; each
    request on a GPU drawn uniformly at random (stateless load balancer).
    Per GPU and 15 s interval (t_{k-1}, t_k]: the busy request-seconds are computed exactly (sums of ramps
    ``(t - start)+ - (t - end)+`` evaluated at the grid with np.bincount + cumsum, no loop over requests), the mean
    concurrency is ``n = busy / 15``.
    GPU power over the interval: ``P = gpu_idle_w + min(dyn1 * n, gpu_max_w - gpu_idle_w)`` plus N(0, 0.3 W) sensor
    noise, rounded to the mW; the power sample at t_k is that interval's mean power (DCGM's averaged reading), so
    the energy counter's delta between two samples is exactly ``P_k * 15`` (integer mJ). Counters start from a
    random "since boot" offset. GPU utilisation: ``round(100 * min(1, n))`` %.
    Node CPU utilisation: ``min(1, 0.01 * concurrency of the node)``, rounded to 1e-4; host power
    ``host_idle_w + u * (host_max_w - host_idle_w)``. The sample at 00:00:00 closes an idle interval.
    ``benchmark.json`` holds the metered GPU and host energy over [00:00, 24:00) so a run can be checked against it.

Everything is numpy/pyarrow; the only Python loop is over the two models.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

CLUSTER = "bench"
STEP_S = 15.0
DAY_S = 86_400
GPU_IDLE_W = 70.0
GPU_MAX_W = 700.0
DYN1_FRACTION = 0.45  # a lone request draws idle + 0.45 (max - idle)
HOST_IDLE_W = 400.0
HOST_MAX_W = 1200.0
CPU_UTIL_PER_REQUEST = 0.01
POWER_NOISE_W = 0.3
DIURNAL_AMPLITUDE = 0.6
DIURNAL_PEAK_HOUR_UTC = 18.0
# model, share of requests, prefill s per input token, decode s per output token
MODELS: tuple[tuple[str, float, float, float], ...] = (
    ("llama2-70b", 0.75, 0.00012, 0.030),
    ("mistral-7b", 0.25, 0.00003, 0.012),
)
# (mean, std) of ln(tokens) for input and output (simulate.POISSON_TOKENS_LOGNORMAL["chat"])
INPUT_LN = (6.63, 0.99)
OUTPUT_LN = (5.02, 0.86)
MAX_INPUT_TOKENS = 14_050
MAX_OUTPUT_TOKENS = 1_899

METRIC_CPU = "nv_cpu_utilization"
METRIC_POWER = "DCGM_FI_DEV_POWER_USAGE"
METRIC_ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
METRIC_UTIL = "DCGM_FI_DEV_GPU_UTIL"


def clusters_yaml(nodes: int, gpus_per_node: int) -> str:
    return f"""\
# Benchmark cluster written by benchmarks/generate.py ({nodes} nodes x {gpus_per_node} GPUs).
clusters:
- id: {CLUSTER}
  region: US-CAL-CISO
  gpu_model: H100-SXM5-80GB
  gpus_per_node: {gpus_per_node}
  gpu_idle_w: {GPU_IDLE_W}
  host_idle_w: {HOST_IDLE_W}
  host_max_w: {HOST_MAX_W}
  pue: 1.1
  wue_onsite_l_per_kwh: 0.3
  gpu_embodied_kg_co2e: 300.0
  server_embodied_kg_co2e: 6500.0
  lifetime_years: 5.0
"""


def arrivals(rng: np.random.Generator, n: int) -> np.ndarray:
    """n start offsets in [0, 86400) s with the diurnal intensity, sorted, rounded to the ms."""
    grid = np.arange(DAY_S + 1, dtype=np.float64)
    hours = (grid[:-1] + 0.5) / 3600.0
    rate = 1.0 + DIURNAL_AMPLITUDE * np.cos(2 * np.pi * (hours - DIURNAL_PEAK_HOUR_UTC) / 24.0)
    cdf = np.concatenate(([0.0], np.cumsum(rate)))
    cdf /= cdf[-1]
    t = np.interp(np.sort(rng.random(n)), cdf, grid)
    return np.minimum(np.round(t, 3), DAY_S - 0.001)


def make_requests(rng: np.random.Generator, n: int, n_gpus: int) -> dict[str, np.ndarray]:
    start = arrivals(rng, n)
    tin = np.clip(np.rint(rng.lognormal(*INPUT_LN, n)), 1, MAX_INPUT_TOKENS).astype(np.int64)
    tout = np.clip(np.rint(rng.lognormal(*OUTPUT_LN, n)), 1, MAX_OUTPUT_TOKENS).astype(np.int64)
    shares = np.array([m[1] for m in MODELS])
    model = rng.choice(len(MODELS), size=n, p=shares / shares.sum()).astype(np.int8)
    prefill = np.array([m[2] for m in MODELS])[model]
    decode = np.array([m[3] for m in MODELS])[model]
    duration = np.round(prefill * tin + decode * tout, 6)
    gpu = rng.integers(0, n_gpus, size=n, dtype=np.int32)
    return {"start": start, "duration": duration, "tin": tin, "tout": tout, "model": model, "gpu": gpu}


def busy_seconds(unit: np.ndarray, start: np.ndarray, end: np.ndarray, n_units: int, k: int) -> np.ndarray:
    """Exact request-seconds per (unit, interval) for intervals (t_{j-1}, t_j], t_j = 15 j, j = 1..k.

    B(t) = sum_i (t - s_i)+ - (t - e_i)+ ; at a grid point, sum_{s_i < t}(t - s_i) = t C(t) - S(t) with C, S the
    cumulative count and sum of the starts before t, built with one bincount each and a cumsum over intervals.
    Returns an (n_units, k) array (column j-1 is interval j); column 0 of B (t = 0) is 0 since no start is < 0.
    """
    t = np.arange(k + 1, dtype=np.float64) * STEP_S

    def ramps(x: np.ndarray) -> np.ndarray:
        first = np.minimum(np.floor(x / STEP_S).astype(np.int64) + 1, k + 1)  # first grid index with t > x
        flat = unit.astype(np.int64) * (k + 2) + first
        cnt = np.bincount(flat, minlength=n_units * (k + 2)).reshape(n_units, k + 2)[:, : k + 1]
        tot = np.bincount(flat, weights=x, minlength=n_units * (k + 2)).reshape(n_units, k + 2)[:, : k + 1]
        return t * np.cumsum(cnt, axis=1) - np.cumsum(tot, axis=1)

    b = ramps(start) - ramps(end)
    return np.diff(b, axis=1)


def build_telemetry(
    rng: np.random.Generator, req: dict[str, np.ndarray], nodes: int, gpn: int, day0: float
) -> tuple[pa.Table, dict[str, float]]:
    n_gpus = nodes * gpn
    k = int(DAY_S / STEP_S)  # intervals; samples are k + 1
    end = req["start"] + req["duration"]
    busy = busy_seconds(req["gpu"], req["start"], end, n_gpus, k)  # (gpus, k)
    conc = np.clip(busy / STEP_S, 0.0, None)
    conc[conc < 1e-9] = 0.0  # float cancellation noise on idle intervals

    dyn1 = DYN1_FRACTION * (GPU_MAX_W - GPU_IDLE_W)
    power = GPU_IDLE_W + np.minimum(dyn1 * conc, GPU_MAX_W - GPU_IDLE_W)
    power += rng.normal(0.0, POWER_NOISE_W, size=power.shape)
    power_mw = np.rint(power * 1e3).astype(np.int64)  # integer mW, so P * 15 s is an integer mJ
    # sample 0 (00:00:00) closes an idle interval before the day
    idle0 = np.rint((GPU_IDLE_W + rng.normal(0.0, POWER_NOISE_W, size=(n_gpus, 1))) * 1e3).astype(np.int64)
    power_mw = np.concatenate([idle0, power_mw], axis=1)  # (gpus, k + 1)
    offset_mj = rng.integers(10**10, 3 * 10**11, size=(n_gpus, 1))  # 1e7 .. 3e8 J since boot
    energy_mj = offset_mj + np.concatenate(
        [np.zeros((n_gpus, 1), np.int64), np.cumsum(power_mw[:, 1:] * int(STEP_S), axis=1)], axis=1
    )
    util = np.concatenate([np.zeros((n_gpus, 1)), np.rint(100 * np.minimum(conc, 1.0))], axis=1)

    node_conc = conc.reshape(nodes, gpn, k).sum(axis=1)
    cpu = np.round(np.minimum(1.0, CPU_UTIL_PER_REQUEST * node_conc), 4)
    cpu = np.concatenate([np.zeros((nodes, 1)), cpu], axis=1)  # (nodes, k + 1)

    expected = {
        "gpu_energy_j": float(power_mw[:, 1:].sum() * STEP_S / 1e3),
        "host_energy_j": float(((HOST_IDLE_W + cpu[:, 1:] * (HOST_MAX_W - HOST_IDLE_W)) * STEP_S).sum()),
        "gpu_idle_energy_j": GPU_IDLE_W * n_gpus * DAY_S,
        "host_idle_energy_j": HOST_IDLE_W * nodes * DAY_S,
        "request_seconds": float(req["duration"].sum()),
        "request_seconds_in_day": float(busy.sum()),
        "gpu_intervals_at_power_cap": float((dyn1 * conc >= GPU_MAX_W - GPU_IDLE_W).mean()),
        "mean_gpu_concurrency": float(conc.mean()),
        "peak_gpu_interval_concurrency": float(conc.max()),
    }
    expected["it_energy_j"] = expected["gpu_energy_j"] + expected["host_energy_j"]

    # Row order as a scraper writes it: timestamp, then node, then [cpu, gpu0 power/energy/util, gpu1 ...].
    per_node = 1 + 3 * gpn
    gpu_vals = np.stack(
        [power_mw / 1e3, energy_mj.astype(np.float64), util], axis=-1
    )  # (gpus, k + 1, 3)
    gpu_vals = gpu_vals.reshape(nodes, gpn, k + 1, 3).transpose(2, 0, 1, 3).reshape(k + 1, nodes, 3 * gpn)
    values = np.concatenate([cpu.T[:, :, None], gpu_vals], axis=2).ravel()  # (k+1) * nodes * per_node
    del gpu_vals
    n_rows = values.size
    ts = np.repeat(day0 + np.arange(k + 1, dtype=np.float64) * STEP_S, nodes * per_node)

    metric_pattern = np.concatenate([[0], np.tile([1, 2, 3], gpn)]).astype(np.int8)
    gpu_pattern = np.concatenate([[-1], np.repeat(np.arange(gpn), 3)]).astype(np.int16)
    metric_idx = np.tile(metric_pattern, nodes * (k + 1))
    gpu_idx = np.tile(gpu_pattern, nodes * (k + 1))
    node_idx = np.tile(np.repeat(np.arange(nodes, dtype=np.int16), per_node), k + 1)
    metric_names = pa.array([METRIC_CPU, METRIC_POWER, METRIC_ENERGY, METRIC_UTIL])
    node_names = pa.array([f"gpu-node-{i:02d}" for i in range(nodes)])  # labels only: `nodes` strings
    gpu_names = pa.array([str(g) for g in range(gpn)])
    table = pa.table(
        {
            "timestamp": ts,
            "cluster": pa.DictionaryArray.from_arrays(np.zeros(n_rows, np.int8), pa.array([CLUSTER])),
            "metric": pa.DictionaryArray.from_arrays(metric_idx, metric_names),
            "value": values,
            "node": pa.DictionaryArray.from_arrays(node_idx, node_names),
            "gpu": pa.DictionaryArray.from_arrays(
                pa.array(gpu_idx, mask=gpu_idx < 0), gpu_names
            ),
        }
    )
    return table, expected


def build_requests_table(req: dict[str, np.ndarray], gpn: int, day: dt.date, day0: float) -> pa.Table:
    n = req["start"].size
    prefix = f"{CLUSTER}-{day:%Y%m%d}-"
    width = max(7, len(str(n - 1)))
    ids = pc.binary_join_element_wise(
        prefix, pc.utf8_lpad(pc.cast(pa.array(np.arange(n)), pa.string()), width=width, padding="0"), ""
    )
    nodes = int(req["gpu"].max()) // gpn + 1 if n else 0
    n_nodes = max(nodes, 1)
    return pa.table(
        {
            "request_id": ids,
            "cluster": pa.DictionaryArray.from_arrays(np.zeros(n, np.int8), pa.array([CLUSTER])),
            "model": pa.DictionaryArray.from_arrays(req["model"], pa.array([m[0] for m in MODELS])),
            "start_time": day0 + req["start"],
            "duration_s": req["duration"],
            "input_tokens": req["tin"],
            "output_tokens": req["tout"],
            "node": pa.DictionaryArray.from_arrays(
                (req["gpu"] // gpn).astype(np.int16), pa.array([f"gpu-node-{i:02d}" for i in range(n_nodes)])
            ),
            "gpu": pa.DictionaryArray.from_arrays(
                (req["gpu"] % gpn).astype(np.int8), pa.array([str(g) for g in range(gpn)])
            ),
        }
    )


def write_parquet(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # store_schema=False: readers see plain string columns (dictionary encoding is kept inside the file)
    pq.write_table(table, tmp, compression="zstd", store_schema=False, row_group_size=1 << 20)
    os.replace(tmp, path)


def generate(
    out: Path, n_requests: int, nodes: int = 64, gpus_per_node: int = 8, day: dt.date = dt.date(2023, 11, 16),
    seed: int = 20231116,
) -> dict[str, object]:
    """Write the dataset to `out` and return what benchmark.json holds."""
    began = time.perf_counter()
    rng = np.random.default_rng(seed)
    day0 = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp()
    out.mkdir(parents=True, exist_ok=True)
    (out / "clusters.yml").write_text(clusters_yaml(nodes, gpus_per_node))

    req = make_requests(rng, n_requests, nodes * gpus_per_node)
    telemetry, expected = build_telemetry(rng, req, nodes, gpus_per_node, day0)
    tel_path = out / "telemetry" / CLUSTER / f"{day.isoformat()}.parquet"
    write_parquet(telemetry, tel_path)
    tel_rows = telemetry.num_rows
    del telemetry
    requests = build_requests_table(req, gpus_per_node, day, day0)
    req_path = out / "requests" / CLUSTER / f"{day.isoformat()}.parquet"
    write_parquet(requests, req_path)
    elapsed = time.perf_counter() - began

    meta: dict[str, object] = {
        "generator": "benchmarks/generate.py",
        "requests": n_requests,
        "nodes": nodes,
        "gpus_per_node": gpus_per_node,
        "day": day.isoformat(),
        "seed": seed,
        "scrape_interval_s": STEP_S,
        "telemetry_rows": tel_rows,
        "telemetry_bytes": tel_path.stat().st_size,
        "requests_bytes": req_path.stat().st_size,
        "generation_s": round(elapsed, 2),
        "expected": expected,
        "requests_crossing_midnight": int(np.count_nonzero(req["start"] + req["duration"] > DAY_S)),
    }
    (out / "benchmark.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def check(out: Path) -> list[str]:
    """Internal consistency of a generated dir: counter deltas = power x 15 s, sample counts, label sets."""
    import duckdb

    problems = []
    tel = next((out / "telemetry" / CLUSTER).glob("*.parquet"))
    con = duckdb.connect()
    rows = con.execute(
        f"""
        with g as (
            select node, gpu, timestamp, max(value) filter (where metric = '{METRIC_POWER}') as p,
                   max(value) filter (where metric = '{METRIC_ENERGY}') as e
            from read_parquet('{tel}') where gpu is not null group by all
        ), d as (
            select e - lag(e) over w as de, p * 15000 as pe, timestamp - lag(timestamp) over w as dt
            from g window w as (partition by node, gpu order by timestamp)
        )
        select max(abs(de - pe)), min(de), max(dt), min(dt), count(*) from d where de is not null
        """
    ).fetchone()
    max_err, min_delta, max_dt, min_dt, _pairs = rows
    if max_err > 0.5:
        problems.append(f"counter delta differs from power x 15 s by up to {max_err} mJ")
    if min_delta < 0:
        problems.append("energy counter decreases")
    if max_dt != STEP_S or min_dt != STEP_S:
        problems.append(f"sample spacing {min_dt}..{max_dt} s")
    per_series = con.execute(
        f"select min(c), max(c) from (select count(*) c from read_parquet('{tel}') group by metric, node, gpu)"
    ).fetchone()
    if per_series != (int(DAY_S / STEP_S) + 1,) * 2:
        problems.append(f"samples per series {per_series}")
    con.close()
    return problems


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=5_000_000)
    p.add_argument("--nodes", type=int, default=64)
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--day", type=dt.date.fromisoformat, default=dt.date(2023, 11, 16))
    p.add_argument("--out", type=Path, default=None, help="default benchmarks/out/data-<requests>")
    p.add_argument("--seed", type=int, default=20231116)
    p.add_argument("--check", action="store_true", help="verify counter deltas and sample counts afterwards")
    args = p.parse_args(argv)
    out = args.out or Path(__file__).resolve().parent / "out" / f"data-{args.requests}"
    meta = generate(out, args.requests, args.nodes, args.gpus_per_node, args.day, args.seed)
    exp = meta["expected"]
    print(f"{out}")
    print(f"  requests   {meta['requests']:>12,} rows  {_human(meta['requests_bytes']):>10}")
    print(f"  telemetry  {meta['telemetry_rows']:>12,} rows  {_human(meta['telemetry_bytes']):>10}")
    print(f"  generated in {meta['generation_s']:.1f} s; mean GPU concurrency {exp['mean_gpu_concurrency']:.2f}, "
          f"GPU-intervals at the power cap {exp['gpu_intervals_at_power_cap']:.2%}, "
          f"expected IT energy {exp['it_energy_j'] / 3.6e6:,.1f} kWh")
    if args.check:
        problems = check(out)
        print("  check: " + ("ok" if not problems else "; ".join(problems)))
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
