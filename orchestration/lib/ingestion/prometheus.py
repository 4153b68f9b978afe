"""Telemetry from a live Prometheus server (DCGM exporter, Triton, node_exporter series), raw samples.

What is pulled: every metric of `metrics.METRICS` for the clusters of clusters.yml, over a time range (the
partition's day plus the ingestion margin either side), as RAW samples with their own timestamps, never
down-sampled: each request is an instant query of a range vector, `metric{selector}[<chunk>]` evaluated at the
chunk's end (`/api/v1/query?time=`), which returns the stored samples of the chunk. The range is cut into chunks of
`chunk_s` seconds; a chunk the server refuses as too big (more than --query.max-samples, or a query timeout) is
split in two and asked again, so responses stay within the server's limits whatever its scrape interval. A chunk
covers (start, end]: a sample on a boundary is read once whether the server treats range selectors as closed
(Prometheus 2) or left-open (Prometheus 3) on the left.

Errors: 5xx, 429, connection errors and client time-outs are retried with exponential back-off; anything else (401,
403, 400, 422, ...) fails at once. Either way the error names the server (its URL without credentials), the query
and the HTTP status and body. Credentials (bearer token or basic auth) travel in headers only; a URL holding
credentials is refused (they would show in process lists and logs).

Decoding is set-based: each response body is written to a file and DuckDB reads them all at once (JSON ->
columns), maps labels to cluster/node/gpu (cpu and mode for node_cpu_seconds_total) and writes one Parquet file in
the long telemetry format that `ingest.ingest_telemetry(samples=...)` validates like a file, with
source_file `prometheus:<host:port>/<metric>` so a rejected row still says where it came from.

Label mapping: cluster from the label `cluster` (configurable), restricted to the clusters of clusters.yml; node
from the first present of `metrics.NODE_LABELS` (`instance` with its `:port` removed, since Prometheus sets it to the
scrape target; ingestion then normalises every node name as it does for files, identity.py); GPU from the first
present of `metrics.GPU_LABELS`, with the GPU's other names (UUID, PCI bus id) kept to map relabelled series. A cluster whose series carry no cluster label
gets its own PromQL selector (`ClusterSelector`), and optionally its own node/GPU labels.

`write_openmetrics` and `create_blocks` turn long-format telemetry (e.g. a simulated day) into an OpenMetrics file
and TSDB blocks (`promtool tsdb create-blocks-from openmetrics`), for tests and for backfilling a server.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import duckdb
import requests

from orchestration.lib.ingestion.metrics import (
    CLUSTER_LABELS,
    GPU_LABELS,
    GPU_PCI_LABELS,
    GPU_UUID_LABELS,
    METRICS,
    NODE_LABELS,
)
from orchestration.lib.ingestion.prom import PER_CPU_METRICS
from orchestration.lib.warehouse import fetch_one

URL_ENV = "IMPACT_PROMETHEUS_URL"
TOKEN_ENV = "IMPACT_PROMETHEUS_TOKEN"
USER_ENV = "IMPACT_PROMETHEUS_USER"
PASSWORD_ENV = "IMPACT_PROMETHEUS_PASSWORD"

METRIC_NAMES: tuple[str, ...] = tuple(m.metric for m in METRICS)
DEFAULT_CHUNK_S = 3600.0
MIN_CHUNK_S = 1.0
BODY_EXCERPT_CHARS = 500
_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_METRIC_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
# the long format written for ingest_telemetry(samples=...)
SAMPLE_COLUMNS: tuple[str, ...] = (
    "source_file", "source_row", "raw_record", "timestamp", "cluster", "metric", "value", "node", "gpu", "cpu",
    "mode", "gpu_uuid", "pci_bus_id",
)


class PrometheusError(RuntimeError):
    """The server is unreachable or refused a query. The message names the server (no credentials), the query
    and the HTTP status and body."""


# --------------------------------------------------------------------------------------------------------------
# URLs and configuration
# --------------------------------------------------------------------------------------------------------------


def safe_url(url: str) -> str:
    """The URL without user info, query or fragment: what messages may show."""
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host + (f":{port}" if port else "")
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def source_name(url: str) -> str:
    """`<host:port>[/path]` of the server, for source_file (`prometheus:<that>/<metric>`)."""
    return safe_url(url).split("://", 1)[-1]


def check_url(url: str) -> str:
    """The URL, validated: http(s), a host, and no credentials in it (they belong in the environment)."""
    parts = urlsplit(url.strip())
    shown = safe_url(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PrometheusError(f"Prometheus URL must be http(s)://host[:port][/path], not {shown!r}")
    if parts.username is not None or parts.password is not None:
        raise PrometheusError(
            f"Prometheus URL {shown} holds credentials: set {TOKEN_ENV}, or {USER_ENV} and {PASSWORD_ENV}, instead"
        )
    try:
        _ = parts.port
    except ValueError as exc:
        raise PrometheusError(f"Prometheus URL {shown}: {exc}") from None
    return url.strip().rstrip("/")


def _check_label(name: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"not a Prometheus label name: {name!r}")
    return name


def _check_labels(names: Iterable[str]) -> tuple[str, ...]:
    out = tuple(_check_label(n) for n in names)
    if not out:
        raise ValueError("at least one label name is needed")
    return out


@dataclass(frozen=True)
class ClusterSelector:
    """How to find one cluster's series when they carry no cluster label: PromQL label matchers (without braces,
    e.g. `job="dcgm", env="west"`), and optionally its own node and GPU label aliases."""

    cluster: str
    matchers: str
    node_labels: tuple[str, ...] | None = None
    gpu_labels: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.matchers.strip():
            raise ValueError(f"cluster {self.cluster!r}: empty selector")
        for labels in (self.node_labels, self.gpu_labels):
            if labels is not None:
                _check_labels(labels)


@dataclass(frozen=True)
class LabelMapping:
    """Which labels name the cluster, the node and the GPU (first present wins); per-cluster overrides."""

    cluster_label: str = CLUSTER_LABELS[0]
    node_labels: tuple[str, ...] = NODE_LABELS
    gpu_labels: tuple[str, ...] = GPU_LABELS
    strip_instance_port: bool = True
    clusters: tuple[ClusterSelector, ...] = ()

    def __post_init__(self) -> None:
        _check_label(self.cluster_label)
        _check_labels(self.node_labels)
        _check_labels(self.gpu_labels)


@dataclass(frozen=True)
class SeriesGroup:
    """One selector: the series of `clusters` (by the cluster label), or of one cluster by its own matchers."""

    matchers: str  # PromQL label matchers without braces
    cluster: str | None  # the cluster these series belong to; None: read from the cluster label
    node_labels: tuple[str, ...]
    gpu_labels: tuple[str, ...]


def _promql_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _regex_literal(value: str) -> str:
    """A value matched literally in an RE2 regular expression."""
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", value)


def series_groups(mapping: LabelMapping, clusters: Sequence[str]) -> list[SeriesGroup]:
    """The selectors to query: one for the clusters found by their cluster label, one per overridden cluster.
    Only clusters of `clusters` (clusters.yml) are asked for: a shared server holds other teams' series too."""
    overridden = {s.cluster: s for s in mapping.clusters if s.cluster in set(clusters)}
    by_label = sorted(c for c in set(clusters) if c not in overridden)
    groups = []
    if by_label:
        regex = "|".join(_regex_literal(c) for c in by_label)
        groups.append(
            SeriesGroup(
                f"{mapping.cluster_label}=~{_promql_string(regex)}", None, mapping.node_labels, mapping.gpu_labels
            )
        )
    for name in sorted(overridden):
        sel = overridden[name]
        groups.append(
            SeriesGroup(
                sel.matchers.strip(), name, sel.node_labels or mapping.node_labels, sel.gpu_labels or mapping.gpu_labels
            )
        )
    return groups


def plan_chunks(lo: float, hi: float, chunk_s: float) -> list[tuple[float, float]]:
    """(start, end] chunks of at most `chunk_s` covering [lo, hi] (lo included: the first start is lo - 1 ms;
    Prometheus timestamps are milliseconds). Bounds are whole milliseconds."""
    if chunk_s < MIN_CHUNK_S:
        raise ValueError(f"chunk_s must be at least {MIN_CHUNK_S} s, not {chunk_s}")
    lo_ms, hi_ms, step = round(lo * 1000), round(hi * 1000), round(chunk_s * 1000)
    chunks, start = [], lo_ms - 1
    while start < hi_ms:
        end = min(start + step, hi_ms)
        chunks.append((start / 1000, end / 1000))
        start = end
    return chunks


def range_query(metric: str, matchers: str, start: float, end: float) -> str:
    """PromQL for the raw samples of (start, end] (evaluated at `end`)."""
    if not _METRIC_RE.fullmatch(metric):
        raise ValueError(f"not a Prometheus metric name: {metric!r}")
    return f"{metric}{{{matchers}}}[{round((end - start) * 1000)}ms]"


# --------------------------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------------------------


class _TooBig(Exception):
    """The server refused the chunk as too large (max samples) or timed out on it: split and ask again."""


def _too_big(status: int, body: str) -> bool:
    text = body.lower()
    return (status in (422, 503) and "too many samples" in text) or (
        status == 503 and '"errortype":"timeout"' in text.replace(" ", "")
    )


@dataclass
class PrometheusClient:
    """A minimal /api/v1/query client: auth in headers, TLS options, time-outs and retries with back-off."""

    url: str
    bearer_token: str | None = None
    username: str | None = None
    password: str | None = None
    verify_tls: bool = True
    ca_bundle: str | None = None
    timeout_s: float = 120.0
    max_retries: int = 3
    backoff_s: float = 0.5
    _local: threading.local = field(default_factory=threading.local, repr=False)

    def __post_init__(self) -> None:
        self.url = check_url(self.url)
        if self.bearer_token and (self.username or self.password):
            raise PrometheusError(
                f"Prometheus at {self.shown_url}: give a bearer token ({TOKEN_ENV}) or basic auth "
                f"({USER_ENV}/{PASSWORD_ENV}), not both"
            )
        if bool(self.username) != bool(self.password) and not self.bearer_token:
            raise PrometheusError(f"Prometheus at {self.shown_url}: basic auth needs both {USER_ENV} and {PASSWORD_ENV}")
        if self.ca_bundle and not Path(self.ca_bundle).expanduser().is_file():
            raise PrometheusError(f"Prometheus at {self.shown_url}: CA bundle {self.ca_bundle} is not a file")

    def __repr__(self) -> str:  # never the credentials
        return f"PrometheusClient({self.shown_url!r})"

    @property
    def shown_url(self) -> str:
        return safe_url(self.url)

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False  # no ~/.netrc credentials or proxies picked up behind the user's back
            if self.bearer_token:
                session.headers["Authorization"] = f"Bearer {self.bearer_token}"
            elif self.username:
                session.auth = (self.username, self.password or "")
            session.verify = (
                str(Path(self.ca_bundle).expanduser()) if self.ca_bundle and self.verify_tls else self.verify_tls
            )
            self._local.session = session
        return session

    def query(self, promql: str, at: float) -> bytes:
        """The body of a successful instant query at `at` (epoch s). Raises _TooBig or PrometheusError."""
        endpoint = f"{self.url}/api/v1/query"
        params = {"query": promql, "time": f"{at:.3f}", "timeout": f"{max(self.timeout_s - 1, 1):g}s"}
        attempt = 0
        while True:
            problem = None
            try:
                response = self._session().post(endpoint, data=params, timeout=self.timeout_s)
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem = f"unreachable ({type(exc).__name__}: {_strip(str(exc))})"
            else:
                body = response.content
                if response.status_code == 200 and body.lstrip().startswith(b'{"status":"success"'):
                    return body
                text = body[:BODY_EXCERPT_CHARS].decode("utf-8", "replace").strip()
                if _too_big(response.status_code, text):
                    raise _TooBig(text)
                problem = f"HTTP {response.status_code} {response.reason}: {text or '(empty body)'}"
                if not (response.status_code >= 500 or response.status_code == 429):
                    raise PrometheusError(self._message(problem, promql, at, attempt))
            if attempt >= self.max_retries:
                raise PrometheusError(self._message(problem, promql, at, attempt))
            time.sleep(self.backoff_s * 2**attempt)
            attempt += 1

    def _message(self, problem: str, promql: str, at: float, attempt: int) -> str:
        tries = f" after {attempt + 1} attempts" if attempt else ""
        when = dt.datetime.fromtimestamp(at, dt.UTC).isoformat().replace("+00:00", "Z")
        return f"Prometheus at {self.shown_url}{tries}: {problem} (query {promql} at {when})"


def _strip(text: str) -> str:
    """An exception text without anything URL-credential-like (user:pass@) and bounded in length."""
    return re.sub(r"//[^/@\s]+@", "//", text)[:BODY_EXCERPT_CHARS]


# --------------------------------------------------------------------------------------------------------------
# Fetch
# --------------------------------------------------------------------------------------------------------------


@dataclass
class FetchStats:
    """What a pull cost: queries sent, chunks split for size, samples and series returned, seconds."""

    server: str
    queries: int = 0
    splits: int = 0
    samples: int = 0
    series: int = 0
    response_bytes: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


def fetch_samples(
    client: PrometheusClient,
    clusters: Sequence[str],
    lo: float,
    hi: float,
    out: Path,
    mapping: LabelMapping | None = None,
    chunk_s: float = DEFAULT_CHUNK_S,
    metrics: Sequence[str] = METRIC_NAMES,
    workers: int = 4,
) -> FetchStats:
    """Pull the raw samples of `metrics` for `clusters` over [lo, hi] (epoch s) into the Parquet file `out`
    (columns SAMPLE_COLUMNS; timestamp in epoch seconds, value as exported). Returns what it cost."""
    mapping = mapping or LabelMapping()
    began = time.monotonic()
    stats = FetchStats(server=source_name(client.url))
    groups = series_groups(mapping, clusters)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="impact-prom-") as tmp:
        tasks = [(metric, gi) for metric in metrics for gi in range(len(groups))]
        lock = threading.Lock()
        manifest: list[tuple[str, str, int, float, float]] = []

        failed = threading.Event()  # the first error stops the other workers (no point retrying them all)

        def run(task: tuple[str, int]) -> None:
            metric, gi = task
            pending = plan_chunks(lo, hi, chunk_s)[::-1]
            while pending and not failed.is_set():
                start, end = pending.pop()
                promql = range_query(metric, groups[gi].matchers, start, end)
                try:
                    body = client.query(promql, end)
                except _TooBig as exc:
                    if end - start <= MIN_CHUNK_S:
                        raise PrometheusError(
                            f"Prometheus at {client.shown_url}: a {end - start:g} s chunk is still too big "
                            f"(query {promql}): {exc}; raise the server's --query.max-samples or --query.timeout"
                        ) from None
                    mid = round((start + end) / 2, 3)
                    pending += [(mid, end), (start, mid)]
                    with lock:
                        stats.splits += 1
                    continue
                with lock:
                    path = Path(tmp) / f"r{len(manifest):07d}.json"
                    manifest.append((str(path), metric, gi, start, end))
                    stats.queries += 1
                    stats.response_bytes += len(body)
                path.write_bytes(body)

        def guarded(task: tuple[str, int]) -> None:
            try:
                run(task)
            except BaseException:
                failed.set()
                raise

        if tasks:
            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                futures = [pool.submit(guarded, task) for task in tasks]
                for future in futures:
                    future.result()
        con = duckdb.connect()
        try:
            con.execute("set timezone = 'UTC'")
            _decode(con, manifest, groups, mapping, stats.server, out)
            stats.samples, stats.series = fetch_one(
                con,
                "select count(*), count(distinct (source_file, raw_series)) from _prom_samples"
            )
            stats.warnings = [
                r[0] for r in con.execute("select distinct unnest(warnings) from _prom_docs order by 1").fetchall()
            ]
        finally:
            con.close()
    stats.seconds = time.monotonic() - began
    return stats


def _first_label(labels: Sequence[str], strip_port: bool) -> str:
    parts = []
    for name in labels:
        value = f"nullif(labels['{_check_label(name)}'], '')"
        if name == "instance" and strip_port:
            value = f"regexp_replace({value}, ':[0-9]+$', '')"
        parts.append(value)
    return f"coalesce({', '.join(parts)})"


def _decode(
    con: duckdb.DuckDBPyConnection,
    manifest: list[tuple[str, str, int, float, float]],
    groups: list[SeriesGroup],
    mapping: LabelMapping,
    server: str,
    out: Path,
) -> None:
    """All response files -> the long format, set-based, written to `out` (Parquet)."""
    con.execute(
        "create temp table _prom_manifest (filename varchar, metric varchar, grp integer, start_s double, "
        "end_s double)"
    )
    if manifest:
        con.executemany("insert into _prom_manifest values (?, ?, ?, ?, ?)", manifest)
    node_cases = " ".join(
        f"when {i} then {_first_label(g.node_labels, mapping.strip_instance_port)}" for i, g in enumerate(groups)
    )
    gpu_cases = " ".join(f"when {i} then {_first_label(g.gpu_labels, False)}" for i, g in enumerate(groups))
    cluster_cases = " ".join(f"when {i} then $c{i}" for i, g in enumerate(groups) if g.cluster is not None)
    params: dict[str, object] = {f"c{i}": g.cluster for i, g in enumerate(groups) if g.cluster is not None}
    params["server"] = server
    cluster_expr = f"nullif(labels['{_check_label(mapping.cluster_label)}'], '')"
    if cluster_cases:
        cluster_expr = f"case grp {cluster_cases} else {cluster_expr} end"
    per_cpu = ", ".join(f"'{m}'" for m in PER_CPU_METRICS)
    doc_type = (
        '{"status": "VARCHAR", "warnings": ["VARCHAR"], '
        '"data": {"resultType": "VARCHAR", "result": [{"metric": "MAP(VARCHAR, VARCHAR)", "values": [["VARCHAR"]]}]}}'
    )
    assert "'" not in doc_type
    if manifest:
        read = (
            f"select m.*, from_json(t.content, '{doc_type}') as doc from read_text($files) t "
            "join _prom_manifest m on m.filename = t.filename"
        )
        read_params: dict[str, object] = {"files": [m[0] for m in manifest]}
    else:
        read, read_params = f"select m.*, from_json(m.filename, '{doc_type}') as doc from _prom_manifest m", {}
    con.execute(
        "create temp table _prom_docs as select filename, metric, grp, start_s, end_s, doc.warnings, "
        f"doc.data.result as result from ({read})",
        read_params,
    )
    # (the dynamic bits of the SQL are checked label names and group numbers; values travel as parameters)
    node_expr = f"case grp {node_cases} end" if node_cases else "null"
    gpu_expr = f"case grp {gpu_cases} end" if gpu_cases else "null"
    con.execute(
        f"""
        create temp table _prom_samples as
        with series as (
            select metric, grp, start_s, end_s, unnest(result) as s from _prom_docs
        ),
        raw as (
            select metric, grp, start_s, end_s, s.metric as labels,
                array_to_string(list_transform(
                    list_sort(list_filter(map_entries(s.metric), lambda e: e.key <> '__name__')),
                    lambda e: e.key || '="' || replace(replace(e.value, '\\', '\\\\'), '"', '\\"') || '"'), ',')
                    as raw_series,
                unnest(s."values") as v
            from series
        ),
        typed as (
            select *, cast(v[1] as double) as ts, cast(v[2] as double) as value from raw
        )
        select 'prometheus:' || $server || '/' || metric as source_file,
            metric || '{{' || raw_series || '}} ' || v[2] || ' ' || v[1] as raw_record,
            raw_series, ts as "timestamp", {cluster_expr} as cluster, metric, value,
            {node_expr} as node, {gpu_expr} as gpu,
            case when metric in ({per_cpu}) then nullif(labels['cpu'], '') end as cpu,
            case when metric in ({per_cpu}) then nullif(labels['mode'], '') end as mode,
            {_first_label(GPU_UUID_LABELS, False)} as gpu_uuid,
            {_first_label(GPU_PCI_LABELS, False)} as pci_bus_id
        from typed
        where ts > start_s and ts <= end_s
        """,
        params,
    )
    columns = ", ".join(f'"{c}"' for c in SAMPLE_COLUMNS)
    con.execute(
        f"""
        copy (
            select {columns} from (
                select *, row_number() over (partition by source_file order by raw_series, "timestamp")
                    as source_row
                from _prom_samples
            ) order by source_file, source_row
        ) to '{_sql_path(out)}' (format parquet)
        """
    )


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


# --------------------------------------------------------------------------------------------------------------
# OpenMetrics and backfill (tests, and loading history into a server)
# --------------------------------------------------------------------------------------------------------------

# Labels each exporter puts on its series, for write_openmetrics: DCGM names the node in Hostname and the GPU by
# index in `gpu`; Triton's series are told apart by gpu_uuid, node_exporter's by cpu and mode, and both get the node
# from the scrape target (`instance`, host:port).
EXPORTER_PORTS: dict[str, int] = {"dcgm": 9400, "triton": 8002, "node_exporter": 9100}


def write_openmetrics(con: duckdb.DuckDBPyConnection, source: str, out: Path, style: str = "exporter") -> int:
    """Write long-format telemetry (`source`: a table, view or `read_parquet(...)` expression with timestamp
    (epoch s), cluster, metric, value, node, gpu[, cpu, mode]) as an OpenMetrics file that promtool can backfill.

    style "exporter" labels series as the exporters and Prometheus do (DCGM: Hostname, gpu; Triton: instance
    host:8002, gpu_uuid; node_exporter: instance host:9100, cpu, mode; plus cluster and job); style "plain"
    uses node and gpu labels. Returns the number of samples written."""
    if style not in ("exporter", "plain"):
        raise ValueError(f"style must be exporter or plain, not {style!r}")
    cols = {c.lower() for c in con.sql(f"select * from {source} limit 0").columns}
    cpu = "cpu" if "cpu" in cols else "null"
    mode = "mode" if "mode" in cols else "null"
    exporter = "case " + " ".join(f"when metric = '{m.metric}' then '{m.exporter}'" for m in METRICS) + " end"

    def lbl(name: str, expr: str) -> str:
        return (
            f"case when {expr} is not null and {expr} <> '' then ',{name}=\"' || "
            f"replace(replace({expr}, '\\', '\\\\'), '\"', '\\\"') || '\"' else '' end"
        )

    port = "case exporter " + " ".join(f"when '{k}' then ':{v}'" for k, v in EXPORTER_PORTS.items()) + " end"
    if style == "exporter":
        labels = (
            f"{lbl('job', 'exporter')} || "
            f"case when exporter = 'dcgm' then {lbl('Hostname', 'node')} || {lbl('gpu', 'gpu')} "
            f"else {lbl('instance', 'node || ' + port)} || {lbl('gpu_uuid', 'gpu')} end || "
            f"{lbl('cpu', 'cpu')} || {lbl('mode', 'mode')}"
        )
    else:
        labels = f"{lbl('node', 'node')} || {lbl('gpu', 'gpu')} || {lbl('cpu', 'cpu')} || {lbl('mode', 'mode')}"
    con.execute(
        f"""
        create or replace temp table _om_lines as
        with s as (
            select cast("timestamp" as double) as ts, cast(cluster as varchar) as cluster, metric,
                cast(value as double) as value, cast(node as varchar) as node, cast(gpu as varchar) as gpu,
                cast({cpu} as varchar) as cpu, cast({mode} as varchar) as mode, {exporter} as exporter
            from {source}
        ),
        l as (
            select metric, ts, node, gpu, cpu, mode, cluster,
                metric || '{{' || ltrim({lbl('cluster', 'cluster')} || {labels}, ',') || '}} '
                    || case when isnan(value) then 'NaN' when value = 'inf'::double then '+Inf'
                            when value = '-inf'::double then '-Inf' else cast(value as varchar) end
                    || ' ' || printf('%.3f', ts) as line
            from s
        )
        select 0 as part, metric, 0 as k, null as series, null::double as ts, '# TYPE ' || metric || ' gauge' as line
        from (select distinct metric from l)
        union all
        select 0, metric, 1, concat_ws('|', cluster, node, gpu, cpu, mode), ts, line from l
        union all
        select 1, null, 0, null, null, '# EOF'
        """
    )
    con.execute(
        f"copy (select line from _om_lines order by part, metric, k, series, ts) to '{_sql_path(out)}' "
        "(format csv, header false, quote '', escape '', delimiter '\t')"
    )
    (n,) = fetch_one(con, "select count(*) from _om_lines where k = 1")
    con.execute("drop table _om_lines")
    return int(n)


def create_blocks(openmetrics: Path, data_dir: Path, promtool: str = "promtool") -> None:
    """Backfill `openmetrics` into the TSDB folder `data_dir` (promtool tsdb create-blocks-from openmetrics)."""
    exe = shutil.which(promtool)
    if exe is None:
        raise FileNotFoundError(f"{promtool} not found (Debian: apt-get install prometheus)")
    data_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [exe, "tsdb", "create-blocks-from", "openmetrics", str(openmetrics), str(data_dir)],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"promtool failed ({result.returncode}): {(result.stderr or result.stdout)[-2000:]}")
