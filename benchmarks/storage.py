"""Warehouse bytes per request, peak memory and the analysts' query times (benchmarks/storage.md).

    .venv/bin/python benchmarks/storage.py --sizes 1000000,5000000          # bytes and peak RSS per size
    .venv/bin/python benchmarks/storage.py --queries OLD.duckdb NEW.analysts.duckdb   # analyst query times

Sizes: each generated day (benchmarks/generate.py, as run_benchmark.py makes them) goes through `impact run` into a
fresh warehouse (run_benchmark.run_once: wall time, CPU, peak RSS of the process tree), then its footprint is
measured: the working warehouse file, its Parquet day files by relation, the published analysts' warehouse, and
each table's bytes (the table copied alone into a new DuckDB file). The run's folder is deleted afterwards.

Queries: the README's analyst queries (and two full scans of the request marts), each run 7 times on one connection
per warehouse, the warehouses interleaved; the first run and the median of the others are reported, and the ratio
of the medians (last warehouse / first), e.g. a warehouse built by the previous version and the published warehouse
of this one, over the same day.

Results are printed and written to benchmarks/out/storage-<time>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run_benchmark as rb  # the benchmark's dataset and run helpers (benchmarks/ is not a package)

QUERIES = {
    "wh per request by model and tenant": """
        select model, tenant, count(*) as requests, median(it_energy_j) / 3600 as median_wh,
               sum(idle_energy_j + unallocated_idle_energy_j) / sum(it_energy_j) as idle_share
        from marts.fct_request_energy where day = (select max(day) from marts.fct_cluster_energy_daily)
        group by all order by requests desc""",
    "energy per output token by model": """
        select model, sum(it_energy_j) / sum(output_tokens) as j_per_output_token
        from marts.fct_request_energy where output_tokens > 0 group by model""",
    "hourly concurrency (windows)": """
        select cluster, date_trunc('hour', window_start) as hour, avg(mean_concurrency) as concurrency,
               sum(it_energy_j) / nullif(sum(request_seconds), 0) as j_per_request_second
        from marts.fct_window_energy group by all order by all""",
    "carbon and water per request (daily)": """
        select model, tenant, sum(requests) as requests, sum(total_g_co2e) / sum(requests) as g_co2e_per_request,
               sum(total_g_co2e_low) / sum(requests) as low, sum(total_g_co2e_high) / sum(requests) as high,
               sum(total_water_l) * 1000 / sum(requests) as ml_per_request
        from marts.agg_impact_daily group by all order by requests desc""",
    "hourly operational carbon": """
        select cluster, date_trunc('hour', start_time) as hour, sum(operational_location_g_co2e) as location_g,
               sum(operational_market_g_co2e) as market_g
        from marts.fct_request_impact group by all order by all""",
    "closure": """
        select cluster, day, metered_it_energy_j - attributed_energy_j - unattributed_energy_j as residual_j
        from marts.fct_cluster_energy_daily order by abs(residual_j) desc limit 5""",
    "one request's impact": """
        select * from marts.fct_request_impact
        where request_id = (select min(request_id) from marts.fct_request_energy)""",
    "totals by model (impact)": """
        select model, count(*), sum(total_g_co2e), sum(total_water_l), sum(facility_energy_j) / 3.6e6
        from marts.fct_request_impact group by model""",
}


def table_bytes(path: Path) -> dict[str, int]:
    """Each base table of a DuckDB file copied alone into a new file: its bytes there (minus an empty file's)."""
    out = {}
    con = duckdb.connect()
    con.execute(f"attach '{path}' as w (read_only)")
    tables = con.execute(
        "select schema_name, table_name from duckdb_tables() where database_name = 'w' order by 1, 2"
    ).fetchall()
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        empty = Path(tmp) / "empty.duckdb"
        duckdb.connect(str(empty)).close()
        for schema, table in tables:
            target = Path(tmp) / f"{schema}.{table}.duckdb"
            con.execute(f"attach '{target}' as t")
            con.execute(f'create table t.x as select * from w."{schema}"."{table}"')
            con.execute("detach t")
            out[f"{schema}.{table}"] = target.stat().st_size - empty.stat().st_size
            target.unlink()
    con.close()
    return out


def footprint(warehouse: Path) -> dict:
    parts = Path(str(warehouse) + ".parts")
    by_relation: dict[str, int] = {}
    for f in parts.rglob("*.parquet") if parts.is_dir() else []:
        relation = f.relative_to(parts).parts[0]
        by_relation[relation] = by_relation.get(relation, 0) + f.stat().st_size
    published = warehouse.with_name(warehouse.stem + ".analysts.duckdb")
    return {
        "working_file": warehouse.stat().st_size,
        "parts": by_relation,
        "published_file": published.stat().st_size if published.exists() else 0,
        "tables": table_bytes(warehouse),
    }


def measure_sizes(sizes: list[int], args) -> list[dict]:
    results = []
    for n in sizes:
        data, meta = rb.ensure_dataset(n, args.nodes, args.gpus_per_node, args.seed, False)
        run = rb.run_once(data, meta, keep_warehouse=True, timeout_s=args.timeout, echo=not args.quiet)
        warehouse = Path(run.run_log).with_name("warehouse.duckdb")
        fp = footprint(warehouse) if run.exit_code == 0 else {}
        total = fp.get("working_file", 0) + sum(fp.get("parts", {}).values()) + fp.get("published_file", 0)
        results.append({
            "requests": n, "exit_code": run.exit_code, "wall_s": run.wall_s, "cpu_s": run.cpu_s,
            "peak_rss_gb": run.peak_rss_gb, "steal_s": run.steal_s, "other_cpu_s": run.other_cpu_s,
            "footprint": fp, "total_bytes": total, "bytes_per_request": total / n,
            "stderr_tail": run.stderr_tail,
        })
        if run.exit_code != 0:
            print(f"run failed:\n{run.stderr_tail}", flush=True)
        print(f"{n:,} requests: exit {run.exit_code}, wall {run.wall_s:.1f} s, CPU {run.cpu_s:.1f} s, peak RSS "
              f"{run.peak_rss_gb:.2f} GB, {total / 1e9:.3f} GB = {total / n:.1f} B/request", flush=True)
        if not args.keep and run.exit_code == 0:
            shutil.rmtree(warehouse.parent, ignore_errors=True)
    return results


def measure_queries(paths: list[Path], repeat: int = 7) -> dict:
    """Each query on each warehouse `repeat` times, the warehouses interleaved (a busy machine slows both alike):
    the first run (cold) and the median of the others."""
    cons = [duckdb.connect(str(p), read_only=True) for p in paths]
    times: dict[str, dict[str, list[float]]] = {name: {str(p): [] for p in paths} for name in QUERIES}
    for _ in range(repeat):
        for name, sql in QUERIES.items():
            for path, con in zip(paths, cons, strict=True):
                began = time.perf_counter()
                con.execute(sql).fetchall()
                times[name][str(path)].append(time.perf_counter() - began)
    for con in cons:
        con.close()
    return {
        name: {path: {"first_s": t[0], "median_s": statistics.median(t[1:]), "best_s": min(t[1:])}
               for path, t in by_path.items()}
        for name, by_path in times.items()
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="", help="comma-separated request counts")
    p.add_argument("--queries", type=Path, nargs="+", default=[], help="warehouses to time the analyst queries on")
    p.add_argument("--nodes", type=int, default=64)
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--seed", type=int, default=20231116)
    p.add_argument("--timeout", type=float, default=3600.0)
    p.add_argument("--keep", action="store_true", help="keep each run's folder under benchmarks/out/runs/")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    report: dict = {"machine": {"cpus": os.cpu_count(), "ram_gb": rb.PAGE * os.sysconf("SC_PHYS_PAGES") / 1e9},
                    "memory_limit": os.environ.get("IMPACT_DUCKDB_MEMORY_LIMIT", "(default)")}
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    if sizes:
        report["sizes"] = measure_sizes(sizes, args)
    if args.queries:
        report["queries"] = measure_queries(args.queries)
        for name, by_path in report["queries"].items():
            cells = "  ".join(f"{Path(k).name}: first {v['first_s'] * 1e3:.0f} ms, median {v['median_s'] * 1e3:.0f} ms"
                              for k, v in by_path.items())
            medians = [v["median_s"] for v in by_path.values()]
            ratio = f"  ratio {medians[-1] / medians[0]:.2f}" if len(medians) == 2 and medians[0] else ""
            print(f"{name:<40} {cells}{ratio}")
    rb.OUT.mkdir(parents=True, exist_ok=True)
    out = rb.OUT / f"storage-{dt.datetime.now():%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"(results in {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
