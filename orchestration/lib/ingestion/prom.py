"""Prometheus text exposition format (and OpenMetrics), parsed set-based in DuckDB.

One row per sample line, nothing dropped: a line that does not parse comes back with a `parse_error` and as much
of the sample as could be read. Grammar (https://prometheus.io/docs/instrumenting/exposition_formats/):

    metric_name [ "{" label_name "=" '"' label_value '"' { "," ... } [ "," ] "}" ] value [ timestamp ]

Label values escape backslash, double quote and newline as \\\\, \\" and \\n. The timestamp is integer
milliseconds since the epoch in the Prometheus format and seconds (decimals allowed) in OpenMetrics. OpenMetrics
exemplars (`... # {trace_id="x"} 1.0`) are accepted and ignored. Not supported: Prometheus 3 quoted (UTF-8) metric
and label names (`{"my.metric", ...}`), which come back as "malformed sample line".
"""

from __future__ import annotations

import re

import duckdb

from orchestration.lib.ingestion.metrics import (
    CLUSTER_LABELS,
    GPU_LABELS,
    GPU_PCI_LABELS,
    GPU_UUID_LABELS,
    NODE_LABELS,
)
from orchestration.lib.ingestion.textlines import read_text_lines

__all__ = [
    "PER_CPU_METRICS", "TIMESTAMP_UNITS", "parse_prom_lines", "prom_samples_to_long", "read_prom_lines",
    "read_text_lines",
]

# Metrics whose `cpu` and `mode` labels are kept as columns by prom_samples_to_long.
PER_CPU_METRICS: tuple[str, ...] = ("node_cpu_seconds_total",)

# Divisor that turns the exposition timestamp into seconds.
TIMESTAMP_UNITS: dict[str, float] = {"ms": 1000.0, "s": 1.0}

# RE2 patterns (constants of this module, embedded as SQL literals; none contains a single quote).
_WS = r"[ \t]"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
_PAIR = rf"{_LABEL_NAME}{_WS}*={_WS}*{_QUOTED}{_WS}*"
# name, optional {label block} (quoted strings may hold braces and commas), value, optional timestamp, optional
# OpenMetrics exemplar.
_SAMPLE_RE = (
    rf"^{_WS}*(?P<metric>[a-zA-Z_:][a-zA-Z0-9_:]*){_WS}*"
    rf"(?:\{{(?P<labels>(?:[^\"{{}}]|{_QUOTED})*)\}})?"
    rf"{_WS}+(?P<value>[^ \t]+)"
    rf"(?:{_WS}+(?P<ts>[^ \t#][^ \t]*))?"
    rf"(?:{_WS}+#.*)?{_WS}*$"
)
_LABELS_OK_RE = rf"^{_WS}*(?:{_PAIR}(?:,{_WS}*{_PAIR})*(?:,{_WS}*)?)?$"
_PAIR_RE = rf"({_LABEL_NAME}){_WS}*={_WS}*\"((?:[^\"\\]|\\.)*)\""

for _pattern in (_SAMPLE_RE, _LABELS_OK_RE, _PAIR_RE):
    assert "'" not in _pattern


def _unescape(expr: str) -> str:
    """SQL that unescapes a label value: split on `\\\\` first so `\\\\n` stays a backslash followed by n."""
    return (
        f"array_to_string(list_transform(string_split({expr}, '\\\\'), "
        "lambda part: replace(replace(part, '\\\"', '\"'), '\\n', chr(10))), '\\')"
    )


def read_prom_lines(
    con: duckdb.DuckDBPyConnection, path: str, timestamp_unit: str = "ms"
) -> duckdb.DuckDBPyRelation:
    """Parse a Prometheus text exposition (or OpenMetrics) file: one row per non-comment, non-blank line.

    Columns: source_row BIGINT (1-based line number counting every line), raw_record VARCHAR (the line verbatim,
    without its line terminator), metric VARCHAR, labels MAP(VARCHAR, VARCHAR) (values unescaped), value DOUBLE
    (NaN, +Inf, -Inf and scientific notation accepted), timestamp_s DOUBLE (the optional timestamp in seconds,
    NULL when absent), parse_error VARCHAR (NULL when the line parsed; else "malformed sample line",
    "malformed labels", "duplicate label name", "non-numeric value '...'", "non-numeric timestamp").

    `timestamp_unit` is the unit of the timestamps in the file: "ms" (Prometheus text format, the default) or "s"
    (OpenMetrics). Comments include `# HELP`, `# TYPE` and OpenMetrics' `# EOF`. The relation is lazy and in file
    order.
    """
    return parse_prom_lines(con, read_text_lines(con, path), timestamp_unit)


def parse_prom_lines(
    con: duckdb.DuckDBPyConnection, lines: duckdb.DuckDBPyRelation, timestamp_unit: str = "ms"
) -> duckdb.DuckDBPyRelation:
    """`read_prom_lines` over a relation of text lines (source_row, line, line_error; `textlines.LINE_SCHEMA`),
    e.g. one chunk of a large file from `textlines.iter_line_batches`. A line that is not UTF-8 comes back with
    its line_error as parse_error."""
    if timestamp_unit not in TIMESTAMP_UNITS:
        raise ValueError(f"timestamp_unit must be one of {sorted(TIMESTAMP_UNITS)}, not {timestamp_unit!r}")
    unit = con.values([TIMESTAMP_UNITS[timestamp_unit]]).project("CAST(col0 AS DOUBLE) AS __ts_divisor")
    # The costly steps run only where needed (CASE evaluates a branch only for the rows that take it): label
    # validation and pair extraction on lines with a label block, unescaping on label sets holding a backslash.
    return (
        lines
        .filter("regexp_matches(line, '^[ \\t]*[^ \\t#]')")  # neither blank nor a comment
        .cross(unit)
        .project(
            "source_row, line AS raw_record, line_error, __ts_divisor, "
            f"regexp_extract(line, '{_SAMPLE_RE}', ['metric', 'labels', 'value', 'ts']) AS m"
        )
        .project(
            "source_row, raw_record, line_error, nullif(m.metric, '') AS metric, m.labels AS labels_text, "
            "m.value AS value_text, nullif(m.ts, '') AS ts_text, "
            "TRY_CAST(m.value AS DOUBLE) AS value, "
            "TRY_CAST(nullif(m.ts, '') AS DOUBLE) / __ts_divisor AS timestamp_s"
        )
        .project(
            "source_row, raw_record, line_error, metric, labels_text, value_text, ts_text, value, timestamp_s, "
            f"labels_text = '' OR regexp_full_match(labels_text, '{_LABELS_OK_RE}') AS labels_ok"
        )
        .project(
            "source_row, raw_record, line_error, metric, labels_text, value_text, ts_text, value, timestamp_s, "
            "labels_ok, "
            "CASE WHEN labels_text = '' THEN CAST([] AS STRUCT(k VARCHAR, v VARCHAR)[]) "
            f"WHEN labels_ok THEN regexp_extract_all(labels_text, '{_PAIR_RE}', ['k', 'v']) END AS pairs"
        )
        .project(
            "source_row, raw_record, line_error, metric, value, value_text, ts_text, labels_ok, "
            "CASE WHEN isfinite(timestamp_s) THEN timestamp_s END AS timestamp_s, "
            "CASE WHEN contains(labels_text, chr(92)) THEN list_transform(pairs, "
            f"lambda pair: {{'k': pair.k, 'v': {_unescape('pair.v')}}}) ELSE pairs END AS pairs, "
            "ts_text IS NOT NULL AND NOT coalesce(isfinite(timestamp_s), false) AS bad_ts"
        )
        .project(
            "source_row, raw_record, metric, value, timestamp_s, pairs, "
            "CASE "
            "WHEN line_error IS NOT NULL THEN line_error "
            "WHEN metric IS NULL THEN 'malformed sample line' "
            "WHEN NOT labels_ok THEN 'malformed labels' "
            "WHEN len(list_distinct(list_transform(pairs, lambda pair: pair.k))) <> len(pairs) "
            "THEN 'duplicate label name' "
            "WHEN value IS NULL THEN 'non-numeric value ' || chr(39) || left(value_text, 40) || chr(39) "
            "WHEN bad_ts THEN 'non-numeric timestamp' "
            "END AS parse_error"
        )
        .project(
            "source_row, raw_record, metric, "
            "CASE WHEN parse_error IS NULL OR starts_with(parse_error, 'non-numeric ') "
            "THEN map_from_entries(pairs) END AS labels, "
            "value, timestamp_s, parse_error"
        )
    )


def prom_samples_to_long(
    con: duckdb.DuckDBPyConnection,
    rel: duckdb.DuckDBPyRelation,
    default_cluster: str | None = None,
    default_timestamp_s: float | None = None,
) -> duckdb.DuckDBPyRelation:
    """Map the rows of `read_prom_lines` onto the project's long telemetry format.

    Columns: source_row BIGINT, raw_record VARCHAR, timestamp_s DOUBLE, cluster, node, gpu, metric VARCHAR,
    value DOUBLE, cpu, mode VARCHAR, parse_error VARCHAR, gpu_uuid, pci_bus_id VARCHAR.

    cluster is the first non-empty label of CLUSTER_LABELS, else `default_cluster`; node the first non-empty of
    NODE_LABELS; gpu the first non-empty of GPU_LABELS (the alias tuples of `metrics.py`, in order; an empty label
    value counts as absent, as in Prometheus). cpu and mode are the labels of those names for PER_CPU_METRICS, NULL
    otherwise. gpu_uuid and pci_bus_id are the GPU's other names when the series carries them (GPU_UUID_LABELS,
    GPU_PCI_LABELS): DCGM exports the index, the UUID and the bus id together. A sample without a timestamp takes `default_timestamp_s` when given, else gets parse_error
    "sample has no timestamp" (a parse error of the line itself takes precedence). The defaults reach DuckDB as
    values; the alias names are validated Prometheus names and become a coalesce over map lookups.
    """
    settings = con.values([default_cluster, default_timestamp_s]).project(
        "CAST(col0 AS VARCHAR) AS __default_cluster, CAST(col1 AS DOUBLE) AS __default_ts"
    )
    per_cpu = " OR ".join(f"metric = {_label_literal(m)}" for m in PER_CPU_METRICS) or "false"
    return rel.cross(settings).project(
        "source_row, raw_record, "
        "coalesce(timestamp_s, __default_ts) AS timestamp_s, "
        f"coalesce({_first_label(CLUSTER_LABELS)}, __default_cluster) AS cluster, "
        f"{_first_label(NODE_LABELS)} AS node, "
        f"{_first_label(GPU_LABELS)} AS gpu, "
        "metric, value, "
        f"CASE WHEN {per_cpu} THEN nullif(labels['cpu'], '') END AS cpu, "
        f"CASE WHEN {per_cpu} THEN nullif(labels['mode'], '') END AS mode, "
        "coalesce(parse_error, CASE WHEN coalesce(timestamp_s, __default_ts) IS NULL "
        "THEN 'sample has no timestamp' END) AS parse_error, "
        f"{_first_label(GPU_UUID_LABELS)} AS gpu_uuid, "
        f"{_first_label(GPU_PCI_LABELS)} AS pci_bus_id"
    )


def _label_literal(name: str) -> str:
    """A label or metric name as a SQL string literal; only names of the Prometheus grammar are accepted, so the
    literal cannot hold a quote (these names come from this code base, never from the data)."""
    if not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", name):
        raise ValueError(f"not a Prometheus name: {name!r}")
    return f"'{name}'"


def _first_label(aliases: tuple[str, ...]) -> str:
    """SQL: the first non-empty value among the label aliases, in order (NULL when none is set)."""
    lookups = ", ".join(f"nullif(labels[{_label_literal(a)}], '')" for a in aliases)
    return f"coalesce({lookups})" if aliases else "CAST(NULL AS VARCHAR)"
