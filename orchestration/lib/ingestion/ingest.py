"""Ingestion of request logs, telemetry and cluster descriptions into the raw layer.

Everything per-row is set-based DuckDB SQL. The contract every loader keeps, per partition (UTC day):

    lines in scope = rows loaded + rows rejected

where a rejected row lands in ``raw.rejected_rows`` with its file, 1-based line number, a reason a person can act
on, and the record as it was read. A row's day is the day its timestamp falls in; a row whose timestamp cannot be
read is filed under the day most of its file's rows belong to (so the rejection shows up in the run that reads that
file), or with no day when the file has no readable timestamp at all.

Partitions are self-contained so any day can be (re)materialised alone: a request is loaded into every day it
overlaps, telemetry samples are loaded for the day plus a margin either side (counter deltas and power intervals at
midnight need the neighbouring samples).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import yaml

from orchestration.lib.images import requests as image_fields
from orchestration.lib.ingestion import identity
from orchestration.lib.ingestion.metrics import METRICS, METRICS_BY_NAME
from orchestration.lib.ingestion.textlines import iter_line_batches
from orchestration.lib.warehouse import fetch_one

REQUEST_FIELDS: tuple[str, ...] = (
    "request_id",
    "cluster",
    "model",
    "start_time",
    "duration_s",
    "input_tokens",
    "output_tokens",
    "tenant",
    "endpoint",
    "node",
    "gpu",
    *image_fields.IMAGE_FIELDS,
)
INTEGER_REQUEST_FIELDS: tuple[str, ...] = (
    "input_tokens",
    "output_tokens",
)
TELEMETRY_FIELDS: tuple[str, ...] = (
    "timestamp", "cluster", "metric", "value", "node", "gpu", "cpu", "mode", "gpu_uuid", "pci_bus_id",
)

# Fields that typed sources (Parquet, Prometheus, OTLP) deliver typed. Each has a shadow column `<field>__v` in the
# candidate tables, so typed values are validated as they are and only text sources go through string parsing.
REQUEST_TYPED: dict[str, str] = {
    "start_time": "timestamp",
    "duration_s": "double",
    **{f: "double" for f in ("input_tokens", "output_tokens")},
    **image_fields.IMAGE_TYPED,
}
TELEMETRY_TYPED: dict[str, str] = {"timestamp": "timestamp", "value": "double"}
NUMERIC_TYPES: tuple[str, ...] = (
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
    "FLOAT", "DOUBLE", "DECIMAL",
)

REQUEST_SUFFIXES: tuple[str, ...] = (".otlp.json", ".jsonl", ".csv", ".parquet")
TELEMETRY_SUFFIXES: tuple[str, ...] = (".csv.gz", ".csv", ".parquet", ".prom")

CLUSTER_REQUIRED_KEYS: tuple[str, ...] = ("id", "region", "gpu_model", "gpus_per_node", "host_idle_w", "host_max_w")
CLUSTER_NUMERIC_KEYS: tuple[str, ...] = (
    "gpus_per_node",
    "gpu_idle_w",
    "host_idle_w",
    "host_max_w",
    "pue",
    "wue_onsite_l_per_kwh",
    "gpu_embodied_kg_co2e",
    "server_embodied_kg_co2e",
    "lifetime_years",
    "water_embodied_l",
    "gpu_max_w",
)
ATTRIBUTION_LEVELS: tuple[str, ...] = ("auto", "cluster", "node", "gpu")

DEFAULT_MAX_REQUEST_DURATION_S = 6 * 3600.0
# A rejection reason without its quoted values, parenthesised details and ': ...' tails: the kind to count by.
REASON_KIND_SQL = r"regexp_replace(reason, ' ''[^'']*''| \([^)]*\)|: .*', '', 'g')"
DEFAULT_TELEMETRY_MARGIN_S = 600.0
# Telemetry samples less than this after midnight open no day of their own: the closing sample of the day before,
# or a duplicate scrape of it (the dbt var duplicate_scrape_within_s, 1 s, deduplicates such samples).
SPILL_OVER_TIME = "00:00:01"


@dataclass
class IngestSummary:
    """What one load read, kept and rejected, for run metadata and the terminal."""

    input: str
    partition_day: dt.date | None
    files: int = 0
    lines_in_scope: int = 0
    loaded: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    ignored_by_reason: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------------------
# SQL helpers shared by the loaders
# --------------------------------------------------------------------------------------------------------------

MACROS: tuple[str, ...] = (
    # trim() allocates a new string per row (seconds on millions of rows): only call it when there is a space to
    # remove (DuckDB's trim removes spaces only)
    (
        "create or replace temp macro impact_trim(s) as "
        "(case when prefix(s, ' ') or suffix(s, ' ') then trim(s) else s end)"
    ),
    "create or replace temp macro impact_blank(s) as (s is null or s = '' or (prefix(s, ' ') and trim(s) = ''))",
    # RFC 3339 with an offset (Z or +hh:mm), or epoch seconds -> UTC TIMESTAMP; NULL when unreadable. A time
    # without an offset is refused rather than guessed: a local-time log would otherwise load hours off.
    """
    create or replace temp macro impact_parse_ts(s) as (
        case
            when impact_blank(s) then null
            when regexp_full_match(impact_trim(s), '[+-]?[0-9]+(\\.[0-9]*)?([eE][+-]?[0-9]+)?')
                then try(make_timestamp(cast(round(cast(impact_trim(s) as double) * 1000000) as bigint)))
            when regexp_full_match(
                impact_trim(s),
                '[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]+)?)?([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)'
            )
                then try_cast(try_cast(impact_trim(s) as timestamptz) as timestamp)
        end
    )
    """,
    # Why a timestamp was refused, for the rejection reason.
    """
    create or replace temp macro impact_ts_problem(s, ts) as (
        case
            when ts is not null then null
            when regexp_full_match(impact_trim(s), '[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9:.]+')
                then 'timestamp without UTC offset ' || impact_quote(s) || ' (RFC 3339 needs Z or +hh:mm)'
            else 'unparseable timestamp ' || impact_quote(s)
        end
    )
    """,
    # Outside [2000-01-01, now + 1 h]: a broken clock or a corrupt value, not a day to materialise.
    """
    create or replace temp macro impact_implausible_ts(ts) as (
        ts < timestamp '2000-01-01' or ts > cast(now() as timestamp) + interval 1 hour
    )
    """,
    "create or replace temp macro impact_quote(s) as ('''' || coalesce(s, '') || '''')",
    # A number that is a plausible date (2000-2100) in epoch milliseconds, microseconds or nanoseconds rather than
    # seconds: named in the rejection instead of being read as a date thousands of years away.
    """
    create or replace temp macro impact_epoch_unit(s) as (
        case
            when regexp_full_match(impact_trim(s), '[+-]?[0-9]+(\\.[0-9]*)?([eE][+-]?[0-9]+)?') then
                case
                    when cast(impact_trim(s) as double) between 9.466848e11 and 4.1024448e12
                        then 'epoch milliseconds'
                    when cast(impact_trim(s) as double) between 9.466848e14 and 4.1024448e15
                        then 'epoch microseconds'
                    when cast(impact_trim(s) as double) between 9.466848e17 and 4.1024448e18
                        then 'epoch nanoseconds'
                end
        end
    )
    """,
)


def _install_macros(con: duckdb.DuckDBPyConnection) -> None:
    for macro in (*MACROS, *identity.NODE_MACROS):
        con.execute(macro)


def discover_files(root: Path, suffixes: Iterable[str]) -> list[Path]:
    """Input files below `root` with one of the suffixes, in a stable (sorted) order. Hidden files are skipped."""
    if not root.exists():
        return []
    suffixes = tuple(suffixes)
    found = [
        p
        for p in root.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
        and p.name.endswith(suffixes)
    ]
    return sorted(found)


def _display_path(path: Path, data_dir: Path) -> str:
    try:
        return str(path.relative_to(data_dir))
    except ValueError:
        return str(path)


def _materialise(rel: duckdb.DuckDBPyRelation, table: str) -> None:
    """Evaluate a lazy relation once into a temporary table (file readers are re-run on every reference)."""
    rel.query("_source", f"create or replace temp table {table} as select * from _source")


def _varchar_projection(present: Iterable[str], wanted: Iterable[str], prefix: str = "") -> str:
    """`cast("x" as varchar) as x` for wanted columns present in the source, `null::varchar as x` otherwise."""
    present = set(present)
    parts = []
    for name in wanted:
        if name in present:
            parts.append(f'cast({prefix}"{name}" as varchar) as "{name}"')
        else:
            parts.append(f'cast(null as varchar) as "{name}"')
    return ", ".join(parts)


def _create_candidates(
    con: duckdb.DuckDBPyConnection, table: str, fields: tuple[str, ...], typed: dict[str, str]
) -> None:
    """The staging table every reader appends to: text fields plus a typed shadow per typed field. A row is
    identified by (source_file, source_row, source_index); source_index tells apart the spans of one OTLP line."""
    text = ", ".join(f'"{f}" varchar' for f in fields)
    shadows = ", ".join(f'"{f}__v" {kind}' for f, kind in typed.items())
    con.execute(
        f"create or replace temp table {table} (source_file varchar, source_row bigint, "
        f"source_index integer default 0, raw_record varchar, parse_error varchar, {text}, {shadows})"
    )


def _text_columns(fields: tuple[str, ...]) -> str:
    return ", ".join(f'"{f}"' for f in fields)


def _typed_value(field: str, typed: dict[str, str]) -> str:
    """SQL for a typed field's value: the typed shadow, else the text parsed."""
    if typed[field] == "timestamp":
        return f'coalesce("{field}__v", impact_parse_ts("{field}"))'
    return f'coalesce("{field}__v", try_cast(impact_trim("{field}") as double))'


def _shown(field: str) -> str:
    """SQL for a field as the user wrote it (text, or the typed value rendered), for rejection reasons."""
    return f'coalesce(impact_trim("{field}"), cast("{field}__v" as varchar))'


def _present(field: str) -> str:
    return f'("{field}__v" is not null or not impact_blank("{field}"))'


def _epoch_s_ts_sql(x: str) -> str:
    """SQL: the timestamp of epoch seconds `x` (a double), to the microsecond; null for a non-finite or
    out-of-range value (which the callers keep as text, so its rejection can quote it)."""
    return f"case when isfinite({x}) then try(make_timestamp(cast(round({x} * 1e6) as bigint))) end"


def _parquet_select(types: dict[str, str], fields: tuple[str, ...], typed: dict[str, str]) -> tuple[str, str]:
    """(column list, select list) reading `fields` from a Parquet file whose columns have `types`.

    Numeric and timestamp columns of typed fields keep their type (epoch seconds become timestamps); a
    non-finite number (or a timestamp number too large for epoch seconds) is also kept as text so its rejection
    quotes it; everything else is read as text.
    """
    columns, values = [], []
    for name in fields:
        kind = types.get(name)
        numeric = kind is not None and kind.split("(")[0] in NUMERIC_TYPES
        if kind is not None and name in typed and (numeric or kind.startswith("TIMESTAMP")):
            if kind.startswith("TIMESTAMP"):
                columns.append(f'"{name}__v"')
                values.append(f'cast("{name}" as timestamp)')
                continue
            x = f'cast("{name}" as double)'
            if typed[name] == "timestamp":
                # the number itself is kept as text when it cannot be epoch seconds of a plausible date (non-finite,
                # or 1e11 s = year 5138 and beyond), so the rejection quotes it and can name epoch milliseconds or
                # nanoseconds
                columns += [f'"{name}"', f'"{name}__v"']
                values += [
                    f"case when not isfinite({x}) or abs({x}) >= 1e11 then cast({x} as varchar) end",
                    _epoch_s_ts_sql(x),
                ]
            else:
                columns.append(f'"{name}__v"')
                values.append(x)
        elif kind is not None and kind.endswith("[]"):
            # a list column (e.g. LoRA adapter names): read as its JSON text, which the field's parser reads
            columns.append(f'"{name}"')
            values.append(f'cast(to_json("{name}") as varchar)')
        elif kind is not None:
            columns.append(f'"{name}"')
            values.append(f'cast("{name}" as varchar)')
    return ", ".join(columns), ", ".join(values)


def _line_batches(con: duckdb.DuckDBPyConnection, path: Path, name: str) -> Iterator[str]:
    """Register each chunk of the text file's lines (textlines.LINE_SCHEMA) as the view `name` in turn, so one SQL
    statement per chunk can read it: a file of any size is read in bounded memory."""
    for batch in iter_line_batches(path):
        con.register(name, batch)
        try:
            yield name
        finally:
            con.unregister(name)


def _csv_candidates(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    display: str,
    fields: tuple[str, ...],
    table: str,
    keep_lines: bool = True,
) -> None:
    """Append the rows of one CSV file (all text) to `table`, malformed lines included with their reason.

    Good rows get their real 1-based line number: DuckDB reports the line of each rejected record, so the k-th good
    row is the k-th data line that is neither blank nor rejected (exact unless a quoted field spans lines, in which
    case the row's ordinal is used and the reason says so). A line that is not UTF-8 is a malformed line whose
    reason says which byte (textlines). With `keep_lines` False the good rows carry no raw_record (the lines of the
    rows rejected later are read back by _attach_source_lines): a large file is then read in bounded memory.
    """
    con.execute("drop table if exists _csv_rejects; drop table if exists _csv_scans")
    probe = con.sql(
        # RFC 4180 quoting, not sniffed: a single quote in a text field must not be taken for a quote character
        "select * from read_csv($p, all_varchar = true, header = true, null_padding = false, quote = '\"', "
        "escape = '\"', store_rejects = true, rejects_table = '_csv_rejects', rejects_scan = '_csv_scans', "
        "parallel = false, max_line_size = 10000000)",
        params={"p": str(path)},
    )
    cols = list(probe.columns)
    probe.create_view("_csv_probe", replace=True)
    con.execute(
        "create or replace temp table _csv_good as "
        f"select row_number() over () as ordinal, {_varchar_projection(cols, fields)} from _csv_probe"
    )
    # the data lines (not blank), with their text only where it is kept
    con.execute("create or replace temp table _csv_lines (source_row bigint, line varchar, line_error varchar)")
    kept = "line" if keep_lines else "case when line_error is not null then line end"
    for batch in _line_batches(con, path, "_csv_line_batch"):
        con.execute(
            f"insert into _csv_lines select source_row, {kept}, line_error from {batch} where not impact_blank(line)"
        )
    con.execute(
        """
        create or replace temp table _csv_line_map as
        with data_lines as (
            select l.source_row, l.line
            from _csv_lines l
            where l.source_row > 1
              and l.source_row not in (select distinct line from _csv_rejects)
        )
        select row_number() over (order by source_row) as ordinal, source_row, line from data_lines
        """
    )
    field_list = ", ".join(f'g."{f}"' for f in fields)
    raw = "coalesce(m.line, '')" if keep_lines else "cast(null as varchar)"
    con.execute(
        f"""
        insert into {table} (source_file, source_row, raw_record, parse_error, {_text_columns(fields)})
        select $display, coalesce(m.source_row, g.ordinal + 1), {raw}, null, {field_list}
        from _csv_good g left join _csv_line_map m using (ordinal)
        """,
        {"display": display},
    )
    con.execute(
        f"""
        insert into {table} (source_file, source_row, raw_record, parse_error)
        select $display, r.line, coalesce(l.line, trim(r.csv_line, chr(10) || chr(13))),
               coalesce(l.line_error, 'malformed CSV line: ' || string_agg(distinct r.error_message, '; '))
        from _csv_rejects r left join _csv_lines l on l.source_row = r.line
        group by r.line, l.line, l.line_error, r.csv_line
        """,
        {"display": display},
    )
    con.execute("drop table if exists _csv_rejects; drop table if exists _csv_scans; drop table _csv_lines")


def _jsonl_candidates(
    con: duckdb.DuckDBPyConnection, path: Path, display: str, fields: tuple[str, ...], table: str
) -> int:
    """Append the lines of one JSON-lines file to `table`, chunk by chunk; returns the number of blank lines
    skipped. Only the lines that fail to parse keep their text as raw_record (the lines of rows rejected later
    are read back by _attach_source_lines)."""
    extracts = ", ".join(
        f"case when doc is not null then json_extract_string(doc, '$.\"{f}\"') end as \"{f}\"" for f in fields
    )
    blank = 0
    for batch in _line_batches(con, path, "_json_line_batch"):
        (lines,) = fetch_one(con, f"select count(*) from {batch}")
        (inserted,) = fetch_one(con, 
            f"""
            insert into {table} (source_file, source_row, raw_record, parse_error, {_text_columns(fields)})
            with parsed as (
                select source_row, line,
                       case
                           when line_error is null and json_valid(line) and json_type(line) = 'OBJECT'
                               then line::json
                       end as doc,
                       case
                           when line_error is not null then line_error
                           when not json_valid(line) then 'malformed JSON'
                           when json_type(line) <> 'OBJECT' then 'JSON value is not an object'
                       end as parse_error
                from {batch}
                where not impact_blank(line)
            )
            select $display, source_row, case when parse_error is not null then line end, parse_error, {extracts}
            from parsed
            """,
            {"display": display},
        )
        blank += int(lines) - int(inserted)
    return blank


def _attach_source_lines(con: duckdb.DuckDBPyConnection, table: str, text_files: dict[str, Path]) -> None:
    """Set raw_record of the rows of `table` (source_file, source_row, raw_record) that come from the text files
    `text_files` (display name -> path) to their line as written: one more streaming read of each file that has
    rejected rows, keeping only those lines."""
    files = [
        r[0]
        for r in con.execute(
            f"select distinct source_file from {table} where list_contains($files, source_file) order by 1",
            {"files": sorted(text_files)},
        ).fetchall()
    ]
    for display in files:
        con.execute(
            f"create or replace temp table _wanted_lines as "
            f"select distinct source_row from {table} where source_file = $d",
            {"d": display},
        )
        (last,) = fetch_one(con, "select max(source_row) from _wanted_lines")
        con.execute("create or replace temp table _found_lines (source_row bigint, line varchar)")
        for batch in _line_batches(con, text_files[display], "_attach_line_batch"):
            con.execute(
                f"insert into _found_lines select b.source_row, b.line from {batch} b "
                "semi join _wanted_lines w on b.source_row = w.source_row"
            )
            (batch_last,) = fetch_one(con, f"select max(source_row) from {batch}")
            if batch_last is not None and batch_last >= last:
                break
        con.execute(
            f"update {table} set raw_record = f.line from _found_lines f "
            f"where {table}.source_file = $d and {table}.source_row = f.source_row",
            {"d": display},
        )
    con.execute("drop table if exists _wanted_lines; drop table if exists _found_lines")


def _parquet_candidates(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    display: str,
    fields: tuple[str, ...],
    typed: dict[str, str],
    table: str,
) -> None:
    """Append the rows of one Parquet file to `table`, typed columns kept typed (see _parquet_select)."""
    probe = con.sql("select * from read_parquet($p) limit 0", params={"p": str(path)})
    columns, values = _parquet_select(dict(zip(probe.columns, (str(t) for t in probe.types))), fields, typed)
    con.execute(
        f"""
        insert into {table} (source_file, source_row, raw_record, parse_error{", " if columns else ""}{columns})
        select $display, file_row_number + 1, null, null{", " if values else ""}{values}
        from read_parquet($p, file_row_number = true)
        """,
        {"display": display, "p": str(path)},
    )


def _fill_raw_record_sql(fields: tuple[str, ...], typed: dict[str, str]) -> str:
    """A JSON rendering of the fields, for rejected rows that have no source line (Parquet)."""
    pairs = ", ".join(f"'{f}', " + (_shown(f) if f in typed else f'"{f}"') for f in fields)
    return f"coalesce(raw_record, cast(json_object({pairs}) as varchar))"


def _rejects_table(
    con: duckdb.DuckDBPyConnection,
    name: str,
    rows_table: str,
    bad_tables: tuple[str, ...],
    keys: tuple[str, ...],
    ts_sql: str,
    raw_record_sql: str,
) -> None:
    """The rejected rows (the union of `bad_tables`: keys + reason) with their day and raw record. A row whose
    time is unreadable or implausible is filed under the day most rows of its file belong to (computed only for
    the files that have such rows: usually none)."""
    join_keys = ", ".join(keys)
    con.execute(
        f"""
        create or replace temp table {name} as
        with bad as ({" union all ".join(f"select * from {t}" for t in bad_tables)})
        select {", ".join(f"b.{k}" for k in keys)}, b.reason, r.source_file, r.source_row,
            case when not impact_implausible_ts({ts_sql}) then cast({ts_sql} as date) end as reject_day,
            {raw_record_sql} as raw_record
        from bad b
        join {rows_table} r using ({join_keys})
        """
    )
    undated = [
        row[0]
        for row in con.execute(f"select distinct source_file from {name} where reject_day is null").fetchall()
    ]
    if undated:
        con.execute(
            f"""
            update {name} set reject_day = f.modal_day
            from (
                select source_file, mode(cast(ts as date)) as modal_day
                from (select source_file, {ts_sql} as ts from {rows_table} where list_contains($files, source_file))
                where ts is not null and not impact_implausible_ts(ts)
                group by source_file
            ) as f
            where {name}.reject_day is null and {name}.source_file = f.source_file
            """,
            {"files": undated},
        )


def _store(
    con: duckdb.DuckDBPyConnection,
    input_name: str,
    day: dt.date,
    raw_table: str,
    loaded_sql: str,
    rejected_sql: str,
    files: list[str],
    before_insert: Iterable[str | Callable[[], None]] = (),
    params: dict[str, object] | None = None,
) -> int:
    """Replace the partition's rows (loaded and rejected) atomically; returns the number of rows loaded.
    `before_insert` are statements (or callables) run first in the same transaction; `params` those of
    loaded_sql."""
    con.execute("begin transaction")
    try:
        for statement in before_insert:
            if callable(statement):
                statement()
                continue
            # read to the end: DuckDB 2 streams results, and a check's error() must not wait in an unread row
            con.execute(statement).fetchall()
        con.execute(f"delete from {raw_table} where partition_day = $day", {"day": day})
        # one load time for the whole partition (a per-row now() costs seconds on millions of rows)
        (loaded,) = fetch_one(
            con,
            f"insert into {raw_table} {loaded_sql}",
            {**(params or {}), "loaded_at": dt.datetime.now(dt.UTC).replace(tzinfo=None)},
        )
        con.execute(
            "delete from raw.rejected_rows where input = $input and partition_day = $day",
            {"input": input_name, "day": day},
        )
        if files:
            con.execute(
                "delete from raw.rejected_rows where input = $input and partition_day is null "
                "and list_contains($files, source_file)",
                {"input": input_name, "files": files},
            )
        con.execute(f"insert into raw.rejected_rows {rejected_sql}")
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    return int(loaded)


def _reason_counts(con: duckdb.DuckDBPyConnection, table: str, day: dt.date) -> dict[str, int]:
    rows = con.execute(
        f"""
        select {REASON_KIND_SQL} as kind, count(*)
        from {table} where reject_day = $day or reject_day is null
        group by kind order by count(*) desc, kind
        """,
        {"day": day},
    ).fetchall()
    return {str(k): int(n) for k, n in rows}


# --------------------------------------------------------------------------------------------------------------
# Clusters
# --------------------------------------------------------------------------------------------------------------


def parse_clusters_yaml(text: str) -> tuple[list[dict[str, object]], list[tuple[int, str, str]]]:
    """Validate a clusters.yml document. Returns (valid clusters, [(item index (1-based), reason, record)])."""
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        return [], [(0, f"malformed YAML: {exc}".splitlines()[0], text[:2000])]
    items = doc.get("clusters") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        return [], [(0, "clusters.yml has no top-level 'clusters:' list", text[:2000])]
    valid: list[dict[str, object]] = []
    rejected: list[tuple[int, str, str]] = []
    seen: set[str] = set()
    for index, item in enumerate(items, start=1):  # a handful of clusters, not rows of data
        record = yaml.safe_dump(item, default_flow_style=True).strip()
        reason = _cluster_problem(item, seen)
        if reason:
            rejected.append((index, reason, record))
            continue
        seen.add(str(item["id"]))
        valid.append(item)
    return valid, rejected


def _cluster_problem(item: object, seen: set[str]) -> str | None:
    if not isinstance(item, dict):
        return "cluster entry is not a mapping"
    missing = [k for k in CLUSTER_REQUIRED_KEYS if item.get(k) in (None, "")]
    if missing:
        return "missing " + ", ".join(missing)
    if str(item["id"]) in seen:
        return f"duplicate cluster id '{item['id']}' (first kept)"
    for key in CLUSTER_NUMERIC_KEYS:
        value = item.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"non-numeric {key} '{value}'"
        if value < 0:
            return f"negative {key} ({value})"
    if item.get("pue") is not None and float(item["pue"]) < 1:
        return f"pue ({item['pue']}) is below 1 (facility energy cannot be less than IT energy)"
    if item.get("lifetime_years") is not None and float(item["lifetime_years"]) <= 0:
        return f"lifetime_years ({item['lifetime_years']}) must be positive"
    if float(item["host_max_w"]) < float(item["host_idle_w"]):
        return f"host_max_w ({item['host_max_w']}) is below host_idle_w ({item['host_idle_w']})"
    level = str(item.get("attribution_level", "auto"))
    if level not in ATTRIBUTION_LEVELS:
        return f"attribution_level '{level}' is not one of {', '.join(ATTRIBUTION_LEVELS)}"
    return identity.node_config_problem(item)


def ingest_clusters(con: duckdb.DuckDBPyConnection, data_dir: Path) -> IngestSummary:
    """Replace raw.clusters with the valid entries of clusters.yml; invalid entries go to raw.rejected_rows."""
    path = data_dir / "clusters.yml"
    summary = IngestSummary(input="clusters", partition_day=None)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no clusters.yml in the data directory (see CONTRACT section 1)")
    valid, rejected = parse_clusters_yaml(path.read_text())
    display = _display_path(path, data_dir)
    rows = [
        (
            str(c["id"]),
            c.get("region"),
            c.get("gpu_model"),
            c.get("gpus_per_node"),
            c.get("gpu_idle_w"),
            c.get("host_idle_w"),
            c.get("host_max_w"),
            c.get("pue"),
            c.get("wue_onsite_l_per_kwh"),
            c.get("gpu_embodied_kg_co2e"),
            c.get("server_embodied_kg_co2e"),
            c.get("lifetime_years"),
            c.get("water_embodied_l"),
            str(c.get("attribution_level", "auto")),
            None if c.get("provider") in (None, "") else str(c["provider"]),
            display,
            c.get("gpu_max_w"),
            c.get("node_pattern") or None,
            identity.aliases_json(c.get("node_aliases")),
        )
        for c in valid
    ]
    con.execute("begin transaction")
    try:
        con.execute("delete from raw.clusters")
        if rows:
            con.executemany(
                "insert into raw.clusters (cluster, region, gpu_model, gpus_per_node, gpu_idle_w, host_idle_w, "
                "host_max_w, pue, wue_onsite_l_per_kwh, gpu_embodied_kg_co2e, server_embodied_kg_co2e, "
                "lifetime_years, water_embodied_l, attribution_level, provider, source_file, gpu_max_w, "
                "node_pattern, node_aliases, loaded_at) "
                "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now()::timestamp)",
                rows,
            )
        con.execute("delete from raw.rejected_rows where input = 'clusters'")
        if rejected:
            con.executemany(
                "insert into raw.rejected_rows values (null, 'clusters', ?, ?, ?, ?, now()::timestamp)",
                [(display, index, reason, record) for index, reason, record in rejected],
            )
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    summary.files = 1
    summary.lines_in_scope = len(valid) + len(rejected)
    summary.loaded = len(valid)
    summary.rejected = len(rejected)
    for _, reason, _ in rejected:
        summary.rejected_by_reason[reason] = summary.rejected_by_reason.get(reason, 0) + 1
    return summary


# --------------------------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------------------------


def _otlp_candidates(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    display: str,
    table: str,
    fields: tuple[str, ...] = REQUEST_FIELDS,
) -> int:
    """Append the GenAI spans of one OTLP JSON file to `table` (its `fields`), chunk by chunk; returns the count of
    non-GenAI spans ignored. The span reader types start_time, duration and token counts; they go to the typed
    shadows."""
    from orchestration.lib.ingestion.otlp import parse_otlp_lines

    ignored = 0
    for batch in _line_batches(con, path, "_otlp_line_batch"):
        spans = parse_otlp_lines(con.table(batch))
        _materialise(spans, "_otlp_spans")
        spans = con.table("_otlp_spans")
        # the span reader types some fields (times, token counts); the others it gives as text, parsed like CSV
        text_typed = {c for c, t in zip(spans.columns, spans.types) if str(t) == "VARCHAR"}
        text_fields = tuple(f for f in fields if f not in REQUEST_TYPED or f in text_typed)
        typed_fields = tuple(
            f for f in fields if f in REQUEST_TYPED and f in spans.columns and f not in text_typed
        )
        con.execute(
            f"""
            insert into {table} (source_file, source_row, source_index, raw_record, parse_error,
                {", ".join([*(f'"{f}"' for f in text_fields), *(f'"{f}__v"' for f in typed_fields)])})
            select $display, source_row, span_index, raw_record, parse_error,
                {", ".join(filter(None, [_varchar_projection(spans.columns, text_fields),
                                         ", ".join(f'"{f}"' for f in typed_fields)]))}
            from _otlp_spans
            where parse_error is not null or is_genai
            """,
            {"display": display},
        )
        (n,) = fetch_one(con, "select count(*) from _otlp_spans where parse_error is null and not is_genai")
        ignored += int(n)
    con.execute("drop table if exists _otlp_spans")
    return ignored


def _integer_checks(fields: tuple[str, ...]) -> str:
    """CASE branches rejecting present-but-invalid counts (non-numeric, non-finite, negative, fractional)."""
    branches = []
    for f in fields:
        value, shown, present = _typed_value(f, REQUEST_TYPED), _shown(f), _present(f)
        branches.append(
            f"""
            when {present} and {value} is null then 'non-numeric {f} ' || impact_quote({shown})
            when {present} and not isfinite({value}) then '{f} is ' || {shown}
            when {present} and {value} < 0 then 'negative {f} (' || {shown} || ')'
            when {present} and {value} <> floor({value}) then 'non-integer {f} (' || {shown} || ')'"""
        )
    return "".join(branches)


def ingest_requests(
    con: duckdb.DuckDBPyConnection,
    data_dir: Path,
    day: dt.date,
    max_request_duration_s: float = DEFAULT_MAX_REQUEST_DURATION_S,
) -> IngestSummary:
    """Load the requests that overlap `day` into raw.requests (replacing the partition).

    Duplicate request ids are resolved across all files (first by file path, then line, is kept), so the same
    duplicate is rejected whichever day is run.
    """
    _install_macros(con)
    files = discover_files(data_dir / "requests", REQUEST_SUFFIXES)
    summary = IngestSummary(input="requests", partition_day=day, files=len(files))
    _create_candidates(con, "_req_candidates", REQUEST_FIELDS, REQUEST_TYPED)
    ignored = {"blank lines": 0, "non-GenAI spans": 0}
    displays = []
    text_files: dict[str, Path] = {}  # whose rejected rows get their line read back
    for path in files:
        display = _display_path(path, data_dir)
        displays.append(display)
        name = path.name
        if name.endswith(".otlp.json"):
            ignored["non-GenAI spans"] += _otlp_candidates(con, path, display, "_req_candidates")
        elif name.endswith(".jsonl"):
            ignored["blank lines"] += _jsonl_candidates(con, path, display, REQUEST_FIELDS, "_req_candidates")
            text_files[display] = path
        elif name.endswith(".csv"):
            _csv_candidates(con, path, display, REQUEST_FIELDS, "_req_candidates", keep_lines=False)
            text_files[display] = path
        else:
            _parquet_candidates(con, path, display, REQUEST_FIELDS, REQUEST_TYPED, "_req_candidates")
    summary.ignored_by_reason = {k: v for k, v in ignored.items() if v}

    start_ts, dur = _typed_value("start_time", REQUEST_TYPED), _typed_value("duration_s", REQUEST_TYPED)
    # image requests (lib/images/requests.py): their fields' checks, and the quality labels' steps and size
    from orchestration.lib.factors import MODEL_KEY_SQL

    image_fields.install_macros(con)
    image_sql = image_fields.FieldSql(
        value=lambda f: _typed_value(f, REQUEST_TYPED), shown=_shown, present=_present
    )
    labels = image_fields.resolve_quality_labels(con, "_req_candidates", MODEL_KEY_SQL)
    quality_join = image_fields.QUALITY_JOIN if labels else ""
    image_reason = image_fields.checks_sql(image_sql, INTEGER_REQUEST_FIELDS, with_quality=bool(labels))
    # 1. rows with something wrong (few): the reason is only rendered for them
    con.execute(
        f"""
        create or replace temp table _req_bad as
        select row_id, reason from (
            select row_id,
                coalesce(case
                    when parse_error is not null then parse_error
                    when impact_blank(request_id) then 'missing request_id'
                    when not {_present("start_time")} then 'missing start_time'
                    when (start_ts_v is null or impact_implausible_ts(start_ts_v))
                        and impact_epoch_unit({_shown("start_time")}) is not null
                        then impact_epoch_unit({_shown("start_time")}) || ' in start_time '
                            || impact_quote({_shown("start_time")}) || ' (epoch seconds or RFC 3339 expected)'
                    when start_ts_v is null
                        then replace(impact_ts_problem(start_time, start_ts_v), 'timestamp', 'start_time')
                    when impact_implausible_ts(start_ts_v)
                        then 'implausible start_time ' || impact_quote(coalesce(impact_trim(start_time),
                            strftime(start_ts_v, '%Y-%m-%dT%H:%M:%S.%fZ')))
                            || ' (before 2000 or in the future: clock skew?)'
                    when not {_present("duration_s")} then 'missing duration_s'
                    when dur_v is null then 'non-numeric duration_s ' || impact_quote({_shown("duration_s")})
                    when isnan(dur_v) then 'duration_s is NaN'
                    when isinf(dur_v) then 'duration_s is infinite'
                    when dur_v < 0 then 'negative duration_s (' || {_shown("duration_s")} || ')'
                    when dur_v > $max_dur
                        then 'duration_s ' || {_shown("duration_s")} || ' exceeds the limit of ' || $max_dur || ' s'
                    {_integer_checks(INTEGER_REQUEST_FIELDS)}
                    when impact_blank(model) then 'missing model'
                    when impact_blank(cluster) then 'missing cluster'
                    when impact_trim(cluster) not in (select cluster from raw.clusters)
                        then 'unknown cluster ' || impact_quote(cluster) || ' (not in clusters.yml)'
                end, {image_reason}) as reason
            -- (the typed values once per row: parsing text timestamps is the costly part)
            from (select *, rowid as row_id, {start_ts} as start_ts_v, {dur} as dur_v from _req_candidates) as c
                {quality_join}
        )
        where reason is not null
        """,
        {"max_dur": max_request_duration_s},
    )
    # 2. duplicate ids among the good rows, across all files and days: the first (file, line) is kept. Repeats are
    #    found on a 64-bit hash of the id (grouping millions of hashes costs half as much as grouping the strings);
    #    only the rows of a repeated hash are ranked, by the id itself, so a hash two ids share merges nothing.
    con.execute(
        """
        create or replace temp table _req_dups as
        with good as (
            select rowid as row_id, source_file, source_row, source_index, impact_trim(request_id) as rid
            from _req_candidates
            where rowid not in (select row_id from _req_bad)
        ),
        repeated as (select hash(rid) as rid_hash from good group by rid_hash having count(*) > 1),
        ranked as (
            select row_id, rid,
                row_number() over (partition by rid order by source_file, source_row, source_index) as copy_no,
                first(source_file || ':' || source_row) over (
                    partition by rid order by source_file, source_row, source_index) as first_at
            from good
            where hash(rid) in (select rid_hash from repeated)
        )
        select row_id, 'duplicate request_id ' || impact_quote(rid) || ' (first at ' || first_at || ')' as reason
        from ranked where copy_no > 1
        """
    )
    con.execute("create or replace temp view _req_rows as select rowid as row_id, * from _req_candidates")
    _rejects_table(
        con, "_req_rejects", "_req_rows", ("_req_bad", "_req_dups"), ("row_id",), start_ts,
        _fill_raw_record_sql(REQUEST_FIELDS, REQUEST_TYPED),
    )
    _attach_source_lines(con, "_req_rejects", text_files)
    day_start = dt.datetime.combine(day, dt.time())
    day_end = day_start + dt.timedelta(days=1)
    lo, hi = f"timestamp '{day_start.isoformat(sep=' ')}'", f"timestamp '{day_end.isoformat(sep=' ')}'"
    in_scope = (
        f"{start_ts} < {hi} and ({start_ts} + to_microseconds(try_cast(round({dur} * 1e6) as bigint)) > {lo} "
        f"or cast({start_ts} as date) = date '{day.isoformat()}')"
    )
    counts = {f: f"cast({_typed_value(f, REQUEST_TYPED)} as bigint)" for f in INTEGER_REQUEST_FIELDS}
    # the node as telemetry names it (identity.py): lower case, no :port, the cluster's aliases and pattern
    node_sql, node_params = identity.node_name_sql("node", "impact_trim(cluster)", identity.node_rules(con))
    images = image_fields.values_sql(image_sql, with_quality=bool(labels))
    # (columns named: a warehouse from before the image fields has them in another order)
    loaded_sql = f"""
        (partition_day, request_id, cluster, model, start_time, duration_s, input_tokens, output_tokens, tenant,
         endpoint, node, gpu, {", ".join(images)}, source_file, source_row, loaded_at, request_key)
        select date '{day.isoformat()}', impact_trim(request_id), impact_trim(cluster), impact_trim(model), {start_ts}, {dur},
               {counts['input_tokens']}, {counts['output_tokens']},
               nullif(impact_trim(tenant), ''), nullif(impact_trim(endpoint), ''), {node_sql},
               nullif(impact_trim(gpu), ''),
               {", ".join(images.values())}, source_file, source_row, $loaded_at, c.rowid
        from _req_candidates as c {quality_join}
        where c.rowid not in (select row_id from _req_rejects) and {in_scope}
    """
    rejected_sql = f"""
        select reject_day, 'requests', source_file, source_row, reason, raw_record, now()::timestamp
        from _req_rejects
        where reject_day = date '{day.isoformat()}' or reject_day is null
    """
    summary.loaded = _store(
        con, "requests", day, "raw.requests", loaded_sql, rejected_sql, displays, params=node_params
    )
    summary.rejected_by_reason = _reason_counts(con, "_req_rejects", day)
    summary.rejected = sum(summary.rejected_by_reason.values())
    summary.lines_in_scope = summary.loaded + summary.rejected
    con.execute("drop view if exists _req_rows")
    for table in ("_req_candidates", "_req_bad", "_req_dups", "_req_rejects", "_req_quality"):
        con.execute(f"drop table if exists {table}")
    return summary


# --------------------------------------------------------------------------------------------------------------
# Telemetry
# --------------------------------------------------------------------------------------------------------------


def _metrics_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "create or replace temp table _metric_specs (metric varchar, quantity varchar, scale double, "
        "level varchar, exporter varchar)"
    )
    con.executemany(
        "insert into _metric_specs values (?, ?, ?, ?, ?)",
        [(m.metric, m.quantity, m.scale, m.level, m.exporter) for m in METRICS],
    )


def _prom_candidates(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    display: str,
    default_cluster: str | None,
    table: str,
    fields: tuple[str, ...] = TELEMETRY_FIELDS,
) -> None:
    """Append the samples of one Prometheus text file to `table` (its `fields`), chunk by chunk; timestamps and
    values typed. Only lines that fail to parse keep their text as raw_record (the lines of samples rejected later
    are read back by _attach_source_lines)."""
    from orchestration.lib.ingestion.prom import parse_prom_lines, prom_samples_to_long

    exprs = {
        '"timestamp"': "case when not isfinite(timestamp_s) then cast(timestamp_s as varchar) end",
        "timestamp__v": _epoch_s_ts_sql("timestamp_s"),
        "value__v": "value",
        **{f: f for f in ("cluster", "metric", "node", "gpu", "cpu", "mode", "gpu_uuid", "pci_bus_id")},
    }
    wanted = {k: v for k, v in exprs.items() if k.strip('"').removesuffix("__v") in fields}
    for batch in _line_batches(con, path, "_prom_line_batch"):
        long = prom_samples_to_long(con, parse_prom_lines(con, con.table(batch)), default_cluster=default_cluster)
        con.register("_prom_long", long)
        con.execute(
            f"""
            insert into {table} (source_file, source_row, raw_record, parse_error, {", ".join(wanted)})
            select $display, source_row, case when parse_error is not null then raw_record end, parse_error,
                {", ".join(wanted.values())}
            from _prom_long
            """,
            {"display": display},
        )
        con.unregister("_prom_long")


def _default_cluster_for(path: Path, telemetry_root: Path, clusters: set[str]) -> str | None:
    """`telemetry/<cluster>/...` names the cluster of files whose samples carry no cluster label."""
    parts = path.relative_to(telemetry_root).parts
    return parts[0] if len(parts) > 1 and parts[0] in clusters else None


def ingest_telemetry(
    con: duckdb.DuckDBPyConnection,
    data_dir: Path,
    day: dt.date,
    margin_s: float = DEFAULT_TELEMETRY_MARGIN_S,
    samples: str | None = None,
) -> IngestSummary:
    """Load the telemetry samples of `day` (plus `margin_s` either side) into raw.telemetry_samples.

    Values are converted to SI units of a canonical quantity (DCGM % -> 0-1, mJ -> J). Samples of metrics the
    method does not use are counted per metric as ignored, not rejected.

    `samples`, when given, names a table or view of `con` read INSTEAD of the telemetry/ files (samples pulled
    from Prometheus, lib/ingestion/prometheus.py), validated the same way: columns source_file, source_row, raw_record,
    timestamp (epoch s, double), cluster, metric, value (double), node, gpu, cpu, mode.
    """
    _install_macros(con)
    _metrics_table(con)
    root = data_dir / "telemetry"
    files = discover_files(root, TELEMETRY_SUFFIXES) if samples is None else []
    summary = IngestSummary(input="telemetry", partition_day=day, files=len(files))
    known_clusters = {r[0] for r in con.execute("select cluster from raw.clusters").fetchall()}
    _create_candidates(con, "_tel_candidates", TELEMETRY_FIELDS, TELEMETRY_TYPED)
    displays = []
    text_files: dict[str, Path] = {}  # whose rejected rows get their line read back
    if samples is not None:
        present = set(con.table(samples).columns)
        names = ", ".join(n if n in present else f"null as {n}" for n in ("gpu_uuid", "pci_bus_id"))
        con.execute(
            f"""
            insert into _tel_candidates (source_file, source_row, raw_record, "timestamp", timestamp__v, value__v,
                                         cluster, metric, node, gpu, cpu, mode, gpu_uuid, pci_bus_id)
            select source_file, source_row, raw_record,
                case when not isfinite("timestamp") then cast("timestamp" as varchar) end,
                {_epoch_s_ts_sql('"timestamp"')},
                value, cluster, metric, node, gpu, cpu, mode, {names}
            from {samples}
            """
        )
        displays = [r[0] for r in con.execute(f"select distinct source_file from {samples} order by 1").fetchall()]
        summary.files = len(displays)
    for path in files:
        display = _display_path(path, data_dir)
        displays.append(display)
        if path.name.endswith(".prom"):
            _prom_candidates(con, path, display, _default_cluster_for(path, root, known_clusters), "_tel_candidates")
            text_files[display] = path
        elif path.name.endswith((".csv", ".csv.gz")):
            _csv_candidates(con, path, display, TELEMETRY_FIELDS, "_tel_candidates", keep_lines=False)
            text_files[display] = path
        else:
            _parquet_candidates(con, path, display, TELEMETRY_FIELDS, TELEMETRY_TYPED, "_tel_candidates")

    lo = dt.datetime.combine(day, dt.time()) - dt.timedelta(seconds=margin_s)
    hi = dt.datetime.combine(day, dt.time()) + dt.timedelta(days=1, seconds=margin_s)
    lo_sql, hi_sql = f"timestamp '{lo.isoformat(sep=' ')}'", f"timestamp '{hi.isoformat(sep=' ')}'"
    # One pass per question over the candidates (no typed copy of millions of rows): typed sources (Parquet,
    # Prometheus) carry typed shadows, so the text parsing below only runs for CSV rows. Rows are identified by the
    # candidates' rowid.
    con.execute(
        f"""
        create or replace temp view _tel_rows as
        select c.rowid as row_id, c.source_file, c.source_row, c.raw_record, c.parse_error,
               c."timestamp", c.timestamp__v, c.value, c.value__v,
               impact_trim(c.cluster) as cluster, impact_trim(c.metric) as metric, impact_trim(c.node) as node,
               impact_trim(c.gpu) as gpu,
               impact_trim(c.cpu) as cpu, impact_trim(c.mode) as mode,
               impact_trim(c.gpu_uuid) as gpu_uuid, impact_trim(c.pci_bus_id) as pci_bus_id,
               {_typed_value("timestamp", TELEMETRY_TYPED)} as ts,
               {_typed_value("value", TELEMETRY_TYPED)} as v,
               m.quantity, m.scale, m.level
        from _tel_candidates c left join _metric_specs m on m.metric = impact_trim(c.metric)
        """
    )
    # Rows this partition can load or must report: in its time range, or without a usable time.
    relevant = f"(ts is null or impact_implausible_ts(ts) or (ts >= {lo_sql} and ts < {hi_sql}))"
    # 1. one pass over the candidates: what is wrong with a row (few rows: the reason is only rendered for them),
    #    and for the loadable rows the value in SI units and the series key (64-bit hash of the labels; node-level
    #    metrics carry no GPU). Kept: the rejected rows and the rows of this partition's range of a metric in use.
    con.execute(
        f"""
        create or replace temp table _tel_checked as
        select row_id, reason, ts, value, source_file, source_row, series_key from (
            select row_id, ts, quantity, source_file, source_row,
                case
                    when parse_error is not null then parse_error
                    when impact_blank(metric) then 'missing metric'
                    when quantity is null then null
                    when not {_present("timestamp")} then 'missing timestamp'
                    when (ts is null or impact_implausible_ts(ts))
                        and impact_epoch_unit({_shown("timestamp")}) is not null
                        then impact_epoch_unit({_shown("timestamp")}) || ' in timestamp '
                            || impact_quote({_shown("timestamp")}) || ' (epoch seconds or RFC 3339 expected)'
                    when ts is null then impact_ts_problem({_shown("timestamp")}, ts)
                    when impact_implausible_ts(ts)
                        then 'implausible timestamp ' || impact_quote({_shown("timestamp")})
                            || ' (before 2000 or in the future: clock skew?)'
                    when not {_present("value")} then 'missing value'
                    when v is null then 'non-numeric value ' || impact_quote({_shown("value")})
                    when isnan(v) or isinf(v) then 'value is ' || {_shown("value")}
                    when v < 0 then 'negative value (' || {_shown("value")} || ') for ' || metric
                    when quantity like '%utilization_ratio' and v * scale > 1.0000001
                        then 'utilisation above 100% (' || {_shown("value")} || ') for ' || metric
                    when impact_blank(cluster) then 'missing cluster'
                    when cluster not in (select cluster from raw.clusters)
                        then 'unknown cluster ' || impact_quote(cluster) || ' (not in clusters.yml)'
                    when impact_blank(node) then 'missing node label'
                    when level = 'gpu' and impact_blank(gpu) then 'missing gpu label for ' || metric
                end as reason,
                v * scale as value,
                hash(cluster, node, case when level = 'gpu' then gpu end, nullif(cpu, ''), nullif(mode, ''), metric)
                    as series_key
            from _tel_rows
            where {relevant}
        )
        where reason is not null or (quantity is not null and ts >= {lo_sql} and ts < {hi_sql})
        """
    )
    con.execute("create or replace temp view _tel_bad as select row_id, reason from _tel_checked where reason is not null")
    con.execute(
        "create or replace temp view _tel_good as "
        "select row_id, ts, value, source_file, source_row, series_key from _tel_checked where reason is null"
    )
    # 2. duplicates among the good rows: ranking only where a series and timestamp repeat
    con.execute(
        """
        create or replace temp table _tel_dups as
        with repeated as (
            -- one 64-bit hash per (series, timestamp): cheaper to group than the pair; the ranking below is by the
            -- pair itself, so a hash two pairs share merges nothing
            select hash(series_key, ts) as sample_hash from _tel_good group by sample_hash having count(*) > 1
        ),
        ranked as (
            select g.row_id,
                row_number() over (partition by g.series_key, g.ts order by g.source_file, g.source_row) as copy_no
            from _tel_good g
            where hash(g.series_key, g.ts) in (select sample_hash from repeated)
        )
        select row_id, 'duplicate sample (same series and timestamp)' as reason from ranked where copy_no > 1
        """
    )
    _rejects_table(
        con, "_tel_rejects", "_tel_rows", ("_tel_bad", "_tel_dups"), ("row_id",), "ts",
        _fill_raw_record_sql(TELEMETRY_FIELDS, TELEMETRY_TYPED),
    )
    _attach_source_lines(con, "_tel_rejects", text_files)
    series = _new_series_sql(con)
    loaded_sql = f"""
        select date '{day.isoformat()}', g.series_key, g.ts, g.value, g.source_file, g.source_row, $loaded_at
        from _tel_good g
        where g.row_id not in (select row_id from _tel_dups)
    """
    rejected_sql = f"""
        select reject_day, 'telemetry', source_file, source_row, reason, raw_record, now()::timestamp
        from _tel_rejects
        where reject_day = date '{day.isoformat()}' or reject_day is null
    """
    summary.loaded = _store(
        con, "telemetry", day, "raw.telemetry_points", loaded_sql, rejected_sql, displays, before_insert=series
    )
    summary.rejected_by_reason = _reason_counts(con, "_tel_rejects", day)
    summary.rejected = sum(summary.rejected_by_reason.values())
    # metrics the method does not use, counted for the day (one cheap pass over the metric names first: usually
    # every metric is a known one and the count is skipped)
    names = [r[0] for r in con.execute("select distinct metric from _tel_candidates").fetchall()]
    unused = [n for n in names if n is not None and n.strip() and n.strip() not in METRICS_BY_NAME]
    ignored = con.execute(
        f"""
        select 'unused metric ' || metric, count(*) from _tel_rows
        where list_contains($unused, metric) and quantity is null and cast(ts as date) = date '{day.isoformat()}'
          and parse_error is null
        group by metric order by count(*) desc limit 50
        """,
        {"unused": sorted({n.strip() for n in unused})},
    ).fetchall() if unused else []
    summary.ignored_by_reason = {str(k): int(n) for k, n in ignored}
    summary.lines_in_scope = summary.loaded + summary.rejected
    for view in ("_tel_rows", "_tel_bad", "_tel_good"):
        con.execute(f"drop view if exists {view}")
    for table in ("_tel_candidates", "_tel_checked", "_tel_dups", "_tel_rejects"):
        con.execute(f"drop table if exists {table}")
    return summary


def _new_series_sql(con: duckdb.DuckDBPyConnection) -> list[str | Callable[[], None]]:
    """Statements adding the partition's series not yet in raw.telemetry_series (and refusing a 64-bit key that two
    label sets share: astronomically unlikely, but a silent merge of two series would be wrong), then giving every
    series its normalised node, its GPU's one name and its logical key (identity.py)."""
    labels = (
        "cluster, node as node_label, case when level = 'gpu' then gpu end as gpu_label, nullif(cpu, '') as cpu, "
        "nullif(mode, '') as mode, metric, quantity, "
        "case when level = 'gpu' then nullif(gpu_uuid, '') end as gpu_uuid, "
        "case when level = 'gpu' then nullif(pci_bus_id, '') end as pci_bus_id"
    )
    key_columns = "series_key, cluster, node_label, gpu_label, cpu, mode, metric, quantity"
    rules = identity.node_rules(con)
    return [
        f"""
        create or replace temp table _tel_series as
        with representatives as (select series_key, min(row_id) as row_id from _tel_good group by series_key)
        select k.series_key, {labels}
        from representatives k join _tel_rows r using (row_id)
        """,
        # (rows written before node_label existed hold the labels in node and gpu)
        "update raw.telemetry_series set node_label = node, gpu_label = gpu where node_label is null",
        f"""
        select error('telemetry series key collision: ' || series_key) from (
            select series_key from (
                select {key_columns} from _tel_series
                union
                select {key_columns} from raw.telemetry_series
                where series_key in (select series_key from _tel_series)
            ) group by series_key having count(*) > 1
        )
        """,
        """
        insert into raw.telemetry_series (series_key, cluster, node, gpu, cpu, mode, metric, quantity, node_label,
                                          gpu_label, gpu_uuid, pci_bus_id)
        select series_key, cluster, node_label, gpu_label, cpu, mode, metric, quantity, node_label, gpu_label,
               gpu_uuid, pci_bus_id
        from _tel_series where series_key not in (select series_key from raw.telemetry_series)
        """,
        """
        update raw.telemetry_series as s
        set gpu_uuid = coalesce(s.gpu_uuid, t.gpu_uuid), pci_bus_id = coalesce(s.pci_bus_id, t.pci_bus_id)
        from _tel_series as t
        where s.series_key = t.series_key
          and ((s.gpu_uuid is null and t.gpu_uuid is not null) or (s.pci_bus_id is null and t.pci_bus_id is not null))
        """,
        lambda: identity.refresh_series_identity(con, rules),
        "drop table _tel_series",
    ]


# --------------------------------------------------------------------------------------------------------------
# Which days do the inputs cover?
# --------------------------------------------------------------------------------------------------------------


def _parquet_days(con: duckdb.DuckDBPyConnection, path: Path, field: str, exclude_midnight: bool) -> set[dt.date]:
    """The days of one Parquet file's timestamps, read straight from its typed column (epoch seconds or a
    timestamp; a text column goes through the same parsing as CSV), without copying its rows."""
    probe = con.sql("select * from read_parquet($p) limit 0", params={"p": str(path)})
    types = dict(zip(probe.columns, (str(t) for t in probe.types)))
    kind = types.get(field)
    if kind is None:
        return set()
    col = f'"{field}"'
    if kind.startswith("TIMESTAMP"):
        ts = f"cast({col} as timestamp)"
    elif kind.split("(")[0] in NUMERIC_TYPES:
        x = f"cast({col} as double)"
        ts = _epoch_s_ts_sql(x)
    else:
        ts = f"impact_parse_ts(cast({col} as varchar))"
    inside = f" and cast(ts as time) >= time '{SPILL_OVER_TIME}'" if exclude_midnight else ""
    rows = con.execute(
        f"select distinct cast(ts as date) from (select {ts} as ts from read_parquet($p)) "
        f"where ts is not null and not impact_implausible_ts(ts){inside}",
        {"p": str(path)},
    ).fetchall()
    return {r[0] for r in rows}


def days_in_inputs(
    con: duckdb.DuckDBPyConnection, data_dir: Path, only: Iterable[Path] | None = None
) -> list[dt.date]:
    """The UTC days that any readable, plausible request start or telemetry sample falls on, sorted (of `only`
    these files, when given). Reads just the timestamp of each row."""
    _install_macros(con)
    only_set = None if only is None else {Path(p).resolve() for p in only}
    days: set[dt.date] = set()
    for sub, suffixes, ts_field in (
        ("requests", REQUEST_SUFFIXES, "start_time"),
        ("telemetry", TELEMETRY_SUFFIXES, "timestamp"),
    ):
        table, fields, typed = f"_days_{sub}", (ts_field,), {ts_field: "timestamp"}
        _create_candidates(con, table, fields, typed)
        for path in discover_files(data_dir / sub, suffixes):
            if only_set is not None and path.resolve() not in only_set:
                continue
            name, display = path.name, _display_path(path, data_dir)
            if name.endswith(".otlp.json"):
                _otlp_candidates(con, path, display, table, fields)
            elif name.endswith(".prom"):
                _prom_candidates(con, path, display, None, table, fields)
            elif name.endswith(".jsonl"):
                _jsonl_candidates(con, path, display, fields, table)
            elif name.endswith((".csv", ".csv.gz")):
                _csv_candidates(con, path, display, fields, table)
            else:
                days.update(_parquet_days(con, path, ts_field, exclude_midnight=sub != "requests"))
        # A telemetry sample at 00:00:00 closes the previous day's last interval, and a duplicate scrape of it a few
        # hundred ms later is the same sample: alone they open no day (docs/telemetry-faults.md).
        only_inside = "" if sub == "requests" else f" and cast(ts as time) >= time '{SPILL_OVER_TIME}'"
        rows = con.execute(
            f"select distinct cast(ts as date) from (select {_typed_value(ts_field, typed)} as ts from {table}) "
            f"where ts is not null and not impact_implausible_ts(ts){only_inside}"
        ).fetchall()
        days.update(r[0] for r in rows)
        con.execute(f"drop table {table}")
    return sorted(days)
