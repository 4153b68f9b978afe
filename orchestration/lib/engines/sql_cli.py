"""`impact sql`: one SQL statement on the warehouse, on either engine, for operators and checks.

    impact sql "select ..." [--engine duckdb|spark] [--warehouse W] [--json]

DuckDB: W is the warehouse file, opened read-only. Spark: W is the warehouse directory; the statement runs on
$SPARK_REMOTE, else on a local Spark Connect server started for W for this one statement (10-20 s of start-up).
Prints the rows as a table, or with --json as a JSON list of objects (dates and timestamps as ISO text).
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import json
import math
import os
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

from orchestration import settings
from orchestration.lib import engines


def default_warehouse(engine: str) -> Path:
    return settings.DEFAULT_SPARK_WAREHOUSE if engine == "spark" else settings.DEFAULT_WAREHOUSE


def _plain(value: object) -> object:
    """A JSON-ready value."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return _plain(value.item())
    return value


def run_sql(sql: str, engine: str, warehouse: Path) -> tuple[list[str], list[tuple]]:
    """(column names, rows) of ``sql`` on the warehouse."""
    if engine == "spark":
        from orchestration.lib.engines.spark_server import REMOTE_ENV, LocalSparkServer

        server = nullcontext() if os.environ.get(REMOTE_ENV) else LocalSparkServer(warehouse)
        with server:
            con = engines.open_engine("spark", None)
            frame = con.execute(sql).frame
            return list(frame.columns), [tuple(r) for r in frame.collect()]
    if not warehouse.exists():
        raise FileNotFoundError(f"{warehouse}: no such warehouse")
    con = engines.open_engine("duckdb", warehouse, read_only=True)
    try:
        result = con.execute(sql)
        names = [d[0] for d in result.description] if result.description else []
        return names, result.fetchall() if names else []
    finally:
        con.close()


def sql_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="impact sql", description=__doc__.split("\n\n")[0])
    parser.add_argument("sql", help="the SQL statement")
    parser.add_argument("--engine", help="duckdb (default) or spark (default: $IMPACT_ENGINE)")
    parser.add_argument("--warehouse", help="DuckDB file or Spark warehouse directory (default: $IMPACT_WAREHOUSE "
                        "or $IMPACT_SPARK_WAREHOUSE, else the demo's)")
    parser.add_argument("--json", action="store_true", help="print a JSON list of objects")
    args = parser.parse_args(argv)
    try:
        engine = engines.engine_name(args.engine)
    except ValueError as exc:
        print(f"impact sql: {exc}", file=sys.stderr)
        return 2
    env = settings.SPARK_WAREHOUSE_ENV if engine == "spark" else settings.WAREHOUSE_ENV
    warehouse = Path(args.warehouse or os.environ.get(env) or default_warehouse(engine)).expanduser().resolve()
    try:
        names, rows = run_sql(args.sql, engine, warehouse)
    except Exception as exc:  # noqa: BLE001 - a bad statement is the user's to fix: say why, no traceback
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"impact sql: {message}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([{n: _plain(v) for n, v in zip(names, row)} for row in rows], indent=1))
    elif names:
        from orchestration.cli import format_table

        print(format_table(names, rows))
    return 0
