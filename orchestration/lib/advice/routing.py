"""Energy-optimal routing of a measured day (Wilkins, Keshav, Mortier, "Offline Energy-Optimal LLM Serving",
HotCarbon 2024): which candidate (a model on a cluster or on a kind of hardware) should have served each request.

The assignment (their offline problem): minimise  sum_q sum_K x_qK [zeta e_K(q) - (1 - zeta) a_K(q)]  subject to
every query assigned once (sum_K x_qK = 1) and every candidate a share strictly between 0 and 1 (here between
``min_share`` and ``1 - min_share`` of the queries), optionally within a capacity in GPU-seconds per candidate.
e_K is the paper's energy form a_in tau_in + a_out tau_out + a_in_out tau_in tau_out; a_K(q) is the candidate's
accuracy score (per query, or per token as Wilkins et al. weight it, ``accuracy_weight: tokens``).

What this module adds to make it run on a provider's day, every step stated:

* **Bins.** The day's re-routable requests are reduced in SQL to (tau_in, tau_out) bins (``bins_per_doubling``
  log-spaced bins per doubling of each count) with exact per-bin sums n, sum tau_in, sum tau_out,
  sum tau_in tau_out: e_K and a_K are linear in them, so a bin assigned whole costs exactly the sum of its
  queries. The variables are the number of a bin's queries each candidate serves (integers: each query assigned
  once); a bin split between candidates charges each the bin's mean per query.
* **Normalisation.** Energy and accuracy enter as fractions of a fixed reference: every request on the most
  accurate candidate whose model covers it (ties: the lower energy). zeta then means the same every day: at zeta
  the plan gives up 1 % of the reference accuracy only for more than (1 - zeta) / zeta % of the reference energy.
  A 1e-4 weight on the other term breaks ties at zeta = 0 and 1.
* **Fitted range.** A fitted form is used only where it was fitted and stays positive. Wilkins' fits have a
  negative input coefficient: predicted energy goes negative for long prompts with short outputs. A candidate is
  eligible for a bin only when its predicted energy (and runtime, when capacity is set) is positive at all four
  corners of the bin's observed token box (the form is bilinear, so its minimum over the box is at a corner) and
  the box lies inside the candidate's fitted range (given in advice.yml, else the token range of the data its
  warehouse fit was made on). Bins no candidate may take stay where they ran and are counted, not routed.
* **Carbon.** The operational carbon of a plan prices each query's predicted energy at the PUE and grid
  intensity of the hour it started, in the zone of the candidate's cluster (a candidate given by hardware only
  serves where the request ran): per-bin sums weighted by PUE x intensity keep this exact.
* **Actual.** The day as actually routed, twice: measured (the requests' attributed IT energy and operational
  carbon) and modelled (their own model x hardware's latest fit applied to the same sums), so that the saving is
  like for like (model against model) and the model's bias on this day is visible.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from orchestration.lib.advice.config import AdviceConfigError, Candidate, RoutingConfig

J_PER_KWH = 3.6e6
TIE_WEIGHT = 1e-4  # weight of the other objective at zeta = 0 or 1 (breaks ties; changes nothing else)
SOLVER_TIME_LIMIT_S = 60.0
OWN = ""  # carbon target: the zone and PUE of the cluster the request ran on
FIT_WINDOW_DAYS = 28  # the telemetry fits' window (orchestration/defs/models/assets.py TRAILING_DAYS)


@dataclass(frozen=True)
class Form:
    """a_in tau_in + a_out tau_out + a_in_out tau_in tau_out (the paper's form, no intercept)."""

    a_in: float
    a_out: float
    a_in_out: float

    def of_sums(self, s_in, s_out, s_io):
        """The form summed over queries, from the sums of tau_in, tau_out and tau_in x tau_out."""
        return self.a_in * s_in + self.a_out * s_out + self.a_in_out * s_io

    def box_min(self, in_lo, in_hi, out_lo, out_hi) -> np.ndarray:
        """The form's smallest value per query over each box [in_lo, in_hi] x [out_lo, out_hi] (at a corner)."""
        corners = [self.of_sums(i, o, i * o) for i in (in_lo, in_hi) for o in (out_lo, out_hi)]
        return np.minimum.reduce([np.asarray(c, dtype=float) for c in corners])


@dataclass(frozen=True)
class RoutedCandidate:
    """A candidate with the models it is priced with, and where they come from."""

    candidate: Candidate
    energy: Form
    energy_source: str
    runtime: Form | None = None
    runtime_source: str | None = None
    token_range: tuple[tuple[int, int], tuple[int, int]] | None = None
    range_source: str = "none known: only the sign of the prediction is checked"


@dataclass
class Bins:
    """The day's re-routable requests per (tau_in, tau_out) bin: exact sums and observed token box.

    ``weighted[target]`` holds, per bin, the sums of tau_in, tau_out and tau_in x tau_out each multiplied by
    PUE x grid intensity (g/kWh) of the hour the query started in the target's zone (OWN: where it ran)."""

    frame: pd.DataFrame  # bin_in, bin_out, n, s_in, s_out, s_io, in_min, in_max, out_min, out_max, ...
    weighted: dict[str, np.ndarray] = field(default_factory=dict)  # target -> (B, 3)

    def __len__(self) -> int:
        return len(self.frame)

    def col(self, name: str) -> np.ndarray:
        return self.frame[name].to_numpy(float)


# ------------------------------------------------------------------------------------------------ models


def latest_fits(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The latest paper-form fit per model x hardware x source x target in models.energy_model_fits (empty when
    there is none yet)."""
    cols = ["model", "hardware", "source", "target", "alpha_in", "alpha_out", "alpha_in_out", "nobs", "fitted_at"]
    try:
        return con.execute(
            """
            select model, hardware, source, target, alpha_in, alpha_out, alpha_in_out, nobs, fitted_at
            from models.energy_model_fits
            where form = 'paper' and alpha_in is not null and alpha_out is not null and alpha_in_out is not null
            qualify row_number() over (partition by model, hardware, source, target order by fitted_at desc) = 1
            """
        ).df()
    except duckdb.CatalogException:
        return pd.DataFrame(columns=cols)


def _pick_fit(fits: pd.DataFrame, model: str, hardware: str, target: str, source: str | None) -> pd.Series | None:
    rows = fits[(fits["model"] == model) & (fits["hardware"] == hardware) & (fits["target"] == target)]
    if source is not None:
        rows = rows[rows["source"] == source]
    if rows.empty:
        return None
    rank = rows["source"].map({"telemetry": 0, "profiling": 1}).fillna(2)
    return rows.assign(_rank=rank).sort_values(["_rank", "fitted_at"], ascending=[True, False]).iloc[0]


def _fit_text(row: pd.Series) -> str:
    return (f"models.energy_model_fits ({row['source']} fit of {row['model']} on {row['hardware']}, "
            f"fitted_at {pd.Timestamp(row['fitted_at']).isoformat(timespec='seconds')}, n = {int(row['nobs'])})")  # fmt: skip


def fit_token_ranges(
    con: duckdb.DuckDBPyConnection, day, profiling: pd.DataFrame | None = None
) -> dict[tuple[str, str, str], tuple[tuple[int, int], tuple[int, int]]]:
    """(model, hardware, source) -> the token ranges of the data the warehouse fits were made on: the fits'
    telemetry sample (models.fit_sample_days, the FIT_WINDOW_DAYS days ending on ``day``) and the profiling
    runs."""
    out: dict[tuple[str, str, str], tuple[tuple[int, int], tuple[int, int]]] = {}
    try:
        rows = con.execute(
            """
            select model, coalesce(hardware, ''), min(input_tokens), max(input_tokens), min(output_tokens),
                   max(output_tokens)
            from models.fit_sample_days
            where day > cast($day as date) - $window and day <= cast($day as date)
                and input_tokens is not null and output_tokens is not null
            group by all
            """,
            {"day": day, "window": FIT_WINDOW_DAYS},
        ).fetchall()
    except duckdb.CatalogException:
        rows = []
    for model, hardware, i0, i1, o0, o1 in rows:
        out[(model, hardware, "telemetry")] = ((int(i0), int(i1)), (int(o0), int(o1)))
    if profiling is not None and len(profiling):
        g = profiling.groupby(["model", "hardware"])
        ranges = g.agg(i0=("input_tokens", "min"), i1=("input_tokens", "max"), o0=("output_tokens", "min"),
                       o1=("output_tokens", "max"))  # fmt: skip
        for (model, hardware), r in ranges.iterrows():  # one per profiled model x hardware
            out[(model, hardware, "profiling")] = ((int(r.i0), int(r.i1)), (int(r.o0), int(r.o1)))
    return out


def resolve_candidates(
    cfg: RoutingConfig,
    fits: pd.DataFrame,
    ranges: Mapping[tuple[str, str, str], tuple[tuple[int, int], tuple[int, int]]] | None = None,
) -> list[RoutedCandidate]:
    """Each candidate with its energy (and runtime) model: the coefficients given in advice.yml, else the latest
    warehouse fit of its model x hardware (telemetry preferred, or the candidate's ``source``). A candidate with
    neither is a configuration error naming its model."""
    ranges = ranges or {}
    out = []
    for c in cfg.candidates:
        needs_runtime = c.capacity_gpu_s is not None
        if c.energy_j is not None:
            given = c.coefficients_source or "advice.yml"
            if needs_runtime and c.runtime_s is None:
                raise AdviceConfigError(f"{c.key}.runtime_s", "capacity_gpu_s needs a runtime model: give runtime_s")
            out.append(
                RoutedCandidate(
                    c, Form(*c.energy_j), f"advice.yml coefficients ({given})",
                    Form(*c.runtime_s) if c.runtime_s else None,
                    f"advice.yml coefficients ({given})" if c.runtime_s else None,
                    c.fitted_range,
                    "advice.yml fitted_range" if c.fitted_range else RoutedCandidate.range_source,
                )
            )  # fmt: skip
            continue
        energy = _pick_fit(fits, c.model, c.hardware, "energy", c.source)
        if energy is None:
            known = sorted({f"{m} on {h}" for m, h in zip(fits["model"], fits["hardware"])})
            raise AdviceConfigError(
                f"{c.key}.model",
                f"no energy model for {c.model!r} on {c.hardware!r}"
                + (f" ({c.source} fits)" if c.source else "")
                + f": models.energy_model_fits has {', '.join(known) or 'no fits yet'}; give energy_j (and runtime_s) "
                "coefficients, e.g. from published profiling, or serve the model first",
            )
        runtime = _pick_fit(fits, c.model, c.hardware, "runtime", energy["source"])
        if needs_runtime and runtime is None:
            raise AdviceConfigError(f"{c.key}.capacity_gpu_s", f"no runtime model for {c.model} on {c.hardware}")
        token_range = c.fitted_range or ranges.get((c.model, c.hardware, energy["source"]))
        range_source = (
            "advice.yml fitted_range" if c.fitted_range
            else f"the tokens of the {energy['source']} data the fit was made on" if token_range
            else RoutedCandidate.range_source
        )  # fmt: skip
        out.append(
            RoutedCandidate(
                c,
                Form(energy["alpha_in"], energy["alpha_out"], energy["alpha_in_out"]),
                _fit_text(energy),
                Form(runtime["alpha_in"], runtime["alpha_out"], runtime["alpha_in_out"]) if runtime is not None
                else None,
                _fit_text(runtime) if runtime is not None else None,
                token_range,
                range_source,
            )
        )  # fmt: skip
    return out


# -------------------------------------------------------------------------------------------------- bins


CELL_COLUMNS: tuple[str, ...] = (
    "bin_in", "bin_out", "model", "hardware", "n", "s_in", "s_out", "s_io", "w_in", "w_out", "w_io", "in_min",
    "in_max", "out_min", "out_max", "tokens", "measured_j", "measured_g",
)  # fmt: skip


def read_cells(
    con: duckdb.DuckDBPyConnection, day, cfg: RoutingConfig, target_clusters: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The day's re-routable requests (started on ``day``, with token counts) reduced in SQL: per bin x the
    model and hardware they ran on (cells: counts, exact sums, the sums weighted by PUE x grid intensity of their
    own hour and zone, observed token box, measured IT energy and operational carbon), and per bin x target
    cluster the sums weighted by that cluster's PUE x intensity at the same hours."""
    predicate, params = cfg.reroutable.sql("r")
    if cfg.reroutable.is_empty:
        predicate = "true"
    params = {**params, "day": day, "k": cfg.bins_per_doubling}
    requests = f"""
        requests as (
            select
                r.model, coalesce(r.hardware, '') as hardware, r.cluster,
                cast(r.input_tokens as double) as tin, cast(r.output_tokens as double) as tout,
                r.it_energy_j, r.operational_location_g_co2e,
                cast(floor(log2(r.input_tokens + 1) * $k) as integer) as bin_in,
                cast(floor(log2(r.output_tokens + 1) * $k) as integer) as bin_out,
                hour(r.start_time) as hour_of_day
            from marts.fct_request_impact as r
            where r.day = $day and r.input_tokens is not null and r.output_tokens is not null and {predicate}
        ),
        weights as (
            select h.cluster, h.hour_of_day, f.pue * h.location_g_co2e_per_kwh as w
            from intermediate.int_cluster_hour_intensity as h
            inner join intermediate.int_cluster_day_factors as f on f.cluster = h.cluster and f.day = h.day
            where h.day = $day
        )
    """
    cells = con.execute(
        f"""
        with {requests}
        select
            q.bin_in, q.bin_out, q.model, q.hardware, count(*) as n,
            sum(q.tin) as s_in, sum(q.tout) as s_out, sum(q.tin * q.tout) as s_io,
            sum(w.w * q.tin) as w_in, sum(w.w * q.tout) as w_out, sum(w.w * q.tin * q.tout) as w_io,
            min(q.tin) as in_min, max(q.tin) as in_max, min(q.tout) as out_min, max(q.tout) as out_max,
            sum(q.tin + q.tout) as tokens, sum(q.it_energy_j) as measured_j,
            sum(q.operational_location_g_co2e) as measured_g
        from requests as q
        left join weights as w on w.cluster = q.cluster and w.hour_of_day = q.hour_of_day
        group by all
        order by all
        """,
        params,
    ).df()
    targets = con.execute(
        f"""
        with {requests}
        select q.bin_in, q.bin_out, w.cluster as target, sum(w.w * q.tin) as w_in, sum(w.w * q.tout) as w_out,
               sum(w.w * q.tin * q.tout) as w_io
        from requests as q
        inner join weights as w on w.hour_of_day = q.hour_of_day and list_contains($targets, w.cluster)
        group by all
        order by all
        """,
        {**params, "targets": list(target_clusters)},
    ).df()
    return cells.reindex(columns=list(CELL_COLUMNS)), targets


def build_bins(cells: pd.DataFrame, targets: pd.DataFrame) -> Bins:
    """Bins from the cells (summed over the model and hardware the requests ran on), with the target weights."""
    if cells.empty:
        return Bins(pd.DataFrame(columns=["bin_in", "bin_out", "n"]))
    frame = (
        cells.groupby(["bin_in", "bin_out"], sort=True)
        .agg(n=("n", "sum"), s_in=("s_in", "sum"), s_out=("s_out", "sum"), s_io=("s_io", "sum"),
             w_in=("w_in", "sum"), w_out=("w_out", "sum"), w_io=("w_io", "sum"), in_min=("in_min", "min"),
             in_max=("in_max", "max"), out_min=("out_min", "min"), out_max=("out_max", "max"),
             tokens=("tokens", "sum"), measured_j=("measured_j", "sum"), measured_g=("measured_g", "sum"))
        .reset_index()
    )  # fmt: skip
    weighted = {OWN: frame[["w_in", "w_out", "w_io"]].to_numpy(float)}
    for target, part in targets.groupby("target"):
        merged = frame[["bin_in", "bin_out"]].merge(part, on=["bin_in", "bin_out"], how="left")
        weighted[str(target)] = merged[["w_in", "w_out", "w_io"]].to_numpy(float)
    return Bins(frame, weighted)


def bins_from_sums(n, s_in, s_out, s_io, box: tuple | None = None) -> Bins:
    """Bins given only by their sums (e.g. a published workload's totals); ``box`` = (in_min, in_max, out_min,
    out_max) arrays, or None when unknown (then no fitted-range guard applies)."""
    n = np.atleast_1d(np.asarray(n, float))
    frame = pd.DataFrame({"bin_in": np.arange(len(n)), "bin_out": 0, "n": n, "s_in": np.atleast_1d(s_in),
                          "s_out": np.atleast_1d(s_out), "s_io": np.atleast_1d(s_io)})  # fmt: skip
    frame["tokens"] = frame["s_in"] + frame["s_out"]
    for name, values in zip(("in_min", "in_max", "out_min", "out_max"), box or (np.nan,) * 4):
        frame[name] = values
    return Bins(frame)


# ------------------------------------------------------------------------------------------- eligibility


@dataclass
class Eligibility:
    """Which candidate may take which bin, and how many bins (requests) each guard excluded."""

    eligible: np.ndarray  # (B, K) bool
    negative_bins: np.ndarray  # (K,) bins excluded because the fit predicts <= 0 somewhere in the box
    range_bins: np.ndarray  # (K,) bins excluded because the box leaves the fitted range
    negative_requests: np.ndarray
    range_requests: np.ndarray


def eligibility(bins: Bins, models: Sequence[RoutedCandidate]) -> Eligibility:
    """The fitted-form guard, per bin and candidate (module docstring, "Fitted range")."""
    b, k = len(bins), len(models)
    ok = np.ones((b, k), dtype=bool)
    negative, outside = np.zeros((b, k), dtype=bool), np.zeros((b, k), dtype=bool)
    box = [bins.col(c) for c in ("in_min", "in_max", "out_min", "out_max")]
    known_box = np.isfinite(box[0])
    for j, m in enumerate(models):  # a loop over candidates; each is vectorised over bins
        forms = [m.energy] + ([m.runtime] if m.runtime is not None and m.candidate.capacity_gpu_s else [])
        for form in forms:
            negative[:, j] |= known_box & ~(np.nan_to_num(form.box_min(*box), nan=1.0) > 0)
        if m.token_range is not None:
            (i0, i1), (o0, o1) = m.token_range
            outside[:, j] = known_box & ((box[0] < i0) | (box[1] > i1) | (box[2] < o0) | (box[3] > o1))
        ok[:, j] = ~(negative[:, j] | outside[:, j])
    n = bins.col("n")
    return Eligibility(
        ok, negative.sum(axis=0), (outside & ~negative).sum(axis=0),
        (negative * n[:, None]).sum(axis=0), ((outside & ~negative) * n[:, None]).sum(axis=0),
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------- solver


@dataclass
class Problem:
    """The routing problem over the bins every candidate may take (at least one)."""

    n: np.ndarray  # (B,) queries per bin
    energy_j: np.ndarray  # (B, K) predicted energy of the whole bin on each candidate
    accuracy: np.ndarray  # (K,)
    eligible: np.ndarray  # (B, K)
    accuracy_weight: np.ndarray  # (B,) queries (n) or tokens per bin
    min_share: float = 0.0
    gpu_s: np.ndarray | None = None  # (B, K) predicted runtime x GPUs of the whole bin
    capacity_gpu_s: np.ndarray | None = None  # (K,) NaN = no capacity
    names: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()

    @property
    def share_bounds(self) -> tuple[int, int]:
        """The fewest and most queries a candidate may take (no bound with one candidate or min_share 0)."""
        total = int(self.n.sum())
        if self.min_share <= 0 or self.energy_j.shape[1] < 2:
            return 0, total
        return math.ceil(self.min_share * total - 1e-9), math.floor((1 - self.min_share) * total + 1e-9)

    def reference(self) -> tuple[np.ndarray, float, float]:
        """Per bin, the most accurate eligible candidate (ties: lower energy); its total energy and accuracy."""
        acc = np.where(self.eligible, self.accuracy[None, :], -np.inf)
        best = acc == acc.max(axis=1, keepdims=True)
        energy = np.where(best & self.eligible, self.energy_j, np.inf)
        ref = energy.argmin(axis=1)
        rows = np.arange(len(self.n))
        return ref, float(self.energy_j[rows, ref].sum()), float((self.accuracy_weight * self.accuracy[ref]).sum())


@dataclass
class Solution:
    zeta: float
    counts: np.ndarray  # (B, K) queries of each bin served by each candidate
    status: str


def _infeasible_shares(p: Problem) -> str | None:
    """Why the share bounds cannot be met, or None when they can (ignoring capacity)."""
    low, high = p.share_bounds
    can = (p.eligible * p.n[:, None]).sum(axis=0)
    only = p.eligible.sum(axis=1) == 1
    must = (p.eligible & only[:, None]) * p.n[:, None]
    reasons = []
    for j, name in enumerate(p.names or [str(j) for j in range(p.eligible.shape[1])]):
        if can[j] < low:
            reasons.append(f"{name} may take only {int(can[j])} of the {int(p.n.sum())} queries (its model's fitted "
                           f"range covers no more), fewer than the {low} min_share requires")  # fmt: skip
        if must[:, j].sum() > high:
            reasons.append(f"{name} alone covers {int(must[:, j].sum())} queries, more than the {high} "
                           "1 - min_share allows")  # fmt: skip
    return "; ".join(reasons) or None


def solve(p: Problem, zeta: float) -> Solution:
    """The integer assignment minimising zeta x energy / E_ref - (1 - zeta) x accuracy / A_ref with scipy's HiGHS
    (``scipy.optimize.linprog``, whose vertex is integral without capacity rows, else ``scipy.optimize.milp``);
    raises AdviceConfigError naming min_share or capacity_gpu_s when infeasible."""
    from scipy import sparse
    from scipy.optimize import Bounds, LinearConstraint, linprog, milp

    b, k = p.energy_j.shape
    _, e_ref, a_ref = p.reference()
    rows, cols = np.nonzero(p.eligible)
    nb = p.n[rows]
    we, wa = max(zeta, TIE_WEIGHT), max(1.0 - zeta, TIE_WEIGHT)
    # per query, in units of the reference's mean per query (costs of order 1, well above the solver's tolerances)
    total = p.n.sum()
    cost = total * (we * (p.energy_j[rows, cols] / nb) / e_ref
                    - wa * (p.accuracy[cols] * p.accuracy_weight[rows] / nb) / a_ref)  # fmt: skip
    m = len(rows)
    var = np.arange(m)
    blocks = [sparse.csr_matrix((np.ones(m), (rows, var)), shape=(b, m))]
    lower, upper = [p.n], [p.n]
    low, high = p.share_bounds
    if low > 0 or high < p.n.sum():
        blocks.append(sparse.csr_matrix((np.ones(m), (cols, var)), shape=(k, m)))
        lower.append(np.full(k, low, dtype=float))
        upper.append(np.full(k, high, dtype=float))
    capped = [] if p.capacity_gpu_s is None else [j for j in range(k) if np.isfinite(p.capacity_gpu_s[j])]
    if capped:
        per_query = p.gpu_s[rows, cols] / nb
        sel = np.isin(cols, capped)
        index = {j: i for i, j in enumerate(capped)}
        blocks.append(sparse.csr_matrix((per_query[sel], ([index[j] for j in cols[sel]], var[sel])),
                                        shape=(len(capped), m)))  # fmt: skip
        lower.append(np.full(len(capped), -np.inf))
        upper.append(p.capacity_gpu_s[capped])
    matrix, lo, hi = sparse.vstack(blocks).tocsr(), np.concatenate(lower), np.concatenate(upper)
    result = None
    if not capped:
        # Without capacity rows the constraints are those of a transportation problem (each variable in one bin
        # row and one candidate row: a totally unimodular matrix), so a simplex vertex is already integral: the
        # LP gives the integer optimum, checked below, at a fraction of the cost of branch and bound.
        result = linprog(cost, A_ub=sparse.vstack([matrix, -matrix]).tocsr(), b_ub=np.concatenate([hi, -lo]),
                         bounds=np.column_stack([np.zeros(m), nb]), method="highs-ds")  # fmt: skip
        if result.x is not None and not np.allclose(result.x, np.round(result.x), atol=1e-6):
            result = None
    if result is None or result.x is None:
        result = milp(
            cost,
            integrality=np.ones(m),
            bounds=Bounds(np.zeros(m), nb),
            constraints=LinearConstraint(matrix, lo, hi),
            # an exact optimum: the frontier must be monotone in zeta, and the tie-break must count
            options={"time_limit": SOLVER_TIME_LIMIT_S, "presolve": True, "mip_rel_gap": 0.0},
        )
    if result.x is None:
        why = _infeasible_shares(p)
        if why:
            raise AdviceConfigError("routing.min_share", f"shares that cannot be met: {why}")
        if capped:
            keys = ", ".join(f"{p.keys[j]}.capacity_gpu_s" for j in capped) if p.keys else "capacity_gpu_s"
            raise AdviceConfigError(keys.split(", ")[0], f"the day's queries do not fit the capacities ({keys}) "
                                    f"within the share bounds: {result.message}")  # fmt: skip
        raise RuntimeError(f"routing solver failed at zeta {zeta}: {result.message}")
    counts = np.zeros((b, k))
    counts[rows, cols] = np.round(result.x)
    return Solution(zeta, counts, "optimal" if result.status == 0 else f"stopped: {result.message}")


# ------------------------------------------------------------------------------------------------ results


@dataclass
class DayRouting:
    """Everything the routing assets write for one day."""

    frontier: pd.DataFrame
    plan: pd.DataFrame
    candidates: pd.DataFrame
    requests: int
    requests_not_routed: int
    reference: str
    actual_fit_missing: tuple[str, ...] = ()


def carbon_g(bins: Bins, form: Form, target: str) -> np.ndarray:
    """Operational carbon (g) of each whole bin served by ``form`` in ``target``'s zone (OWN: where it ran)."""
    w = bins.weighted.get(target)
    if w is None:
        return np.full(len(bins), np.nan)
    return form.of_sums(w[:, 0], w[:, 1], w[:, 2]) / J_PER_KWH


def actual_modelled(cells: pd.DataFrame, fits: pd.DataFrame) -> tuple[pd.Series, pd.Series, tuple[str, ...]]:
    """Per cell, the IT energy (J) and operational carbon (g) its own model x hardware's latest fit predicts,
    NaN where there is no fit (those model x hardware pairs are returned too)."""
    energy = pd.Series(np.nan, index=cells.index)
    carbon = pd.Series(np.nan, index=cells.index)
    missing = []
    for (model, hardware), idx in cells.groupby(["model", "hardware"]).groups.items():  # a loop over pairs
        fit = _pick_fit(fits, model, hardware, "energy", None)
        if fit is None:
            missing.append(f"{model} on {hardware or '?'}")
            continue
        form = Form(fit["alpha_in"], fit["alpha_out"], fit["alpha_in_out"])
        c = cells.loc[idx]
        energy.loc[idx] = form.of_sums(c["s_in"], c["s_out"], c["s_io"])
        carbon.loc[idx] = form.of_sums(c["w_in"], c["w_out"], c["w_io"]) / J_PER_KWH
    return energy, carbon, tuple(sorted(missing))


def route_day(
    day,
    cfg: RoutingConfig,
    models: Sequence[RoutedCandidate],
    cells: pd.DataFrame,
    targets: pd.DataFrame,
    fits: pd.DataFrame,
) -> DayRouting:
    """The frontier over cfg.zeta_sweep, the plan at cfg.zeta and the candidates' table for one day."""
    bins = build_bins(cells, targets)
    names = tuple(m.candidate.name for m in models)
    elig = eligibility(bins, models) if len(bins) else None
    routable = elig.eligible.any(axis=1) if elig is not None else np.zeros(0, dtype=bool)
    kept = Bins(bins.frame[routable].reset_index(drop=True), {t: w[routable] for t, w in bins.weighted.items()})
    n = kept.col("n") if len(kept) else np.zeros(0)
    total_requests = int(bins.frame["n"].sum()) if len(bins) else 0
    candidates = _candidates_table(day, models, elig, n_total=total_requests)
    empty = DayRouting(_frontier_frame([]), _plan_frame([]), candidates, 0, total_requests, "no re-routable requests")
    if not len(kept):
        return empty
    energy = np.column_stack([m.energy.of_sums(kept.col("s_in"), kept.col("s_out"), kept.col("s_io")) for m in models])
    carbon = np.column_stack([carbon_g(kept, m.energy, m.candidate.cluster or OWN) for m in models])
    gpu_s = None
    if any(m.candidate.capacity_gpu_s for m in models):
        gpu_s = np.column_stack([
            (m.runtime.of_sums(kept.col("s_in"), kept.col("s_out"), kept.col("s_io")) * m.candidate.gpus)
            if m.runtime is not None else np.full(len(kept), np.nan) for m in models
        ])  # fmt: skip
    problem = Problem(
        n=n,
        energy_j=energy,
        accuracy=np.array([m.candidate.accuracy for m in models]),
        eligible=elig.eligible[routable],
        accuracy_weight=n if cfg.accuracy_weight == "queries" else kept.col("tokens"),
        min_share=cfg.min_share,
        gpu_s=gpu_s,
        capacity_gpu_s=np.array([m.candidate.capacity_gpu_s or np.nan for m in models]),
        names=names,
        keys=tuple(m.candidate.key for m in models),
    )
    ref, e_ref, a_ref = problem.reference()
    reference = "every request on the most accurate candidate whose model covers it: " + ", ".join(
        f"{names[j]} ({int(n[ref == j].sum()):,} requests)" for j in np.unique(ref)
    )
    # the day as it ran: measured, and modelled with the fits of the model x hardware it ran on
    routed_cells = cells.merge(kept.frame[["bin_in", "bin_out"]], on=["bin_in", "bin_out"])
    modelled_j, modelled_g, missing = actual_modelled(routed_cells, fits)
    actual = {
        "actual_measured_kwh": float(kept.col("measured_j").sum()) / J_PER_KWH,
        "actual_measured_operational_kg_co2e": float(kept.col("measured_g").sum()) / 1e3,
        "actual_modelled_kwh": float(modelled_j.sum()) / J_PER_KWH if not missing else None,
        "actual_modelled_operational_kg_co2e": float(modelled_g.sum()) / 1e3
        if not missing and modelled_g.notna().all() else None,
        "actual_accuracy": _actual_accuracy(routed_cells, models),
    }
    rows, plan = [], None
    for zeta in cfg.zeta_sweep:  # a loop over zeta values; each solve is one HiGHS call
        sol = solve(problem, zeta)
        rows.append(_frontier_row(day, sol, problem, carbon, e_ref, a_ref, actual, names, cfg.zeta))
        if math.isclose(zeta, cfg.zeta):
            plan = _plan_rows(day, sol, kept, energy, carbon, names)
    frontier = _frontier_frame(rows)
    frontier["reference"] = reference
    return DayRouting(frontier, _plan_frame(plan or []), candidates, int(n.sum()),
                      total_requests - int(n.sum()), reference, missing)  # fmt: skip


def _actual_accuracy(cells: pd.DataFrame, models: Sequence[RoutedCandidate]) -> float | None:
    """The query-weighted accuracy of the day as it ran, when every request's model is a candidate's model."""
    scores = {m.candidate.model: m.candidate.accuracy for m in models}
    if cells.empty or not set(cells["model"]) <= set(scores):
        return None
    return float((cells["model"].map(scores) * cells["n"]).sum() / cells["n"].sum())


FRONTIER_COLUMNS: dict[str, str] = {
    "day": "date", "zeta": "double", "is_plan": "boolean", "requests": "bigint", "energy_kwh": "double",
    "operational_kg_co2e": "double", "accuracy": "double", "shares": "map(varchar, double)",
    "energy_vs_reference": "double", "accuracy_vs_reference": "double", "actual_measured_kwh": "double",
    "actual_modelled_kwh": "double", "saving_kwh": "double", "saving_vs_measured_kwh": "double",
    "actual_measured_operational_kg_co2e": "double", "actual_modelled_operational_kg_co2e": "double",
    "saving_kg_co2e": "double", "actual_accuracy": "double", "reference": "varchar", "solver_status": "varchar",
}  # fmt: skip
PLAN_COLUMNS: dict[str, str] = {
    "day": "date", "zeta": "double", "bin_input_tokens_min": "bigint", "bin_input_tokens_max": "bigint",
    "bin_output_tokens_min": "bigint", "bin_output_tokens_max": "bigint", "bin_requests": "bigint",
    "candidate": "varchar", "requests": "bigint", "share_of_bin": "double", "energy_kwh": "double",
    "operational_kg_co2e": "double",
}  # fmt: skip
CANDIDATE_COLUMNS: dict[str, str] = {
    "day": "date", "candidate": "varchar", "model": "varchar", "cluster": "varchar", "hardware": "varchar",
    "accuracy": "double", "accuracy_source": "varchar", "energy_source": "varchar", "alpha_in": "double",
    "alpha_out": "double", "alpha_in_out": "double", "runtime_source": "varchar", "beta_in": "double",
    "beta_out": "double", "beta_in_out": "double", "fitted_input_tokens_min": "bigint",
    "fitted_input_tokens_max": "bigint", "fitted_output_tokens_min": "bigint", "fitted_output_tokens_max": "bigint",
    "fitted_range_source": "varchar", "gpus": "bigint", "capacity_gpu_s": "double", "requests_eligible": "bigint",
    "requests_excluded_negative": "bigint", "requests_excluded_range": "bigint", "bins_eligible": "bigint",
    "bins_excluded_negative": "bigint", "bins_excluded_range": "bigint",
}  # fmt: skip


def _frontier_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(FRONTIER_COLUMNS))


def _plan_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(PLAN_COLUMNS))


def _frontier_row(day, sol: Solution, p: Problem, carbon: np.ndarray, e_ref: float, a_ref: float, actual: dict,
                  names: Sequence[str], chosen: float) -> dict:  # fmt: skip
    frac = sol.counts / p.n[:, None]
    energy_j = float((frac * p.energy_j).sum())
    carbon_kg = float((frac * carbon).sum()) / 1e3 if np.isfinite(carbon[sol.counts > 0]).all() else None
    total = float(p.n.sum())
    served = sol.counts.sum(axis=0)
    accuracy_sum = float((frac * p.accuracy[None, :] * p.accuracy_weight[:, None]).sum())
    energy_kwh = energy_j / J_PER_KWH
    modelled, modelled_kg = actual["actual_modelled_kwh"], actual["actual_modelled_operational_kg_co2e"]
    return {
        "day": day,
        "zeta": sol.zeta,
        "is_plan": math.isclose(sol.zeta, chosen),
        "requests": int(total),
        "energy_kwh": energy_kwh,
        "operational_kg_co2e": carbon_kg,
        "accuracy": float((served * p.accuracy).sum() / total),
        "shares": {name: float(s / total) for name, s in zip(names, served)},
        "energy_vs_reference": energy_j / e_ref,
        "accuracy_vs_reference": accuracy_sum / a_ref,
        **actual,
        "saving_kwh": modelled - energy_kwh if modelled is not None else None,
        "saving_vs_measured_kwh": actual["actual_measured_kwh"] - energy_kwh,
        "saving_kg_co2e": modelled_kg - carbon_kg if modelled_kg is not None and carbon_kg is not None else None,
        "solver_status": sol.status,
    }


def _plan_rows(day, sol: Solution, bins: Bins, energy: np.ndarray, carbon: np.ndarray,
               names: Sequence[str]) -> list[dict]:  # fmt: skip
    f = bins.frame
    rows = []
    for b, j in zip(*np.nonzero(sol.counts)):  # one row per (bin, candidate) that serves queries
        share = sol.counts[b, j] / f["n"].iat[b]
        rows.append({
            "day": day, "zeta": sol.zeta, "bin_input_tokens_min": f["in_min"].iat[b],
            "bin_input_tokens_max": f["in_max"].iat[b], "bin_output_tokens_min": f["out_min"].iat[b],
            "bin_output_tokens_max": f["out_max"].iat[b], "bin_requests": f["n"].iat[b], "candidate": names[j],
            "requests": sol.counts[b, j], "share_of_bin": share, "energy_kwh": share * energy[b, j] / J_PER_KWH,
            "operational_kg_co2e": share * carbon[b, j] / 1e3,
        })  # fmt: skip
    return rows


def _candidates_table(day, models: Sequence[RoutedCandidate], elig: Eligibility | None, n_total: int) -> pd.DataFrame:
    rows = []
    for j, m in enumerate(models):  # one row per candidate
        c = m.candidate
        (i0, i1), (o0, o1) = m.token_range or ((None, None), (None, None))
        rt = m.runtime
        excluded_neg = int(elig.negative_requests[j]) if elig is not None else 0
        excluded_range = int(elig.range_requests[j]) if elig is not None else 0
        rows.append({
            "day": day, "candidate": c.name, "model": c.model, "cluster": c.cluster, "hardware": c.hardware,
            "accuracy": c.accuracy, "accuracy_source": c.accuracy_source, "energy_source": m.energy_source,
            "alpha_in": m.energy.a_in, "alpha_out": m.energy.a_out, "alpha_in_out": m.energy.a_in_out,
            "runtime_source": m.runtime_source, "beta_in": rt.a_in if rt else None,
            "beta_out": rt.a_out if rt else None, "beta_in_out": rt.a_in_out if rt else None,
            "fitted_input_tokens_min": i0, "fitted_input_tokens_max": i1, "fitted_output_tokens_min": o0,
            "fitted_output_tokens_max": o1, "fitted_range_source": m.range_source, "gpus": c.gpus,
            "capacity_gpu_s": c.capacity_gpu_s,
            "requests_eligible": n_total - excluded_neg - excluded_range if elig is not None else 0,
            "requests_excluded_negative": excluded_neg, "requests_excluded_range": excluded_range,
            "bins_eligible": int(elig.eligible[:, j].sum()) if elig is not None else 0,
            "bins_excluded_negative": int(elig.negative_bins[j]) if elig is not None else 0,
            "bins_excluded_range": int(elig.range_bins[j]) if elig is not None else 0,
        })  # fmt: skip
    return pd.DataFrame(rows, columns=list(CANDIDATE_COLUMNS))


def read_profiling(data_dir: Path) -> pd.DataFrame | None:
    """The valid profiling runs under <data_dir>/profiling (None when there is no such folder), for the token
    ranges of the profiling fits."""
    from orchestration.lib.energy_models import read_profiling_csv

    folder = Path(data_dir) / "profiling"
    if not folder.is_dir() or not any(folder.rglob("*.csv")):
        return None
    try:
        rows, _ = read_profiling_csv(folder)
    except (OSError, ValueError):
        return None  # the models job reports unreadable profiling files (raw.rejected_rows)
    return rows
