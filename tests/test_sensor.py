"""The new-files sensor: one run per day a new or changed file covers, once per change."""

import json
import os

import dagster as dg
from conftest import TINY_CLUSTER, write_clusters

from orchestration.definitions import defs
from orchestration.defs.automation.sensors import impact_new_input_files
from orchestration.defs.resources import ImpactSettings


def _evaluate(settings, cursor=None):
    # (a context manager: the settings resource sets up and tears down, e.g. the run lock when in a run)
    with dg.build_sensor_context(cursor=cursor, resources={"settings": settings}, definitions=defs()) as context:
        result = impact_new_input_files.evaluate_tick(context)
    return result, result.cursor


def test_new_and_changed_files_request_their_days_once(tmp_path):
    data = tmp_path / "inputs"
    (data / "requests").mkdir(parents=True)
    write_clusters(data / "clusters.yml", [TINY_CLUSTER])
    day1 = {"request_id": "a", "cluster": "c1", "model": "m", "start_time": "2024-05-01T10:00:00Z",
            "duration_s": 1}
    (data / "requests" / "a.jsonl").write_text(json.dumps(day1) + "\n")
    settings = ImpactSettings(data_dir=str(data), warehouse=str(tmp_path / "wh.duckdb"))

    first, cursor = _evaluate(settings)
    assert sorted(r.partition_key for r in first.run_requests) == ["2024-05-01"]

    again, cursor = _evaluate(settings, cursor)
    assert not again.run_requests  # nothing changed: no second run

    late = {**day1, "request_id": "b", "start_time": "2024-05-02T10:00:00Z"}
    path = data / "requests" / "late.jsonl"
    path.write_text(json.dumps(late) + "\n")
    os.utime(path, ns=(1, 1))
    third, cursor = _evaluate(settings, cursor)
    assert [r.partition_key for r in third.run_requests] == ["2024-05-02"]  # only the late file's day
    assert len({r.run_key for r in third.run_requests}) == 1
