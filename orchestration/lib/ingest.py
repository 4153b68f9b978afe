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
import gzip
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import yaml

from orchestration.lib.metrics import METRICS
from orchestration.lib.textlines import read_text_lines

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
    "input_pixels",
    "output_pixels",
    "quality_steps",
    "lora",
)
INTEGER_REQUEST_FIELDS: tuple[str, ...] = (
    "input_tokens",
    "output_tokens",
    "input_pixels",
    "output_pixels",
    "quality_steps",
)
TELEMETRY_FIELDS: tuple[str, ...] = ("timestamp", "cluster", "metric", "value", "node", "gpu", "cpu", "mode")

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
)
ATTRIBUTION_LEVELS: tuple[str, ...] = ("auto", "cluster", "node", "gpu")

DEFAULT_MAX_REQUEST_DURATION_S = 6 * 3600.0
DEFAULT_TELEMETRY_MARGIN_S = 600.0


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

    def as_metadata(self) -> dict[str, object]:
        return {
            "files": self.files,
            "lines_in_scope": self.lines_in_scope,
            "loaded": self.loaded,
            "rejected": self.rejected,
            "rejected_by_reason": dict(self.rejected_by_reason),
            "ignored_by_reason": dict(self.ignored_by_reason),
        }


# --------------------------------------------------------------------------------------------------------------
# SQL helpers shared by the loaders
# --------------------------------------------------------------------------------------------------------------

MACROS: tuple[str, ...] = (
    # RFC 3339 with an offset (Z or +hh:mm), or epoch seconds -> UTC TIMESTAMP; NULL when unreadable. A time
    # without an offset is refused rather than guessed: a local-time log would otherwise load hours off.
    """
    create or replace temp macro impact_parse_ts(s) as (
        case
            when s is null or trim(s) = '' then null
            when regexp_full_match(trim(s), '[+-]?[0-9]+(\\.[0-9]*)?([eE][+-]?[0-9]+)?')
                then try(make_timestamp(cast(round(cast(trim(s) as double) * 1000000) as bigint)))
            when regexp_full_match(
                trim(s),
                '[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]+)?)?([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)'
            )
                then try_cast(try_cast(trim(s) as timestamptz) as timestamp)
        end
    )
    """,
    # Why a timestamp was refused, for the rejection reason.
    """
    create or replace temp macro impact_ts_problem(s, ts) as (
        case
            when ts is not null then null
            when regexp_full_match(trim(s), '[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9:.]+')
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
    "create or replace temp macro impact_blank(s) as (s is null or trim(s) = '')",
    "create or replace temp macro impact_quote(s) as ('''' || coalesce(s, '') || '''')",
)


def _install_macros(con: duckdb.DuckDBPyConnection) -> None:
    for macro in MACROS:
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


@contextmanager
def _plain_text(path: Path) -> Iterator[Path]:
    """The file itself, or a decompressed temporary copy of a .gz file (streamed, not read into memory)."""
    if not path.name.endswith(".gz"):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="impact-") as tmp:
        plain = Path(tmp) / path.name[: -len(".gz")]
        with gzip.open(path, "rb") as src, plain.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        yield plain


def _csv_candidates(
    con: duckdb.DuckDBPyConnection, path: Path, display: str, fields: tuple[str, ...], table: str
) -> None:
    """Append the rows of one CSV file (all text) to `table`, malformed lines included with their reason.

    Good rows get their real 1-based line number: DuckDB reports the line of each rejected record, so the k-th good
    row is the k-th data line that is neither blank nor rejected (exact unless a quoted field spans lines, in which
    case the row's ordinal is used and the reason says so).
    """
    con.execute("drop table if exists _csv_rejects; drop table if exists _csv_scans")
    probe = con.sql(
        "select * from read_csv($p, all_varchar = true, header = true, null_padding = false, "
        "store_rejects = true, rejects_table = '_csv_rejects', rejects_scan = '_csv_scans', "
        "parallel = false, max_line_size = 10000000)",
        params={"p": str(path)},
    )
    cols = list(probe.columns)
    probe.create_view("_csv_probe", replace=True)
    con.execute(
        "create or replace temp table _csv_good as "
        f"select row_number() over () as ordinal, {_varchar_projection(cols, fields)} from _csv_probe"
    )
    with _plain_text(path) as text_path:
        _materialise(read_text_lines(con, str(text_path)), "_csv_lines")
    con.execute(
        """
        create or replace temp table _csv_line_map as
        with data_lines as (
            select l.source_row, l.line
            from _csv_lines l
            where l.source_row > 1
              and trim(l.line) <> ''
              and l.source_row not in (select distinct line from _csv_rejects)
        )
        select row_number() over (order by source_row) as ordinal, source_row, line from data_lines
        """
    )
    field_list = ", ".join(f'g."{f}"' for f in fields)
    con.execute(
        f"""
        insert into {table}
        select $display, coalesce(m.source_row, g.ordinal + 1), coalesce(m.line, ''), null, {field_list}
        from _csv_good g left join _csv_line_map m using (ordinal)
        """,
        {"display": display},
    )
    null_fields = ", ".join("null" for _ in fields)
    con.execute(
        f"""
        insert into {table}
        select $display, r.line, coalesce(l.line, trim(r.csv_line, chr(10) || chr(13))),
               'malformed CSV line: ' || string_agg(distinct r.error_message, '; '), {null_fields}
        from _csv_rejects r left join _csv_lines l on l.source_row = r.line
        group by r.line, l.line, r.csv_line
        """,
        {"display": display},
    )
    con.execute("drop table if exists _csv_rejects; drop table if exists _csv_scans")


def _jsonl_candidates(
    con: duckdb.DuckDBPyConnection, path: Path, display: str, fields: tuple[str, ...], table: str
) -> int:
    """Append the lines of one JSON-lines file to `table`; returns the number of blank lines skipped."""
    _materialise(read_text_lines(con, str(path)), "_json_lines")
    extracts = ", ".join(
        f"case when doc is not null then json_extract_string(doc, '$.\"{f}\"') end as \"{f}\"" for f in fields
    )
    con.execute(
        f"""
        insert into {table}
        with parsed as (
            select source_row, line,
                   case when json_valid(line) and json_type(line) = 'OBJECT' then line::json end as doc,
                   case
                       when not json_valid(line) then 'malformed JSON'
                       when json_type(line) <> 'OBJECT' then 'JSON value is not an object'
                   end as parse_error
            from _json_lines
            where trim(line) <> ''
        )
        select $display, source_row, line, parse_error, {extracts} from parsed
        """,
        {"display": display},
    )
    (blank,) = con.execute("select count(*) from _json_lines where trim(line) = ''").fetchone()
    return int(blank)


def _parquet_candidates(
    con: duckdb.DuckDBPyConnection, path: Path, display: str, fields: tuple[str, ...], table: str
) -> None:
    """Append the rows of one Parquet file (cast to text, so validation is one code path) to `table`."""
    probe = con.sql("select * from read_parquet($p) limit 0", params={"p": str(path)})
    types = dict(zip(probe.columns, (str(t) for t in probe.types)))
    projection = _varchar_projection(types, fields)
    for name, kind in types.items():
        # A typed Parquet timestamp is unambiguous: with a zone it is an instant, without one Arrow means UTC.
        if name in fields and kind.startswith("TIMESTAMP"):
            projection = projection.replace(
                f'cast("{name}" as varchar) as "{name}"',
                f'strftime(cast("{name}" as timestamp), \'%Y-%m-%dT%H:%M:%S.%fZ\') as "{name}"',
            )
    con.execute(
        f"""
        insert into {table}
        select $display, file_row_number + 1, null, null, {projection}
        from read_parquet($p, file_row_number = true)
        """,
        {"display": display, "p": str(path)},
    )


def _fill_raw_record_sql(fields: tuple[str, ...]) -> str:
    """A JSON rendering of the parsed fields, for rejected rows that have no source line (Parquet)."""
    pairs = ", ".join(f"'{f}', \"{f}\"" for f in fields)
    return f"coalesce(raw_record, cast(json_object({pairs}) as varchar))"


def _store(
    con: duckdb.DuckDBPyConnection,
    input_name: str,
    day: dt.date,
    raw_table: str,
    loaded_sql: str,
    rejected_sql: str,
    files: list[str],
) -> None:
    """Replace the partition's rows (loaded and rejected) atomically."""
    con.execute("begin transaction")
    try:
        con.execute(f"delete from {raw_table} where partition_day = $day", {"day": day})
        con.execute(f"insert into {raw_table} {loaded_sql}")
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


def _reason_counts(con: duckdb.DuckDBPyConnection, table: str, day: dt.date) -> dict[str, int]:
    rows = con.execute(
        f"""
        select regexp_replace(reason, ' ''[^'']*''| \\([^)]*\\)|: .*', '', 'g') as kind, count(*)
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
    if float(item["host_max_w"]) < float(item["host_idle_w"]):
        return f"host_max_w ({item['host_max_w']}) is below host_idle_w ({item['host_idle_w']})"
    level = str(item.get("attribution_level", "auto"))
    if level not in ATTRIBUTION_LEVELS:
        return f"attribution_level '{level}' is not one of {', '.join(ATTRIBUTION_LEVELS)}"
    return None


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
            display,
        )
        for c in valid
    ]
    con.execute("begin transaction")
    try:
        con.execute("delete from raw.clusters")
        if rows:
            con.executemany(
                "insert into raw.clusters values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now()::timestamp)",
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


def _otlp_candidates(con: duckdb.DuckDBPyConnection, path: Path, display: str, table: str) -> int:
    """Append the GenAI spans of one OTLP JSON file to `table`; returns the count of non-GenAI spans ignored."""
    from orchestration.lib.otlp import read_otlp_spans

    spans = read_otlp_spans(con, str(path))
    _materialise(spans, "_otlp_spans")
    text_fields = tuple(f for f in REQUEST_FIELDS if f not in ("start_time", "duration_s"))
    projection = _varchar_projection(spans.columns, text_fields)
    # start_time/duration are typed in the span reader; render them as text for the common validation path.
    con.execute(
        f"""
        insert into {table} (source_file, source_row, raw_record, parse_error,
            {", ".join(text_fields)}, start_time, duration_s)
        select $display, source_row, raw_record, parse_error, {projection},
               strftime(start_time, '%Y-%m-%dT%H:%M:%S.%fZ'), cast(duration_s as varchar)
        from _otlp_spans
        where parse_error is not null or is_genai
        """,
        {"display": display},
    )
    (ignored,) = con.execute(
        "select count(*) from _otlp_spans where parse_error is null and not is_genai"
    ).fetchone()
    return int(ignored)


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
    columns = ", ".join(f'"{f}" varchar' for f in REQUEST_FIELDS)
    con.execute(
        "create or replace temp table _req_candidates (source_file varchar, source_row bigint, "
        f"raw_record varchar, parse_error varchar, {columns})"
    )
    ignored = {"blank lines": 0, "non-GenAI spans": 0}
    displays = []
    for path in files:
        display = _display_path(path, data_dir)
        displays.append(display)
        name = path.name
        if name.endswith(".otlp.json"):
            ignored["non-GenAI spans"] += _otlp_candidates(con, path, display, "_req_candidates")
        elif name.endswith(".jsonl"):
            ignored["blank lines"] += _jsonl_candidates(con, path, display, REQUEST_FIELDS, "_req_candidates")
        elif name.endswith(".csv"):
            _csv_candidates(con, path, display, REQUEST_FIELDS, "_req_candidates")
        else:
            _parquet_candidates(con, path, display, REQUEST_FIELDS, "_req_candidates")
    summary.ignored_by_reason = {k: v for k, v in ignored.items() if v}

    integer_checks = "\n".join(
        f"""
            when not impact_blank({f}) and try_cast(trim({f}) as double) is null
                then 'non-numeric {f} ' || impact_quote({f})
            when not impact_blank({f}) and (isnan(try_cast(trim({f}) as double))
                  or isinf(try_cast(trim({f}) as double)))
                then '{f} is ' || trim({f})
            when not impact_blank({f}) and try_cast(trim({f}) as double) < 0
                then 'negative {f} (' || trim({f}) || ')'
            when not impact_blank({f}) and try_cast(trim({f}) as double) <> floor(try_cast(trim({f}) as double))
                then 'non-integer {f} (' || trim({f}) || ')'"""
        for f in INTEGER_REQUEST_FIELDS
    )
    con.execute(
        f"""
        create or replace temp table _req_checked as
        with typed as (
            select c.*,
                   impact_parse_ts(c.start_time) as start_ts,
                   try_cast(trim(c.duration_s) as double) as dur
            from _req_candidates c
        ),
        reasoned as (
            select t.*,
                case
                    when parse_error is not null then parse_error
                    when impact_blank(request_id) then 'missing request_id'
                    when impact_blank(start_time) then 'missing start_time'
                    when start_ts is null then replace(impact_ts_problem(start_time, start_ts), 'timestamp', 'start_time')
                    when impact_implausible_ts(start_ts)
                        then 'implausible start_time ' || impact_quote(start_time)
                            || ' (before 2000 or in the future: clock skew?)'
                    when impact_blank(duration_s) then 'missing duration_s'
                    when dur is null then 'non-numeric duration_s ' || impact_quote(duration_s)
                    when isnan(dur) then 'duration_s is NaN'
                    when isinf(dur) then 'duration_s is infinite'
                    when dur < 0 then 'negative duration_s (' || trim(duration_s) || ')'
                    when dur > $max_dur
                        then 'duration_s ' || trim(duration_s) || ' exceeds the limit of ' || $max_dur || ' s'
                    {integer_checks}
                    when impact_blank(model) then 'missing model'
                    when impact_blank(cluster) then 'missing cluster'
                    when trim(cluster) not in (select cluster from raw.clusters)
                        then 'unknown cluster ' || impact_quote(cluster) || ' (not in clusters.yml)'
                end as reason
            from typed t
        ),
        ranked as (
            select r.*,
                case when reason is null then row_number() over (
                    partition by (reason is null), trim(request_id) order by source_file, source_row) end as copy_no,
                case when reason is null then first(source_file || ':' || source_row) over (
                    partition by (reason is null), trim(request_id) order by source_file, source_row) end as first_at
            from reasoned r
        ),
        file_days as (
            select source_file, mode(cast(start_ts as date)) as modal_day
            from reasoned where start_ts is not null and not impact_implausible_ts(start_ts) group by source_file
        )
        select r.*,
            coalesce(r.reason, case when copy_no > 1
                then 'duplicate request_id ' || impact_quote(trim(request_id)) || ' (first at ' || first_at || ')'
            end) as final_reason,
            coalesce(
                case when not impact_implausible_ts(r.start_ts) then cast(r.start_ts as date) end, f.modal_day
            ) as reject_day
        from ranked r left join file_days f using (source_file)
        """,
        {"max_dur": max_request_duration_s},
    )
    day_start = dt.datetime.combine(day, dt.time())
    day_end = day_start + dt.timedelta(days=1)
    params = f"timestamp '{day_start.isoformat(sep=' ')}'", f"timestamp '{day_end.isoformat(sep=' ')}'"
    in_scope = (
        f"final_reason is null and start_ts < {params[1]} "
        f"and (start_ts + to_microseconds(cast(round(dur * 1e6) as bigint)) > {params[0]} "
        f"or cast(start_ts as date) = date '{day.isoformat()}')"
    )
    int_casts = {f: f"cast(try_cast(trim({f}) as double) as bigint)" for f in INTEGER_REQUEST_FIELDS}
    loaded_sql = f"""
        select date '{day.isoformat()}', trim(request_id), trim(cluster), trim(model), start_ts, dur,
               {int_casts['input_tokens']}, {int_casts['output_tokens']},
               nullif(trim(tenant), ''), nullif(trim(endpoint), ''), nullif(trim(node), ''), nullif(trim(gpu), ''),
               {int_casts['input_pixels']}, {int_casts['output_pixels']}, {int_casts['quality_steps']},
               nullif(trim(lora), ''), source_file, source_row, now()::timestamp
        from _req_checked where {in_scope}
    """
    rejected_sql = f"""
        select reject_day, 'requests', source_file, source_row, final_reason,
               {_fill_raw_record_sql(REQUEST_FIELDS)}, now()::timestamp
        from _req_checked
        where final_reason is not null and (reject_day = date '{day.isoformat()}' or reject_day is null)
    """
    _store(con, "requests", day, "raw.requests", loaded_sql, rejected_sql, displays)
    (summary.loaded,) = con.execute(f"select count(*) from _req_checked where {in_scope}").fetchone()
    con.execute(
        "create or replace temp table _req_rejects as select final_reason as reason, reject_day "
        "from _req_checked where final_reason is not null"
    )
    summary.rejected_by_reason = _reason_counts(con, "_req_rejects", day)
    summary.rejected = sum(summary.rejected_by_reason.values())
    summary.lines_in_scope = summary.loaded + summary.rejected
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
    con: duckdb.DuckDBPyConnection, path: Path, display: str, default_cluster: str | None, table: str
) -> None:
    from orchestration.lib.prom import prom_samples_to_long, read_prom_lines

    _materialise(
        prom_samples_to_long(con, read_prom_lines(con, str(path)), default_cluster=default_cluster), "_prom_long"
    )
    con.execute(
        f"""
        insert into {table}
        select $display, source_row, raw_record, parse_error,
               cast(timestamp_s as varchar), cluster, metric, cast(value as varchar), node, gpu, cpu, mode
        from _prom_long
        """,
        {"display": display},
    )


def _default_cluster_for(path: Path, telemetry_root: Path, clusters: set[str]) -> str | None:
    """`telemetry/<cluster>/...` names the cluster of files whose samples carry no cluster label."""
    parts = path.relative_to(telemetry_root).parts
    return parts[0] if len(parts) > 1 and parts[0] in clusters else None


def ingest_telemetry(
    con: duckdb.DuckDBPyConnection,
    data_dir: Path,
    day: dt.date,
    margin_s: float = DEFAULT_TELEMETRY_MARGIN_S,
) -> IngestSummary:
    """Load the telemetry samples of `day` (plus `margin_s` either side) into raw.telemetry_samples.

    Values are converted to SI units of a canonical quantity (DCGM % -> 0-1, mJ -> J). Samples of metrics the
    method does not use are counted per metric as ignored, not rejected.
    """
    _install_macros(con)
    _metrics_table(con)
    root = data_dir / "telemetry"
    files = discover_files(root, TELEMETRY_SUFFIXES)
    summary = IngestSummary(input="telemetry", partition_day=day, files=len(files))
    known_clusters = {r[0] for r in con.execute("select cluster from raw.clusters").fetchall()}
    columns = ", ".join(f'"{f}" varchar' for f in TELEMETRY_FIELDS)
    con.execute(
        "create or replace temp table _tel_candidates (source_file varchar, source_row bigint, "
        f"raw_record varchar, parse_error varchar, {columns})"
    )
    displays = []
    for path in files:
        display = _display_path(path, data_dir)
        displays.append(display)
        if path.name.endswith(".prom"):
            _prom_candidates(con, path, display, _default_cluster_for(path, root, known_clusters), "_tel_candidates")
        elif path.name.endswith((".csv", ".csv.gz")):
            _csv_candidates(con, path, display, TELEMETRY_FIELDS, "_tel_candidates")
        else:
            _parquet_candidates(con, path, display, TELEMETRY_FIELDS, "_tel_candidates")

    lo = dt.datetime.combine(day, dt.time()) - dt.timedelta(seconds=margin_s)
    hi = dt.datetime.combine(day, dt.time()) + dt.timedelta(days=1, seconds=margin_s)
    con.execute(
        """
        create or replace temp table _tel_checked as
        with typed as (
            select c.*, impact_parse_ts(c."timestamp") as ts, try_cast(trim(c.value) as double) as v,
                   m.quantity, m.scale, m.level
            from _tel_candidates c left join _metric_specs m on m.metric = trim(c.metric)
        ),
        reasoned as (
            select t.*,
                case
                    when parse_error is not null then parse_error
                    when impact_blank(metric) then 'missing metric'
                    when quantity is null then null
                    when impact_blank("timestamp") then 'missing timestamp'
                    when ts is null then impact_ts_problem("timestamp", ts)
                    when impact_implausible_ts(ts)
                        then 'implausible timestamp ' || impact_quote("timestamp")
                            || ' (before 2000 or in the future: clock skew?)'
                    when impact_blank(value) then 'missing value'
                    when v is null then 'non-numeric value ' || impact_quote(value)
                    when isnan(v) or isinf(v) then 'value is ' || trim(value)
                    when v < 0 then 'negative value (' || trim(value) || ') for ' || trim(metric)
                    when quantity like '%utilization_ratio' and v * scale > 1.0000001
                        then 'utilisation above 100% (' || trim(value) || ') for ' || trim(metric)
                    when impact_blank(cluster) then 'missing cluster'
                    when trim(cluster) not in (select cluster from raw.clusters)
                        then 'unknown cluster ' || impact_quote(cluster) || ' (not in clusters.yml)'
                    when impact_blank(node) then 'missing node label'
                    when level = 'gpu' and impact_blank(gpu) then 'missing gpu label for ' || trim(metric)
                end as reason
            from typed t
        ),
        ranked as (
            select r.*,
                case when reason is null and quantity is not null then row_number() over (
                    partition by (reason is null and quantity is not null), trim(cluster), trim(node),
                        coalesce(trim(gpu), ''), coalesce(cpu, ''), coalesce(mode, ''), trim(metric), ts
                    order by source_file, source_row) end as copy_no
            from reasoned r
        ),
        file_days as (
            select source_file, mode(cast(ts as date)) as modal_day
            from reasoned where ts is not null and not impact_implausible_ts(ts) group by source_file
        )
        select r.*,
            coalesce(r.reason, case when copy_no > 1 then 'duplicate sample (same series and timestamp)' end)
                as final_reason,
            coalesce(
                case when not impact_implausible_ts(r.ts) then cast(r.ts as date) end, f.modal_day
            ) as reject_day
        from ranked r left join file_days f using (source_file)
        """
    )
    in_scope = (
        f"final_reason is null and quantity is not null "
        f"and ts >= timestamp '{lo.isoformat(sep=' ')}' and ts < timestamp '{hi.isoformat(sep=' ')}'"
    )
    loaded_sql = f"""
        select date '{day.isoformat()}', trim(cluster), trim(node),
               case when level = 'gpu' then trim(gpu) end, nullif(trim(cpu), ''), nullif(trim(mode), ''),
               trim(metric), quantity, ts, v * scale, source_file, source_row, now()::timestamp
        from _tel_checked where {in_scope}
    """
    rejected_sql = f"""
        select reject_day, 'telemetry', source_file, source_row, final_reason,
               {_fill_raw_record_sql(TELEMETRY_FIELDS)}, now()::timestamp
        from _tel_checked
        where final_reason is not null and (reject_day = date '{day.isoformat()}' or reject_day is null)
    """
    _store(con, "telemetry", day, "raw.telemetry_samples", loaded_sql, rejected_sql, displays)
    (summary.loaded,) = con.execute(f"select count(*) from _tel_checked where {in_scope}").fetchone()
    con.execute(
        "create or replace temp table _tel_rejects as select final_reason as reason, reject_day "
        "from _tel_checked where final_reason is not null"
    )
    summary.rejected_by_reason = _reason_counts(con, "_tel_rejects", day)
    summary.rejected = sum(summary.rejected_by_reason.values())
    ignored = con.execute(
        f"""
        select 'unused metric ' || trim(metric), count(*) from _tel_checked
        where final_reason is null and quantity is null and cast(ts as date) = date '{day.isoformat()}'
        group by trim(metric) order by count(*) desc limit 50
        """
    ).fetchall()
    summary.ignored_by_reason = {str(k): int(n) for k, n in ignored}
    summary.lines_in_scope = summary.loaded + summary.rejected
    for table in ("_tel_candidates", "_tel_checked", "_tel_rejects"):
        con.execute(f"drop table if exists {table}")
    return summary


# --------------------------------------------------------------------------------------------------------------
# Which days do the inputs cover?
# --------------------------------------------------------------------------------------------------------------


def days_in_inputs(
    con: duckdb.DuckDBPyConnection, data_dir: Path, only: Iterable[Path] | None = None
) -> list[dt.date]:
    """The UTC days that any readable request start or telemetry sample falls on, sorted (of `only` these files,
    when given)."""
    only_set = None if only is None else {Path(p).resolve() for p in only}
    _install_macros(con)
    days: set[dt.date] = set()
    for sub, suffixes, fields in (
        ("requests", REQUEST_SUFFIXES, REQUEST_FIELDS),
        ("telemetry", TELEMETRY_SUFFIXES, TELEMETRY_FIELDS),
    ):
        ts_field = "start_time" if sub == "requests" else "timestamp"
        table = f"_days_{sub}"
        columns = ", ".join(f'"{f}" varchar' for f in fields)
        con.execute(
            f"create or replace temp table {table} (source_file varchar, source_row bigint, "
            f"raw_record varchar, parse_error varchar, {columns})"
        )
        for path in discover_files(data_dir / sub, suffixes):
            if only_set is not None and path.resolve() not in only_set:
                continue
            name = path.name
            display = _display_path(path, data_dir)
            if name.endswith(".otlp.json"):
                _otlp_candidates(con, path, display, table)
            elif name.endswith(".prom"):
                _prom_candidates(con, path, display, None, table)
            elif name.endswith(".jsonl"):
                _jsonl_candidates(con, path, display, fields, table)
            elif name.endswith((".csv", ".csv.gz")):
                _csv_candidates(con, path, display, fields, table)
            else:
                _parquet_candidates(con, path, display, fields, table)
        # A telemetry sample at exactly 00:00:00 closes the previous day's last interval; alone it opens no day.
        only_inside = "" if sub == "requests" else " and cast(ts as time) <> time '00:00:00'"
        rows = con.execute(
            f'select distinct cast(ts as date) from (select impact_parse_ts("{ts_field}") as ts from {table}) '
            f"where ts is not null and not impact_implausible_ts(ts){only_inside}"
        ).fetchall()
        days.update(r[0] for r in rows)
        con.execute(f"drop table {table}")
    return sorted(days)
