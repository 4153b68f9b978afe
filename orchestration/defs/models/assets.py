"""Models layer: energy and runtime models e_K(tau_in, tau_out) per model x hardware (METHODOLOGY section 4),
fitted on telemetry-attributed requests and on offline profiling runs, with ANOVA and a comparison of forms; and
the image models (docs/images.md) of image requests and image profiling runs.

The statistics live in orchestration.lib.energy_models (text) and orchestration.lib.images.models (images) and the
plots in orchestration.lib.model_plots; this module reads the marts, calls them, and writes the results under the
`models` schema.
"""

import datetime as dt
import math
from collections.abc import Mapping
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd

from orchestration.defs.partitions import DAILY_BACKFILL_POLICY, DAILY_PARTITIONS
from orchestration.defs.resources import ImpactSettings
from orchestration.lib import energy_models as em
from orchestration.lib import engines, predictions
from orchestration.lib.images import models as image_models
from orchestration.lib.images import predict as image_predict
from orchestration.lib.model_plots import diagnostics_markdown
from orchestration.lib.predictions import FIT_MAX_ROWS
from orchestration.lib.warehouse import fetch_one, quote_ident, replace_table, warehouse

OWNERS = ["team:sustainability"]
KINDS = {"statsmodels", "duckdb"}
GROUP = "models"

FITS_KEY = dg.AssetKey(["models", "energy_model_fits"])
ANOVA_KEY = dg.AssetKey(["models", "energy_model_anova"])
COMPARISON_KEY = dg.AssetKey(["models", "model_comparison"])
IMAGE_FITS_KEY = dg.AssetKey(["models", "image_model_fits"])
REQUEST_ENERGY_KEY = dg.AssetKey(["marts", "fct_request_energy"])
CLUSTERS_KEY = dg.AssetKey(["raw", "clusters"])
# the fits' sample kept per day (in the daily job; the fits read the window's parts)
FIT_SAMPLE_DAYS_KEY = dg.AssetKey(["models", "fit_sample_days"])

FITS_TABLE = "models.energy_model_fits"
ANOVA_TABLE = "models.energy_model_anova"
COMPARISON_TABLE = "models.model_comparison"
IMAGE_FITS_TABLE = image_predict.FITS_TABLE

TRAILING_DAYS = 28  # telemetry window of the fits, in days up to the latest day in marts.fct_request_energy
MAX_NUMERIC_GROUPS = 20  # fitted groups whose R2 / F / coefficients become numeric metadata
MAX_PLOT_GROUPS = 6  # fitted groups whose diagnostic plots are embedded in the metadata
PROFILING_INPUT = "profiling"  # raw.rejected_rows.input of rejected profiling rows
TARGETS = {"energy": "energy_j", "runtime": "runtime_s"}

FIT_TABLE_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys((*em.CONTRACT_COLUMNS, *em.EXTRA_COLUMNS)))
_VARCHAR = {"model", "hardware", "source", "target", "form"}
_BIGINT = {"nobs", "n_dropped"}
ANOVA_COLUMNS: dict[str, str] = {
    "model": "varchar", "hardware": "varchar", "source": "varchar", "target": "varchar", "term": "varchar",
    "sum_sq": "double", "df": "double", "F": "double", "PR(>F)": "double", "anova_type": "varchar",
    "fitted_at": "timestamp",
}  # fmt: skip
COMPARISON_COLUMNS: dict[str, str] = {
    "model": "varchar", "hardware": "varchar", "source": "varchar", "target": "varchar", "form": "varchar",
    "nobs": "bigint", "n_params": "bigint", "aic": "double", "bic": "double", "aic_scale": "varchar",
    "r_squared": "double", "r_squared_uncentered": "double", "cv_mape": "double", "cv_rmse": "double",
    "error": "varchar", "fitted_at": "timestamp",
    # text or image; the image forms' fitted terms; the form the predictions use (text: always paper)
    "modality": "varchar", "terms": "varchar", "selected": "boolean",
}  # fmt: skip


def fit_table_types() -> dict[str, str]:
    """DuckDB type of each models.energy_model_fits column."""
    return {
        c: "varchar" if c in _VARCHAR else "bigint" if c in _BIGINT else "timestamp" if c == "fitted_at" else "double"
        for c in FIT_TABLE_COLUMNS
    }


class EnergyModelConfig(dg.Config):
    """Run configuration of the model fits."""

    trailing_days: int = TRAILING_DAYS


# ------------------------------------------------------------------------------------------------ inputs


def read_telemetry_requests(con: duckdb.DuckDBPyConnection, trailing_days: int) -> pd.DataFrame:
    """Attributed requests of the trailing window (ending on the latest day present; the same window the
    predictions use; at most FIT_MAX_ROWS per model x hardware, a fixed hash sample, read from the days' parts of
    models.fit_sample_days), in the column names of the profiling runs: model, hardware (the cluster's gpu_model),
    input_tokens, output_tokens, energy_j (IT energy), runtime_s (duration), mean_concurrency."""
    if trailing_days <= 0:
        raise ValueError(f"trailing_days must be positive, not {trailing_days}")
    window = predictions.window_sample(con, days=trailing_days)
    return window.assign(hardware=window["hardware"].fillna("")).rename(
        columns={"it_energy_j": "energy_j", "duration_s": "runtime_s"}
    )[["model", "hardware", "input_tokens", "output_tokens", "energy_j", "runtime_s", "mean_concurrency"]]


def read_profiling_dir(data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Every CSV under <data_dir>/profiling (none when the folder is absent): (text runs, image runs, rejected
    rows). A file is image runs when its header has width, height and steps (lib/images/models.py), text runs
    otherwise. A file that cannot be read at all (no header, a missing column) becomes one rejected row instead of
    failing the fits."""
    folder = data_dir / "profiling"
    files = sorted(folder.rglob("*.csv")) if folder.is_dir() else []
    parts: dict[str, list[pd.DataFrame]] = {"text": [], "image": []}
    rejects = []
    for path in files:  # a loop over files
        kind = "text"
        try:
            kind = "image" if image_models.is_image_profiling(pd.read_csv(path, nrows=0).columns) else "text"
            good, bad = (image_models.read_profiling_csv if kind == "image" else em.read_profiling_csv)(path)
        except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            bad = pd.DataFrame(
                [{"source_file": str(path), "source_row": None, "reason": f"unreadable file: {exc}",
                  "raw_record": None}]
            )  # fmt: skip
            good = pd.DataFrame()
        parts[kind].append(good)
        rejects.append(bad)
    text = pd.concat(parts["text"], ignore_index=True) if parts["text"] else pd.DataFrame()
    image = pd.concat(parts["image"], ignore_index=True) if parts["image"] else pd.DataFrame()
    bad_rows = (
        pd.concat(rejects, ignore_index=True) if rejects else pd.DataFrame(columns=list(em.REJECT_COLUMNS))
    )
    return (
        text.reindex(columns=list(em.PROFILING_COLUMNS)) if text.empty else text,
        image,
        bad_rows.reindex(columns=list(em.REJECT_COLUMNS)),
    )


# --------------------------------------------------------------------------------------------- fitting


def group_frames(inputs: dict[str, pd.DataFrame]) -> dict[tuple[str, str, str], pd.DataFrame]:
    """(model, hardware, source) -> rows, for each source's input frame."""
    out = {}
    for source, df in inputs.items():
        if df.empty:
            continue
        for (model, hardware), g in df.groupby(["model", "hardware"], sort=True, dropna=False):
            out[(str(model), str(hardware), source)] = g
    return out


def fit_all(
    inputs: dict[str, pd.DataFrame], fitted_at: pd.Timestamp
) -> tuple[pd.DataFrame, list[em.FitResult | None]]:
    """fit_group_results (paper form) for each source, both targets: the rows (skipped groups keep their
    skip_reason) and, in the same order, the fits behind them (for ANOVA and plots, without refitting)."""
    parts = [
        em.fit_group_results(df, source=source, fitted_at=fitted_at) for source, df in inputs.items() if not df.empty
    ]
    if not parts:
        return pd.DataFrame(columns=[*FIT_TABLE_COLUMNS, "skip_reason"]), []
    return pd.concat([rows for rows, _ in parts], ignore_index=True), [fit for _, fits in parts for fit in fits]


def anova_rows(fit: em.FitResult, row: pd.Series) -> pd.DataFrame:
    table = em.anova_table(fit)
    for c in ("model", "hardware", "source", "target", "fitted_at"):
        table[c] = row[c]
    return table


def comparison_rows(
    groups: dict[tuple[str, str, str], pd.DataFrame],
    fitted_at: pd.Timestamp,
    paper_fits: Mapping[tuple[str, str, str], em.FitResult] | None = None,
) -> pd.DataFrame:
    """compare_forms for the energy target of every model x hardware x source; ``paper_fits`` (same keys): the
    groups' energy fits of the paper form already made (fit_all), which the comparison reuses."""
    frames = []
    for key, g in groups.items():  # a loop over groups
        model, hardware, source = key
        known = (paper_fits or {}).get(key)
        table = em.compare_forms(g, TARGETS["energy"], fitted={"paper": known} if known is not None else None)
        table = table.assign(model=model, hardware=hardware, source=source, target="energy", fitted_at=fitted_at,
                             modality="text", selected=table["form"] == "paper")  # fmt: skip
        frames.append(table)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COMPARISON_COLUMNS))


# ------------------------------------------------------------------------------------------------ writes


def _ddl(table: str, types: dict[str, str]) -> str:
    cols = ", ".join(f"{quote_ident(c)} {t}" for c, t in types.items())
    return f"create table if not exists {table} ({cols})"


def _insert(con: duckdb.DuckDBPyConnection, table: str, df: pd.DataFrame, types: dict[str, str]) -> None:
    if df.empty:
        return
    frame = df.reindex(columns=list(types))  # noqa: F841 - read by DuckDB's replacement scan below
    cols = ", ".join(quote_ident(c) for c in types)
    casts = ", ".join(f"cast({quote_ident(c)} as {t})" for c, t in types.items())
    con.execute(f"insert into {table} ({cols}) select {casts} from frame")


def append_fits(con, fits: pd.DataFrame) -> None:
    """Append this run's fitted rows to models.energy_model_fits (history is kept; fitted_at tells runs apart).
    Columns the library added since the table was created are added to it."""
    types = fit_table_types()
    if hasattr(con, "write_table") and con.name == "spark":
        con.write_table(FITS_TABLE, fits, types, mode="append")
        return
    con.execute("create schema if not exists models")
    con.execute(_ddl(FITS_TABLE, types))
    have = {r[0] for r in con.execute(
        "select column_name from information_schema.columns where table_schema = 'models' "
        "and table_name = 'energy_model_fits'").fetchall()}  # fmt: skip
    for c, t in types.items():
        if c not in have:
            con.execute(f"alter table {FITS_TABLE} add column {quote_ident(c)} {t}")
    _insert(con, FITS_TABLE, fits, types)


def fit_images(
    inputs: dict[str, pd.DataFrame], fitted_at: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame, list[image_models.ImageFit]]:
    """The image models of each source's image rows (lib/images/models.py fit_groups: every additive form fitted
    and compared, the selected one flagged): (fit rows with skip_reason, comparison rows in COMPARISON_COLUMNS,
    the fits of the fitted rows in order)."""
    fits, comparisons, results = [], [], []
    for source, df in inputs.items():
        if df.empty:
            continue
        rows, comparison, fitted = image_models.fit_groups(df, source, fitted_at=fitted_at)
        fits.append(rows)
        comparisons.append(comparison.assign(modality="image"))
        results += fitted
    fit_rows = pd.concat(fits, ignore_index=True) if fits else pd.DataFrame(
        columns=[*image_models.FITS_SCHEMA, "skip_reason"]
    )
    comparison = pd.concat(comparisons, ignore_index=True) if comparisons else pd.DataFrame()
    return fit_rows, comparison.reindex(columns=list(COMPARISON_COLUMNS)), results


def append_image_fits(con, fits: pd.DataFrame) -> None:
    """Append this run's image fits to models.image_model_fits (history kept, like the text fits)."""
    image_predict.ensure_fits_table(con)
    if engines.is_spark(con):
        con.write_table(IMAGE_FITS_TABLE, fits, image_models.FITS_SCHEMA, mode="append")
        return
    _insert(con, IMAGE_FITS_TABLE, fits, image_models.FITS_SCHEMA)


def replace_profiling_rejects(con: duckdb.DuckDBPyConnection, rejects: pd.DataFrame, at: pd.Timestamp) -> None:
    """raw.rejected_rows for input 'profiling': the previous run's rows are replaced by this run's."""
    con.execute("delete from raw.rejected_rows where input = $input", {"input": PROFILING_INPUT})
    if rejects.empty:
        return
    frame = rejects.reindex(columns=list(em.REJECT_COLUMNS))  # noqa: F841 - read by the replacement scan
    con.execute(
        """
        insert into raw.rejected_rows
            (partition_day, input, source_file, source_row, reason, raw_record, rejected_at)
        select null, $input, source_file, cast(source_row as bigint), reason, raw_record, cast($at as timestamp)
        from frame
        """,
        {"input": PROFILING_INPUT, "at": at.to_pydatetime()},
    )


# ---------------------------------------------------------------------------------------------- metadata


def _f(v: object) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{float(v):.4g}"


def frame_markdown(df: pd.DataFrame, limit: int = 24) -> str:
    """A markdown table of the first `limit` rows (numbers to 4 significant digits)."""
    if df.empty:
        return "none"
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    for r in df.head(limit).itertuples(index=False):  # display only
        lines.append("| " + " | ".join(_f(v) if isinstance(v, float) else str(v) for v in r) + " |")
    return "\n".join(lines)


def fits_markdown(fits: pd.DataFrame) -> str:
    header = ("model", "hardware", "source", "target", "alpha_in", "alpha_out", "alpha_in_out",
              "r_squared_uncentered", "f_statistic", "cv_mape", "nobs")  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 4 + "---:|" * (len(header) - 4)]
    for r in fits.to_dict("records"):  # one line per fitted group, for display
        lines.append(
            "| " + " | ".join([str(r[c]) for c in header[:4]] + [_f(r[c]) for c in header[4:-1]] + [str(r["nobs"])])
            + " |"
        )
    return "\n".join(lines) if len(fits) else "no fits"


def skipped_markdown(skipped: pd.DataFrame) -> str:
    if skipped.empty:
        return "none"
    lines = ["| model | hardware | source | target | rows | reason |", "|---|---|---|---|---:|---|"]
    lines += [
        f"| {r['model']} | {r['hardware']} | {r['source']} | {r['target']} | {r['nobs']} | {r['skip_reason']} |"
        for r in skipped.to_dict("records")
    ]
    return "\n".join(lines)


def numeric_metadata(fits: pd.DataFrame, limit: int = MAX_NUMERIC_GROUPS) -> dict[str, dg.MetadataValue]:
    """R-squared, F, CV MAPE and the coefficients of up to `limit` fits as float metadata, which the UI plots
    across materialisations; keys read <statistic>/<model>/<hardware>/<source>/<target>."""
    out: dict[str, dg.MetadataValue] = {}
    stats = {"r2_uncentered": "r_squared_uncentered", "f_statistic": "f_statistic", "cv_mape": "cv_mape",
             "alpha_in": "alpha_in", "alpha_out": "alpha_out", "alpha_in_out": "alpha_in_out"}  # fmt: skip
    for r in fits.head(limit).to_dict("records"):
        group = "/".join(str(r[c]) or "-" for c in ("model", "hardware", "source", "target"))
        for name, col in stats.items():
            value = r[col]
            if value is not None and math.isfinite(float(value)):
                out[f"{name}/{group}"] = dg.MetadataValue.float(float(value))
    return out


# ------------------------------------------------------------------------------------------------- assets


@dg.asset(
    key=FIT_SAMPLE_DAYS_KEY,
    group_name=GROUP,
    kinds={"duckdb"},
    owners=OWNERS,
    partitions_def=DAILY_PARTITIONS,
    backfill_policy=DAILY_BACKFILL_POLICY,
    deps=[REQUEST_ENERGY_KEY, CLUSTERS_KEY],
)
def fit_sample_days(context: dg.AssetExecutionContext, settings: ImpactSettings) -> dg.MaterializeResult:
    """The fits' sample, kept per start day x model x hardware: the day's requests with the smallest hash of
    request_id (at most FIT_MAX_ROWS), and the day's request count (models.fit_sample_day_counts). The fits rank
    the window's parts instead of the whole window, to the same sample (a bottom-k sample merges exactly), so
    they cost the same however much history the warehouse holds. The requests of earlier days that ran past
    midnight into this day are reduced again. Re-materialising a day replaces its rows."""
    day = dt.date.fromisoformat(context.partition_key)
    with warehouse(settings.warehouse_path) as con:
        counts, sample = predictions.reduce_fit_sample_day(settings.marts(con), day, settings.max_request_duration_s)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(sample),
            "groups": dg.MetadataValue.int(counts),
            "cap_per_group": dg.MetadataValue.int(FIT_MAX_ROWS),
        }
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            FITS_KEY,
            group_name=GROUP,
            kinds=KINDS,
            owners=OWNERS,
            deps=[REQUEST_ENERGY_KEY, CLUSTERS_KEY, FIT_SAMPLE_DAYS_KEY],
            description=(
                "What a request of a given shape costs: per model x hardware, energy and runtime as "
                "a0 tau_in + a1 tau_out + a2 tau_in tau_out (no-intercept OLS, Wilkins et al.), fitted on the "
                "attributed requests of the trailing window (source telemetry) and on profiling runs (source "
                "profiling), with SEs, CIs, p-values, uncentred and centred R-squared, F, AIC/BIC, HC3 SEs, "
                "Breusch-Pagan and cross-validated MAPE. Each run appends its fits (fitted_at) so drift shows."
            ),
        ),
        dg.AssetSpec(
            ANOVA_KEY,
            group_name=GROUP,
            kinds=KINDS,
            owners=OWNERS,
            deps=[FITS_KEY],
            description=(
                "How much of the variation of energy and runtime each term explains: type-II ANOVA of every "
                "latest fit (tau_in, tau_out, their interaction, residual). Replaced each run."
            ),
        ),
        dg.AssetSpec(
            COMPARISON_KEY,
            group_name=GROUP,
            kinds=KINDS,
            owners=OWNERS,
            deps=[FITS_KEY, IMAGE_FITS_KEY],
            description=(
                "Is the paper's form the right one? Per model x hardware x source, the energy model's paper "
                "form against with-intercept, log-log and (telemetry) mean-concurrency forms, by AIC/BIC and "
                "out-of-sample CV MAPE/RMSE (loglog's AIC is on the log scale); for image models (modality image) "
                "the candidate image forms, with the one their predictions use (selected). Replaced each run."
            ),
        ),
        dg.AssetSpec(
            IMAGE_FITS_KEY,
            group_name=GROUP,
            kinds=KINDS,
            owners=OWNERS,
            deps=[REQUEST_ENERGY_KEY, CLUSTERS_KEY],
            description=(
                "What an image request of a given size costs: per image model x hardware, energy and runtime as a "
                "sum of a diffusion request's physical parts (per call, per step, denoiser megapixel-steps, "
                "attention, VAE decode and encode, LoRA adapters; docs/images.md), fitted by OLS on the metered "
                "image requests of the trailing window (source telemetry) and on image profiling runs (source "
                "profiling), each candidate form with SEs, HC3 SEs, CIs, R-squared, F, AIC/BIC, Breusch-Pagan and "
                "CV errors; `selected` marks the form chosen by out-of-sample error, which predictions use. Each "
                "run appends its fits (fitted_at)."
            ),
        ),
    ],
)
def energy_models(
    context: dg.AssetExecutionContext, config: EnergyModelConfig, settings: ImpactSettings
):
    fitted_at = pd.Timestamp.now(tz="UTC").tz_localize(None).floor("us")
    with warehouse(settings.warehouse_path) as con:
        marts = settings.marts(con)  # (the Spark engine's, or this DuckDB warehouse)
        telemetry = read_telemetry_requests(marts, config.trailing_days)
        profiling, image_profiling, rejects = read_profiling_dir(settings.data_path)
        replace_profiling_rejects(con, rejects, fitted_at)
        image_inputs = {
            "telemetry": image_predict.training_requests(
                marts, end_day=predictions.latest_day(marts), days=config.trailing_days, cap=FIT_MAX_ROWS
            ),
            "profiling": image_profiling,
        }
        all_image_fits, image_comparison, _ = fit_images(image_inputs, fitted_at)
        image_ok = all_image_fits["skip_reason"].isna().to_numpy()
        image_fits, image_skipped = all_image_fits[image_ok], all_image_fits[~image_ok]
        inputs = {"telemetry": telemetry, "profiling": profiling}
        groups = group_frames(inputs)
        all_fits, results = fit_all(inputs, fitted_at)
        fitted = all_fits["skip_reason"].isna().to_numpy()
        fits = all_fits[fitted].reset_index(drop=True)
        skipped = all_fits[~fitted]
        fit_results = [fit for fit, ok in zip(results, fitted) if ok]

        anova_parts, plots = [], {}
        for i, row in fits.iterrows():  # per fitted group: ANOVA and plots from its fit
            fit = fit_results[i]
            anova_parts.append(anova_rows(fit, row))
            if i < MAX_PLOT_GROUPS:
                title = f"{row['model']} / {row['hardware'] or '-'} / {row['source']} / {row['target']}"
                plots[f"diagnostics/{i}"] = dg.MetadataValue.md(diagnostics_markdown(fit, title))
        anova = pd.concat(anova_parts, ignore_index=True) if anova_parts else pd.DataFrame()
        paper_energy = {
            (row["model"], row["hardware"], row["source"]): fit
            for (_, row), fit in zip(fits.iterrows(), fit_results)
            if row["target"] == "energy"
        }
        comparison = comparison_rows(groups, fitted_at, paper_energy)
        comparison = pd.concat([comparison, image_comparison], ignore_index=True) if len(image_comparison) else comparison

        append_fits(marts, fits)
        append_image_fits(marts, image_fits)
        replace_table(marts, ANOVA_TABLE, ANOVA_COLUMNS, anova)
        replace_table(marts, COMPARISON_TABLE, COMPARISON_COLUMNS, comparison)
        (history,) = fetch_one(marts, f"select count(distinct fitted_at) from {FITS_TABLE}")

    if len(rejects):
        context.log.warning(f"{len(rejects)} profiling row(s) rejected (see raw.rejected_rows)")
    if len(skipped):
        context.log.info(f"{len(skipped)} group(s) skipped: too few rows or a singular design")
    yield dg.MaterializeResult(
        asset_key=FITS_KEY,
        metadata={
            "dagster/row_count": dg.MetadataValue.int(len(fits)),
            "fitted_at": dg.MetadataValue.text(fitted_at.isoformat()),
            "fits_in_history": dg.MetadataValue.int(int(history)),
            "trailing_days": dg.MetadataValue.int(config.trailing_days),
            "telemetry_requests": dg.MetadataValue.int(len(telemetry)),
            "profiling_runs": dg.MetadataValue.int(len(profiling)),
            "profiling_rows_rejected": dg.MetadataValue.int(len(rejects)),
            "groups_skipped": dg.MetadataValue.int(len(skipped)),
            "fits": dg.MetadataValue.md(fits_markdown(fits)),
            "skipped": dg.MetadataValue.md(skipped_markdown(skipped)),
            **numeric_metadata(fits),
            **plots,
        },
    )
    yield dg.MaterializeResult(
        asset_key=IMAGE_FITS_KEY,
        metadata={
            "dagster/row_count": dg.MetadataValue.int(len(image_fits)),
            "fitted_at": dg.MetadataValue.text(fitted_at.isoformat()),
            "telemetry_image_requests": dg.MetadataValue.int(len(image_inputs["telemetry"])),
            "profiling_image_runs": dg.MetadataValue.int(len(image_profiling)),
            "groups_skipped": dg.MetadataValue.int(len(image_skipped)),
            "fits": dg.MetadataValue.md(
                frame_markdown(
                    image_fits[["model", "hardware", "source", "target", "form", "terms", "selected", "r_squared",
                                "cv_mape", "nobs"]]
                )
            ),
            "skipped": dg.MetadataValue.md(skipped_markdown(image_skipped)),
            **{
                f"{name}/{r['model']}/{r['hardware'] or '-'}/{r['source']}/{r['target']}": dg.MetadataValue.float(
                    float(r[col])
                )
                for r in image_fits[image_fits["selected"].astype(bool)].head(MAX_NUMERIC_GROUPS).to_dict("records")
                for name, col in (("r2", "r_squared"), ("cv_mape", "cv_mape"), ("alpha_denoise", "alpha_denoise"))
                if r[col] is not None and math.isfinite(float(r[col]))
            },
        },
    )
    yield dg.MaterializeResult(
        asset_key=ANOVA_KEY,
        metadata={
            "dagster/row_count": dg.MetadataValue.int(len(anova)),
            "preview": dg.MetadataValue.md(frame_markdown(anova.drop(columns="fitted_at", errors="ignore"))),
        },
    )
    best = comparison[comparison["error"].isna()] if len(comparison) else comparison.reindex(
        columns=list(COMPARISON_COLUMNS)
    )
    yield dg.MaterializeResult(
        asset_key=COMPARISON_KEY,
        metadata={
            "dagster/row_count": dg.MetadataValue.int(len(comparison)),
            "preview": dg.MetadataValue.md(
                frame_markdown(best[["modality", "model", "hardware", "source", "form", "aic", "aic_scale", "cv_mape", "cv_rmse",
                                     "selected"]])
            ),
        },
    )
