"""Exporter metric names and their canonical quantities.

Every telemetry sample is mapped onto one of a handful of canonical quantities, in SI units, so the SQL
downstream never has to know which exporter produced it. Sources: NVIDIA dcgm-exporter default-counters.csv
(POWER_USAGE W, TOTAL_ENERGY_CONSUMPTION mJ counter, GPU_UTIL %), Triton metrics docs (nv_gpu_power_usage W,
nv_energy_consumption J counter, nv_gpu_utilization 0-1, nv_cpu_utilization 0-1), node_exporter
(node_cpu_seconds_total, seconds counter per cpu and mode).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricSpec:
    metric: str  # the exporter's own Prometheus name
    quantity: str  # canonical quantity
    scale: float  # multiply the exported value by this to get SI units
    level: str  # "gpu" or "node"
    exporter: str


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("DCGM_FI_DEV_POWER_USAGE", "gpu_power_w", 1.0, "gpu", "dcgm"),
    MetricSpec("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "gpu_energy_counter_j", 1e-3, "gpu", "dcgm"),
    MetricSpec("DCGM_FI_DEV_GPU_UTIL", "gpu_utilization_ratio", 1e-2, "gpu", "dcgm"),
    MetricSpec("nv_gpu_power_usage", "gpu_power_w", 1.0, "gpu", "triton"),
    MetricSpec("nv_energy_consumption", "gpu_energy_counter_j", 1.0, "gpu", "triton"),
    MetricSpec("nv_gpu_utilization", "gpu_utilization_ratio", 1.0, "gpu", "triton"),
    MetricSpec("nv_cpu_utilization", "cpu_utilization_ratio", 1.0, "node", "triton"),
    MetricSpec("node_cpu_seconds_total", "cpu_seconds_counter_s", 1.0, "node", "node_exporter"),
)

METRICS_BY_NAME: dict[str, MetricSpec] = {m.metric: m for m in METRICS}

# Label aliases, in order of preference, as the exporters spell them.
NODE_LABELS: tuple[str, ...] = ("node", "Hostname", "hostname", "instance", "host")
GPU_LABELS: tuple[str, ...] = ("gpu", "gpu_uuid", "UUID", "uuid")
# Other names of the same GPU that DCGM exports beside `gpu` (its index): they tie an index to a UUID and a PCI bus
# id, so a series relabelled mid-day (index -> UUID after an exporter upgrade) is still the same GPU.
GPU_UUID_LABELS: tuple[str, ...] = ("UUID", "gpu_uuid", "uuid")
GPU_PCI_LABELS: tuple[str, ...] = ("pci_bus_id", "PCI_BUS_ID")
CLUSTER_LABELS: tuple[str, ...] = ("cluster",)
