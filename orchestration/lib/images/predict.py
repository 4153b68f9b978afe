"""Predicted runtime and energy of image requests, with 95 % prediction intervals.

- ``term_sql`` / ``mean_sql`` / ``half_width_sql``: the regressors and a stored fit's prediction in SQL, for
  models.request_predictions (the twin of dbt_project/macros/images.sql, which int_request_days uses);
- ``predict_image``: ``impact predict --width W --height H --steps S ...``, from the warehouse's metered image
  requests (``source`` telemetry: refitted on the window, as the text path does) or from the stored fits of the
  profiling runs ``impact run`` loaded from profiling/** (``source`` profiling).

Pure library code; no Dagster.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from orchestration.lib import engines
from orchestration.lib.images import models as im
from orchestration.lib.predictions import INTERVAL_COLUMNS, best_covered_hardware
from orchestration.lib.warehouse import has_table, replace_table

FITS_TABLE = "models.image_model_fits"
STATUS_OK = "ok"
ENERGY_DEFINITION = (
    "image requests: the selected form of models.image_model_fits (request, step, denoise, attention, decode, "
    "encode and lora terms) fitted to it_energy_j of the metered image requests (telemetry) or to the GPU energy "
    "of profiling runs (profiling: no host, idle share or PUE)"
)


# ------------------------------------------------------------------------------------------------------- SQL


def term_sql(term: str, r: str) -> str:
    """SQL of one regressor of request alias ``r`` (as macros/images.sql image_term)."""
    mp = f"{r}.width * {r}.height / 1e6"
    denoise = (
        f"({r}.images * floor({r}.steps * coalesce({r}.strength, 1)) "
        f"* case when coalesce({r}.guidance, true) then 2 else 1 end * {mp})"
    )
    return {
        "request": "1.0",
        "step": f"floor({r}.steps * coalesce({r}.strength, 1))",
        "denoise": denoise,
        "attention": f"({denoise} * {mp})",
        "decode": f"({r}.images * {mp})",
        "encode": (
            f"(case when {r}.input_width is not null then {r}.input_width * {r}.input_height / 1e6 "
            f"when {r}.strength < 1 then {mp} else 0 end)"
        ),
        "lora": f"(coalesce(len({r}.lora), 0) * {denoise})",
    }[term]


def mean_sql(fit: str, r: str) -> str:
    """SQL of fit alias ``fit``'s mean prediction for request alias ``r``: sum of alpha_t x term_t."""
    return "(" + " + ".join(f"coalesce({fit}.alpha_{t}, 0) * {term_sql(t, r)}" for t in im.TERMS) + ")"


def half_width_sql(fit: str, r: str) -> str:
    """SQL of the half-width of the fit's 95 % prediction interval: t_975 sqrt(s^2 + x'Vx)."""
    quad = " + ".join(
        f"{'' if a == b else '2 * '}coalesce({fit}.cov_{a}_{b}, 0) * {term_sql(a, r)} * {term_sql(b, r)}"
        for a, b in im.COV_PAIRS
    )
    return f"({fit}.t_975 * sqrt({fit}.resid_variance + {quad}))"


LATEST_FITS_SQL = f"""
    select * from {FITS_TABLE}
    where selected and t_975 is not null
    qualify row_number() over (
        partition by model, hardware, target order by (source = 'telemetry') desc, fitted_at desc
    ) = 1
"""


def ensure_fits_table(con) -> None:
    """models.image_model_fits, empty, when no image fit was ever written (the predictions view reads it)."""
    if not engines.has_table(con, FITS_TABLE):
        replace_table(con, FITS_TABLE, im.FITS_SCHEMA, pd.DataFrame())


# -------------------------------------------------------------------------------------------- the warehouse

TRAINING_SQL = """
    select f.request_id, f.model, c.gpu_model as hardware, f.cluster, f.day, f.start_time, f.width, f.height,
           f.images, f.steps, f.strength, f.input_width, f.input_height, f.guidance, len(f.lora) as lora,
           f.it_energy_j as energy_j, f.duration_s as runtime_s
    from marts.fct_request_energy as f
    left join raw.clusters as c on c.cluster = f.cluster
    where f.modality = 'image'
"""


def training_requests(con, end_day: dt.date | None = None, days: int = 28, cap: int | None = None,
                      model: str | None = None, hardware: str | None = None,
                      before: pd.Timestamp | None = None) -> pd.DataFrame:  # fmt: skip
    """The metered image requests the telemetry fits train on, in the profiling runs' column names: the ``days``
    days ending with end_day (default: the latest day with image requests), or the ``days`` days before
    ``before``; at most ``cap`` per model x hardware (the smallest hashes of request_id: the same rows every run)."""
    where, params = [], {}
    if model is not None:
        where.append("f.model = $model")
        params["model"] = model
    if hardware is not None:
        where.append("lower(c.gpu_model) = lower($hardware)")
        params["hardware"] = hardware
    if before is not None:
        end = before.tz_convert("UTC").tz_localize(None).to_pydatetime()
        where.append("f.start_time >= $lo and f.start_time < $hi")
        params.update(lo=end - dt.timedelta(days=days), hi=end)
    else:
        if end_day is None:
            (end_day,) = con.execute(
                "select max(day) from marts.fct_request_energy where modality = 'image'"
            ).fetchone()
        if end_day is None:
            return con.execute(TRAINING_SQL + " and false").df()
        where.append("f.day between $start and $end")
        params.update(start=end_day - dt.timedelta(days=days - 1), end=end_day)
    sql = TRAINING_SQL + "".join(f" and {w}" for w in where)
    if engines.is_spark(con):
        from orchestration.lib.engines import spark_steps

        frame = con.execute(spark_steps.image_training_sql(sql, cap), params | ({"cap": int(cap)} if cap else {})).df()
        return frame.assign(hardware=frame["hardware"].fillna(""))
    if cap is not None:
        sql += " qualify row_number() over (partition by f.model, c.gpu_model order by hash(f.request_id), f.request_id) <= $cap"
        params["cap"] = int(cap)
    frame = con.execute(sql + " order by f.day, f.request_id", params).df()
    return frame.assign(hardware=frame["hardware"].fillna(""))


def latest_fits(con, model: str, hardware: str | None, source: str) -> pd.DataFrame:
    """The latest selected fits of ``source`` for the model (and hardware, case-insensitive), per hardware and
    target."""
    if not has_table(con, FITS_TABLE):
        return pd.DataFrame(columns=list(im.FITS_SCHEMA))
    sql = f"""
        select * from {FITS_TABLE}
        where selected and t_975 is not null and model = $model and source = $source
          and ($hardware is null or lower(hardware) = lower($hardware))
        qualify row_number() over (partition by hardware, target order by fitted_at desc) = 1
    """
    return con.execute(sql, {"model": model, "source": source, "hardware": hardware}).df()


def request_frame(width: int, height: int, steps: int, images: int = 1, strength: float = 1.0,
                  guidance: bool = True, lora: int = 0, input_width: int | None = None,
                  input_height: int | None = None) -> pd.DataFrame:  # fmt: skip
    """One hypothetical image request, in the columns of ``models.regressors``."""
    return pd.DataFrame(
        {"width": [width], "height": [height], "steps": [steps], "images": [images], "strength": [strength],
         "guidance": [guidance], "lora": [lora], "input_width": [input_width], "input_height": [input_height]}
    )  # fmt: skip


def predict_image(con, model: str, request: pd.DataFrame, hardware: str | None = None, source: str = "telemetry",
                  at: pd.Timestamp | None = None, days: int = 28) -> dict:  # fmt: skip
    """Predicted runtime and energy of one image request (``request_frame``) of ``model`` on ``hardware`` (None:
    the hardware with the most training rows), with 95 % prediction intervals. Raises LookupError when there is
    nothing to predict from (the message says what is missing)."""
    if source == "profiling":
        fits = latest_fits(con, model, hardware, "profiling")
        if fits.empty:
            scope = f" on hardware {hardware}" if hardware else ""
            raise LookupError(
                f"no profiling fit of image model {model!r}{scope} in {FITS_TABLE}: put its profiling runs under "
                "<data dir>/profiling/ and run `impact run`"
            )
        chosen, by_target, others = best_covered_hardware(fits)
        clusters, window = [], None
    else:
        train = training_requests(con, days=days, model=model, hardware=hardware, before=at, cap=200_000)
        if train.empty:
            scope = f" on hardware {hardware}" if hardware else ""
            raise LookupError(f"no metered image requests of model {model!r}{scope} in the warehouse")
        counts = train["hardware"].value_counts()
        chosen = str(counts.index[0])
        train = train[train["hardware"] == chosen]
        fitted, _, _ = im.fit_groups(train, "telemetry")
        fits = fitted[fitted["selected"].astype(bool)]
        by_target = {r["target"]: r for r in fits.to_dict("records")}
        if fits.empty:
            reason = fitted["skip_reason"].dropna()
            raise LookupError(
                f"image model {model!r} on {chosen}: no fit ({reason.iloc[0] if len(reason) else 'no rows'})"
            )
        clusters = sorted(train["cluster"].dropna().unique().tolist())
        window = (str(pd.Timestamp(train["day"].min()).date()), str(pd.Timestamp(train["day"].max()).date()))
        others = [str(h) for h in counts.index[1:]]
    out = {}
    for target, names in INTERVAL_COLUMNS.items():
        fit = by_target.get(target)
        if fit is None:
            out.update(dict.fromkeys(names))
            continue
        p = im.predict(fit, request).iloc[0]
        out.update({names[0]: float(p["mean"]), names[1]: float(p["low"]), names[2]: float(p["high"])})
    energy_fit = by_target.get("energy", {})
    return {
        "hardware": chosen,
        **out,
        "source": source,
        "form": energy_fit.get("form"),
        "terms": energy_fit.get("terms"),
        "nobs": int(energy_fit.get("nobs") or 0),
        "fitted_at": str(energy_fit.get("fitted_at")) if energy_fit else None,
        "training_clusters": clusters,
        "training_window": window,
        "other_hardware": others,
        "prediction_status": STATUS_OK if out["predicted_energy_j"] is not None else "no energy fit",
        "energy_definition": ENERGY_DEFINITION,
    }


def regressors_row(request: pd.DataFrame) -> dict[str, float]:
    """The request's regressors (for the JSON output: what the prediction was computed from)."""
    x = im.regressors(request).iloc[0]
    return {t: float(v) for t, v in x.items() if np.isfinite(v)}
