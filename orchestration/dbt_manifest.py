"""Preparing the dbt manifest, which must exist (and be current) before the dbt assets are imported.

Used by the `impact` CLI and the test session; the Makefile applies the same rule with make's own timestamps.
`dbt parse` runs with a throw-away warehouse so preparing never touches a real one.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from orchestration import settings

MANIFEST = settings.DBT_PROJECT_DIR / "target" / "manifest.json"


def dbt_executable() -> str:
    """The dbt next to this Python (the project's venv), so nothing depends on PATH; else `dbt` from PATH."""
    beside = Path(sys.executable).parent / "dbt"
    return str(beside) if beside.exists() else "dbt"


def manifest_is_current() -> bool:
    project = settings.DBT_PROJECT_DIR
    sources = [project / "dbt_project.yml", *project.glob("models/**/*"), *project.glob("macros/**/*")]
    newest = max(p.stat().st_mtime for p in sources if p.is_file())
    return MANIFEST.exists() and MANIFEST.stat().st_mtime >= newest


def prepare_manifest() -> Path:
    """Run `dbt parse` when the manifest is missing or older than the project (one process at a time)."""
    MANIFEST.parent.mkdir(parents=True, exist_ok=True)
    with open(MANIFEST.parent / ".prepare.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if manifest_is_current():
            return MANIFEST
        with tempfile.TemporaryDirectory(prefix="impact-parse-") as tmp:
            env = {**os.environ, settings.WAREHOUSE_ENV: str(Path(tmp) / "parse.duckdb")}
            result = subprocess.run(
                [dbt_executable(), "parse", "--quiet", "--profiles-dir", str(settings.DBT_PROJECT_DIR),
                 "--project-dir", str(settings.DBT_PROJECT_DIR)],
                env=env, capture_output=True, text=True, check=False,
            )
        if result.returncode != 0:
            raise RuntimeError(f"dbt parse failed:\n{result.stdout[-4000:]}{result.stderr[-2000:]}")
    return MANIFEST
