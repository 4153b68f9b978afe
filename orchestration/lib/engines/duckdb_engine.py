"""The DuckDB engine: the warehouse file itself (orchestration.lib.warehouse.connect), with the Engine methods."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Self

import duckdb
import pandas as pd

from orchestration.lib import warehouse


class DuckDBEngine:
    """A DuckDB warehouse connection with the Engine interface (orchestration.lib.engines)."""

    name = "duckdb"

    def __init__(self, path: str | Path, read_only: bool = False):
        self.con = warehouse.connect(path, read_only=read_only)

    def execute(self, sql: str, params: Mapping[str, object] | list | None = None) -> duckdb.DuckDBPyConnection:
        return self.con.execute(sql, params)

    def query(self, sql: str, params: Mapping[str, object] | list | None = None) -> pd.DataFrame:
        return self.con.execute(sql, params).df()

    def has_table(self, table: str) -> bool:
        return warehouse.has_table(self.con, table)

    def write_table(self, table: str, df: pd.DataFrame, types: dict[str, str], mode: str = "replace") -> None:
        if mode == "replace":
            warehouse.replace_table(self.con, table, types, df)
            return
        if mode == "append" and len(df):
            frame = df.reindex(columns=list(types))  # noqa: F841 - read by DuckDB's replacement scan below
            casts = ", ".join(f"cast({warehouse.quote_ident(c)} as {t})" for c, t in types.items())
            self.con.execute(f"insert into {table} select {casts} from frame")
            return
        if mode == "append":
            return
        raise ValueError(f"mode must be replace, not {mode!r}")

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
