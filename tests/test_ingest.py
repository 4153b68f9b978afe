"""Ingestion: every row read is loaded or rejected with its file, line and reason; units and labels normalised."""

import datetime as dt
import gzip
import json
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from conftest import TINY_CLUSTER, write_clusters

from orchestration.lib.ingestion import ingest
from orchestration.lib.warehouse import warehouse

DAY = dt.date(2024, 5, 1)
FIXTURES = Path(__file__).parent / "fixtures"

GOOD = {"request_id": "ok-1", "cluster": "c1", "model": "m", "start_time": "2024-05-01T10:00:00Z",
        "duration_s": 2.5, "input_tokens": 10, "output_tokens": 20}

# (line as written, the reason it must be rejected with; None = loaded)
REQUEST_LINES = [
    (json.dumps(GOOD), None),
    ('{"request_id": "x1", "cluster": "c1", "model": "m", "start_time": "2024-05-01T10:00:00Z"', "malformed JSON"),
    ("[1, 2]", "JSON value is not an object"),
    (json.dumps({**GOOD, "request_id": "x2", "start_time": "yesterday"}), "unparseable start_time 'yesterday'"),
    (json.dumps({**GOOD, "request_id": "x3", "start_time": None}), "missing start_time"),
    (json.dumps({**GOOD, "request_id": "x4", "duration_s": None}), "missing duration_s"),
    (json.dumps({**GOOD, "request_id": "x5", "duration_s": -3}), "negative duration_s (-3)"),
    (json.dumps({**GOOD, "request_id": "x6", "duration_s": "NaN"}), "duration_s is NaN"),
    (json.dumps({**GOOD, "request_id": "x7", "duration_s": "fast"}), "non-numeric duration_s 'fast'"),
    (json.dumps({**GOOD, "request_id": "x8", "input_tokens": -1}), "negative input_tokens (-1)"),
    (json.dumps({**GOOD, "request_id": "x9", "output_tokens": "many"}), "non-numeric output_tokens 'many'"),
    (json.dumps({**GOOD, "request_id": "x10", "output_tokens": 2.5}), "non-integer output_tokens (2.5)"),
    (json.dumps({**GOOD, "request_id": "x11", "model": ""}), "missing model"),
    (json.dumps({**GOOD, "request_id": "x12", "cluster": "nowhere"}), "unknown cluster 'nowhere' (not in clusters.yml)"),
    (json.dumps({**GOOD, "request_id": None}), "missing request_id"),
    (json.dumps({**GOOD, "request_id": "ok-1", "duration_s": 9}), "duplicate request_id 'ok-1' (first at requests/bad.jsonl:1)"),
    (json.dumps({**GOOD, "request_id": "x13", "duration_s": 10 * 86400}), "duration_s 864000 exceeds the limit of 21600.0 s"),
    (json.dumps({**GOOD, "request_id": "x14", "start_time": "2024-05-01 10:00:00"}),
     "start_time without UTC offset '2024-05-01 10:00:00' (RFC 3339 needs Z or +hh:mm)"),
    (json.dumps({**GOOD, "request_id": "x15", "start_time": "2024/05/01 10:00:00"}),
     "unparseable start_time '2024/05/01 10:00:00'"),
    (json.dumps({**GOOD, "request_id": "x16", "start_time": 713453000}),
     "implausible start_time '713453000' (before 2000 or in the future: clock skew?)"),
    (json.dumps({**GOOD, "request_id": "x17", "start_time": "2999-01-01T00:00:00Z"}),
     "implausible start_time '2999-01-01T00:00:00Z' (before 2000 or in the future: clock skew?)"),
    (json.dumps({**GOOD, "request_id": "ok-2", "start_time": 1714557600.5, "input_tokens": None}), None),
    (json.dumps({**GOOD, "request_id": "ok-3", "start_time": "2024-05-01T12:00:00+02:00"}), None),
]


def _load(con, data, day=DAY):
    ingest.ingest_clusters(con, data)
    return ingest.ingest_requests(con, data, day), ingest.ingest_telemetry(con, data, day)


@pytest.fixture
def data_dir(tmp_path):
    data = tmp_path / "inputs"
    (data / "requests").mkdir(parents=True)
    (data / "telemetry").mkdir()
    write_clusters(data / "clusters.yml", [TINY_CLUSTER])
    return data


def test_bad_request_lines_are_all_accounted_for(data_dir, tmp_path):
    lines = [text for text, _ in REQUEST_LINES]
    (data_dir / "requests" / "bad.jsonl").write_text("\n".join(lines[:5]) + "\n\n" + "\n".join(lines[5:]) + "\n")
    with warehouse(tmp_path / "wh.duckdb") as con:
        requests, _ = _load(con, data_dir)
        rejected = con.execute(
            "select source_row, reason, raw_record from raw.rejected_rows where input = 'requests' order by 1"
        ).fetchall()
        loaded = con.execute("select request_id, source_row from raw.requests order by source_row").fetchall()
    # line numbers: the blank line after line 5 is line 6 and is not a record
    expected_row = {i + 1 + (i >= 5): reason for i, (_, reason) in enumerate(REQUEST_LINES)}
    assert {row: reason for row, reason, _ in rejected} == {r: why for r, why in expected_row.items() if why}
    assert [row for _, row in loaded] == [r for r, why in expected_row.items() if why is None]
    assert requests.loaded + requests.rejected == requests.lines_in_scope == len(REQUEST_LINES)
    assert requests.ignored_by_reason == {"blank lines": 1}
    # the raw record is kept verbatim so the sender can fix it
    assert rejected[0][2] == lines[1]


def test_same_rows_in_csv_and_parquet(data_dir, tmp_path):
    frame = pd.DataFrame([
        {**GOOD, "request_id": "c1"},
        {**GOOD, "request_id": "c2", "duration_s": -1},
        {**GOOD, "request_id": "c3", "start_time": "not a time"},
    ])
    frame.to_csv(data_dir / "requests" / "a.csv", index=False)
    with (data_dir / "requests" / "a.csv").open("a") as f:
        f.write("too,few\n")
        f.write("c9,c1,m,2024-05-01T10:00:00Z,1,1,1,extra\n")  # one column too many
    frame.assign(request_id=lambda d: "p" + d["request_id"]).astype(str).to_parquet(
        data_dir / "requests" / "b.parquet", index=False)
    with warehouse(tmp_path / "wh.duckdb") as con:
        summary, _ = _load(con, data_dir)
        rejected = dict(con.execute(
            "select source_file || ':' || source_row, reason from raw.rejected_rows where input = 'requests'"
        ).fetchall())
        loaded = sorted(r[0] for r in con.execute("select request_id from raw.requests").fetchall())
    assert loaded == ["c1", "pc1"]
    assert rejected["requests/a.csv:3"] == "negative duration_s (-1.0)"
    assert rejected["requests/a.csv:4"] == "unparseable start_time 'not a time'"
    assert rejected["requests/a.csv:5"].startswith("malformed CSV line")
    assert rejected["requests/a.csv:6"].startswith("malformed CSV line")
    assert rejected["requests/b.parquet:2"] == "negative duration_s (-1.0)"
    assert summary.lines_in_scope == summary.loaded + summary.rejected == 5 + 3


def test_duplicates_are_resolved_across_files_and_days(data_dir, tmp_path):
    (data_dir / "requests" / "1.jsonl").write_text(json.dumps(GOOD) + "\n")
    late = {**GOOD, "start_time": "2024-05-02T10:00:00Z"}
    (data_dir / "requests" / "2.jsonl").write_text(json.dumps(late) + "\n")
    with warehouse(tmp_path / "wh.duckdb") as con:
        ingest.ingest_clusters(con, data_dir)
        first = ingest.ingest_requests(con, data_dir, DAY)
        second = ingest.ingest_requests(con, data_dir, DAY + dt.timedelta(days=1))
        rows = con.execute("select partition_day, reason from raw.rejected_rows").fetchall()
    assert (first.loaded, first.rejected) == (1, 0)
    assert (second.loaded, second.rejected) == (0, 1)
    assert rows == [(DAY + dt.timedelta(days=1), "duplicate request_id 'ok-1' (first at requests/1.jsonl:1)")]


def test_reloading_a_day_replaces_it(data_dir, tmp_path):
    (data_dir / "requests" / "r.jsonl").write_text(
        "\n".join(text for text, _ in REQUEST_LINES) + "\n")
    with warehouse(tmp_path / "wh.duckdb") as con:
        _load(con, data_dir)
        counts = con.execute("select (select count(*) from raw.requests), (select count(*) from raw.rejected_rows)")
        before = counts.fetchone()
        _load(con, data_dir)
        after = con.execute(
            "select (select count(*) from raw.requests), (select count(*) from raw.rejected_rows)").fetchone()
    assert before == after


def test_telemetry_units_labels_and_rejections(data_dir, tmp_path):
    t = "2024-05-01T00:00:15Z"
    rows = [
        (t, "c1", "DCGM_FI_DEV_GPU_UTIL", "55", "n1", "0"),
        (t, "c1", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "128996013", "n1", "0"),
        (t, "c1", "nv_energy_consumption", "4879631.328", "n1", "GPU-951e"),
        (t, "c1", "nv_gpu_utilization", "0.25", "n1", "GPU-951e"),
        (t, "c1", "DCGM_FI_DEV_SM_CLOCK", "300", "n1", "0"),
        ("soon", "c1", "DCGM_FI_DEV_POWER_USAGE", "50", "n1", "0"),
        (t, "c1", "DCGM_FI_DEV_POWER_USAGE", "abc", "n1", "0"),
        (t, "c1", "DCGM_FI_DEV_POWER_USAGE", "-5", "n1", "0"),
        (t, "c1", "DCGM_FI_DEV_POWER_USAGE", "50", "n1", ""),
        (t, "c1", "DCGM_FI_DEV_POWER_USAGE", "50", "", "0"),
        (t, "zz", "DCGM_FI_DEV_POWER_USAGE", "50", "n1", "0"),
        (t, "c1", "DCGM_FI_DEV_GPU_UTIL", "155", "n1", "1"),
        (t, "c1", "DCGM_FI_DEV_GPU_UTIL", "60", "n1", "0"),
    ]
    frame = pd.DataFrame(rows, columns=["timestamp", "cluster", "metric", "value", "node", "gpu"])
    with gzip.open(data_dir / "telemetry" / "t.csv.gz", "wt") as f:
        frame.to_csv(f, index=False)
    with warehouse(tmp_path / "wh.duckdb") as con:
        _, tel = _load(con, data_dir)
        loaded = con.execute(
            "select metric, quantity, value, gpu from raw.telemetry_samples order by source_row").fetchall()
        rejected = dict(con.execute(
            "select source_row, reason from raw.rejected_rows where input = 'telemetry'").fetchall())
    assert loaded == [
        ("DCGM_FI_DEV_GPU_UTIL", "gpu_utilization_ratio", pytest.approx(0.55), "0"),
        ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "gpu_energy_counter_j", pytest.approx(128996.013), "0"),
        ("nv_energy_consumption", "gpu_energy_counter_j", pytest.approx(4879631.328), "GPU-951e"),
        ("nv_gpu_utilization", "gpu_utilization_ratio", pytest.approx(0.25), "GPU-951e"),
    ]
    assert rejected == {
        7: "unparseable timestamp 'soon'",
        8: "non-numeric value 'abc'",
        9: "negative value (-5) for DCGM_FI_DEV_POWER_USAGE",
        10: "missing gpu label for DCGM_FI_DEV_POWER_USAGE",
        11: "missing node label",
        12: "unknown cluster 'zz' (not in clusters.yml)",
        13: "utilisation above 100% (155) for DCGM_FI_DEV_GPU_UTIL",
        14: "duplicate sample (same series and timestamp)",
    }
    assert tel.ignored_by_reason == {"unused metric DCGM_FI_DEV_SM_CLOCK": 1}
    assert tel.loaded + tel.rejected + 1 == len(rows)


def test_real_prometheus_scrapes_with_timestamps(data_dir, tmp_path):
    """The real DCGM and Triton scrapes (DataDog fixtures), given a timestamp and a cluster the way a
    `promtool`-style export would have them; labels Hostname/gpu and gpu_uuid map to node/gpu."""
    ts_ms = int(dt.datetime(2024, 5, 1, 6, tzinfo=dt.UTC).timestamp() * 1000)
    out = data_dir / "telemetry" / "c1"
    out.mkdir()
    for name in ("dcgm_exporter_T4_excerpt.prom", "triton_metrics_T4_excerpt.prom"):
        text = (FIXTURES / "prom" / name).read_text().splitlines()
        stamped = [line if line.startswith("#") or not line.strip() else f"{line} {ts_ms}" for line in text]
        (out / name).write_text("\n".join(stamped) + "\n")
    # Triton's nv_cpu_utilization has no node label: Prometheus adds `instance` when it scrapes
    (out / "triton_metrics_T4_excerpt.prom").write_text(
        (out / "triton_metrics_T4_excerpt.prom").read_text().replace(
            "nv_cpu_utilization ", 'nv_cpu_utilization{instance="triton:8002"} ')
        .replace('{gpu_uuid="GPU-951eeeeb', '{instance="triton:8002",gpu_uuid="GPU-951eeeeb'))
    with warehouse(tmp_path / "wh.duckdb") as con:
        _, tel = _load(con, data_dir)
        got = {(r[0], r[1]): r[2:] for r in con.execute(
            "select metric, node, gpu, value from raw.telemetry_samples").fetchall()}
    assert got[("DCGM_FI_DEV_POWER_USAGE", "424773df46e0")] == ("0", pytest.approx(8.969))
    assert got[("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "424773df46e0")] == ("0", pytest.approx(128996.013))
    # the scrape target's port is not part of the node's name (identity.py), on files as on the Prometheus path
    assert got[("nv_energy_consumption", "triton")] == (
        "GPU-951eeeeb-d284-d263-688e-d98a5306389b", pytest.approx(4879631.328000044))
    assert got[("nv_cpu_utilization", "triton")] == (None, 0)
    assert tel.rejected == 0
    assert sum(tel.ignored_by_reason.values()) > 10  # clocks, temperatures, request counters: not used


def test_otlp_genai_spans(data_dir, tmp_path):
    """Spans from the collector's file exporter: GenAI spans become requests, other spans are counted as
    ignored, a truncated line is rejected with its line number."""
    write_clusters(data_dir / "clusters.yml", [{**TINY_CLUSTER, "id": "us-west-a100"}])
    shutil.copy(FIXTURES / "otlp" / "spans.otlp.json", data_dir / "requests" / "spans.otlp.json")
    with warehouse(tmp_path / "wh.duckdb") as con:
        ingest.ingest_clusters(con, data_dir)
        days = ingest.days_in_inputs(con, data_dir)
        summaries = [ingest.ingest_requests(con, data_dir, d) for d in days]
        loaded = con.execute(
            "select request_id, model, input_tokens, output_tokens, node, duration_s from raw.requests"
        ).fetchall()
        rejected = con.execute("select source_row, reason from raw.rejected_rows").fetchall()
    assert days == [dt.date(2023, 11, 16)]
    assert loaded and all(model for _, model, *_ in loaded)
    assert ("malformed JSON" in {reason for _, reason in rejected})
    assert sum(s.ignored_by_reason.get("non-GenAI spans", 0) for s in summaries) >= 1


def test_csv_text_with_single_quotes_is_not_misparsed(data_dir, tmp_path):
    """Apostrophes in free text (a tenant named O'Brien, an endpoint 'v1') are text, and double quotes quote
    (RFC 4180; the reader no longer sniffs the quote character, which misread a factor file with many)."""
    (data_dir / "requests" / "quotes.csv").write_text(
        "request_id,cluster,model,start_time,duration_s,input_tokens,output_tokens,tenant,endpoint\n"
        "q1,c1,m,2024-05-01T10:00:00Z,2.5,10,20,O'Brien's team,'v1'\n"
        'q2,c1,m,2024-05-01T10:01:00Z,1.5,5,6,"quoted, with comma",plain\n'
    )
    with warehouse(tmp_path / "q.duckdb") as con:
        requests, _ = _load(con, data_dir)
        got = con.execute("select request_id, tenant, endpoint from raw.requests order by request_id").fetchall()
    assert requests.rejected == 0
    assert got == [("q1", "O'Brien's team", "'v1'"), ("q2", "quoted, with comma", "plain")]


def test_a_series_key_two_label_sets_share_is_refused(data_dir, tmp_path):
    """The 64-bit series key is a hash of the labels: a key already stored for other labels must stop the load
    (not merge two series), and the day's rows must not be half written."""
    frame = pd.DataFrame([("2024-05-01T00:00:15Z", "c1", "DCGM_FI_DEV_POWER_USAGE", "50", "n1", "0")],
                         columns=["timestamp", "cluster", "metric", "value", "node", "gpu"])
    frame.to_csv(data_dir / "telemetry" / "t.csv", index=False)
    with warehouse(tmp_path / "wh.duckdb") as con:
        ingest.ingest_clusters(con, data_dir)
        con.execute(
            "insert into raw.telemetry_series (series_key, cluster, node, gpu, cpu, mode, metric, quantity) "
            "select hash('c1', 'n1', '0', null::varchar, null::varchar, "
            "'DCGM_FI_DEV_POWER_USAGE'), 'c1', 'another-node', '0', null, null, 'DCGM_FI_DEV_POWER_USAGE', "
            "'gpu_power_w'"
        )
        with pytest.raises(duckdb.Error, match="telemetry series key collision"):
            ingest.ingest_telemetry(con, data_dir, DAY)
        assert con.execute("select count(*) from raw.telemetry_points").fetchall() == [(0,)]
        assert con.execute("select node from raw.telemetry_series").fetchall() == [("another-node",)]
