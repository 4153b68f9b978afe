"""Checks on the advice: what must hold whatever the configuration (docs/advice.md)."""

import datetime as dt

import dagster as dg
import pandas as pd

from orchestration.defs.advice.assets import (
    RIGHTSIZING_HOURLY_KEY,
    ROUTING_FRONTIER_KEY,
    SHIFTING_DAILY_KEY,
    TABLES,
)
from orchestration.defs.resources import ImpactSettings
from orchestration.lib.advice import rightsizing
from orchestration.lib.check_messages import advice_invariant_advice
from orchestration.lib.warehouse import connect, has_table

FRONTIER_CHECK = "routing_frontier_consistent"
RIGHTSIZING_CHECK = "avoidable_within_idle"
SHIFTING_CHECK = "shifting_never_negative"
TOLERANCE = 1e-9


def _day_rows(context: dg.AssetCheckExecutionContext, settings: ImpactSettings, key: dg.AssetKey) -> pd.DataFrame:
    """The rows of the run's partition day in the asset's table (all days outside a partitioned run)."""
    table, _ = TABLES[key]
    tag = context.run.tags.get("dagster/partition")
    con = connect(settings.warehouse_path, read_only=True)
    try:
        if not has_table(con, table):
            return pd.DataFrame()
        return con.execute(
            f"select * from {table} where $day is null or day = $day",
            {"day": dt.date.fromisoformat(tag) if tag else None},
        ).df()
    finally:
        con.close()


def _result(problems: list[str], rows: int) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=not problems,
        description=advice_invariant_advice(problems),
        metadata={"rows_checked": rows, "violations": len(problems),
                  "details": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems[:20]) or "none")},
    )  # fmt: skip


def frontier_problems(frontier: pd.DataFrame) -> list[str]:
    """Per day: the shares of each zeta add up to 1; energy and accuracy never rise as zeta (the weight on energy)
    rises, as an exact optimum of the weighted objective guarantees; exactly one plan row."""
    problems = []
    for day, f in frontier.groupby("day"):  # a few days, 11 rows each
        f = f.sort_values("zeta")
        sums = f["shares"].map(lambda s: sum(s.values()) if isinstance(s, dict) else sum(v for _, v in s))
        problems += [f"{day} zeta {z:g}: shares add up to {s:.12g}" for z, s in zip(f["zeta"], sums)
                     if abs(s - 1) > 1e-9]  # fmt: skip
        for column in ("energy_kwh", "accuracy"):
            values = f[column].to_numpy(float)
            rises = values[1:] > values[:-1] * (1 + TOLERANCE) + TOLERANCE
            problems += [f"{day}: {column} rises from zeta {a:g} to {b:g}"
                         for a, b in zip(f["zeta"].iloc[:-1][rises], f["zeta"].iloc[1:][rises])]  # fmt: skip
        if int(f["is_plan"].sum()) != 1:
            problems.append(f"{day}: {int(f['is_plan'].sum())} plan rows, not 1")
    return problems


@dg.asset_check(asset=ROUTING_FRONTIER_KEY, name=FRONTIER_CHECK)
def routing_frontier_consistent(
    context: dg.AssetCheckExecutionContext, settings: ImpactSettings
) -> dg.AssetCheckResult:
    """The day's routing frontier: shares add up to 1 at every zeta, energy and accuracy never rise with zeta
    (exact optima of the weighted objective), one plan row."""
    frontier = _day_rows(context, settings, ROUTING_FRONTIER_KEY)
    return _result(frontier_problems(frontier) if len(frontier) else [], len(frontier))


@dg.asset_check(asset=RIGHTSIZING_HOURLY_KEY, name=RIGHTSIZING_CHECK)
def avoidable_within_idle(context: dg.AssetCheckExecutionContext, settings: ImpactSettings) -> dg.AssetCheckResult:
    """Per cluster-hour: the avoidable energy lies between 0 and the hour's measured idle energy, and the GPU-hours
    avoided within those present."""
    hours = _day_rows(context, settings, RIGHTSIZING_HOURLY_KEY)
    return _result(rightsizing.check_hours(hours) if len(hours) else [], len(hours))


@dg.asset_check(asset=SHIFTING_DAILY_KEY, name=SHIFTING_CHECK)
def shifting_never_negative(context: dg.AssetCheckExecutionContext, settings: ImpactSettings) -> dg.AssetCheckResult:
    """A deferrable request only moves to a cleaner hour: per cluster-day, shifted carbon <= actual, saving >= 0."""
    daily = _day_rows(context, settings, SHIFTING_DAILY_KEY)
    bad = daily[(daily["saving_kg_co2e"] < -TOLERANCE) | (daily["shifted_kg_co2e"] > daily["actual_kg_co2e"] + TOLERANCE)
                ] if len(daily) else daily  # fmt: skip
    return _result([f"{r.day} {r.cluster}: actual {r.actual_kg_co2e:.6g} kg, shifted {r.shifted_kg_co2e:.6g} kg"
                    for r in bad.itertuples(index=False)], len(daily))  # fmt: skip
