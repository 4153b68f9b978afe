"""Invariants as Dagster asset checks (METHODOLOGY section 3): they run after the marts are built."""


import datetime as dt

import dagster as dg

from orchestration.defs.resources import ImpactSettings
from orchestration.lib import invariants
from orchestration.lib.warehouse import fetch_one

CLUSTER_DAILY_KEY = dg.AssetKey(["marts", "fct_cluster_energy_daily"])
REQUEST_ENERGY_KEY = dg.AssetKey(["marts", "fct_request_energy"])

ENERGY_CONSERVATION_CHECK = "energy_conservation"
NO_NEGATIVE_ENERGY_CHECK = "no_negative_energy"
TELEMETRY_COVERAGE_CHECK = "telemetry_coverage"
SINGLE_REQUEST_RULE_CHECK = "single_request_rule"


def _partition_day(context: dg.AssetCheckExecutionContext) -> dt.date | None:
    key = context.run.tags.get("dagster/partition")
    return dt.date.fromisoformat(key) if key else None


def _violations_result(
    context: dg.AssetCheckExecutionContext,
    settings: ImpactSettings,
    query,
    header: tuple[str, ...],
) -> dg.AssetCheckResult:
    """Run an invariants query (returns the offending rows) on the partition's day, read-only; pass when empty."""
    con = settings.open_engine()
    try:
        bad = query(con, _partition_day(context))
    finally:
        con.close()
    return dg.AssetCheckResult(
        passed=not bad,
        metadata={"violations": len(bad), "details": dg.MetadataValue.md(_rows_md(header, bad) if bad else "none")},
    )


def _rows_md(header: tuple[str, ...], rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows[:20]]
    return "\n".join(lines)


@dg.asset_check(asset=CLUSTER_DAILY_KEY, name=ENERGY_CONSERVATION_CHECK, blocking=True)
def energy_conservation(context: dg.AssetCheckExecutionContext, settings: ImpactSettings) -> dg.AssetCheckResult:
    """Per cluster and day, the energy attributed to requests plus the unattributed energy equals the metered IT
    energy to 1e-9 relative (attributed recomputed from the per-request table)."""
    day = _partition_day(context)
    con = settings.open_engine()
    try:
        bad = invariants.conservation_violations(con, day)
        summary = con.execute(
            """
            select cluster, cast(day as string), requests, round(metered_it_energy_j / 3.6e6, 3),
                   round(attributed_energy_j / 3.6e6, 3), round(unattributed_energy_j / 3.6e6, 3),
                   round(telemetry_coverage, 4), attribution_level
            from marts.fct_cluster_energy_daily where """ + ("day = $day" if day else "true") + """
            order by day, cluster
            """,
            {"day": day} if day else None,
        ).fetchall()
    finally:
        con.close()
    return dg.AssetCheckResult(
        passed=not bad,
        metadata={
            "violations": len(bad),
            "partition": str(day or "all"),
            "metered_it_energy_kwh": float(sum(row[3] for row in summary)),
            "summary": dg.MetadataValue.md(
                _rows_md(("cluster", "day", "requests", "metered_kwh", "attributed_kwh", "unattributed_kwh",
                          "coverage", "level"), summary)
            ),
            "details": dg.MetadataValue.md(
                _rows_md(("cluster", "day", "metered_j", "attributed_j", "unattributed_j"), bad) if bad else "none"
            ),
        },
    )


@dg.asset_check(asset=REQUEST_ENERGY_KEY, name=NO_NEGATIVE_ENERGY_CHECK, blocking=True)
def no_negative_energy(context: dg.AssetCheckExecutionContext, settings: ImpactSettings) -> dg.AssetCheckResult:
    """No window or request carries negative energy (counter resets are handled, never subtracted)."""
    return _violations_result(
        context, settings, invariants.negative_energy_rows, ("table", "cluster", "at", "it_energy_j")
    )


@dg.asset_check(asset=REQUEST_ENERGY_KEY, name=SINGLE_REQUEST_RULE_CHECK)
def single_request_rule(context: dg.AssetCheckExecutionContext, settings: ImpactSettings) -> dg.AssetCheckResult:
    """A request alone on the cluster (or, when requests name their GPU/node, alone in its GPU and host pools)
    gets exactly the metered dynamic energy of the windows it touches."""
    day = _partition_day(context)
    con = settings.open_engine()
    try:
        bad, tested = invariants.single_request_rule(con, day)
    finally:
        con.close()
    return dg.AssetCheckResult(
        passed=not bad,
        metadata={"violations": len(bad), "requests_alone_tested": tested, "details": dg.MetadataValue.md(
            _rows_md(("request_id", "day", "window_dynamic_j", "attributed_dynamic_j"), bad) if bad else "none")},
    )


@dg.asset_check(asset=CLUSTER_DAILY_KEY, name=TELEMETRY_COVERAGE_CHECK)
def telemetry_coverage(context: dg.AssetCheckExecutionContext, settings: ImpactSettings) -> dg.AssetCheckResult:
    """Warns when a cluster-day's telemetry covers less than `coverage_warn_below` of its GPU-time or of its
    request-seconds (gaps, late data, a missing exporter): re-run the day when the data arrives."""
    day = _partition_day(context)
    con = settings.open_engine()
    try:
        low = invariants.low_coverage_days(con, settings.coverage_warn_below, day)
        (lowest,) = fetch_one(
            con,
            "select min(telemetry_coverage) from marts.fct_cluster_energy_daily"
            + (" where day = $day" if day else ""),
            {"day": day} if day else {},
        )
    finally:
        con.close()
    return dg.AssetCheckResult(
        passed=not low,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "threshold": settings.coverage_warn_below,
            "lowest_coverage": float(lowest) if lowest is not None else 1.0,
            "cluster_days_below": len(low),
            "details": dg.MetadataValue.md(_rows_md(("cluster", "day", "coverage"), low) if low else "none"),
        },
    )


REQUEST_IMPACT_KEY = dg.AssetKey(["marts", "fct_request_impact"])
CLUSTER_IMPACT_KEY = dg.AssetKey(["marts", "fct_cluster_impact_daily"])
IMPACT_SUMS_CHECK = "impact_totals_add_up"
IMPACT_CONSERVATION_CHECK = "impact_conservation"
IMPACT_FACTOR_COVERAGE_CHECK = "impact_factor_coverage"


@dg.asset_check(asset=REQUEST_IMPACT_KEY, name=IMPACT_SUMS_CHECK, blocking=True)
def impact_totals_add_up(context: dg.AssetCheckExecutionContext, settings: ImpactSettings) -> dg.AssetCheckResult:
    """Every request's totals equal the sum of their parts (carbon, SCI score, water), facility energy is PUE x IT
    energy, nothing is negative, and the low/high bounds bracket the central values."""
    return _violations_result(
        context, settings, invariants.impact_sum_violations, ("request_id", "cluster", "day", "problem")
    )


@dg.asset_check(asset=CLUSTER_IMPACT_KEY, name=IMPACT_CONSERVATION_CHECK, blocking=True)
def impact_conservation(context: dg.AssetCheckExecutionContext, settings: ImpactSettings) -> dg.AssetCheckResult:
    """Operational carbon, embodied carbon and embodied water conserve like energy: per cluster and day, what the
    requests carry plus the unattributed part equals the cluster's total, to 1e-9 relative."""
    return _violations_result(
        context, settings, invariants.impact_conservation_violations,
        ("cluster", "day", "quantity", "total", "attributed", "unattributed"),
    )


@dg.asset_check(asset=REQUEST_IMPACT_KEY, name=IMPACT_FACTOR_COVERAGE_CHECK)
def impact_factor_coverage(context: dg.AssetCheckExecutionContext, settings: ImpactSettings) -> dg.AssetCheckResult:
    """Every request has a grid factor (hourly, or the flagged annual fallback) and energy for all of its time
    (metered, or predicted by an energy model). Warns otherwise; the counts of flagged fallbacks (annual grid
    factor, no market factor, no training factor, predicted energy) are reported either way."""
    day = _partition_day(context)
    con = settings.open_engine()
    try:
        gaps = invariants.impact_factor_gaps(con, day)
    finally:
        con.close()
    return dg.AssetCheckResult(
        passed=gaps["no_grid_factor"] == 0 and gaps["no_energy_for_uncovered_time"] == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={k: dg.MetadataValue.int(v) for k, v in gaps.items()},
    )
