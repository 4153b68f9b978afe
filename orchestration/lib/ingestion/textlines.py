"""Read a text file as numbered lines, in bounded memory, whatever its size or encoding faults.

Shared by the Prometheus (`prom.py`) and OTLP JSON (`otlp.py`) parsers and by the ingestion layer, which gives every
record its real 1-based line number.

The file (gzip-compressed when its name ends in .gz) is read in chunks of `chunk_bytes` (64 MB) cut at a line end,
so a 5 GB file needs a few chunks' worth of memory, not 5 GB; each chunk becomes one Arrow record batch of
`(source_row BIGINT, line VARCHAR, line_error VARCHAR)` built with numpy (no Python loop over lines, except over
the lines of a chunk that holds invalid UTF-8). `source_row` counts every line (blank ones and comments included)
in file order. A trailing CR (CRLF files) is removed from each line, a UTF-8 byte-order mark from the first; the
empty string after a final newline is not a line. A line longer than a chunk is carried over whole.

A line that is not valid UTF-8 (a cp1252 or Latin-1 export, a corrupt byte) does not stop the read: its `line` is
the text with the offending bytes shown escaped (``caf\\xe9``) and `line_error` says which byte, where, and what it
probably is; callers turn it into a rejected row. Valid lines have a NULL `line_error`.
"""

from __future__ import annotations

import gzip
import itertools
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

# 64 MB: each chunk is one statement, whose fixed cost (about 0.1 CPU-s) dominates below 32 MB chunks
DEFAULT_CHUNK_BYTES = 64 << 20
LINE_SCHEMA = pa.schema([("source_row", pa.int64()), ("line", pa.string()), ("line_error", pa.string())])
_BOM = b"\xef\xbb\xbf"
_INT32_MAX = 2**31 - 1
_table_ids = itertools.count()


def _utf8_problem(raw: bytes) -> tuple[str | None, str]:
    """(reason or None, the line as text with invalid bytes escaped)."""
    try:
        return None, raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        byte = raw[exc.start]
        guess = " (a cp1252/Latin-1 export?)" if 0x80 <= byte <= 0xFF else ""
        reason = (
            f"not UTF-8 text: byte 0x{byte:02X} at byte {exc.start + 1} of the line{guess}; "
            "the line is shown with its invalid bytes escaped"
        )
        return reason, raw.decode("utf-8", "backslashreplace")


def _batch(body: bytes, first_row: int, strip_bom: bool) -> pa.RecordBatch:
    """The lines of `body` (which ends with LF) as one record batch, numbered from first_row + 1."""
    buf = np.frombuffer(body, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    cut = ends.copy()
    crlf = (cut > starts) & (buf[np.maximum(cut - 1, 0)] == 13)
    cut[crlf] -= 1
    keep = np.ones(len(buf), dtype=bool)
    keep[ends] = False
    keep[cut[crlf]] = False
    if strip_bom and body.startswith(_BOM) and cut[0] >= 3:
        keep[:3] = False
        starts[0] = 3
    data = buf[keep]
    lengths = cut - starts
    offsets = np.zeros(len(ends) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    n = len(ends)
    rows = pa.array(np.arange(first_row + 1, first_row + n + 1, dtype=np.int64))
    if offsets[-1] <= _INT32_MAX:
        lines = pa.StringArray.from_buffers(n, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data))
    else:
        lines = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data)).cast(pa.string())
    try:
        lines.validate(full=True)
        errors = pa.nulls(n, pa.string())
    except pa.ArrowInvalid:
        lines, errors = _repair(data, offsets, n)
    return pa.RecordBatch.from_arrays([rows, lines, errors], schema=LINE_SCHEMA)


def _repair(data: np.ndarray, offsets: np.ndarray, n: int) -> tuple[pa.Array, pa.Array]:
    """Lines and errors of a chunk that holds invalid UTF-8: only the lines with a byte above 0x7F are decoded one by
    one (a Python loop over those lines of this chunk only)."""
    suspects = np.unique(np.searchsorted(offsets, np.flatnonzero(data >= 0x80), side="right") - 1)
    texts: list[str | None] = [None] * n
    errors: list[str | None] = [None] * n
    raw = data.tobytes()
    for i in suspects.tolist():
        errors[i], texts[i] = _utf8_problem(raw[offsets[i] : offsets[i + 1]])
    clean = np.ones(n, dtype=bool)
    clean[suspects] = False
    for i in np.flatnonzero(clean).tolist():  # plain ASCII lines of this chunk
        texts[i] = raw[offsets[i] : offsets[i + 1]].decode("ascii")
    return pa.array(texts, pa.string()), pa.array(errors, pa.string())


def iter_line_batches(path: str | Path, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[pa.RecordBatch]:
    """The lines of the text file `path` (gzip when it ends in .gz) as record batches of LINE_SCHEMA, in order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(str(path))
    opener = gzip.open if path.name.endswith(".gz") else open
    row, carry, first = 0, b"", True
    with opener(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            data = carry + block if carry else block
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                continue
            carry = data[cut + 1 :]
            batch = _batch(data[: cut + 1], row, first)
            first = False
            row += batch.num_rows
            yield batch
    if carry:
        yield _batch(carry + b"\n", row, first)


def read_text_lines(
    con: duckdb.DuckDBPyConnection, path: str | Path, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> duckdb.DuckDBPyRelation:
    """Every line of `path` as a relation `(source_row BIGINT, line VARCHAR, line_error VARCHAR)`.

    The lines are loaded chunk by chunk into a temporary table of `con` (which DuckDB spills to disk above its
    memory limit), so the relation can be evaluated more than once. To process a large file without keeping its
    lines, iterate `iter_line_batches` instead. The path is passed to Python's open(), never formatted into SQL.
    """
    name = f"_text_lines_{next(_table_ids)}"
    con.execute(f"create temp table {name} (source_row bigint, line varchar, line_error varchar)")
    for batch in iter_line_batches(path, chunk_bytes):
        con.register("_text_lines_batch", batch)
        try:
            con.execute(f"insert into {name} select * from _text_lines_batch")
        finally:
            con.unregister("_text_lines_batch")
    return con.table(name).order("source_row")
