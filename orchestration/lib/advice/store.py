"""Writing the advice tables: a day's rows replace that day's (re-running a day never duplicates it), and
advice.status keeps, per day and part, whether the advice was made, why not, and what it assumed (what
`impact advise` prints)."""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd

from orchestration.lib.warehouse import quote_ident

SCHEMA = "advice"
STATUS_TABLE = "advice.status"
STATUS_COLUMNS: dict[str, str] = {
    "day": "date", "part": "varchar", "status": "varchar", "detail": "varchar", "assumptions": "varchar",
    "updated_at": "timestamp",
}  # fmt: skip
STATUS_OK = "ok"
STATUS_NOT_CONFIGURED = "not configured"
STATUS_FAILED = "failed"
PARTS: tuple[str, ...] = ("routing", "rightsizing", "shifting", "settings")


def _target(table: str) -> str:
    schema, name = table.split(".")
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def ensure_table(con: duckdb.DuckDBPyConnection, table: str, types: dict[str, str]) -> None:
    """Create ``table`` if absent; add the columns a newer version has (a warehouse from before keeps working)."""
    schema, name = table.split(".")
    con.execute(f"create schema if not exists {quote_ident(schema)}")
    ddl = ", ".join(f"{quote_ident(c)} {t}" for c, t in types.items())
    con.execute(f"create table if not exists {_target(table)} ({ddl})")
    have = {r[0] for r in con.execute(
        "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
        [schema, name]).fetchall()}  # fmt: skip
    for c, t in types.items():
        if c not in have:
            con.execute(f"alter table {_target(table)} add column {quote_ident(c)} {t}")


def _select(types: dict[str, str]) -> str:
    """The cast of each frame column to its type; map columns come as two list columns (keys, values)."""
    out = []
    for c, t in types.items():
        q = quote_ident(c)
        if t.startswith("map("):
            out.append(f"map({quote_ident(c + '__k')}, {quote_ident(c + '__v')}) as {q}")
        else:
            out.append(f"cast({q} as {t}) as {q}")
    return ", ".join(out)


def _frame(df: pd.DataFrame, types: dict[str, str]) -> pd.DataFrame:
    frame = df.reindex(columns=list(types)).copy()
    for c, t in types.items():
        if t.startswith("map("):
            values = frame.pop(c)
            frame[c + "__k"] = [list(v) if isinstance(v, dict) else [] for v in values]
            frame[c + "__v"] = [[float(x) for x in v.values()] if isinstance(v, dict) else [] for v in values]
    return frame


def replace_day(con: duckdb.DuckDBPyConnection, table: str, types: dict[str, str], df: pd.DataFrame,
                day: dt.date) -> None:  # fmt: skip
    """Replace ``day``'s rows of ``table`` (column ``day``) with ``df``, in one transaction."""
    ensure_table(con, table, types)
    frame = _frame(df, types)  # noqa: F841 - read by DuckDB's replacement scan
    cols = ", ".join(quote_ident(c) for c in types)
    con.execute("begin transaction")
    try:
        con.execute(f"delete from {_target(table)} where day = $day", {"day": day})
        if len(df):
            con.execute(f"insert into {_target(table)} ({cols}) select {_select(types)} from frame")
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise


def replace_all(con: duckdb.DuckDBPyConnection, table: str, types: dict[str, str], df: pd.DataFrame) -> None:
    """Replace the whole of ``table`` with ``df``."""
    con.execute(f"create schema if not exists {quote_ident(table.split('.')[0])}")
    ddl = ", ".join(f"{quote_ident(c)} {t}" for c, t in types.items())
    con.execute(f"create or replace table {_target(table)} ({ddl})")
    frame = _frame(df, types)  # noqa: F841 - read by DuckDB's replacement scan
    if len(df):
        cols = ", ".join(quote_ident(c) for c in types)
        con.execute(f"insert into {_target(table)} ({cols}) select {_select(types)} from frame")


def set_status(con: duckdb.DuckDBPyConnection, day: dt.date | None, part: str, status: str, detail: str,
               assumptions: str = "") -> None:  # fmt: skip
    """Record the outcome of one part of the advice for ``day`` (None: not per day, e.g. settings)."""
    ensure_table(con, STATUS_TABLE, STATUS_COLUMNS)
    con.execute(
        f"delete from {STATUS_TABLE} where part = $part and day is not distinct from $day", {"part": part, "day": day}
    )
    con.execute(
        f"insert into {STATUS_TABLE} values ($day, $part, $status, $detail, $assumptions, now()::timestamp)",
        {"day": day, "part": part, "status": status, "detail": detail, "assumptions": assumptions},
    )
