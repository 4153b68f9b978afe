"""Peak memory and CPU of request ingestion alone on a large generated JSON-lines file (docs/telemetry-faults.md).

    python benchmarks/ingest_memory.py --mb 530 --out /tmp/ingest-memory            # generate, then measure
    IMPACT_DUCKDB_MEMORY_LIMIT=1GB python benchmarks/ingest_memory.py --out /tmp/ingest-memory --no-generate

Writes `<out>/clusters.yml` and `<out>/requests/big.jsonl` (one cluster, one UTC day, 244-byte lines), then runs
`ingest.ingest_clusters` and `ingest.ingest_requests` into `<out>/warehouse.duckdb` and prints rows loaded, CPU
seconds and the process's peak RSS. Run it with the PYTHONPATH of the code to measure (e.g. an export of main).
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import time
from pathlib import Path

import numpy as np

DAY = dt.date(2024, 5, 1)
DAY0 = 1714521600.0
LINE_BYTES = 244
CHUNK = 500_000


def generate(out: Path, megabytes: float, seed: int = 0) -> Path:
    """A JSON-lines request log of about `megabytes` MB (numpy draws, one f-string per line)."""
    (out / "requests").mkdir(parents=True, exist_ok=True)
    (out / "clusters.yml").write_text(
        "clusters:\n- {id: big, region: US-CAL-CISO, gpu_model: A100-SXM4-80GB, gpus_per_node: 8, gpu_idle_w: 60, "
        "host_idle_w: 300, host_max_w: 900, pue: 1.1}\n"
    )
    rng = np.random.default_rng(seed)
    n = int(megabytes * 1e6 / LINE_BYTES)
    path = out / "requests" / "big.jsonl"
    with path.open("w") as handle:
        for first in range(0, n, CHUNK):
            k = min(CHUNK, n - first)
            columns = (
                np.arange(first, first + k), rng.uniform(0, 86400, k), np.round(rng.uniform(0.5, 60, k), 6),
                rng.integers(1, 8000, k), rng.integers(1, 1500, k), rng.integers(0, 16, k), rng.integers(0, 8, k),
            )
            handle.writelines(
                f'{{"request_id":"big-20240501-{i:09d}","cluster":"big","model":"llama2-70b",'
                f'"start_time":{DAY0 + s:.3f},"duration_s":{d},"input_tokens":{a},"output_tokens":{b},'
                f'"tenant":"chat","endpoint":"/v1/completions","node":"gpu-node-{node:02d}","gpu":"{gpu}"}}\n'
                for i, s, d, a, b, node, gpu in zip(*columns, strict=True)
            )
    return path


def measure(out: Path) -> str:
    from orchestration.lib.ingestion import ingest
    from orchestration.lib.warehouse import warehouse

    target = out / "warehouse.duckdb"
    for old in out.glob("warehouse.duckdb*"):
        old.unlink()
    began_cpu, began = time.process_time(), time.monotonic()
    with warehouse(target) as con:
        ingest.ingest_clusters(con, out)
        summary = ingest.ingest_requests(con, out, DAY)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return (
        f"{ingest.__file__}: loaded {summary.loaded:,}, rejected {summary.rejected:,}, "
        f"{time.process_time() - began_cpu:.1f} CPU-s, {time.monotonic() - began:.1f} s, peak RSS {peak_mb:,.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--mb", type=float, default=530.0, help="size of the generated file")
    parser.add_argument("--no-generate", action="store_true", help="measure the file already in --out")
    args = parser.parse_args()
    if not args.no_generate:
        path = generate(args.out, args.mb)
        print(f"wrote {path} ({path.stat().st_size / 1e6:,.0f} MB)")
    print(measure(args.out))


if __name__ == "__main__":
    main()
