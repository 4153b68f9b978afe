"""Static check: no model uses a DuckDB-only (or Spark-only) construct directly (docs/spark.md, "Porting SQL").

Every engine difference is a macro in dbt_project/macros/engines/engines.sql; model SQL calls the macro. New or
merged SQL that calls the engine's function directly fails here, with the macro to use instead.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestration import settings

PROJECT = settings.DBT_PROJECT_DIR
# the construct (a regular expression over the SQL outside Jinja, lower-cased) -> the macro to call instead
FORBIDDEN: dict[str, str] = {
    r"\bgenerate_series\s*\(": "explode_range / explode_months",
    r"\bunnest\s*\(": "explode_range / explode_months",
    r"\bsequence\s*\(": "explode_range / explode_months",
    r"\bepoch_us\s*\(": "epoch_us / epoch_s",
    r"\bunix_micros\s*\(": "epoch_us / epoch_s",
    r"\bepoch\s*\(": "epoch_s",
    r"\bqualify\b": "first_row_per",
    r"\bdistinct\s+on\b": "first_row_per",
    r"\blist_contains\s*\(": "(none yet: add one to macros/engines/engines.sql)",
    r"\barray_contains\s*\(": "(none yet: add one to macros/engines/engines.sql)",
    r"\bstrftime\s*\(": "format_utc_timestamp",
    r"\bdate_format\s*\(": "format_utc_timestamp",
    r"\*\s*exclude\s*\(": "(none yet: list the columns)",
    r"\*\s*except\s*\(": "(none yet: list the columns)",
    r"\bnot\s+materialized\b": "not_materialized",
    r"\bas\s+materialized\s*\(": "materialized",
    r"\bdate_diff\s*\(": "days_between",
    r"\bdatediff\s*\(": "days_between / months_between",
    r"\bdate_sub\s*\(": "days_between (DuckDB's date_sub is a difference, Spark's subtracts days)",
    r"\bmedian\s*\(": "median",
    r"\bquantile(_cont|_disc)?\s*\(": "quantile_cont",
    r"\bpercentile(_approx|_cont)?\s*\(": "median / quantile_cont",
    r"\bstarts_with\s*\(": "starts_with",
    r"\bstartswith\s*\(": "starts_with",
    # (string literals are blanked before matching: a fourth argument is DuckDB's 'g' flag, Spark's position)
    r"\bregexp_replace\s*\([^,()]*,[^,()]*,[^,()]*,[^,()]*\)": "regexp_replace_all",
    r"\bto_(microseconds|milliseconds|seconds|minutes|hours|days)\s*\(": "add_microseconds / add_hours",
    r"\btimestampadd\s*\(": "add_microseconds / add_hours",
    r"\bto_timestamp\s*\(": "timestamp_from_epoch_s",
    r"\btimestamp_seconds\s*\(": "timestamp_from_epoch_s",
    r"\brange\s*\(\s*\d": "day_hours",
    r"\bwith\s+recursive\b": "amortisation_chain (or a macro like it)",
    r"//": "int_div",
    r"\bdiv\b": "int_div",
    r"\bgroup\s+by\s+all\b": "(none: name the columns; Spark 3.5 has no GROUP BY ALL)",
    r"\border\s+by\s+all\b": "(none: name the columns)",
    r"\bas\s+varchar\b": "type_string",
    r"\bhash\s*\(": "(none: results must not depend on an engine's hash)",
    r"\bxxhash64\s*\(": "(none: results must not depend on an engine's hash)",
    r"\bany_value\s*\([^)]*\)\s*filter\b": "(none yet)",
    r"\bhistogram\s*\(": "(none yet)",
    r"\blist_\w+\s*\(": "(none yet: add one to macros/engines/engines.sql)",
    r"\bstruct_\w+\s*\(": "(none yet: add one to macros/engines/engines.sql)",
    r"\bregexp_(extract|matches|full_match)\s*\(": "(none yet: add one to macros/engines/engines.sql)",
    r"\b(array_to_string|array_join)\s*\(": "list_join",
    r"\b(len|array_size|size|cardinality)\s*\(": "list_length",
    r"\b(list|array_agg|collect_list)\s*\(": "sorted_list_agg",
    r"\bexplode\s*\(": "explode_list / explode_range",
    r"->": "json_field_text / json_field_text_list",
    r"\b(to_json|get_json_object|from_json|json_extract\w*)\s*\(": "json_object / json_field_text",
    r"\bnamed_struct\s*\(": "json_object",
    r"\[\s*[a-z_]": "list_of",
    r"::": "cast(x as type)",
}

JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
COMMENT = re.compile(r"--[^\n]*")
STRING = re.compile(r"'(?:[^']|'')*'")


def model_sql() -> list[Path]:
    return sorted((PROJECT / "models").rglob("*.sql")) + sorted(
        p for p in (PROJECT / "macros").rglob("*.sql") if "engines" not in p.parts and "materializations" not in p.parts
    )


def violations(text: str) -> list[str]:
    """The forbidden constructs in SQL text (Jinja, comments and string literals removed), with the macro to use."""
    sql = COMMENT.sub("", JINJA.sub(" ", text))
    plain = STRING.sub("''", sql).lower()
    # (inside macros, the macro bodies are SQL too; their Jinja expressions were removed above)
    return [
        f"{match.group(0)!r}: use {macro}"
        for pattern, macro in FORBIDDEN.items()
        for match in re.finditer(pattern, plain)
    ] + [
        # a quote inside a literal: DuckDB's '' is Spark's end of one literal and start of the next
        f"{match.group(0)!r}: use text_literal"
        for match in STRING.finditer(sql)
        if "''" in match.group(0)[1:-1]
    ]


@pytest.mark.parametrize("path", model_sql(), ids=lambda p: str(p.relative_to(PROJECT)))
def test_model_sql_uses_the_engine_macros(path: Path):
    found = violations(path.read_text())
    assert not found, f"{path.relative_to(PROJECT)} uses engine-specific SQL directly:\n  " + "\n  ".join(found)


def test_the_check_finds_each_duckdb_construct():
    """The check is not vacuous: the constructs the models used before the port are each caught."""
    before = [
        "select unnest(generate_series(a, b)) as w",
        "select epoch_us(t) / 1e6",
        "select * from t qualify row_number() over (partition by a order by b) = 1",
        "select strftime(t, '%Y')",
        "with x as not materialized (select 1) select * from x",
        "select date_diff('day', a, b)",
        "select median(x)",
        "select quantile_cont(x, 0.05)",
        "select regexp_replace(x, '[a]', '', 'g')",
        "select t + to_microseconds(5)",
        "select a // 2",
        "select * from range(24) as h",
        "select cast(null as varchar)",
        "select distinct on (a) * from t",
        "select a, count(*) from t group by all",
        "select list_contains(l, 1)",
        "select * exclude (a) from t",
        "select hash(a)",
    ]
    for sql in before:
        assert violations(sql), sql
    assert not violations("select {{ median('x') }} as m -- median(x) in a comment\nfrom t where s = 'median(x)'")
