"""Ingestion of inputs that are not what they claim (docs/telemetry-faults.md): text that is not UTF-8, epoch
units, node names spelt differently, a GPU named by index and by UUID, files read in bounded chunks."""

import datetime as dt
import gzip
import json

import duckdb
import pandas as pd
import pytest
from conftest import TINY_CLUSTER, write_clusters

from orchestration.lib.ingestion import fault_report, identity, ingest
from orchestration.lib.ingestion.textlines import iter_line_batches, read_text_lines
from orchestration.lib.simulation.simfaults import Faults
from orchestration.lib.warehouse import warehouse

DAY = dt.date(2024, 5, 1)
GOOD = {"request_id": "r", "cluster": "c1", "model": "m", "start_time": "2024-05-01T10:00:00Z", "duration_s": 2.5,
        "input_tokens": 10, "output_tokens": 20}


@pytest.fixture
def data_dir(tmp_path):
    data = tmp_path / "inputs"
    (data / "requests").mkdir(parents=True)
    (data / "telemetry").mkdir()
    write_clusters(data / "clusters.yml", [TINY_CLUSTER])
    return data


def test_lines_are_numbered_across_chunks_gzip_and_bad_bytes(tmp_path, con):
    lines = [f"line {i} " + "x" * (i % 37) for i in range(500)]
    raw = "\r\n".join(lines).encode()
    raw = raw.replace(b"line 250 ", b"line 250 caf\xe9 ")  # one cp1252 byte
    (tmp_path / "t.txt").write_bytes(b"\xef\xbb\xbf" + raw)
    with gzip.open(tmp_path / "t.txt.gz", "wb") as f:
        f.write(raw)
    for name in ("t.txt", "t.txt.gz"):
        got = [r for b in iter_line_batches(tmp_path / name, chunk_bytes=61) for r in b.to_pylist()]
        assert [r["source_row"] for r in got] == list(range(1, 501))
        assert [r["line"] for r in got if r["source_row"] != 251] == [x for i, x in enumerate(lines) if i != 250]
        bad = got[250]
        assert bad["line"].startswith("line 250 caf\\xe9 ")
        assert bad["line_error"].startswith("not UTF-8 text: byte 0xE9 at byte 13 of the line")
        assert all(r["line_error"] is None for r in got if r["source_row"] != 251)
    assert read_text_lines(con, tmp_path / "t.txt").aggregate("count(*)").fetchall() == [(500,)]


def test_a_non_utf8_line_is_a_rejected_row_in_every_text_format(data_dir, tmp_path):
    body = [json.dumps({**GOOD, "request_id": f"r{i}"}) for i in range(5)]
    body[2] = body[2].replace('"m"', '"caf\u00e9"')
    (data_dir / "requests" / "r.jsonl").write_bytes("\n".join(body).replace("caf\u00e9", "CAFE").encode()
                                                     .replace(b"CAFE", b"caf\xe9") + b"\n")
    (data_dir / "requests" / "r.csv").write_bytes(
        b"request_id,cluster,model,start_time,duration_s\n"
        b"c1,c1,m,2024-05-01T10:00:00Z,1\nc2,c1,caf\xe9,2024-05-01T10:00:00Z,1\nc3,c1,m,2024-05-01T10:00:00Z,1\n"
    )
    (data_dir / "telemetry" / "t.prom").write_bytes(
        b'DCGM_FI_DEV_POWER_USAGE{cluster="c1",Hostname="n1",gpu="0"} 50 1714521615000\n'
        b'DCGM_FI_DEV_POWER_USAGE{cluster="c1",Hostname="n\xe91",gpu="0"} 50 1714521630000\n'
        b'DCGM_FI_DEV_POWER_USAGE{cluster="c1",Hostname="n1",gpu="0"} 50 1714521645000\n'
    )
    with warehouse(tmp_path / "wh.duckdb") as con:
        ingest.ingest_clusters(con, data_dir)
        requests = ingest.ingest_requests(con, data_dir, DAY)
        telemetry = ingest.ingest_telemetry(con, data_dir, DAY)
        rejected = con.execute(
            "select source_file, source_row, reason, raw_record from raw.rejected_rows order by source_file"
        ).fetchall()
    assert (requests.loaded, requests.rejected, telemetry.loaded, telemetry.rejected) == (6, 2, 2, 1)
    assert [(f, row) for f, row, _, _ in rejected] == [
        ("requests/r.csv", 3), ("requests/r.jsonl", 3), ("telemetry/t.prom", 2)]
    for _, _, reason, raw in rejected:
        assert reason.startswith("not UTF-8 text: byte 0xE9") and "cp1252" in reason
        assert "\\xe9" in raw and "\ufffd" not in raw


@pytest.mark.parametrize(
    "start_time, unit",
    [(1714557600123, "epoch milliseconds"), (1714557600123456, "epoch microseconds"),
     (1714557600123456789, "epoch nanoseconds")],
)
def test_epoch_units_other_than_seconds_are_refused_by_name(data_dir, tmp_path, start_time, unit):
    (data_dir / "requests" / "r.jsonl").write_text(json.dumps({**GOOD, "start_time": start_time}) + "\n")
    pd.DataFrame([{**GOOD, "request_id": "p", "start_time": float(start_time)}]).to_parquet(
        data_dir / "requests" / "r.parquet")
    with warehouse(tmp_path / "wh.duckdb") as con:
        ingest.ingest_clusters(con, data_dir)
        ingest.ingest_requests(con, data_dir, DAY)
        reasons = [r[0] for r in con.execute("select reason from raw.rejected_rows order by source_file").fetchall()]
    assert len(reasons) == 2
    assert all(r.startswith(f"{unit} in start_time '") and "(epoch seconds or RFC 3339 expected)" in r
               for r in reasons), reasons


def test_node_names_are_normalised_with_the_clusters_rules(data_dir, tmp_path):
    cluster = {**TINY_CLUSTER, "node_pattern": r"^ip-([a-z0-9-]+)\.ec2\.internal$",
               "node_aliases": {"10.0.0.7:9100": "n7", "GPU-NODE-9": "n9"}}
    write_clusters(data_dir / "clusters.yml", [cluster])
    names = ["GPU-NODE-00", " gpu-node-01:9400 ", "ip-n3.ec2.internal", "10.0.0.7", "gpu-node-9:1234", "[fe80::1]:9100",
             None]
    pd.DataFrame([{**GOOD, "request_id": f"r{i}", "node": n} for i, n in enumerate(names)]).to_json(
        data_dir / "requests" / "r.jsonl", orient="records", lines=True)
    with warehouse(tmp_path / "wh.duckdb") as con:
        ingest.ingest_clusters(con, data_dir)
        ingest.ingest_requests(con, data_dir, DAY)
        got = [r[0] for r in con.execute("select node from raw.requests order by request_id").fetchall()]
    assert got == ["gpu-node-00", "gpu-node-01", "n3", "n7", "n9", "[fe80::1]", None]
    assert identity.normalise_node(" GPU-NODE-01:9400") == "gpu-node-01"


def test_a_gpu_named_by_index_and_by_uuid_is_one_gpu(data_dir, tmp_path):
    rows = []
    for k in range(9):  # 00:00:15 .. 00:02:15; from 00:01:15 the series names the GPU by its UUID only
        t = f"2024-05-01T00:{(15 + 15 * k) // 60:02d}:{(15 + 15 * k) % 60:02d}Z"
        gpu = "0" if k < 4 else "GPU-abc"
        rows.append((t, "c1", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 1e6 + 750e3 * k, "N1:9400", gpu, "GPU-abc"))
    pd.DataFrame(rows, columns=["timestamp", "cluster", "metric", "value", "node", "gpu", "gpu_uuid"]).to_csv(
        data_dir / "telemetry" / "t.csv", index=False)
    with warehouse(tmp_path / "wh.duckdb") as con:
        ingest.ingest_clusters(con, data_dir)
        ingest.ingest_telemetry(con, data_dir, DAY)
        series = con.execute(
            "select node_label, gpu_label, node, gpu, logical_key from raw.telemetry_series order by gpu_label"
        ).fetchall()
    assert [(s[0], s[1], s[2], s[3]) for s in series] == [
        ("N1:9400", "0", "n1", "0"), ("N1:9400", "GPU-abc", "n1", "0")]
    assert series[0][4] == series[1][4]  # one logical series


def test_bad_node_rules_and_gpu_max_are_refused_in_clusters_yml():
    base = {**TINY_CLUSTER}
    cases = {
        "node_pattern": ("(?<=ip-)x", "look-around"),
        "node_aliases": (["a", "b"], "node_aliases must map"),
        "gpu_max_w": (0, "gpu_max_w must be a positive number"),
    }
    for key, (value, reason) in cases.items():
        valid, rejected = ingest.parse_clusters_yaml(json.dumps({"clusters": [{**base, key: value}]}))
        assert not valid and reason in rejected[0][1], (key, rejected)
    valid, rejected = ingest.parse_clusters_yaml(json.dumps({"clusters": [{**base, "gpu_max_w": 500}]}))
    assert valid and not rejected


def test_a_sample_less_than_a_second_after_midnight_opens_no_day(data_dir, tmp_path):
    frame = pd.DataFrame(
        [(1714521600.0 + 86400 * d + s, "c1", "DCGM_FI_DEV_POWER_USAGE", 50.0, "n1", "0")
         for d, s in ((0, 15.0), (0, 86385.0), (1, 0.0), (1, 0.3))],
        columns=["timestamp", "cluster", "metric", "value", "node", "gpu"])
    frame.to_parquet(data_dir / "telemetry" / "t.parquet")
    frame.assign(timestamp=pd.to_datetime(frame["timestamp"], unit="s", utc=True).dt.strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")).to_csv(data_dir / "telemetry" / "t.csv", index=False)
    con = duckdb.connect()
    assert ingest.days_in_inputs(con, data_dir) == [DAY]


def test_duration_in_milliseconds_is_named(tmp_path):
    with warehouse(tmp_path / "wh.duckdb") as con:
        con.execute(
            "insert into raw.requests (partition_day, request_id, cluster, model, start_time, duration_s, "
            "input_tokens, output_tokens, source_file, source_row) "
            "select date '2024-05-01', 'r' || i, 'c1', 'm', timestamp '2024-05-01 10:00:00', "
            "case when i < 50 then 8500 else 9.5 end, 100, 199, 'f', i from range(80) t(i)"
        )
        findings = fault_report.duration_findings(con, [DAY], with_telemetry=False)
    assert len(findings) == 1 and "duration_s looks like milliseconds" in findings[0]
    assert "42.5 s per output token over 80 requests" in findings[0]


def test_fault_options_parse_and_validate():
    faults = Faults.parse(["counter_glitches=3", "duration-unit=ms", "relabel_uuid_column=false",
                           "gpu_relabel_at=2024-05-01T12:00:00Z"])
    assert (faults.counter_glitches, faults.duration_unit, faults.relabel_uuid_column) == (3, "ms", False)
    assert faults.any and not Faults().any
    with pytest.raises(ValueError, match="KEY=VALUE"):
        Faults.parse(["nonsense=1"])
    with pytest.raises(ValueError, match="duration_unit"):
        Faults(duration_unit="h")
