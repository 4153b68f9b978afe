"""Are two warehouses equal? Every model table compared row by row across engines (tests/test_spark_equality.py).

Rows are matched on their non-floating-point columns (text, integers, dates, timestamps, booleans: the keys and
labels, which must be equal), and floating-point values must agree to ``rel_tol`` relative. A DuckDB NaN (0/0 is
IEEE there) and a Spark NULL (0/0 is NULL with ANSI mode off) count as the same missing value. Column order does
not matter (Spark puts a table's partition column last).
"""

from __future__ import annotations

import datetime as dt
import decimal

import numpy as np
import pandas as pd

REL_TOL = 1e-9


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Each column in one representation whatever the engine: timestamps and dates as pandas timestamps, decimals
    and integers as numbers (integers stay exact), booleans as booleans, lists as their text, text as is."""
    out = {}
    for c in frame.columns:
        s = frame[c]
        values = s.dropna()
        sample = values.iloc[0] if len(values) else None
        if isinstance(sample, (list, tuple, np.ndarray)):  # a list column (adapters): compared as its text
            out[c] = s.map(
                lambda v: "[" + ", ".join(str(x) for x in v) + "]" if isinstance(v, (list, tuple, np.ndarray)) else None
            )
        elif pd.api.types.is_datetime64_any_dtype(s):
            s = pd.to_datetime(s)
            out[c] = s.dt.tz_localize(None) if s.dt.tz is not None else s
        elif isinstance(sample, (dt.datetime, dt.date, pd.Timestamp)):
            out[c] = pd.to_datetime(s)
        elif isinstance(sample, decimal.Decimal):
            out[c] = s.map(lambda v: None if v is None else float(v)).astype("float64")
        elif pd.api.types.is_bool_dtype(s) or isinstance(sample, (bool, np.bool_)):
            out[c] = s.map(lambda v: None if v is None or pd.isna(v) else bool(v)).astype("object")
        elif pd.api.types.is_integer_dtype(s) or isinstance(sample, (int, np.integer)):
            out[c] = s.map(lambda v: None if v is None or pd.isna(v) else int(v)).astype("object")
        else:
            out[c] = s
    return pd.DataFrame(out, index=frame.index)


def _float_columns(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    return [c for c in a.columns if pd.api.types.is_float_dtype(a[c]) or pd.api.types.is_float_dtype(b[c])]


def differences(a: pd.DataFrame, b: pd.DataFrame, rel_tol: float = REL_TOL, limit: int = 10) -> list[str]:
    """What differs between two versions of a table (empty: equal), at most ``limit`` lines."""
    if set(a.columns) != set(b.columns):
        only_a, only_b = sorted(set(a.columns) - set(b.columns)), sorted(set(b.columns) - set(a.columns))
        return [f"columns differ: only in the first {only_a}, only in the second {only_b}"]
    if len(a) != len(b):
        return [f"row counts differ: {len(a)} vs {len(b)}"]
    cols = sorted(a.columns)
    a, b = _normalise(a[cols]), _normalise(b[cols])
    floats = _float_columns(a, b)
    keys = [c for c in cols if c not in floats]
    order = keys + floats
    a = a.sort_values(order, na_position="first", kind="mergesort").reset_index(drop=True)
    b = b.sort_values(order, na_position="first", kind="mergesort").reset_index(drop=True)
    out: list[str] = []
    for c in keys:
        x, y = a[c], b[c]
        same = (x == y).fillna(False).to_numpy(dtype=bool) | (x.isna() & y.isna()).to_numpy()
        for i in np.flatnonzero(~same)[:limit]:
            out.append(f"row {i} {c}: {x.iloc[i]!r} vs {y.iloc[i]!r}")
    for c in floats:
        x = pd.to_numeric(a[c], errors="coerce").to_numpy(dtype="float64")
        y = pd.to_numeric(b[c], errors="coerce").to_numpy(dtype="float64")
        both_missing = np.isnan(x) & np.isnan(y)
        close = np.abs(x - y) <= rel_tol * np.maximum(np.abs(x), np.abs(y))
        bad = ~(both_missing | close | (x == y))
        for i in np.flatnonzero(bad)[:limit]:
            rel = abs(x[i] - y[i]) / max(abs(x[i]), abs(y[i])) if not (np.isnan(x[i]) or np.isnan(y[i])) else "nan"
            out.append(f"row {i} {c}: {x[i]!r} vs {y[i]!r} (relative {rel})")
    return out[:limit]
