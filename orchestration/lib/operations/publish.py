"""Publishing the warehouse for analysts.

A run writes the working warehouse (`--warehouse`, IMPACT_WAREHOUSE): DuckDB lets one process write a file, and a
reader holding it open would block that writer. So analysts open another file, the published warehouse
(`<warehouse stem>.analysts.duckdb` beside it, or IMPACT_PUBLISHED_WAREHOUSE), which no run ever opens:

* When a run has materialised its day (or the models, or retention has retired days), publish() builds a new
  published file under a temporary name and renames it over the old one. The rename is atomic: a new connection
  opens the new version; a connection already open keeps reading the version it opened (its file stays readable
  until it is closed), so an analyst never sees half a day.
* The published file is a small DuckDB catalogue: the tables analysts query that are small (daily aggregates,
  factors, models) are copied into it; the per-request and per-window marts are views over the same immutable
  Parquet day files the working warehouse uses (parts.py), so publishing copies no per-request row.
* Each publication is recorded in the working warehouse (storage.publications). A day file that no current relation
  names any more (a replaced or retired day) is kept while a publication superseded less than `keep_hours` ago
  names it, then deleted: a reader that keeps one version open longer than that loses the replaced days' files.

What is published: every schema but raw, staging, intermediate and storage (marts, models, factors, and any added
later), raw.rejected_rows and raw.clusters, and whatever the published views read, except the per-day parts the
models job adds up (NOT_PUBLISHED: not for analysts, and as large as a sample of every day's requests). A view that
reads an unpublished table is left out and named in the report.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from orchestration.lib.operations import parts
from orchestration.lib.warehouse import connect, fetch_one, has_table, quote_ident

PUBLISHED_ENV = "IMPACT_PUBLISHED_WAREHOUSE"
KEEP_HOURS_ENV = "IMPACT_PUBLISH_KEEP_HOURS"
DEFAULT_KEEP_HOURS = 24.0
PUBLISHED_SUFFIX = ".analysts.duckdb"
# tables at least this large are published as Parquet snapshots shared between publications (see _snapshot)
SNAPSHOT_MIN_ROWS = 50_000
SNAPSHOTS = "published"  # their folder under the parts folder

# schemas published only in part (the relations below and what the published views read)
INTERNAL_SCHEMAS = ("raw", "staging", "intermediate", "storage", "main")
ALWAYS_PUBLISHED = ("raw.rejected_rows", "raw.clusters")
# per-day parts of the models job's trailing windows: internal, and growing with every day's requests
NOT_PUBLISHED = ("models.fit_sample_days", "marts.cmp_ecologits_day_combos", "marts.cmp_ecologits_day_bins")

PUBLICATIONS_DDL = (
    "create schema if not exists storage",
    """
    create table if not exists storage.publications (
        version varchar primary key,
        path varchar not null,
        published_at timestamp not null,
        superseded_at timestamp
    )
    """,
    """
    create table if not exists storage.publication_parts (
        version varchar not null,
        path varchar not null
    )
    """,
)


def published_path(warehouse: Path) -> Path:
    """What analysts open: IMPACT_PUBLISHED_WAREHOUSE, else `<warehouse stem>.analysts.duckdb` beside it."""
    override = os.environ.get(PUBLISHED_ENV)
    if override:
        return Path(override).expanduser().resolve()
    warehouse = Path(warehouse)
    stem = warehouse.stem if warehouse.suffix == ".duckdb" else warehouse.name
    return warehouse.with_name(stem + PUBLISHED_SUFFIX)


def keep_hours_from_env() -> float:
    raw = os.environ.get(KEEP_HOURS_ENV, "").strip()
    try:
        hours = float(raw) if raw else DEFAULT_KEEP_HOURS
    except ValueError:
        raise ValueError(f"{KEEP_HOURS_ENV} must be a number of hours, not {raw!r}") from None
    if hours < 0:
        raise ValueError(f"{KEEP_HOURS_ENV} must not be negative, not {raw!r}")
    return hours


@dataclass
class Publication:
    """What a publication did (the asset's metadata and the CLI's line)."""

    path: Path
    version: str
    seconds: float
    tables: dict[str, int] = field(default_factory=dict)  # copied: name -> rows
    views: list[str] = field(default_factory=list)
    parquet_relations: dict[str, int] = field(default_factory=dict)  # shared, not copied: name -> Parquet files
    left_out: dict[str, str] = field(default_factory=dict)  # view -> why it was not published
    catalogue_bytes: int = 0
    garbage: parts.Garbage = field(default_factory=parts.Garbage)

    def summary(self) -> str:
        rows = sum(self.tables.values())
        files = sum(self.parquet_relations.values())
        return (
            f"{self.path} ({len(self.tables)} tables, {rows:,} rows copied; {len(self.views)} views; "
            f"{files} Parquet files shared; {self.catalogue_bytes / 1e6:.1f} MB; {self.seconds:.1f} s)"
        )


@dataclass(frozen=True)
class _Relation:
    name: str  # schema.table
    kind: str  # table | view
    sql: str | None = None


def _relations(con: duckdb.DuckDBPyConnection, database: str) -> dict[str, _Relation]:
    out = {
        f"{s}.{t}": _Relation(f"{s}.{t}", "table")
        for s, t in con.execute(
            "select schema_name, table_name from duckdb_tables() where database_name = ? and not temporary",
            [database],
        ).fetchall()
    }
    for s, v, sql in con.execute(
        "select schema_name, view_name, sql from duckdb_views() "
        "where database_name = ? and not internal and not temporary",
        [database],
    ).fetchall():
        out[f"{s}.{v}"] = _Relation(f"{s}.{v}", "view", sql)
    return out


QUALIFIED_NAME = re.compile(r'(?<![\w."])"?(\w+)"?\s*\.\s*"?(\w+)"?(?![\w"])')


def _references(sql: str, names: set[str]) -> set[str]:
    """The relations of `names` a view's SQL reads (schema.table, quoted or not)."""
    lowered = {name.lower(): name for name in names}
    found = {f"{schema}.{table}".lower() for schema, table in QUALIFIED_NAME.findall(sql)}
    return {lowered[name] for name in found if name in lowered}


def select_published(relations: dict[str, _Relation]) -> tuple[list[str], list[str], dict[str, str]]:
    """(tables to copy, views to create in dependency order, views left out with the reason)."""
    names = set(relations)
    wanted = {
        n for n in names if n.split(".")[0] not in INTERNAL_SCHEMAS and n not in NOT_PUBLISHED
    } | (set(ALWAYS_PUBLISHED) & names)
    reads = {n: _references(r.sql, names - {n}) for n, r in relations.items() if r.kind == "view"}
    left_out: dict[str, str] = {}
    changed = True
    while changed:  # add what the published views read; leave out a view that reads an unpublished table
        changed = False
        for n in sorted(wanted):
            if relations[n].kind != "view":
                continue
            blocked = sorted((reads[n] & set(NOT_PUBLISHED)) | (reads[n] & set(left_out)))
            if blocked:
                wanted.discard(n)
                left_out[n] = "reads " + ", ".join(blocked) + " (not published)"
                changed = True
                continue
            missing = reads[n] - wanted
            if missing:
                wanted |= missing
                changed = True
    tables = sorted(n for n in wanted if relations[n].kind == "table")
    views, done = [], set(tables)
    pending = sorted(n for n in wanted if relations[n].kind == "view")
    while pending:
        ready = [n for n in pending if reads[n] <= done | (names - wanted)]
        if not ready:  # a cycle cannot happen in DuckDB; keep the rest in name order
            ready = pending[:1]
        for n in ready:
            views.append(n)
            done.add(n)
            pending.remove(n)
    return tables, views, left_out


def publish(
    warehouse: Path,
    target: Path | None = None,
    keep_hours: float | None = None,
    now: dt.datetime | None = None,
) -> Publication:
    """Publish the working warehouse for analysts (the caller holds the run lock): build the published catalogue
    under a temporary name, rename it over `target` (default published_path(warehouse)), record the publication,
    and delete the day files that neither the working warehouse nor a publication superseded less than
    `keep_hours` ago (default IMPACT_PUBLISH_KEEP_HOURS, 24) names."""
    began = time.monotonic()
    warehouse = Path(warehouse).resolve()
    target = Path(target).resolve() if target else published_path(warehouse)
    keep_hours = keep_hours_from_env() if keep_hours is None else keep_hours
    now = parts.utc_naive(now)
    version = now.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{version}.tmp")
    con = connect(warehouse)
    try:
        (working,) = fetch_one(con, "select current_database()")
        relations = _relations(con, working)
        tables, views, left_out = select_published(relations)
        report = Publication(path=target, version=version, seconds=0.0, left_out=left_out)
        con.execute(f"attach {parts.sql_string(str(tmp))} as published")
        for schema in sorted({n.split(".")[0] for n in tables + views}):
            con.execute(f"create schema if not exists published.{quote_ident(schema)}")
        snapshots = []
        for name in tables:
            schema, table = (quote_ident(x) for x in name.split("."))
            (rows,) = fetch_one(con, f"select count(*) from {schema}.{table}")
            if rows >= SNAPSHOT_MIN_ROWS:  # shared as a Parquet file, written only when its content changed
                path = _snapshot(con, warehouse, name)
                snapshots.append(path)
                con.execute(f"create view published.{schema}.{table} as select * from read_parquet("
                            f"{parts.sql_string(path)})")
                report.parquet_relations[name] = 1
            else:
                con.execute(f"create table published.{schema}.{table} as select * from {schema}.{table}")
                report.tables[name] = rows
        con.execute("create schema if not exists published.published")
        con.execute(
            "create table published.published.publication as select ? as version, ? as published_at, "
            "? as source_warehouse",
            [version, now, str(warehouse)],
        )
        con.execute("use published")
        for name in views:
            con.execute(relations[name].sql)
        report.views = views
        con.execute(f"use {quote_ident(working)}")
        con.execute("checkpoint published")
        con.execute("detach published")
        parts.fsync_path(tmp)
        os.replace(tmp, target)
        parts.fsync_path(target.parent)
        report.catalogue_bytes = target.stat().st_size

        referenced = {path for *_, path, _ in parts.current_parts(con) if _relation_published(path, views)}
        referenced |= set(snapshots)
        for relation, _, _, _ in parts.current_parts(con):
            if relation in views:
                report.parquet_relations[relation] = report.parquet_relations.get(relation, 0) + 1
        report.garbage = _record_and_collect(con, warehouse, target, version, now, referenced, keep_hours)
    finally:
        con.close()
        tmp.unlink(missing_ok=True)
        Path(str(tmp) + ".wal").unlink(missing_ok=True)
    report.seconds = time.monotonic() - began
    return report


def _snapshot(con: duckdb.DuckDBPyConnection, warehouse: Path, name: str) -> str:
    """A large table as a Parquet file named by its content (rows, columns and a hash of every row), written only
    when no publication has that content yet: a factor table of 100,000 rows is then written once, not copied
    into every publication."""
    schema, table = (quote_ident(x) for x in name.split("."))
    rows, digest = fetch_one(con, f"select count(*), coalesce(sum(hash(t)), 0) from {schema}.{table} as t")
    columns = con.execute(f"describe {schema}.{table}").fetchall()
    key = hashlib.sha256(repr((rows, int(digest), [c[:2] for c in columns])).encode()).hexdigest()[:20]
    path = parts.parts_root(warehouse) / SNAPSHOTS / name / f"{key}.parquet"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        con.execute(f"copy {schema}.{table} to {parts.sql_string(str(tmp))} (format parquet, compression zstd)")
        os.replace(tmp, path)
    return str(path)


def _relation_published(path: str, views: list[str]) -> bool:
    return any(f"/{view}/" in path for view in views)


def _record_and_collect(
    con: duckdb.DuckDBPyConnection,
    warehouse: Path,
    target: Path,
    version: str,
    now: dt.datetime,
    referenced: set[str],
    keep_hours: float,
) -> parts.Garbage:
    for ddl in PUBLICATIONS_DDL:
        con.execute(ddl)
    con.execute("begin transaction")
    con.execute(
        "update storage.publications set superseded_at = ? where path = ? and superseded_at is null",
        [now, str(target)],
    )
    con.execute("insert into storage.publications values (?, ?, ?, null)", [version, str(target), now])
    if referenced:
        con.execute(
            "insert into storage.publication_parts select ?, unnest(?)", [version, sorted(referenced)]
        )
    cutoff = now - dt.timedelta(hours=keep_hours)
    con.execute(
        "delete from storage.publication_parts where version in "
        "(select version from storage.publications where superseded_at < ?)",
        [cutoff],
    )
    con.execute("delete from storage.publications where superseded_at < ?", [cutoff])
    con.execute("commit")
    return collect_garbage(con, warehouse)


def collect_garbage(con: duckdb.DuckDBPyConnection, warehouse: Path, dry_run: bool = False) -> parts.Garbage:
    """Delete the day files no current relation and no kept publication names."""
    keep = {path for *_, path, _ in parts.current_parts(con)}
    if has_table(con, "storage.publication_parts"):
        keep |= {p for (p,) in con.execute("select distinct path from storage.publication_parts").fetchall()}
    return parts.collect_garbage(parts.parts_root(warehouse), keep, dry_run=dry_run)
