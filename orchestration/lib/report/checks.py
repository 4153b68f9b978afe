"""The day's checks for the report: the warehouse does not store dbt's test results, so the report runs the
invariant queries of lib/invariants.py on the day itself (the same queries the Dagster asset checks run), and adds
the day's telemetry coverage, factor coverage, the latest energy models' fit quality and the rejected input rows.
Each row that does not pass carries the one-line explanation of lib/check_messages.py.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb
import pandas as pd

from orchestration.lib import invariants
from orchestration.lib.check_messages import (
    coverage_advice,
    factor_gaps_advice,
    fit_quality_advice,
    invariant_advice,
)
from orchestration.lib.energy_models import quality_offenders

# the defaults of the `settings` resource (orchestration/defs/resources.py); the asset passes its own values
COVERAGE_WARN_BELOW = 0.95
FIT_MIN_R2 = 0.9
FIT_MAX_CV_MAPE = 0.25

PASSED, WARNING, FAILED = "passed", "warning", "failed"


@dataclass(frozen=True)
class CheckRow:
    name: str  # the Dagster asset check's name where there is one
    checks: str  # what it checks
    status: str  # passed | warning | failed
    result: str  # the figure it found
    advice: str | None = None  # what it means and what to do, when it did not pass


def day_checks(
    con: duckdb.DuckDBPyConnection,
    day: dt.date,
    fits: pd.DataFrame,
    coverage_warn_below: float = COVERAGE_WARN_BELOW,
    fit_min_r2: float = FIT_MIN_R2,
    fit_max_cv_mape: float = FIT_MAX_CV_MAPE,
) -> list[CheckRow]:
    rows = []
    for name, checks, query, what in (
        ("energy_conservation", "attributed + unattributed energy = metered energy, per cluster (to 1e-9)",
         invariants.conservation_violations,
         "cluster-day(s) where attributed + unattributed energy is not the metered energy"),
        ("no_negative_energy", "no window or request carries negative energy", invariants.negative_energy_rows,
         "window(s) or request(s) with negative energy"),
        ("impact_totals_add_up", "totals = sum of parts, facility = PUE x IT, bounds bracket (to 1e-9)",
         invariants.impact_sum_violations, "request-day(s) whose totals, facility energy or bounds do not add up"),
        ("impact_conservation", "operational and embodied carbon and embodied water conserve per cluster",
         invariants.impact_conservation_violations,
         "cluster-day quantity(ies) (operational or embodied carbon, embodied water) that do not conserve"),
    ):  # fmt: skip
        bad = query(con, day)
        rows.append(CheckRow(name, checks, FAILED if bad else PASSED, f"{len(bad)} violation(s)",
                             invariant_advice(what, bad)))  # fmt: skip

    bad, tested = invariants.single_request_rule(con, day)
    rows.append(CheckRow(
        "single_request_rule", "a request alone in its pool gets exactly the metered dynamic energy",
        FAILED if bad else PASSED, f"{len(bad)} violation(s) among {tested:,} lone request-day(s)",
        invariant_advice("request(s) alone in their pool that did not get the metered dynamic energy of their "
                         "windows", bad),
    ))  # fmt: skip

    low = invariants.low_coverage_days(con, coverage_warn_below, day)
    (lowest,) = con.execute(
        "select min(telemetry_coverage) from marts.fct_cluster_energy_daily where day = $day", {"day": day}
    ).fetchone()
    rows.append(CheckRow(
        "telemetry_coverage", f"telemetry covers at least {coverage_warn_below:.0%} of each cluster's GPU time",
        WARNING if low else PASSED, f"lowest coverage {float(lowest if lowest is not None else 1.0):.1%}",
        coverage_advice(low, coverage_warn_below),
    ))  # fmt: skip

    gaps = invariants.impact_factor_gaps(con, day)
    flagged = ", ".join(
        f"{gaps[k]:,} {label}"
        for k, label in (("annual_grid_fallback", "on the annual grid factor"),
                         ("no_market_factor", "without a market-based factor"),
                         ("no_training_factor", "without a training factor"),
                         ("predicted_energy", "with predicted energy"))
        if gaps[k]
    )
    missing = gaps["no_grid_factor"] + gaps["no_energy_for_uncovered_time"]
    rows.append(CheckRow(
        "impact_factor_coverage", "every request has a grid factor and energy for all of its time",
        WARNING if missing else PASSED,
        f"{gaps['requests']:,} requests" + (f"; flagged: {flagged}" if flagged else "; none on a fallback"),
        factor_gaps_advice(gaps),
    ))  # fmt: skip

    if fits.empty:
        rows.append(CheckRow("fit_quality", "the latest energy models explain energy well", WARNING,
                             "no energy model fitted yet", "the models job fits them (impact run runs it)"))  # fmt: skip
    else:
        bad_fits = quality_offenders(fits.assign(target="energy"), fit_min_r2, fit_max_cv_mape)
        rows.append(CheckRow(
            "fit_quality",
            f"latest energy fits: uncentred R² >= {fit_min_r2:.2f} and CV MAPE <= {fit_max_cv_mape:.0%}",
            WARNING if len(bad_fits) else PASSED,
            f"{len(bad_fits)} of {len(fits)} fit(s) below; lowest R² {fits['r_squared_uncentered'].min():.2f}",
            fit_quality_advice(bad_fits, fit_min_r2, fit_max_cv_mape),
        ))  # fmt: skip
    return rows
