"""Preparing the dbt manifest, which must exist (and be current) before the dbt assets are imported.

Used by the `impact` CLI and the test session; the Makefile applies the same rule with make's own timestamps.
`dbt parse` runs with a throw-away warehouse so preparing never touches a real one.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from orchestration import settings

MANIFEST = settings.DBT_PROJECT_DIR / "target" / "manifest.json"


def dbt_executable() -> str:
    """The dbt next to this Python (the project's venv), so nothing depends on PATH; else `dbt` from PATH. Through
    the venv's `impact-dbt` launcher when installed: it makes dbt die with the process that started it (a `kill -9`
    of `impact run` leaves no dbt behind; orchestration/lib/operations/launcher.py)."""
    for name in ("impact-dbt", "dbt"):
        beside = Path(sys.executable).parent / name
        if beside.exists():
            return str(beside)
    return "dbt"


def manifest_is_current() -> bool:
    project = settings.DBT_PROJECT_DIR
    sources = [project / "dbt_project.yml", *project.glob("models/**/*"), *project.glob("macros/**/*")]
    newest = max(p.stat().st_mtime for p in sources if p.is_file())
    return MANIFEST.exists() and MANIFEST.stat().st_mtime >= newest


def dbt_parse_command(target: Path | None = None) -> list[str]:
    """`dbt parse` of the project, into its default target folder or into ``target``."""
    project = str(settings.DBT_PROJECT_DIR)
    command = [dbt_executable(), "parse", "--quiet", "--profiles-dir", project, "--project-dir", project]
    return command + ["--target-path", str(target)] if target is not None else command


def prepare_manifest() -> Path:
    """Run `dbt parse` when the manifest is missing or older than the project (one process at a time)."""
    MANIFEST.parent.mkdir(parents=True, exist_ok=True)
    with open(MANIFEST.parent / ".prepare.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if manifest_is_current():
            return MANIFEST
        with tempfile.TemporaryDirectory(prefix="impact-parse-") as tmp:
            env = {**os.environ, settings.WAREHOUSE_ENV: str(Path(tmp) / "parse.duckdb")}
            result = subprocess.run(dbt_parse_command(), env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"dbt parse failed:\n{result.stdout[-4000:]}{result.stderr[-2000:]}")
    return MANIFEST


# --------------------------------------------------------------------------------------------------------------
# the parse of each warehouse's dbt target folder

PARSE_LOCK = ".parse.lock"
WAREHOUSE_MARKER = "warehouse.path"  # in each folder: the warehouse it belongs to (read by prune_target_folders)
GONE_IDLE_S = 3600  # a folder whose warehouse no longer exists is removed once untouched this long
UNMARKED_IDLE_S = 7 * 86400  # a folder from before the marker (its warehouse unknown): removed after a week idle


def warehouse_target_path(warehouse: Path) -> Path:
    """dbt's target folder for a warehouse: stable across runs (so dbt parses partially, not fully, each day) and
    distinct per warehouse (dbt's partial parse is only valid for the profile it was made with, whose path is the
    warehouse's)."""
    digest = hashlib.sha256(str(warehouse).encode()).hexdigest()[:12]
    return settings.DBT_PROJECT_DIR / "target" / f"warehouse-{digest}"


def claim_target_path(warehouse: Path) -> Path:
    """warehouse_target_path(warehouse), created, with the warehouse's path recorded in it."""
    target = warehouse_target_path(warehouse)
    target.mkdir(parents=True, exist_ok=True)
    marker = target / WAREHOUSE_MARKER
    if not marker.is_file():
        marker.write_text(str(warehouse))
    return target


def _in_use(folder: Path) -> bool:
    """Whether a background parse holds the folder's lock."""
    lock = folder / PARSE_LOCK
    if not lock.exists():
        return False
    with open(lock) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False


def prune_target_folders(now: float | None = None) -> list[Path]:
    """Remove the dbt target folders (warehouse_target_path) of warehouses that no longer exist, once untouched for
    GONE_IDLE_S (a warehouse being created now is not there yet), and folders without the warehouse marker once
    untouched for UNMARKED_IDLE_S. Each warehouse ever run, every test's temporary one included, leaves a folder of
    ~5 MB (manifest, partial parse, compiled SQL); it is only a cache: a removed folder costs its warehouse one
    full parse. Returns the folders removed."""
    now = time.time() if now is None else now
    removed = []
    for folder in sorted((settings.DBT_PROJECT_DIR / "target").glob("warehouse-*")):
        try:
            idle = now - max(p.stat().st_mtime for p in (folder, *folder.iterdir()))
            marker = folder / WAREHOUSE_MARKER
            if marker.is_file():
                stale = idle > GONE_IDLE_S and not Path(marker.read_text().strip()).exists()
            else:
                stale = idle > UNMARKED_IDLE_S
            if stale and not _in_use(folder):
                shutil.rmtree(folder)
                removed.append(folder)
        except OSError:  # not a folder, or another process removed or changed it meanwhile
            continue
    return removed


def start_background_parse(warehouse: Path) -> bool:
    """For a warehouse whose target folder holds no parse yet (a new warehouse), start `dbt parse` into it in the
    background, so that its first `dbt build` parses partially (1.5 s instead of 3 s on the 2-core machine) while
    this process scans the inputs and loads definitions on the other core. The parse holds the folder's lock until
    it exits; wait_for_parse() blocks on it. Returns whether a parse was started. (`dbt parse` does not open the
    warehouse. If it fails, the build simply parses fully.)"""
    target = claim_target_path(warehouse)
    if (target / "partial_parse.msgpack").exists():
        return False
    fd = os.open(target / PARSE_LOCK, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another process is parsing this folder
            return False
        # the child inherits the locked descriptor: the lock is released when dbt exits
        subprocess.Popen(
            dbt_parse_command(target),
            env={**os.environ, settings.WAREHOUSE_ENV: str(warehouse)},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(fd,),
        )
    finally:
        os.close(fd)
    return True


def wait_for_parse(target: Path) -> None:
    """Block while a background parse (start_background_parse) writes into the target folder."""
    lock = target / PARSE_LOCK
    if not lock.exists():
        return
    with open(lock) as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
