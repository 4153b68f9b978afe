"""Integration: materialise the real assets into a temporary DuckDB and check the numbers against closed forms."""

import datetime as dt
import json
import shutil

import duckdb
import pytest
from conftest import assert_invariants, run_days

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("pipeline")]

METERED_J = 2 * 50 * 86400 + 100 * 150 + (100 + 0.1 * 200) * 86400


def _requests(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _query(warehouse, sql, params=None):
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(sql, params or {}).fetchall()
    finally:
        con.close()


def test_cluster_level_attribution_is_exact_and_rerun_changes_nothing(tiny_dataset, tmp_path):
    _requests(
        tiny_dataset / "requests" / "r.jsonl",
        [
            # alone on the cluster while GPU 0 runs at 150 W: gets all of that dynamic energy
            {"request_id": "a", "cluster": "c1", "model": "m", "start_time": "2024-05-01T00:25:00Z",
             "duration_s": 150, "input_tokens": 10, "output_tokens": 20},
            # runs past midnight: 60 s in this day, 60 s in the next (which has no telemetry)
            {"request_id": "b", "cluster": "c1", "model": "m", "start_time": "2024-05-01T23:59:00Z",
             "duration_s": 120, "input_tokens": 10, "output_tokens": 20},
        ],
    )
    warehouse = tmp_path / "wh.duckdb"
    run_days(tiny_dataset, warehouse, ["2024-05-01", "2024-05-02"])

    (metered, attributed, unattributed, requests, coverage) = _query(
        warehouse,
        "select metered_it_energy_j, attributed_energy_j, unattributed_energy_j, requests, telemetry_coverage "
        "from marts.fct_cluster_energy_daily where day = '2024-05-01'",
    )[0]
    assert metered == pytest.approx(METERED_J, rel=1e-12)
    assert attributed + unattributed == pytest.approx(metered, rel=1e-12)
    assert requests == 2 and coverage == pytest.approx(1.0)

    energy = {r[0]: r[1:] for r in _query(
        warehouse,
        "select request_id, idle_energy_j, dynamic_energy_j, unallocated_idle_energy_j, it_energy_j, days_spanned "
        "from marts.fct_request_energy")}
    # a: GPU dynamic 100 W x 150 s + host dynamic 0.1 x 200 W x 150 s; idle (2 x 50 + 100) W x 150 s
    assert energy["a"][1] == pytest.approx(15000 + 3000, rel=1e-12)
    assert energy["a"][0] == pytest.approx(200 * 150, rel=1e-12)
    # b: 60 s in day 1: idle 200 W, host dynamic 20 W
    assert energy["b"][0] == pytest.approx(200 * 60, rel=1e-12)
    assert energy["b"][1] == pytest.approx(20 * 60, rel=1e-12)
    assert energy["b"][4] == 2
    # unallocated idle is spread by request-seconds of the day (150 : 60)
    assert energy["a"][2] / energy["b"][2] == pytest.approx(150 / 60, rel=1e-9)
    # each ran alone: the concurrency it saw is 1
    assert dict(_query(warehouse, "select request_id, mean_concurrency from marts.fct_request_energy")) == {
        "a": pytest.approx(1.0), "b": pytest.approx(1.0)}

    # a copy of the warehouse under another name (an audit snapshot) keeps working views: DuckDB names a file's
    # database after the file, so views must not spell it out
    snapshot_copy = tmp_path / "audit-snapshot.duckdb"
    shutil.copy(warehouse, snapshot_copy)
    assert _query(snapshot_copy, "select request_id, it_energy_j from marts.fct_request_energy order by 1") == sorted(
        _query(warehouse, "select request_id, it_energy_j from marts.fct_request_energy"))
    assert _query(snapshot_copy, "select count(*) from marts.fct_request_impact") == [(2,)]
    assert _query(snapshot_copy, "select count(*) from raw.telemetry_samples")[0][0] > 0

    # the next day has requests (b) but no telemetry: coverage 0, nothing metered, nothing invented
    (metered2, coverage2) = _query(
        warehouse, "select metered_it_energy_j, telemetry_coverage from marts.fct_cluster_energy_daily "
        "where day = '2024-05-02'")[0]
    assert metered2 == 0 and coverage2 == 0

    def snapshot(tables):
        return {
            t: _query(warehouse, f"select * exclude (loaded_at) from {t} order by all")
            if t.startswith("raw.") and t != "raw.rejected_rows"
            else _query(warehouse, f"select * from {t} order by all")
            for t in tables
        }

    energy_tables = ("raw.requests", "raw.telemetry_samples", "marts.fct_window_energy",
                     "marts.fct_request_energy", "marts.fct_cluster_energy_daily")
    # the impact marts sum per-second embodied rates over pool-windows in parallel: the same rows, values equal to
    # the last bits of a double (the order of a floating-point sum is not fixed)
    impact_tables = ("marts.fct_request_impact", "marts.agg_impact_daily", "marts.fct_cluster_impact_daily")
    before, impact_before = snapshot(energy_tables), snapshot(impact_tables)
    run_days(tiny_dataset, warehouse, ["2024-05-01"])
    assert snapshot(energy_tables) == before
    impact_after = snapshot(impact_tables)
    for table, rows in impact_before.items():
        assert len(impact_after[table]) == len(rows), table
        for old, new in zip(rows, impact_after[table], strict=True):
            for a, b in zip(old, new, strict=True):
                if isinstance(a, float):
                    assert b == pytest.approx(a, rel=1e-12, nan_ok=True), (table, old)
                else:
                    assert b == a, (table, old)

    assert_invariants(warehouse)


def test_gpu_level_attribution_charges_only_the_serving_gpu(tiny_dataset, tmp_path):
    _requests(
        tiny_dataset / "requests" / "r.jsonl",
        [
            {"request_id": "on-gpu0", "cluster": "c1", "model": "m", "start_time": "2024-05-01T00:25:00Z",
             "duration_s": 150, "node": "n1", "gpu": "0"},
            {"request_id": "on-gpu1", "cluster": "c1", "model": "m", "start_time": "2024-05-01T00:25:00Z",
             "duration_s": 150, "node": "n1", "gpu": "1"},
        ],
    )
    warehouse = tmp_path / "wh.duckdb"
    run_days(tiny_dataset, warehouse, ["2024-05-01"])
    energy = dict(_query(warehouse, "select request_id, dynamic_energy_j from marts.fct_request_energy"))
    # GPU 0's 15 kJ dynamic goes to the request on GPU 0; host dynamic (3 kJ) is shared by request-seconds
    assert energy["on-gpu0"] == pytest.approx(15000 + 1500, rel=1e-12)
    assert energy["on-gpu1"] == pytest.approx(1500, rel=1e-12)
    (level,) = _query(warehouse, "select distinct attribution_level from marts.fct_window_energy")[0]
    assert level == "gpu"


def test_day_without_requests_is_unattributed_not_dropped(tiny_dataset, tmp_path):
    warehouse = tmp_path / "wh.duckdb"
    run_days(tiny_dataset, warehouse, ["2024-05-01"])
    (metered, attributed, unattributed, requests) = _query(
        warehouse, "select metered_it_energy_j, attributed_energy_j, unattributed_energy_j, requests "
        "from marts.fct_cluster_energy_daily")[0]
    assert metered == pytest.approx(METERED_J, rel=1e-12)
    assert attributed == 0 and unattributed == pytest.approx(metered, rel=1e-12) and requests == 0


def test_a_late_file_is_picked_up_by_rerunning_the_day(tiny_dataset, tmp_path):
    """A late request file that sorts before the others renumbers the day's rows of raw.requests. Until the day is
    rebuilt the marts keep the attribution they had, each energy with its own request; re-running the day adds
    the late request and leaves the others' energy as it was."""
    from orchestration.lib.ingestion import ingest
    from orchestration.lib.warehouse import connect

    requests = tiny_dataset / "requests"
    _requests(requests / "r.jsonl", [
        {"request_id": "a", "cluster": "c1", "model": "m", "start_time": "2024-05-01T00:25:00Z",
         "duration_s": 150, "input_tokens": 10, "output_tokens": 20},
    ])
    warehouse = tmp_path / "wh.duckdb"
    run_days(tiny_dataset, warehouse, ["2024-05-01"])
    assert _query(warehouse, "select request_id, dynamic_energy_j from marts.fct_request_energy") == [
        ("a", pytest.approx(18000, rel=1e-12))]

    _requests(requests / "0-late.jsonl", [
        {"request_id": "c", "cluster": "c1", "model": "m", "start_time": "2024-05-01T12:00:00Z",
         "duration_s": 30, "input_tokens": 10, "output_tokens": 20},
    ])
    con = connect(warehouse)
    try:
        ingest.ingest_requests(con, tiny_dataset, dt.date(2024, 5, 1))
        assert con.execute("select request_id, request_key from raw.requests order by all").fetchall() == [
            ("a", 1), ("c", 0)]
    finally:
        con.close()
    assert _query(warehouse, "select request_id, dynamic_energy_j from marts.fct_request_energy") == [
        ("a", pytest.approx(18000, rel=1e-12))]

    run_days(tiny_dataset, warehouse, ["2024-05-01"])
    energy = dict(_query(warehouse, "select request_id, dynamic_energy_j from marts.fct_request_energy"))
    # a still ran alone on GPU 0's burst; c, alone at noon, gets the host's dynamic 20 W x 30 s
    assert energy == {"a": pytest.approx(18000, rel=1e-12), "c": pytest.approx(20 * 30, rel=1e-12)}
    assert_invariants(warehouse)
