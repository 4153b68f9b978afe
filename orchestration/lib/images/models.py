"""Energy and runtime models of image requests per model x hardware (docs/images.md): statsmodels OLS on the
physical parts of a diffusion request, with the rigour of the text models (orchestration.lib.energy_models: SEs,
HC3 SEs, 95 % CIs and p-values, uncentred and centred R-squared, F, AIC/BIC, Breusch-Pagan, k-fold CV MAPE/RMSE,
prediction intervals) and the same conventions.

Regressors of a request (one pipeline call; MP = width x height / 1e6 output megapixels, s = floor(steps x
strength) denoising steps run, g = 2 with classifier-free guidance else 1; the SQL twin is
dbt_project/macros/images.sql):

    request   = 1                       per call: text encoders, scheduler, pipeline overheads
    step      = s                       per-step overhead, whatever the size (kernel launches, scheduler)
    denoise   = images x s x g x MP     the denoiser's work, linear in pixels
    attention = denoise x MP            self-attention over the latent tokens, quadratic in pixels
    decode    = images x MP             VAE decode of each image
    encode    = input MP                VAE encode of the input image (image-to-image: the output's size when the
                                        log gives no input size; 0 for text-to-image)
    lora      = adapters x denoise      each unfused LoRA adapter adds work per denoising step

Candidate forms (additive, OLS without a separate intercept: ``request`` is the per-call constant):

    pixel_steps   request + denoise                               energy in proportion to pixel-steps
    linear        request + step + denoise + decode               per-step overhead and per-image decode
    attention     linear + attention                              the quadratic attention term
    (+ encode and lora whenever the data have image-to-image or adapter runs; a term whose column is all zero or
    a linear combination of the form's earlier terms is left out and the row says which terms were fitted)

and ``loglog`` (log y ~ 1 + log s + log MP + log images), for comparison only. The form used for predictions
(``selected``) is chosen from the data per model x hardware x source x target: the lowest out-of-sample CV RMSE
among the additive forms that could be fitted, a simpler form being kept when it is within 1 % of the best (why:
CV error is the comparable, out-of-sample measure, and the measured facts, steps linearity and an attention term
that only matters at high resolution, make the richer forms win only where the data span enough sizes).

Pure library code: pandas in, pandas out; no Dagster.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from orchestration.lib import energy_models as em

TERMS: tuple[str, ...] = ("request", "step", "denoise", "attention", "decode", "encode", "lora")
TERM_MEANING: dict[str, str] = {
    "request": "per call",
    "step": "per step run",
    "denoise": "per MP-step (x2 guided)",
    "attention": "per MP^2-step",
    "decode": "per output MP",
    "encode": "per input MP",
    "lora": "per adapter MP-step",
}
OPTIONAL_TERMS: tuple[str, ...] = ("encode", "lora")  # in every form, when the data have them
FORMS: dict[str, tuple[str, ...]] = {
    "pixel_steps": ("request", "denoise"),
    "linear": ("request", "step", "denoise", "decode"),
    "attention": ("request", "step", "denoise", "decode", "attention"),
}
COMPARISON_FORMS: tuple[str, ...] = (*FORMS, "loglog")
PARSIMONY = 0.01  # a simpler form within this relative CV RMSE of the best one is selected
TARGETS: dict[str, str] = {"energy_j": "energy", "runtime_s": "runtime"}
COV_PAIRS: tuple[tuple[str, str], ...] = tuple((a, b) for i, a in enumerate(TERMS) for b in TERMS[i:])

KEY_COLUMNS: tuple[str, ...] = ("model", "hardware", "source", "target", "form")
FIT_COLUMNS: tuple[str, ...] = (
    *(f"{stat}_{t}" for t in TERMS for stat in ("alpha", "se", "se_hc3", "ci_low", "ci_high", "p")),
    *(f"cov_{a}_{b}" for a, b in COV_PAIRS),
    "terms",
    "selected",
    "r_squared_uncentered",
    "r_squared",
    "f_statistic",
    "f_pvalue",
    "nobs",
    "aic",
    "bic",
    "cv_mape",
    "cv_rmse",
    "bp_lm",
    "bp_pvalue",
    "condition_number",
    "resid_variance",
    "df_resid",
    "t_975",
    "n_dropped",
    "fitted_at",
)
# models.image_model_fits (column -> DuckDB type)
FITS_SCHEMA: dict[str, str] = {
    **{c: "varchar" for c in KEY_COLUMNS},
    **{
        c: "varchar" if c == "terms" else "boolean" if c == "selected" else "bigint" if c in ("nobs", "n_dropped")
        else "timestamp" if c == "fitted_at" else "double"
        for c in FIT_COLUMNS
    },
}  # fmt: skip

PROFILING_REQUIRED: tuple[str, ...] = (
    "model",
    "hardware",
    "width",
    "height",
    "steps",
    "images",
    "energy_j",
    "runtime_s",
)
PROFILING_OPTIONAL: tuple[str, ...] = (
    "strength",
    "guidance",
    "lora",
    "batch_size",
    "input_width",
    "input_height",
)


# ------------------------------------------------------------------------------------------------ regressors


def lora_count(values: pd.Series) -> np.ndarray:
    """Adapters per row: a count, a list of names, or names separated by , ; or | (blank: none)."""

    def one(v) -> float:
        if isinstance(v, (list, tuple, np.ndarray)):
            return float(len(v))
        if v is None or pd.isna(v):
            return 0.0
        if isinstance(v, (int, float, np.integer, np.floating)):
            return float(v)
        text = str(v).strip().strip("[]")
        if not text:
            return 0.0
        if re.fullmatch(r"[0-9]+", text):
            return float(text)
        return float(len([name for name in re.split(r"[,;|]", text) if name.strip()]))

    return np.array([one(v) for v in values], dtype=float)  # per distinct value in practice: a few rows


def regressors(frame: pd.DataFrame) -> pd.DataFrame:
    """The TERMS columns of each request of `frame` (columns width, height, images, steps; optional strength
    (default 1), guidance (default on), lora (count or names), input_width, input_height)."""
    n = len(frame)

    def col(name: str, default: float) -> np.ndarray:
        if name not in frame:
            return np.full(n, default)
        return pd.to_numeric(frame[name], errors="coerce").fillna(default).to_numpy(float)

    mp = col("width", math.nan) * col("height", math.nan) / 1e6
    strength = col("strength", 1.0)
    steps = np.floor(col("steps", math.nan) * strength)
    guided = (
        frame["guidance"].astype("boolean").fillna(True).to_numpy(bool)
        if "guidance" in frame
        else np.ones(n, bool)
    )
    images = col("images", 1.0)
    denoise = images * steps * np.where(guided, 2.0, 1.0) * mp
    input_mp = col("input_width", math.nan) * col("input_height", math.nan) / 1e6
    encode = np.where(np.isfinite(input_mp), input_mp, np.where(strength < 1, mp, 0.0))
    adapters = lora_count(frame["lora"]) if "lora" in frame else np.zeros(n)
    return pd.DataFrame(
        {
            "request": np.ones(n),
            "step": steps,
            "denoise": denoise,
            "attention": denoise * mp,
            "decode": images * mp,
            "encode": encode,
            "lora": adapters * denoise,
        },
        index=frame.index,
    )


def _form_terms(x: pd.DataFrame, form: str) -> list[str]:
    """The form's terms that these rows can identify: optional terms present in the data are added; a column that
    is all zero, or (numerically) a linear combination of the terms before it, is left out."""
    wanted = [*FORMS[form], *(t for t in OPTIONAL_TERMS if (x[t] != 0).any())]
    kept: list[str] = []
    for term in wanted:
        candidate = x[[*kept, term]].to_numpy(float)
        if not (x[term] != 0).any():
            continue
        # columns scaled to unit norm, so the rank tolerance does not depend on the units of each term
        scaled = candidate / np.linalg.norm(candidate, axis=0)
        if np.linalg.matrix_rank(scaled, tol=1e-9 * len(candidate)) == len(kept) + 1:
            kept.append(term)
    return kept


# ------------------------------------------------------------------------------------------------- fitting


@dataclass
class ImageFit:
    """One fit: the statsmodels results, the flat row (FIT_COLUMNS) and the rows fitted."""

    results: object
    row: dict
    form: str
    target: str
    terms: list[str]
    data: pd.DataFrame = field(repr=False)


def _prepare(df: pd.DataFrame, target: str) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(regressors, rows) of the usable rows (finite regressors and a positive finite target), and how many were
    dropped."""
    x = regressors(df)
    y = pd.to_numeric(df[target], errors="coerce").to_numpy(float)
    ok = np.isfinite(x.to_numpy(float)).all(axis=1) & np.isfinite(y) & (y > 0)
    data = x.loc[ok].assign(y=y[ok]).reset_index(drop=True)
    return data, df.loc[ok].reset_index(drop=True), int((~ok).sum())


def fit_image_model(
    df: pd.DataFrame,
    target: str,
    form: str = "attention",
    cv_folds: int = 5,
    seed: int = 0,
    fitted_at: pd.Timestamp | None = None,
) -> ImageFit:
    """Fit one additive form to one frame. Raises em.SingularDesignError on too few rows or a singular design."""
    if form not in FORMS:
        raise ValueError(f"unknown image form {form!r}; expected one of {tuple(FORMS)}")
    data, _, n_dropped = _prepare(df, target)
    terms = _form_terms(data, form) if len(data) else list(FORMS[form])
    x, ym = data[terms].to_numpy(float), data["y"].to_numpy(float)
    em._check_design(x)
    res, coefficients, diagnostics = em.fit_ols(x, ym, terms, has_constant=True)
    row: dict = {c: math.nan for c in FIT_COLUMNS}
    for term in terms:
        for stat, value in coefficients.loc[term].items():
            row[f"{stat}_{term}"] = float(value)
    cov = res.cov_params().to_numpy(float)
    for a, b in COV_PAIRS:
        if a in terms and b in terms:
            row[f"cov_{a}_{b}"] = float(cov[terms.index(a), terms.index(b)])
    cv = em.cross_validate_design(x, ym, ym, log_scale=False, k=cv_folds, seed=seed)
    row.update(
        {
            **{c: diagnostics[c] for c in diagnostics},
            "cv_mape": cv["cv_mape"],
            "cv_rmse": cv["cv_rmse"],
            "terms": "+".join(terms),
            "selected": False,
            "n_dropped": n_dropped,
            "fitted_at": fitted_at if fitted_at is not None else pd.Timestamp.now(tz="UTC"),
        }
    )
    return ImageFit(results=res, row=row, form=form, target=target, terms=terms, data=data)


def _loglog(df: pd.DataFrame, target: str, cv_folds: int, seed: int) -> dict:
    """The log-log form's comparison figures (log y ~ 1 + log s + log MP + log images; AIC on the log scale)."""
    data, rows, _ = _prepare(df, target)
    mp = data["decode"] / pd.to_numeric(rows["images"], errors="coerce").fillna(1.0)
    logs = {"const": np.ones(len(data)), "log_steps": np.log(data["step"]), "log_mp": np.log(mp),
            "log_images": np.log(pd.to_numeric(rows["images"], errors="coerce").fillna(1.0))}  # fmt: skip
    frame = pd.DataFrame(logs)
    usable = np.isfinite(frame.to_numpy(float)).all(axis=1)
    frame = frame.loc[usable]
    names = ["const", *(c for c in frame.columns[1:] if frame[c].nunique() > 1)]
    x, y = frame[names].to_numpy(float), data["y"].to_numpy(float)[usable]
    em._check_design(x)
    _, _, diagnostics = em.fit_ols(x, np.log(y), names, has_constant=True)
    cv = em.cross_validate_design(x, np.log(y), y, log_scale=True, k=cv_folds, seed=seed)
    return {**diagnostics, **cv, "n_params": len(names)}


def compare_forms(df: pd.DataFrame, target: str, cv_folds: int = 5, seed: int = 0,
                  fitted: dict[str, ImageFit] | None = None) -> pd.DataFrame:  # fmt: skip
    """AIC / BIC, R-squared and out-of-sample CV MAPE / RMSE of each candidate form (COMPARISON_FORMS) on one
    group, with ``selected`` marking the form predictions use (see the module docstring); forms that cannot be
    fitted get ``error``. ``fitted``: fits of additive forms already made on this frame and target."""
    rows = []
    for form in COMPARISON_FORMS:
        base = {"form": form, "aic_scale": "log" if form == "loglog" else "original"}
        try:
            if form == "loglog":
                r = _loglog(df, target, cv_folds, seed)
                rows.append({**base, **{k: r[k] for k in ("nobs", "n_params", "aic", "bic", "r_squared",
                                                          "r_squared_uncentered", "cv_mape", "cv_rmse")},
                             "terms": "log steps, log MP, log images", "error": None})  # fmt: skip
                continue
            fit = (fitted or {}).get(form) or fit_image_model(df, target, form, cv_folds, seed)
        except (em.SingularDesignError, KeyError, ValueError) as exc:
            rows.append({**base, "error": str(exc)})
            continue
        r = fit.row
        rows.append(
            {**base, **{k: r[k] for k in ("nobs", "aic", "bic", "r_squared", "r_squared_uncentered", "cv_mape",
                                          "cv_rmse", "terms")},
             "n_params": len(fit.terms), "error": None}
        )  # fmt: skip
    table = pd.DataFrame(rows).reindex(
        columns=["form", "terms", "nobs", "n_params", "aic", "bic", "aic_scale", "r_squared",
                 "r_squared_uncentered", "cv_mape", "cv_rmse", "error"]
    )  # fmt: skip
    table["selected"] = table["form"] == select_form(table)
    return table


def select_form(comparison: pd.DataFrame) -> str | None:
    """The additive form with the lowest CV RMSE, or a simpler one (FORMS order) within PARSIMONY of it; an
    additive form whose terms duplicate a simpler one's (a term left out) counts as that simpler form."""
    ok = comparison[comparison["form"].isin(list(FORMS)) & comparison["error"].isna()]
    ok = ok[np.isfinite(ok["cv_rmse"].astype(float))]
    if ok.empty:
        return None
    ok = ok.drop_duplicates(subset="terms", keep="first")
    best = float(ok["cv_rmse"].min())
    for form in FORMS:  # simplest first
        hit = ok[ok["form"] == form]
        if len(hit) and float(hit["cv_rmse"].iloc[0]) <= best * (1 + PARSIMONY):
            return form
    return None  # pragma: no cover - the best form is always within its own bound


def fit_groups(
    df: pd.DataFrame,
    source: str,
    targets: Sequence[str] = tuple(TARGETS),
    cv_folds: int = 5,
    seed: int = 0,
    fitted_at: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, list[ImageFit]]:
    """Per model x hardware and target: every additive form fitted and compared, the selected one flagged.

    Returns (fits: one row per fitted form, KEY_COLUMNS + FIT_COLUMNS, with skip rows for groups that could not
    be fitted at all (``skip_reason``); comparison: one row per group x target x candidate form (model, hardware,
    source, target and compare_forms' columns); the ImageFit of each fitted row, in order)."""
    fitted_at = fitted_at if fitted_at is not None else pd.Timestamp.now(tz="UTC")
    fit_rows, comparisons, results = [], [], []
    for (model, hardware), group in df.groupby(["model", "hardware"], sort=True, dropna=False):  # per group
        for column in targets:
            key = {
                "model": model,
                "hardware": hardware,
                "source": source,
                "target": TARGETS.get(column, column),
            }
            fits: dict[str, ImageFit] = {}
            why = None
            for form in FORMS:
                try:
                    fits[form] = fit_image_model(group, column, form, cv_folds, seed, fitted_at)
                except (em.SingularDesignError, KeyError) as exc:
                    why = why or exc
            table = compare_forms(group, column, cv_folds, seed, fitted=fits)
            comparisons.append(table.assign(**key, fitted_at=fitted_at))
            if not fits:
                fit_rows.append({**key, "form": None, "nobs": len(group), "fitted_at": fitted_at, "selected": False,
                                 "skip_reason": str(why)})  # fmt: skip
                continue
            chosen = select_form(table)
            for form, fit in fits.items():
                fit.row["selected"] = form == chosen
                fit_rows.append({**key, "form": form, **fit.row, "skip_reason": None})
                results.append(fit)
    cols = [*KEY_COLUMNS, *FIT_COLUMNS, "skip_reason"]
    comparison = pd.concat(comparisons, ignore_index=True) if comparisons else pd.DataFrame()
    return pd.DataFrame(fit_rows).reindex(columns=cols), comparison, results


# -------------------------------------------------------------------------------------------- prediction


def predict(fit: dict, frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95 % prediction interval (clipped at 0) of a stored fit row (FIT_COLUMNS) for each request of
    `frame`: x'a and t_975 sqrt(s^2 + x'Vx), statsmodels' obs_ci of get_prediction. Columns mean, low, high."""
    x = regressors(frame)

    def num(c: str) -> float:
        v = fit.get(c)
        return 0.0 if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    mean = sum(num(f"alpha_{t}") * x[t].to_numpy(float) for t in TERMS)
    quad = num("resid_variance") + sum(
        (1 if a == b else 2) * num(f"cov_{a}_{b}") * x[a].to_numpy(float) * x[b].to_numpy(float)
        for a, b in COV_PAIRS
    )
    half = num("t_975") * np.sqrt(np.maximum(quad, 0.0))
    return pd.DataFrame(
        {"mean": mean, "low": np.maximum(mean - half, 0.0), "high": np.maximum(mean + half, 0.0)},
        index=frame.index,
    )


# --------------------------------------------------------------------------------------------------- input


def is_image_profiling(columns: Sequence[str]) -> bool:
    """Whether a profiling file's header is that of image runs (width, height and steps columns)."""
    names = {c.strip() for c in columns}
    return {"width", "height", "steps"} <= names


def split_profiling_files(path) -> tuple[list[Path], list[Path]]:
    """(text files, image files) of a profiling CSV or a directory of them (**/*.csv), by their header. Raises
    FileNotFoundError when there is none."""
    path = Path(path)
    files = sorted(path.rglob("*.csv")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise FileNotFoundError(f"no profiling CSV at {path}")
    image = [f for f in files if is_image_profiling(pd.read_csv(f, nrows=0).columns)]
    return [f for f in files if f not in image], image


def read_profiling_csv(path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Image profiling runs (CONTRACT section 1): model, hardware, width, height, steps, images, energy_j,
    runtime_s; optional strength (default 1), guidance (default on), lora (count or names), batch_size (default
    1), input_width, input_height. A run with batch_size b processed b prompts of `images` images each in one
    call: it is fitted as one call of b x images images (the denoiser's batch is the same), with the run's
    energy_j and runtime_s. Returns (rows, rejects as raw.rejected_rows: source_file, source_row, reason,
    raw_record); nothing is dropped silently. Raises ValueError when a required column is missing."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    raw.columns = [c.strip() for c in raw.columns]
    missing = [c for c in PROFILING_REQUIRED if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: missing image profiling columns {missing} (CONTRACT section 1)")
    raw = raw.reset_index(drop=True)
    text = {c: raw[c].str.strip() if c in raw else pd.Series("", index=raw.index) for c in
            (*PROFILING_REQUIRED, *PROFILING_OPTIONAL)}  # fmt: skip
    num = {c: pd.to_numeric(text[c].where(text[c] != ""), errors="coerce") for c in
           ("width", "height", "steps", "images", "energy_j", "runtime_s", "strength", "batch_size", "input_width",
            "input_height")}  # fmt: skip
    guidance = text["guidance"].str.lower().map(
        {**{v: True for v in ("true", "t", "on", "yes", "y", "1", "")}, **{v: False for v in ("false", "f", "off", "no", "n", "0")}}
    )  # fmt: skip
    checks: list[tuple[pd.Series, str]] = [
        (text["model"] == "", "empty model"),
        (text["hardware"] == "", "empty hardware"),
    ]
    for c in ("width", "height", "steps", "images"):
        v = num[c]
        checks += [(~np.isfinite(v), f"{c} not a finite number"),
                   (np.isfinite(v) & ((v < 1) | (v != np.floor(v))), f"{c} not a whole number >= 1")]  # fmt: skip
    for c in ("batch_size", "input_width", "input_height"):
        v = num[c]
        checks.append(
            (
                (text[c] != "") & ~(np.isfinite(v) & (v >= 1) & (v == np.floor(v))),
                f"{c} not a whole number >= 1",
            )
        )
    checks += [
        ((text["strength"] != "") & ~(num["strength"].between(0, 1)), "strength not in 0-1"),
        (guidance.isna(), "guidance not true/false"),
        (
            (text["input_width"] == "") != (text["input_height"] == ""),
            "input_width and input_height go together",
        ),
    ]
    for c in ("energy_j", "runtime_s"):
        checks.append((~(np.isfinite(num[c]) & (num[c] > 0)), f"{c} not a positive number"))
    reason = pd.Series("", index=raw.index)
    for mask, why in checks:  # a loop over checks; each is vectorised over rows
        mask = pd.Series(np.asarray(mask, dtype=bool), index=raw.index)
        reason = reason.where(~mask, reason + np.where(reason == "", "", "; ") + why)
    bad = reason != ""
    batch = num["batch_size"].fillna(1.0)
    rows = pd.DataFrame(
        {
            "model": text["model"], "hardware": text["hardware"],
            "width": num["width"], "height": num["height"], "steps": num["steps"],
            "images": num["images"] * batch, "strength": num["strength"].fillna(1.0),
            "guidance": guidance, "lora": text["lora"].replace("", None),
            "input_width": num["input_width"], "input_height": num["input_height"],
            "batch_size": batch, "energy_j": num["energy_j"], "runtime_s": num["runtime_s"],
        }
    ).loc[~bad].reset_index(drop=True)  # fmt: skip
    rejects = pd.DataFrame(
        {
            "source_file": str(path),
            "source_row": (raw.index[bad] + 1).astype("int64"),
            "reason": reason[bad].to_numpy(),
            "raw_record": raw.loc[bad].to_json(orient="records", lines=True).splitlines()
            if bad.any()
            else [],
        },
        columns=list(em.REJECT_COLUMNS),
    )
    return rows, rejects


# ------------------------------------------------------------------------------------------------- report


def format_fits(fits: pd.DataFrame) -> str:
    """The selected form's coefficients and diagnostics per model x hardware x target (impact fit)."""
    out = []
    for r in fits.to_dict("records"):  # one iteration per fitted group x target, for printing only
        title = (
            f"{r['model']} on {r['hardware'] or '?'}: {r['target']} ({r['source']}, image form {r['form']})"
        )
        if r.get("skip_reason"):
            out.append(f"{title}\n  skipped: {r['skip_reason']}\n")
            continue
        terms = str(r["terms"]).split("+")
        coef = [
            [f"alpha_{t}", r[f"alpha_{t}"], r[f"se_{t}"], r[f"se_hc3_{t}"], r[f"ci_low_{t}"], r[f"ci_high_{t}"],
             r[f"p_{t}"], TERM_MEANING[t]]
            for t in terms
        ]  # fmt: skip
        table = em._table(
            ["term", "coef", "se", "se_hc3", "ci_low", "ci_high", "p", "unit of the term"], coef
        )
        diag = (
            f"  nobs {r['nobs']}  R2 {em._fmt(r['r_squared'])}  R2 uncentred {em._fmt(r['r_squared_uncentered'])}"
            f"  F {em._fmt(r['f_statistic'])} (p {em._fmt(r['f_pvalue'])})\n"
            f"  AIC {em._fmt(r['aic'])}  BIC {em._fmt(r['bic'])}  CV MAPE {em._fmt(r['cv_mape'])}"
            f"  CV RMSE {em._fmt(r['cv_rmse'])}  Breusch-Pagan LM {em._fmt(r['bp_lm'])} (p {em._fmt(r['bp_pvalue'])})"
            f"  cond. no. {em._fmt(r['condition_number'])}"
        )
        out.append(f"{title}\n" + "\n".join("  " + line for line in table.splitlines()) + f"\n{diag}\n")
    return "\n".join(out)


def coefficient_drift(latest: pd.DataFrame, previous: pd.DataFrame, k: float) -> tuple[pd.DataFrame, int]:
    """As energy_models.coefficient_drift, over the selected image fits of the same model, hardware, source,
    target and form: the coefficients that moved more than k previous standard errors."""
    keys = list(KEY_COLUMNS)
    both = latest[latest["selected"].astype(bool)].merge(previous, on=keys, suffixes=("", "_prev"))
    parts = []
    for t in (t for t in TERMS if f"alpha_{t}" in latest and f"se_{t}" in previous):  # vectorised over groups
        now, before, se = both[f"alpha_{t}"], both[f"alpha_{t}_prev"], both[f"se_{t}_prev"]
        shift = (now - before).abs()
        moved = shift > k * se.where(se > 0, 0.0)
        parts.append(
            both.loc[moved, keys].assign(coefficient=f"alpha_{t}", previous=before[moved], latest=now[moved],
                                         se_previous=se[moved], shift_se=(shift / se)[moved])
        )  # fmt: skip
    return pd.concat(parts, ignore_index=True), len(both)
