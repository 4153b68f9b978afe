"""A physical model of a diffusion request's runtime and GPU energy: what the simulator and the synthetic profiling
runs are generated from, and what the statistical models (orchestration.lib.images.models) must recover.

A request (one pipeline call) is the sum of its parts, each taking time in proportion to its amount of work
(the regressors of ``models.regressors``, docs/images.md):

    request     1 per call                         text encoders, scheduler set-up, pipeline overheads
    step        floor(steps x strength) per call   per-step overhead (kernel launches, scheduler), any size
    denoise     images x steps run x g x MP        the denoiser's work, linear in pixels (g = 2 with guidance)
    attention   denoise x MP                       self-attention over the latent tokens, quadratic in pixels
    decode      images x MP                        VAE decode of each image
    encode      input MP                           VAE encode of the input image (image-to-image)
    lora        adapters x denoise                 unfused LoRA adapters' extra matmuls per step

runtime = sum_t seconds_t x x_t. Each part draws its own dynamic (above idle) GPU power watts_t while it runs, and
the denoising parts (denoise, attention, lora) draw less when the batch is too small to fill the GPU: their power
is scaled by min(1, images x g x MP / saturation_mp) ** 0.5 (ML.ENERGY's v2 data: energy per image falls with
batch size at 512 x 512 but is flat at 1024 x 1024, where the GPU is saturated). So energy is exactly linear in
the parts at full load and not below it: the statistical forms are an approximation there, as on real GPUs.

GPU energy of a run (what NVML / Zeus measure, ML.ENERGY's figures) = idle_w x runtime + dynamic energy.

The SDXL-on-A100 parameters (``SDXL_A100``) are calibrated to ML.ENERGY v2 (SDXL base 1.0, A100-SXM4-40GB, 400 W
power limit, batch 1, 1024 x 1024, guidance on): 3.39 s and 1307 J at 30 steps, 4.47 s and 1720 J at 40. They give
3.38 s and 1275 J at 30 steps, 4.46 s and 1687 J at 40 (runtime within 0.3 %, energy 2.5 % low, the energy per
step within 0.2 %). The split of the step time into per-step overhead, linear and attention parts, and the powers of
each part, are modelling choices, not fits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from orchestration.lib.images.models import TERMS, regressors

SATURATION_EXPONENT = 0.5
DENOISING_TERMS: tuple[str, ...] = ("denoise", "attention", "lora")


@dataclass(frozen=True)
class DiffusionPhysics:
    """Runtime (s per unit of each term) and dynamic GPU power (W per term) of one model on one GPU type."""

    model: str
    hardware: str
    seconds: dict[str, float]
    watts: dict[str, float]
    idle_w: float
    saturation_mp: float = 0.5
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        for table in (self.seconds, self.watts):
            unknown = set(table) - set(TERMS)
            if unknown:
                raise ValueError(f"unknown terms {sorted(unknown)}; expected some of {TERMS}")

    def _parts(self, requests: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        x = regressors(requests)
        guided = requests["guidance"].astype("boolean").fillna(True) if "guidance" in requests else True
        g = np.where(guided, 2, 1)
        batch_mp = (
            requests["images"].to_numpy(float)
            * g
            * requests["width"].to_numpy(float)
            * requests["height"].to_numpy(float)
            / 1e6
        )
        fill = np.minimum(1.0, batch_mp / self.saturation_mp) ** SATURATION_EXPONENT
        return x, fill

    def runtime_s(self, requests: pd.DataFrame) -> np.ndarray:
        """Seconds of each request (one pipeline call) alone on the GPU."""
        x = regressors(requests)
        return sum(self.seconds.get(t, 0.0) * x[t].to_numpy(float) for t in TERMS)

    def dynamic_energy_j(self, requests: pd.DataFrame) -> np.ndarray:
        """GPU energy above idle of each request alone on the GPU."""
        x, fill = self._parts(requests)
        total = np.zeros(len(requests))
        for t in TERMS:
            scale = fill if t in DENOISING_TERMS else 1.0
            total = total + self.seconds.get(t, 0.0) * self.watts.get(t, 0.0) * scale * x[t].to_numpy(float)
        return total

    def gpu_energy_j(self, requests: pd.DataFrame) -> np.ndarray:
        """GPU energy of each run, idle power included (what a profiler measures)."""
        return self.idle_w * self.runtime_s(requests) + self.dynamic_energy_j(requests)


# SDXL base 1.0 on an A100 (400 W): see the module docstring for the calibration.
SDXL_A100 = DiffusionPhysics(
    model="stable-diffusion-xl-base-1.0",
    hardware="A100-SXM4-80GB",
    seconds={
        "request": 0.10,
        "step": 0.015,
        "denoise": 0.032,
        "attention": 0.0115,
        "decode": 0.060,
        "encode": 0.030,
        "lora": 0.0026,  # 8 % of the linear denoiser time per adapter
    },
    watts={
        "request": 120.0,
        "step": 220.0,
        "denoise": 340.0,
        "attention": 340.0,
        "decode": 300.0,
        "encode": 300.0,
        "lora": 340.0,
    },
    idle_w=60.0,
    name="SDXL on A100",
)


def profiling_runs(
    physics: DiffusionPhysics,
    sizes: list[tuple[int, int]],
    steps: list[int],
    images: list[int] = (1,),
    strengths: list[float] = (1.0,),
    guidance: list[bool] = (True,),
    loras: list[int] = (0,),
    noise: float = 0.01,
    seed: int = 0,
) -> pd.DataFrame:
    """Profiling runs (CONTRACT section 1 columns) over the grid of the given settings, from the physics: GPU
    energy and runtime with multiplicative measurement noise of relative sd `noise` (seeded)."""
    grid = pd.MultiIndex.from_product(
        [sizes, steps, images, strengths, guidance, loras],
        names=["size", "steps", "images", "strength", "guidance", "lora"],
    ).to_frame(index=False)
    runs = pd.DataFrame(
        {
            "model": physics.model,
            "hardware": physics.hardware,
            "width": grid["size"].map(lambda s: s[0]).astype("int64"),
            "height": grid["size"].map(lambda s: s[1]).astype("int64"),
            "steps": grid["steps"].astype("int64"),
            "images": grid["images"].astype("int64"),
            "strength": grid["strength"].astype(float),
            "guidance": grid["guidance"].astype(bool),
            "lora": grid["lora"].astype("int64"),
        }
    )
    rng = np.random.default_rng(seed)
    jitter = rng.normal(1.0, noise, size=(2, len(runs)))
    runs["energy_j"] = physics.gpu_energy_j(runs) * jitter[0]
    runs["runtime_s"] = physics.runtime_s(runs) * jitter[1]
    return runs
