"""Faults real exporters and request logs have, injected into a simulated cluster day (``simulate.py``).

A fault changes what the pipeline is handed, never the physics: ``truth/`` stays the energy that was really drawn,
so a test can tell a fault that is handled (metered energy still equals the truth, or the faulty part is flagged
and quarantined) from one that silently changes the numbers. Each cluster carries its own ``Faults``
(``ClusterSpec.faults``), so one simulated day can hold several faults side by side, one per cluster, each with its
own truth. The faults (docs/telemetry-faults.md describes how the pipeline treats each):

=========================  ==========================================================================================
counter_glitches           that many energy-counter samples read 0 (every other one -0) mid-series; the counter then
                           continues where it was (a driver or exporter hiccup, not a reset)
power_spikes               that many power samples read 10,000x the real value (a unit slip or a corrupt reading)
duplicate_scrape_ms        every sample is scraped a second time this many ms later (an HA pair of Prometheus
                           servers, or a migration): the copy carries prometheus_replica="b", the original "a"
request_node_spelling      requests name the node in upper case (even-numbered nodes) or with the exporter's port
                           (odd-numbered nodes: ``gpu-node-01:9400``), as routers and exporters often disagree
gpu_relabel_at             from this instant the DCGM series name the GPU by its UUID instead of its index (an
                           exporter upgrade); requests keep the index. With ``relabel_uuid_column`` (default) every
                           GPU sample also carries ``gpu_uuid`` (DCGM exports ``gpu`` and ``UUID`` together), which
                           links the two names
non_utf8_requests          that many request lines carry a cp1252 byte (tenant "café" written as b"caf\\xe9")
request_unknown_names      that many requests name a GPU that sent no telemetry (index 99 of their node; every
                           other one a node that sent none, gpu-node-99): they belong to the next level up
duration_unit              "ms": the request log's duration_s holds milliseconds
stale_tail_s               after a node leaves (autoscaling), its series go on repeating their last value for this
                           long (an export through query_range, whose 5-minute look-back repeats a vanished series)
counter_float32            energy counters stored as 32-bit floats (a lossy export: ~8 J resolution at 1e8 J)
clock_skew_s               the cluster's last node's telemetry clock runs this many seconds ahead (its samples
                           stamped after the simulated span are not written: an export by time range)
exporter_pod_labels        (.prom output) DCGM series carry the exporter pod's name and address, which change at each
                           exporter restart (``restart_at``), besides the stable Hostname
=========================  ==========================================================================================

Random choices use their own stream per cluster (``STREAM_FAULTS``), so a fault never changes the clean part of the
simulation.
"""

from __future__ import annotations

import dataclasses
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

STREAM_FAULTS = 5
DURATION_UNITS: tuple[str, ...] = ("s", "ms")
POWER_SPIKE_FACTOR = 1.0e4
NON_UTF8_TENANT = "café"  # written as cp1252: b"caf\xe9"
REPLICA_LABEL = "prometheus_replica"
GPU_UUID_NAMESPACE = uuid.UUID("6f1d2c3e-8b4a-4c5d-9e7f-0a1b2c3d4e5f")


@dataclass(frozen=True)
class Faults:
    """The faults of one simulated cluster (all off by default); see the module docstring."""

    counter_glitches: int = 0
    power_spikes: int = 0
    duplicate_scrape_ms: float = 0.0
    request_node_spelling: bool = False
    gpu_relabel_at: str | None = None
    relabel_uuid_column: bool = True
    non_utf8_requests: int = 0
    request_unknown_names: int = 0
    duration_unit: str = "s"
    stale_tail_s: float = 0.0
    counter_float32: bool = False
    clock_skew_s: float = 0.0
    exporter_pod_labels: bool = False

    def __post_init__(self) -> None:
        if self.duration_unit not in DURATION_UNITS:
            raise ValueError(f"duration_unit must be one of {DURATION_UNITS}, got {self.duration_unit!r}")
        for name in ("counter_glitches", "power_spikes", "non_utf8_requests", "request_unknown_names"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative")
        if self.duplicate_scrape_ms < 0 or self.stale_tail_s < 0:
            raise ValueError("duplicate_scrape_ms and stale_tail_s must be non-negative")

    @property
    def any(self) -> bool:
        return self != Faults()

    @classmethod
    def parse(cls, items: Sequence[str]) -> Faults:
        """Faults from `KEY=VALUE` strings (the `impact simulate --fault` option); booleans take true/false."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, object] = {}
        for item in items:
            key, sep, text = item.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in fields:
                raise ValueError(f"--fault expects KEY=VALUE with KEY one of {', '.join(fields)}; got {item!r}")
            kind = fields[key].type
            if "bool" in str(kind):
                if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(f"--fault {key} takes true or false, not {text!r}")
                values[key] = text.lower() in ("true", "1", "yes")
            elif "int" in str(kind):
                values[key] = int(text)
            elif "float" in str(kind):
                values[key] = float(text)
            else:
                values[key] = text or None
        return cls(**values)


def gpu_uuid(cluster: str, node: object, gpu: object) -> str:
    """A deterministic, DCGM-style UUID for a GPU index of a node."""
    return f"GPU-{uuid.uuid5(GPU_UUID_NAMESPACE, f'{cluster}/{node}/{gpu}')}"


def _rng(seed: int, cluster: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(cluster.encode()), STREAM_FAULTS])


def _pick(rng: np.random.Generator, candidates: np.ndarray, n: int) -> np.ndarray:
    """n distinct positions among `candidates` (all of them when there are fewer)."""
    if n <= 0 or len(candidates) == 0:
        return candidates[:0]
    return np.sort(rng.choice(candidates, size=min(n, len(candidates)), replace=False))


def inject_telemetry_faults(
    telemetry: pd.DataFrame,
    faults: Faults,
    *,
    cluster: str,
    exporter: str,
    energy_metric: str,
    power_metric: str,
    scrape_interval_s: float,
    node_names: Sequence[str],
    restarts: Sequence[tuple[str, float]],
    span_end_s: float,
    seed: int,
) -> pd.DataFrame:
    """One cluster's long-format telemetry (epoch-second timestamps) with its faults; the input is not changed."""
    if not faults.any:
        return telemetry
    rng = _rng(seed, cluster)
    out = telemetry.copy()
    series = out["node"].astype(str) + "/" + out["gpu"].astype(str) + "/" + out["metric"]
    # first and last sample of each series are never faulted (a glitch needs neighbours to be one)
    ordinal = out.groupby(series, sort=False).cumcount()
    inner = (ordinal > 0) & (ordinal < out.groupby(series, sort=False)["timestamp"].transform("size") - 1)

    if faults.stale_tail_s > 0:
        out = _stale_tails(out, faults.stale_tail_s, scrape_interval_s, span_end_s)
        series = out["node"].astype(str) + "/" + out["gpu"].astype(str) + "/" + out["metric"]
        ordinal = out.groupby(series, sort=False).cumcount()
        inner = (ordinal > 0) & (ordinal < out.groupby(series, sort=False)["timestamp"].transform("size") - 1)
    if faults.counter_glitches:
        rows = _pick(rng, np.flatnonzero(((out["metric"] == energy_metric) & inner).to_numpy()),
                     faults.counter_glitches)
        zeros = np.where(np.arange(len(rows)) % 2 == 0, 0.0, -0.0)
        out.iloc[rows, out.columns.get_loc("value")] = zeros
    if faults.power_spikes:
        rows = _pick(rng, np.flatnonzero(((out["metric"] == power_metric) & inner).to_numpy()), faults.power_spikes)
        col = out.columns.get_loc("value")
        out.iloc[rows, col] = out.iloc[rows, col].to_numpy() * POWER_SPIKE_FACTOR
    if faults.counter_float32:
        counter = out["metric"] == energy_metric
        out.loc[counter, "value"] = out.loc[counter, "value"].to_numpy(np.float32).astype(float)
    if faults.gpu_relabel_at is not None and exporter == "dcgm":
        from orchestration.lib.simulation.simulate import parse_utc

        on_gpu = out["gpu"].notna()
        uuids = pd.Series(
            [gpu_uuid(cluster, n, g) for n, g in zip(out["node"], out["gpu"], strict=True)], index=out.index
        ).where(on_gpu)
        after = on_gpu & (out["timestamp"] >= parse_utc(faults.gpu_relabel_at))
        out.loc[after, "gpu"] = uuids[after]
        if faults.relabel_uuid_column:
            out["gpu_uuid"] = uuids
    if faults.exporter_pod_labels:
        out["pod"], out["instance"] = _pod_labels(out, restarts, exporter)
    if faults.clock_skew_s:
        # an export by timestamp range ends where the simulated span does: the skewed node's last seconds fall out
        skewed = out["node"] == node_names[-1]
        out.loc[skewed, "timestamp"] = out.loc[skewed, "timestamp"] + faults.clock_skew_s
        out = out[out["timestamp"] <= span_end_s]
    if faults.duplicate_scrape_ms > 0:
        copy = out.assign(timestamp=out["timestamp"] + faults.duplicate_scrape_ms / 1000.0)
        out = pd.concat([out.assign(**{REPLICA_LABEL: "a"}), copy.assign(**{REPLICA_LABEL: "b"})])
    return out.sort_values("timestamp", kind="stable", ignore_index=True)


def _stale_tails(out: pd.DataFrame, tail_s: float, interval: float, span_end_s: float) -> pd.DataFrame:
    """Repeat each node's last samples at the next scrape instants for `tail_s` after it left (not past its return
    or the end of the simulated span)."""
    copies = []
    for node, rows in out.groupby("node", sort=False):  # a handful of nodes
        times = np.unique(rows["timestamp"].to_numpy())
        following = np.append(times[1:], np.inf)
        ends = times[(following - times > 1.5 * interval)]
        for end in ends:
            resume = following[np.searchsorted(times, end)]
            steps = np.arange(1, int(tail_s // interval) + 1) * interval
            steps = steps[(end + steps < resume - 0.5 * interval) & (end + steps < span_end_s)]
            if len(steps) == 0:
                continue
            last = rows[rows["timestamp"] == end]
            copies += [last.assign(timestamp=end + s) for s in steps]
    return pd.concat([out, *copies], ignore_index=True) if copies else out


def _pod_labels(out: pd.DataFrame, restarts: Sequence[tuple[str, float]], exporter: str) -> tuple[pd.Series, ...]:
    """The exporter pod's name and address of each sample: a new pod at each restart of its node's exporter."""
    generation = np.zeros(len(out), dtype=np.int64)
    for node, at in restarts:
        generation += ((out["node"] == node) & (out["timestamp"] > at)).to_numpy()
    port = 9400 if exporter == "dcgm" else 8002
    node = out["node"].astype(str)
    pod = node.str.replace("gpu-node-", f"{exporter}-exporter-", regex=False) + "-g" + pd.Series(
        generation, index=out.index).astype(str)
    address = "10.1." + pd.Series(generation, index=out.index).astype(str) + "." + node.str[-2:].str.lstrip("0")
    return pod, address.str.replace(r"\.$", ".0", regex=True) + f":{port}"


def inject_request_faults(requests: pd.DataFrame, faults: Faults, *, cluster: str, seed: int) -> pd.DataFrame:
    """One cluster's request log with its faults (the truth keeps the real names and durations)."""
    if not faults.any:
        return requests
    out = requests.copy()
    if faults.request_node_spelling and "node" in out:
        index = out["node"].astype(str).str.extract(r"(\d+)$")[0].astype(float)
        even = (index % 2 == 0).to_numpy()
        out["node"] = np.where(even, out["node"].astype(str).str.upper(), out["node"].astype(str) + ":9400")
    if faults.duration_unit == "ms":
        out["duration_s"] = np.round(out["duration_s"].to_numpy() * 1000.0, 3)
    if faults.non_utf8_requests:
        rows = _pick(_rng(seed, cluster), np.arange(len(out)), faults.non_utf8_requests)
        out.iloc[rows, out.columns.get_loc("tenant")] = NON_UTF8_TENANT
    if faults.request_unknown_names and "node" in out:
        rows = _pick(np.random.default_rng([seed, zlib.crc32(cluster.encode()), STREAM_FAULTS, 1]),
                     np.arange(len(out)), faults.request_unknown_names)
        out.iloc[rows, out.columns.get_loc("gpu")] = "99"
        out.iloc[rows[1::2], out.columns.get_loc("node")] = "gpu-node-99"
    return out


def encode_non_utf8(path, count: int) -> None:
    """Re-encode the NON_UTF8_TENANT values of a written text file as cp1252 (what a Windows export does)."""
    if count <= 0:
        return
    body = path.read_bytes()
    written = (NON_UTF8_TENANT.encode("utf-8"), NON_UTF8_TENANT.encode("ascii", "backslashreplace").replace(
        b"\\x", b"\\u00"))  # as UTF-8 (CSV) or as a JSON escape (pandas' JSON lines)
    for text in written:
        body = body.replace(text, NON_UTF8_TENANT.encode("cp1252"))
    path.write_bytes(body)


# --------------------------------------------------------------------------------------------------------------
# Prometheus text exposition (.prom) as the exporters label their series
# --------------------------------------------------------------------------------------------------------------


def _label(name: str, values: pd.Series) -> pd.Series:
    present = values.notna() & (values.astype(str) != "")
    text = values.astype(str).str.replace("\\", "\\\\", regex=False).str.replace('"', '\\"', regex=False)
    return ("," + name + '="' + text + '"').where(present, "")


def prom_lines(frame: pd.DataFrame) -> list[str]:
    """Prometheus text lines (millisecond timestamps) for long-format samples, labelled as the exporters do: DCGM
    series carry Hostname, gpu (and UUID); Triton's carry instance=<node>:8002 (and gpu_uuid). Optional columns
    become labels: gpu_uuid (UUID), pod and instance (the exporter pod), prometheus_replica."""
    if frame.empty:
        return []
    dcgm = frame["metric"].str.startswith("DCGM_")
    empty = pd.Series("", index=frame.index)
    col = {c: frame[c] if c in frame else pd.Series(None, index=frame.index, dtype=object) for c in
           ("gpu_uuid", "pod", "instance", REPLICA_LABEL)}
    dcgm_labels = (
        _label("Hostname", frame["node"]) + _label("gpu", frame["gpu"]) + _label("UUID", col["gpu_uuid"])
        + _label("pod", col["pod"]) + _label("instance", col["instance"])
    )
    triton_labels = _label("instance", frame["node"].astype(str) + ":8002") + _label("gpu_uuid", frame["gpu"])
    labels = (
        _label("cluster", frame["cluster"]) + dcgm_labels.where(dcgm, empty) + triton_labels.where(~dcgm, empty)
        + _label(REPLICA_LABEL, col[REPLICA_LABEL])
    )
    millis = np.round(frame["timestamp"].to_numpy(float) * 1000.0).astype(np.int64).astype(str)
    values = frame["value"].map(repr)
    lines = frame["metric"] + "{" + labels.str.lstrip(",") + "} " + values + " " + millis
    return lines.tolist()
