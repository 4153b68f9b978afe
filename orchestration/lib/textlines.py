"""Read a text file as numbered lines, set-based in DuckDB.

Shared by the Prometheus (`prom.py`) and OTLP JSON (`otlp.py`) parsers, and by the ingestion layer to give every
record its real 1-based line number.
"""

from __future__ import annotations

from pathlib import Path

import duckdb


def read_text_lines(con: duckdb.DuckDBPyConnection, path: str | Path) -> duckdb.DuckDBPyRelation:
    """Every line of the UTF-8 text file `path`, as a lazy relation `(source_row BIGINT, line VARCHAR)`.

    `source_row` is the 1-based line number counting every line (blank ones and comments included), in file order.
    The file is read whole by DuckDB's `read_text`, split on LF and unnested with its subscripts, so there is no
    line-length limit and numbering is exact (the CSV reader cannot guarantee either). A trailing CR (CRLF files) is
    removed from each line, a UTF-8 byte-order mark from the first; the empty string after a final newline is not a
    line. An empty file yields no rows.

    The path is passed to DuckDB as a value, never formatted into SQL. Invalid UTF-8 raises a DuckDB error when the
    relation is evaluated. Memory: about twice the file size while the relation is evaluated.
    """
    path = str(path)
    if not Path(path).is_file():
        raise FileNotFoundError(path)
    return (
        con.table_function("read_text", [path])
        .project("string_split(content, chr(10)) AS parts")
        .project(
            "CAST(generate_subscripts(parts, 1) AS BIGINT) AS source_row, len(parts) AS n_parts, "
            "unnest(parts) AS line"
        )
        .filter("NOT (source_row = n_parts AND line = '')")
        .project(
            "source_row, CASE WHEN source_row = 1 THEN ltrim(rtrim(line, chr(13)), chr(65279)) "
            "WHEN ends_with(line, chr(13)) THEN rtrim(line, chr(13)) ELSE line END AS line"
        )
    )
