"""Time `impact run` on generated cluster days and report wall time, peak memory and where the time goes.

    .venv/bin/python benchmarks/run_benchmark.py                      # 1,000,000 and 5,000,000 requests
    .venv/bin/python benchmarks/run_benchmark.py --sizes 1000000      # one size
    make benchmark

For each size: generate the dataset with benchmarks/generate.py unless benchmarks/out/data-<N>/ already holds one
with the same parameters, then run `.venv/bin/impact run --data-dir DIR --warehouse <fresh file>` as a subprocess
and measure:

* wall time: from spawning the process to reaping it.
* peak RSS, two ways (both cover the whole process tree: the `impact` Python process, which runs Dagster and the
  DuckDB ingestion in-process, and the `dbt` subprocess dagster-dbt starts and waits for):
    - ``ru_maxrss`` from ``os.wait4`` on the `impact` process: Linux reports the largest high-water mark of that
      process and of every descendant it waited for (the same number GNU ``time -v`` prints as "Maximum resident
      set size"). It is exact, but it is the max over single processes, not the sum of processes alive together.
    - the sum of VmRSS over all live descendants, sampled every 0.1 s from /proc: catches `impact` and `dbt`
      being resident at the same time (the `impact` process stays alive, holding what DuckDB and Python did not
      return to the OS, while dbt runs). Sampling can miss a spike shorter than the interval.
  The target (<= 8 GB) is checked against the larger of the two.
* stages: from the timestamps of the CLI's own lines (start-up, scanning the inputs for days and loading the
  Dagster definitions, the job, the summary) and, inside the job, from the Dagster event log: each run uses a
  fresh DAGSTER_HOME in a temporary directory (so `impact run` keeps its history there), from which the step start
  and end times are read afterwards. dbt's own per-model and per-test times come from `<warehouse>.run.log`.

Results are printed and written to benchmarks/out/results-<time>.json (benchmarks/out/ is git-ignored).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
VENV_BIN = Path(sys.executable).parent
TARGET_WALL_S = 60.0
TARGET_RSS_GB = 8.0
# --floor: a nearly empty day (1,000 requests on one GPU) that measures what the stack costs before any data
# (start-up, Dagster, dbt's per-node cost, the models job on next to nothing): the part of the budget no change to
# the per-row SQL can buy back
FLOOR_REQUESTS, FLOOR_NODES, FLOOR_GPUS = 1000, 1, 1
PAGE = os.sysconf("SC_PAGE_SIZE")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
DBT_NODE = re.compile(
    r"^\d+ of \d+ (?P<status>OK created|ERROR creating|PASS|FAIL|WARN|ERROR|SKIP)\s+"
    r"(?:(?P<kind>sql \w+ model) )?(?P<name>\S+)\s.*\[\S+ in (?P<s>[\d.]+)s\]\s*$"
)
DBT_FINISHED = re.compile(r"^Finished running (?P<what>.*) in .*\((?P<s>[\d.]+)s\)\.?\s*$")
DBT_FOUND = re.compile(r"^Found (?P<what>\d+ models?, \d+ data tests?)")
DAY_LINE = re.compile(r"^\[\d+/\d+\] \S+\s+(?P<status>ok|FAILED)\s+(?P<s>[\d.]+) s")


# ----------------------------------------------------------------------------------------------------------------
# Process-tree memory sampling
# ----------------------------------------------------------------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name may contain spaces and parentheses: fields start after the last ')'
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def _tree(root: int) -> list[int]:
    kids = _children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def _label(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return "?"
    names = [Path(a).name for a in argv[:3]]
    for name in ("dbt", "impact"):
        if name in names:
            return name
    return " ".join(names)[:40]


@dataclass
class TreeSampler:
    """Samples the summed RSS of a process tree every `interval` s until stopped."""

    root: int
    interval: float = 0.1
    peak_sum_bytes: int = 0
    peak_at: float = 0.0  # time.time() of the peak
    peak_members: dict[str, int] = field(default_factory=dict)
    per_process_peak: dict[str, int] = field(default_factory=dict)  # label -> max VmRSS seen
    samples: int = 0
    load_avg_max: float = 0.0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        labels: dict[int, str] = {}
        while not self._stop.is_set():
            total, members = 0, {}
            for pid in _tree(self.root):
                try:
                    with open(f"/proc/{pid}/statm", "rb") as f:
                        rss = int(f.read().split()[1]) * PAGE
                except (OSError, IndexError, ValueError):
                    continue
                if pid not in labels:
                    labels[pid] = _label(pid)
                label = f"{labels[pid]} [{pid}]"
                total += rss
                members[label] = rss
                self.per_process_peak[label] = max(self.per_process_peak.get(label, 0), rss)
            self.samples += 1
            if self.samples % 10 == 0:
                self.load_avg_max = max(self.load_avg_max, _load1())
            if total > self.peak_sum_bytes:
                self.peak_sum_bytes, self.peak_at, self.peak_members = total, time.time(), members
            self._stop.wait(self.interval)


# ----------------------------------------------------------------------------------------------------------------
# One benchmark run
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    requests: int
    telemetry_rows: int
    data_dir: str
    data_bytes: int
    exit_code: int | None = None
    timed_out: bool = False
    wall_s: float = 0.0
    ru_maxrss_gb: float = 0.0
    tree_peak_rss_gb: float = 0.0
    tree_peak_at_s: float | None = None  # seconds after spawn
    tree_peak_during: str | None = None
    tree_peak_members_gb: dict[str, float] = field(default_factory=dict)
    per_process_peak_gb: dict[str, float] = field(default_factory=dict)
    stages_s: dict[str, float] = field(default_factory=dict)
    steps: list[dict] = field(default_factory=list)  # Dagster steps: key, status, start_s, duration_s
    dbt_finished_s: float | None = None
    dbt_models: list[tuple[str, float]] = field(default_factory=list)
    dbt_tests: list[tuple[str, float]] = field(default_factory=list)
    dbt_failures: list[str] = field(default_factory=list)
    summary_lines: list[str] = field(default_factory=list)
    expected_it_kwh: float | None = None
    metered_it_kwh: float | None = None
    stderr_tail: str = ""
    run_log: str = ""
    code_before: str = ""  # code_fingerprint() at spawn and after exit
    code_after: str = ""
    dbt_project: str = ""  # "N models, M data tests" as dbt found them (the project changes between commits)
    cpu_s: float = 0.0  # user + system CPU of the run's process tree (wait4)
    other_cpu_s: float = 0.0  # CPU the rest of the machine used meanwhile (/proc/stat busy - steal - cpu_s)
    steal_s: float = 0.0  # CPU time the hypervisor gave to other guests while this VM wanted it (/proc/stat steal)
    load_avg_max: float = 0.0  # 1-min load average, max over the run
    reference_s: float | None = None  # reference_workload() just before the run: the machine's speed then
    duckdb_reference_s: float | None = None  # duckdb_reference_workload() likewise, on DuckDB's two threads
    floor: bool = False  # the --floor run (not a benchmark size)

    @property
    def peak_rss_gb(self) -> float:
        return max(self.ru_maxrss_gb, self.tree_peak_rss_gb)


def ensure_dataset(
    n: int, nodes: int, gpn: int, seed: int, regenerate: bool, name: str | None = None
) -> tuple[Path, dict]:
    data = OUT / (name or f"data-{n}")
    meta_path = data / "benchmark.json"
    want = {"requests": n, "nodes": nodes, "gpus_per_node": gpn, "seed": seed}
    if not regenerate and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if all(meta.get(k) == v for k, v in want.items()):
            print(f"dataset {data} exists ({meta['telemetry_rows']:,} telemetry rows), reusing it", flush=True)
            return data, meta
    if data.exists():
        shutil.rmtree(data)
    print(f"generating {n:,} requests into {data} ...", flush=True)
    subprocess.run(
        [sys.executable, str(HERE / "generate.py"), "--requests", str(n), "--nodes", str(nodes),
         "--gpus-per-node", str(gpn), "--seed", str(seed), "--out", str(data)],
        check=True,
    )
    return data, json.loads(meta_path.read_text())


def _cpu_busy_s() -> tuple[float, float]:
    """(CPU-seconds the machine's processes have been busy, CPU-seconds stolen by the hypervisor) since boot
    (/proc/stat, all CPUs). Steal is time this virtual machine was ready to run but the host ran someone else:
    it slows the run down without showing up as any process's CPU."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def _load1() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def code_fingerprint() -> str:
    """A hash of the product code a run executes (Python package, dbt models, macros, project and profiles), so
    runs of different versions are not compared by mistake and an edit during a run shows."""
    h = hashlib.sha256()
    files = sorted(
        [*(REPO / "orchestration").rglob("*.py"), *(REPO / "dbt_project" / "models").rglob("*"),
         *(REPO / "dbt_project" / "macros").rglob("*"), REPO / "dbt_project" / "dbt_project.yml",
         REPO / "dbt_project" / "profiles.yml"]
    )
    for f in files:
        if f.is_file() and "__pycache__" not in f.parts:
            h.update(str(f.relative_to(REPO)).encode() + b"\0")
            try:
                h.update(f.read_bytes())
            except OSError:
                pass
    return h.hexdigest()[:12]


REFERENCE_SORT_N = 20_000_000
REFERENCE_LOOP_N = 10_000_000
REFERENCE_REPEATS = 3  # the fastest of three: the machine's speed also flickers from second to second


def reference_workload() -> float:
    """Seconds of a fixed workload that runs no product code and no DuckDB (numpy, locked): it sorts 20 M
    doubles, then runs a 10 M-step pure-Python loop, on one core; the fastest of three, taken right before each
    run. The virtual machine's speed changes a lot within a day: a run's wall time divided by this figure
    compares across hours (roughly: it is one core, the pipeline uses two)."""
    import numpy as np

    values = np.random.default_rng(0).random(REFERENCE_SORT_N)
    times = []
    for _ in range(REFERENCE_REPEATS):
        t0 = time.perf_counter()
        np.sort(values)
        acc = 0
        for i in range(REFERENCE_LOOP_N):
            acc += i & 7
        times.append(time.perf_counter() - t0)
    return min(times)


DUCKDB_REFERENCE_ROWS = 2_000_000


def duckdb_reference_workload() -> float:
    """Seconds of a fixed DuckDB workload shaped like the pipeline, on two threads: build a 2 M-row table of keys,
    timestamps and doubles, hash-join it to a 200 K-row table, write the wide result into a fresh database file,
    then a group-by and a window function over it; the fastest of three. No product code. The numpy reference
    above is one core; this one exercises what the run is bound by (DuckDB's joins, writes and aggregations on
    both cores)."""
    import tempfile

    import duckdb

    times = []
    with tempfile.TemporaryDirectory(prefix="impact-ref-") as tmp:
        for i in range(REFERENCE_REPEATS):
            con = duckdb.connect(str(Path(tmp) / f"ref-{i}.duckdb"), config={"threads": 2})
            try:
                t0 = time.perf_counter()
                con.execute(
                    "create temp table w as select i as k, (i * 7919) % 200000 as w, random() as p "
                    "from range(200000) t(i)"
                )
                con.execute(
                    f"create table r as select i as id, 'req-' || i as rid, "
                    f"timestamp '2023-11-16' + to_microseconds(i * 21600) as ts, (i * 104729) % 200000 as w, "
                    f"random() * 10 as d from range({DUCKDB_REFERENCE_ROWS}) t(i)"
                )
                con.execute(
                    "create table j as select r.*, r.d * w.p as e, r.d / (1 + w.p) as f, w.p * w.p as g "
                    "from r left join w on r.w = w.k"
                )
                con.execute("select w, sum(e), count(*), max(f) from j group by w").fetchall()
                con.execute(
                    "select count(*), sum(x) from (select e - lag(e) over (partition by w order by ts) as x from j)"
                ).fetchall()
                times.append(time.perf_counter() - t0)
            finally:
                con.close()
    return min(times)


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _dagster_steps(home: Path, spawn_epoch: float) -> list[dict]:
    """Step start/end of every run in the temporary DAGSTER_HOME, relative to the spawn of `impact run`."""
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(home))
    steps = []
    try:
        for run in instance.get_runs():
            run_stats = instance.get_run_stats(run.run_id)
            if run_stats.start_time and run_stats.end_time:
                steps.append({"key": f"(run {run.job_name})", "status": str(run.status.value),
                              "start_s": run_stats.start_time - spawn_epoch,
                              "duration_s": run_stats.end_time - run_stats.start_time})
            for s in instance.get_run_step_stats(run.run_id):
                if s.start_time is None:
                    continue
                end = s.end_time or s.start_time
                steps.append({"key": s.step_key, "status": s.status.value if s.status else "?", "job": run.job_name,
                              "start_s": s.start_time - spawn_epoch, "duration_s": end - s.start_time})
    finally:
        instance.dispose()
    return sorted(steps, key=lambda d: d["start_s"])


def _parse_run_log(text: str, result: RunResult) -> None:
    for raw in text.splitlines():
        line = ANSI.sub("", raw).strip()
        m = DBT_NODE.match(line)
        if m:
            entry = (m["name"], float(m["s"]))
            if m["kind"] or m["status"] in ("OK created", "ERROR creating"):
                result.dbt_models.append(entry)
            else:
                result.dbt_tests.append(entry)
            if m["status"] in ("ERROR creating", "FAIL", "ERROR"):
                result.dbt_failures.append(f"{m['status']} {m['name']}")
            continue
        m = DBT_FOUND.match(line)
        if m:
            result.dbt_project = m["what"]
            continue
        m = DBT_FINISHED.match(line)
        if m:
            result.dbt_finished_s = (result.dbt_finished_s or 0.0) + float(m["s"])


def run_once(data: Path, meta: dict, keep_warehouse: bool, timeout_s: float, echo: bool) -> RunResult:
    n = int(meta["requests"])
    result = RunResult(requests=n, telemetry_rows=int(meta["telemetry_rows"]), data_dir=str(data),
                       data_bytes=_dir_bytes(data),
                       expected_it_kwh=meta["expected"]["it_energy_j"] / 3.6e6)
    runs_dir = OUT / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{n}-{dt.datetime.now():%Y%m%dT%H%M%S}-", dir=runs_dir))
    warehouse = work / "warehouse.duckdb"
    home = work / "dagster_home"
    home.mkdir()
    # No compute-log capture (what the ephemeral instance of a plain `impact run` does too: the local compute log
    # manager would start `tail -F` helpers and copy every step's output to files).
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\n"
        "compute_logs:\n  module: dagster._core.storage.noop_compute_log_manager\n"
        "  class: NoOpComputeLogManager\n"
    )
    env = dict(os.environ, DAGSTER_HOME=str(home), PYTHONUNBUFFERED="1")
    cmd = [str(VENV_BIN / "impact"), "run", "--data-dir", str(data), "--warehouse", str(warehouse)]
    print(f"\n=== {n:,} requests: {' '.join(cmd)}", flush=True)

    lines: list[tuple[float, str]] = []
    err: list[str] = []
    result.reference_s = reference_workload()
    result.duckdb_reference_s = duckdb_reference_workload()
    result.code_before = code_fingerprint()
    busy0, steal0 = _cpu_busy_s()
    spawn_epoch = time.time()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=REPO, start_new_session=True)
    sampler = TreeSampler(proc.pid)
    sampler.start()

    def read_out() -> None:
        for line in proc.stdout:
            lines.append((time.perf_counter() - t0, line.rstrip("\n")))
            if echo:
                print(f"  [{lines[-1][0]:7.1f} s] {line.rstrip()}", flush=True)

    def read_err() -> None:
        err.extend(proc.stderr)

    readers = [threading.Thread(target=read_out, daemon=True), threading.Thread(target=read_err, daemon=True)]
    for t in readers:
        t.start()

    def kill() -> None:
        result.timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the session this benchmark started for the run
        except ProcessLookupError:
            pass

    timer = threading.Timer(timeout_s, kill)
    timer.start()
    _, status, rusage = os.wait4(proc.pid, 0)
    result.wall_s = time.perf_counter() - t0
    result.cpu_s = rusage.ru_utime + rusage.ru_stime
    busy1, steal1 = _cpu_busy_s()
    result.other_cpu_s = max(0.0, busy1 - busy0 - result.cpu_s)
    result.steal_s = steal1 - steal0
    result.code_after = code_fingerprint()
    timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    result.exit_code = proc.returncode
    sampler.stop()
    for t in readers:
        t.join(timeout=10)

    gb = 1024**3
    result.ru_maxrss_gb = rusage.ru_maxrss * 1024 / gb  # kB on Linux
    result.load_avg_max = sampler.load_avg_max
    result.tree_peak_rss_gb = sampler.peak_sum_bytes / gb
    result.tree_peak_members_gb = {k: round(v / gb, 3) for k, v in sampler.peak_members.items()}
    result.per_process_peak_gb = {k: round(v / gb, 3) for k, v in sampler.per_process_peak.items()}
    if sampler.peak_at:
        result.tree_peak_at_s = sampler.peak_at - spawn_epoch
    result.stderr_tail = "".join(err[-30:])

    # CLI stages from its own lines
    def at(prefix: str) -> float | None:
        return next((t for t, line in lines if line.startswith(prefix)), None)

    t_scan, t_mat = at("Scanning "), at("Materialising ")
    day_lines = [(t, DAY_LINE.match(line)) for t, line in lines if DAY_LINE.match(line)]
    if t_scan is not None:
        result.stages_s["start-up and imports (until 'Scanning')"] = t_scan
    if t_scan is not None and t_mat is not None:
        result.stages_s["scan inputs for days + load Dagster/dbt definitions"] = t_mat - t_scan
    if day_lines:
        result.stages_s["job (impact_daily, as the CLI reports it)"] = sum(float(m["s"]) for _, m in day_lines)
        t_models = at("[models] ")
        if t_models is not None:  # the unpartitioned models job `impact run` runs after the days
            result.stages_s["models job (as the CLI reports it)"] = t_models - day_lines[-1][0]
            result.stages_s["summary queries + exit"] = result.wall_s - t_models
        else:
            result.stages_s["summary query + exit"] = result.wall_s - day_lines[-1][0]
    header = next((i for i, (_, line) in enumerate(lines) if line.startswith("day ")), None)
    if header is not None:
        result.summary_lines = [line for _, line in lines[header:]]
        cols = lines[header][1].split()
        for _, line in lines[header + 2 :]:
            cells = line.split()
            if len(cells) == len(cols) and "metered_kwh" in cols:
                result.metered_it_kwh = (result.metered_it_kwh or 0.0) + float(
                    cells[cols.index("metered_kwh")].replace(",", ""))

    try:
        result.steps = _dagster_steps(home, spawn_epoch)
    except Exception as exc:  # noqa: BLE001 (the figures above stand without the step breakdown)
        result.steps = [{"key": f"(could not read the Dagster event log: {exc})", "status": "?",
                         "start_s": 0.0, "duration_s": 0.0}]
    if result.tree_peak_at_s is not None:
        for s in result.steps:
            if not s["key"].startswith("(") and s["start_s"] <= result.tree_peak_at_s <= s["start_s"] + s["duration_s"]:
                result.tree_peak_during = s["key"]
        if result.tree_peak_during is None and t_mat is not None and result.tree_peak_at_s < t_mat:
            result.tree_peak_during = "scanning inputs for days (before the job)"

    log_path = warehouse.with_name(warehouse.name + ".run.log")
    if log_path.exists():
        _parse_run_log(log_path.read_text(errors="replace"), result)
        result.run_log = str(log_path)
    if not keep_warehouse:  # the warehouse, its Parquet day files and the analysts' copy
        for p in work.glob("warehouse.*"):
            if p.is_dir():
                shutil.rmtree(p)
            elif not p.name.endswith(".run.log"):
                p.unlink()
    return result


# ----------------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


def report(results: list[RunResult]) -> str:
    out = []
    rows = []
    for r in results:
        ok = "ok" if r.exit_code == 0 else ("TIMEOUT" if r.timed_out else f"exit {r.exit_code}")
        rows.append([f"{r.requests:,}", f"{r.telemetry_rows:,}", f"{r.data_bytes / 1e6:,.0f} MB", ok,
                     f"{r.wall_s:,.1f}", f"{r.ru_maxrss_gb:.2f}", f"{r.tree_peak_rss_gb:.2f}",
                     "(floor)" if r.floor else "yes" if r.exit_code == 0 and r.wall_s <= TARGET_WALL_S and r.peak_rss_gb <= TARGET_RSS_GB
                     else "no"])
    out.append(_table(["requests", "telemetry rows", "inputs", "status", "wall s", "max RSS 1 proc GB",
                       "tree RSS sum GB", f"<= {TARGET_WALL_S:.0f} s & <= {TARGET_RSS_GB:.0f} GB"], rows))

    for r in results:
        what = " (--floor: 1 GPU)" if r.floor else ""
        out.append(f"\n--- {r.requests:,} requests{what}: where the time goes (wall {r.wall_s:.1f} s)")
        for name, s in r.stages_s.items():
            out.append(f"  {name:<58} {s:8.1f} s")
        steps = [s for s in r.steps if not s["key"].startswith("(")]
        # per job: its steps, and the job's time as the CLI reports it minus their sum (results written before
        # steps carried their job have one list, set against the daily job)
        stage_of_job = {"impact_daily": "job (impact_daily, as the CLI reports it)",
                        "impact_models": "models job (as the CLI reports it)"}  # fmt: skip
        for job_name in dict.fromkeys(s.get("job", "impact_daily") for s in steps):
            mine = [s for s in steps if s.get("job", "impact_daily") == job_name]
            out.append(f"  Dagster steps of {job_name}:")
            for s in mine:
                out.append(f"    {s['key']:<56} {s['duration_s']:8.1f} s  {s['status']}")
            job = r.stages_s.get(stage_of_job.get(job_name, ""))
            if job is not None:
                out.append(f"    {'Dagster overhead (job - sum of its steps)':<56} "
                           f"{job - sum(s['duration_s'] for s in mine):8.1f} s")
        dbt_step = next((s for s in steps if "dbt" in s["key"]), None)
        if r.dbt_finished_s is not None:
            out.append(f"  dbt: {r.dbt_project or '?'}; models {sum(t for _, t in r.dbt_models):.1f} s ({len(r.dbt_models)}), "
                       f"tests {sum(t for _, t in r.dbt_tests):.1f} s ({len(r.dbt_tests)}), "
                       f"dbt 'Finished running' {r.dbt_finished_s:.1f} s"
                       + (f"; dbt step - that = {dbt_step['duration_s'] - r.dbt_finished_s:.1f} s "
                          "(dbt start-up, manifest parse, dagster-dbt event handling)" if dbt_step else ""))
            out.append("  slowest dbt models:")
            for name, t in sorted(r.dbt_models, key=lambda x: -x[1])[:5]:
                out.append(f"    {name:<56} {t:8.2f} s")
            out.append("  slowest dbt tests:")
            for name, t in sorted(r.dbt_tests, key=lambda x: -x[1])[:5]:
                out.append(f"    {name[:56]:<56} {t:8.2f} s")
        if r.dbt_failures:
            out.append("  dbt failures: " + ", ".join(r.dbt_failures))
        out.append(f"  peak RSS: one process (wait4 ru_maxrss) {r.ru_maxrss_gb:.2f} GB; tree sum (sampled) "
                   f"{r.tree_peak_rss_gb:.2f} GB at {r.tree_peak_at_s or 0:.1f} s"
                   + (f" during {r.tree_peak_during}" if r.tree_peak_during else ""))
        for k, v in sorted(r.per_process_peak_gb.items(), key=lambda kv: -kv[1])[:4]:
            out.append(f"    per-process peak (sampled) {k:<44} {v:6.2f} GB")
        if r.cpu_s:
            cores = os.cpu_count() or 1
            out.append(f"  CPU: the run used {r.cpu_s:.0f} CPU-s ({r.cpu_s / r.wall_s / cores:.0%} of {cores} cores "
                       f"over the wall time); other processes used {r.other_cpu_s:.0f} CPU-s meanwhile, "
                       f"the hypervisor stole {r.steal_s:.0f} CPU-s "
                       f"(max 1-min load average {r.load_avg_max:.2f})"
                       + ("  << the machine was shared: timings are pessimistic"
                          if r.other_cpu_s > 0.1 * r.wall_s else "")
                       + ("  << the host took CPU from this VM: timings are pessimistic"
                          if r.steal_s > 0.1 * r.wall_s else ""))
        if r.reference_s:
            out.append(f"  machine speed: reference workload {r.reference_s:.2f} s just before the run (numpy sort of "
                       f"{REFERENCE_SORT_N / 1e6:.0f} M doubles + a {REFERENCE_LOOP_N / 1e6:.0f} M-step Python loop); "
                       f"wall / reference = {r.wall_s / r.reference_s:.1f}")
        if r.duckdb_reference_s:
            out.append(f"  machine speed: DuckDB reference {r.duckdb_reference_s:.2f} s (2 M rows: join, write into a file, "
                       f"group-by, window; 2 threads); wall / DuckDB reference = {r.wall_s / r.duckdb_reference_s:.1f}")
        if r.code_before:
            out.append(f"  product code {r.code_before}"
                       + ("" if r.code_after == r.code_before else
                          f" -> {r.code_after}  << CHANGED DURING THE RUN: the figures mix two versions"))
        if r.metered_it_kwh is not None and r.expected_it_kwh:
            out.append(f"  metered IT energy {r.metered_it_kwh:,.1f} kWh vs generated {r.expected_it_kwh:,.1f} kWh "
                       f"({(r.metered_it_kwh / r.expected_it_kwh - 1) * 100:+.3f} %)")
        if r.exit_code != 0:
            out.append("  stderr (tail):\n    " + r.stderr_tail.strip().replace("\n", "\n    "))
        if r.run_log:
            out.append(f"  run log: {r.run_log}")

    sized = [r for r in results if r.exit_code == 0 and not r.floor]
    # growth between runs on the same telemetry (the largest telemetry present), so the slope is per request
    same = [r for r in sized if r.telemetry_rows == max((x.telemetry_rows for x in sized), default=0)]
    done = {r.requests: r for r in same}
    if len(done) >= 2:
        small, big = min(done), max(done)
        a, b = done[small], done[big]
        marginal = (b.wall_s - a.wall_s) / ((big - small) / 1e6)
        if not a.code_before or a.code_before != b.code_before or a.code_after != a.code_before \
                or b.code_after != b.code_before:
            out.append("\n(!) the runs compared below did not run one and the same product code version "
                       "(or its version was not recorded): the growth figures are indicative only")
        out.append(f"\nGrowth {big:,} / {small:,} requests (x{big / small:g}, same {a.telemetry_rows:,} telemetry "
                   f"rows): wall x{b.wall_s / a.wall_s:.2f}, peak RSS x{b.peak_rss_gb / a.peak_rss_gb:.2f}; "
                   f"marginal {marginal:.1f} s per 1M requests, intercept (fixed + telemetry) "
                   f"{a.wall_s - marginal * small / 1e6:.1f} s")
        for key in sorted(set(a.stages_s) & set(b.stages_s)):
            out.append(f"  {key:<58} {a.stages_s[key]:8.1f} -> {b.stages_s[key]:8.1f} s")
        sa = {s["key"]: s["duration_s"] for s in a.steps if not s["key"].startswith("(")}
        sb = {s["key"]: s["duration_s"] for s in b.steps if not s["key"].startswith("(")}
        for key in sorted(set(sa) & set(sb), key=lambda k: -sb[k]):
            out.append(f"  step {key:<53} {sa[key]:8.1f} -> {sb[key]:8.1f} s")
        ma, mb = dict(a.dbt_models), dict(b.dbt_models)
        for key in sorted(set(ma) & set(mb), key=lambda k: -mb[k])[:5]:
            out.append(f"  model {key:<52} {ma[key]:8.2f} -> {mb[key]:8.2f} s")
    out += floor_lines(results, done)
    return "\n".join(out)


def floor_lines(results: list[RunResult], done: dict[int, RunResult]) -> list[str]:
    """How the largest run's wall time splits into the stack's fixed cost (the last --floor run) and what scales
    with the data; with two sizes, the data part splits further into telemetry (+ the per-day work of the nodes)
    and requests."""
    floors = [r for r in results if r.floor and r.exit_code == 0]
    if not floors or not done:
        return []
    f, big = floors[-1], done[max(done)]
    data_s, left_s = big.wall_s - f.wall_s, TARGET_WALL_S - f.wall_s
    head = (f"\nFixed cost of the stack (a {f.requests:,}-request day on one GPU, {f.telemetry_rows:,} telemetry "
            f"rows): {f.wall_s:.1f} s, {f.cpu_s:.0f} CPU-s")
    split = (f"  of the {big.requests:,}-request run's {big.wall_s:.1f} s: {f.wall_s:.1f} s fixed, {data_s:.1f} s "
             f"with the data; the target leaves {left_s:.1f} s for the data"
             + (f" (the data part would have to be {data_s / left_s:.1f}x faster)" if left_s > 0 else
                " (none: the fixed cost alone exceeds it)"))
    lines = [head, split]
    if len(done) >= 2:
        small = done[min(done)]
        marginal = (big.wall_s - small.wall_s) / ((big.requests - small.requests) / 1e6)
        intercept = small.wall_s - marginal * small.requests / 1e6
        lines.append(f"  the data part: telemetry and the nodes' per-day work {intercept - f.wall_s:.1f} s, "
                     f"requests {marginal * big.requests / 1e6:.1f} s ({marginal:.1f} s per 1M)")
    for name, fs in f.stages_s.items():
        if name in big.stages_s:
            lines.append(f"  {name:<58} {fs:8.1f} of {big.stages_s[name]:8.1f} s")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000000,5000000", help="comma-separated request counts")
    p.add_argument("--nodes", type=int, default=64)
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--seed", type=int, default=20231116)
    p.add_argument("--regenerate", action="store_true", help="regenerate datasets even if present")
    p.add_argument("--keep-warehouse", action="store_true", help="keep each run's warehouse under out/runs/")
    p.add_argument("--timeout", type=float, default=900.0, help="kill a run after this many seconds")
    p.add_argument("--quiet", action="store_true", help="do not echo the CLI's lines as they come")
    p.add_argument("--floor", action="store_true",
                   help=f"first time a {FLOOR_REQUESTS:,}-request day on one GPU: the stack's fixed cost")
    p.add_argument("--previous", type=Path, action="append", default=[],
                   help="a results-*.json of an earlier invocation whose runs join the report (for growth)")
    args = p.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]

    print(f"machine: {os.cpu_count()} CPUs, {os.sysconf('SC_PHYS_PAGES') * PAGE / 1024**3:.1f} GB RAM; "
          f"targets <= {TARGET_WALL_S:.0f} s wall, <= {TARGET_RSS_GB:.0f} GB peak RSS", flush=True)
    results = []
    for prev in args.previous:
        for run in json.loads(prev.read_text())["runs"]:
            known = {f for f in RunResult.__dataclass_fields__}
            results.append(RunResult(**{k: v for k, v in run.items() if k in known}))
            print(f"from {prev}: {results[-1].requests:,} requests, wall {results[-1].wall_s:.1f} s", flush=True)
    runs = [(n, args.nodes, args.gpus_per_node, None) for n in sizes]
    if args.floor:
        runs.insert(0, (FLOOR_REQUESTS, FLOOR_NODES, FLOOR_GPUS, f"floor-{FLOOR_REQUESTS}"))
    for n, nodes, gpn, name in runs:
        data, meta = ensure_dataset(n, nodes, gpn, args.seed, args.regenerate, name)
        results.append(run_once(data, meta, args.keep_warehouse, args.timeout, echo=not args.quiet))
        results[-1].floor = name is not None
        print(f"  -> exit {results[-1].exit_code}, wall {results[-1].wall_s:.1f} s, "
              f"peak RSS {results[-1].peak_rss_gb:.2f} GB", flush=True)

    text = report(results)
    print("\n" + text)
    if not runs:
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
    (OUT / f"results-{stamp}.json").write_text(json.dumps(
        {"machine": {"cpus": os.cpu_count()}, "runs": [asdict(r) for r in results]}, indent=2) + "\n")
    (OUT / f"results-{stamp}.txt").write_text(text + "\n")
    print(f"\n(results in {OUT}/results-{stamp}.json and .txt)")
    return 0 if all(r.exit_code == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
