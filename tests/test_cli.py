"""`impact run` as a user runs it: exit codes, messages, progress and the summary table."""

import json
import shutil

import pytest

from orchestration.cli import main
from orchestration.dbt_manifest import start_background_parse, wait_for_parse, warehouse_target_path

pytestmark = pytest.mark.xdist_group("pipeline")


def test_missing_inputs_exit_2_with_the_cause(tmp_path, capsys):
    assert main(["run", "--data-dir", str(tmp_path), "--warehouse", str(tmp_path / "wh.duckdb")]) == 2
    assert "no clusters.yml" in capsys.readouterr().err
    assert main(["run", "--data-dir", str(tmp_path), "--prometheus-url", "http://127.0.0.1:9"]) == 2
    assert "no clusters.yml" in capsys.readouterr().err
    # credentials in the URL are refused (they belong in the environment) and never echoed back
    url = "http://admin:s3cret@127.0.0.1:9"
    assert main(["run", "--data-dir", str(tmp_path), "--prometheus-url", url]) == 2
    err = capsys.readouterr().err
    assert "s3cret" not in err and "prometheus" in err.lower()


@pytest.mark.integration
def test_run_prints_progress_and_summary_and_survives_bad_rows(tiny_dataset, tmp_path, capsys):
    good = {"request_id": "a", "cluster": "c1", "model": "m", "start_time": "2024-05-01T00:25:00Z",
            "duration_s": 150, "input_tokens": 10, "output_tokens": 20}
    (tiny_dataset / "requests" / "r.jsonl").write_text(json.dumps(good) + "\n{broken\n")
    (tiny_dataset / "factors").mkdir()
    (tiny_dataset / "factors" / "water.csv").write_text("zone,water_per_kwh\nUS,2.0\n")  # rejected whole
    warehouse = tmp_path / "new" / "dir" / "wh.duckdb"
    assert main(["run", "--data-dir", str(tiny_dataset), "--warehouse", str(warehouse)]) == 0
    out = capsys.readouterr().out
    assert "[1/1] 2024-05-01  ok" in out
    summary = next(line for line in out.splitlines() if line.startswith("2024-05-01  ")).split()
    # day, cluster, requests, metered_kwh, attributed_kwh, unattributed_kwh, coverage, resets, rejected rows
    assert summary[:3] == ["2024-05-01", "c1", "1"]
    assert float(summary[3]) == pytest.approx(19_023_000 / 3.6e6, abs=1e-3)
    # rejected rows: the broken line and the factor file, neither tied to a day, are counted in the run's days too
    assert summary[4] == summary[3] and summary[-1] == "2"
    # the day's impact, on the shipped factors: facility = PUE x metered (clusters.yml pue) and an hourly grid
    impact = [line for line in out.split("Impact of the requests")[1].splitlines() if line.startswith("2024-05-01")]
    assert len(impact) == 1 and impact[0].split()[-1] == "hourly"  # shipped Electricity Maps US-CAL-CISO 2024
    assert float(impact[0].split()[2]) == pytest.approx(1.2 * float(summary[3]), abs=2e-3)
    # and why: the rejection, with its file and line
    assert "requests/r.jsonl:2  malformed JSON" in out
    # a factor file none of whose rows loaded is a warning, not only a row of raw.rejected_rows
    assert "Warning: factor file factors/water.csv was rejected whole (missing required column ewif_l_per_kwh" in out
    # progress: the day's line before its steps, the slow dbt step as it finished, then the status line
    lines = out.splitlines()
    assert lines.index("[1/1] 2024-05-01  running ...") < next(
        i for i, line in enumerate(lines) if line.startswith("[1/1] 2024-05-01  ok"))  # fmt: skip
    assert any(line.strip().startswith("dbt models (and their tests)") for line in lines)
    # the new warehouse's dbt folder was parsed in the background, so its first build parsed partially
    assert "Unable to do partial parsing" not in (tmp_path / "new" / "dir" / "wh.duckdb.run.log").read_text()


def test_a_background_parse_is_started_once_and_waited_for(tmp_path):
    warehouse = (tmp_path / "wh.duckdb").resolve()
    target = warehouse_target_path(warehouse)
    try:
        assert start_background_parse(warehouse)
        wait_for_parse(target)  # returns once dbt has exited and released the folder's lock
        assert (target / "partial_parse.msgpack").is_file() and (target / "manifest.json").is_file()
        assert not warehouse.exists()  # parsing never opens the warehouse
        assert not start_background_parse(warehouse)  # already parsed: nothing to do
    finally:
        shutil.rmtree(target, ignore_errors=True)


def test_dbt_failure_detail_names_the_model_and_the_upgrade_hint(tmp_path):
    from orchestration.cli import SCHEMA_CHANGE_HINT, _dbt_failure_detail

    log = tmp_path / "wh.duckdb.run.log"
    log.write_text("an earlier run\n\x1b[31mFailure in model old_model (models/old.sql)\x1b[0m\n")
    offset = log.stat().st_size
    with log.open("a") as f:
        f.write("\x1b[31mFailure in test not_null_fct_x_y (models/x.yml)\x1b[0m\n  Got 3 results\n")
    assert _dbt_failure_detail(log, offset) == "\n    dbt: Failure in test not_null_fct_x_y (models/x.yml)"
    with log.open("a") as f:
        f.write("The source and target schemas on this incremental model are out of sync!\n")
    assert SCHEMA_CHANGE_HINT in _dbt_failure_detail(log, offset)
    assert _dbt_failure_detail(log, log.stat().st_size) == ""
