"""Style as a test: ruff on the Python, sqlfluff (dbt templater, dbt_project/.sqlfluff) on the models."""

import os
import subprocess
import sys
from pathlib import Path

from orchestration import settings

BIN = Path(sys.executable).parent


def test_ruff_is_clean():
    result = subprocess.run(
        [str(BIN / "ruff"), "check", "orchestration", "tests", "benchmarks"],
        cwd=settings.REPO_ROOT, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:]


def test_sqlfluff_is_clean(tmp_path):
    env = {**os.environ, "IMPACT_PARTITION_DAY": "2024-01-01", settings.WAREHOUSE_ENV: str(tmp_path / "lint.duckdb")}
    result = subprocess.run(
        [str(BIN / "sqlfluff"), "lint", "models", "--nocolor", "--processes", "2"],
        cwd=settings.DBT_PROJECT_DIR, env=env, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:]
