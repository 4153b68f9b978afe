"""Per-day parts: how the assets that read a trailing window of requests avoid re-reading it on every run.

Pure library code (DuckDB in; no Dagster). An asset of the daily job reduces the requests that started on its
day to a small table of "parts"; the window's figure is then computed from the parts of the window's days, so
its cost does not grow with the warehouse's history. Two rules make the parts exact:

- A request that ran within one day (days_spanned = 1) is final once its day is materialised. One that ran past
  midnight is completed by each later day it ran in, so the reduction of a day also recomputes the parts of the
  requests that ran past midnight and started in the days before (a few requests; ``look_back``).
- Re-materialising a day replaces its parts (delete, then insert, in one transaction).

A window day with requests but no final parts (a warehouse from before the parts, or a day materialised
without the reducing asset) is reduced on the spot by the window's reader (``reduce_missing``).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Sequence

import duckdb

from orchestration.lib import engines, warehouse

# The requests a reduction covers (alias r): those that ran within one day and started in [$first, $last], and
# those that ran past midnight and started in [$span_first, $last]; $lo = least($first, $span_first).
DAYS_SQL = (
    "r.day between $lo and $last and ((r.days_spanned = 1 and r.day >= $first) "
    "or (r.days_spanned > 1 and r.day >= $span_first))"
)
# the parts of those requests (every parts table has the columns day and spanning)
DELETE_SQL = (
    "delete from {target} where day between $lo and $last and ((not spanning and day >= $first) "
    "or (spanning and day >= $span_first))"
)


def params(first: dt.date, last: dt.date, span_first: dt.date | None = None) -> dict[str, dt.date]:
    """The query parameters of DAYS_SQL and DELETE_SQL (span_first defaults to first)."""
    span_first = first if span_first is None else span_first
    return {"first": first, "last": last, "span_first": span_first, "lo": min(first, span_first)}


def look_back(day: dt.date, max_request_duration_s: float) -> dt.date:
    """The earliest start day of a request of at most max_request_duration_s that ran into ``day``."""
    return day - dt.timedelta(days=max(1, math.ceil(max_request_duration_s / 86400.0)))


def bind(sql: str, values: dict[str, object]) -> dict[str, object]:
    """The named parameters of ``values`` that ``sql`` uses (DuckDB refuses unused ones)."""
    used = set(re.findall(r"\$(\w+)", sql))
    return {k: v for k, v in values.items() if k in used}


def replace(
    con: duckdb.DuckDBPyConnection, parts: Sequence[tuple[str, str]], values: dict[str, dt.date]
) -> list[int]:
    """For each (table, select) of ``parts``, in one transaction: create the table from the select's columns if
    it does not exist, delete the parts DELETE_SQL selects, insert the select's rows. Returns the rows written."""
    con.execute("begin transaction")
    try:
        written = []
        for target, sql in parts:
            con.execute(f"create schema if not exists {target.split('.')[0]}")
            con.execute(f"create table if not exists {target} as select * from ({sql}) limit 0", bind(sql, values))
            con.execute(DELETE_SQL.format(target=target), values)
            (n,) = warehouse.fetch_one(con, f"insert into {target} by name {sql}", bind(sql, values))
            written.append(int(n))
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return written


def missing_days(
    con: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date, days_table: str, parts_table: str
) -> list[dt.date]:
    """The start days in [start, end] with requests in ``days_table`` but no final parts in ``parts_table`` (a
    day all of whose requests ran past midnight is found again each time: a few requests)."""
    done = (
        f"except select distinct day from {parts_table} where day between $start and $end and not spanning"
        if engines.has_table(con, parts_table)
        else ""
    )
    rows = con.execute(
        f"select distinct day from {days_table} where day between $start and $end {done} order by 1",
        {"start": start, "end": end},
    ).fetchall()
    return [r[0] for r in rows]


def reduce_missing(
    con: duckdb.DuckDBPyConnection,
    start: dt.date,
    end: dt.date,
    days_table: str,
    parts_table: str,
    reduce: Callable[[dt.date, dt.date], object],
) -> list[dt.date]:
    """Call ``reduce(first, last)`` for each run of consecutive days of missing_days (one scan a run); returns
    those days."""
    missing = missing_days(con, start, end, days_table, parts_table)
    runs: list[list[dt.date]] = []
    for day in missing:  # a loop over days
        if runs and day - runs[-1][1] == dt.timedelta(days=1):
            runs[-1][1] = day
        else:
            runs.append([day, day])
    for first, last in runs:
        reduce(first, last)
    return missing
