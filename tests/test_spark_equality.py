"""The same dbt models on DuckDB and on Apache Spark give the same warehouse (issue 26, docs/spark.md).

One day holds everything the engines must agree on: the demo day trimmed to its first TRIM_HOURS hour of requests
and telemetry on its three clusters (the image-generation cluster sim-sdxl-central with its LoRA adapters among
them; the whole day takes ~10 minutes on local Spark on 2 cores, far over this suite's budget), plus a simulated
cluster for the whole day (lib/simulation/simulate.py: 2 nodes, an exporter restart, counter glitches, power spikes and
requests naming GPUs without telemetry, so the quarantine, the bridged intervals and the fallback pools have rows).
One day, because Spark's cost is per statement, not per row: a second day would double it. The day is loaded once
(ingestion is DuckDB's for both engines), then built with `dbt build` (the data tests run on Spark too) on DuckDB
and on one local Spark Connect server, and every intermediate and mart table (views included) is compared row by
row: keys equal, values within 1e-9 relative (orchestration/lib/engines/equality.py). Before the build, the image
models fitted to the demo's image profiling runs are written to both engines' models.image_model_fits
(append_image_fits on each), so int_request_days' image predictions run too; after it, the image fits' training
rows read from each engine's marts, and the fits made from them, must be equal. `impact sql` is checked on both
engines against the same warehouse.

Needs Java 17 (the local Spark server): skipped without it, failed under CI=true (.ci/run installs it). One xdist
group: the module runs on one worker, one JVM.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from orchestration import settings
from orchestration.dbt_manifest import dbt_executable
from orchestration.defs.models.assets import append_image_fits, fit_images, read_profiling_dir
from orchestration.lib import factors
from orchestration.lib.engines import lake
from orchestration.lib.engines.equality import differences
from orchestration.lib.images import predict as image_predict
from orchestration.lib.ingestion import ingest
from orchestration.lib.predictions import FIT_MAX_ROWS
from orchestration.lib.warehouse import connect, warehouse

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("spark")]

DEMO = settings.REPO_ROOT / "data" / "sample" / "inputs"
DEMO_DAY = dt.date(2023, 11, 16)
TRIM_HOURS = 1
SIM_CLUSTER = "sim-faults-north"
SCHEMAS = ("raw", "factors", "staging", "intermediate", "marts", "models")
FITTED_AT = "2023-11-16 23:00:00"


@pytest.fixture(scope="module")
def spark_remote(tmp_path_factory):
    """One local Spark Connect server for the module (its JVM start is 10-20 s)."""
    from orchestration.lib.engines.spark_server import LocalSparkServer, java_available

    if not java_available():
        if os.environ.get("CI") == "true":
            pytest.fail("Java is missing: .ci/run installs openjdk-17-jre-headless for the Spark tests")
        pytest.skip("Java 17 is not installed (the Spark engine's local server needs it)")
    # days of a few thousand rows and a few hundred small statements: one shuffle partition, one core, no C2 JIT
    # compiles and no whole-stage code generation (each statement would compile its own Java: most of the CPU)
    settings_for_tests = {
        "IMPACT_SPARK_SHUFFLE_PARTITIONS": "1",
        "IMPACT_SPARK_CORES": "1",
        "IMPACT_SPARK_JAVA_OPTIONS": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
        "IMPACT_SPARK_CONF": "spark.sql.codegen.wholeStage=false",
    }
    before = {name: os.environ.get(name) for name in settings_for_tests}
    os.environ.update(settings_for_tests)
    server = LocalSparkServer(tmp_path_factory.mktemp("spark-warehouse"))
    try:
        yield server.start()
    finally:
        server.stop()
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def trimmed_demo(out: Path, hours: int = TRIM_HOURS) -> Path:
    """The demo inputs with only the requests that started, and the samples taken, in the day's first ``hours``
    hours (same files, same formats)."""
    shutil.copytree(DEMO, out, ignore=shutil.ignore_patterns("truth"))
    end_s = dt.datetime.combine(DEMO_DAY, dt.time(hours), tzinfo=dt.UTC).timestamp()  # telemetry: epoch seconds
    end_text = f"{DEMO_DAY}T{hours:02d}"  # requests: RFC 3339 text, compared as text
    con = connect(":memory:")
    try:
        for path in sorted((out / "telemetry").rglob("*.parquet")):
            con.execute(
                f"copy (select * from read_parquet('{path}') where timestamp < {end_s}) to '{path}.tmp' (format parquet)"
            )
            path.with_name(path.name + ".tmp").replace(path)
        for path in sorted((out / "requests").rglob("*.csv")):
            con.execute(
                f"copy (select * from read_csv('{path}', all_varchar = true) "
                f"where start_time < '{end_text}') to '{path}.tmp' (format csv, header)"
            )
            path.with_name(path.name + ".tmp").replace(path)
        for path in sorted((out / "requests").rglob("*.jsonl")):
            kept = [line for line in path.read_text().splitlines()
                    if line.strip() and json.loads(line)["start_time"] < end_text]
            path.write_text("\n".join(kept) + "\n")
    finally:
        con.close()
    return out


def with_faulty_cluster(inputs: Path, work: Path) -> Path:
    """The inputs plus a simulated cluster on the same day (lib/simulation/simulate.py: 2 nodes, an exporter restart, counter
    glitches, power spikes, requests naming GPUs that sent no telemetry), its clusters.yml entry appended."""
    import yaml

    from orchestration.lib.simulation import simulate

    sim = work / "sim"
    code = simulate.main(
        ["--out", str(sim), "--day", DEMO_DAY.isoformat(), "--cluster-id", SIM_CLUSTER, "--nodes", "2",
         "--requests-per-day", "400", "--seed", "26", "--restart", f"gpu-node-01@{DEMO_DAY}T06:00:00Z",
         "--fault", "counter_glitches=2", "--fault", "power_spikes=2", "--fault", "request_unknown_names=5"]
    )
    assert code == 0
    clusters = yaml.safe_load((inputs / "clusters.yml").read_text())
    clusters["clusters"] += yaml.safe_load((sim / "clusters.yml").read_text())["clusters"]
    (inputs / "clusters.yml").write_text(yaml.safe_dump(clusters, sort_keys=False))
    for kind in ("requests", "telemetry"):
        shutil.copytree(sim / kind / SIM_CLUSTER, inputs / kind / SIM_CLUSTER)
    return inputs


def dbt_build(target: str, day: dt.date, target_path: Path, env: dict[str, str], verb: str = "build") -> None:
    project = str(settings.DBT_PROJECT_DIR)
    skip_unit = ["--exclude-resource-type", "unit_test"] if verb == "build" else []
    command = [
        dbt_executable(), verb, *skip_unit, "--target", target,
        "--profiles-dir", project, "--project-dir", project, "--target-path", str(target_path),
    ]
    result = subprocess.run(
        command, env={**os.environ, **env, "IMPACT_PARTITION_DAY": day.isoformat()}, capture_output=True,
        text=True, check=False,
    )
    assert result.returncode == 0, f"dbt {verb} on {target} failed:\n{result.stdout[-6000:]}"


def profiling_image_fits(inputs: Path):
    """The image models of the inputs' image profiling runs (what the models job appends), one fitted_at."""
    _, image_runs, _ = read_profiling_dir(inputs)
    assert len(image_runs), "the demo inputs have image profiling runs"
    fits, _, _ = fit_images({"profiling": image_runs}, pd.Timestamp(FITTED_AT))
    fits = fits[fits["skip_reason"].isna()]
    assert fits["selected"].any()
    return fits


def build_both(
    inputs: Path, day: dt.date, work: Path, remote: str, spark_command: str = "build", image_fits=None
) -> Path:
    """Ingest the day once (DuckDB), write the image fits (if any) to both engines, then build the day on DuckDB
    and on Spark. Returns the DuckDB warehouse."""
    from orchestration.lib.engines.spark_engine import SparkEngine

    store = work / "ingest.duckdb"
    with warehouse(store) as con:
        ingest.ingest_clusters(con, inputs)
        factors.load_factors(con, inputs, settings.SHIPPED_FACTORS_DIR)
        ingest.ingest_requests(con, inputs, day, ingest.DEFAULT_MAX_REQUEST_DURATION_S)
        ingest.ingest_telemetry(con, inputs, day, ingest.DEFAULT_TELEMETRY_MARGIN_S)
    duck = work / "duck.duckdb"
    shutil.copy(store, duck)
    if image_fits is not None:
        with warehouse(duck) as con:
            append_image_fits(con, image_fits)
    dbt_build("duckdb", day, work / "target-duckdb", {settings.WAREHOUSE_ENV: str(duck)})

    engine = SparkEngine(remote)
    for schema in SCHEMAS:  # a fresh Spark warehouse for each day (the catalog is the session's server's)
        engine.execute(f"drop database if exists `{schema}` cascade")
    if image_fits is not None:
        append_image_fits(engine, image_fits)
    con = connect(store, read_only=True)
    try:
        lake.publish_day(con, engine, work / "lake", day)
    finally:
        con.close()
    dbt_build("spark", day, work / "target-spark", {"SPARK_REMOTE": remote}, spark_command)
    return duck


def model_tables(duck: Path) -> list[tuple[str, str]]:
    """The dbt models' tables and views (int_request_days and fct_window_energy are views over day files on both
    engines), and the image fits when written."""
    con = connect(duck, read_only=True)
    try:
        return con.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema in ('intermediate', 'marts') "
            "or (table_schema = 'models' and table_name = 'image_model_fits') order by 1, 2"
        ).fetchall()
    finally:
        con.close()


def assert_equal_warehouses(duck: Path, remote: str) -> int:
    from orchestration.lib.engines.spark_engine import SparkEngine

    engine = SparkEngine(remote)
    tables = model_tables(duck)
    assert len(tables) >= 23, tables
    con = connect(duck, read_only=True)
    problems, rows = [], 0
    try:
        for schema, table in tables:
            a = con.execute(f'select * from "{schema}"."{table}"').df()
            b = engine.query(f"select * from `{schema}`.`{table}`")
            rows += len(a)
            problems += [f"{schema}.{table}: {d}" for d in differences(a, b)]
    finally:
        con.close()
    assert not problems, "DuckDB and Spark differ:\n" + "\n".join(problems)
    return rows


def test_demo_hour_and_a_faulty_cluster_are_equal_on_duckdb_and_spark(spark_remote, tmp_path):
    from orchestration.lib.engines.spark_engine import SparkEngine

    inputs = with_faulty_cluster(trimmed_demo(tmp_path / "inputs"), tmp_path)
    duck = build_both(inputs, DEMO_DAY, tmp_path, spark_remote, image_fits=profiling_image_fits(inputs))
    rows = assert_equal_warehouses(duck, spark_remote)
    assert rows > 5_000  # requests, intervals and windows of the four clusters, not an empty day

    # the faults reached the tables compared: quarantined or rejected telemetry, requests attributed one level up
    con = connect(duck, read_only=True)
    try:
        quarantine, higher = con.execute(
            "select (select count(*) from intermediate.int_telemetry_quarantine where cluster = $c), "
            "(select count(*) from intermediate.int_request_pools "
            " where cluster = $c and attribution_level <> cluster_level)",
            {"c": SIM_CLUSTER},
        ).fetchone()
    finally:
        con.close()
    assert quarantine > 0 and higher > 0, (quarantine, higher)

    # the image cluster is in it, priced by the image fits, with its fields unpacked from the JSON column
    con = connect(duck, read_only=True)
    try:
        images, adapters = con.execute(
            "select count(*), count(lora) from marts.fct_request_energy "
            "where modality = 'image' and cluster = 'sim-sdxl-central'"
        ).fetchone()
    finally:
        con.close()
    assert images > 0 and adapters > 0, (images, adapters)

    # the image fits' training rows read from each engine's marts, and the fits made from them, are equal
    engine = SparkEngine(spark_remote)
    con = connect(duck, read_only=True)
    try:
        on_duckdb = image_predict.training_requests(con, days=1, cap=FIT_MAX_ROWS)
    finally:
        con.close()
    on_spark = image_predict.training_requests(engine, days=1, cap=FIT_MAX_ROWS)
    assert len(on_duckdb) == images
    assert not differences(on_duckdb, on_spark)
    fitted_at = pd.Timestamp(FITTED_AT)
    fits_duckdb, _, _ = fit_images({"telemetry": on_duckdb}, fitted_at)
    fits_spark, _, _ = fit_images({"telemetry": on_spark}, fitted_at)
    assert fits_duckdb["skip_reason"].isna().any()
    assert not differences(fits_duckdb, fits_spark)

    # impact sql on both engines: the same row, as JSON objects
    def sql(engine: str, warehouse_arg: Path) -> list[dict]:
        query = ("select cluster, requests, round(metered_it_energy_j, 6) as metered_it_energy_j "
                 "from marts.fct_cluster_energy_daily order by cluster")
        out = subprocess.run(
            [str(Path(dbt_executable()).with_name("impact")), "sql", query, "--engine", engine,
             "--warehouse", str(warehouse_arg), "--json"],
            env={**os.environ, "SPARK_REMOTE": spark_remote}, capture_output=True, text=True, check=False,
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    on_duckdb, on_spark = sql("duckdb", duck), sql("spark", tmp_path)
    assert on_duckdb == on_spark and len(on_duckdb) == 4 and on_duckdb[0]["requests"] > 0
