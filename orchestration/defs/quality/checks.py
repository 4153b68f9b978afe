"""Invariants as Dagster asset checks (METHODOLOGY section 3): they run after the marts are built."""


import datetime as dt

import dagster as dg

from orchestration.defs.resources import ImpactSettings
from orchestration.lib import invariants
from orchestration.lib.check_messages import (
    coverage_advice,
    durations_advice,
    factor_gaps_advice,
    invariant_advice,
    power_ceiling_advice,
    telemetry_faults_advice,
    unmatched_requests_advice,
)
from orchestration.lib.ingestion import fault_report
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
    what: str,
) -> dg.AssetCheckResult:
    """Run an invariants query (returns the offending rows) on the partition's day, read-only; pass when empty.
    ``what`` names the offending rows in the one-line advice (e.g. 'request-day(s) whose totals ...')."""
    con = settings.open_engine()
    try:
        bad = query(con, _partition_day(context))
    finally:
        con.close()
    return dg.AssetCheckResult(
        passed=not bad,
        description=invariant_advice(what, bad),
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
        description=invariant_advice(
            "cluster-day(s) where attributed + unattributed energy is not the metered energy", bad
        ),
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
        context, settings, invariants.negative_energy_rows, ("table", "cluster", "at", "it_energy_j"),
        "window(s) or request(s) with negative energy",
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
        description=invariant_advice(
            "request(s) alone in their pool that did not get the metered dynamic energy of their windows", bad
        ),
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
        description=coverage_advice(low, settings.coverage_warn_below),
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
        context, settings, invariants.impact_sum_violations, ("request_id", "cluster", "day", "problem"),
        "request-day(s) whose totals, facility energy or bounds do not add up",
    )


@dg.asset_check(asset=CLUSTER_IMPACT_KEY, name=IMPACT_CONSERVATION_CHECK, blocking=True)
def impact_conservation(context: dg.AssetCheckExecutionContext, settings: ImpactSettings) -> dg.AssetCheckResult:
    """Operational carbon, embodied carbon and embodied water conserve like energy: per cluster and day, what the
    requests carry plus the unattributed part equals the cluster's total, to 1e-9 relative."""
    return _violations_result(
        context, settings, invariants.impact_conservation_violations,
        ("cluster", "day", "quantity", "total", "attributed", "unattributed"),
        "cluster-day quantity(ies) (operational or embodied carbon, embodied water) that do not conserve",
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
        description=factor_gaps_advice(gaps),
        metadata={k: dg.MetadataValue.int(v) for k, v in gaps.items()},
    )


# -------------------------------------------------------------------------------- telemetry and log faults (issue 22)

WINDOW_ENERGY_KEY = dg.AssetKey(["marts", "fct_window_energy"])
POWER_CEILING_CHECK = "power_ceiling"
TELEMETRY_FAULTS_CHECK = "telemetry_faults"
REQUESTS_MATCH_TELEMETRY_CHECK = "requests_match_telemetry"
REQUEST_DURATIONS_CHECK = "request_durations_plausible"


def _read(settings: ImpactSettings, query):
    con = settings.open_engine()
    try:
        return query(con)
    finally:
        con.close()


@dg.asset_check(asset=WINDOW_ENERGY_KEY, name=POWER_CEILING_CHECK, blocking=True)
def power_ceiling(context: dg.AssetCheckExecutionContext, settings: ImpactSettings) -> dg.AssetCheckResult:
    """No stored pool-window holds more energy than its hardware can draw: GPUs at most their maximum power
    (clusters.yml gpu_max_w, else factors.gpu_power) x the margin, hosts at most host_max_w x the margin, over the
    seconds they were present. Telemetry above it is quarantined upstream; a window that still exceeds it fails the
    day (docs/telemetry-faults.md)."""
    con = settings.open_engine()
    try:
        bad = fault_report.power_ceiling_violations(con, _partition_day(context))
    finally:
        con.close()
    header = ("cluster", "day", "component", "pool", "window", "energy_j", "mean_w", "ceiling_w")
    return dg.AssetCheckResult(
        passed=not bad,
        description=power_ceiling_advice(bad),
        metadata={"violations": len(bad), "details": dg.MetadataValue.md(_rows_md(header, bad) if bad else "none")},
    )


@dg.asset_check(asset=CLUSTER_DAILY_KEY, name=TELEMETRY_FAULTS_CHECK)
def telemetry_faults(context: dg.AssetCheckExecutionContext, settings: ImpactSettings) -> dg.AssetCheckResult:
    """Warns when the day's telemetry had samples rejected (counter glitches, stale counters, power above the
    GPU's ceiling), energy quarantined or intervals bridged; duplicate scrapes skipped are reported too. The rows
    are in intermediate.int_telemetry_quarantine."""
    day = _partition_day(context)
    rows = _read(settings, lambda con: fault_report.telemetry_faults(con, None if day is None else [day]))
    header = ("day", "cluster", "rejected_samples", "quarantined_gpu_s", "quarantined_kwh", "bridged", "duplicates")
    flagged = [r for r in rows if r[2] or r[3] or r[5]]
    return dg.AssetCheckResult(
        passed=not flagged,
        severity=dg.AssetCheckSeverity.WARN,
        description=telemetry_faults_advice(flagged),
        metadata={
            "cluster_days_flagged": len(flagged),
            "rejected_samples": int(sum(r[2] for r in rows)),
            "quarantined_kwh": float(sum(r[4] for r in rows)),
            "duplicate_samples": int(sum(r[6] for r in rows)),
            "details": dg.MetadataValue.md(_rows_md(header, rows) if rows else "none"),
        },
    )


@dg.asset_check(asset=REQUEST_ENERGY_KEY, name=REQUESTS_MATCH_TELEMETRY_CHECK)
def requests_match_telemetry(
    context: dg.AssetCheckExecutionContext, settings: ImpactSettings
) -> dg.AssetCheckResult:
    """Warns when requests name a node or GPU that sent no telemetry that day (after normalising names): they are
    attributed at the next level up (their node's GPUs, else the cluster) and listed here by name."""
    day = _partition_day(context)
    rows = _read(settings, lambda con: fault_report.unmatched_requests(con, None if day is None else [day]))
    return dg.AssetCheckResult(
        passed=not rows,
        severity=dg.AssetCheckSeverity.WARN,
        description=unmatched_requests_advice(rows),
        metadata={
            "names_unmatched": len(rows),
            "requests_attributed_higher": int(sum(r[5] for r in rows)),
            "details": dg.MetadataValue.md(
                _rows_md(("day", "cluster", "node", "gpu", "attributed at", "requests"), rows) if rows else "none"
            ),
        },
    )


@dg.asset_check(asset=CLUSTER_DAILY_KEY, name=REQUEST_DURATIONS_CHECK)
def request_durations_plausible(
    context: dg.AssetCheckExecutionContext, settings: ImpactSettings
) -> dg.AssetCheckResult:
    """Warns when request durations look like the wrong unit: a median above 2 s per output token, or more than 80 %
    of the request-seconds on GPUs that drew no dynamic power at the time (duration_s in milliseconds?)."""
    day = _partition_day(context)
    findings = _read(settings, lambda con: fault_report.duration_findings(con, None if day is None else [day]))
    return dg.AssetCheckResult(
        passed=not findings,
        severity=dg.AssetCheckSeverity.WARN,
        description=durations_advice(findings),
        metadata={"findings": dg.MetadataValue.md("\n".join(f"- {f}" for f in findings) or "none")},
    )
