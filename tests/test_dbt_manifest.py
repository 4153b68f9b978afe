"""The dbt target folders of warehouses: claimed with the warehouse's path, pruned once the warehouse is gone."""

import fcntl
import os
import time

from orchestration import dbt_manifest, settings
from orchestration.dbt_manifest import claim_target_path, prune_target_folders, warehouse_target_path

HOUR = 3600.0


def _age(folder, seconds: float, now: float) -> None:
    """Make the folder and its files look untouched for `seconds`."""
    for p in (folder, *folder.iterdir()):
        os.utime(p, (now - seconds, now - seconds))


def test_folders_of_deleted_warehouses_are_pruned_and_others_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(settings, "DBT_PROJECT_DIR", tmp_path / "dbt")
    now = time.time()
    live, gone, fresh, parsing = (tmp_path / f"{name}.duckdb" for name in ("live", "gone", "fresh", "parsing"))
    live.write_bytes(b"")
    folders = {w: claim_target_path(w) for w in (live, gone, fresh, parsing)}
    assert folders[live] == warehouse_target_path(live)
    assert (folders[live] / dbt_manifest.WAREHOUSE_MARKER).read_text() == str(live)
    old_unmarked = settings.DBT_PROJECT_DIR / "target" / "warehouse-0123456789ab"
    new_unmarked = settings.DBT_PROJECT_DIR / "target" / "warehouse-ba9876543210"
    for f in (old_unmarked, new_unmarked):
        f.mkdir()
        (f / "manifest.json").write_text("{}")
    for w in (live, gone, parsing):
        _age(folders[w], 2 * HOUR, now)
    _age(folders[fresh], 0.5 * HOUR, now)  # its warehouse may be being created right now
    _age(old_unmarked, 8 * 24 * HOUR, now)
    _age(new_unmarked, 2 * HOUR, now)
    with open(folders[parsing] / dbt_manifest.PARSE_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a background parse is writing into it
        _age(folders[parsing], 2 * HOUR, now)
        removed = prune_target_folders(now)
    assert sorted(removed) == sorted([folders[gone], old_unmarked])
    assert all(not f.exists() for f in removed)
    assert all(folders[w].is_dir() for w in (live, fresh, parsing)) and new_unmarked.is_dir()
    # later: the fresh one has been idle long enough, the parse has released its lock; the live one stays
    assert sorted(prune_target_folders(now + 2 * HOUR)) == sorted([folders[fresh], folders[parsing]])
    assert folders[live].is_dir() and new_unmarked.is_dir()
