"""Operations, unit level (no pipeline run): the run lock, DuckDB's memory and temp settings, the Parquet parts'
views, publishing for analysts and retention, on small warehouses built here."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import duckdb
import pytest

from orchestration.lib import warehouse as wh
from orchestration.lib.operations import lock, parts, publish, retention

DAY = dt.date(2024, 5, 1)


# ------------------------------------------------------------------------------------------------ the run lock

HOLDER = textwrap.dedent(
    """
    import sys, time
    from orchestration.lib.operations import lock
    lock.acquire(sys.argv[1], command="impact run --data-dir in --warehouse wh.duckdb")
    print("held", flush=True)
    sys.stdin.readline()  # hold until told (or killed)
    lock.release(sys.argv[1])
    """
)


def _hold(warehouse: Path) -> subprocess.Popen:
    """Another process holding the warehouse's lock."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(warehouse)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_is_told_who_holds_the_warehouse_and_waits_or_not(tmp_path):
    warehouse = tmp_path / "wh.duckdb"
    holder = _hold(warehouse)
    try:
        with pytest.raises(lock.WarehouseBusy) as busy:
            lock.acquire(warehouse, wait_s=0)
        message = str(busy.value)
        assert f"PID {holder.pid}" in message and "impact run --data-dir in --warehouse wh.duckdb" in message
        assert "started 20" in message and str(warehouse) in message
        # waiting: told once who it waits for, then it gets the lock when the holder finishes
        told: list[lock.Holder | None] = []

        def finish_later() -> None:
            time.sleep(0.5)
            holder.stdin.write("\n")
            holder.stdin.flush()

        threading.Thread(target=finish_later, daemon=True).start()
        lock.acquire(warehouse, wait_s=30, on_wait=told.append, poll_s=0.05)
        assert [h.pid for h in told] == [holder.pid]
    finally:
        holder.kill()
        holder.wait()
    try:
        assert lock.held_by_this_process(warehouse)
        assert lock.Holder.read(lock.lock_path(warehouse)).pid == os.getpid()
    finally:
        lock.release(warehouse)
    assert not lock.held_by_this_process(warehouse)
    assert lock.lock_path(warehouse).read_text() == ""  # a clean release leaves no holder named


def test_the_wait_is_bounded_and_says_whose_run_it_waited_for(tmp_path):
    warehouse = tmp_path / "wh.duckdb"
    holder = _hold(warehouse)
    told: list[lock.Holder | None] = []
    try:
        began = time.monotonic()
        with pytest.raises(lock.WarehouseBusy, match="waited"):
            lock.acquire(warehouse, wait_s=1.0, on_wait=told.append, poll_s=0.1)
        assert 0.9 <= time.monotonic() - began < 10
        assert [h.pid for h in told] == [holder.pid]
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_runs_lock_is_taken_over_and_the_lock_is_reentrant(tmp_path):
    warehouse = tmp_path / "wh.duckdb"
    holder = _hold(warehouse)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    stale: list[lock.Holder] = []
    lock.acquire(warehouse, wait_s=0, on_stale=stale.append)
    try:
        assert [h.pid for h in stale] == [holder.pid]
        lock.acquire(warehouse, wait_s=0)  # the same process again (impact run, then its Dagster runs)
        lock.release(warehouse)
        assert lock.held_by_this_process(warehouse)
        script = "import sys; from orchestration.lib.operations import lock; lock.acquire(sys.argv[1], wait_s=0)"
        other = subprocess.run(
            [sys.executable, "-c", script, str(warehouse)], capture_output=True, text=True, check=False
        )
        assert other.returncode != 0 and "WarehouseBusy" in other.stderr and f"PID {os.getpid()}" in other.stderr
    finally:
        lock.release(warehouse)


def test_lock_wait_from_the_environment(monkeypatch):
    monkeypatch.delenv(lock.WAIT_ENV, raising=False)
    assert lock.wait_from_env() is None
    monkeypatch.setenv(lock.WAIT_ENV, "0")
    assert lock.wait_from_env() == 0
    monkeypatch.setenv(lock.WAIT_ENV, "soon")
    with pytest.raises(ValueError, match=lock.WAIT_ENV):
        lock.wait_from_env()


# ------------------------------------------------------------------------------------------------ DuckDB settings


def test_memory_limit_follows_the_machine_within_bounds(monkeypatch):
    assert wh.default_memory_limit(4e9) == "1.6GB"
    assert wh.default_memory_limit(1e9) == "1.0GB"  # never below 1 GB
    assert wh.default_memory_limit(64e9) == "6.0GB"  # a 50 M-request day within 8 GB of RSS
    monkeypatch.setenv(wh.MEMORY_LIMIT_ENV, "3GB")
    assert wh.memory_limit() == "3GB"


def test_connections_spill_beside_the_warehouse_and_an_unwritable_temp_directory_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv(wh.TEMP_DIRECTORY_ENV, raising=False)
    path = tmp_path / "wh.duckdb"
    con = wh.connect(path)
    try:
        (spill,) = con.execute("select current_setting('temp_directory')").fetchone()
        assert spill == str(path) + ".tmp"
    finally:
        con.close()
    assert wh.check_temp_directory(path) == Path(str(path) + ".tmp")
    assert not Path(str(path) + ".tmp").exists()  # the check leaves nothing behind
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(wh.TEMP_DIRECTORY_ENV, str(blocker / "tmp"))
    with pytest.raises(wh.TempDirectoryError, match=f"{blocker / 'tmp'} is not writable.*IMPACT_DUCKDB_TEMP"):
        wh.check_temp_directory(path)


# ------------------------------------------------------------------------------------------------ a small warehouse


def _day_file(root: Path, relation: str, version: str, day: dt.date, rows: list[tuple[str, float]]) -> str:
    folder = root / relation / version
    folder.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    values = ", ".join(f"('{r}', cast({v} as double), date '{day}')" for r, v in rows)
    con.execute(f"copy (select * from (values {values}) t(request_id, energy_j, day)) to '{folder}' "
                "(format parquet, partition_by (day), overwrite_or_ignore true)")
    con.close()
    return str(folder / f"day={day}" / "data_0.parquet")


def _register(con, relation: str, files: dict[dt.date, str]) -> None:
    for ddl in parts.PARTS_DDL:
        con.execute(ddl)
    con.execute("delete from storage.parquet_parts where relation = ?", [relation])
    for day, path in files.items():
        con.execute(
            "insert into storage.parquet_parts select ?, ?, ?, count(*), now(), 'test' from read_parquet(?)",
            [relation, day, path, path],
        )
    paths = ", ".join(parts.sql_string(p) for _, p in sorted(files.items()))
    con.execute(
        f"create or replace view {relation} as select *, energy_j / 3600 as energy_wh from read_parquet([{paths}], "
        "hive_partitioning = true, hive_types = {'day': 'DATE'})"
    )


@pytest.fixture
def small_warehouse(tmp_path):
    """A working warehouse: per-request rows as Parquet day files behind a view (two days), a daily aggregate,
    a factor table, an internal per-day part and a view over it, raw telemetry."""
    path = tmp_path / "wh.duckdb"
    root = parts.parts_root(path)
    days = [DAY, DAY + dt.timedelta(days=1)]
    files = {d: _day_file(root, "intermediate.int_request_days", "v1", d, [(f"r{i}", 3600.0 * (i + 1))
                                                                          for i in range(3)]) for d in days}
    con = duckdb.connect(str(path))
    for schema in ("raw", "intermediate", "marts", "factors", "models"):
        con.execute(f"create schema {schema}")
    _register(con, "intermediate.int_request_days", files)
    con.execute("create view marts.fct_request_energy as select request_id, day, energy_j "
                "from intermediate.int_request_days")
    con.execute("create table marts.agg_daily as select day, count(*) as requests from intermediate.int_request_days "
                "group by day")
    con.execute("create table factors.grid as select 'GB' as zone, 200.0 as g_per_kwh")
    con.execute("create table models.fit_sample_days as select * from intermediate.int_request_days")
    con.execute("create view models.sample_view as select count(*) as n from models.fit_sample_days")
    con.execute("create table raw.telemetry_points as select d::date as partition_day, 1.0 as value "
                "from range(date '2024-04-01', date '2024-05-03', interval 1 day) t(d)")
    con.execute("create table raw.rejected_rows (partition_day date, reason varchar)")
    con.execute("create table raw.requests as select day as partition_day, request_id "
                "from intermediate.int_request_days")
    con.close()
    return path


def _query(path: Path, sql: str):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_publish_copies_the_small_tables_shares_the_day_files_and_leaves_out_internal_parts(small_warehouse):
    report = publish.publish(small_warehouse)
    target = publish.published_path(small_warehouse)
    assert target == small_warehouse.with_name("wh.analysts.duckdb") and report.path == target
    assert set(report.tables) == {"marts.agg_daily", "factors.grid", "raw.rejected_rows"}
    assert report.views == ["intermediate.int_request_days", "marts.fct_request_energy"]
    assert report.parquet_relations == {"intermediate.int_request_days": 2}  # shared, not copied
    assert report.left_out == {"models.sample_view": "reads models.fit_sample_days (not published)"}
    assert _query(target, "select count(*), sum(energy_wh) from intermediate.int_request_days") == [(6, 12.0)]
    assert _query(target, "select version from published.publication") == [(report.version,)]
    tables = {t for (t,) in _query(target, "select schema_name || '.' || table_name from duckdb_tables()")}
    assert "raw.telemetry_points" not in tables and "models.fit_sample_days" not in tables


def test_a_large_table_is_shared_as_a_snapshot_written_only_when_it_changed(small_warehouse, monkeypatch):
    monkeypatch.setattr(publish, "SNAPSHOT_MIN_ROWS", 1)  # every table counts as large here
    first = publish.publish(small_warehouse)
    target = publish.published_path(small_warehouse)
    assert first.tables == {"raw.rejected_rows": 0} and first.parquet_relations["factors.grid"] == 1
    snapshots = sorted((parts.parts_root(small_warehouse) / publish.SNAPSHOTS).rglob("*.parquet"))
    assert len(snapshots) == 2  # factors.grid and marts.agg_daily
    written = {p: p.stat().st_mtime_ns for p in snapshots}
    publish.publish(small_warehouse)  # unchanged: the same files, not written again
    assert {p: p.stat().st_mtime_ns for p in (parts.parts_root(small_warehouse) / publish.SNAPSHOTS).rglob(
        "*.parquet")} == written
    con = duckdb.connect(str(small_warehouse))
    con.execute("update factors.grid set g_per_kwh = 250")
    con.close()
    publish.publish(small_warehouse)
    assert _query(target, "select zone, g_per_kwh from factors.grid") == [("GB", 250.0)]
    assert len(list((parts.parts_root(small_warehouse) / publish.SNAPSHOTS / "factors.grid").glob("*.parquet"))) == 2


def test_a_reader_keeps_its_version_while_a_new_one_is_published(small_warehouse):
    publish.publish(small_warehouse, keep_hours=0)
    target = publish.published_path(small_warehouse)
    analyst = duckdb.connect(str(target), read_only=True)  # an analyst's session, left open
    try:
        before = analyst.execute("select count(*), sum(energy_j) from marts.fct_request_energy").fetchall()
        # the day is re-materialised: a new file replaces the first day's (the writer is never blocked)
        con = duckdb.connect(str(small_warehouse))
        new_file = _day_file(parts.parts_root(small_warehouse), "intermediate.int_request_days", "v2", DAY,
                             [("r9", 7200.0)])
        files = {d: p for _, d, p, _ in parts.current_parts(con)} | {DAY: new_file}
        _register(con, "intermediate.int_request_days", files)
        con.close()
        publish.publish(small_warehouse, keep_hours=24)
        # the open session still reads its version, whole; a new one (another analyst's process: within one
        # process DuckDB hands out the database already open) reads the new version
        assert analyst.execute("select count(*), sum(energy_j) from marts.fct_request_energy").fetchall() == before
        script = ("import duckdb, sys; print(duckdb.connect(sys.argv[1], read_only=True).execute("
                  "'select count(*), sum(energy_j) from marts.fct_request_energy').fetchall())")
        elsewhere = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True, text=True,
                                   check=False)
        assert elsewhere.stdout.strip() == f"[(4, {3600.0 * 6 + 7200})]", elsewhere.stderr
    finally:
        analyst.close()


def test_replaced_day_files_are_deleted_once_no_recent_publication_names_them(small_warehouse):
    now = dt.datetime(2024, 6, 1, 12)
    publish.publish(small_warehouse, now=now)
    con = duckdb.connect(str(small_warehouse))
    old = {d: p for _, d, p, _ in parts.current_parts(con)}
    new_file = _day_file(parts.parts_root(small_warehouse), "intermediate.int_request_days", "v2", DAY, [("x", 1.0)])
    _register(con, "intermediate.int_request_days", old | {DAY: new_file})
    con.close()
    orphan = _day_file(parts.parts_root(small_warehouse), "intermediate.int_request_days", "killed", DAY, [("y", 1.0)])
    # an hour later: the replaced file is named by the publication superseded an hour ago: kept; the file of a run
    # killed before it registered it is named by nothing: deleted
    report = publish.publish(small_warehouse, keep_hours=24, now=now + dt.timedelta(hours=1))
    assert Path(old[DAY]).exists() and not Path(orphan).exists() and report.garbage.files == 1
    # a day later, no kept publication names it any more
    report = publish.publish(small_warehouse, keep_hours=24, now=now + dt.timedelta(hours=26))
    assert not Path(old[DAY]).exists() and report.garbage.files == 1
    assert Path(new_file).exists() and Path(old[DAY + dt.timedelta(days=1)]).exists()


def test_a_parts_view_follows_its_files_down_to_none(small_warehouse):
    con = duckdb.connect(str(small_warehouse))
    try:
        relation = "intermediate.int_request_days"
        paths = [p for _, _, p, _ in parts.current_parts(con)]
        parts.rewrite_parts_view(con, relation, paths[1:])
        assert con.execute(f"select distinct day, sum(energy_wh) from {relation} group by day").fetchall() == [
            (DAY + dt.timedelta(days=1), 6.0)]
        columns = con.execute(f"describe {relation}").fetchall()
        parts.rewrite_parts_view(con, relation, [])
        assert con.execute(f"select count(*) from {relation}").fetchall() == [(0,)]
        assert con.execute(f"describe {relation}").fetchall() == columns  # same columns, derived ones too
        assert con.execute("select count(*) from marts.fct_request_energy").fetchall() == [(0,)]
    finally:
        con.close()


# ------------------------------------------------------------------------------------------------ retention


def test_retention_deletes_each_layer_back_from_the_newest_day_and_refuses_to_rebuild_a_retired_day(
    small_warehouse,
):
    policy = retention.Policy(raw=2, requests=35, aggregates=None)
    con = duckdb.connect(str(small_warehouse))
    try:
        plan = retention.plan(con, policy)
        assert plan.as_of == DAY + dt.timedelta(days=1)  # the newest day, not today
        assert {d.table: (d.cutoff, len(d.days), d.rows) for d in plan.deletions} == {
            "raw.telemetry_points": (DAY, 30, 30)}
        # a year later, the per-request rows go too (files and view), the aggregates stay
        report = retention.apply(con, small_warehouse, policy, as_of=DAY + dt.timedelta(days=35))
        assert {d.table for d in report.deletions} == {
            "raw.telemetry_points", "raw.requests", "intermediate.int_request_days", "models.fit_sample_days"}
        assert report.by_layer()["requests"] == (1, 6)
        assert con.execute("select count(*) from intermediate.int_request_days").fetchall() == [(3,)]
        assert con.execute("select count(*) from marts.agg_daily").fetchall() == [(2,)]
        assert "marts.agg_daily" in report.not_covered  # not in a layer: kept whole, and said so
        assert retention.retired(con, DAY) is not None
        # rebuilding a retired day without its inputs would write zeros: refused, naming the day
        with pytest.raises(retention.RetiredDay, match="2024-05-01: its raw inputs were deleted by retention"):
            retention.refuse_retired_day(con, DAY)
        # with its inputs restored (loaded again) it is rebuilt, and no longer retired
        con.execute("insert into raw.requests values (date '2024-05-01', 'r0')")
        assert retention.refuse_retired_day(con, DAY) is True
        assert retention.retired(con, DAY) is None
        assert retention.refuse_retired_day(con, DAY + dt.timedelta(days=3)) is False
    finally:
        con.close()
    # the analysts' copy drops them too once republished
    publish.publish(small_warehouse)
    assert _query(publish.published_path(small_warehouse), "select count(*) from marts.fct_request_energy") == [(3,)]


def test_retention_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("IMPACT_RETAIN_RAW_DAYS", "10")
    monkeypatch.setenv("IMPACT_RETAIN_REQUEST_DAYS", "keep")
    monkeypatch.delenv("IMPACT_RETAIN_AGGREGATE_DAYS", raising=False)
    assert retention.Policy.from_env() == retention.Policy(raw=10, requests=None, aggregates=None)
    with pytest.raises(ValueError, match="requests layer: 7 days is below its minimum of 35"):
        retention.Policy(requests=7)
    monkeypatch.setenv("IMPACT_RETAIN_RAW_DAYS", "a month")
    with pytest.raises(ValueError, match="IMPACT_RETAIN_RAW_DAYS"):
        retention.Policy.from_env()
