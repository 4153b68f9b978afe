"""Shared fixtures: the dbt manifest, a runner for the daily job, and small exact datasets."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestration import settings

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
# Data without a licence to redistribute (Wilkins et al.'s measurements, ML.ENERGY v3, EcoLogits' reference rows,
# the Electricity Maps source files) is read from ../shared/data, never copied into the repository. A fresh clone
# (CI's included) may not have that folder: the tests that read it then skip, saying why. Set
# IMPACT_REQUIRE_SHARED_DATA=1 where the folder must be there (a release check, a machine that has it) to turn the
# skip into a failure. CI=true does not: CI's clone cannot have the data, so it would always fail.
REQUIRE_SHARED_DATA_ENV = "IMPACT_REQUIRE_SHARED_DATA"
DAY0 = 1714521600.0  # 2024-05-01T00:00:00Z


def require_shared_data(*paths: Path, allow_module_level: bool = False) -> None:
    """Skip (or, with IMPACT_REQUIRE_SHARED_DATA=1, fail) unless every path under ../shared/data exists."""
    missing = [p for p in paths if not p.exists()]
    if not missing:
        return
    names = ", ".join(str(p.relative_to(SHARED_DATA)) if p.is_relative_to(SHARED_DATA) else str(p) for p in missing)
    reason = (
        f"../shared/data is not beside this clone ({names} missing): this test reads data that may not be "
        f"redistributed, so it is not in the repository; set {REQUIRE_SHARED_DATA_ENV}=1 to make this a failure"
    )
    if os.environ.get(REQUIRE_SHARED_DATA_ENV) == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason, allow_module_level=allow_module_level)


@pytest.fixture(scope="session", autouse=True)
def dbt_manifest() -> Path:
    """The dbt manifest must exist, and be current, before the dbt assets are imported."""
    from orchestration.dbt_manifest import prepare_manifest, prune_target_folders

    manifest = prepare_manifest()
    prune_target_folders()  # earlier sessions' temporary warehouses leave dbt folders behind
    return manifest


@pytest.fixture()
def con():
    """An in-memory DuckDB connection."""
    import duckdb

    connection = duckdb.connect()
    yield connection
    connection.close()


def rows(rel) -> list[dict]:
    """A DuckDB relation's rows as dicts."""
    return [dict(zip(rel.columns, r)) for r in rel.fetchall()]


def run_days(data_dir: Path, warehouse: Path, days: Iterable[str], **env: str):
    """Materialise the daily job for each day in-process, the way the schedule and `impact run` do."""
    os.environ[settings.DATA_DIR_ENV] = str(data_dir)
    os.environ[settings.WAREHOUSE_ENV] = str(warehouse)
    os.environ.update(env)
    import dagster as dg

    from orchestration.definitions import defs
    from orchestration.defs.automation.jobs import DAILY_JOB_NAME

    job = defs().resolve_job_def(DAILY_JOB_NAME)
    instance = dg.DagsterInstance.ephemeral()
    results = []
    for day in days:
        result = job.execute_in_process(partition_key=day, instance=instance, raise_on_error=False)
        assert result.success, f"run for {day} failed"
        results.append(result)
    return results


def assert_invariants(warehouse: Path, min_alone_requests: int = 1) -> None:
    """The METHODOLOGY section 3 invariants on a built warehouse: exact conservation, no negative energy, and the
    single-request rule, which must have tested at least `min_alone_requests` requests."""
    from orchestration.lib import invariants
    from orchestration.lib.warehouse import connect

    con = connect(warehouse, read_only=True)
    try:
        assert invariants.conservation_violations(con) == []
        assert invariants.negative_energy_rows(con) == []
        bad, tested = invariants.single_request_rule(con)
        assert bad == [] and tested >= min_alone_requests, (bad, tested)
    finally:
        con.close()


def write_clusters(path: Path, clusters: list[dict]) -> None:
    import yaml

    path.write_text(yaml.safe_dump({"clusters": clusters}, sort_keys=False))


TINY_CLUSTER = {
    "id": "c1",
    "region": "US-CAL-CISO",
    "gpu_model": "A100",
    "gpus_per_node": 2,
    "gpu_idle_w": 50,
    "host_idle_w": 100,
    "host_max_w": 300,
    "pue": 1.2,
}


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """One node, two GPUs, DCGM names, 15 s scrapes over 2024-05-01, energy known in closed form:
    GPUs idle at 50 W except GPU 0 at 150 W for samples 100-109 (00:25:00-00:27:30), CPU at 10 %.
    Metered IT energy = 2 x 50 x 86400 + 100 x 150 + (100 + 0.1 x 200) x 86400 = 19,023,000 J."""
    return write_tiny_dataset(tmp_path / "inputs")


def write_tiny_dataset(data: Path) -> Path:
    """The inputs of the tiny_dataset fixture, in `data` (for module-scoped fixtures)."""
    import pandas as pd

    (data / "telemetry" / "c1").mkdir(parents=True)
    (data / "requests").mkdir()
    write_clusters(data / "clusters.yml", [TINY_CLUSTER])
    rows = []
    for gpu in ("0", "1"):
        energy_j = 1000.0
        for k in range(5761):
            t = DAY0 + 15 * k
            power = 50.0 + (100.0 if gpu == "0" and 100 <= k < 110 else 0.0)
            rows.append((t, "c1", "DCGM_FI_DEV_POWER_USAGE", power, "n1", gpu))
            rows.append((t, "c1", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", energy_j * 1000, "n1", gpu))
            rows.append((t, "c1", "DCGM_FI_DEV_GPU_UTIL", 100.0 if power > 50 else 0.0, "n1", gpu))
            energy_j += power * 15
    rows += [(DAY0 + 15 * k, "c1", "nv_cpu_utilization", 0.1, "n1", "") for k in range(5761)]
    frame = pd.DataFrame(rows, columns=["timestamp", "cluster", "metric", "value", "node", "gpu"])
    frame.to_parquet(data / "telemetry" / "c1" / "2024-05-01.parquet", index=False)
    return data


# --------------------------------------------------------------------------------------------------------------
# The demo, built once per session for the tests that look at it as a user does (UI in a browser, the daily
# report, the figures the docs state); those tests share the xdist group "webserver", so one worker builds it.

SAMPLE_INPUTS = REPO / "data" / "sample" / "inputs"


@dataclass(frozen=True)
class DemoBuild:
    inputs: Path
    warehouse: Path
    dagster_home: Path
    output: str  # what `impact run` printed (stdout)


@pytest.fixture(scope="session")
def demo_build(dbt_manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> DemoBuild:
    """`impact run` on the bundled sample day, as `make demo` runs it: the console script's code in a subprocess,
    with a Dagster home (a copy of dagster_home/dagster.yaml) so the runs and check results are in the history
    the UI shows."""
    import shutil
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("demo")
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    warehouse = root / "warehouse.duckdb"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMPACT_PROMETHEUS", "DAGSTER_"))}
    env["DAGSTER_HOME"] = str(home)
    result = subprocess.run(
        [sys.executable, "-m", "orchestration.cli", "run", "--data-dir", str(SAMPLE_INPUTS),
         "--warehouse", str(warehouse)],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return DemoBuild(inputs=SAMPLE_INPUTS, warehouse=warehouse, dagster_home=home, output=result.stdout)
