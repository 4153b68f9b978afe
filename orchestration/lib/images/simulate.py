"""Simulated diffusion (image-generation) cluster, on the text simulator's machinery (orchestration.lib.simulation.simulate):
the same input layout, autoscaling, routing, scrape plan, exporters, counters and truth, with image requests and
their physics (orchestration.lib.images.physics) instead of LLM requests.

Physical model (what differs from lib/simulation/simulate.py)
==================================================
Requests
    ``requests_per_day`` arrivals per cluster-day, diurnal Poisson (lib/simulation/simulate.py's intensity), of one diffusion
    model. Each draws (``ImageWorkload``): an output size, a step count (or a quality label, whose steps and size
    come from the shipped quality table, data/factors/image_quality.csv), images per call, image-to-image with an
    input image and a strength, guidance on or off, and zero, one or two LoRA adapters; a tenant. The duration is
    the physics' runtime of the call alone on a GPU (rounded to the microsecond before anything is integrated).

Per-GPU batching
    A request goes to a GPU drawn uniformly among the GPUs of the nodes present when it arrives (as for text). The
    GPU's dynamic batcher holds it until the next batching instant (every ``batch_window_s`` from midnight), when it
    starts with the other requests held for that GPU: requests start together and run concurrently. The log's
    start_time is that start (the start of computation), as a serving framework's log gives it.

GPU power
    A request alone on a GPU draws its own average dynamic power p_i = (dynamic energy alone) / duration (the
    physics: the denoiser near full power, per-call and per-step overheads lower). Concurrent requests add their
    demands up to the GPU's headroom: P = gpu_idle_w + min(sum of p_i of the active requests, gpu_max_w -
    gpu_idle_w). Simplification, as for text: a request's duration does not depend on the load.

Truth
    A request's true GPU dynamic energy is its share of the GPU's dynamic power in proportion to its demand: the
    integral over its run of p_i x min(1, headroom / sum p). Alone on its GPU it is exactly p_i x duration.
    Host power, telemetry (DCGM or Triton names), counters, restarts, gaps and the per-day truth are
    lib/simulation/simulate.py's. truth/requests.parquet also carries the image fields and true_gpu_energy_alone_j.

``build_image_demo`` adds the demo's image cluster (``sim-sdxl-central``) to data/sample/inputs without touching the
text clusters' files (their figures stay as they are), and writes demo profiling runs and the demo's LoRA adapters
(factors/models.yml: illustrative footprints, labelled as such).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from orchestration.lib.images.physics import SDXL_A100, DiffusionPhysics, profiling_runs
from orchestration.lib.images.requests import SHIPPED_QUALITY_CSV
from orchestration.lib.simulation import simulate as sim

ENDPOINT = "/v1/images/generations"
STREAM_IMAGE_MIX = 11  # independent of the text streams (lib/simulation/simulate.py STREAM_*)


@dataclass(frozen=True)
class ImageWorkload:
    """What the requests ask for: each a (values, probabilities) pair, drawn independently per request."""

    sizes: tuple[tuple[tuple[int, int], float], ...] = (
        ((1024, 1024), 0.45), ((768, 768), 0.15), ((512, 512), 0.10), ((1024, 1536), 0.10), ((1536, 1024), 0.10),
        ((1280, 720), 0.10),
    )  # fmt: skip
    steps: tuple[tuple[int, float], ...] = ((20, 0.2), (25, 0.15), (30, 0.35), (40, 0.15), (50, 0.15))
    quality_share: float = 0.2  # requests that give a quality label instead of steps and size
    qualities: tuple[tuple[str, float], ...] = (("standard", 0.7), ("hd", 0.3))
    images: tuple[tuple[int, float], ...] = ((1, 0.7), (2, 0.15), (4, 0.15))
    img2img_share: float = 0.15  # with an input image of the output's size and strength U(0.3, 0.9)
    guidance_off_share: float = 0.1
    adapters: tuple[str, ...] = ("pixel-art-xl", "watercolor-xl")
    lora_shares: tuple[float, float] = (0.25, 0.05)  # one adapter, two adapters
    tenants: tuple[tuple[str, float], ...] = (("studio", 0.6), ("mobile-app", 0.4))


@dataclass
class ImageClusterSpec(sim.ClusterSpec):
    """A diffusion cluster: lib/simulation/simulate.py's ClusterSpec (hardware, exporter, autoscaling, clusters.yml figures)
    plus the model's physics, the workload and the batching window."""

    cluster_id: str = "sim-sdxl"
    gpus_per_node: int = 4
    nodes: int = 2
    physics: DiffusionPhysics = SDXL_A100
    workload: ImageWorkload = field(default_factory=ImageWorkload)
    batch_window_s: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_window_s <= 0:
            raise ValueError("batch_window_s must be positive")

    def gpu_dynamic_w(self, active: np.ndarray) -> np.ndarray:
        """GPU power above idle with `active` W of dynamic demand from the running requests (capped)."""
        return np.minimum(active, self.gpu_max_w - self.gpu_idle_w)


def _pick(rng: np.random.Generator, table: Sequence[tuple[object, float]], n: int) -> np.ndarray:
    values = np.empty(len(table), dtype=object)
    values[:] = [v for v, _ in table]
    p = np.array([w for _, w in table], float)
    return values[rng.choice(len(table), size=n, p=p / p.sum())]


def _quality_table() -> pd.DataFrame:
    table = pd.read_csv(SHIPPED_QUALITY_CSV)
    return table[table["model"].isna()].set_index("quality")


def image_requests(spec: ImageClusterSpec, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """n requests of one day (no times yet): the logged image fields, and the effective ones the physics uses."""
    w = spec.workload
    size = _pick(rng, w.sizes, n)
    width = np.array([s[0] for s in size], np.int64)
    height = np.array([s[1] for s in size], np.int64)
    steps = _pick(rng, w.steps, n).astype(np.int64)
    labelled = rng.random(n) < w.quality_share
    quality = np.where(labelled, _pick(rng, w.qualities, n), None)
    table = _quality_table()
    for label in table.index:  # a few labels
        mine = quality == label
        steps[mine] = int(table.loc[label, "steps"])
        width[mine] = int(table.loc[label, "width"])
        height[mine] = int(table.loc[label, "height"])
    images = _pick(rng, w.images, n).astype(np.int64)
    img2img = rng.random(n) < w.img2img_share
    strength = np.where(img2img, np.round(rng.uniform(0.3, 0.9, n), 2), 1.0)
    guidance = rng.random(n) >= w.guidance_off_share
    draw = rng.random(n)
    first = rng.integers(len(w.adapters), size=n)
    lora = [
        None if d >= w.lora_shares[0] + w.lora_shares[1]
        else [w.adapters[f]] if d < w.lora_shares[0]
        else sorted(w.adapters[:2])
        for d, f in zip(draw, first)
    ]  # fmt: skip
    frame = pd.DataFrame(
        {
            "modality": "image",
            "width": width, "height": height, "images": images, "steps": steps, "strength": strength,
            "input_width": np.where(img2img, width, 0), "input_height": np.where(img2img, height, 0),
            "guidance": guidance, "quality": quality, "lora": lora,
            "tenant": _pick(rng, w.tenants, n),
        }
    )  # fmt: skip
    # the log: a quality request gives its label only; text-to-image gives no strength or input size
    logged = frame.astype({"width": "Int64", "height": "Int64", "steps": "Int64", "input_width": "Int64",
                           "input_height": "Int64", "strength": "Float64"})  # fmt: skip
    logged.loc[labelled, ["width", "height", "steps"]] = pd.NA
    logged.loc[~img2img, ["strength", "input_width", "input_height"]] = pd.NA
    return logged.assign(
        duration_s=np.maximum(np.round(spec.physics.runtime_s(frame), 6), 1e-6),
        demand_w=spec.physics.dynamic_energy_j(frame) / spec.physics.runtime_s(frame),
        effective_width=width,
        effective_height=height,
        effective_steps=steps,
    )


def _weighted_steps(unit: np.ndarray, start: np.ndarray, end: np.ndarray, weight: np.ndarray, stride: float):
    """lib/simulation/simulate.py's StepCounts with each interval weighted: the level is the sum of the weights of the open
    intervals (W of demand on a GPU), ends before starts at equal times."""
    units = np.concatenate([unit, unit]).astype(np.int64)
    times = np.concatenate([start, end]).astype(float)
    steps = np.concatenate([weight, -weight]).astype(float)
    order = np.lexsort((np.sign(steps), times, units))
    level = np.round(np.cumsum(steps[order]), 6)  # exact zeros between busy spells
    return sim.StepCounts(stride, units[order] * stride + times[order], times[order], level)


def _simulate_image_cluster(
    spec: ImageClusterSpec, cfg: sim.SimConfig, line
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Request log, telemetry, truth per day and truth per request of one image cluster (lib/simulation/simulate.py's
    _simulate_cluster with image requests, batching and demand-weighted power)."""
    gpn = spec.gpus_per_node
    n = cfg.requests_per_day if spec.requests_per_day is None else spec.requests_per_day
    parts = []
    for day, offset in zip(line.days, line.day_offsets, strict=True):
        rng = sim._rng(cfg.seed, spec.cluster_id, STREAM_IMAGE_MIX, day.toordinal())
        arrival = offset + sim.diurnal_seconds(np.sort(rng.random(n)))
        index = pd.Series(np.arange(n)).astype(str).str.zfill(6)
        parts.append(
            image_requests(spec, n, rng).assign(
                request_id=f"{spec.cluster_id}-{day:%Y%m%d}-" + index, arrival=arrival
            )
        )
    requests = pd.concat(parts, ignore_index=True)
    arrival = requests["arrival"].to_numpy(float)
    target = sim._node_targets(spec, arrival, line.span)
    hour = np.minimum((arrival // sim.HOUR_S).astype(np.int64), len(target) - 1)
    gpu = sim._rng(cfg.seed, spec.cluster_id, sim.STREAM_ROUTING).integers(0, target[hour] * gpn)
    node = gpu // gpn
    # the dynamic batcher: held until the next batching instant, to the millisecond
    start = np.round(np.ceil(arrival / spec.batch_window_s) * spec.batch_window_s * 1000.0) / 1000.0
    end = start + requests["duration_s"].to_numpy(float)
    presence = sim._presence(spec, target, node, start, end)
    stride = float(np.ceil(max(line.span, end.max(initial=0.0), presence[2].max(initial=0.0)))) + sim.DAY_S
    demand = requests["demand_w"].to_numpy(float)
    on_gpu = _weighted_steps(gpu, start, end, demand, stride)
    phys = sim._Physics(
        spec,
        on_gpu,
        sim.StepCounts.build(node, start, end, stride),
        sim.StepCounts.build(*presence, stride),
        stride,
    )
    gpu_labels = sim._gpu_labels(spec, cfg.seed)
    node_labels = np.array(spec.node_names, dtype=object)
    telemetry = sim._telemetry(
        phys, sim._scrape_plan(spec, cfg, line, presence, stride), cfg.seed, line.t0, gpu_labels
    )

    headroom = spec.gpu_max_w - spec.gpu_idle_w
    share = on_gpu.between(lambda level: np.minimum(1.0, headroom / level), gpu, start, end)
    gpu_share = demand * share
    host_share = phys.on_node.between(lambda k: spec.host_request_w(k) / k, node, start, end)
    crowd = sim.StepCounts.build(gpu, start, end, stride)
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
            "alone_on_gpu": crowd.between(sim._crowded, gpu, start, end) <= 0.0,
            "true_gpu_energy_alone_j": spec.physics.idle_w * requests["duration_s"]
            + demand * requests["duration_s"],
            "images": requests["images"],
        }
    )
    log = requests.drop(
        columns=["arrival", "demand_w", "effective_width", "effective_height", "effective_steps"]
    ).assign(cluster=spec.cluster_id, model=spec.physics.model, start_time=line.t0 + start, endpoint=ENDPOINT)
    if cfg.log_replica:
        log["node"] = node_labels[node]
        log["gpu"] = gpu_labels[gpu]
    order = ["request_id", "cluster", "model", "start_time", "duration_s", "modality", "width", "height", "images",
             "steps", "strength", "input_width", "input_height", "guidance", "quality", "lora", "tenant",
             "endpoint"]  # fmt: skip
    log = log[order + [c for c in ("node", "gpu") if c in log]].sort_values("start_time", kind="stable")
    return log.reset_index(drop=True), telemetry, sim._truth_per_day(phys, line, start), truth


def simulate(cfg: sim.SimConfig) -> sim.SimResult:
    """Every cluster of `cfg` over every day: image clusters (ImageClusterSpec) here, text clusters by
    lib/simulation/simulate.py, each on its own random streams (a text cluster's result is the same with or without image
    clusters beside it)."""
    line = sim._timeline(cfg.days)
    text = [c for c in cfg.clusters if not isinstance(c, ImageClusterSpec)]
    needs_trace = any((c.arrivals or cfg.arrivals) != "poisson" for c in text)
    trace = (
        sim.load_azure_trace(Path(cfg.azure_trace_dir) if cfg.azure_trace_dir else None)
        if needs_trace
        else None
    )
    parts = [
        _simulate_image_cluster(spec, cfg, line) if isinstance(spec, ImageClusterSpec)
        else sim._simulate_cluster(spec, cfg, line, trace)
        for spec in cfg.clusters
    ]  # fmt: skip
    # token counts stay whole numbers beside the image requests' missing ones
    requests = pd.concat(
        [p[0].astype({c: "Int64" for c in ("input_tokens", "output_tokens") if c in p[0]}) for p in parts],
        ignore_index=True,
    )
    return sim.SimResult(
        days=[d.isoformat() for d in line.days],
        clusters=[spec.as_clusters_yml() for spec in cfg.clusters],
        requests=requests,
        telemetry=pd.concat([p[1] for p in parts], ignore_index=True),
        truth_cluster_day=pd.concat([p[2] for p in parts], ignore_index=True),
        truth_requests=pd.concat([p[3] for p in parts], ignore_index=True),
    )


def write_dataset(
    result: sim.SimResult,
    out_dir: Path,
    telemetry_format: str = "parquet",
    requests_format: str | Mapping[str, str] = "jsonl",
) -> None:
    """lib/simulation/simulate.py's write_dataset; LoRA lists are written as names separated by ';' in CSV files (JSON
    lines and Parquet keep lists)."""
    formats = {
        str(c["id"]): requests_format if isinstance(requests_format, str) else requests_format[str(c["id"])]
        for c in result.clusters
    }
    csv = result.requests["cluster"].isin([c for c, f in formats.items() if f == "csv"])
    if "lora" in result.requests and csv.any():
        requests = result.requests.copy()
        requests.loc[csv, "lora"] = requests.loc[csv, "lora"].map(
            lambda v: ";".join(v) if isinstance(v, list) else v
        )
        result = sim.SimResult(result.days, result.clusters, requests, result.telemetry, result.truth_cluster_day,
                               result.truth_requests)  # fmt: skip
    sim.write_dataset(result, out_dir, telemetry_format, requests_format)


# --------------------------------------------------------------------------------------------------------------
# Demo: an image-generation cluster beside the two text clusters of data/sample/inputs
# --------------------------------------------------------------------------------------------------------------

DEMO_IMAGE_CLUSTER = "sim-sdxl-central"
DEMO_IMAGE_REQUESTS = 3000
DEMO_ADAPTERS_YML = """\
# Demo LoRA adapters (illustrative, not published figures): a LoRA adapter is a models.yml entry with base_model.
# Its own training is a fine-tuning of its base model: fine_tuning_kg_co2e and fine_tuning_water_l, amortised over
# projected_lifetime_inferences (an image request's inferences are its images) and re-projected monthly from the
# requests that name it, like a model's training footprint (docs/images.md).
# The footprints below assume ~8 A100-hours of LoRA training at 400 W, PUE 1.2, 0.4 kg CO2e/kWh and 1.8 L/kWh.
models:
  - model: pixel-art-xl
    base_model: stable-diffusion-xl-base-1.0
    fine_tuning_kg_co2e: 1.5
    fine_tuning_water_l: 7
    projected_lifetime_inferences: 1.0e+6
    service_start: 2023-09-01
    service_months: 12
    source: illustrative demo adapter (not a published figure); see the comment at the top of this file
  - model: watercolor-xl
    base_model: stable-diffusion-xl-base-1.0
    fine_tuning_kg_co2e: 1.5
    fine_tuning_water_l: 7
    projected_lifetime_inferences: 1.0e+6
    service_start: 2023-10-01
    service_months: 12
    source: illustrative demo adapter (not a published figure); see the comment at the top of this file
"""


def demo_image_spec() -> ImageClusterSpec:
    """The demo's image cluster: 1-2 nodes (autoscaling) x 4 A100s in ERCOT, DCGM with counters, SDXL."""
    return ImageClusterSpec(
        cluster_id=DEMO_IMAGE_CLUSTER,
        region="US-TEX-ERCO",
        gpu_model="A100-SXM4-80GB",
        nodes=2,
        min_nodes=1,
        gpus_per_node=4,
        exporter="dcgm",
        arrivals="poisson",
        requests_per_day=DEMO_IMAGE_REQUESTS,
    )


def build_image_demo(out_dir: Path = sim.DEMO_INPUTS_DIR) -> sim.SimResult:
    """Add the image cluster to the demo inputs (deterministic): its clusters.yml entry, telemetry (Parquet),
    requests (JSON lines) and truth rows (appended to truth/, replacing earlier rows of this cluster), demo
    profiling runs (profiling/sdxl_a100.csv) and the demo adapters (factors/models.yml). The text clusters' files
    are left as they are."""
    out_dir = Path(out_dir)
    cfg = sim.SimConfig(days=[sim.DEMO_DAY], clusters=[demo_image_spec()], seed=sim.DEMO_SEED)
    result = simulate(cfg)
    staging = out_dir / ".image-demo"
    write_dataset(result, staging, telemetry_format="parquet", requests_format="jsonl")
    for sub in ("telemetry", "requests"):
        target = out_dir / sub / DEMO_IMAGE_CLUSTER
        target.mkdir(parents=True, exist_ok=True)
        for old in target.iterdir():
            old.unlink()
        for path in (staging / sub / DEMO_IMAGE_CLUSTER).iterdir():
            path.rename(target / path.name)
    # beside what the folder holds (the text demo: `impact simulate --demo`), or alone in a new folder
    clusters_yml = out_dir / "clusters.yml"
    doc = yaml.safe_load(clusters_yml.read_text()) if clusters_yml.is_file() else {"clusters": []}
    doc["clusters"] = [c for c in doc["clusters"] if c["id"] != DEMO_IMAGE_CLUSTER] + result.clusters
    clusters_yml.write_text(yaml.safe_dump(doc, sort_keys=False))
    (out_dir / "truth").mkdir(exist_ok=True)
    for name, frame, read, write in (
        ("cluster_day.csv", result.truth_cluster_day, pd.read_csv, lambda f, path: f.to_csv(path, index=False)),
        (
            "requests.parquet",
            result.truth_requests,
            pd.read_parquet,
            lambda f, path: f.to_parquet(path, index=False, compression="zstd"),
        ),
    ):
        path = out_dir / "truth" / name
        kept = read(path) if path.is_file() else frame.iloc[:0]
        write(pd.concat([kept[kept["cluster"] != DEMO_IMAGE_CLUSTER], frame], ignore_index=True), path)
    for path in sorted(staging.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    staging.rmdir()
    (out_dir / "profiling").mkdir(exist_ok=True)
    demo_profiling().to_csv(out_dir / "profiling" / "sdxl_a100.csv", index=False, float_format="%.4f")
    (out_dir / "factors").mkdir(exist_ok=True)
    (out_dir / "factors" / "models.yml").write_text(DEMO_ADAPTERS_YML)
    return result


def demo_profiling() -> pd.DataFrame:
    """Profiling runs of SDXL on the A100 from the physics (1 % noise): 4 sizes x 3 step counts x 1-4 images,
    guidance on and off, with and without an adapter, text-to-image and image-to-image."""
    return profiling_runs(
        SDXL_A100,
        sizes=[(512, 512), (768, 768), (1024, 1024), (1024, 1536)],
        steps=[20, 30, 50],
        images=[1, 4],
        strengths=[1.0, 0.5],
        guidance=[True, False],
        loras=[0, 1],
        seed=sim.DEMO_SEED,
    )


# --------------------------------------------------------------------------------------------------------------
# Command line (`impact simulate --images`)
# --------------------------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="impact simulate --images",
        description="Simulate a diffusion (image-generation) cluster: write telemetry, image request logs, "
        "clusters.yml, truth/ and (with --profiling) profiling runs from the same physics.",
    )
    parser.add_argument("--out", type=Path, required=True, help="output input-directory")
    parser.add_argument(
        "--demo", action="store_true", help="add the demo's image cluster to --out (a demo copy)"
    )
    parser.add_argument("--day", action="append", help="UTC day YYYY-MM-DD (repeatable)")
    parser.add_argument("--start", help="first UTC day (with --end)")
    parser.add_argument("--end", help="last UTC day, inclusive")
    parser.add_argument("--requests-per-day", type=int, default=3000)
    parser.add_argument("--cluster-id", default="sim-sdxl")
    parser.add_argument("--region", default="US-CAL-CISO")
    parser.add_argument("--gpu-model", default="A100-SXM4-80GB")
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--min-nodes", type=int, help="enable autoscaling down to this many nodes")
    parser.add_argument("--gpus-per-node", type=int, default=4)
    parser.add_argument("--exporter", choices=sim.EXPORTERS, default="dcgm")
    parser.add_argument("--no-energy-counter", action="store_true", help="write power and utilisation only")
    parser.add_argument("--scrape-interval-s", type=float, default=15.0)
    parser.add_argument("--batch-window-s", type=float, default=1.0, help="the dynamic batcher's interval")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--telemetry-format", choices=sim.TELEMETRY_FORMATS, default="parquet")
    parser.add_argument("--requests-format", choices=sim.REQUEST_FORMATS, default="jsonl")
    parser.add_argument(
        "--profiling", action="store_true", help="also write profiling/<cluster>.csv (demo grid)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `impact simulate --images`; prints what was written. Returns 0, or 2 on invalid settings."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.demo:
            build_image_demo(args.out)
        else:
            spec = ImageClusterSpec(
                cluster_id=args.cluster_id, region=args.region, gpu_model=args.gpu_model, nodes=args.nodes,
                min_nodes=args.min_nodes, gpus_per_node=args.gpus_per_node, exporter=args.exporter,
                with_energy_counter=not args.no_energy_counter, scrape_interval_s=args.scrape_interval_s,
                batch_window_s=args.batch_window_s, requests_per_day=args.requests_per_day,
            )  # fmt: skip
            cfg = sim.SimConfig(days=sim._days_from(args, parser), clusters=[spec], seed=args.seed)
            write_dataset(simulate(cfg), args.out, args.telemetry_format, args.requests_format)
            if args.profiling:
                (args.out / "profiling").mkdir(parents=True, exist_ok=True)
                demo_profiling().assign(hardware=args.gpu_model).to_csv(
                    args.out / "profiling" / f"{args.cluster_id}.csv", index=False, float_format="%.4f"
                )
    except (ValueError, OSError) as exc:
        print(f"impact simulate: {exc}", file=sys.stderr)
        return 2
    inventory = sim.dataset_inventory(args.out)
    print(f"wrote {len(inventory)} files under {args.out}:")
    print(inventory.to_string(index=False))
    return 0
