"""dbt unit tests (window edges, midnight, counter resets, gaps, shares, monthly training rates) run against an empty warehouse."""

import os
import subprocess
import sys
from pathlib import Path

from orchestration import settings
from orchestration.lib.factors import FACTOR_DDL
from orchestration.lib.warehouse import warehouse

DBT = str(Path(sys.executable).parent / "dbt")


def _dbt(args, warehouse_path):
    env = {**os.environ, settings.WAREHOUSE_ENV: str(warehouse_path)}
    return subprocess.run(
        [DBT, *args, "--profiles-dir", str(settings.DBT_PROJECT_DIR), "--project-dir",
         str(settings.DBT_PROJECT_DIR), "--vars", '{"partition_day": "2024-05-01"}', "--no-partial-parse",
         "--target-path", str(warehouse_path.parent / "target")],
        env=env, capture_output=True, text=True, check=False,
    )


def test_dbt_unit_tests_pass(tmp_path):
    path = tmp_path / "unit.duckdb"
    with warehouse(path) as con:  # the raw and factor tables the sources point at
        for ddl in FACTOR_DDL:
            con.execute(ddl)
    built = _dbt(["run", "--empty"], path)
    assert built.returncode == 0, built.stdout[-3000:]
    tested = _dbt(["test", "--select", "test_type:unit"], path)
    assert tested.returncode == 0, tested.stdout[-5000:]
    assert "PASS=12" in tested.stdout, tested.stdout[-2000:]
