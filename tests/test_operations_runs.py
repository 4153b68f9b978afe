"""Operations through `impact run` as users run it (subprocesses): runs killed at random points re-run to the clean
result and leave no process behind; an analyst holding the published warehouse open never blocks a run nor sees
half a day; a second run waits for the first or says who holds the warehouse; a full disk or an unwritable temp
directory fails with the cause and leaves the published warehouse as it was."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest
from conftest import write_tiny_dataset

from orchestration.cli import main
from orchestration.lib.operations import lock, processes, publish

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("pipeline")]

IMPACT = str(Path(sys.executable).parent / "impact")
REQUEST = {"cluster": "c1", "model": "m", "duration_s": 150, "input_tokens": 10, "output_tokens": 20}
# what a run leaves in the warehouse that a user reads, without the times of loading and fitting
COMPARED = {
    "raw.requests": "select * exclude (loaded_at) from raw.requests",
    "raw.rejected_rows": "select * exclude (rejected_at) from raw.rejected_rows",
    "intermediate.int_request_days": "select * from intermediate.int_request_days",
    "marts.fct_cluster_energy_daily": "select * from marts.fct_cluster_energy_daily",
    "marts.fct_window_energy": "select * from marts.fct_window_energy",
    "marts.fct_request_impact": "select * from marts.fct_request_impact",
    "marts.agg_impact_daily": "select * from marts.agg_impact_daily",
    "marts.fct_cluster_impact_daily": "select * from marts.fct_cluster_impact_daily",
    "models.energy_model_fits (latest)": (
        "select * exclude (fitted_at) from models.energy_model_fits "
        "qualify fitted_at = max(fitted_at) over (partition by model, hardware, source, target, form)"
    ),
}
ANALYST = """
import duckdb, json, sys
con = duckdb.connect(sys.argv[1], read_only=True)  # an analyst's session, kept open
for _ in sys.stdin:
    row = con.execute(
        "select (select count(*) from marts.fct_request_energy), (select sum(requests) from marts.agg_impact_daily),"
        " (select round(sum(it_energy_j), 6) from marts.fct_request_energy),"
        " (select version from published.publication)").fetchone()
    print(json.dumps([row[0], int(row[1]), row[2], row[3]]), flush=True)
"""


def _requests(data: Path, hours: list[int]) -> None:
    rows = [dict(REQUEST, request_id=f"r{h}", start_time=f"2024-05-01T{h:02d}:25:00Z") for h in hours]
    (data / "requests" / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    data = write_tiny_dataset(tmp_path_factory.mktemp("operations") / "inputs")
    _requests(data, [0, 6, 12, 18])
    return data


@pytest.fixture(scope="module")
def clean(inputs, tmp_path_factory) -> Path:
    """The inputs in one clean `impact run` (in-process): the reference."""
    warehouse = tmp_path_factory.mktemp("clean") / "wh.duckdb"
    assert main(["run", "--data-dir", str(inputs), "--warehouse", str(warehouse), "--quiet"]) == 0
    return warehouse


class Run:
    """`impact run` in a subprocess (its own session), its output collected line by line."""

    def __init__(self, *args: str, env: dict | None = None):
        self.proc = subprocess.Popen(
            [IMPACT, "run", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})}, start_new_session=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(s, into), daemon=True)
                         for s, into in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for t in self._readers:
            t.start()

    @staticmethod
    def _read(stream, into: list[str]) -> None:
        into.extend(stream)  # line by line, as the run writes them

    def wait_for(self, predicate, what: str, timeout_s: float = 240.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            assert self.proc.poll() is None, f"the run ended ({self.proc.returncode}) before {what}: {self.text()}"
            assert time.monotonic() < deadline, f"no {what} after {timeout_s} s: {self.text()}"
            time.sleep(0.05)

    def finish(self, timeout_s: float = 600.0) -> int:
        code = self.proc.wait(timeout=timeout_s)
        for t in self._readers:
            t.join(timeout=10)
        return code

    def text(self) -> str:
        return "".join(self.out) + "".join(self.err)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _kill_and_check_nothing_is_left(run: Run, stage: str, sig: int = signal.SIGKILL) -> int:
    left = processes.descendants(run.proc.pid)
    run.proc.send_signal(sig)
    code = run.finish()
    deadline = time.monotonic() + 20
    while any(processes.alive(p) for p in left) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = {p: _cmdline(p) for p in left if processes.alive(p)}
    assert not survivors, f"killed during {stage}, these processes ran on: {survivors}"
    return code


def _rows(path: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return sorted(con.execute(sql).fetchall(), key=repr)
    finally:
        con.close()


def _same(a: list[tuple], b: list[tuple], rel: float = 1e-9) -> bool:
    """Equal rows, floats to `rel` (DuckDB's parallel sums may differ in the last bits)."""
    def close(x, y):
        if isinstance(x, float) and isinstance(y, float):
            return math.isclose(x, y, rel_tol=rel, abs_tol=1e-12) or (math.isnan(x) and math.isnan(y))
        return x == y

    return len(a) == len(b) and all(len(r) == len(s) and all(map(close, r, s)) for r, s in zip(a, b, strict=True))


def test_killed_runs_leave_nothing_behind_and_rerun_to_the_clean_result_while_an_analyst_reads_on(
    inputs, clean, tmp_path
):
    """Three runs of one warehouse stopped at random points (SIGTERM during ingestion; SIGKILL during dbt and
    during the models job), then a complete run, while an analyst holds the published warehouse open and a second run tries
    to start; the warehouse ends equal to a clean run's."""
    seed = int(os.environ.get("IMPACT_TEST_SEED", time.time()))
    rng = random.Random(seed)
    data = tmp_path / "inputs"
    shutil.copytree(inputs, data)
    _requests(data, [0, 6, 12])  # the late request comes later
    warehouse = tmp_path / "killed" / "wh.duckdb"
    args = ("--data-dir", str(data), "--warehouse", str(warehouse))
    context = f"(seed {seed}: IMPACT_TEST_SEED={seed} repeats these kill points)"

    run = Run(*args)  # stopped with SIGTERM while loading the inputs (the day's job has started)
    run.wait_for(lambda: any(line.startswith("Materialising") for line in run.out), "the day's job")
    time.sleep(rng.uniform(0, 0.5))
    code = _kill_and_check_nothing_is_left(run, f"ingestion {context}", signal.SIGTERM)
    assert code in (130, 143) and "impact: stopped by SIG" in "".join(run.err), run.text()

    run = Run(*args)  # killed while dbt builds the day
    run.wait_for(lambda: any(" build " in _cmdline(p) for p in processes.descendants(run.proc.pid)), "dbt")
    time.sleep(rng.uniform(0, 1.5))
    _kill_and_check_nothing_is_left(run, f"dbt {context}")

    run = Run(*args)  # killed during the models job: the day was built and published
    run.wait_for(lambda: any(line.startswith("[1/1]") for line in run.out), "the models job")
    assert "ended without releasing it" in "".join(run.err)  # the killed run's lock was taken over
    assert "ok" in next(line for line in run.out if line.startswith("[1/1]")), run.text()
    time.sleep(rng.uniform(0, 1.0))
    _kill_and_check_nothing_is_left(run, f"the models job {context}")

    # an analyst opens the published warehouse and keeps it open
    published = publish.published_path(warehouse)
    analyst = subprocess.Popen([sys.executable, "-c", ANALYST, str(published)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)

    def ask() -> list:
        analyst.stdin.write("?\n")
        analyst.stdin.flush()
        return json.loads(analyst.stdout.readline())

    try:
        before = ask()
        assert before[:2] == [3, 3]
        _requests(data, [0, 6, 12, 18])  # a late request: the next run changes the day
        run = Run(*args)
        run.wait_for(lambda: lock.Holder.read(lock.lock_path(warehouse)) is not None
                     and lock.Holder.read(lock.lock_path(warehouse)).pid == run.proc.pid, "the run's lock")
        # a second run while the first holds the warehouse: told whose run it is, at once with --no-wait
        second = subprocess.run([IMPACT, "run", *args, "--no-wait"], capture_output=True, text=True, check=False)
        assert second.returncode == 75, second.stderr
        assert f"in use by PID {run.proc.pid}" in second.stderr and "impact run --data-dir" in second.stderr
        # ... or waiting for it, saying so (stopped here: the waiting itself is tested in test_operations.py)
        waiting = Run(*args)
        waiting.wait_for(lambda: "waiting for it to finish" in "".join(waiting.err), "the waiting message")
        assert f"in use by PID {run.proc.pid}" in "".join(waiting.err)
        waiting.proc.send_signal(signal.SIGTERM)  # stops waiting
        assert waiting.finish() == 143 and "stopped by SIGTERM" in "".join(waiting.err)
        # the analyst reads the version it opened, whole, while the run rebuilds and republishes the day
        while run.proc.poll() is None:
            assert ask() == before
            time.sleep(0.2)
        assert run.finish() == 0, run.text()
        assert ask() == before
    finally:
        analyst.stdin.close()
        analyst.wait(timeout=30)
    assert "Analysts' warehouse (open it read-only)" in run.text()
    fresh = subprocess.Popen([sys.executable, "-c", ANALYST, str(published)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    after = json.loads(fresh.communicate("?\n", timeout=60)[0])
    assert after[:2] == [4, 4] and after[3] != before[3]  # a new session sees the new version

    # the same inputs in one clean run
    for name, sql in COMPARED.items():
        assert _same(_rows(warehouse, sql), _rows(clean, sql)), f"{name} differs from a clean run's {context}"
    for name in ("marts.fct_request_impact", "marts.agg_impact_daily"):
        sql = COMPARED[name]
        assert _same(_rows(published, sql), _rows(publish.published_path(clean), sql)), f"published {name}"
    # what the killed runs wrote and never registered was collected
    referenced = {p for (p,) in _rows(warehouse, "select path from storage.parquet_parts")}
    assert {str(p) for p in (Path(str(warehouse) + ".parts")).rglob("*.parquet")} == referenced | {
        p for (p,) in _rows(warehouse, "select path from storage.publication_parts")}


def test_an_unwritable_temp_directory_fails_at_once_with_the_cause(inputs, tmp_path, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    os.environ["IMPACT_DUCKDB_TEMP_DIRECTORY"] = str(blocker / "tmp")
    try:
        code = main(["run", "--data-dir", str(inputs), "--warehouse", str(tmp_path / "wh.duckdb")])
    finally:
        del os.environ["IMPACT_DUCKDB_TEMP_DIRECTORY"]
    err = capsys.readouterr().err
    assert code == 2 and f"temp directory {blocker / 'tmp'} is not writable" in err
    assert "IMPACT_DUCKDB_TEMP_DIRECTORY" in err and not (tmp_path / "wh.duckdb").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 128 MB file system of its own (tmpfs; needs the right to mount, else the test is skipped)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128m", "tmpfs", str(mount)], capture_output=True,
                          check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


def test_a_full_disk_fails_with_the_cause_and_leaves_the_published_warehouse_intact(
    inputs, clean, small_disk, capsys
):
    warehouse = small_disk / "wh.duckdb"  # the clean run's warehouse and publication, on a small disk
    shutil.copy(clean, warehouse)
    published = publish.published_path(warehouse)
    shutil.copy(publish.published_path(clean), published)
    before = (published.stat().st_ino, _rows(published, COMPARED["marts.agg_impact_daily"]))
    with open(small_disk / "filler", "wb") as filler:  # fill the disk but for 256 kB: the run starts, then fails
        stat = os.statvfs(small_disk)
        filler.write(b"\0" * (stat.f_bavail * stat.f_frsize - (256 << 10)))
    assert main(["run", "--data-dir", str(inputs), "--warehouse", str(warehouse), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "The disk is full" in err
    assert f"The analysts' warehouse {published} keeps the last successful publication" in err
    assert (published.stat().st_ino, _rows(published, COMPARED["marts.agg_impact_daily"])) == before


LEGACY_REQUEST_DAY_COLUMNS = ["day", "request_key", "request_id", "cluster", "model", "start_time", "duration_s", "input_tokens", "output_tokens", "tenant", "endpoint", "node", "gpu", "days_spanned", "request_seconds", "concurrency_seconds", "telemetry_covered_s", "idle_energy_j", "dynamic_energy_j", "unallocated_idle_energy_j", "it_energy_j", "accelerator_energy_j", "accelerator_dynamic_energy_j", "host_energy_j", "max_pool_requests", "pool_dynamic_energy_j", "uncovered_s", "it_energy_predicted_j", "it_energy_predicted_low_j", "it_energy_predicted_high_j", "prediction_fit", "it_location_g_co2e", "facility_energy_j", "operational_location_g_co2e", "operational_location_low_g_co2e", "operational_location_high_g_co2e", "operational_market_g_co2e", "market_factor_energy_j", "annual_factor_energy_j", "embodied_g_co2e", "embodied_low_g_co2e", "embodied_high_g_co2e", "water_onsite_l", "water_offsite_l", "water_embodied_l", "factor_model", "training_g_co2e", "fine_tuning_g_co2e", "training_water_l", "total_g_co2e", "total_g_co2e_low", "total_g_co2e_high", "total_water_l", "total_water_l_low", "total_water_l_high"]  # the 58 columns of intermediate.int_request_days as earlier versions stored them


def test_migrate_converts_an_earlier_versions_tables_to_day_files(clean, tmp_path, capsys):
    """A warehouse as an earlier version left it (the per-request table with all 58 columns stored, the window mart
    a table), with two days: impact migrate converts both tables in place, the converted day reads back the same
    values (the day dbt rebuilds is the newest one), and a run goes on from there."""
    legacy = tmp_path / "legacy.duckdb"
    shutil.copy(clean, legacy)
    old_columns = ", ".join(LEGACY_REQUEST_DAY_COLUMNS)
    con = duckdb.connect(str(legacy))
    try:
        for table, columns in (("intermediate.int_request_days", old_columns), ("marts.fct_window_energy", "*")):
            con.execute(f"create table {table}_old as select {columns} from {table}")
            # an earlier day too (the same rows a day before): the converted one
            shifted = columns.replace("day,", "day - 1 as day,", 1) if columns != "*" else "* replace (day - 1 as day)"
            con.execute(f"insert into {table}_old select {shifted} from {table}")
            con.execute(f"drop view {table}")
            con.execute(f"alter table {table}_old rename to {table.split('.')[1]}")
        for table in ("int_cluster_day_factors", "int_cluster_hour_intensity"):  # their factors, a day before
            con.execute(f"insert into intermediate.{table} select * replace (day - 1 as day) from intermediate.{table}")
        con.execute("update intermediate.int_request_days set start_time = start_time - interval 1 day "
                    "where day = date '2024-04-30'")
        con.execute("update intermediate.int_cluster_hour_intensity set hour_start = hour_start - interval 1 day "
                    "where day = date '2024-04-30'")
        con.execute("delete from storage.parquet_parts")
    finally:
        con.close()
    exact = ", ".join(c for c in LEGACY_REQUEST_DAY_COLUMNS if not c.endswith(("_low", "_high", "_low_g_co2e",
                                                                                "_high_g_co2e", "_low_l", "_high_l")))
    bounds = ", ".join(c for c in LEGACY_REQUEST_DAY_COLUMNS if c not in exact.split(", "))
    converted = "select request_id, {} from intermediate.int_request_days where day = date '2024-04-30'"
    before = {cols: _rows(legacy, converted.format(cols)) for cols in (exact, bounds)}
    assert main(["migrate", "--warehouse", str(legacy)]) == 0
    out = capsys.readouterr().out
    assert "intermediate.int_request_days: 8 rows of 2 day(s) converted" in out and "2024-05-01 rebuilt" in out
    # the converted day reads back its values; bounds to single precision (rounded outward once more)
    assert _same(_rows(legacy, converted.format(exact)), before[exact])
    assert _same(_rows(legacy, converted.format(bounds)), before[bounds], rel=3e-7)
    assert _rows(legacy, "select table_type from information_schema.tables where table_name = 'int_request_days'") \
        == [("VIEW",)]
    for name in ("marts.fct_request_impact", "marts.fct_window_energy"):  # the day dbt rebuilt
        assert _same(_rows(legacy, COMPARED[name] + " where day = date '2024-05-01'"),
                     _rows(clean, COMPARED[name] + " where day = date '2024-05-01'")), name
    assert _rows(publish.published_path(legacy), "select count(*) from marts.fct_request_energy") == [(8,)]
    assert main(["migrate", "--warehouse", str(legacy)]) == 0
    assert "nothing to convert" in capsys.readouterr().out
