"""The Parquet parts of the warehouse: the day files of the models materialised as `parquet_partition`
(dbt_project/macros/materializations/parquet_partition.sql).

Each such relation is a view over the current file of every day, listed in `storage.parquet_parts`. The files are
immutable and shared by the working warehouse and every published version of it (publish.py): a file is deleted
only when no current relation and no recently published version names it (collect_garbage).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import duckdb

from orchestration.lib.warehouse import fetch_one, has_table, quote_ident

PARTS_TABLE = "storage.parquet_parts"
PARTS_DDL = (  # as the dbt materialization creates it
    "create schema if not exists storage",
    """
    create table if not exists storage.parquet_parts (
        relation varchar not null,
        day date not null,
        path varchar not null,
        row_count bigint not null,
        written_at timestamp not null,
        invocation_id varchar not null
    )
    """,
)
PARTS_SUFFIX = ".parts"


def parts_root(warehouse: Path) -> Path:
    """The folder of the warehouse's Parquet parts (the dbt materialization derives it the same way)."""
    return Path(str(warehouse) + PARTS_SUFFIX)


def sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def current_parts(con: duckdb.DuckDBPyConnection) -> list[tuple[str, dt.date, str, int]]:
    """(relation, day, path, rows) of every current part, by relation and day."""
    if not has_table(con, PARTS_TABLE):
        return []
    return con.execute(
        f"select relation, day, path, row_count from {PARTS_TABLE} order by relation, day, path"
    ).fetchall()


def parquet_relations(con: duckdb.DuckDBPyConnection) -> set[str]:
    """'schema.table' of the relations stored as Parquet parts."""
    return {relation for relation, *_ in current_parts(con)}


# ------------------------------------------------------------------------------------------------ the views' SQL


def _scan(sql: str, start: int) -> int:
    """The index just past the parenthesised expression whose '(' is at `start` (quotes respected)."""
    depth, i = 0, start
    while i < len(sql):
        ch = sql[i]
        if ch in ("'", '"'):
            end = i + 1
            while end < len(sql):
                if sql[end] == ch and sql[end + 1 : end + 2] == ch:
                    end += 2
                    continue
                if sql[end] == ch:
                    break
                end += 1
            i = end + 1
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError("unbalanced parentheses in a view's SQL")


def _parquet_call(sql: str) -> tuple[int, int, int, int] | None:
    """(start, end) of the read_parquet(...) call in a parts view's SQL and (start, end) of its first argument."""
    lower = sql.lower()
    start = lower.find("read_parquet(")
    if start < 0:
        return None
    open_paren = start + len("read_parquet")
    end = _scan(sql, open_paren)
    first = open_paren + 1
    while sql[first].isspace():
        first += 1
    if lower.startswith("list_value(", first):
        first_end = _scan(sql, first + len("list_value"))
    elif sql[first] == "[":
        depth, first_end = 0, first
        for first_end in range(first, end):
            depth += {"[": 1, "]": -1}.get(sql[first_end], 0)
            if depth == 0:
                break
        first_end += 1
    else:
        raise ValueError("a parts view's read_parquet() does not start with its list of files")
    return start, end, first, first_end


def view_sql(con: duckdb.DuckDBPyConnection, relation: str) -> str:
    schema, name = relation.split(".")
    row = fetch_one(
        con, "select sql from duckdb_views() where schema_name = ? and view_name = ? and not internal", [schema, name]
    )
    if row is None:
        raise LookupError(f"{relation} is not a view")
    return row[0]


def rewrite_parts_view(con: duckdb.DuckDBPyConnection, relation: str, paths: list[str]) -> None:
    """Point the view of a parts relation at `paths` (its derived columns unchanged); with no path left, at no rows
    of the same columns."""
    sql = view_sql(con, relation)
    call = _parquet_call(sql)
    if call is None:
        if paths:
            raise ValueError(f"{relation} reads no Parquet files: its view cannot be given some (re-run dbt)")
        return
    start, end, first, first_end = call
    if paths:
        new = sql[:first] + "[" + ", ".join(sql_string(p) for p in paths) + "]" + sql[first_end:]
    else:
        columns = con.execute(f"describe select * from {sql[start:end]}").fetchall()
        empty = ", ".join(f"cast(null as {kind}) as {quote_ident(name)}" for name, kind, *_ in columns)
        new = sql[:start] + f"(select {empty} where false)" + sql[end:]
    if not new.lstrip().upper().startswith("CREATE VIEW"):
        raise ValueError(f"unexpected SQL for the view {relation}")
    new = "create or replace view" + new.lstrip()[len("CREATE VIEW") :]
    con.execute(new)


# ------------------------------------------------------------------------------------------------ garbage


@dataclass
class Garbage:
    files: int = 0
    bytes: int = 0
    folders: int = 0


def collect_garbage(root: Path, keep: set[str], dry_run: bool = False) -> Garbage:
    """Delete the Parquet files under `root` that `keep` does not name (files no current relation and no recent
    publication names: replaced days, retired days, files of a run killed before it registered them), then the
    folders left empty."""
    out = Garbage()
    if not root.is_dir():
        return out
    for path in sorted(root.rglob("*.parquet")):
        if str(path) in keep:
            continue
        out.files += 1
        try:
            out.bytes += path.stat().st_size
            if not dry_run:
                path.unlink()
        except FileNotFoundError:
            continue
    if not dry_run:
        for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            try:
                folder.rmdir()  # only when empty
                out.folders += 1
            except OSError:
                continue
    return out


def fsync_path(path: Path) -> None:
    """Flush a file's (or a folder's entries') data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def utc_naive(now: dt.datetime | None) -> dt.datetime:
    """`now` (default: the current time) in UTC without a zone, as the warehouse stores times; a naive `now` is
    taken as UTC."""
    now = now or dt.datetime.now(dt.UTC)
    return now.astimezone(dt.UTC).replace(tzinfo=None) if now.tzinfo else now
