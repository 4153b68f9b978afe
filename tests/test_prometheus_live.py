"""Telemetry pulled from a REAL Prometheus server (Debian package `prometheus`, 2.42 here): the bundled sample day is
backfilled with promtool from an OpenMetrics file labelled as the exporters label their series (DCGM: Hostname,
gpu; Triton: instance host:8002, gpu_uuid), served on 127.0.0.1, and pulled through `impact run
--prometheus-url` and the Dagster assets. No mocks on the main path; the one small HTTP server here is an auth proxy
in front of the real Prometheus (Prometheus itself only does basic auth).

Skipped when prometheus/promtool are missing, except under CI=true, where that is a failure (.ci/run installs them).
"""

import base64
import contextlib
import datetime as dt
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from pathlib import Path
from typing import ClassVar

import duckdb
import pytest
from conftest import REPO, run_days

from orchestration import settings
from orchestration.cli import main
from orchestration.lib.ingestion import prometheus as p

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("prometheus")]

SAMPLE = REPO / "data" / "sample" / "inputs"
DAY = "2023-11-16"
DAY_START = dt.datetime(2023, 11, 16, tzinfo=dt.UTC).timestamp()
CLUSTERS = ("sim-a100-west", "sim-h100-east", "sim-sdxl-central")  # DCGM names / Triton names / DCGM names
SECRET = "s3cret-Pa55-value"


def _require_prometheus() -> None:
    missing = [b for b in ("prometheus", "promtool") if shutil.which(b) is None]
    if missing:
        message = f"{', '.join(missing)} not installed (Debian: apt-get install prometheus)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + ": CI must have it (.ci/run installs it)")
        pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PromServer:
    """A prometheus process on 127.0.0.1 serving `data_dir` (backfilled TSDB blocks), stopped by its own pid."""

    def __init__(self, data_dir: Path, *extra: str):
        self.data_dir, self.extra = data_dir, extra
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> "PromServer":
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = (self.data_dir.parent / f"prometheus-{port}.log").open("w")
        self.proc = subprocess.Popen(
            ["prometheus", "--config.file=/dev/null", f"--storage.tsdb.path={self.data_dir}",
             "--storage.tsdb.retention.time=100y", f"--web.listen-address=127.0.0.1:{port}", *self.extra],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {Path(self.log.name).read_text()[-2000:]}")
            try:
                request = urllib.request.Request(self.url + "/-/ready")
                if "--web.config.file" in " ".join(self.extra):
                    request.add_header("Authorization", "Basic " + base64.b64encode(f"impact:{SECRET}".encode()).decode())
                with urllib.request.urlopen(request, timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("prometheus not ready after 60 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, "log", None):
            self.log.close()


@contextlib.contextmanager
def serving(data_dir: Path, *extra: str):
    server = PromServer(data_dir, *extra).start()
    try:
        yield server
    finally:
        server.stop()


def _blocks(tmp: Path, name: str, where: str = "true") -> Path:
    """TSDB blocks of the sample day's telemetry (the samples `where` selects), as the exporters label them."""
    om = tmp / f"{name}.om"
    con = duckdb.connect()
    con.execute(f"create temp view tel as select * from read_parquet('{SAMPLE}/telemetry/*/*.parquet') where {where}")
    p.write_openmetrics(con, "tel", om)
    data = tmp / name
    p.create_blocks(om, data)
    om.unlink()
    return data


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="module")
def tsdb(tmp_path_factory) -> Path:
    """Backfilled blocks of the whole sample day (copy before serving: the server writes into its folder)."""
    _require_prometheus()
    return _blocks(tmp_path_factory.mktemp("tsdb"), "full")


@pytest.fixture(scope="module")
def inputs_without_telemetry(tmp_path_factory) -> Path:
    """The sample inputs minus telemetry/: telemetry can only come from the server."""
    data = tmp_path_factory.mktemp("inputs")
    shutil.copy(SAMPLE / "clusters.yml", data / "clusters.yml")
    shutil.copytree(SAMPLE / "requests", data / "requests")
    return data


@pytest.fixture(scope="module")
def file_warehouse(tmp_path_factory) -> Path:
    """The same day from the telemetry files: the reference."""
    _require_prometheus()
    warehouse = tmp_path_factory.mktemp("files") / "files.duckdb"
    with _env(**{p.URL_ENV: None}):
        run_days(SAMPLE, warehouse, [DAY])
    return warehouse


@contextlib.contextmanager
def _env(**values: str | None):
    """Set (or, with None, unset) environment variables for the block, then restore them."""
    before = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _daily(warehouse: Path) -> dict[str, tuple[float, float]]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        rows = con.execute(
            "select cluster, metered_it_energy_j, telemetry_coverage from marts.fct_cluster_energy_daily "
            "where day = $d", {"d": dt.date.fromisoformat(DAY)},
        ).fetchall()
    finally:
        con.close()
    return {c: (e, cov) for c, e, cov in rows}


def _truth() -> dict[str, float]:
    rows = duckdb.sql(f"select cluster, it_energy_j from read_csv('{SAMPLE}/truth/cluster_day.csv')").fetchall()
    return dict(rows)


def _samples(warehouse: Path) -> list[tuple]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(
            "select cluster, node, gpu, cpu, mode, metric, quantity, sample_time, value from raw.telemetry_samples "
            "order by all"
        ).fetchall()
    finally:
        con.close()


# --------------------------------------------------------------------------------------------------------------


def test_sample_day_from_prometheus_matches_files_and_truth(tsdb, inputs_without_telemetry, file_warehouse,
                                                            tmp_path, capsys):
    """`impact run --prometheus-url`: the same samples and the same metered energy as from the files, for the
    DCGM-labelled and the Triton-labelled cluster, and within 1 % of the simulation's truth."""
    warehouse = tmp_path / "prom.duckdb"
    with serving(_copy(tsdb, tmp_path / "data")) as server, _env(**{p.URL_ENV: None}):
        code = main(["run", "--data-dir", str(inputs_without_telemetry), "--warehouse", str(warehouse),
                     "--prometheus-url", server.url])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"Telemetry from Prometheus at {server.url}" in out and f"[1/1] {DAY}  ok" in out
    assert p.URL_ENV not in os.environ
    assert _samples(warehouse) == _samples(file_warehouse)  # every sample, value and timestamp
    prom, files, truth = _daily(warehouse), _daily(file_warehouse), _truth()
    assert set(prom) == set(CLUSTERS)
    for cluster in CLUSTERS:
        assert prom[cluster][0] == pytest.approx(files[cluster][0], rel=1e-9), cluster
        assert prom[cluster][0] == pytest.approx(truth[cluster], rel=0.01), cluster
        assert prom[cluster][1] == pytest.approx(1.0)
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        sources = con.execute("select distinct source_file from raw.telemetry_samples order by 1").fetchall()
        (rejected,) = con.execute("select count(*) from raw.rejected_rows").fetchone()
    finally:
        con.close()
    host = server.url.removeprefix("http://")
    assert [s[0] for s in sources] == sorted(f"prometheus:{host}/{m}" for m in (
        "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "nv_cpu_utilization", "nv_gpu_power_usage", "nv_gpu_utilization"))
    assert rejected == 0
    # the day's pull is kept beside the warehouse
    assert (tmp_path / "prom.duckdb.prometheus" / f"telemetry-{DAY}.parquet").is_file()


def test_small_chunks_and_server_limits_give_identical_rows(tsdb, tmp_path):
    """Odd small chunks, and a server whose --query.max-samples refuses the default chunk (so chunks are split),
    return exactly the rows of a one-hour chunking, and exactly the samples of the files."""
    lo, hi = DAY_START - 600, DAY_START + 86400 + 600
    outs = {}
    with serving(_copy(tsdb, tmp_path / "d1")) as server:
        client = p.PrometheusClient(server.url)
        for chunk_s in (3600.0, 1234.5):
            outs[chunk_s] = tmp_path / f"c{chunk_s}.parquet"
            stats = p.fetch_samples(client, CLUSTERS, lo, hi, outs[chunk_s], chunk_s=chunk_s)
            assert stats.splits == 0 and stats.samples > 500_000
    with serving(_copy(tsdb, tmp_path / "d2"), "--query.max-samples=3000") as limited:
        outs["limited"] = tmp_path / "limited.parquet"
        stats = p.fetch_samples(p.PrometheusClient(limited.url), CLUSTERS, lo, hi, outs["limited"], chunk_s=86400)
        assert stats.splits > 0
    cols = "cluster, metric, node, gpu, cpu, mode, \"timestamp\", value, source_row, raw_record"
    ref = duckdb.sql(f"select {cols} from '{outs[3600.0]}' order by all").fetchall()
    assert duckdb.sql(f"select {cols} from '{outs[1234.5]}' order by all").fetchall() == ref
    assert duckdb.sql(f"select {cols} from '{outs['limited']}' order by all").fetchall() == ref
    files = duckdb.sql(
        f"select cluster, metric, node, gpu, timestamp, value from read_parquet('{SAMPLE}/telemetry/*/*.parquet') "
        f"where timestamp between {lo} and {hi} order by all"
    ).fetchall()
    assert [r[:4] + r[6:8] for r in ref] == files


def test_unreachable_server_fails_the_run_naming_the_url(inputs_without_telemetry, tmp_path, capsys):
    """Nothing listens on the port: the run fails (exit 1) with a message that names the server and says it is
    unreachable; the token given in the environment appears nowhere."""
    url = f"http://127.0.0.1:{_free_port()}"
    warehouse = tmp_path / "wh.duckdb"
    with _env(**{p.URL_ENV: None, p.TOKEN_ENV: SECRET}):
        code = main(["run", "--data-dir", str(inputs_without_telemetry), "--warehouse", str(warehouse),
                     "--prometheus-url", url, "--quiet"])
    out, err = capsys.readouterr()
    assert code == 1
    failed = err[err.index("Failed:"):]  # the summary names the asset, the server and the cause
    assert f"raw_telemetry_samples: orchestration.lib.ingestion.prometheus.PrometheusError: Prometheus at {url}" in failed
    assert "unreachable" in failed and "Connection refused" in failed
    log = Path(str(warehouse) + ".run.log").read_text()
    for text in (out, err, log):
        assert SECRET not in text


@pytest.fixture()
def materialise_raw(tmp_path, inputs_without_telemetry):
    """Materialise raw/clusters and raw/telemetry_samples with the resources built from the environment (as the
    definitions do), for the given env; returns (result, captured log text)."""
    import dagster as dg

    from orchestration.defs.raw.assets import raw_clusters, raw_telemetry_samples
    from orchestration.defs.resources import ImpactSettings, prometheus_resource

    def run(**env: str | None):
        with _env(**env):
            result = dg.materialize(
                [raw_clusters, raw_telemetry_samples],
                partition_key=DAY,
                resources={
                    "settings": ImpactSettings(data_dir=str(inputs_without_telemetry),
                                               warehouse=str(tmp_path / "wh-raw.duckdb")),
                    "prometheus": prometheus_resource(),
                },
                instance=dg.DagsterInstance.ephemeral(),
                raise_on_error=False,
            )
        return result

    return run


def _all_text(result) -> str:
    """Everything a run recorded: event messages, errors and metadata."""
    parts = []
    for event in result.all_events:
        parts.append(str(event.message or ""))
        if event.is_step_failure:
            parts.append(str(event.step_failure_data.error))
        if event.event_type_value == "ASSET_MATERIALIZATION":
            parts.append(repr(event.event_specific_data.materialization.metadata))
    return "\n".join(parts)


def _failure(result) -> str:
    """The message of the exception the asset raised (Dagster wraps it)."""
    err = next(e.step_failure_data.error for e in result.all_events if e.is_step_failure)
    while err.cause is not None:
        err = err.cause
    return err.message


def _bcrypt(password: str) -> str | None:
    """A bcrypt hash for Prometheus' web config, from the C library's crypt (python's bcrypt is not installed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt
        except ImportError:
            return None
        try:
            hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 4))
        except (OSError, ValueError):
            return None
    return hashed if hashed and hashed.startswith("$2") else None


def test_basic_auth_from_the_environment_against_real_prometheus(tsdb, tmp_path, materialise_raw, capfd):
    hashed = _bcrypt(SECRET)
    if hashed is None:
        pytest.skip("no bcrypt in this Python's crypt module: the bearer-token test covers the header logic")
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  impact: '{hashed}'\n")
    with serving(_copy(tsdb, tmp_path / "data"), f"--web.config.file={web}") as server:
        ok = materialise_raw(**{p.URL_ENV: server.url, p.USER_ENV: "impact", p.PASSWORD_ENV: SECRET,
                                p.TOKEN_ENV: None})
        assert ok.success
        meta = ok.asset_materializations_for_node("raw_telemetry_samples")[0].metadata
        assert meta["dagster/row_count"].value > 500_000 and meta["rows_rejected"].value == 0
        assert meta["source"].value == "prometheus:" + server.url.removeprefix("http://")
        wrong = materialise_raw(**{p.URL_ENV: server.url, p.USER_ENV: "impact", p.PASSWORD_ENV: "wrong-" + SECRET,
                                   p.TOKEN_ENV: None})
        none = materialise_raw(**{p.URL_ENV: server.url, p.USER_ENV: None, p.PASSWORD_ENV: None, p.TOKEN_ENV: None})
    assert not wrong.success and not none.success
    for failed in (wrong, none):
        message = _failure(failed)
        assert f"Prometheus at {server.url}" in message and "HTTP 401" in message and "query " in message
    captured = capfd.readouterr()
    for text in (_all_text(ok), _all_text(wrong), captured.out, captured.err):
        assert SECRET not in text


class _BearerProxy(http.server.BaseHTTPRequestHandler):
    """An auth proxy in front of the real Prometheus: requires `Authorization: Bearer <token>`, forwards the rest."""

    token = ""
    upstream = ""
    seen: ClassVar[list[str]] = []

    def do_POST(self):
        auth = self.headers.get("Authorization", "")
        type(self).seen.append(auth)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if auth != f"Bearer {self.token}":
            self.send_response(401)
            self.end_headers()
            self.wfile.write(b"Unauthorized\n")
            return
        request = urllib.request.Request(self.upstream + self.path, data=body, method="POST",
                                         headers={"Content-Type": self.headers.get("Content-Type", "")})
        with urllib.request.urlopen(request, timeout=60) as upstream:
            payload = upstream.read()
            self.send_response(upstream.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):  # quiet
        pass


def test_bearer_token_from_the_environment_is_sent_and_never_shown(tsdb, tmp_path, materialise_raw, capfd):
    with serving(_copy(tsdb, tmp_path / "data")) as server:
        handler = type("Proxy", (_BearerProxy,), {"token": SECRET, "upstream": server.url, "seen": []})
        proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=proxy.serve_forever, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{proxy.server_address[1]}"
        try:
            ok = materialise_raw(**{p.URL_ENV: url, p.TOKEN_ENV: SECRET, p.USER_ENV: None, p.PASSWORD_ENV: None})
            refused = materialise_raw(**{p.URL_ENV: url, p.TOKEN_ENV: "other", p.USER_ENV: None,
                                         p.PASSWORD_ENV: None})
        finally:
            proxy.shutdown()
            proxy.server_close()
    assert ok.success and not refused.success
    assert handler.seen and f"Bearer {SECRET}" in handler.seen
    meta = ok.asset_materializations_for_node("raw_telemetry_samples")[0].metadata
    assert meta["dagster/row_count"].value > 500_000
    message = _failure(refused)
    assert f"Prometheus at {url}" in message and "HTTP 401" in message
    captured = capfd.readouterr()
    for text in (_all_text(ok), _all_text(refused), captured.out, captured.err, message):
        assert SECRET not in text


def test_late_data_rerun_replaces_the_partition(tmp_path, inputs_without_telemetry, file_warehouse):
    """Only the first half of the day has reached the server: the day is flagged by telemetry_coverage. The rest
    arrives (backfilled into the same TSDB), the day is re-run: the partition is replaced, not appended to, and
    matches the file-based run."""
    _require_prometheus()
    noon = DAY_START + 12 * 3600
    data = _blocks(tmp_path, "tsdb", f"timestamp < {noon}")
    warehouse = tmp_path / "late.duckdb"
    import dagster as dg

    from orchestration.definitions import defs
    from orchestration.defs.automation.jobs import DAILY_JOB_NAME

    def run(url: str):
        with _env(**{p.URL_ENV: url, settings.DATA_DIR_ENV: str(inputs_without_telemetry),
                     settings.WAREHOUSE_ENV: str(warehouse)}):
            job = defs().resolve_job_def(DAILY_JOB_NAME)
            return job.execute_in_process(partition_key=DAY, instance=dg.DagsterInstance.ephemeral(),
                                          raise_on_error=False)

    def coverage_check(result) -> bool:
        (passed,) = [e.asset_check_evaluation_data.passed for e in result.all_events
                     if e.event_type_value == "ASSET_CHECK_EVALUATION"
                     and e.asset_check_evaluation_data.check_name == "telemetry_coverage"]
        return passed

    with serving(data) as server:
        first = run(server.url)
    assert first.success and not coverage_check(first)
    partial = _daily(warehouse)
    assert all(partial[c][1] < 0.95 for c in CLUSTERS), partial
    n_partial = len(_samples(warehouse))

    # the rest of the day arrives late: backfilled into the same TSDB folder, server restarted
    rest = _blocks(tmp_path, "rest", f"timestamp >= {noon}")
    for block in rest.iterdir():
        if block.is_dir():
            shutil.move(str(block), data / block.name)
    with serving(data) as server:
        second = run(server.url)
    assert second.success and coverage_check(second)
    full, files = _daily(warehouse), _daily(file_warehouse)
    samples = _samples(warehouse)
    assert len(samples) > n_partial and samples == _samples(file_warehouse)  # replaced, not appended
    for cluster in CLUSTERS:
        assert full[cluster][0] == pytest.approx(files[cluster][0], rel=1e-9)
        assert full[cluster][1] == pytest.approx(1.0)


def test_schedule_lag_and_prometheus_resource_in_the_definitions():
    """The daily schedule runs the same job (whose telemetry asset uses the Prometheus resource when a URL is set)
    IMPACT_SCHEDULE_LAG_HOURS after midnight UTC; the URL is an EnvVar, resolved at run time."""
    code = (
        "from orchestration.definitions import defs\n"
        "d = defs()\n"
        "print(d.resolve_schedule_def('impact_daily_schedule').cron_schedule)\n"
        "job = d.resolve_job_def('impact_daily')\n"
        "print('raw/telemetry_samples' in {k.to_user_string() for k in job.asset_layer.selected_asset_keys})\n"
        "print(sorted(job.resource_defs))\n"
    )
    env = {**os.environ, "IMPACT_SCHEDULE_LAG_HOURS": "5", p.URL_ENV: "http://127.0.0.1:9"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "0 5 * * *" and lines[1] == "True" and "prometheus" in lines[2]
