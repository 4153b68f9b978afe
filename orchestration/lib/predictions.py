"""Predicted duration, forward passes and energy of requests from the e_K / r_K models (METHODOLOGY section 4).

Pure library code: pandas / DuckDB in, pandas out; no Dagster.

Why refit here: a 95 % *prediction* interval for a new request needs the coefficient covariance
(X'X)^-1 sigma^2, which ``models.energy_model_fits`` does not store. So the predictions fit the paper's form
(``energy_models.fit_energy_model``, no-intercept OLS on tau_in, tau_out, tau_in * tau_out) once per
model x hardware on the training frame and call statsmodels' ``get_prediction(exog).summary_frame(alpha=0.05)`` on
the whole exog matrix of that group's requests (``obs_ci_lower`` / ``obs_ci_upper``; clipped at 0).

Definitions (one, used everywhere in this module):
- ``predicted_energy_j`` = e_K(tau_in, tau_out) fitted to **it_energy_j** of ``marts.fct_request_energy``: the
  request's total attributed IT energy, i.e. its dynamic energy + its idle share + its share of unallocated idle
  energy, each as attributed by METHODOLOGY section 3 (the idle shares are per request-second). The idle share per
  request-second is therefore already *inside* the fitted target, at the concurrency the fleet ran at during the
  training window; it is not added a second time.
- ``predicted_request_duration_s`` = r_K(tau_in, tau_out) fitted to ``duration_s``.
- ``predicted_inferences`` = output_tokens + 1 (one forward pass per generated token plus the prefill).
- Training data: telemetry-attributed requests (``marts.fct_request_energy`` joined to ``raw.clusters`` for the
  hardware = the cluster's gpu_model), trailing ``WINDOW_DAYS`` days.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from orchestration.lib import day_parts, engines
from orchestration.lib.energy_models import SingularDesignError, fit_energy_model
from orchestration.lib.warehouse import fetch_one, replace_table

WINDOW_DAYS = 28
ALPHA = 0.05
ENERGY_TARGET = "it_energy_j"
RUNTIME_TARGET = "duration_s"
STATUS_OK = "ok"
ENERGY_DEFINITION = (
    "e_K(tau_in, tau_out) fitted (no-intercept OLS, paper form) to it_energy_j of marts.fct_request_energy: "
    "dynamic + idle share + unallocated idle share as attributed per request-second on telemetry; the idle share "
    "is inside the fitted target and is not added again"
)
TRAINING_SOURCE = (
    "marts.fct_request_energy (telemetry-attributed it_energy_j, duration_s) x raw.clusters.gpu_model"
)

PREDICTION_COLUMNS: tuple[str, ...] = (
    "predicted_request_duration_s",
    "predicted_duration_low_s",
    "predicted_duration_high_s",
    "predicted_inferences",
    "predicted_energy_j",
    "predicted_energy_low_j",
    "predicted_energy_high_j",
    "prediction_status",
)

# models.request_predictions and models.prediction_errors (column -> DuckDB type)
REQUEST_PREDICTIONS_SCHEMA: dict[str, str] = {
    "request_id": "varchar",
    "model": "varchar",
    "hardware": "varchar",
    "cluster": "varchar",
    "day": "date",
    "input_tokens": "bigint",
    "output_tokens": "bigint",
    "attributed_it_energy_j": "double",
    "predicted_request_duration_s": "double",
    "predicted_duration_low_s": "double",
    "predicted_duration_high_s": "double",
    "predicted_inferences": "bigint",
    "predicted_energy_j": "double",
    "predicted_energy_low_j": "double",
    "predicted_energy_high_j": "double",
    "prediction_status": "varchar",
    "predicted_at": "timestamp",
    "modality": "varchar",
}
PREDICTION_ERRORS_SCHEMA: dict[str, str] = {
    "model": "varchar",
    "hardware": "varchar",
    "n_requests": "bigint",
    "n": "bigint",
    "mape": "double",
    "median_ratio": "double",
    "interval_coverage": "double",
    "computed_at": "timestamp",
}


class NoTrainingDataError(ValueError):
    """No attributed requests to train on for the model (and cluster / window) asked for."""


# ------------------------------------------------------------------------------------------------ predict


def _group_fit(train: pd.DataFrame, target: str):
    """The statsmodels results of the paper form for one group and target, or the reason there is none."""
    try:
        fit = fit_energy_model(train, target, form="paper", cv_folds=2)
    except (SingularDesignError, KeyError) as exc:
        return None, str(exc)
    return fit.results, None


def _interval(results, exog: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean prediction and the 95 % prediction interval for new observations, clipped at 0 (vectorised)."""
    frame = results.get_prediction(exog).summary_frame(alpha=ALPHA)
    return (
        frame["mean"].to_numpy(float),
        np.clip(frame["obs_ci_lower"].to_numpy(float), 0.0, None),
        np.clip(frame["obs_ci_upper"].to_numpy(float), 0.0, None),
    )


def predict_requests(
    requests_df: pd.DataFrame,
    training_df: pd.DataFrame,
    group_cols: Sequence[str] = ("model", "hardware"),
) -> pd.DataFrame:
    """``requests_df`` with PREDICTION_COLUMNS appended (same row order and index).

    requests_df needs the group columns, input_tokens and output_tokens; training_df also it_energy_j and
    duration_s. One energy fit and one runtime fit per group of training_df (no-intercept paper form), then one
    vectorised prediction per group over all of that group's requests. Requests of a group without a fit get NULL
    predictions and prediction_status 'no fit for model X on hardware Y' (with the reason when a fit failed);
    requests with missing token counts get 'missing token counts'. predicted_inferences = output_tokens + 1
    whenever output_tokens is known, fit or not.
    """
    group_cols = list(group_cols)
    out = requests_df.copy()
    n = len(out)
    tin = pd.to_numeric(out["input_tokens"], errors="coerce").to_numpy(float)
    tout = pd.to_numeric(out["output_tokens"], errors="coerce").to_numpy(float)
    cols = {
        c: np.full(n, np.nan)
        for c in PREDICTION_COLUMNS
        if c not in ("prediction_status", "predicted_inferences")
    }
    status = np.full(n, None, dtype=object)
    tokens_ok = np.isfinite(tin) & np.isfinite(tout)

    train_groups = {
        (k if isinstance(k, tuple) else (k,)): g
        for k, g in training_df.dropna(subset=group_cols).groupby(group_cols, sort=False)
    }

    if n:
        keys = out[group_cols].astype(object).where(out[group_cols].notna(), None)
        for key, pos in keys.groupby(
            group_cols, sort=False, dropna=False
        ).indices.items():  # a loop over groups
            key = key if isinstance(key, tuple) else (key,)
            label = "no fit for " + " on ".join(f"{c} {v}" for c, v in zip(group_cols, key))
            train = train_groups.get(key)
            if train is None:
                status[pos] = label + ": no training data"
                continue
            e_res, e_why = _group_fit(train, ENERGY_TARGET)
            r_res, r_why = _group_fit(train, RUNTIME_TARGET)
            if e_res is None or r_res is None:
                status[pos] = f"{label}: {e_why or r_why}"
                continue
            ok = pos[tokens_ok[pos]]
            status[pos[~tokens_ok[pos]]] = "missing token counts"
            if not len(ok):
                continue
            exog = np.column_stack([tin[ok], tout[ok], tin[ok] * tout[ok]])
            for res, names in (
                (e_res, ("predicted_energy_j", "predicted_energy_low_j", "predicted_energy_high_j")),
                (
                    r_res,
                    ("predicted_request_duration_s", "predicted_duration_low_s", "predicted_duration_high_s"),
                ),
            ):
                mean, low, high = _interval(res, exog)
                cols[names[0]][ok] = mean
                cols[names[1]][ok] = low
                cols[names[2]][ok] = high
            status[ok] = STATUS_OK

    for c in PREDICTION_COLUMNS:
        if c == "prediction_status":
            out[c] = status
        elif c == "predicted_inferences":
            out[c] = pd.array(np.where(np.isfinite(tout), tout + 1, np.nan), dtype="Float64").astype("Int64")
        else:
            out[c] = cols[c]
    return out


def prediction_errors(
    pred_df: pd.DataFrame,
    attributed_col: str = "attributed_it_energy_j",
    group_cols: Sequence[str] = ("model", "hardware"),
) -> pd.DataFrame:
    """Per group: n_requests, n (requests with a prediction and attributed energy > 0), MAPE (fraction) and median
    of predicted / attributed energy, and the share of attributed energies inside the 95 % prediction interval."""
    group_cols = list(group_cols)
    att = pd.to_numeric(pred_df[attributed_col], errors="coerce")
    pred = pd.to_numeric(pred_df["predicted_energy_j"], errors="coerce")
    usable = att.gt(0) & pred.notna()
    ratio = (pred / att).where(usable)
    work = pd.DataFrame(
        {
            **{c: pred_df[c].astype(object).where(pred_df[c].notna(), None) for c in group_cols},
            "usable": usable.astype(int),
            "ape": (ratio - 1).abs(),
            "ratio": ratio,
            "inside": (
                (att >= pred_df["predicted_energy_low_j"]) & (att <= pred_df["predicted_energy_high_j"])
            )
            .astype(float)
            .where(usable),
        }
    )
    if not len(work):
        return pd.DataFrame(
            columns=[*group_cols, "n_requests", "n", "mape", "median_ratio", "interval_coverage"]
        )
    g = work.groupby(group_cols, sort=True, dropna=False)
    out = g.agg(
        n_requests=("usable", "size"),
        n=("usable", "sum"),
        mape=("ape", "mean"),
        median_ratio=("ratio", "median"),
        interval_coverage=("inside", "mean"),
    ).reset_index()
    out["n_requests"] = out["n_requests"].astype("int64")
    out["n"] = out["n"].astype("int64")
    return out


def errors_markdown(errors: pd.DataFrame) -> str:
    """A markdown table of prediction_errors for the Dagster UI."""
    lines = [
        "| model | hardware | requests | n | MAPE | median ratio | 95 % PI coverage |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]

    def f(v, pct: bool = False) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        return f"{100 * v:.1f} %" if pct else f"{v:.3f}"

    for r in errors.itertuples(index=False):
        lines.append(
            f"| {r.model} | {r.hardware} | {r.n_requests} | {r.n} | {f(r.mape, True)} | {f(r.median_ratio)} "
            f"| {f(r.interval_coverage, True)} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------- warehouse reads

# text requests only: image requests have their own models (orchestration/lib/images)
TEXT_REQUESTS = "(select * from marts.fct_request_energy where modality = 'text')"
_TRAINING_SQL = f"""
    select
        f.request_id, f.model, c.gpu_model as hardware, f.cluster, f.day, f.start_time,
        f.input_tokens, f.output_tokens, f.it_energy_j, f.duration_s, f.mean_concurrency
    from {TEXT_REQUESTS} as f
    left join raw.clusters as c on c.cluster = f.cluster
"""


def latest_day(con) -> dt.date | None:
    """The latest request day in marts.fct_request_energy (None when empty)."""
    return fetch_one(con, "select max(day) from marts.fct_request_energy")[0]


# Fits use at most this many requests per model x hardware: a deterministic sample (by a hash of request_id) of
# the trailing window. Three coefficients are pinned down long before that (standard errors shrink as 1/sqrt(n)),
# while fitting, cross-validating and testing millions of rows a day costs minutes. nobs reports the sample size.
FIT_MAX_ROWS = 200_000
THIN_MARGIN = 1.2  # the hash threshold of a large group keeps about this many times the cap


def window_requests(
    con, end_day: dt.date | None = None, days: int = WINDOW_DAYS, max_rows_per_group: int | None = None
) -> pd.DataFrame:
    """Requests of marts.fct_request_energy with hardware, over the ``days`` days ending with end_day (inclusive;
    default the latest day); with ``max_rows_per_group``, a deterministic sample of at most that many per model x
    hardware (the requests whose hash of request_id is smallest: the same requests every run)."""
    end_day = end_day or latest_day(con)
    if end_day is None:
        return con.execute(_TRAINING_SQL + " where false").df()
    start = end_day - dt.timedelta(days=days - 1)
    if max_rows_per_group is None:
        return con.execute(
            _TRAINING_SQL + " where f.day between ? and ? order by f.day, f.request_id", [start, end_day]
        ).df()
    # The requests with the smallest hash of request_id, per group. Ranking millions of rows by hash costs a full
    # sort, so rank only those under a hash threshold that keeps ~THIN_MARGIN x the cap (the group's share of
    # 2^64); if the threshold kept too few (it keeps `cap` with overwhelming probability), rank the whole group.
    # The sample is built in a temporary table and converted to pandas once, sorted (DuckDB sorts the strings far
    # faster than pandas, and each conversion of the frame's strings costs a third of a second at 400,000 rows).
    source = f"select *, hash(request_id) as request_hash from ({_TRAINING_SQL} where f.day between $start and $end)"
    sizes = f"select model, hardware, count(*) as n from ({source}) group by all"
    return _group_sample(con, source, sizes, {"start": start, "end": end_day}, int(max_rows_per_group))


# ------------------------------------------------------------------------ the fits' sample, from per-day parts
#
# window_requests ranks the whole window by hash on every run: at 5 M requests a day that costs ~0.8 s more per
# day of history. A sample of the smallest hashes merges exactly: the window's FIT_MAX_ROWS smallest of a group
# are among the FIT_MAX_ROWS smallest of each day they come from. So the daily job keeps, per start day x model x
# hardware, those FIT_MAX_ROWS requests (FIT_SAMPLE_TABLE) and the day's request count (FIT_COUNTS_TABLE), and
# the fits rank only the window's parts (orchestration/lib/day_parts.py: requests that ran past midnight are
# kept apart and recomputed by the days that complete them). window_sample() returns what
# window_requests(..., max_rows_per_group=FIT_MAX_ROWS) returns, row for row. (The hash is DuckDB's hash(): parts
# kept by another DuckDB version may rank differently. After a DuckDB upgrade, drop models.fit_sample_days and
# models.fit_sample_day_counts to rebuild them, or the sample mixes the two versions' rankings.)

FIT_SAMPLE_TABLE = "models.fit_sample_days"
FIT_COUNTS_TABLE = "models.fit_sample_day_counts"
_FULL_HASH = 2**64 - 1
_SAMPLE_COLUMNS = (
    "request_id, model, hardware, cluster, day, start_time, input_tokens, output_tokens, it_energy_j, "
    "duration_s, mean_concurrency"
)

_DAY_SOURCE_SQL = f"""
    select
        r.request_id, r.model, c.gpu_model as hardware, r.cluster, r.day, r.start_time, r.input_tokens,
        r.output_tokens, r.it_energy_j, r.duration_s, r.mean_concurrency,
        r.days_spanned > 1 as spanning, hash(r.request_id) as request_hash
    from {TEXT_REQUESTS} as r
    left join raw.clusters as c on c.cluster = r.cluster
    where {day_parts.DAYS_SQL}
"""

# each group of `sizes` (its keys and n) with its hash bound: ~THIN_MARGIN x cap of its requests (all when n <= cap)
_BOUNDS_SQL = (
    "select *, case when n > $margin * $cap then cast(least($margin * $cap / n, 0.999999) * $full_double as ubigint) "
    "else cast($full as ubigint) end as below, false as rerank from ({sizes})"
)

# the ranked sample of `source` (alias s) per `keys`, below each group's bound in `bounds` (alias b)
_RANKED_SQL = """
    select s.* from ({source}) as s
    inner join {bounds} as b on {join}
    where s.request_hash <= b.below {only}
    qualify row_number() over (partition by {keys} order by s.request_hash, s.request_id) <= $cap
"""


def _join(keys: Sequence[str]) -> str:
    return " and ".join(f"s.{k} is not distinct from b.{k}" for k in keys)


def _sample_into(con, name: str, source: str, bounds: str, keys: Sequence[str], values: dict) -> None:
    """Temporary table ``name``: the sample of ``source`` per ``keys`` under the bounds of the temporary table
    ``bounds`` (keys, n, below); a thinned group that kept fewer than min(cap, n) is ranked again in full."""
    fmt = {"source": source, "bounds": bounds, "join": _join(keys), "keys": ", ".join(f"s.{k}" for k in keys)}
    sql = _RANKED_SQL.format(only="", **fmt)
    con.execute(f"create or replace temp table {name} as {sql}", day_parts.bind(sql, values))
    con.execute(
        f"""
        update {bounds} as b set below = cast($full as ubigint), rerank = true
        where b.below < cast($full as ubigint) and (
            select count(*) from {name} as k where {" and ".join(f"k.{k} is not distinct from b.{k}" for k in keys)}
        ) < least($cap, b.n)
        """,
        {"full": _FULL_HASH, "cap": values["cap"]},
    )
    (rerank,) = fetch_one(con, f"select count(*) from {bounds} where rerank")
    if rerank:
        con.execute(f"delete from {name} as s using {bounds} as b where b.rerank and {_join(keys)}")
        sql = _RANKED_SQL.format(only="and b.rerank", **fmt)
        con.execute(f"insert into {name} {sql}", day_parts.bind(sql, values))


def _bounds_values(cap: int) -> dict:
    return {"cap": cap, "margin": THIN_MARGIN, "full": _FULL_HASH, "full_double": float(_FULL_HASH)}


def replace_fit_sample_days(con, first: dt.date, last: dt.date, span_first: dt.date | None = None) -> tuple[int, int]:
    """Replace the fit sample's parts of the requests that started in [first, last] (and of those that ran past
    midnight and started in [span_first, last]): per start day x model x hardware, the request count and the
    FIT_MAX_ROWS requests with the smallest hash of request_id. Returns the (count, sample) rows written."""
    values = {**day_parts.params(first, last, span_first), **_bounds_values(FIT_MAX_ROWS)}
    keys = ("day", "spanning", "model", "hardware")
    source = _DAY_SOURCE_SQL
    try:
        bounds = _BOUNDS_SQL.format(
            sizes=f"select day, spanning, model, hardware, count(*) as n from ({source}) group by all"
        )
        con.execute(f"create or replace temp table _fit_day_counts as {bounds}", day_parts.bind(bounds, values))
        _sample_into(con, "_fit_day_sample", source, "_fit_day_counts", keys, values)
        return tuple(
            day_parts.replace(
                con,
                [
                    (FIT_COUNTS_TABLE, "select day, spanning, model, hardware, n as requests from _fit_day_counts"),
                    (FIT_SAMPLE_TABLE, "select * from _fit_day_sample"),
                ],
                day_parts.params(first, last, span_first),
            )
        )
    finally:
        con.execute("drop table if exists _fit_day_sample")
        con.execute("drop table if exists _fit_day_counts")


def reduce_fit_sample_day(con, day: dt.date, max_request_duration_s: float) -> tuple[int, int]:
    """The daily reduction of ``day`` for the fit sample (and the requests of the days before that ran into it)."""
    if engines.is_spark(con):
        from orchestration.lib.engines import spark_steps

        return spark_steps.replace_fit_sample_days(con, day, day, day_parts.look_back(day, max_request_duration_s))
    return replace_fit_sample_days(con, day, day, day_parts.look_back(day, max_request_duration_s))


def window_sample(
    con, end_day: dt.date | None = None, days: int = WINDOW_DAYS, cap: int | None = None
) -> pd.DataFrame:
    """window_requests(con, end_day, days, max_rows_per_group=cap), from the days' parts: the window's days
    that have requests but no parts are reduced first. ``cap`` (default FIT_MAX_ROWS) is at most FIT_MAX_ROWS,
    what a part keeps."""
    cap = FIT_MAX_ROWS if cap is None else cap
    if cap > FIT_MAX_ROWS:
        raise ValueError(f"the daily parts keep {FIT_MAX_ROWS} requests per group, not {cap}")
    end_day = end_day or latest_day(con)
    if end_day is None:
        return con.execute(_TRAINING_SQL + " where false").df()
    start = end_day - dt.timedelta(days=days - 1)
    if engines.is_spark(con):
        from orchestration.lib.engines import spark_steps

        reduce, sample = spark_steps.replace_fit_sample_days, spark_steps.window_sample
    else:
        reduce, sample = replace_fit_sample_days, None
    day_parts.reduce_missing(
        con, start, end_day, TEXT_REQUESTS, FIT_COUNTS_TABLE,
        lambda first, last: reduce(con, first, last),
    )
    if not engines.has_table(con, FIT_COUNTS_TABLE):  # no request in the window at all
        return con.execute(_TRAINING_SQL + " where false").df()
    if sample is not None:
        return sample(con, start, end_day, cap)
    return _group_sample(
        con,
        f"select * from {FIT_SAMPLE_TABLE} where day between $start and $end",
        f"select model, hardware, sum(requests) as n from {FIT_COUNTS_TABLE} where day between $start and $end "
        "group by all",
        {"start": start, "end": end_day},
        cap,
    )


def _group_sample(con, source: str, sizes: str, values: dict, cap: int) -> pd.DataFrame:
    """The ``cap`` rows of ``source`` (the sample's columns and request_hash) with the smallest hash per model x
    hardware, whose sizes (model, hardware, n) ``sizes`` gives; sorted by day and request_id."""
    values = {**values, **_bounds_values(cap)}
    bounds = _BOUNDS_SQL.format(sizes=sizes)
    try:
        con.execute(f"create or replace temp table _fit_group_bounds as {bounds}", day_parts.bind(bounds, values))
        _sample_into(con, "_fit_group_sample", source, "_fit_group_bounds", ("model", "hardware"), values)
        return con.execute(f"select {_SAMPLE_COLUMNS} from _fit_group_sample order by day, request_id").df()
    finally:
        con.execute("drop table if exists _fit_group_sample")
        con.execute("drop table if exists _fit_group_bounds")


def _parse_at(at: str | None) -> pd.Timestamp | None:
    if at is None:
        return None
    ts = pd.Timestamp(at)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _cluster_hardware(con, cluster: str | None) -> str | None:
    """The gpu_model of ``cluster`` (None without one). Raises ValueError for a cluster not in raw.clusters."""
    if cluster is None:
        return None
    row = fetch_one(con, "select gpu_model from raw.clusters where cluster = ?", [cluster])
    if row is None:
        raise ValueError(f"unknown cluster {cluster!r} (not in raw.clusters)")
    return row[0]


def predict_one(
    con,
    model: str,
    input_tokens: int,
    output_tokens: int,
    cluster: str | None = None,
    at: str | None = None,
    days: int = WINDOW_DAYS,
    hardware: str | None = None,
    source: str = "telemetry",
) -> dict:
    """Predict one hypothetical request of ``model`` from the warehouse's attributed requests.

    Training data: the model's requests in marts.fct_request_energy over the ``days`` days before ``at``
    (RFC 3339; start_time in [at - days, at)) or, without ``at``, the ``days`` days ending with the model's latest
    day. With ``cluster`` the hardware is that cluster's gpu_model (all clusters of that hardware train it), with
    ``hardware`` that GPU model; without either, the hardware with the most training requests. With ``source``
    profiling, the latest stored fits of the profiling runs (models.energy_model_fits, source profiling) predict
    instead. Raises NoTrainingDataError when there is nothing to train on or no such fit, ValueError on a bad
    ``at`` or unknown cluster.
    """
    hardware = _cluster_hardware(con, cluster) or hardware
    if source == "profiling":
        return _predict_from_profiling_fit(con, model, input_tokens, output_tokens, cluster, hardware, at)
    at_ts = _parse_at(at)
    where, params = ["f.model = ?"], [model]
    if hardware is not None:
        where.append("lower(c.gpu_model) = lower(?)")
        params.append(hardware)
    if at_ts is not None:
        end = at_ts.tz_convert("UTC").tz_localize(None).to_pydatetime()
        where.append("f.start_time >= ? and f.start_time < ?")
        params += [end - dt.timedelta(days=days), end]
        window = (str(end - dt.timedelta(days=days)), str(end))
    else:
        where.append(
            f"f.day > (select max(day) from marts.fct_request_energy where model = ?) - interval {int(days)} day"
        )
        params.append(model)
        window = None
    train = con.execute(_TRAINING_SQL + " where " + " and ".join(where), params).df()
    train = train[train["hardware"].notna()]
    if not len(train):
        scope = f" on cluster {cluster} ({hardware})" if cluster else ""
        when = f" in the {days} days before {at}" if at else ""
        raise NoTrainingDataError(f"no attributed requests of model {model!r}{scope}{when} in the warehouse")
    counts = train["hardware"].value_counts()
    hardware = str(counts.index[0]) if hardware is None else str(train["hardware"].iloc[0])
    train = train[train["hardware"] == hardware]
    if window is None:
        window = (str(pd.Timestamp(train["day"].min()).date()), str(pd.Timestamp(train["day"].max()).date()))
    req = pd.DataFrame(
        {
            "model": [model],
            "hardware": [hardware],
            "input_tokens": [input_tokens],
            "output_tokens": [output_tokens],
        }
    )
    p = predict_requests(req, train).iloc[0]

    def num(v):
        return None if v is None or pd.isna(v) else float(v)

    result = {
        "model": model,
        "hardware": hardware,
        "cluster": cluster,
        "modality": "text",
        "source": "telemetry",
        "input_tokens": int(input_tokens),
        "output_tokens": int(output_tokens),
        "predicted_inferences": int(output_tokens) + 1,
        "predicted_request_duration_s": num(p["predicted_request_duration_s"]),
        "predicted_duration_low_s": num(p["predicted_duration_low_s"]),
        "predicted_duration_high_s": num(p["predicted_duration_high_s"]),
        "predicted_energy_j": num(p["predicted_energy_j"]),
        "predicted_energy_low_j": num(p["predicted_energy_low_j"]),
        "predicted_energy_high_j": num(p["predicted_energy_high_j"]),
        "interval": "95 % prediction interval",
        "prediction_status": p["prediction_status"],
        "nobs": len(train),
        "training_source": TRAINING_SOURCE,
        "training_clusters": sorted(train["cluster"].dropna().unique().tolist()),
        "training_window_start": window[0],
        "training_window_end": window[1],
        "other_hardware": [str(h) for h in counts.index if h != hardware],
        "energy_definition": ENERGY_DEFINITION,
    }
    result["impact"] = hypothetical_impact(
        con, cluster or _cluster_of(train), model, at_ts, result
    )
    return result


# the prediction's columns per fitted target: (mean, 95 % PI low, high)
INTERVAL_COLUMNS: dict[str, tuple[str, str, str]] = {
    "energy": ("predicted_energy_j", "predicted_energy_low_j", "predicted_energy_high_j"),
    "runtime": ("predicted_request_duration_s", "predicted_duration_low_s", "predicted_duration_high_s"),
}


def best_covered_hardware(fits: pd.DataFrame) -> tuple[str, dict[str, dict], list[str]]:
    """Of stored fits of one model (one row per hardware x target): the hardware fitted on the most runs, its fits
    by target, and the other hardware."""
    nobs = fits.groupby("hardware")["nobs"].max().sort_values(ascending=False)
    chosen = str(nobs.index[0])
    return chosen, {r["target"]: r for r in fits[fits["hardware"] == chosen].to_dict("records")}, [
        str(h) for h in nobs.index[1:]
    ]


_PROFILING_FITS_SQL = """
    select * from models.energy_model_fits
    where form = 'paper' and source = 'profiling' and t_975 is not null and alpha_in is not null and model = $model
      and ($hardware is null or lower(hardware) = lower($hardware))
    qualify row_number() over (partition by hardware, target order by fitted_at desc) = 1
"""


def stored_fit_interval(fit: dict, x: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95 % prediction interval (clipped at 0) of a stored paper-form fit row at x = (tau_in, tau_out,
    tau_in tau_out): x'a and t_975 sqrt(s^2 + x'Vx), statsmodels' obs_ci (as the predictions view computes it)."""
    keys = ("in", "out", "in_out")
    mean = sum(fit[f"alpha_{k}"] * v for k, v in zip(keys, x))
    quad = sum(
        (1 if a == b else 2) * fit[f"cov_{a}_{b}"] * x[i] * x[keys.index(b)]
        for i, a in enumerate(keys)
        for b in keys[i:]
    )
    half = fit["t_975"] * math.sqrt(max(fit["resid_variance"] + quad, 0.0))
    return float(mean), max(float(mean - half), 0.0), max(float(mean + half), 0.0)


def _predict_from_profiling_fit(
    con, model: str, input_tokens: int, output_tokens: int, cluster: str | None, hardware: str | None, at
) -> dict:
    """predict_one from the latest profiling fits stored in models.energy_model_fits."""
    fits = con.execute(_PROFILING_FITS_SQL, {"model": model, "hardware": hardware}).df() if engines.has_table(
        con, "models.energy_model_fits"
    ) else pd.DataFrame()
    if fits.empty:
        scope = f" on hardware {hardware}" if hardware else ""
        raise NoTrainingDataError(
            f"no profiling fit of model {model!r}{scope} in models.energy_model_fits: put its profiling runs under "
            "<data dir>/profiling/ and run `impact run`"
        )
    chosen, by_target, others = best_covered_hardware(fits)
    x = (float(input_tokens), float(output_tokens), float(input_tokens) * float(output_tokens))
    out = {}
    for target, names in INTERVAL_COLUMNS.items():
        fit = by_target.get(target)
        out.update(dict(zip(names, stored_fit_interval(fit, x) if fit else (None, None, None))))
    energy = by_target.get("energy", {})
    result = {
        "model": model, "hardware": chosen, "cluster": cluster, "modality": "text",
        "input_tokens": int(input_tokens), "output_tokens": int(output_tokens),
        "predicted_inferences": int(output_tokens) + 1, **out,
        "interval": "95 % prediction interval",
        "prediction_status": STATUS_OK if out["predicted_energy_j"] is not None else "no energy fit",
        "source": "profiling", "nobs": int(energy.get("nobs") or 0),
        "training_source": f"profiling fit of {energy.get('fitted_at')} (models.energy_model_fits)",
        "training_clusters": [], "training_window_start": None, "training_window_end": None,
        "other_hardware": others,
        "energy_definition": "e_K(tau_in, tau_out) fitted (paper form) to the GPU energy of the profiling runs",
    }  # fmt: skip
    result["impact"] = hypothetical_impact(con, cluster, model, _parse_at(at), result)
    return result


def _cluster_of(train: pd.DataFrame) -> str | None:
    """The cluster that served most of the training requests (its factors price a request without --cluster)."""
    counts = train["cluster"].dropna().value_counts()
    return str(counts.index[0]) if len(counts) else None


_IMPACT_FACTORS_SQL = """
with f as (
    select * from intermediate.int_cluster_day_factors
    where cluster = $cluster and day <= $day
    order by day desc limit 1
),
hourly as (
    select location_g_co2e_per_kwh, location_low_g_co2e_per_kwh, location_high_g_co2e_per_kwh, grid_source,
           resolution
    from intermediate.int_cluster_hour_intensity
    where cluster = $cluster and hour_start = $hour
),
embodied as (
    -- embodied carbon and water per request-second on the cluster's latest day with requests
    select sum(embodied_g_co2e) / nullif(sum(request_seconds), 0) as g_per_s,
           sum(embodied_low_g_co2e) / nullif(sum(request_seconds), 0) as low_g_per_s,
           sum(embodied_high_g_co2e) / nullif(sum(request_seconds), 0) as high_g_per_s,
           sum(water_embodied_l) / nullif(sum(request_seconds), 0) as water_l_per_s
    from intermediate.int_request_days
    where cluster = $cluster and day = (select day from f)
),
training as (
    select t.training_g_co2e_per_inference + t.fine_tuning_g_co2e_per_inference as g_per_inference,
           t.training_water_l_per_inference + t.fine_tuning_water_l_per_inference as water_l_per_inference,
           t.factor_model, t.rate_basis
    from marts.dim_model_training_rates as t
    join staging.stg_factors__models as m on m.factor_model = t.factor_model
    where m.alias_key = $model_key and t.month <= $day
    order by t.month desc limit 1
)
select f.zone, f.pue, f.pue_low, f.pue_high, f.wue_onsite_l_per_kwh, f.wue_low_l_per_kwh, f.wue_high_l_per_kwh,
       f.ewif_l_per_kwh, f.ewif_low_l_per_kwh, f.ewif_high_l_per_kwh,
       coalesce(h.location_g_co2e_per_kwh, f.annual_location_g_co2e_per_kwh) as ci,
       coalesce(h.location_low_g_co2e_per_kwh, f.annual_low_g_co2e_per_kwh) as ci_low,
       coalesce(h.location_high_g_co2e_per_kwh, f.annual_high_g_co2e_per_kwh) as ci_high,
       coalesce(h.resolution, 'annual') as grid_resolution,
       coalesce(h.grid_source, f.annual_grid_source) as grid_source,
       e.g_per_s, e.low_g_per_s, e.high_g_per_s, e.water_l_per_s,
       coalesce(t.g_per_inference, 0) as training_g_per_inference,
       coalesce(t.water_l_per_inference, 0) as training_water_l_per_inference,
       coalesce(t.factor_model || ' (' || t.rate_basis || ')', 'none: no training factor') as training_source
from f
left join hourly as h on true
left join embodied as e on true
left join training as t on true
"""


def hypothetical_impact(con, cluster: str | None, model: str, at_ts, p: dict) -> dict | None:
    """Carbon and water of the predicted request on ``cluster``'s factors (METHODOLOGY section 5), priced like
    marts.fct_request_impact: facility = PUE x energy, grid intensity of the hour ``at`` (or the latest day's
    first hour, else the annual fallback), embodied per request-second of the cluster's latest day, training at
    the model's monthly rate x (output tokens + 1). Bounds combine the 95 % PIs of energy and duration with the
    factor ranges at the same end. None when the warehouse has no impact tables yet."""
    from orchestration.lib.factors import model_key

    if cluster is None or p["predicted_energy_j"] is None:
        return None
    import duckdb

    try:
        day_row = fetch_one(
            con,
            "select max(day) from intermediate.int_cluster_day_factors where cluster = ?", [cluster]
        )
    except duckdb.CatalogException:  # a warehouse built before the impact marts
        return None
    if day_row is None or day_row[0] is None:
        return None
    when = at_ts.tz_convert("UTC").tz_localize(None) if at_ts is not None else pd.Timestamp(day_row[0])
    hour = when.floor("h").to_pydatetime()
    row = con.execute(
        _IMPACT_FACTORS_SQL,
        {"cluster": cluster, "day": when.date(), "hour": hour, "model_key": model_key(model)},
    ).df()
    if row.empty:
        return None
    f = row.iloc[0]
    inferences = p["predicted_inferences"]

    def val(x) -> float:
        return 0.0 if x is None or pd.isna(x) else float(x)

    def one(energy_j, duration_s, pue, ci, wue, ewif, embodied_per_s) -> dict:
        kwh = val(energy_j) / 3.6e6
        operational = val(pue) * kwh * val(ci)
        embodied = val(embodied_per_s) * val(duration_s)
        training = val(f["training_g_per_inference"]) * inferences
        water = (
            val(wue) * kwh + val(ewif) * val(pue) * kwh + val(f["water_l_per_s"]) * val(duration_s)
            + val(f["training_water_l_per_inference"]) * inferences
        )
        return {
            "facility_energy_j": val(pue) * val(energy_j),
            "operational_location_g_co2e": operational,
            "embodied_g_co2e": embodied,
            "training_g_co2e": training,
            "total_g_co2e": operational + embodied + training,
            "total_water_l": water,
        }

    mid = one(p["predicted_energy_j"], p["predicted_request_duration_s"], f["pue"], f["ci"],
              f["wue_onsite_l_per_kwh"], f["ewif_l_per_kwh"], f["g_per_s"])  # fmt: skip
    low = one(max(val(p["predicted_energy_low_j"]), 0.0), max(val(p["predicted_duration_low_s"]), 0.0),
              f["pue_low"], f["ci_low"], f["wue_low_l_per_kwh"], f["ewif_low_l_per_kwh"], f["low_g_per_s"])  # fmt: skip
    high = one(p["predicted_energy_high_j"], p["predicted_duration_high_s"], f["pue_high"], f["ci_high"],
               f["wue_high_l_per_kwh"], f["ewif_high_l_per_kwh"], f["high_g_per_s"])  # fmt: skip
    return {
        "cluster": cluster,
        "zone": f["zone"],
        "at": str(hour),
        "grid_resolution": f["grid_resolution"],
        "grid_source": f["grid_source"],
        "training_source": f["training_source"],
        **mid,
        "total_g_co2e_low": low["total_g_co2e"],
        "total_g_co2e_high": high["total_g_co2e"],
        "total_water_l_low": low["total_water_l"],
        "total_water_l_high": high["total_water_l"],
    }


# ------------------------------------------------------------------------------------------------------ CLI


def predict_image_one(
    con,
    model: str,
    request: dict,
    cluster: str | None = None,
    hardware: str | None = None,
    source: str = "telemetry",
    at: str | None = None,
    days: int = WINDOW_DAYS,
) -> dict:
    """Predict one hypothetical image request (``request``: the keyword arguments of images.predict.request_frame)
    with its impact on the cluster's factors, as predict_one does for text. Raises NoTrainingDataError when there is
    no metered image request or profiling fit to predict from."""
    from orchestration.lib.images import predict as image_predict

    hardware = _cluster_hardware(con, cluster) or hardware
    at_ts = _parse_at(at)
    frame = image_predict.request_frame(**request)
    try:
        p = image_predict.predict_image(con, model, frame, hardware, source, at_ts, days)
    except LookupError as exc:
        raise NoTrainingDataError(str(exc)) from None
    window = p.pop("training_window") or (None, None)
    result = {
        "model": model,
        "cluster": cluster,
        "modality": "image",
        **request,
        "predicted_inferences": int(request.get("images", 1)),
        **p,
        "regressors": image_predict.regressors_row(frame),
        "interval": "95 % prediction interval",
        "training_source": (
            f"{image_predict.FITS_TABLE} (profiling fit of {p['fitted_at']})" if source == "profiling"
            else "marts.fct_request_energy (metered image requests) x raw.clusters.gpu_model"
        ),
        "training_window_start": window[0],
        "training_window_end": window[1],
    }
    if cluster is None and p["training_clusters"]:
        cluster = p["training_clusters"][0]
    result["impact"] = hypothetical_impact(con, cluster, model, at_ts, result)
    return result


def format_prediction(p: dict) -> str:
    """A readable summary of predict_one's (or predict_image_one's) result."""

    def rng(mid, low, high, unit: str) -> str:
        if mid is None:
            return "n/a"
        return f"{mid:,.2f} {unit} (95 % PI {low:,.2f} - {high:,.2f})"

    dur = [
        p[c]
        for c in ("predicted_request_duration_s", "predicted_duration_low_s", "predicted_duration_high_s")
    ]
    energy = [p[c] for c in ("predicted_energy_j", "predicted_energy_low_j", "predicted_energy_high_j")]
    if p.get("modality") == "image":
        extra = f", strength {p['strength']}" if p.get("strength", 1.0) < 1 else ""
        request = (
            f"  request: {p['images']} image(s) of {p['width']} x {p['height']} px, {p['steps']} steps{extra}, "
            f"guidance {'on' if p.get('guidance', True) else 'off'}, {p.get('lora') or 0} LoRA adapter(s)"
        )
        inferences = f"  predicted inferences: {p['predicted_inferences']} (images)"
        form = f"  form: {p['form']} ({p['terms']})"
    else:
        request = f"  request: {p['input_tokens']} input tokens, {p['output_tokens']} output tokens"
        inferences = f"  predicted inferences: {p['predicted_inferences']} (output tokens + 1)"
        form = None
    where = (
        f"  from the {p.get('source', 'telemetry')} fit of {p['nobs']} run(s)" if p.get("source") == "profiling"
        else f"  trained on {p['nobs']} request(s) of {', '.join(p['training_clusters'])} "
        f"from {p['training_window_start']} to {p['training_window_end']}"
    )
    lines = [
        f"model {p['model']} on {p['hardware']}" + (f" (cluster {p['cluster']})" if p["cluster"] else ""),
        request,
        "  predicted duration:   " + rng(*dur, "s"),
        "  predicted energy:     " + rng(*energy, "J"),
        inferences,
        f"  status: {p['prediction_status']}",
        where,
        *([form] if form else []),
        f"  energy: {p['energy_definition']}",
    ]
    if p["other_hardware"]:
        lines.append(f"  also available on: {', '.join(p['other_hardware'])} (pick with --cluster or --hardware)")
    i = p.get("impact")
    if i:
        lines += [
            f"  impact on cluster {i['cluster']} ({i['zone']}, {i['grid_resolution']} grid factor at {i['at']}):",
            (
                f"    facility energy {i['facility_energy_j']:,.2f} J; operational "
                f"{i['operational_location_g_co2e']:.4f} g, embodied {i['embodied_g_co2e']:.4f} g, "
                f"training {i['training_g_co2e']:.4f} g CO2e"
            ),
            (
                f"    total {i['total_g_co2e']:.4f} g CO2e ({i['total_g_co2e_low']:.4f} - "
                f"{i['total_g_co2e_high']:.4f}); water {i['total_water_l'] * 1000:.3f} mL "
                f"({i['total_water_l_low'] * 1000:.3f} - {i['total_water_l_high'] * 1000:.3f})"
            ),
            "    bounds: the energy and duration 95 % PIs with every factor range at the same end",
        ]
    return "\n".join(lines)


def _default_warehouse() -> Path:
    from orchestration import settings

    return settings.warehouse_path()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="impact predict",
        description="Predict duration and energy of a hypothetical request (text: token counts; image: size and "
        "steps), with 95 %% PIs.",
    )
    parser.add_argument("--model", required=True)
    text = parser.add_argument_group("text request")
    text.add_argument("--input-tokens", type=int)
    text.add_argument("--output-tokens", type=int)
    image = parser.add_argument_group("image request (docs/images.md)")
    image.add_argument("--width", type=int, help="output width (px)")
    image.add_argument("--height", type=int, help="output height (px)")
    image.add_argument("--steps", type=int, help="denoising steps")
    image.add_argument("--images", type=int, default=1, help="images generated (default 1)")
    image.add_argument("--strength", type=float, default=1.0, help="image-to-image strength, 0-1 (default 1)")
    image.add_argument("--input-width", type=int, help="input image width (px), image-to-image")
    image.add_argument("--input-height", type=int, help="input image height (px), image-to-image")
    image.add_argument("--no-guidance", action="store_true", help="classifier-free guidance off")
    image.add_argument("--lora", type=int, default=0, help="LoRA adapters used (default 0)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--cluster", default=None, help="the hardware of this cluster (its GPU model) and its factors")
    where.add_argument("--hardware", default=None, help="this GPU model (as clusters.yml or the profiling runs name it)")
    parser.add_argument(
        "--source", choices=("telemetry", "profiling"), default="telemetry",
        help="telemetry: fit the warehouse's metered requests (default); profiling: the stored fits of the "
        "profiling runs `impact run` loaded from profiling/",
    )
    parser.add_argument("--at", default=None, help="RFC 3339 time: train on the 28 days before it")
    parser.add_argument("--warehouse", default=None, help="DuckDB file (default IMPACT_WAREHOUSE or data/)")
    parser.add_argument("--json", action="store_true", help="print the prediction as a JSON object")
    return parser


def _request_problem(args: argparse.Namespace) -> str | None:
    """Why the arguments do not describe one text or one image request (None: they do)."""
    text = args.input_tokens is not None or args.output_tokens is not None
    image = any(v is not None for v in (args.width, args.height, args.steps))
    if text == image:
        return "give --input-tokens and --output-tokens (text) or --width, --height and --steps (image)"
    if text:
        if args.input_tokens is None or args.output_tokens is None:
            return "a text request needs both --input-tokens and --output-tokens"
        if args.input_tokens < 0 or args.output_tokens < 0:
            return "token counts must be non-negative"
        return None
    if None in (args.width, args.height, args.steps):
        return "an image request needs --width, --height and --steps"
    if min(args.width, args.height, args.steps, args.images) < 1 or args.lora < 0:
        return "--width, --height, --steps and --images must be at least 1, --lora at least 0"
    if not 0 <= args.strength <= 1:
        return "--strength must be between 0 and 1"
    if (args.input_width is None) != (args.input_height is None):
        return "--input-width and --input-height go together"
    return None


def predict_main(argv: Sequence[str] | None = None) -> int:
    """``impact predict --model M (--input-tokens N --output-tokens N | --width W --height H --steps S [--images N]
    [--strength X] ...) [--cluster C | --hardware H] [--source telemetry|profiling] [--at TIMESTAMP]
    [--warehouse FILE] [--json]`` (CONTRACT section 2). Exit 0 on a prediction, 1 when a fit gave none, 2 when
    the warehouse is missing, the model has no data or an argument is invalid."""
    args = _parser().parse_args(list(argv) if argv is not None else None)
    problem = _request_problem(args)
    if problem:
        print(f"impact predict: {problem}", file=sys.stderr)
        return 2
    path = Path(args.warehouse).expanduser() if args.warehouse else _default_warehouse()
    if not path.is_file():
        print(
            f"impact predict: no warehouse at {path}; run `impact run` first or pass --warehouse",
            file=sys.stderr,
        )
        return 2
    import duckdb

    from orchestration.lib.warehouse import connect

    try:
        con = connect(path, read_only=True)
    except duckdb.Error as exc:
        print(f"impact predict: cannot open {path}: {exc}", file=sys.stderr)
        return 2
    try:
        if args.width is not None:
            request = {
                "width": args.width, "height": args.height, "steps": args.steps, "images": args.images,
                "strength": args.strength, "guidance": not args.no_guidance, "lora": args.lora,
                "input_width": args.input_width, "input_height": args.input_height,
            }  # fmt: skip
            result = predict_image_one(con, args.model, request, args.cluster, args.hardware, args.source, args.at)
        else:
            result = predict_one(
                con, args.model, args.input_tokens, args.output_tokens, args.cluster, args.at,
                hardware=args.hardware, source=args.source,
            )  # fmt: skip
    except NoTrainingDataError as exc:
        print(f"impact predict: {exc}", file=sys.stderr)
        return 2
    except (ValueError, duckdb.CatalogException) as exc:
        print(f"impact predict: {exc}", file=sys.stderr)
        return 2
    finally:
        con.close()
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(format_prediction(result))
    return 0 if result["prediction_status"] == STATUS_OK else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(predict_main())


# ------------------------------------------------------------------------------- predictions in the warehouse

REQUEST_PREDICTIONS_VIEW = "models.request_predictions"
PREDICTION_ERRORS_TABLE = "models.prediction_errors"


def _interval_sql(fit: str) -> tuple[str, str]:
    """(mean, half-width) SQL of fit `fit`'s 95 % prediction interval for a request's x = (tau_in, tau_out,
    tau_in tau_out): mean = x'a; half-width = t_975 sqrt(x'Vx + s^2), what statsmodels' get_prediction gives as
    obs_ci (the fit's coefficient covariance V, residual variance s^2 and t quantile are stored with it)."""
    tin, tout = "f.input_tokens", "f.output_tokens"
    x = {"in": tin, "out": tout, "in_out": f"({tin} * {tout})"}
    mean = " + ".join(f"{fit}.alpha_{k} * {v}" for k, v in x.items())
    keys = list(x)
    quad = " + ".join(
        (f"{fit}.cov_{a}_{b} * {x[a]} * {x[b]}" if a == b else f"2 * {fit}.cov_{a}_{b} * {x[a]} * {x[b]}")
        for i, a in enumerate(keys)
        for b in keys[i:]
    )
    return f"({mean})", f"({fit}.t_975 * sqrt({fit}.resid_variance + {quad}))"


def create_predictions_view(con) -> None:
    """models.request_predictions: every request of marts.fct_request_energy with its predicted duration (r_K),
    inferences (output tokens + 1; an image request's images) and energy (e_K), each with its 95 % prediction
    interval (clipped at 0), from the latest paper-form fit of its model and hardware in models.energy_model_fits
    (an image request: the latest selected fit in models.image_model_fits; telemetry fits preferred). A view:
    set-based in DuckDB, it always predicts with the current fits and costs nothing to refresh."""
    from orchestration.lib.images import predict as image_predict

    con.execute("create schema if not exists models")
    image_predict.ensure_fits_table(con)
    if engines.is_spark(con):
        from orchestration.lib.engines import spark_steps

        con.execute(spark_steps.predictions_view_sql(_predictions_view_sql()))
        return
    (kind,) = fetch_one(
        con,
        "select coalesce(max(table_type), '') from information_schema.tables "
        "where table_schema = 'models' and table_name = 'request_predictions'"
    )
    if kind == "BASE TABLE":  # a warehouse from before the view
        con.execute(f"drop table {REQUEST_PREDICTIONS_VIEW}")
    con.execute(_predictions_view_sql())


def _predictions_view_sql() -> str:
    from orchestration.lib.images import predict as image_predict

    e_mean, e_half = _interval_sql("e")
    r_mean, r_half = _interval_sql("r")
    images = {
        "e_mean": image_predict.mean_sql("ie", "f"), "e_half": image_predict.half_width_sql("ie", "f"),
        "r_mean": image_predict.mean_sql("ir", "f"), "r_half": image_predict.half_width_sql("ir", "f"),
    }  # fmt: skip
    return f"""
        create or replace view {REQUEST_PREDICTIONS_VIEW} as
        with fits as (
            select * from models.energy_model_fits
            where form = 'paper' and t_975 is not null and alpha_in is not null
            qualify row_number() over (
                partition by model, hardware, target order by (source = 'telemetry') desc, fitted_at desc
            ) = 1
        ),
        image_fits as ({image_predict.LATEST_FITS_SQL}),
        requests as (
            select f.request_id, f.model, c.gpu_model as hardware, f.cluster, f.day, f.input_tokens,
                   f.output_tokens, f.it_energy_j, f.modality, f.width, f.height, f.images, f.steps, f.strength,
                   f.input_width, f.input_height, f.guidance, f.lora
            from marts.fct_request_energy as f
            left join raw.clusters as c on c.cluster = f.cluster
        ),
        predicted as (
            select
                f.*,
                case
                    when f.modality = 'image' and (ie.model is null or ir.model is null)
                        then 'no image fit for model ' || f.model || ' on hardware ' || coalesce(f.hardware, 'None')
                            || ': no training data'
                    when f.modality = 'image' and (f.width is null or f.steps is null)
                        then 'missing image size or steps'
                    when f.modality = 'image' then '{STATUS_OK}'
                    when e.alpha_in is null or r.alpha_in is null
                        then 'no fit for model ' || f.model || ' on hardware ' || coalesce(f.hardware, 'None')
                            || ': no training data'
                    when f.input_tokens is null or f.output_tokens is null then 'missing token counts'
                    else '{STATUS_OK}'
                end as prediction_status,
                case when f.modality = 'image' then {images["e_mean"]} else {e_mean} end as e_mean,
                case when f.modality = 'image' then {images["e_half"]} else {e_half} end as e_half,
                case when f.modality = 'image' then {images["r_mean"]} else {r_mean} end as r_mean,
                case when f.modality = 'image' then {images["r_half"]} else {r_half} end as r_half,
                case when f.modality = 'image' then ie.fitted_at else e.fitted_at end as fitted_at
            from requests as f
            left join fits as e on e.target = 'energy' and e.model = f.model and e.hardware = f.hardware
            left join fits as r on r.target = 'runtime' and r.model = f.model and r.hardware = f.hardware
            left join image_fits as ie on ie.target = 'energy' and ie.model = f.model and ie.hardware = f.hardware
            left join image_fits as ir on ir.target = 'runtime' and ir.model = f.model and ir.hardware = f.hardware
        )
        select
            request_id, model, hardware, cluster, day, input_tokens, output_tokens,
            it_energy_j as attributed_it_energy_j,
            case when prediction_status = '{STATUS_OK}' then r_mean end as predicted_request_duration_s,
            case when prediction_status = '{STATUS_OK}' then greatest(r_mean - r_half, 0) end
                as predicted_duration_low_s,
            case when prediction_status = '{STATUS_OK}' then greatest(r_mean + r_half, 0) end
                as predicted_duration_high_s,
            cast(case when modality = 'image' then images else output_tokens + 1 end as bigint)
                as predicted_inferences,
            case when prediction_status = '{STATUS_OK}' then e_mean end as predicted_energy_j,
            case when prediction_status = '{STATUS_OK}' then greatest(e_mean - e_half, 0) end
                as predicted_energy_low_j,
            case when prediction_status = '{STATUS_OK}' then greatest(e_mean + e_half, 0) end
                as predicted_energy_high_j,
            prediction_status,
            fitted_at as predicted_at,
            modality
        from predicted
        """


def replace_prediction_errors(
    con, days: int = WINDOW_DAYS
) -> tuple[pd.DataFrame, dict[str, int], int, tuple[dt.date | None, dt.date | None]]:
    """models.prediction_errors over the trailing ``days`` days of models.request_predictions: per model x
    hardware, n_requests, n (requests with a prediction and attributed energy > 0), MAPE and median of predicted /
    attributed energy, and the share of attributed energies inside the 95 % prediction interval (set-based, the
    same definitions as prediction_errors()). Returns the table, the window's requests per prediction_status, the
    window's request count and its first and last day. One scan of the view gives all of them (each scan costs a
    second at 5 M requests a day)."""
    end_day = latest_day(con)
    params = {"start": (end_day or dt.date(1970, 1, 1)) - dt.timedelta(days=days - 1), "end": end_day}
    # (Spark: an exact percentile for the median, and the statuses counted by a second small aggregate)
    spark = engines.is_spark(con)
    median = engines.dialect(con, "median(ratio)", "percentile(ratio, 0.5)")
    histogram = "" if spark else "histogram(prediction_status) as statuses,"
    groups = con.execute(
        f"""
        with w as (
            select *,
                attributed_it_energy_j > 0 and predicted_energy_j is not null as usable,
                predicted_energy_j / attributed_it_energy_j as ratio
            from {REQUEST_PREDICTIONS_VIEW} where day between $start and $end
        )
        select
            model, hardware,
            count(*) as n_requests,
            count(*) filter (where usable) as n,
            avg(abs(ratio - 1)) filter (where usable) as mape,
            {median} filter (where usable) as median_ratio,
            avg(case when attributed_it_energy_j between predicted_energy_low_j and predicted_energy_high_j
                then 1.0 else 0.0 end) filter (where usable) as interval_coverage,
            cast(now() as timestamp) as computed_at,
            {histogram}
            min(day) as first_day,
            max(day) as last_day
        from w
        group by model, hardware
        order by model, hardware
        """,
        params,
    ).df()
    replace_table(con, PREDICTION_ERRORS_TABLE, PREDICTION_ERRORS_SCHEMA, groups)
    errors = con.execute(f"select * from {PREDICTION_ERRORS_TABLE} order by model, hardware").df()
    statuses: dict[str, int] = {}
    if spark:
        statuses = {str(s): int(n) for s, n in con.execute(
            f"select prediction_status, count(*) from {REQUEST_PREDICTIONS_VIEW} where day between $start and $end "
            "group by prediction_status", params).fetchall()}
    for counts in groups["statuses"] if not spark else []:  # a loop over model x hardware groups
        for status, count in dict(counts).items():
            statuses[str(status)] = statuses.get(str(status), 0) + int(count)
    span = (groups["first_day"].min(), groups["last_day"].max()) if len(groups) else (None, None)
    span = tuple(None if pd.isna(d) else pd.Timestamp(d).date() for d in span)
    return errors, statuses, int(groups["n_requests"].sum()) if len(groups) else 0, span
