"""The pure parts of the Prometheus pull (orchestration.lib.ingestion.prometheus): URLs without credentials, chunk plans,
PromQL selectors, size refusals, decoding and label mapping of /api/v1/query responses, the samples path of
ingest_telemetry, and the OpenMetrics writer. The live server tests are in test_prometheus_live.py."""

import datetime as dt
import itertools
import json
import tempfile
from pathlib import Path

import duckdb
import pytest
from conftest import write_clusters

from orchestration.cli import main
from orchestration.lib.ingestion import ingest
from orchestration.lib.ingestion import prometheus as p
from orchestration.lib.ingestion.prom import prom_samples_to_long, read_prom_lines
from orchestration.lib.warehouse import warehouse

SECRET = "hunter2-secret"


def test_safe_url_drops_credentials_query_and_fragment():
    assert p.safe_url(f"https://bob:{SECRET}@prom.example:9090/prom/?token={SECRET}#x") == (
        "https://prom.example:9090/prom"
    )
    assert p.safe_url("http://[::1]:9090") == "http://[::1]:9090"
    assert p.source_name("http://127.0.0.1:9090/") == "127.0.0.1:9090"


def test_check_url_refuses_credentials_in_the_url_without_showing_them():
    with pytest.raises(p.PrometheusError) as err:
        p.check_url(f"http://bob:{SECRET}@127.0.0.1:9090")
    assert SECRET not in str(err.value) and "http://127.0.0.1:9090" in str(err.value)
    assert p.TOKEN_ENV in str(err.value)
    for bad in ("127.0.0.1:9090", "ftp://x", "http://", "http://h:99999"):
        with pytest.raises(p.PrometheusError):
            p.check_url(bad)
    assert p.check_url(" http://h:9090/ ") == "http://h:9090"


def test_cli_refuses_a_url_with_credentials(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(p.URL_ENV, raising=False)
    code = main(["run", "--data-dir", str(tmp_path), "--prometheus-url", f"http://bob:{SECRET}@127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 2 and "holds credentials" in err and SECRET not in err
    # the flag does not outlive the command
    import os

    assert p.URL_ENV not in os.environ


def test_client_auth_options_are_checked_and_never_shown(tmp_path):
    client = p.PrometheusClient("http://h:1", bearer_token=SECRET)
    assert SECRET not in repr(client) and client.shown_url == "http://h:1"
    with pytest.raises(p.PrometheusError, match="not both"):
        p.PrometheusClient("http://h:1", bearer_token=SECRET, username="u", password="x")
    with pytest.raises(p.PrometheusError, match="needs both"):
        p.PrometheusClient("http://h:1", username="u")
    with pytest.raises(p.PrometheusError, match="CA bundle"):
        p.PrometheusClient("https://h:1", ca_bundle=str(tmp_path / "missing.pem"))
    session = p.PrometheusClient("http://h:1", bearer_token=SECRET)._session()
    assert session.headers["Authorization"] == f"Bearer {SECRET}"
    session = p.PrometheusClient("http://h:1", username="u", password=SECRET, verify_tls=False)._session()
    assert session.auth == ("u", SECRET) and session.verify is False


@pytest.mark.parametrize("chunk_s", [1.0, 317.0, 3600.0, 86400.0, 200000.0])
def test_chunks_are_contiguous_bounded_and_cover_the_range(chunk_s):
    lo, hi = 1700092200.0, 1700179800.0
    chunks = p.plan_chunks(lo, hi, chunk_s)
    assert chunks[0][0] == pytest.approx(lo - 0.001) and chunks[-1][1] == hi
    assert all(a[1] == b[0] for a, b in itertools.pairwise(chunks))
    assert all(0 < end - start <= chunk_s + 0.001 for start, end in chunks)
    assert all(round(x * 1000) == x * 1000 for c in chunks for x in c)  # whole milliseconds
    with pytest.raises(ValueError):
        p.plan_chunks(lo, hi, 0.5)


def test_range_query_and_series_groups():
    assert p.range_query("DCGM_FI_DEV_POWER_USAGE", 'cluster=~"a"', 100.0, 3700.0) == (
        'DCGM_FI_DEV_POWER_USAGE{cluster=~"a"}[3600000ms]'
    )
    with pytest.raises(ValueError):
        p.range_query("bad name", "", 0, 1)
    mapping = p.LabelMapping(clusters=(p.ClusterSelector("east", 'job="triton-east"', node_labels=("pod",)),))
    groups = p.series_groups(mapping, ["west.1", 'we"st', "east", "north"])
    # only the clusters of clusters.yml, regex metacharacters and quotes escaped
    assert groups[0].matchers == 'cluster=~"north|we\\"st|west\\\\.1"' and groups[0].cluster is None
    assert groups[1] == p.SeriesGroup('job="triton-east"', "east", ("pod",), p.GPU_LABELS)
    # an override for a cluster not in clusters.yml is not queried
    assert [g.cluster for g in p.series_groups(mapping, ["west"])] == [None]
    assert p.series_groups(mapping, []) == []
    with pytest.raises(ValueError):
        p.LabelMapping(node_labels=("bad-label",))
    with pytest.raises(ValueError):
        p.ClusterSelector("x", " ")


def test_size_refusals_are_recognised():
    too_many = '{"status":"error","errorType":"execution","error":"query processing would load too many samples'
    assert p._too_big(422, too_many)
    assert p._too_big(503, '{"status":"error","errorType":"timeout","error":"query timed out in expression eval"}')
    assert not p._too_big(400, '{"status":"error","errorType":"bad_data","error":"parse error"}')
    assert not p._too_big(503, "Service Unavailable")


def _response(series: list[tuple[dict, list[tuple[float, str]]]]) -> str:
    return json.dumps({"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": labels, "values": [[ts, v] for ts, v in values]} for labels, values in series]}})


def test_decode_maps_labels_filters_chunk_bounds_and_numbers_rows(tmp_path):
    dcgm = {"__name__": "DCGM_FI_DEV_POWER_USAGE", "cluster": "west", "Hostname": "n1", "instance": "10.0.0.1:9400",
            "gpu": "0", "UUID": "GPU-1"}
    triton = {"__name__": "nv_gpu_power_usage", "instance": "n2:8002", "gpu_uuid": "GPU-2", "job": "t"}
    node_cpu = {"__name__": "node_cpu_seconds_total", "cluster": "west", "instance": "n1:9100", "cpu": "3",
                "mode": "idle"}
    files = {
        "a.json": _response([(dcgm, [(99.999, "1"), (100.0, "2"), (100.5, "NaN"), (160.0, "+Inf")])]),
        "b.json": _response([(triton, [(130.0, "3.5"), (160.0, "4")])]),
        "c.json": _response([(node_cpu, [(120.0, "1e3")])]),
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    groups = [
        p.SeriesGroup('cluster=~"west"', None, p.NODE_LABELS, p.GPU_LABELS),
        p.SeriesGroup('job="t"', "east", ("instance",), ("gpu_uuid",)),
    ]
    manifest = [
        (str(tmp_path / "a.json"), "DCGM_FI_DEV_POWER_USAGE", 0, 99.999, 160.0),
        (str(tmp_path / "b.json"), "nv_gpu_power_usage", 1, 100.0, 160.0),
        (str(tmp_path / "c.json"), "node_cpu_seconds_total", 0, 100.0, 160.0),
    ]
    out = tmp_path / "out.parquet"
    con = duckdb.connect()
    p._decode(con, manifest, groups, p.LabelMapping(), "h:9090", out)
    rows = duckdb.sql(f"select * from '{out}' order by source_file, source_row").fetchall()
    cols = duckdb.sql(f"select * from '{out}' limit 0").columns
    assert tuple(cols) == p.SAMPLE_COLUMNS
    got = [dict(zip(cols, r)) for r in rows]
    # (start, end]: 99.999 is the previous chunk's
    dcgm_rows = [r for r in got if r["metric"] == "DCGM_FI_DEV_POWER_USAGE"]
    assert [r["timestamp"] for r in dcgm_rows] == [100.0, 100.5, 160.0]
    assert [r["source_row"] for r in dcgm_rows] == [1, 2, 3]
    assert dcgm_rows[1]["value"] != dcgm_rows[1]["value"]  # NaN kept, ingestion rejects it with a reason
    assert dcgm_rows[2]["value"] == float("inf")
    assert {(r["cluster"], r["node"], r["gpu"]) for r in dcgm_rows} == {("west", "n1", "0")}  # Hostname wins
    assert dcgm_rows[0]["source_file"] == "prometheus:h:9090/DCGM_FI_DEV_POWER_USAGE"
    assert dcgm_rows[0]["raw_record"] == (
        'DCGM_FI_DEV_POWER_USAGE{Hostname="n1",UUID="GPU-1",cluster="west",gpu="0",instance="10.0.0.1:9400"} 2 100.0'
    )  # (the value and time as the server sent them)
    tri = [r for r in got if r["metric"] == "nv_gpu_power_usage"]
    assert [(r["cluster"], r["node"], r["gpu"], r["value"]) for r in tri] == [
        ("east", "n2", "GPU-2", 3.5), ("east", "n2", "GPU-2", 4.0)]  # cluster from the selector, port dropped
    (cpu,) = [r for r in got if r["metric"] == "node_cpu_seconds_total"]
    assert (cpu["node"], cpu["gpu"], cpu["cpu"], cpu["mode"], cpu["value"]) == ("n1", None, "3", "idle", 1000.0)
    assert all(r["cpu"] is None for r in got if r["metric"] != "node_cpu_seconds_total")


def test_decode_of_nothing_writes_an_empty_typed_file(tmp_path):
    out = tmp_path / "empty.parquet"
    p._decode(duckdb.connect(), [], [], p.LabelMapping(), "h:1", out)
    rel = duckdb.sql(f"select * from '{out}'")
    assert rel.fetchall() == [] and tuple(rel.columns) == p.SAMPLE_COLUMNS


def test_ingest_validates_pulled_samples_like_files(tmp_path, data_dir_with_one_cluster):
    """Bad samples from the server are rejected with a reason that names the series' source, good ones load."""
    day = dt.date(2024, 5, 1)
    t0 = dt.datetime(2024, 5, 1, tzinfo=dt.UTC).timestamp()
    src = "prometheus:h:9090/DCGM_FI_DEV_POWER_USAGE"
    con_rows = [
        (src, 1, "r1", t0 + 15, "c1", "DCGM_FI_DEV_POWER_USAGE", 100.0, "n1", "0", None, None),
        (src, 2, "r2", t0 + 30, "c1", "DCGM_FI_DEV_POWER_USAGE", float("nan"), "n1", "0", None, None),
        (src, 3, "r3", t0 + 45, "nope", "DCGM_FI_DEV_POWER_USAGE", 100.0, "n1", "0", None, None),
        (src, 4, "r4", t0 + 60, "c1", "DCGM_FI_DEV_POWER_USAGE", 100.0, None, "0", None, None),
        ("prometheus:h:9090/node_cpu_seconds_total", 1, "r5", t0 + 15, "c1", "node_cpu_seconds_total", 5.0, "n1",
         None, "0", "idle"),
        (src, 5, "r6", t0 - 7200, "c1", "DCGM_FI_DEV_POWER_USAGE", 100.0, "n1", "0", None, None),  # out of range
    ]
    with warehouse(tmp_path / "wh.duckdb") as con:
        ingest.ingest_clusters(con, data_dir_with_one_cluster)
        con.execute(
            "create temp table pulled (source_file varchar, source_row bigint, raw_record varchar, "
            '"timestamp" double, cluster varchar, metric varchar, value double, node varchar, gpu varchar, '
            "cpu varchar, mode varchar)"
        )
        con.executemany("insert into pulled values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", con_rows)
        summary = ingest.ingest_telemetry(con, data_dir_with_one_cluster, day, samples="pulled")
        loaded = con.execute(
            "select metric, node, cpu, mode, value, source_file from raw.telemetry_samples order by metric"
        ).fetchall()
        rejected = con.execute(
            "select source_file, source_row, reason, raw_record from raw.rejected_rows order by source_row"
        ).fetchall()
    assert summary.files == 2 and summary.loaded == 2 and summary.rejected == 3
    assert summary.lines_in_scope == 5
    assert loaded == [
        ("DCGM_FI_DEV_POWER_USAGE", "n1", None, None, 100.0, src),
        ("node_cpu_seconds_total", "n1", "0", "idle", 5.0, "prometheus:h:9090/node_cpu_seconds_total"),
    ]
    assert [(r[1], r[2].split(" (")[0]) for r in rejected] == [
        (2, "value is nan"), (3, "unknown cluster 'nope'"), (4, "missing node label")]
    assert {r[0] for r in rejected} == {src} and rejected[0][3] == "r2"


@pytest.fixture()
def data_dir_with_one_cluster(tmp_path):
    data = tmp_path / "inputs"
    data.mkdir()
    # a telemetry file that must NOT be read when samples come from the server
    (data / "telemetry").mkdir()
    (data / "telemetry" / "t.csv").write_text(
        "timestamp,cluster,metric,value,node,gpu\n2024-05-01T00:00:10Z,c1,DCGM_FI_DEV_POWER_USAGE,1,n9,0\n"
    )
    write_clusters(data / "clusters.yml", [{"id": "c1", "region": "US-CAL-CISO", "gpu_model": "A100",
                                            "gpus_per_node": 1, "host_idle_w": 100, "host_max_w": 200}])
    return data


def test_openmetrics_round_trips_through_the_exposition_parser(tmp_path):
    con = duckdb.connect()
    con.execute(
        """
        create table s as select * from (values
            (1700092800.0, 'west', 'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION', 222088253204.0, 'n1', '0', null, null),
            (1700092815.5, 'west', 'DCGM_FI_DEV_POWER_USAGE', 61.123456789, 'n1', '0', null, null),
            (1700092815.0, 'east', 'nv_gpu_power_usage', 0.1, 'n2', 'GPU-x', null, null),
            (1700092815.0, 'east', 'nv_cpu_utilization', 1e-7, 'n2', null, null, null),
            (1700092815.0, 'east', 'node_cpu_seconds_total', 12345.25, 'n2', null, '7', 'idle'),
            (1700092830.0, 'we"st', 'nv_gpu_utilization', 'nan'::double, 'n\\3', 'g', null, null)
        ) t("timestamp", cluster, metric, value, node, gpu, cpu, mode)
        """
    )
    out = tmp_path / "x.om"
    assert p.write_openmetrics(con, "s", out) == 6
    text = out.read_text()
    assert text.endswith("# EOF\n") and "# TYPE nv_gpu_power_usage gauge" in text
    assert 'DCGM_FI_DEV_POWER_USAGE{cluster="west",job="dcgm",Hostname="n1",gpu="0"} 61.123456789 1700092815.500' in text
    back = prom_samples_to_long(con, read_prom_lines(con, str(out), timestamp_unit="s"))
    got = sorted(
        (r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7])
        for r in back.project(
            "timestamp_s, cluster, metric, value, node, gpu, cpu, mode").fetchall()
    )
    want = sorted(con.execute("select * from s").fetchall())
    assert [g[:3] + g[4:] for g in got] == [
        w[:3] + ((w[4].split(":")[0] + ":8002",) if w[2].startswith("nv_") else
                 (w[4] + ":9100",) if w[2].startswith("node_") else (w[4],)) + w[5:]
        for w in want
    ]
    assert [g[3] for g in got][:-1] == [w[3] for w in want][:-1]  # values exact (the last one is NaN)
    with pytest.raises(ValueError):
        p.write_openmetrics(con, "s", out, style="other")


class _Flaky:
    """A tiny local HTTP server answering from a script of (status, body), for the retry logic."""

    def __init__(self, script):
        import http.server
        import threading

        outer = self
        self.script, self.calls = list(script), []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                outer.calls.append(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode())
                status, body = outer.script.pop(0) if len(outer.script) > 1 else outer.script[0]
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


OK_BODY = b'{"status":"success","data":{"resultType":"matrix","result":[]}}'


def test_5xx_is_retried_with_backoff_then_succeeds():
    flaky = _Flaky([(502, b"bad gateway"), (503, b"unavailable"), (200, OK_BODY)])
    try:
        client = p.PrometheusClient(flaky.url, max_retries=3, backoff_s=0.01)
        assert client.query("up[1m]", 1700000000.0) == OK_BODY
        assert len(flaky.calls) == 3 and "time=1700000000.000" in flaky.calls[0]
    finally:
        flaky.close()


def test_refusals_fail_at_once_and_exhausted_retries_say_so():
    refused = _Flaky([(400, b'{"status":"error","errorType":"bad_data","error":"parse error"}')])
    down = _Flaky([(500, b"internal")])
    try:
        with pytest.raises(p.PrometheusError) as err:
            p.PrometheusClient(refused.url, max_retries=3, backoff_s=0.01).query("up{", 1700000000.0)
        assert len(refused.calls) == 1
        assert f"Prometheus at {refused.url}: HTTP 400" in str(err.value) and "parse error" in str(err.value)
        assert "query up{ at 2023-11-14T22:13:20Z" in str(err.value)
        with pytest.raises(p.PrometheusError, match="after 3 attempts: HTTP 500"):
            p.PrometheusClient(down.url, max_retries=2, backoff_s=0.01).query("up[1m]", 1700000000.0)
        assert len(down.calls) == 3
    finally:
        refused.close()
        down.close()


def test_a_chunk_refused_as_too_big_is_split():
    too_big = b'{"status":"error","errorType":"execution","error":"query processing would load too many samples"}'
    server = _Flaky([(422, too_big), (200, OK_BODY)])
    try:
        stats = p.fetch_samples(p.PrometheusClient(server.url), ["c"], 0.0, 3599.999,
                                Path(tempfile.mkdtemp()) / "x.parquet", chunk_s=3600, metrics=["nv_gpu_power_usage"])
        assert stats.splits == 1 and stats.queries == 2 and len(server.calls) == 3
    finally:
        server.close()
