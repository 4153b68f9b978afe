"""advice.summary: the savings of the trailing window (the days of advice up to the latest), per part and scope,
added up from the daily advice tables (each day as its own counterfactual: the window's figures are sums of
days, not a plan for the window)."""

from __future__ import annotations

import duckdb
import pandas as pd

from orchestration.lib.warehouse import has_table

TRAILING_DAYS = 28
COLUMNS: dict[str, str] = {
    "window_start": "date", "window_end": "date", "part": "varchar", "scope": "varchar", "days": "bigint",
    "baseline_kwh": "double", "saving_kwh": "double", "baseline_kg_co2e": "double",
    "saving_operational_kg_co2e": "double", "saving_embodied_kg_co2e": "double", "basis": "varchar",
}  # fmt: skip

PARTS_SQL: dict[str, tuple[str, str]] = {
    # part: (table, the select over its window rows, grouped by scope)
    "routing": (
        "advice.routing_frontier",
        """
        select 'routing' as part, 'all re-routable requests' as scope, count(distinct day) as days,
               sum(actual_modelled_kwh) as baseline_kwh, sum(saving_kwh) as saving_kwh,
               sum(actual_modelled_operational_kg_co2e) as baseline_kg_co2e,
               sum(saving_kg_co2e) as saving_operational_kg_co2e, 0.0 as saving_embodied_kg_co2e,
               'plan at the configured zeta against the day as it ran, both on the fitted models ('
               || string_agg(distinct cast(zeta as varchar), ', ') || ')' as basis
        from advice.routing_frontier where is_plan and day between $first and $last
        """,
    ),
    "rightsizing": (
        "advice.rightsizing_daily",
        """
        select 'rightsizing' as part, cluster as scope, count(*) as days, sum(metered_it_energy_kwh) as baseline_kwh,
               sum(avoidable_energy_kwh) as saving_kwh, sum(operational_kg_co2e) as baseline_kg_co2e,
               sum(avoidable_operational_kg_co2e) as saving_operational_kg_co2e,
               sum(avoidable_embodied_kg_co2e) as saving_embodied_kg_co2e,
               'idle energy of the hardware present beyond what the hour''s peak load needed (baseline: metered IT '
               || 'energy and its operational carbon)' as basis
        from advice.rightsizing_daily where day between $first and $last group by cluster
        """,
    ),
    "shifting": (
        "advice.shifting_daily",
        """
        select 'shifting' as part, cluster as scope, count(*) as days, sum(facility_energy_kwh) as baseline_kwh,
               0.0 as saving_kwh, sum(actual_kg_co2e) as baseline_kg_co2e,
               sum(saving_kg_co2e) as saving_operational_kg_co2e, 0.0 as saving_embodied_kg_co2e,
               'deferrable requests at the cleanest hour within ' || string_agg(distinct cast(max_delay_h as varchar),
               ', ') || ' h (baseline: their measured operational carbon)' as basis
        from advice.shifting_daily where day between $first and $last group by cluster
        """,
    ),
}


def window(con: duckdb.DuckDBPyConnection, days: int = TRAILING_DAYS) -> tuple | None:
    """(first, last) day of the trailing window: the ``days`` days ending on the latest day with advice."""
    if not has_table(con, "advice.status"):
        return None
    (last,) = con.execute("select max(day) from advice.status where status = 'ok'").fetchone()
    if last is None:
        return None
    (first,) = con.execute("select cast($last as date) - $n", {"last": last, "n": days - 1}).fetchone()
    return first, last


def build(con: duckdb.DuckDBPyConnection, days: int = TRAILING_DAYS) -> pd.DataFrame:
    """The summary rows of the trailing window (none when there is no advice yet)."""
    span = window(con, days)
    if span is None:
        return pd.DataFrame(columns=list(COLUMNS))
    first, last = span
    parts = [
        con.execute(sql, {"first": first, "last": last}).df()
        for table, sql in PARTS_SQL.values()
        if has_table(con, table)
    ]
    rows = pd.concat([p for p in parts if len(p) and p["days"].sum() > 0], ignore_index=True) if parts else None
    if rows is None or rows.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    rows.insert(0, "window_end", last)
    rows.insert(0, "window_start", first)
    return rows.reindex(columns=list(COLUMNS))
