"""advice.yml: the user's routing candidates, rightsizing limits, deferrable requests and latency SLO.

The file is optional: without it there is no advice (the assets say so and succeed). Each advice asset parses only
its own section, so a mistake in one section fails that asset alone, with a message that names the key
(``routing.candidates[1].accuracy``); the rest of the run goes on. Unknown keys are errors too: a typo would
otherwise silently drop a setting.

```yaml
routing:
  zeta: 0.5                    # the plan's zeta; the frontier sweeps zeta_sweep (default 0, 0.1, ..., 1)
  min_share: 0.05              # epsilon: each candidate gets between epsilon and 1 - epsilon of the queries
  reroutable: {tenants: [t1], endpoints: []}   # which requests may move; absent = all
  candidates:
    - {model: llama-2-7b, cluster: a100-west, accuracy: 0.5097, accuracy_source: "Open LLM Leaderboard average"}
    - {model: llama-2-70b, hardware: A100-SXM4-80GB, accuracy: 0.6452, accuracy_source: "...",
       energy_j: [-12.0294, 414.8197, 0.3145], runtime_s: [-0.031204, 0.703173, 0.000533]}
rightsizing: {max_concurrency_per_gpu: 4, min_gpus: 1}   # or slo_s_per_output_token: 0.05
deferrable: {tenants: [batch], endpoints: [], max_delay_h: 12}
settings: {slo_s_per_output_token: 0.05}
```
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ADVICE_FILE = "advice.yml"
SECTIONS: tuple[str, ...] = ("routing", "rightsizing", "deferrable", "settings")
DEFAULT_ZETA_SWEEP: tuple[float, ...] = tuple(round(0.1 * k, 10) for k in range(11))
ACCURACY_WEIGHTS: tuple[str, ...] = ("queries", "tokens")
SCALE_UNITS: tuple[str, ...] = ("node", "gpu")
FIT_SOURCES: tuple[str, ...] = ("telemetry", "profiling")
MAX_DELAY_H = 168
DEFAULT_MIN_SHARE = 0.05  # Wilkins et al.: every model gets a share strictly between 0 and 1


class AdviceConfigError(ValueError):
    """A mistake in advice.yml; ``key`` names where (``routing.min_share``)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{ADVICE_FILE} {key}: {message}")
        self.key = key


def advice_path(data_dir: Path) -> Path:
    return Path(data_dir) / ADVICE_FILE


def load_advice(data_dir: Path) -> dict | None:
    """The parsed advice.yml of ``data_dir`` (its top-level keys checked), or None when there is no such file."""
    path = advice_path(data_dir)
    if not path.is_file():
        return None
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise AdviceConfigError("(file)", f"not valid YAML: {exc}") from None
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise AdviceConfigError("(file)", f"must be a mapping with keys {', '.join(SECTIONS)}")
    _no_unknown_keys(raw, SECTIONS, "")
    return dict(raw)


# --------------------------------------------------------------------------------------------- primitives


def _no_unknown_keys(raw: Mapping, allowed: Sequence[str], prefix: str) -> None:
    for key in raw:
        if key not in allowed:
            where = f"{prefix}{key}"
            raise AdviceConfigError(where, f"unknown key (expected one of: {', '.join(allowed)})")


def _mapping(raw: object, key: str) -> Mapping:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise AdviceConfigError(key, f"must be a mapping, not {type(raw).__name__}")
    return raw


def _number(raw: Mapping, name: str, key: str, default: float | None = None, *, low: float | None = None,
            high: float | None = None, low_open: bool = False) -> float | None:  # fmt: skip
    value = raw.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AdviceConfigError(key, f"must be a number, not {value!r}")
    value = float(value)
    if low is not None and (value < low or (low_open and value == low)):
        raise AdviceConfigError(key, f"must be {'above' if low_open else 'at least'} {low:g}, not {value:g}")
    if high is not None and value > high:
        raise AdviceConfigError(key, f"must be at most {high:g}, not {value:g}")
    return value


def _integer(raw: Mapping, name: str, key: str, default: int | None, low: int, high: int | None = None) -> int | None:
    value = raw.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise AdviceConfigError(key, f"must be a whole number, not {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        raise AdviceConfigError(key, f"must be between {low} and {high}, not {value}" if high else
                                f"must be at least {low}, not {value}")  # fmt: skip
    return value


def _text(raw: Mapping, name: str, key: str, default: str | None = None, choices: Sequence[str] = ()) -> str | None:
    value = raw.get(name, default)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise AdviceConfigError(key, f"must be a non-empty text, not {value!r}")
    if choices and value not in choices:
        raise AdviceConfigError(key, f"must be one of {', '.join(choices)}, not {value!r}")
    return value.strip()


def _names(raw: Mapping, name: str, key: str) -> tuple[str, ...]:
    value = raw.get(name)
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise AdviceConfigError(key, f"must be a list of names, not {value!r}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise AdviceConfigError(f"{key}[{i}]", f"must be a non-empty text, not {item!r}")
    return tuple(item.strip() for item in value)


def _coefficients(raw: Mapping, name: str, key: str) -> tuple[float, float, float] | None:
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 3:
        raise AdviceConfigError(key, "must be three numbers [a_in, a_out, a_in_out] (the paper's form "
                                "a_in tau_in + a_out tau_out + a_in_out tau_in tau_out)")  # fmt: skip
    out = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise AdviceConfigError(f"{key}[{i}]", f"must be a number, not {v!r}")
        out.append(float(v))
    return out[0], out[1], out[2]


def _token_range(raw: Mapping, key: str) -> tuple[tuple[int, int], tuple[int, int]] | None:
    value = raw.get("fitted_range")
    if value is None:
        return None
    value = _mapping(value, key)
    _no_unknown_keys(value, ("input_tokens", "output_tokens"), f"{key}.")
    bounds = []
    for name in ("input_tokens", "output_tokens"):
        pair = value.get(name)
        sub = f"{key}.{name}"
        if (isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair)
                or not 0 <= pair[0] <= pair[1]):  # fmt: skip
            raise AdviceConfigError(sub, f"must be [lowest, highest] token counts, not {pair!r}")
        bounds.append((int(pair[0]), int(pair[1])))
    return bounds[0], bounds[1]


@dataclass(frozen=True)
class RequestFilter:
    """Requests selected by tenant, endpoint, model or cluster (a request matching any listed value)."""

    tenants: tuple[str, ...] = ()
    endpoints: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.tenants or self.endpoints or self.models or self.clusters)

    def sql(self, alias: str = "r") -> tuple[str, dict[str, list[str]]]:
        """A predicate (values as parameters) true for the selected requests; 'false' when nothing is listed."""
        terms, params = [], {}
        for name, column in (("tenants", "tenant"), ("endpoints", "endpoint"), ("models", "model"),
                             ("clusters", "cluster")):  # fmt: skip
            values = getattr(self, name)
            if values:
                terms.append(f"list_contains(${name}, {alias}.{column})")
                params[name] = list(values)
        return ("(" + " or ".join(terms) + ")" if terms else "false"), params

    def describe(self) -> str:
        parts = [f"{name} {', '.join(getattr(self, name))}" for name in ("tenants", "endpoints", "models", "clusters")
                 if getattr(self, name)]  # fmt: skip
        return "; ".join(parts) if parts else "none listed"


def _filter(raw: object, key: str, allowed: Sequence[str]) -> RequestFilter:
    raw = _mapping(raw, key)
    _no_unknown_keys(raw, allowed, f"{key}.")
    return RequestFilter(**{name: _names(raw, name, f"{key}.{name}") for name in allowed})


# ------------------------------------------------------------------------------------------------- routing


@dataclass(frozen=True)
class Candidate:
    """One interchangeable route: a model served on a cluster (or on a kind of hardware), its accuracy score and,
    optionally, the coefficients of its energy and runtime models (else the warehouse's latest fits)."""

    index: int
    name: str
    model: str
    cluster: str | None
    hardware: str | None
    accuracy: float
    accuracy_source: str
    energy_j: tuple[float, float, float] | None = None
    runtime_s: tuple[float, float, float] | None = None
    coefficients_source: str | None = None
    fitted_range: tuple[tuple[int, int], tuple[int, int]] | None = None
    source: str | None = None  # which warehouse fit: telemetry or profiling (default: telemetry, else profiling)
    gpus: int = 1
    capacity_gpu_s: float | None = None

    @property
    def key(self) -> str:
        return f"routing.candidates[{self.index}]"


@dataclass(frozen=True)
class RoutingConfig:
    zeta: float
    zeta_sweep: tuple[float, ...]
    min_share: float
    candidates: tuple[Candidate, ...]
    reroutable: RequestFilter = field(default_factory=RequestFilter)
    accuracy_weight: str = "queries"
    bins_per_doubling: int = 4


CANDIDATE_KEYS: tuple[str, ...] = (
    "name", "model", "cluster", "hardware", "accuracy", "accuracy_source", "energy_j", "runtime_s",
    "coefficients_source", "fitted_range", "source", "gpus", "capacity_gpu_s",
)  # fmt: skip
ROUTING_KEYS: tuple[str, ...] = (
    "zeta", "zeta_sweep", "min_share", "reroutable", "candidates", "accuracy_weight", "bins_per_doubling",
)  # fmt: skip


def _candidate(raw: object, i: int, clusters: Mapping[str, str]) -> Candidate:
    key = f"routing.candidates[{i}]"
    raw = _mapping(raw, key)
    _no_unknown_keys(raw, CANDIDATE_KEYS, f"{key}.")
    model = _text(raw, "model", f"{key}.model")
    if model is None:
        raise AdviceConfigError(f"{key}.model", "missing: every candidate names the model it serves")
    cluster = _text(raw, "cluster", f"{key}.cluster")
    hardware = _text(raw, "hardware", f"{key}.hardware")
    if cluster is not None:
        if cluster not in clusters:
            raise AdviceConfigError(f"{key}.cluster", f"unknown cluster {cluster!r} (clusters.yml has: "
                                    f"{', '.join(sorted(clusters)) or 'none'})")  # fmt: skip
        if hardware is not None and hardware != clusters[cluster]:
            raise AdviceConfigError(f"{key}.hardware", f"{hardware!r} is not the gpu_model of cluster {cluster} "
                                    f"({clusters[cluster]!r}): give one of cluster or hardware")  # fmt: skip
        hardware = clusters[cluster]
    elif hardware is None:
        raise AdviceConfigError(key, "needs a cluster (from clusters.yml) or a hardware (a GPU model)")
    accuracy = _number(raw, "accuracy", f"{key}.accuracy", low=0.0, high=1.0)
    if accuracy is None:
        raise AdviceConfigError(f"{key}.accuracy", "missing: a score between 0 and 1 (e.g. a benchmark average)")
    accuracy_source = _text(raw, "accuracy_source", f"{key}.accuracy_source")
    if accuracy_source is None:
        raise AdviceConfigError(f"{key}.accuracy_source", "missing: say where the accuracy score comes from")
    energy = _coefficients(raw, "energy_j", f"{key}.energy_j")
    runtime = _coefficients(raw, "runtime_s", f"{key}.runtime_s")
    if runtime is not None and energy is None:
        raise AdviceConfigError(f"{key}.runtime_s", "given without energy_j: give both, or neither (the "
                                "warehouse's fits are then used)")  # fmt: skip
    source = _text(raw, "source", f"{key}.source", choices=FIT_SOURCES)
    if source is not None and energy is not None:
        raise AdviceConfigError(f"{key}.source", "names a warehouse fit, but energy_j is given: give one")
    capacity = _number(raw, "capacity_gpu_s", f"{key}.capacity_gpu_s", low=0.0, low_open=True)
    return Candidate(
        index=i,
        name=_text(raw, "name", f"{key}.name") or f"{model} on {cluster or hardware}",
        model=model,
        cluster=cluster,
        hardware=hardware,
        accuracy=accuracy,
        accuracy_source=accuracy_source,
        energy_j=energy,
        runtime_s=runtime,
        coefficients_source=_text(raw, "coefficients_source", f"{key}.coefficients_source"),
        fitted_range=_token_range(raw, f"{key}.fitted_range"),
        source=source,
        gpus=_integer(raw, "gpus", f"{key}.gpus", 1, 1),
        capacity_gpu_s=capacity,
    )


def routing_config(advice: Mapping | None, clusters: Mapping[str, str]) -> RoutingConfig | None:
    """The routing section (None when absent). ``clusters``: cluster id -> gpu_model, from clusters.yml."""
    if not advice or advice.get("routing") is None:
        return None
    raw = _mapping(advice["routing"], "routing")
    _no_unknown_keys(raw, ROUTING_KEYS, "routing.")
    zeta = _number(raw, "zeta", "routing.zeta", 0.5, low=0.0, high=1.0)
    sweep_raw = raw.get("zeta_sweep")
    if sweep_raw is None:
        sweep = DEFAULT_ZETA_SWEEP
    else:
        if isinstance(sweep_raw, str) or not isinstance(sweep_raw, Sequence) or not sweep_raw:
            raise AdviceConfigError("routing.zeta_sweep", f"must be a list of numbers in 0-1, not {sweep_raw!r}")
        sweep = tuple(
            _number({"z": z}, "z", f"routing.zeta_sweep[{i}]", low=0.0, high=1.0) for i, z in enumerate(sweep_raw)
        )
    sweep = tuple(sorted({round(z, 10) for z in (*sweep, zeta)}))
    items = raw.get("candidates")
    if isinstance(items, str) or not isinstance(items, Sequence) or not items:
        raise AdviceConfigError("routing.candidates", "missing: a list of the interchangeable routes")
    candidates = tuple(_candidate(item, i, clusters) for i, item in enumerate(items))
    names = [c.name for c in candidates]
    for c in candidates:
        if names.count(c.name) > 1:
            raise AdviceConfigError(f"{c.key}.name", f"{c.name!r} names two candidates: give them distinct names")
    min_share = _number(raw, "min_share", "routing.min_share", DEFAULT_MIN_SHARE, low=0.0, high=0.5)
    if min_share * len(candidates) > 1 + 1e-12:
        raise AdviceConfigError("routing.min_share", f"{min_share:g} x {len(candidates)} candidates is more than "
                                "all the queries: shares that cannot be met")  # fmt: skip
    return RoutingConfig(
        zeta=zeta,
        zeta_sweep=sweep,
        min_share=min_share,
        candidates=candidates,
        reroutable=_filter(raw.get("reroutable"), "routing.reroutable", ("tenants", "endpoints", "models", "clusters")),
        accuracy_weight=_text(raw, "accuracy_weight", "routing.accuracy_weight", "queries", ACCURACY_WEIGHTS),
        bins_per_doubling=_integer(raw, "bins_per_doubling", "routing.bins_per_doubling", 4, 1, 64),
    )


# --------------------------------------------------------------------------------------------- rightsizing


@dataclass(frozen=True)
class ClusterCapacity:
    """How one cluster's GPUs needed are derived: a declared capacity per GPU, or the SLO on measured latency."""

    cluster: str
    min_gpus: int
    scale_unit: str
    max_concurrency_per_gpu: float | None
    slo_s_per_output_token: float | None
    slo_quantile: float
    min_requests_per_level: int

    @property
    def basis(self) -> str:
        return "declared" if self.max_concurrency_per_gpu is not None else "slo"


@dataclass(frozen=True)
class RightsizingConfig:
    clusters: tuple[ClusterCapacity, ...]
    capacity_window_days: int = 7


CAPACITY_KEYS: tuple[str, ...] = (
    "max_concurrency_per_gpu", "slo_s_per_output_token", "slo_quantile", "min_requests_per_level", "min_gpus",
    "scale_unit",
)  # fmt: skip


def _capacity_fields(raw: Mapping, key: str) -> dict:
    """The capacity keys present in ``raw``, validated (absent keys are left out, to be inherited)."""
    out = {
        "max_concurrency_per_gpu": _number(raw, "max_concurrency_per_gpu", f"{key}.max_concurrency_per_gpu",
                                           low=0.0, low_open=True),
        "slo_s_per_output_token": _number(raw, "slo_s_per_output_token", f"{key}.slo_s_per_output_token",
                                          low=0.0, low_open=True),
        "slo_quantile": _number(raw, "slo_quantile", f"{key}.slo_quantile", low=0.0, high=1.0, low_open=True),
        "min_requests_per_level": _integer(raw, "min_requests_per_level", f"{key}.min_requests_per_level", None, 1),
        "min_gpus": _integer(raw, "min_gpus", f"{key}.min_gpus", None, 0),
        "scale_unit": _text(raw, "scale_unit", f"{key}.scale_unit", choices=SCALE_UNITS),
    }  # fmt: skip
    if out["max_concurrency_per_gpu"] is not None and out["slo_s_per_output_token"] is not None:
        raise AdviceConfigError(f"{key}.slo_s_per_output_token", "given with max_concurrency_per_gpu: give one "
                                "(a declared capacity per GPU, or the SLO the measured latency must meet)")  # fmt: skip
    return {k: v for k, v in out.items() if v is not None}


def rightsizing_config(advice: Mapping | None, clusters: Sequence[str]) -> RightsizingConfig | None:
    """The rightsizing section for every cluster of clusters.yml (None when absent). A cluster's entry under
    ``clusters:`` overrides the section's keys; one that gives a capacity basis replaces the section's basis."""
    if not advice or advice.get("rightsizing") is None:
        return None
    raw = _mapping(advice["rightsizing"], "rightsizing")
    _no_unknown_keys(raw, (*CAPACITY_KEYS, "clusters", "capacity_window_days"), "rightsizing.")
    section = _capacity_fields(raw, "rightsizing")
    per_cluster = _mapping(raw.get("clusters"), "rightsizing.clusters")
    for name in per_cluster:
        if name not in clusters:
            raise AdviceConfigError(f"rightsizing.clusters.{name}", f"unknown cluster (clusters.yml has: "
                                    f"{', '.join(sorted(clusters)) or 'none'})")  # fmt: skip
    out = []
    for cluster in sorted(clusters):
        key = f"rightsizing.clusters.{cluster}" if cluster in per_cluster else "rightsizing"
        own = {}
        if cluster in per_cluster:
            entry = _mapping(per_cluster[cluster], key)
            _no_unknown_keys(entry, CAPACITY_KEYS, f"{key}.")
            own = _capacity_fields(entry, key)
        basis = ("max_concurrency_per_gpu", "slo_s_per_output_token")
        merged = {**({k: v for k, v in section.items() if k not in basis} if set(basis) & set(own) else section),
                  **own}  # fmt: skip
        if not set(basis) & set(merged):
            raise AdviceConfigError(f"{key}.max_concurrency_per_gpu", f"cluster {cluster}: give "
                                    "max_concurrency_per_gpu or slo_s_per_output_token")  # fmt: skip
        out.append(
            ClusterCapacity(
                cluster=cluster,
                min_gpus=merged.get("min_gpus", 1),
                scale_unit=merged.get("scale_unit", "node"),
                max_concurrency_per_gpu=merged.get("max_concurrency_per_gpu"),
                slo_s_per_output_token=merged.get("slo_s_per_output_token"),
                slo_quantile=merged.get("slo_quantile", 0.9),
                min_requests_per_level=merged.get("min_requests_per_level", 30),
            )
        )
    return RightsizingConfig(
        clusters=tuple(out),
        capacity_window_days=_integer(raw, "capacity_window_days", "rightsizing.capacity_window_days", 7, 1, 366),
    )


# ------------------------------------------------------------------------------------------------ shifting


@dataclass(frozen=True)
class ShiftingConfig:
    deferrable: RequestFilter
    max_delay_h: int


def shifting_config(advice: Mapping | None) -> ShiftingConfig | None:
    """The deferrable section (None when absent)."""
    if not advice or advice.get("deferrable") is None:
        return None
    raw = _mapping(advice["deferrable"], "deferrable")
    _no_unknown_keys(raw, ("tenants", "endpoints", "models", "clusters", "max_delay_h"), "deferrable.")
    delay = _integer(raw, "max_delay_h", "deferrable.max_delay_h", None, 1, MAX_DELAY_H)
    if delay is None:
        raise AdviceConfigError("deferrable.max_delay_h", "missing: how many hours a deferrable request may wait")
    chosen = _filter({k: v for k, v in raw.items() if k != "max_delay_h"}, "deferrable",
                     ("tenants", "endpoints", "models", "clusters"))  # fmt: skip
    return ShiftingConfig(deferrable=chosen, max_delay_h=delay)


# ------------------------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class SettingsConfig:
    slo_s_per_output_token: float | None
    slo_quantile: float
    min_runs: int


def settings_config(advice: Mapping | None) -> SettingsConfig | None:
    """The settings section; without one, the rightsizing SLO (if any) applies. None when advice.yml is absent."""
    if advice is None:
        return None
    raw = _mapping(advice.get("settings"), "settings")
    _no_unknown_keys(raw, ("slo_s_per_output_token", "slo_quantile", "min_runs"), "settings.")
    fallback = _mapping(advice.get("rightsizing"), "rightsizing")
    slo = _number(raw, "slo_s_per_output_token", "settings.slo_s_per_output_token",
                  fallback.get("slo_s_per_output_token"), low=0.0, low_open=True)  # fmt: skip
    return SettingsConfig(
        slo_s_per_output_token=slo,
        slo_quantile=_number(raw, "slo_quantile", "settings.slo_quantile", fallback.get("slo_quantile", 0.9),
                             low=0.0, high=1.0, low_open=True),
        min_runs=_integer(raw, "min_runs", "settings.min_runs", 3, 1),
    )
