"""Energy and runtime models e_K(tau_in, tau_out) per model x hardware (METHODOLOGY section 4).

Pure library code: pandas in, pandas out; no Dagster. The named default is the form of Wilkins et al.
(HotCarbon'24), an OLS with no intercept

    y = a0 * tau_in + a1 * tau_out + a2 * tau_in * tau_out          (y = energy_j or runtime_s)

Without a constant statsmodels reports the *uncentred* R-squared (1 - SSR / sum(y^2)) and an F test of all three
coefficients against zero; those are the paper's figures. The centred R-squared (1 - SSR / sum((y - mean)^2)) is
computed here by hand as well. Alternatives for comparison: ``intercept`` (paper form + constant), ``loglog``
(log y ~ const + log tau_in + log tau_out) and ``concurrency`` (paper form + a mean-concurrency column).

Conventions:
- ``cv_mape`` is a fraction (0.05 = 5 %), out of sample, over deterministic k folds (seeded numpy permutation);
  rows with y == 0 are left out of the MAPE (not of the RMSE). ``loglog`` is scored on the original scale
  (naive back-transform exp(prediction)), so CV MAPE / RMSE are comparable across forms; its AIC / BIC / R^2 are on
  the log scale and are NOT comparable with the other forms.
- For ``loglog`` the row's alpha_in / alpha_out are the elasticities and alpha_in_out is NaN; ``intercept`` and
  ``alpha_concurrency`` are extra columns (NaN when the form has no such term).
- Breusch-Pagan (Koenker's studentised LM): the auxiliary regression of squared residuals uses the model's
  regressors plus a constant (statsmodels' het_breuschpagan requires one), so for the no-intercept form a constant
  is added to the auxiliary exog only.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

FORMS: tuple[str, ...] = ("paper", "intercept", "loglog", "concurrency")
PARAM_KEYS: tuple[str, ...] = ("in", "out", "in_out")

# models.energy_model_fits, CONTRACT section 3 (statistics part; model, hardware, source, target come first).
KEY_COLUMNS: tuple[str, ...] = ("model", "hardware", "source", "target")
FIT_COLUMNS: tuple[str, ...] = (
    *(f"alpha_{k}" for k in PARAM_KEYS),
    *(f"se_{k}" for k in PARAM_KEYS),
    *(f"ci_low_{k}" for k in PARAM_KEYS),
    *(f"ci_high_{k}" for k in PARAM_KEYS),
    *(f"p_{k}" for k in PARAM_KEYS),
    "r_squared_uncentered",
    "r_squared",
    "f_statistic",
    "f_pvalue",
    "nobs",
    "aic",
    "bic",
    "cv_mape",
    "fitted_at",
)
CONTRACT_COLUMNS: tuple[str, ...] = (*KEY_COLUMNS, *FIT_COLUMNS)
EXTRA_COLUMNS: tuple[str, ...] = (
    "form",
    "cv_rmse",
    *(f"se_hc3_{k}" for k in PARAM_KEYS),
    "bp_lm",
    "bp_pvalue",
    "condition_number",
    "intercept",
    "alpha_concurrency",
    "n_dropped",
    # paper form only: the coefficient covariance, residual variance and t quantile, so that SQL can compute the
    # same 95 % prediction interval as statsmodels' get_prediction (x' V x + scale, times t_975(df_resid))
    *(f"cov_{a}_{b}" for i, a in enumerate(PARAM_KEYS) for b in PARAM_KEYS[i:]),
    "resid_variance",
    "df_resid",
    "t_975",
)
TARGET_NAMES: dict[str, str] = {"energy_j": "energy", "runtime_s": "runtime"}

PROFILING_COLUMNS: tuple[str, ...] = (
    "model",
    "hardware",
    "input_tokens",
    "output_tokens",
    "energy_j",
    "runtime_s",
)
REJECT_COLUMNS: tuple[str, ...] = ("source_file", "source_row", "reason", "raw_record")


class SingularDesignError(ValueError):
    """The design matrix is rank deficient or has too few rows for the form."""


@dataclass
class FitResult:
    """One fit: the statsmodels results, the flat row, and what anova_table needs to refit by formula."""

    results: object  # statsmodels RegressionResultsWrapper
    row: dict
    form: str
    target: str
    data: pd.DataFrame  # columns y, tau_in, tau_out (and concurrency): the rows actually fitted
    exog_names: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------- design


def _design(data: pd.DataFrame, form: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(X, y on the model's scale, exog names) for a frame with columns y, tau_in, tau_out[, concurrency]."""
    tin = data["tau_in"].to_numpy(float)
    tout = data["tau_out"].to_numpy(float)
    y = data["y"].to_numpy(float)
    if form == "paper":
        return np.column_stack([tin, tout, tin * tout]), y, ["tau_in", "tau_out", "tau_in:tau_out"]
    if form == "intercept":
        x = np.column_stack([np.ones_like(tin), tin, tout, tin * tout])
        return x, y, ["const", "tau_in", "tau_out", "tau_in:tau_out"]
    if form == "concurrency":
        conc = data["concurrency"].to_numpy(float)
        x = np.column_stack([tin, tout, tin * tout, conc])
        return x, y, ["tau_in", "tau_out", "tau_in:tau_out", "concurrency"]
    if form == "loglog":
        x = np.column_stack([np.ones_like(tin), np.log(tin), np.log(tout)])
        return x, np.log(y), ["const", "log_tau_in", "log_tau_out"]
    raise ValueError(f"unknown form {form!r}; expected one of {FORMS}")


def _prepare(
    df: pd.DataFrame, target: str, tau_in: str, tau_out: str, form: str, concurrency: str
) -> tuple[pd.DataFrame, int]:
    """Rows usable for the form (finite; strictly positive for loglog), and how many were dropped."""
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; expected one of {FORMS}")
    cols = {"y": target, "tau_in": tau_in, "tau_out": tau_out}
    if form == "concurrency":
        cols["concurrency"] = concurrency
    missing = [c for c in cols.values() if c not in df.columns]
    if missing:
        raise KeyError(f"missing columns {missing}")
    data = pd.DataFrame({k: pd.to_numeric(df[v], errors="coerce") for k, v in cols.items()})
    ok = np.isfinite(data.to_numpy(float)).all(axis=1)
    if form == "loglog":
        ok &= (data[["y", "tau_in", "tau_out"]] > 0).all(axis=1).to_numpy()
    clean = data.loc[ok].reset_index(drop=True)
    return clean, int((~ok).sum())


def _check_design(x: np.ndarray) -> None:
    n, p = x.shape
    if n < max(4, p + 1):
        raise SingularDesignError(f"too few rows: {n} (need at least {max(4, p + 1)} for {p} parameters)")
    if np.linalg.matrix_rank(x) < p:
        raise SingularDesignError(f"singular design: rank {np.linalg.matrix_rank(x)} < {p} parameters")


# --------------------------------------------------------------------------------------------- validation


def kfold_indices(n: int, k: int = 5, seed: int = 0) -> list[np.ndarray]:
    """Deterministic folds: a seeded permutation of range(n) split into min(k, n) nearly equal parts."""
    k = max(2, min(int(k), n))
    perm = np.random.default_rng(seed).permutation(n)
    return np.array_split(perm, k)


def cross_validate(data: pd.DataFrame, form: str = "paper", k: int = 5, seed: int = 0) -> dict:
    """Out-of-sample MAPE (fraction) and RMSE on the original scale of y over deterministic k folds.

    NaN when a training fold is too small or singular for the form.
    """
    x, ym, _ = _design(data, form)
    return cross_validate_design(x, ym, data["y"].to_numpy(float), form == "loglog", k, seed)


def cross_validate_design(
    x: np.ndarray, ym: np.ndarray, y: np.ndarray, log_scale: bool, k: int = 5, seed: int = 0
) -> dict:
    """cross_validate for any design: `x` and the target on the model's scale `ym` (log y when `log_scale`, then
    predictions are back-transformed with exp), scored against `y` on the original scale."""
    n, p = x.shape
    if n < 2:
        return {"cv_mape": math.nan, "cv_rmse": math.nan, "cv_folds": 0}
    pred = np.full(n, np.nan)
    folds = kfold_indices(n, k, seed)
    in_train = np.ones(n, dtype=bool)
    for test in folds:  # a loop over folds, not rows
        # the rows outside the fold, in ascending order (as np.setdiff1d gives them, without its sort)
        in_train[test] = False
        x_train, y_train = x[in_train], ym[in_train]
        in_train[test] = True
        if len(x_train) < p:
            return {"cv_mape": math.nan, "cv_rmse": math.nan, "cv_folds": len(folds)}
        # lstsq's rank uses matrix_rank's default threshold (singular values below eps x max(n, p) x the largest
        # count as zero): one SVD per fold instead of two
        beta, _, rank, _ = np.linalg.lstsq(x_train, y_train, rcond=None)
        if rank < p:
            return {"cv_mape": math.nan, "cv_rmse": math.nan, "cv_folds": len(folds)}
        pred[test] = x[test] @ beta
    if log_scale:
        pred = np.exp(pred)
    err = y - pred
    nz = y != 0
    mape = float(np.mean(np.abs(err[nz] / y[nz]))) if nz.any() else math.nan
    return {"cv_mape": mape, "cv_rmse": float(np.sqrt(np.mean(err**2))), "cv_folds": len(folds)}


# -------------------------------------------------------------------------------------------------- fitting


def _key(name: str) -> str | None:
    return {
        "tau_in": "in",
        "log_tau_in": "in",
        "tau_out": "out",
        "log_tau_out": "out",
        "tau_in:tau_out": "in_out",
    }.get(name)


def fit_energy_model(
    df: pd.DataFrame,
    target: str,
    tau_in: str = "input_tokens",
    tau_out: str = "output_tokens",
    form: str = "paper",
    cv_folds: int = 5,
    seed: int = 0,
    concurrency: str = "mean_concurrency",
    fitted_at: pd.Timestamp | None = None,
) -> FitResult:
    """Fit one form to one frame. Raises SingularDesignError on too few rows or a rank-deficient design."""
    # (statsmodels and scipy load in fit_ols, not with the module: the definitions load without them; see
    # lib/preload.py)
    data, n_dropped = _prepare(df, target, tau_in, tau_out, form, concurrency)
    x, ym, names = _design(data, form)
    _check_design(x)
    res, coefficients, diagnostics = fit_ols(x, ym, names, has_constant="const" in names)

    row: dict = {c: math.nan for c in (*FIT_COLUMNS, *EXTRA_COLUMNS)}
    for name in names:
        k = _key(name)
        if k is None:
            continue
        for stat, value in coefficients.loc[name].items():
            row[f"{stat}_{k}"] = float(value)
    if form == "paper":
        cov = res.cov_params()
        for i, a in enumerate(PARAM_KEYS):
            for b in PARAM_KEYS[i:]:
                row[f"cov_{a}_{b}"] = float(cov.iloc[i, PARAM_KEYS.index(b)])
        for c in ("resid_variance", "df_resid", "t_975"):
            row[c] = diagnostics[c]
    if "const" in names:
        row["intercept"] = float(res.params["const"])
    if "concurrency" in names:
        row["alpha_concurrency"] = float(res.params["concurrency"])

    cv = cross_validate(data, form, cv_folds, seed)
    row.update(
        {
            **{c: diagnostics[c] for c in _DIAGNOSTICS},
            "cv_mape": cv["cv_mape"],
            "cv_rmse": cv["cv_rmse"],
            "fitted_at": fitted_at if fitted_at is not None else pd.Timestamp.now(tz="UTC"),
            "form": form,
            "n_dropped": n_dropped,
        }
    )
    return FitResult(results=res, row=row, form=form, target=target, data=data, exog_names=names)


# what fit_ols reports about a whole fit (besides resid_variance, df_resid and t_975)
_DIAGNOSTICS: tuple[str, ...] = (
    "r_squared_uncentered", "r_squared", "f_statistic", "f_pvalue", "nobs", "aic", "bic", "bp_lm", "bp_pvalue",
    "condition_number",
)  # fmt: skip


def fit_ols(x: np.ndarray, ym: np.ndarray, names: Sequence[str], has_constant: bool):
    """OLS of `ym` on the columns `names` of `x` (statsmodels), with what every fit of this package reports.

    Returns (statsmodels results; a frame indexed by name with columns alpha, se, ci_low, ci_high (95 %), p and
    se_hc3; a dict of the fit's diagnostics: uncentred and centred R-squared (by hand), F and its p-value (for a
    design without a constant, statsmodels tests all coefficients = 0 against the uncentred ESS), nobs, AIC, BIC,
    Breusch-Pagan LM and p-value (Koenker; the auxiliary regression gets a constant when the design has none),
    condition number, residual variance, residual df and the t quantile of 95 % intervals).
    """
    import statsmodels.api as sm
    from scipy import stats
    from statsmodels.stats.diagnostic import het_breuschpagan

    res = sm.OLS(ym, pd.DataFrame(x, columns=list(names))).fit()
    ssr = float(res.ssr)
    ss_unc = float(np.sum(ym**2))
    ss_cen = float(np.sum((ym - ym.mean()) ** 2))
    ci = res.conf_int(alpha=0.05)
    with np.errstate(all="ignore"):
        hc3 = np.sqrt(np.diag(res.get_robustcov_results(cov_type="HC3").cov_params()))
    coefficients = pd.DataFrame(
        {
            "alpha": res.params.to_numpy(float),
            "se": res.bse.to_numpy(float),
            "ci_low": ci[0].to_numpy(float),
            "ci_high": ci[1].to_numpy(float),
            "p": res.pvalues.to_numpy(float),
            "se_hc3": hc3,
        },
        index=list(names),
    )
    aux = x if has_constant else np.column_stack([np.ones(len(ym)), x])
    try:
        bp_lm, bp_p, _, _ = het_breuschpagan(res.resid, aux)
    except (ValueError, np.linalg.LinAlgError):  # pragma: no cover - degenerate residuals
        bp_lm, bp_p = math.nan, math.nan
    diagnostics = {
        "r_squared_uncentered": 1.0 - ssr / ss_unc if ss_unc > 0 else math.nan,
        "r_squared": 1.0 - ssr / ss_cen if ss_cen > 0 else math.nan,
        "f_statistic": float(res.fvalue),
        "f_pvalue": float(res.f_pvalue),
        "nobs": int(res.nobs),
        "aic": float(res.aic),
        "bic": float(res.bic),
        "bp_lm": float(bp_lm),
        "bp_pvalue": float(bp_p),
        "condition_number": float(res.condition_number),
        "resid_variance": float(res.scale),
        "df_resid": float(res.df_resid),
        "t_975": float(stats.t.ppf(0.975, res.df_resid)),
    }
    return res, coefficients, diagnostics


def fit_group_results(
    df: pd.DataFrame,
    group_cols: Sequence[str] = ("model", "hardware"),
    targets: Sequence[str] = ("energy_j", "runtime_s"),
    source: str = "profiling",
    tau_in: str = "input_tokens",
    tau_out: str = "output_tokens",
    form: str = "paper",
    cv_folds: int = 5,
    seed: int = 0,
    fitted_at: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, list[FitResult | None]]:
    """As fit_groups, plus each row's FitResult (None for a skipped group), in row order, for callers that need
    the statsmodels results too (ANOVA, plots) without fitting every group twice."""
    fitted_at = fitted_at if fitted_at is not None else pd.Timestamp.now(tz="UTC")
    group_cols = list(group_cols)
    work = df.copy()
    for c in group_cols:
        if c not in work.columns:
            work[c] = ""
    rows: list[dict] = []
    results: list[FitResult | None] = []
    for key, g in work.groupby(group_cols, sort=True, dropna=False):  # a loop over groups
        key = key if isinstance(key, tuple) else (key,)
        for target in targets:
            base = dict(zip(group_cols, key))
            base.update({"source": source, "target": TARGET_NAMES.get(target, target)})
            try:
                fit = fit_energy_model(
                    g, target, tau_in, tau_out, form=form, cv_folds=cv_folds, seed=seed, fitted_at=fitted_at
                )
                rows.append({**base, **fit.row, "skip_reason": None})
                results.append(fit)
            except (SingularDesignError, KeyError) as exc:
                # the reason is in the returned row (skip_reason); callers report it
                log.info("energy model skipped for %s %s: %s", dict(zip(group_cols, key)), target, exc)
                empty = {c: math.nan for c in (*FIT_COLUMNS, *EXTRA_COLUMNS)}
                empty.update({"form": form, "fitted_at": fitted_at, "nobs": len(g)})
                rows.append({**base, **empty, "skip_reason": str(exc)})
                results.append(None)
    cols = [*group_cols, "source", "target", *FIT_COLUMNS, *EXTRA_COLUMNS, "skip_reason"]
    cols = list(dict.fromkeys(cols))
    return pd.DataFrame(rows, columns=cols), results


def fit_groups(
    df: pd.DataFrame,
    group_cols: Sequence[str] = ("model", "hardware"),
    targets: Sequence[str] = ("energy_j", "runtime_s"),
    source: str = "profiling",
    tau_in: str = "input_tokens",
    tau_out: str = "output_tokens",
    form: str = "paper",
    cv_folds: int = 5,
    seed: int = 0,
    fitted_at: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """One row per group x target: the key columns, FIT_COLUMNS, EXTRA_COLUMNS and ``skip_reason``.

    Groups that cannot be fitted (too few rows, singular design) get a row with NaN statistics and a non-null
    ``skip_reason`` and are logged; the fitted rows have skip_reason None. ``target`` is "energy" / "runtime"
    for energy_j / runtime_s (else the column name). A missing group column (e.g. no hardware) is filled with "".
    """
    rows, _ = fit_group_results(
        df, group_cols, targets, source, tau_in, tau_out, form=form, cv_folds=cv_folds, seed=seed,
        fitted_at=fitted_at,
    )  # fmt: skip
    return rows


# ------------------------------------------------------------------------------------------- diagnostics

_FORMULAS = {
    "paper": "y ~ 0 + tau_in + tau_out + tau_in:tau_out",
    "intercept": "y ~ tau_in + tau_out + tau_in:tau_out",
    "concurrency": "y ~ 0 + tau_in + tau_out + tau_in:tau_out + concurrency",
    "loglog": "np.log(y) ~ np.log(tau_in) + np.log(tau_out)",
}


def anova_table(result: FitResult) -> pd.DataFrame:
    """Type-II ANOVA (statsmodels anova_lm(typ=2)) of the result's form, refitted with the formula API.

    anova_lm(typ=2) works for the no-intercept formula (checked: the interaction's SS equals the SSR increase
    when it is dropped; each main effect is tested against the model without the interaction, by marginality).
    Should it raise for some design, this falls back to the sequential (type-I) table and says so in the
    ``anova_type`` column. Columns: term, sum_sq, df, F, PR(>F), anova_type.
    """
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    fit = smf.ols(_FORMULAS[result.form], data=result.data).fit()
    try:
        table, typ = anova_lm(fit, typ=2), "II"
    except Exception as exc:  # noqa: BLE001 - statsmodels raises assorted errors here
        log.warning("type-II ANOVA failed (%s); reporting type I", exc)
        table, typ = anova_lm(fit, typ=1)[["sum_sq", "df", "F", "PR(>F)"]], "I"
    out = table.reset_index().rename(columns={"index": "term"})
    out["anova_type"] = typ
    return out


def compare_forms(
    df: pd.DataFrame,
    target: str,
    forms: Sequence[str] | None = None,
    tau_in: str = "input_tokens",
    tau_out: str = "output_tokens",
    concurrency: str = "mean_concurrency",
    cv_folds: int = 5,
    seed: int = 0,
    fitted: Mapping[str, FitResult] | None = None,
) -> pd.DataFrame:
    """AIC / BIC and out-of-sample CV MAPE / RMSE per form (``concurrency`` only when its column exists).

    ``fitted``: fits of some forms already made on this same frame, target and settings (e.g. the paper form the
    model table holds), used instead of fitting them again.

    CV errors are all on the original scale of the target and are the comparable metric; AIC / BIC of
    ``loglog`` are on the log scale (``aic_scale`` says which) and must not be compared with the others.
    Forms that cannot be fitted get a row with ``error`` set.
    """
    if forms is None:
        forms = [f for f in FORMS if f != "concurrency" or concurrency in df.columns]
    rows = []
    for form in forms:
        base = {"form": form, "aic_scale": "log" if form == "loglog" else "original"}
        try:
            known = (fitted or {}).get(form)
            fit = known if known is not None and (known.form, known.target) == (form, target) else fit_energy_model(
                df, target, tau_in, tau_out, form=form, cv_folds=cv_folds, seed=seed, concurrency=concurrency
            )
        except (SingularDesignError, KeyError) as exc:
            rows.append({**base, "error": str(exc)})
            continue
        r = fit.row
        rows.append(
            {
                **base,
                "nobs": r["nobs"],
                "n_params": len(fit.exog_names),
                "aic": r["aic"],
                "bic": r["bic"],
                "r_squared": r["r_squared"],
                "r_squared_uncentered": r["r_squared_uncentered"],
                "cv_mape": r["cv_mape"],
                "cv_rmse": r["cv_rmse"],
                "error": None,
            }
        )
    cols = ["form", "nobs", "n_params", "aic", "bic", "aic_scale", "r_squared", "r_squared_uncentered",
            "cv_mape", "cv_rmse", "error"]  # fmt: skip
    return pd.DataFrame(rows).reindex(columns=cols)


# ------------------------------------------------------------------------------------------------ input


def _read_one(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    raw.columns = [c.strip() for c in raw.columns]
    missing = [c for c in PROFILING_COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: missing profiling columns {missing} (CONTRACT section 1)")
    raw = raw.reset_index(drop=True)
    num = {c: pd.to_numeric(raw[c].str.strip(), errors="coerce") for c in PROFILING_COLUMNS[2:]}
    checks: list[tuple[pd.Series, str]] = [
        (raw["model"].str.strip() == "", "empty model"),
        (raw["hardware"].str.strip() == "", "empty hardware"),
    ]
    for c in ("input_tokens", "output_tokens"):
        v = num[c]
        checks += [
            (~np.isfinite(v), f"{c} not a finite number"),
            (np.isfinite(v) & (v < 0), f"{c} negative"),
            (np.isfinite(v) & (v >= 0) & (v != np.floor(v)), f"{c} not an integer"),
        ]
    for c in ("energy_j", "runtime_s"):
        v = num[c]
        checks += [
            (~np.isfinite(v), f"{c} not a finite number"),
            (np.isfinite(v) & (v <= 0), f"{c} not positive"),
        ]
    reason = pd.Series("", index=raw.index)
    for mask, text in checks:  # a loop over checks; each is vectorised over rows
        mask = pd.Series(np.asarray(mask, dtype=bool), index=raw.index)
        reason = reason.where(~mask, reason + np.where(reason == "", "", "; ") + text)
    bad = reason != ""
    good = pd.DataFrame({"model": raw["model"].str.strip(), "hardware": raw["hardware"].str.strip(), **num})
    good = good.loc[~bad].astype({"input_tokens": "int64", "output_tokens": "int64"}).reset_index(drop=True)
    records = raw.loc[bad].to_json(orient="records", lines=True)
    rejects = pd.DataFrame(
        {
            "source_file": str(path),
            "source_row": (raw.index[bad] + 1).astype("int64"),  # 1-based data record (header excluded)
            "reason": reason[bad].to_numpy(),
            "raw_record": records.splitlines() if bad.any() else [],
        },
        columns=list(REJECT_COLUMNS),
    )
    return good, rejects


def read_profiling_csv(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read profiling runs (CONTRACT section 1): a CSV file, or a directory searched for **/*.csv.

    Returns (rows, rejects). rows: model, hardware, input_tokens, output_tokens (int64), energy_j, runtime_s
    (float). rejects: source_file, source_row (1-based record number), reason, raw_record (JSON of the raw
    strings), as raw.rejected_rows; nothing is dropped silently. Raises FileNotFoundError / ValueError when the
    file is absent or lacks a required column.
    """
    path = Path(path)
    files = sorted(path.rglob("*.csv")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise FileNotFoundError(f"no profiling CSV at {path}")
    parts = [_read_one(f) for f in files]
    rows = pd.concat([p[0] for p in parts], ignore_index=True)
    rejects = pd.concat([p[1] for p in parts], ignore_index=True)
    return rows, rejects


# -------------------------------------------------------------------------------------------------- CLI


def _json_value(v: object) -> object:
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if not math.isfinite(float(v)) else float(v)
    return v


def _fmt(v: object) -> str:
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(float(v)):
            return "-"
        return f"{float(v):.6g}"
    return str(v)


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [list(header)] + [[_fmt(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [
        "  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))) for r in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_fits(fits: pd.DataFrame) -> str:
    """A readable report: per model x hardware x target, the coefficient table and the diagnostics."""
    out = []
    for _, r in fits.iterrows():  # one iteration per fitted group x target, for printing only
        title = f"{r['model']} on {r['hardware'] or '?'}: {r['target']} ({r['source']}, form {r['form']})"
        if r.get("skip_reason"):
            out.append(f"{title}\n  skipped: {r['skip_reason']}\n")
            continue
        coef = [
            [f"alpha_{k}", r[f"alpha_{k}"], r[f"se_{k}"], r[f"se_hc3_{k}"], r[f"ci_low_{k}"], r[f"ci_high_{k}"],
             r[f"p_{k}"]]
            for k in PARAM_KEYS
        ]  # fmt: skip
        diag = (
            f"  nobs {r['nobs']}  R2 uncentred {_fmt(r['r_squared_uncentered'])}  R2 centred {_fmt(r['r_squared'])}"
            f"  F {_fmt(r['f_statistic'])} (p {_fmt(r['f_pvalue'])})\n"
            f"  AIC {_fmt(r['aic'])}  BIC {_fmt(r['bic'])}  CV MAPE {_fmt(r['cv_mape'])}"
            f"  CV RMSE {_fmt(r['cv_rmse'])}  Breusch-Pagan LM {_fmt(r['bp_lm'])} (p {_fmt(r['bp_pvalue'])})"
            f"  cond. no. {_fmt(r['condition_number'])}"
        )
        tbl = _table(["term", "coef", "se", "se_hc3", "ci_low", "ci_high", "p"], coef)
        out.append(f"{title}\n" + "\n".join("  " + line for line in tbl.splitlines()) + f"\n{diag}\n")
    return "\n".join(out)


def fit_main(argv: Sequence[str] | None = None) -> int:
    """``impact fit PROFILING.csv [--json]`` (CONTRACT section 2). Returns the exit code.

    Prints to stdout the per model x hardware x target report, or with --json a JSON list of row objects with
    the column names of models.energy_model_fits (fitted groups only). Rejected input rows and skipped groups
    are reported on stderr. Exit 0 when at least one group was fitted, 1 when none was, 2 on unreadable input.
    Image profiling runs (a CSV whose header has width, height and steps) are fitted by the image models
    (orchestration.lib.images.models): their report follows, and their JSON rows (the selected forms) are named
    like models.image_model_fits, with "modality": "image".
    """
    from orchestration.lib.images import models as image_models

    parser = argparse.ArgumentParser(
        prog="impact fit", description="Fit energy and runtime models to profiling runs (text or image)."
    )
    parser.add_argument(
        "profiling", help="profiling CSV (or a directory of them): " + ", ".join(PROFILING_COLUMNS)
        + "; image runs: " + ", ".join(image_models.PROFILING_REQUIRED)
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list of energy_model_fits rows")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fold permutation (default 0)")
    args = parser.parse_args(list(argv) if argv is not None else None)

    try:
        text_files, image_files = image_models.split_profiling_files(args.profiling)
        parts = [read_profiling_csv(f) for f in text_files]
        image_parts = [image_models.read_profiling_csv(f) for f in image_files]
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        print(f"impact fit: cannot read {args.profiling}: {exc}", file=sys.stderr)
        return 2
    empty = (pd.DataFrame(columns=list(PROFILING_COLUMNS)), pd.DataFrame(columns=list(REJECT_COLUMNS)))
    rows = pd.concat([p[0] for p in parts] or [empty[0]], ignore_index=True)
    rejects = pd.concat([p[1] for p in [*parts, *image_parts]] or [empty[1]], ignore_index=True)
    if len(rejects):
        print(f"impact fit: {len(rejects)} row(s) rejected:", file=sys.stderr)
        for src, n, reason in rejects[["source_file", "source_row", "reason"]].itertuples(index=False):
            print(f"  {src} record {n}: {reason}", file=sys.stderr)
    fits = fit_groups(rows, cv_folds=args.folds, seed=args.seed)
    skipped = fits[fits["skip_reason"].notna()]
    for r in skipped.itertuples(index=False):
        print(f"impact fit: skipped {r.model} / {r.hardware} / {r.target}: {r.skip_reason}", file=sys.stderr)
    ok = fits[fits["skip_reason"].isna()]
    images = pd.concat([p[0] for p in image_parts], ignore_index=True) if image_parts else pd.DataFrame()
    image_fits = (
        image_models.fit_groups(images, "profiling", cv_folds=args.folds, seed=args.seed)[0] if len(images) else
        pd.DataFrame(columns=[*image_models.FITS_SCHEMA, "skip_reason"])
    )  # fmt: skip
    for r in image_fits[image_fits["skip_reason"].notna()].itertuples(index=False):
        print(f"impact fit: skipped {r.model} / {r.hardware} / {r.target}: {r.skip_reason}", file=sys.stderr)
    image_ok = image_fits[image_fits["selected"].astype(bool)]
    if args.json:
        records = [
            {c: _json_value(v) for c, v in rec.items()}
            for rec in ok[list(CONTRACT_COLUMNS)].to_dict("records")
        ] + [
            {"modality": "image", **{c: _json_value(v) for c, v in rec.items()}}
            for rec in image_ok[list(image_models.FITS_SCHEMA)].to_dict("records")
        ]
        print(json.dumps(records, indent=2))
    else:
        reports = [format_fits(fits)] if len(fits) else []
        reports += [image_models.format_fits(image_ok)] if len(image_ok) else []
        print("\n".join(reports) if reports else "no profiling rows to fit")
    return 0 if len(ok) or len(image_ok) else 1


# ------------------------------------------------------------------------------------------- monitoring


def quality_offenders(fits: pd.DataFrame, min_r2: float, max_cv_mape: float) -> pd.DataFrame:
    """Fits whose uncentred R-squared is below `min_r2` or whose CV MAPE is above `max_cv_mape` (NaN fails)."""
    r2 = fits["r_squared_uncentered"].astype(float)
    mape = fits["cv_mape"].astype(float)
    bad = ~(r2 >= min_r2) | ~(mape <= max_cv_mape)
    return fits.loc[bad, [*KEY_COLUMNS, "r_squared_uncentered", "cv_mape", "nobs"]]


def coefficient_drift(latest: pd.DataFrame, previous: pd.DataFrame, k: float) -> tuple[pd.DataFrame, int]:
    """Coefficients of groups present in both fits that moved more than k previous standard errors.

    Returns (offenders: key columns, coefficient, previous, latest, se_previous, shift_se; number of groups
    compared). A coefficient with a zero or missing previous SE drifts when it changed at all.
    """
    both = latest.merge(previous, on=list(KEY_COLUMNS), suffixes=("", "_prev"))
    rows = []
    for p in PARAM_KEYS:  # a loop over the three coefficients; vectorised over groups
        now, before, se = both[f"alpha_{p}"], both[f"alpha_{p}_prev"], both[f"se_{p}_prev"]
        shift = (now - before).abs()
        moved = shift > k * se.where(se > 0, 0.0)
        part = both.loc[moved, list(KEY_COLUMNS)].assign(
            coefficient=f"alpha_{p}", previous=before[moved], latest=now[moved], se_previous=se[moved],
            shift_se=(shift / se)[moved],
        )  # fmt: skip
        rows.append(part)
    offenders = pd.concat(rows, ignore_index=True)
    return offenders, len(both)
