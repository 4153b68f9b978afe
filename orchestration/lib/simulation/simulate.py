"""Simulated LLM inference cluster: input files in the product's layout plus the energy they must add up to.

The simulator writes what a real deployment would hand the pipeline (``clusters.yml``, long-format telemetry per
cluster and UTC day, request logs) and, beside it, a ``truth/`` folder the pipeline never reads: the exact GPU,
host, IT and idle energy of every cluster-day and the true dynamic energy of every request. Tests run the pipeline
on the simulated inputs and compare against the truth. Everything is vectorised with numpy; the only Python loops
run over clusters, days, nodes, GPUs (labels) and models.

Physical model
==============
Requests
    Arrivals per cluster and UTC day, in one of three modes:

    * ``azure``: the Azure LLM inference trace 2023 (Patel et al., "Splitwise: Efficient generative LLM inference
      using phase splitting", ISCA 2024; CC-BY-4.0; both the code and the conversation file) is tiled: its
      inter-arrival gaps and token counts are replayed in trace order from a random starting row, the cumulative
      gaps are rescaled to span the day and then warped by the diurnal profile below.
    * ``azure-replay``: every trace request at its real time of day (18:15-19:14 UTC on 2023-11-16; the date is
      replaced by the simulated day), plus ``requests_per_day`` background requests drawn from the diurnal profile
      outside the trace's hour, with token counts resampled from the trace.
    * ``poisson``: ``requests_per_day`` arrivals of a Poisson process conditioned on its count, with the diurnal
      intensity; tenant and token counts drawn from log-normal fits to the trace (``POISSON_TOKENS_LOGNORMAL``),
      so this mode needs no data file.

    Diurnal intensity: ``1 + DIURNAL_AMPLITUDE * cos(2 pi (hour - DIURNAL_PEAK_HOUR_UTC) / 24)``.
    Tenant is ``code`` or ``chat`` (which trace file), endpoint ``/v1/completions``. Start times are rounded to the
    millisecond and durations to the microsecond *before* anything is integrated, so the written log is exactly
    what was simulated.

Durations
    From SplitwiseSim's profile (``perf_model.csv``, Patel et al., MIT licence; subset shipped in ``data/sample``):
    ``duration = prompt_time(input tokens) + output_tokens * token_time(input tokens)`` at batch size 1, for
    llama2-70b with tensor parallelism 2 on a100-80gb or h100-80gb (picked from the cluster's ``gpu_model``).
    Both times are the mean of the profile's repetitions per prompt size (token_size 128 rows), interpolated
    linearly over prompt size with ``np.interp``; above the largest profiled prompt (8192 tokens) prompt time is
    extrapolated in proportion to the prompt length, token time is held. Simplification: continuous batching does
    not stretch durations (the profile's token time grows from 54.8 ms at batch 1 to 65.6 ms at batch 16 on A100),
    so a request's duration does not depend on load.

Placement and autoscaling
    Each GPU is a serving replica (a simplification: llama2-70b needs at least two 80 GB GPUs). A request goes to a
    GPU drawn uniformly at random among the GPUs of the nodes present when it arrives (a stateless load balancer).
    Without ``min_nodes`` every node is present throughout. With it, the target node count of each UTC hour is
    ``ceil(nodes * arrivals in the hour / arrivals in the busiest hour)`` clipped to ``[min_nodes, nodes]`` and
    held one more hour before scaling down (cool-down); nodes ``gpu-node-00 ..`` are filled in order. A node
    leaving keeps running until its last request ends (rounded up to the next scrape instant), so no request is
    cut. An absent node draws no power, emits no sample and receives no request. A node that rejoins boots afresh:
    its energy counters restart from 0.

GPU power (continuous batching)
    With ``n`` requests active on a GPU: ``P = gpu_idle_w + min(dyn1 * n ** batching_exponent, gpu_max_w -
    gpu_idle_w)``, ``dyn1 = single_request_fraction * (gpu_max_w - gpu_idle_w)`` (defaults 0.45 and 0.6): a
    request alone draws ``idle + dyn1``; batching raises power sublinearly until the cap (about 4 requests with the
    defaults). Sublinear growth of power with batch size is what the SplitwiseSim profile itself shows
    (``average_power`` 0.736 -> 0.794 of peak from batch 1 to 16 for llama2-70b on A100), in line with the
    batching and energy trade-offs discussed by Stojkovic et al. ("Towards Greener LLMs", EMC2 workshop at ASPLOS
    2024) and EcoServe (Li et al., arXiv 2502.05043). The exponent and the 0.45 are modelling choices, not fits. GPU utilisation: ``min(1, 0.3 + 0.1 n)`` when ``n > 0``,
    else 0.

Host power
    CPU utilisation of a node ``u = min(1, floor + 0.01 * active requests on the node)``, host power
    ``host_idle_w + u * (host_max_w - host_idle_w)``: linear in the active requests, so the host dynamic energy of
    a request is exactly ``0.01 * (host_max_w - host_idle_w) * duration`` (until the cap at 100 concurrent
    requests on a node). ``ClusterSpec.cpu_util_floor`` (default 0) adds background activity: the method counts
    host power above the declared ``host_idle_w`` as dynamic and charges it to requests, so with a floor the
    per-request truth (which excludes it) and the pipeline differ by design; declare the node's idle power at its
    background utilisation instead.

Exact integration
    Power is piecewise constant between request events. Per GPU (and per node) the events are sorted on
    (unit, time), the number of active requests is a cumulative sum of +1/-1, and integrals of any function of it
    are cumulative sums of ``f(n) * dt`` read back with one ``np.searchsorted``: no sampling error anywhere.

Telemetry (what the exporters would have scraped)
    Samples at ``k * scrape_interval_s`` from 00:00:00 UTC of each simulated day, the last one at the day's end or
    just before, plus the sample at the next day's 00:00:00 (written to the next day's file instead when that day
    is simulated too, so no sample is written twice). Per present node and GPU: power (instantaneous, rounded to
    the mW), utilisation (mean over the preceding scrape interval), and unless ``with_energy_counter`` is False the
    cumulative energy counter: the exact integral since the exporter started, starting from a random "since boot"
    offset, restarting from 0 at each ``restart_at`` and when a node rejoins. A sample taken at the very instant of
    a restart reads the value before it. Per node: CPU utilisation (mean over the preceding interval).
    ``gaps`` remove samples (``start <= t < end``) without changing any energy.

    =========================  ====================================  ===================================
    quantity                   dcgm                                  triton
    =========================  ====================================  ===================================
    GPU power                  DCGM_FI_DEV_POWER_USAGE (W)           nv_gpu_power_usage (W)
    GPU energy counter         DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION  nv_energy_consumption (J)
                               (mJ, integer)
    GPU utilisation            DCGM_FI_DEV_GPU_UTIL (%, integer)     nv_gpu_utilization (0-1)
    node CPU utilisation       nv_cpu_utilization (0-1)              nv_cpu_utilization (0-1)
    GPU label                  "0" .. "7"                            "GPU-<uuid>"
    =========================  ====================================  ===================================

    DCGM has no CPU metric, so DCGM clusters carry Triton's ``nv_cpu_utilization`` per node (as a deployment
    running Triton next to dcgm-exporter would).

Truth (``truth/``, not read by the pipeline)
    ``cluster_day.csv``: cluster, day, gpu_energy_j, host_energy_j, it_energy_j, idle_energy_j (= gpu_idle_w x
    present GPU-seconds + host_idle_w x present node-seconds), node_seconds and gpu_seconds (hardware-seconds
    provisioned, which embodied carbon and water are amortised over), requests (started that day); energies are integrals
    over [00:00, 24:00) UTC exactly. ``requests.parquet``: request_id, cluster, node, gpu, start_time (epoch s),
    duration_s, true_gpu_dynamic_energy_j, true_host_dynamic_energy_j, true_dynamic_energy_j, alone_on_gpu. A
    request's dynamic energy is the integral over its whole interval (past midnight too) of its equal share of the
    GPU's (node's) request-driven dynamic power: ``(P_dyn(n) / n)``. A request alone on its GPU therefore gets
    exactly ``dyn1 * duration``.

Layout written by ``write_dataset``
    ``clusters.yml``, ``telemetry/<cluster>/<day>.{parquet,csv,csv.gz}`` (columns timestamp, cluster, metric,
    value, node, gpu; in parquet ``timestamp`` is epoch seconds as DOUBLE, in csv RFC 3339 with millisecond
    precision and ``Z``; gpu null/empty for node metrics), ``requests/<cluster>/<day>.{jsonl,csv,parquet}``
    (start_time likewise), ``truth/cluster_day.csv`` and ``truth/requests.parquet``.

The demo inputs in ``data/sample/inputs`` are rebuilt by ``build_demo_dataset`` (row counts and sizes in
``data/sample/NOTICE.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gzip
import sys
import uuid
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import yaml

from orchestration.lib.ingestion.metrics import METRICS_BY_NAME
from orchestration.lib.simulation.simfaults import (
    Faults,
    encode_non_utf8,
    inject_request_faults,
    inject_telemetry_faults,
    prom_lines,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
SAMPLE_DIR = REPO_ROOT / "data" / "sample"
DEFAULT_AZURE_TRACE_DIR = SAMPLE_DIR / "azure"
DEMO_INPUTS_DIR = SAMPLE_DIR / "inputs"
AZURE_TRACE_FILES: tuple[tuple[str, str], ...] = (
    ("code", "AzureLLMInferenceTrace_code.csv"),
    ("chat", "AzureLLMInferenceTrace_conv.csv"),
)
PERF_MODEL_FILES: tuple[Path, ...] = (
    SAMPLE_DIR / "splitwise_perf_model_llama2-70b_a100.csv",
    SAMPLE_DIR / "splitwise_perf_model_llama2-70b_h100.csv",
)
# gpu_model substring -> SplitwiseSim hardware name
PERF_HARDWARE: tuple[tuple[str, str], ...] = (("H100", "h100-80gb"), ("A100", "a100-80gb"))
PERF_TENSOR_PARALLEL = 2
PERF_BATCH_SIZE = 1
PERF_TOKEN_SIZE = 128

DAY_S = 86_400.0
HOUR_S = 3_600.0
ENDPOINT = "/v1/completions"
NODE_NAME_FORMAT = "gpu-node-{:02d}"
ARRIVAL_MODES: tuple[str, ...] = ("azure", "azure-replay", "poisson")
EXPORTERS: tuple[str, ...] = ("dcgm", "triton")
TELEMETRY_FORMATS: tuple[str, ...] = ("parquet", "csv", "csv.gz", "prom")
REQUEST_FORMATS: tuple[str, ...] = ("jsonl", "csv", "parquet")

GPU_UTIL_BASE = 0.3
GPU_UTIL_PER_REQUEST = 0.1
CPU_UTIL_PER_REQUEST = 0.01

DIURNAL_AMPLITUDE = 0.6
DIURNAL_PEAK_HOUR_UTC = 18.0
DIURNAL_GRID_S = 60.0

# Poisson mode: tenant mix (8,819 code and 19,366 conversation requests in the Azure 2023 trace) and log-normal
# fits to its token counts, as (mean, std) of ln(tokens) for (input, output).
POISSON_TENANT_SHARE: tuple[tuple[str, float], ...] = (("code", 0.313), ("chat", 0.687))
POISSON_TOKENS_LOGNORMAL: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "code": ((7.00, 1.36), (2.79, 0.85)),
    "chat": ((6.63, 0.99), (5.02, 0.86)),
}
POISSON_MAX_INPUT_TOKENS = 14_050  # largest in the trace
POISSON_MAX_OUTPUT_TOKENS = 1_899

COUNTER_SINCE_BOOT_J: tuple[float, float] = (1.0e7, 3.0e8)  # range of the counters' starting offsets
POWER_DECIMALS = 3

# Independent random streams per cluster, so adding a cluster or a day leaves the others unchanged.
STREAM_ARRIVALS = 1
STREAM_ROUTING = 2
STREAM_COUNTERS = 3
STREAM_GPU_UUIDS = 4


@dataclass(frozen=True)
class ExporterMetrics:
    """Prometheus metric names one exporter uses (units from orchestration.lib.ingestion.metrics)."""

    power: str
    energy: str
    gpu_util: str
    cpu_util: str


EXPORTER_METRICS: dict[str, ExporterMetrics] = {
    "dcgm": ExporterMetrics(
        "DCGM_FI_DEV_POWER_USAGE",
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "DCGM_FI_DEV_GPU_UTIL",
        "nv_cpu_utilization",
    ),
    "triton": ExporterMetrics(
        "nv_gpu_power_usage", "nv_energy_consumption", "nv_gpu_utilization", "nv_cpu_utilization"
    ),
}


# --------------------------------------------------------------------------------------------------------------
# Utilisation as a function of the number of active requests (count >= 1; 0 is handled by the integrator)
# --------------------------------------------------------------------------------------------------------------


def _ones(count: np.ndarray) -> np.ndarray:
    """1 while the unit is busy (integrates to busy or present seconds)."""
    return np.ones(len(count))


def _gpu_util(count: np.ndarray) -> np.ndarray:
    """GPU utilisation ratio of a GPU running `count` requests."""
    return np.minimum(1.0, GPU_UTIL_BASE + GPU_UTIL_PER_REQUEST * count)


def _cpu_request_util(count: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """Node CPU utilisation above the background `floor` with `count` active requests."""
    return np.minimum(CPU_UTIL_PER_REQUEST * count, 1.0 - floor)


def _crowded(count: np.ndarray) -> np.ndarray:
    """1 while a GPU serves two requests or more (a request is alone if this never integrates above 0)."""
    return (count >= 2).astype(float)


# --------------------------------------------------------------------------------------------------------------
# Configuration and result
# --------------------------------------------------------------------------------------------------------------


@dataclass
class ClusterSpec:
    """One simulated cluster: hardware, power model, exporter and the figures written to clusters.yml."""

    cluster_id: str = "sim-a100"
    region: str = "US-CAL-CISO"
    gpu_model: str = "A100-SXM4-80GB"
    nodes: int = 4  # max nodes (autoscaling moves between min_nodes and nodes)
    min_nodes: int | None = None  # None = no autoscaling
    gpus_per_node: int = 8
    gpu_idle_w: float = 60.0
    gpu_max_w: float = 400.0
    host_idle_w: float = 300.0
    host_max_w: float = 900.0
    exporter: str = "dcgm"  # "dcgm" or "triton": which metric names/units are written
    with_energy_counter: bool = True  # False: only power + utilisation (the pipeline must integrate power)
    scrape_interval_s: float = 15.0
    pue: float = 1.1
    wue_onsite_l_per_kwh: float = 0.3
    gpu_embodied_kg_co2e: float = 273.0
    server_embodied_kg_co2e: float = 5700.0
    lifetime_years: float = 5.0
    single_request_fraction: float = 0.45  # dyn1 as a fraction of (gpu_max_w - gpu_idle_w)
    batching_exponent: float = 0.6  # dynamic GPU power grows as n ** batching_exponent
    arrivals: str | None = None  # overrides SimConfig.arrivals for this cluster
    requests_per_day: int | None = None  # overrides SimConfig.requests_per_day for this cluster
    cpu_util_floor: float = 0.0  # background CPU utilisation of a present node (see "Host power")
    # what the exporters and the request log get wrong (simfaults.py); the truth is unchanged
    faults: Faults = dataclasses.field(default_factory=Faults)

    def __post_init__(self) -> None:
        if self.exporter not in EXPORTERS:
            raise ValueError(f"exporter must be one of {EXPORTERS}, got {self.exporter!r}")
        if self.nodes < 1 or self.gpus_per_node < 1:
            raise ValueError("nodes and gpus_per_node must be at least 1")
        if self.min_nodes is not None and not 1 <= self.min_nodes <= self.nodes:
            raise ValueError(f"min_nodes must be between 1 and nodes ({self.nodes}), got {self.min_nodes}")
        if not 0 <= self.gpu_idle_w < self.gpu_max_w or not 0 <= self.host_idle_w <= self.host_max_w:
            raise ValueError("need 0 <= gpu_idle_w < gpu_max_w and 0 <= host_idle_w <= host_max_w")
        if self.scrape_interval_s <= 0:
            raise ValueError("scrape_interval_s must be positive")
        if self.arrivals is not None and self.arrivals not in ARRIVAL_MODES:
            raise ValueError(f"arrivals must be one of {ARRIVAL_MODES}, got {self.arrivals!r}")

    @property
    def dyn1_w(self) -> float:
        """Dynamic GPU power drawn by one request alone on a GPU."""
        return self.single_request_fraction * (self.gpu_max_w - self.gpu_idle_w)

    @property
    def node_names(self) -> list[str]:
        return [NODE_NAME_FORMAT.format(k) for k in range(self.nodes)]

    def gpu_dynamic_w(self, active: np.ndarray) -> np.ndarray:
        """GPU power above idle with `active` requests in the batch."""
        return np.minimum(self.dyn1_w * active**self.batching_exponent, self.gpu_max_w - self.gpu_idle_w)

    def host_request_w(self, active: np.ndarray) -> np.ndarray:
        """Host power above the idle-plus-floor level driven by `active` requests on the node."""
        return (self.host_max_w - self.host_idle_w) * _cpu_request_util(active, self.cpu_util_floor)

    def as_clusters_yml(self) -> dict[str, object]:
        """The CONTRACT section 1 entry for this cluster."""
        return {
            "id": self.cluster_id,
            "region": self.region,
            "gpu_model": self.gpu_model,
            "gpus_per_node": self.gpus_per_node,
            "gpu_idle_w": self.gpu_idle_w,
            "host_idle_w": self.host_idle_w,
            "host_max_w": self.host_max_w,
            "pue": self.pue,
            "wue_onsite_l_per_kwh": self.wue_onsite_l_per_kwh,
            "gpu_embodied_kg_co2e": self.gpu_embodied_kg_co2e,
            "server_embodied_kg_co2e": self.server_embodied_kg_co2e,
            "lifetime_years": self.lifetime_years,
        }


@dataclass
class SimConfig:
    """What to simulate: days, clusters, load and incidents (restarts, telemetry gaps)."""

    days: Sequence[str]  # "YYYY-MM-DD" UTC days
    clusters: Sequence[ClusterSpec]
    requests_per_day: int = 20000  # per cluster (azure-replay: background requests besides the trace)
    arrivals: str = "azure"  # "azure", "azure-replay" or "poisson"
    azure_trace_dir: str | None = None  # holds AzureLLMInferenceTrace_{code,conv}.csv; None: shipped copy
    models: Sequence[str] = ("llama2-70b",)
    restart_at: Sequence[tuple[str, str, str]] = ()  # (cluster_id, node, ISO timestamp): counters reset to 0
    gaps: Sequence[tuple[str, str, str, str]] = ()  # (cluster_id, node, start ISO, end ISO): no samples
    log_replica: bool = True  # write node and gpu columns in the request log
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.days or not self.clusters:
            raise ValueError("need at least one day and one cluster")
        if self.arrivals not in ARRIVAL_MODES:
            raise ValueError(f"arrivals must be one of {ARRIVAL_MODES}, got {self.arrivals!r}")
        if self.seed < 0 or self.requests_per_day < 0:
            raise ValueError("seed and requests_per_day must be non-negative")
        ids = [c.cluster_id for c in self.clusters]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate cluster ids in {ids}")
        nodes = {c.cluster_id: set(c.node_names) for c in self.clusters}
        for cluster_id, node, *_ in [*self.restart_at, *self.gaps]:
            if node not in nodes.get(cluster_id, set()):
                raise ValueError(f"unknown cluster/node {cluster_id}/{node} in restart_at or gaps")


@dataclass
class SimResult:
    """Simulated inputs (timestamps as epoch seconds) and the truth they must reproduce."""

    days: list[str]
    clusters: list[dict[str, object]]  # clusters.yml entries
    requests: pd.DataFrame
    telemetry: pd.DataFrame  # long format: timestamp, cluster, metric, value, node, gpu
    truth_cluster_day: pd.DataFrame
    truth_requests: pd.DataFrame
    faults: dict[str, Faults] = dataclasses.field(default_factory=dict)  # per cluster id, when any


# --------------------------------------------------------------------------------------------------------------
# Inputs: runtime profile and Azure trace
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeModel:
    """Batch-size-1 latency of one model on one GPU type, interpolated from SplitwiseSim's profile."""

    model: str
    hardware: str
    prompt_sizes: np.ndarray
    prompt_ms: np.ndarray
    token_ms: np.ndarray

    @classmethod
    def from_profile(cls, profile: pd.DataFrame, model: str, hardware: str) -> RuntimeModel:
        rows = profile[
            (profile["model"] == model)
            & (profile["hardware"] == hardware)
            & (profile["tensor_parallel"] == PERF_TENSOR_PARALLEL)
            & (profile["batch_size"] == PERF_BATCH_SIZE)
            & (profile["token_size"] == PERF_TOKEN_SIZE)
        ]
        if rows.empty:
            known = sorted(set(zip(profile["model"], profile["hardware"], strict=True)))
            raise ValueError(f"no runtime profile for {model} on {hardware}; available: {known}")
        means = rows.groupby("prompt_size")[["prompt_time", "token_time"]].mean().sort_index()
        return cls(
            model,
            hardware,
            means.index.to_numpy(float),
            means["prompt_time"].to_numpy(float),
            means["token_time"].to_numpy(float),
        )

    def duration_s(self, input_tokens: np.ndarray, output_tokens: np.ndarray) -> np.ndarray:
        """prompt_time(input) + output_tokens * token_time(input), in seconds."""
        prompt = input_tokens.astype(float)
        top = self.prompt_sizes[-1]
        prompt_ms = np.where(
            prompt <= top,
            np.interp(prompt, self.prompt_sizes, self.prompt_ms),
            self.prompt_ms[-1] * prompt / top,
        )
        token_ms = np.interp(prompt, self.prompt_sizes, self.token_ms)
        return (prompt_ms + output_tokens * token_ms) / 1000.0


def load_runtime_profile() -> pd.DataFrame:
    """The shipped subset of SplitwiseSim's perf_model.csv (llama2-70b, tensor parallel 2, A100 and H100)."""
    return pd.concat([pd.read_csv(path) for path in PERF_MODEL_FILES], ignore_index=True)


def hardware_of(gpu_model: str) -> str:
    """SplitwiseSim hardware name for a gpu_model string (e.g. A100-SXM4-80GB -> a100-80gb)."""
    for needle, hardware in PERF_HARDWARE:
        if needle in gpu_model.upper():
            return hardware
    known = [needle for needle, _ in PERF_HARDWARE]
    raise ValueError(f"no runtime profile for gpu_model {gpu_model!r}; known: {known}")


def load_azure_trace(trace_dir: Path | None = None) -> pd.DataFrame:
    """Both Azure 2023 trace files, sorted by time: second_of_day, input_tokens, output_tokens, tenant."""
    folder = Path(trace_dir) if trace_dir is not None else DEFAULT_AZURE_TRACE_DIR
    parts = []
    for tenant, name in AZURE_TRACE_FILES:
        raw = pd.read_csv(folder / name)
        stamp = pd.to_datetime(raw["TIMESTAMP"], format="ISO8601")
        parts.append(
            pd.DataFrame(
                {
                    "second_of_day": (stamp - stamp.dt.normalize()).dt.total_seconds(),
                    "input_tokens": raw["ContextTokens"].astype(np.int64),
                    "output_tokens": raw["GeneratedTokens"].astype(np.int64),
                    "tenant": tenant,
                }
            )
        )
    return pd.concat(parts, ignore_index=True).sort_values("second_of_day", kind="stable", ignore_index=True)


# --------------------------------------------------------------------------------------------------------------
# Arrivals
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrivals:
    """Requests of one cluster-day, sorted by second of the day."""

    second_of_day: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    tenant: np.ndarray

    @classmethod
    def sorted_from(cls, seconds: np.ndarray, rows: pd.DataFrame) -> Arrivals:
        order = np.argsort(seconds, kind="stable")
        return cls(
            seconds[order],
            rows["input_tokens"].to_numpy(np.int64)[order],
            rows["output_tokens"].to_numpy(np.int64)[order],
            rows["tenant"].to_numpy(object)[order],
        )


def diurnal_seconds(quantiles: np.ndarray, quiet: tuple[float, float] | None = None) -> np.ndarray:
    """Map quantiles in [0, 1) to seconds of the day under the diurnal intensity (zero inside `quiet`)."""
    grid = np.arange(0.0, DAY_S + DIURNAL_GRID_S, DIURNAL_GRID_S)
    rate = 1.0 + DIURNAL_AMPLITUDE * np.cos(2 * np.pi * (grid / HOUR_S - DIURNAL_PEAK_HOUR_UTC) / 24.0)
    if quiet is not None:
        rate[(grid >= quiet[0]) & (grid <= quiet[1])] = 0.0
    cumulative = np.concatenate([[0.0], np.cumsum((rate[1:] + rate[:-1]) / 2 * DIURNAL_GRID_S)])
    return np.interp(quantiles * cumulative[-1], cumulative, grid)


def poisson_arrivals(n: int, rng: np.random.Generator) -> Arrivals:
    """Diurnal Poisson arrivals (conditioned on n) with log-normal token counts per tenant."""
    seconds = diurnal_seconds(np.sort(rng.random(n)))
    tenants = np.array([name for name, _ in POISSON_TENANT_SHARE], dtype=object)
    pick = rng.choice(len(tenants), size=n, p=[share for _, share in POISSON_TENANT_SHARE])
    params = np.array([POISSON_TOKENS_LOGNORMAL[name] for name in tenants])  # (tenant, in/out, mean/std)
    draws = np.exp(rng.normal(params[pick, :, 0], params[pick, :, 1]))
    return Arrivals(
        seconds,
        np.clip(np.round(draws[:, 0]), 1, POISSON_MAX_INPUT_TOKENS).astype(np.int64),
        np.clip(np.round(draws[:, 1]), 1, POISSON_MAX_OUTPUT_TOKENS).astype(np.int64),
        tenants[pick],
    )


def azure_tiled_arrivals(n: int, rng: np.random.Generator, trace: pd.DataFrame) -> Arrivals:
    """The trace's inter-arrival gaps and token counts tiled from a random row, rescaled to the day, warped."""
    times = trace["second_of_day"].to_numpy(float)
    gaps = np.diff(times, append=times[-1] + np.median(np.diff(times)))
    rows = (rng.integers(len(trace)) + np.arange(n)) % len(trace)
    elapsed = np.cumsum(gaps[rows])
    quantiles = (elapsed - gaps[rows]) / elapsed[-1] if n else elapsed
    return Arrivals.sorted_from(diurnal_seconds(quantiles), trace.iloc[rows])


def azure_replay_arrivals(n_background: int, rng: np.random.Generator, trace: pd.DataFrame) -> Arrivals:
    """Every trace request at its real time of day plus diurnal background outside the trace's window."""
    times = trace["second_of_day"].to_numpy(float)
    background = diurnal_seconds(np.sort(rng.random(n_background)), quiet=(times[0], times[-1]))
    rows = rng.integers(len(trace), size=n_background)
    return Arrivals.sorted_from(
        np.concatenate([times, background]), pd.concat([trace, trace.iloc[rows]], ignore_index=True)
    )


# --------------------------------------------------------------------------------------------------------------
# Exact integration of step functions
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepCounts:
    """Number of open intervals on each unit (a GPU or a node) as a right-continuous step function of time.

    Events are sorted on (unit, time) and located with one searchsorted over the key ``unit * stride + time``, so
    every query is vectorised across units. Times must lie in [0, stride); queries are clipped to that range.
    """

    stride: float
    key: np.ndarray
    time: np.ndarray
    count: np.ndarray

    @classmethod
    def build(cls, unit: np.ndarray, start: np.ndarray, end: np.ndarray, stride: float) -> StepCounts:
        units = np.concatenate([unit, unit]).astype(np.int64)
        times = np.concatenate([start, end]).astype(float)
        steps = np.concatenate([np.ones(len(start), np.int64), -np.ones(len(end), np.int64)])
        order = np.lexsort((steps, times, units))  # at equal times the ends come first
        return cls(stride, units[order] * stride + times[order], times[order], np.cumsum(steps[order]))

    def _clip(self, t: np.ndarray) -> np.ndarray:
        return np.clip(t, 0.0, np.nextafter(self.stride, 0.0))

    def _locate(self, unit: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Index of the unit's last event at or before t; an earlier unit's last event (count 0) or -1 if none."""
        return np.searchsorted(self.key, unit * self.stride + t, side="right") - 1

    def count_at(self, unit: np.ndarray, t: np.ndarray) -> np.ndarray:
        if len(self.key) == 0:
            return np.zeros(len(t), np.int64)
        j = self._locate(unit, self._clip(t))
        return np.where(j >= 0, self.count[np.maximum(j, 0)], 0)

    def integral(self, f: Callable[[np.ndarray], np.ndarray], unit: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Integral of f(count) up to t on each unit, f taken as 0 at count 0.

        Exact up to a constant per unit, which cancels in differences on the same unit (the only use).
        """
        if len(self.key) == 0:
            return np.zeros(len(t))
        level = np.zeros(len(self.count))
        busy = self.count > 0
        level[busy] = f(self.count[busy])
        cumulative = np.concatenate([[0.0], np.cumsum(level[:-1] * np.diff(self.time))])
        t = self._clip(t)
        j = self._locate(unit, t)
        jj = np.maximum(j, 0)
        return np.where(j >= 0, cumulative[jj] + level[jj] * (t - self.time[jj]), 0.0)

    def between(
        self, f: Callable[[np.ndarray], np.ndarray], unit: np.ndarray, t0: np.ndarray, t1: np.ndarray
    ) -> np.ndarray:
        """Integral of f(count) over [t0, t1] on each unit."""
        return self.integral(f, unit, t1) - self.integral(f, unit, t0)


def snap_to_grid(t: np.ndarray, interval_s: float, up: bool) -> np.ndarray:
    """Round times (s since a UTC midnight) to their day's scrape grid, which also holds the next midnight."""
    day = np.floor(t / DAY_S) * DAY_S
    steps = (t - day) / interval_s
    nearest = np.round(steps)
    steps = np.where(np.abs(steps - nearest) < 1e-9, nearest, steps)
    return np.minimum(day + (np.ceil(steps) if up else np.floor(steps)) * interval_s, day + DAY_S)


def sample_grid(day_offsets: np.ndarray, interval_s: float) -> np.ndarray:
    """Scrape instants of the simulated days: k * interval from each midnight, and each next midnight."""
    per_day = np.arange(int(np.ceil(DAY_S / interval_s - 1e-9))) * interval_s
    return np.unique(np.concatenate([*(d + per_day for d in day_offsets), day_offsets + DAY_S]))


def _in_intervals(t: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Whether each t lies in one of the sorted, disjoint closed intervals [starts, ends]."""
    idx = np.searchsorted(starts, t, side="right") - 1
    return (idx >= 0) & (t <= ends[np.maximum(idx, 0)]) if len(starts) else np.zeros(len(t), bool)


def _merge(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union of closed intervals sorted by start."""
    if len(starts) == 0:
        return starts, ends
    reach = np.maximum.accumulate(ends)
    first = np.concatenate([[True], starts[1:] > reach[:-1]])
    heads = np.flatnonzero(first)
    return starts[heads], np.maximum.reduceat(ends, heads)


# --------------------------------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------------------------------


def parse_utc(timestamp: str) -> float:
    """Epoch seconds of an ISO 8601 / RFC 3339 timestamp (naive = UTC)."""
    parsed = dt.datetime.fromisoformat(timestamp)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).timestamp()


def _rng(seed: int, cluster_id: str, stream: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(cluster_id.encode()), stream, *keys])


def _arrivals(mode: str, n: int, rng: np.random.Generator, trace: pd.DataFrame | None) -> Arrivals:
    if mode == "poisson":
        return poisson_arrivals(n, rng)
    assert trace is not None
    return azure_tiled_arrivals(n, rng, trace) if mode == "azure" else azure_replay_arrivals(n, rng, trace)


@dataclass(frozen=True)
class _Timeline:
    days: list[dt.date]
    t0: float  # epoch seconds of the first day's midnight; all simulation times are relative to it
    day_offsets: np.ndarray
    span: float  # the first midnight to the end of the last day


def _timeline(days: Sequence[str]) -> _Timeline:
    parsed = sorted({dt.date.fromisoformat(d) for d in days})
    t0 = dt.datetime.combine(parsed[0], dt.time(), dt.UTC).timestamp()
    offsets = np.array([(d - parsed[0]).days * DAY_S for d in parsed])
    return _Timeline(parsed, t0, offsets, offsets[-1] + DAY_S)


def _requests(spec: ClusterSpec, cfg: SimConfig, line: _Timeline, trace: pd.DataFrame | None) -> pd.DataFrame:
    """Arrivals, tokens, models and durations of one cluster over all days (times relative to line.t0)."""
    mode = spec.arrivals or cfg.arrivals
    n = cfg.requests_per_day if spec.requests_per_day is None else spec.requests_per_day
    profile = load_runtime_profile()
    runtimes = [RuntimeModel.from_profile(profile, m, hardware_of(spec.gpu_model)) for m in cfg.models]
    parts = []
    for day, offset in zip(line.days, line.day_offsets, strict=True):
        rng = _rng(cfg.seed, spec.cluster_id, STREAM_ARRIVALS, day.toordinal())
        arr = _arrivals(mode, n, rng, trace)
        model = rng.integers(len(runtimes), size=len(arr.tenant))
        duration = np.zeros(len(model))
        for m, runtime in enumerate(runtimes):
            mine = model == m
            duration[mine] = runtime.duration_s(arr.input_tokens[mine], arr.output_tokens[mine])
        index = pd.Series(np.arange(len(model))).astype(str).str.zfill(6)
        parts.append(
            pd.DataFrame(
                {
                    "request_id": f"{spec.cluster_id}-{day:%Y%m%d}-" + index,
                    "cluster": spec.cluster_id,
                    "model": np.array(list(cfg.models), dtype=object)[model],
                    "start": np.round((offset + arr.second_of_day) * 1000.0) / 1000.0,
                    "duration_s": np.maximum(np.round(duration, 6), 1e-6),
                    "input_tokens": arr.input_tokens,
                    "output_tokens": arr.output_tokens,
                    "tenant": arr.tenant,
                    "endpoint": ENDPOINT,
                }
            )
        )
    return pd.concat(parts, ignore_index=True).sort_values("start", kind="stable", ignore_index=True)


def _node_targets(spec: ClusterSpec, start: np.ndarray, span: float) -> np.ndarray:
    """Target number of nodes present in each hour of the timeline."""
    n_hours = round(span / HOUR_S)
    if spec.min_nodes is None:
        return np.full(n_hours, spec.nodes)
    counts = np.bincount(np.minimum((start // HOUR_S).astype(np.int64), n_hours - 1), minlength=n_hours)
    raw = np.clip(np.ceil(spec.nodes * counts / max(counts.max(), 1)), spec.min_nodes, spec.nodes).astype(int)
    target = raw.copy()
    target[1:] = np.maximum(raw[1:], raw[:-1])  # one hour of cool-down before scaling down
    return target


def _presence(
    spec: ClusterSpec, target: np.ndarray, node: np.ndarray, start: np.ndarray, end: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed presence intervals (node, start, end) on the scrape grid, kept open until each node's requests end."""
    interval = spec.scrape_interval_s
    nodes, starts, ends = [], [], []
    for k in range(spec.nodes):
        edges = np.diff(np.concatenate([[0], (target > k).astype(int), [0]]))
        a = snap_to_grid(np.flatnonzero(edges == 1) * HOUR_S, interval, up=False)
        b = snap_to_grid(np.flatnonzero(edges == -1) * HOUR_S, interval, up=True)
        mine = node == k
        if mine.any():
            owner = np.searchsorted(a, start[mine], side="right") - 1
            np.maximum.at(b, owner, snap_to_grid(end[mine], interval, up=True))
        a, b = _merge(a, b)
        nodes.append(np.full(len(a), k))
        starts.append(a)
        ends.append(b)
    return np.concatenate(nodes), np.concatenate(starts), np.concatenate(ends)


@dataclass(frozen=True)
class _Physics:
    """A cluster's activity as step functions, and the energy integrals built on them."""

    spec: ClusterSpec
    on_gpu: StepCounts  # active requests per global GPU index
    on_node: StepCounts  # active requests per node
    present: StepCounts  # 1 while the node is present
    stride: float

    def gpu_energy(self, gpu: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Cumulative GPU energy (J), up to a constant per GPU."""
        idle = self.spec.gpu_idle_w * self.present.integral(_ones, gpu // self.spec.gpus_per_node, t)
        return idle + self.on_gpu.integral(self.spec.gpu_dynamic_w, gpu, t)

    def host_energy(self, node: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Cumulative host energy (J), up to a constant per node."""
        spec = self.spec
        floor_w = spec.host_idle_w + spec.cpu_util_floor * (spec.host_max_w - spec.host_idle_w)
        return floor_w * self.present.integral(_ones, node, t) + self.on_node.integral(
            spec.host_request_w, node, t
        )

    def window_mean(
        self,
        counts: StepCounts,
        f: Callable[[np.ndarray], np.ndarray],
        unit: np.ndarray,
        node: np.ndarray,
        t: np.ndarray,
    ) -> np.ndarray:
        """Mean of f(count) over the present part of the scrape window (t - interval, t]; f(count at t) if none."""
        interval = self.spec.scrape_interval_s
        present_s = self.present.between(_ones, node, t - interval, t)
        now = counts.count_at(unit, t)
        instant = np.where(now > 0, f(np.maximum(now, 1)), 0.0)
        total = counts.between(f, unit, t - interval, t)
        return np.where(present_s > 0, total / np.where(present_s > 0, present_s, 1.0), instant)


@dataclass(frozen=True)
class _ScrapePlan:
    """When each node is scraped, and where its energy counters (re)start."""

    node: np.ndarray  # per node sample
    time: np.ndarray
    segment_key: np.ndarray  # node * stride + counter start, sorted
    segment_start: np.ndarray
    segment_boot: np.ndarray  # True for a node's first counter segment (random since-boot offset)


def _truth_per_day(phys: _Physics, line: _Timeline, start: np.ndarray) -> pd.DataFrame:
    spec = phys.spec
    gpus, nodes = np.arange(spec.nodes * spec.gpus_per_node), np.arange(spec.nodes)
    rows = []
    for day, offset in zip(line.days, line.day_offsets, strict=True):
        at_start, at_end = np.full(len(gpus), offset), np.full(len(gpus), offset + DAY_S)
        gpu_j = float(np.sum(phys.gpu_energy(gpus, at_end) - phys.gpu_energy(gpus, at_start)))
        lo, hi = np.full(spec.nodes, offset), np.full(spec.nodes, offset + DAY_S)
        host_j = float(np.sum(phys.host_energy(nodes, hi) - phys.host_energy(nodes, lo)))
        node_s = float(np.sum(phys.present.between(_ones, nodes, lo, hi)))
        rows.append(
            {
                "cluster": spec.cluster_id,
                "day": day.isoformat(),
                "gpu_energy_j": gpu_j,
                "host_energy_j": host_j,
                "it_energy_j": gpu_j + host_j,
                "idle_energy_j": (spec.gpus_per_node * spec.gpu_idle_w + spec.host_idle_w) * node_s,
                # hardware-seconds provisioned: what embodied carbon and water are amortised over
                "node_seconds": node_s,
                "gpu_seconds": node_s * spec.gpus_per_node,
                "requests": int(np.sum((start >= offset) & (start < offset + DAY_S))),
            }
        )
    return pd.DataFrame(rows)


def _scrape_plan(
    spec: ClusterSpec,
    cfg: SimConfig,
    line: _Timeline,
    presence: tuple[np.ndarray, np.ndarray, np.ndarray],
    stride: float,
) -> _ScrapePlan:
    grid = sample_grid(line.day_offsets, spec.scrape_interval_s)
    mine = [item for item in cfg.restart_at if item[0] == spec.cluster_id]
    restarts = [(node, parse_utc(stamp) - line.t0) for _, node, stamp in mine]
    gaps = [
        (node, parse_utc(a) - line.t0, parse_utc(b) - line.t0)
        for c, node, a, b in cfg.gaps
        if c == spec.cluster_id
    ]
    pres_node, pres_start, pres_end = presence
    sample_node, sample_t, seg_node, seg_start, seg_boot = [], [], [], [], []
    for k, name in enumerate(spec.node_names):
        a, b = pres_start[pres_node == k], pres_end[pres_node == k]
        keep = _in_intervals(grid, a, b)
        for _, lo, hi in (g for g in gaps if g[0] == name):
            keep &= ~((grid >= lo) & (grid < hi))
        sample_node.append(np.full(int(keep.sum()), k))
        sample_t.append(grid[keep])
        resets = np.array([t for node, t in restarts if node == name], dtype=float)
        starts = np.unique(np.concatenate([a, resets[_in_intervals(resets, a, b)]]))
        seg_node.append(np.full(len(starts), k))
        seg_start.append(starts)
        seg_boot.append(np.arange(len(starts)) == 0)
    starts = np.concatenate(seg_start)
    return _ScrapePlan(
        np.concatenate(sample_node),
        np.concatenate(sample_t),
        np.concatenate(seg_node) * stride + starts,
        starts,
        np.concatenate(seg_boot),
    )


def _telemetry(
    phys: _Physics, plan: _ScrapePlan, seed: int, t0: float, gpu_labels: np.ndarray
) -> pd.DataFrame:
    """Long-format samples of one cluster, sorted by timestamp, node, gpu, metric."""
    spec = phys.spec
    gpn = spec.gpus_per_node
    names = EXPORTER_METRICS[spec.exporter]
    g_node, g_t = np.repeat(plan.node, gpn), np.repeat(plan.time, gpn)
    g_gpu = g_node * gpn + np.tile(np.arange(gpn), len(plan.node))

    power = spec.gpu_idle_w + spec.gpu_dynamic_w(phys.on_gpu.count_at(g_gpu, g_t))
    series: list[tuple[str, np.ndarray]] = [(names.power, np.round(power, POWER_DECIMALS))]
    if spec.with_energy_counter:
        offsets = _rng(seed, spec.cluster_id, STREAM_COUNTERS).uniform(
            *COUNTER_SINCE_BOOT_J, size=(len(plan.segment_key), gpn)
        )
        offsets[~plan.segment_boot] = 0.0
        # The segment holding t starts strictly before t: a scrape at a restart instant reads the old counter.
        seg = np.searchsorted(plan.segment_key, g_node * phys.stride + g_t, side="left") - 1
        seg = np.maximum(seg, np.searchsorted(plan.segment_key, g_node * phys.stride, side="left"))
        since = phys.gpu_energy(g_gpu, g_t) - phys.gpu_energy(g_gpu, plan.segment_start[seg])
        counter = (offsets[seg, g_gpu % gpn] + since) / METRICS_BY_NAME[names.energy].scale
        series.append((names.energy, np.round(counter) if spec.exporter == "dcgm" else counter))
    util = np.clip(phys.window_mean(phys.on_gpu, _gpu_util, g_gpu, g_node, g_t), 0.0, 1.0)
    util = util / METRICS_BY_NAME[names.gpu_util].scale
    series.append((names.gpu_util, np.round(util) if spec.exporter == "dcgm" else util))
    cpu = spec.cpu_util_floor + phys.window_mean(
        phys.on_node, partial(_cpu_request_util, floor=spec.cpu_util_floor), plan.node, plan.node, plan.time
    )

    n_gpu, n_node, n_series = len(g_t), len(plan.time), len(series)
    metric_rank = np.concatenate([np.repeat(np.arange(n_series), n_gpu), np.full(n_node, n_series)])
    gpu_index = np.concatenate([np.tile(g_gpu, n_series), np.full(n_node, -1)])
    node_index = np.concatenate([np.tile(g_node, n_series), plan.node])
    times = np.concatenate([np.tile(g_t, n_series), plan.time])
    order = np.lexsort((metric_rank, gpu_index, node_index, times))
    metric = np.array([name for name, _ in series] + [names.cpu_util], dtype=object)
    gpu = np.append(gpu_labels, None)  # index -1: node-level metric
    return pd.DataFrame(
        {
            "timestamp": t0 + times[order],
            "cluster": spec.cluster_id,
            "metric": metric[metric_rank[order]],
            "value": np.concatenate([values for _, values in series] + [np.clip(cpu, 0.0, 1.0)])[order],
            "node": np.array(spec.node_names, dtype=object)[node_index[order]],
            "gpu": gpu[gpu_index[order]],
        }
    )


def _simulate_cluster(
    spec: ClusterSpec, cfg: SimConfig, line: _Timeline, trace: pd.DataFrame | None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Request log, telemetry, truth per day and truth per request of one cluster."""
    gpn = spec.gpus_per_node
    requests = _requests(spec, cfg, line, trace)
    start = requests.pop("start").to_numpy(float)
    end = start + requests["duration_s"].to_numpy(float)

    # Autoscaling and routing.
    target = _node_targets(spec, start, line.span)
    hour = np.minimum((start // HOUR_S).astype(np.int64), len(target) - 1)
    gpu = _rng(cfg.seed, spec.cluster_id, STREAM_ROUTING).integers(
        0, target[hour] * gpn
    )  # node * gpn + local
    node = gpu // gpn
    presence = _presence(spec, target, node, start, end)

    stride = float(np.ceil(max(line.span, end.max(initial=0.0), presence[2].max(initial=0.0)))) + DAY_S
    phys = _Physics(
        spec,
        StepCounts.build(gpu, start, end, stride),
        StepCounts.build(node, start, end, stride),
        StepCounts.build(*presence, stride),
        stride,
    )
    gpu_labels = _gpu_labels(spec, cfg.seed)
    node_labels = np.array(spec.node_names, dtype=object)
    telemetry = _telemetry(
        phys, _scrape_plan(spec, cfg, line, presence, stride), cfg.seed, line.t0, gpu_labels
    )

    # Truth per request: an equal share of the GPU's (node's) request-driven dynamic power while it runs.
    gpu_share = phys.on_gpu.between(lambda n: spec.gpu_dynamic_w(n) / n, gpu, start, end)
    host_share = phys.on_node.between(lambda n: spec.host_request_w(n) / n, node, start, end)
    truth = pd.DataFrame(
        {
            "request_id": requests["request_id"],
            "cluster": spec.cluster_id,
            "node": node_labels[node],
            "gpu": gpu_labels[gpu],
            "start_time": line.t0 + start,
            "duration_s": requests["duration_s"],
            "true_gpu_dynamic_energy_j": gpu_share,
            "true_host_dynamic_energy_j": host_share,
            "true_dynamic_energy_j": gpu_share + host_share,
            "alone_on_gpu": phys.on_gpu.between(_crowded, gpu, start, end) <= 0.0,
        }
    )
    requests.insert(3, "start_time", line.t0 + start)
    if cfg.log_replica:
        requests["node"] = node_labels[node]
        requests["gpu"] = gpu_labels[gpu]
    if spec.faults.any:
        names = EXPORTER_METRICS[spec.exporter]
        telemetry = inject_telemetry_faults(
            telemetry,
            spec.faults,
            cluster=spec.cluster_id,
            exporter=spec.exporter,
            energy_metric=names.energy,
            power_metric=names.power,
            scrape_interval_s=spec.scrape_interval_s,
            node_names=spec.node_names,
            restarts=[(n, parse_utc(at)) for c, n, at in cfg.restart_at if c == spec.cluster_id],
            span_end_s=line.t0 + line.span,
            seed=cfg.seed,
        )
        requests = inject_request_faults(requests, spec.faults, cluster=spec.cluster_id, seed=cfg.seed)
    return requests, telemetry, _truth_per_day(phys, line, start), truth


def _gpu_labels(spec: ClusterSpec, seed: int) -> np.ndarray:
    """Per global GPU index: DCGM's "0".."7" within the node, or a Triton-style "GPU-<uuid>"."""
    n_gpus = spec.nodes * spec.gpus_per_node
    if spec.exporter == "dcgm":
        return np.array([str(g % spec.gpus_per_node) for g in range(n_gpus)], dtype=object)
    raw = _rng(seed, spec.cluster_id, STREAM_GPU_UUIDS).integers(0, 256, size=(n_gpus, 16), dtype=np.uint8)
    return np.array([f"GPU-{uuid.UUID(bytes=bytes(row), version=4)}" for row in raw], dtype=object)


def simulate(cfg: SimConfig) -> SimResult:
    """Simulate every cluster over every day of `cfg` (deterministic given cfg.seed)."""
    line = _timeline(cfg.days)
    needs_trace = any((c.arrivals or cfg.arrivals) != "poisson" for c in cfg.clusters)
    trace = (
        load_azure_trace(Path(cfg.azure_trace_dir) if cfg.azure_trace_dir else None) if needs_trace else None
    )
    parts = [_simulate_cluster(spec, cfg, line, trace) for spec in cfg.clusters]
    return SimResult(
        days=[d.isoformat() for d in line.days],
        clusters=[spec.as_clusters_yml() for spec in cfg.clusters],
        requests=pd.concat([p[0] for p in parts], ignore_index=True),
        telemetry=pd.concat([p[1] for p in parts], ignore_index=True),
        truth_cluster_day=pd.concat([p[2] for p in parts], ignore_index=True),
        truth_requests=pd.concat([p[3] for p in parts], ignore_index=True),
        faults={spec.cluster_id: spec.faults for spec in cfg.clusters if spec.faults.any},
    )


# --------------------------------------------------------------------------------------------------------------
# Writing the input layout
# --------------------------------------------------------------------------------------------------------------


def rfc3339(epoch_s: np.ndarray) -> np.ndarray:
    """Epoch seconds -> RFC 3339 strings in UTC with millisecond precision and 'Z'."""
    millis = np.round(np.asarray(epoch_s, float) * 1000.0).astype(np.int64).astype("datetime64[ms]")
    return np.datetime_as_string(millis, unit="ms", timezone="UTC")


def _clear_day(folder: Path, day: str) -> None:
    """Remove earlier outputs of one day in any format, so a rewrite never leaves two copies behind."""
    for old in folder.glob(f"{day}.*"):
        old.unlink()


def _write_frame(frame: pd.DataFrame, path: Path, fmt: str, time_column: str) -> None:
    if fmt == "prom":
        lines = prom_lines(frame)
        path.write_text("".join(line + "\n" for line in lines))
        return
    frame = frame.dropna(axis="columns", how="all")  # columns only a faulted cluster carries
    if fmt == "parquet":
        frame.to_parquet(path, index=False, compression="zstd")
        return
    text = frame.assign(**{time_column: rfc3339(frame[time_column].to_numpy())})
    if fmt == "jsonl":
        # pandas escapes "/" as "\/"; the values written here contain no backslash, so undoing it is safe.
        body = text.to_json(orient="records", lines=True, double_precision=6).replace("\\/", "/")
        path.write_text(body)
    else:
        compression = {"method": "gzip", "mtime": 0} if fmt == "csv.gz" else None
        text.to_csv(path, index=False, compression=compression)


def write_dataset(
    result: SimResult,
    out_dir: Path,
    telemetry_format: str | Mapping[str, str] = "parquet",
    requests_format: str | Mapping[str, str] = "jsonl",
) -> None:
    """Write clusters.yml, telemetry/<cluster>/<day>.*, requests/<cluster>/<day>.* and truth/ under out_dir.

    `telemetry_format` and `requests_format` are one format for all clusters or a mapping cluster id -> format.
    """
    ids = [str(c["id"]) for c in result.clusters]
    tel_formats = {c: telemetry_format if isinstance(telemetry_format, str) else telemetry_format[c] for c in ids}
    if bad := {f for f in tel_formats.values() if f not in TELEMETRY_FORMATS}:
        raise ValueError(f"telemetry_format must be one of {TELEMETRY_FORMATS}, got {sorted(bad)}")
    formats = {c: requests_format if isinstance(requests_format, str) else requests_format[c] for c in ids}
    if bad := {f for f in formats.values() if f not in REQUEST_FORMATS}:
        raise ValueError(f"requests_format must be one of {REQUEST_FORMATS}, got {sorted(bad)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "clusters.yml").write_text(yaml.safe_dump({"clusters": result.clusters}, sort_keys=False))

    line = _timeline(result.days)
    simulated = set(line.day_offsets)
    tel_time = result.telemetry["timestamp"].to_numpy() - line.t0
    req_time = result.requests["start_time"].to_numpy() - line.t0
    for cluster, request_format in formats.items():
        tel_dir, req_dir = out_dir / "telemetry" / cluster, out_dir / "requests" / cluster
        tel_dir.mkdir(parents=True, exist_ok=True)
        req_dir.mkdir(parents=True, exist_ok=True)
        in_tel, in_req = result.telemetry["cluster"] == cluster, result.requests["cluster"] == cluster
        for day, offset in zip(result.days, line.day_offsets, strict=True):
            # the closing sample at the next midnight, and anything past it (a fault's spill-over), when the next
            # day is not simulated
            closing = tel_time >= offset + DAY_S if offset + DAY_S not in simulated else False
            rows = in_tel & (((tel_time >= offset) & (tel_time < offset + DAY_S)) | closing)
            _clear_day(tel_dir, day)
            _write_frame(
                result.telemetry[rows], tel_dir / f"{day}.{tel_formats[cluster]}", tel_formats[cluster], "timestamp"
            )
            rows = in_req & (req_time >= offset) & (req_time < offset + DAY_S)
            _clear_day(req_dir, day)
            # (a cluster's file leaves out the columns only other clusters fill: a text cluster's the image fields)
            _write_frame(
                result.requests[rows].dropna(axis=1, how="all"), req_dir / f"{day}.{request_format}", request_format,
                "start_time",
            )
            if cluster in result.faults and request_format != "parquet":
                encode_non_utf8(req_dir / f"{day}.{request_format}", result.faults[cluster].non_utf8_requests)

    truth_dir = out_dir / "truth"
    truth_dir.mkdir(exist_ok=True)
    result.truth_cluster_day.to_csv(truth_dir / "cluster_day.csv", index=False)
    result.truth_requests.to_parquet(truth_dir / "requests.parquet", index=False, compression="zstd")


def dataset_inventory(out_dir: Path) -> pd.DataFrame:
    """Every file under out_dir: path (relative), rows (data rows; clusters in clusters.yml) and bytes."""
    rows = []
    for path in sorted(p for p in Path(out_dir).rglob("*") if p.is_file()):
        name = path.name
        if name.endswith(".parquet"):
            count = pq.read_metadata(path).num_rows
        elif name.endswith((".csv", ".csv.gz", ".jsonl")):
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rb") as handle:
                count = sum(1 for _ in handle) - (0 if name.endswith(".jsonl") else 1)
        elif name == "clusters.yml":
            count = len(yaml.safe_load(path.read_text())["clusters"])
        else:
            count = 0
        rows.append(
            {"path": path.relative_to(out_dir).as_posix(), "rows": count, "bytes": path.stat().st_size}
        )
    return pd.DataFrame(rows, columns=["path", "rows", "bytes"])


# --------------------------------------------------------------------------------------------------------------
# Demo dataset
# --------------------------------------------------------------------------------------------------------------

DEMO_DAY = "2023-11-16"  # the day of the Azure 2023 trace
DEMO_SEED = 2023
DEMO_BACKGROUND_REQUESTS = 6000
DEMO_POISSON_REQUESTS = 5000
DEMO_REQUEST_FORMATS: dict[str, str] = {"sim-a100-west": "csv", "sim-h100-east": "jsonl"}


def demo_config() -> SimConfig:
    """The configuration behind data/sample/inputs (H100 power figures are illustrative, not measured)."""
    return SimConfig(
        days=[DEMO_DAY],
        clusters=[
            ClusterSpec(
                cluster_id="sim-a100-west",
                region="US-CAL-CISO",
                gpu_model="A100-SXM4-80GB",
                nodes=4,
                min_nodes=2,
                exporter="dcgm",
                arrivals="azure-replay",
                requests_per_day=DEMO_BACKGROUND_REQUESTS,
            ),
            ClusterSpec(
                cluster_id="sim-h100-east",
                region="US-MIDA-PJM",
                gpu_model="H100-SXM5-80GB",
                nodes=2,
                gpu_idle_w=70.0,
                gpu_max_w=700.0,
                host_idle_w=400.0,
                host_max_w=1200.0,
                exporter="triton",
                with_energy_counter=False,
                gpu_embodied_kg_co2e=300.0,
                server_embodied_kg_co2e=6500.0,
                arrivals="poisson",
                requests_per_day=DEMO_POISSON_REQUESTS,
            ),
        ],
        restart_at=[("sim-a100-west", "gpu-node-00", f"{DEMO_DAY}T12:00:00Z")],
        seed=DEMO_SEED,
    )


def build_demo_dataset(out_dir: Path = DEMO_INPUTS_DIR) -> SimResult:
    """Regenerate the demo input directory (deterministic): parquet telemetry, csv and jsonl requests, truth."""
    result = simulate(demo_config())
    write_dataset(result, Path(out_dir), telemetry_format="parquet", requests_format=DEMO_REQUEST_FORMATS)
    return result


# --------------------------------------------------------------------------------------------------------------
# Command line (exposed as `impact simulate`)
# --------------------------------------------------------------------------------------------------------------


def _days_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    if args.day:
        return list(args.day)
    if args.start and args.end:
        first, last = dt.date.fromisoformat(args.start), dt.date.fromisoformat(args.end)
        if last < first:
            parser.error("--end is before --start")
        return [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    parser.error("give --day (repeatable) or both --start and --end")
    raise AssertionError  # parser.error exits


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="impact simulate",
        description="Simulate an LLM inference cluster: write telemetry, request logs, clusters.yml and truth/.",
    )
    parser.add_argument("--out", type=Path, required=True, help="output input-directory")
    parser.add_argument(
        "--demo", action="store_true", help="write the bundled demo dataset (other options ignored)"
    )
    parser.add_argument("--day", action="append", help="UTC day YYYY-MM-DD (repeatable)")
    parser.add_argument("--start", help="first UTC day (with --end)")
    parser.add_argument("--end", help="last UTC day, inclusive")
    parser.add_argument("--requests-per-day", type=int, default=20000)
    parser.add_argument("--arrivals", choices=ARRIVAL_MODES, default="azure")
    parser.add_argument("--azure-trace-dir", help=f"default {DEFAULT_AZURE_TRACE_DIR}")
    parser.add_argument("--cluster-id", default="sim-a100")
    parser.add_argument("--region", default="US-CAL-CISO")
    parser.add_argument("--gpu-model", default="A100-SXM4-80GB")
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--min-nodes", type=int, help="enable autoscaling down to this many nodes")
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--exporter", choices=EXPORTERS, default="dcgm")
    parser.add_argument("--no-energy-counter", action="store_true", help="write power and utilisation only")
    parser.add_argument("--scrape-interval-s", type=float, default=15.0)
    parser.add_argument(
        "--restart",
        action="append",
        default=[],
        metavar="NODE@TIMESTAMP",
        help="exporter restart (repeatable)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="inject a fault the pipeline must handle, truth unchanged (repeatable; keys: "
        + ", ".join(f.name for f in dataclasses.fields(Faults))
        + "; see orchestration/lib/simulation/simfaults.py), e.g. --fault counter_glitches=3 --fault duration_unit=ms",
    )
    parser.add_argument("--telemetry-format", choices=TELEMETRY_FORMATS, default="parquet")
    parser.add_argument("--requests-format", choices=REQUEST_FORMATS, default="jsonl")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `impact simulate`; prints what was written. Returns 0, or 2 on invalid settings."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.demo:
            build_demo_dataset(args.out)
        else:
            restarts = []
            for item in args.restart:
                node, sep, stamp = item.partition("@")
                if not sep:
                    parser.error(f"--restart expects NODE@TIMESTAMP, got {item!r}")
                restarts.append((args.cluster_id, node, stamp))
            spec = ClusterSpec(
                cluster_id=args.cluster_id,
                region=args.region,
                gpu_model=args.gpu_model,
                nodes=args.nodes,
                min_nodes=args.min_nodes,
                gpus_per_node=args.gpus_per_node,
                exporter=args.exporter,
                with_energy_counter=not args.no_energy_counter,
                scrape_interval_s=args.scrape_interval_s,
                faults=Faults.parse(args.fault),
            )
            cfg = SimConfig(
                days=_days_from(args, parser),
                clusters=[spec],
                requests_per_day=args.requests_per_day,
                arrivals=args.arrivals,
                azure_trace_dir=args.azure_trace_dir,
                restart_at=restarts,
                seed=args.seed,
            )
            write_dataset(simulate(cfg), args.out, args.telemetry_format, args.requests_format)
    except (ValueError, OSError) as exc:
        print(f"impact simulate: {exc}", file=sys.stderr)
        return 2
    inventory = dataset_inventory(args.out)
    print(f"wrote {len(inventory)} files under {args.out}:")
    print(inventory.to_string(index=False))
    print(f"total {inventory['rows'].sum():,} rows, {inventory['bytes'].sum() / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
