"""`impact`: the command line (CONTRACT section 2).

    impact run --data-dir DIR --warehouse FILE [--start YYYY-MM-DD --end YYYY-MM-DD] [--prometheus-url URL]
               [--no-wait] [--engine duckdb|spark]   (spark: --warehouse is a directory; docs/spark.md)
    impact sql "select ..." [--engine duckdb|spark] [--warehouse W] [--json]
    impact retain [--warehouse FILE] [--dry-run] [--raw-days N --request-days N --aggregate-days N|keep]
    impact publish [--warehouse FILE]
    impact migrate [--warehouse FILE]
    impact simulate --out DIR ...            (see `impact simulate --help`; `--images`: a diffusion cluster)
    impact fit PROFILING.csv [--json]         (see `impact fit --help`)
    impact predict --model M (--input-tokens N --output-tokens N | --width W --height H --steps S ...)
                   [--cluster C | --hardware H] [--source telemetry|profiling] [--at T] [--warehouse FILE]
    impact report [--day D] --out DIR [--warehouse FILE]
    impact advise [--day D] [--zeta Z] [--warehouse FILE]   (see `impact advise --help`)

`impact run` materialises every asset for every day in the inputs through the same Dagster job the schedule runs,
so the warehouse, the checks and (with DAGSTER_HOME set) the run history are the same as from the UI. One run per
warehouse at a time: another waits for it (or, with --no-wait, exits with code 75 naming it); analysts read the
published copy the run refreshes when it succeeds (docs/operations.md).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import errno
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from orchestration import settings
from orchestration.lib.operations import commands
from orchestration.run_progress import StepProgress, check_advice, written_report


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


def _parse_day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {text!r}") from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="impact", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="materialise every asset for every day of the inputs")
    run.add_argument("--data-dir", default=os.environ.get(settings.DATA_DIR_ENV), help="input directory")
    run.add_argument("--warehouse", default=os.environ.get(settings.WAREHOUSE_ENV), help="DuckDB warehouse file")
    run.add_argument("--start", type=_parse_day, help="first day (UTC), default: first day in the inputs")
    run.add_argument("--end", type=_parse_day, help="last day (UTC, inclusive), default: last day in the inputs")
    run.add_argument(
        "--prometheus-url",
        help="pull telemetry from this Prometheus server instead of telemetry/ files (default: "
        "$IMPACT_PROMETHEUS_URL); credentials only from the environment: IMPACT_PROMETHEUS_TOKEN, or "
        "IMPACT_PROMETHEUS_USER and IMPACT_PROMETHEUS_PASSWORD",
    )
    run.add_argument("--quiet", action="store_true", help="only the final summary")
    run.add_argument(
        "--engine",
        help="where the models run: duckdb (default; --warehouse is a file) or spark (--warehouse is a directory; a "
        "local Spark Connect server is started for it unless SPARK_REMOTE is set); default: $IMPACT_ENGINE",
    )
    run.add_argument(
        "--no-wait", action="store_true",
        help=f"when another run holds the warehouse, exit at once (code {commands.EXIT_BUSY}) instead of waiting",
    )
    commands.add_parsers(sub)  # retain, publish, migrate (lib/operations/commands.py)
    sub.add_parser("simulate", help="write a simulated cluster day (inputs + ground truth)", add_help=False)
    sub.add_parser("fit", help="fit e(tau_in, tau_out) and runtime models to profiling runs", add_help=False)
    sub.add_parser("predict", help="predicted duration and energy of a hypothetical request", add_help=False)
    sub.add_parser("report", help="a day's charts and checks as a self-contained HTML page and PNGs", add_help=False)
    sub.add_parser("advise", help="the day's routing, rightsizing, shifting and settings advice", add_help=False)
    sub.add_parser("sql", help="run one SQL statement on the warehouse (either engine)", add_help=False)
    return parser


def days_to_run(
    found: Sequence[dt.date], start: dt.date | None, end: dt.date | None
) -> list[dt.date]:
    """The days of the inputs within [start, end]; with both bounds, every day of the range (a day with no input
    still gets its partition, so re-running an emptied day clears it)."""
    if start and end:
        if end < start:
            raise CliError(f"--end {end} is before --start {start}")
        return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    return [d for d in found if (start is None or d >= start) and (end is None or d <= end)]


def _open_marts(warehouse: Path):
    """The warehouse the marts are in, read-only: the DuckDB file, or the Spark engine (IMPACT_ENGINE)."""
    from orchestration.lib import engines

    return engines.open_engine(os.environ.get(settings.ENGINE_ENV), warehouse, read_only=True)


def _days_in(column: str, days: Sequence[dt.date]) -> tuple[str, dict[str, dt.date]]:
    """`column in ($day0, ...)` and its parameters (SQL both engines read)."""
    params = {f"day{i}": d for i, d in enumerate(days)}
    return f"{column} in ({', '.join('$' + p for p in params)})" if params else "false", params


def _summary_rows(warehouse: Path, days: Sequence[dt.date]) -> list[tuple]:
    from orchestration.lib.warehouse import connect

    in_days, params = _days_in("d.day", days)
    con = _open_marts(warehouse)
    try:
        energy = con.execute(
            f"""
            select d.day, d.cluster, d.requests, d.metered_it_energy_j / 3.6e6, d.attributed_energy_j / 3.6e6,
                   d.unattributed_energy_j / 3.6e6, d.telemetry_coverage, d.counter_resets
            from marts.fct_cluster_energy_daily d
            where {in_days}
            order by d.day, d.cluster
            """,
            params,
        ).fetchall()
    finally:
        con.close()
    # raw.rejected_rows is ingestion's: in the DuckDB warehouse (or store) whatever the engine
    con = connect(warehouse, read_only=True)
    try:
        rejected = dict(
            con.execute("select partition_day, count(*) from raw.rejected_rows group by partition_day").fetchall()
        )
    finally:
        con.close()
    undated = rejected.pop(None, 0)  # rejections tied to no day (clusters.yml, a file with no readable timestamp)
    return [(*row, rejected.get(_as_date(row[0]), 0) + undated) for row in energy]


def _as_date(value) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value


IMPACT_HEADER = ("day", "cluster", "facility_kwh", "operational_kg", "embodied_kg", "training_kg", "total_kg",
                 "total_kg_range", "water_l", "median_g_per_request", "grid")


def _impact_rows(warehouse: Path, days: Sequence[dt.date]) -> list[tuple]:
    """Per day and cluster: facility energy, carbon by kind with the total's bounds, water, the median request's
    total carbon, and whether hourly grid factors covered every request."""
    from orchestration.lib.engines import dialect

    in_days, params = _days_in("day", days)
    con = _open_marts(warehouse)
    try:
        median = dialect(con, "median(total_g_co2e)", "percentile(total_g_co2e, 0.5)")
        rows = con.execute(
            f"""
            select day, cluster, sum(facility_energy_j) / 3.6e6, sum(operational_location_g_co2e) / 1e3,
                   sum(embodied_g_co2e) / 1e3, sum(training_g_co2e + fine_tuning_g_co2e) / 1e3,
                   sum(total_g_co2e) / 1e3, sum(total_g_co2e_low) / 1e3, sum(total_g_co2e_high) / 1e3,
                   sum(total_water_l), {median},
                   case when count(*) filter (where grid_resolution <> 'hourly') = 0 then 'hourly'
                        else count(*) filter (where grid_resolution <> 'hourly') || ' on annual' end
            from marts.fct_request_impact
            where {in_days}
            group by day, cluster order by day, cluster
            """,
            params,
        ).fetchall()
    finally:
        con.close()
    return [(*r[:7], f"{r[7]:,.3f}-{r[8]:,.3f}", *r[9:]) for r in rows]


IMAGE_HEADER = ("day", "cluster", "model", "requests", "images", "megapixel_steps", "wh_per_image",
                "gpu_dynamic_wh_per_image", "g_co2e_per_image", "fine_tuning_g", "unknown_adapters")


def _image_rows(warehouse: Path, days: Sequence[dt.date]) -> list[tuple]:
    """Per day, cluster and model of image requests (docs/images.md): images, megapixel-steps, facility Wh and
    the GPU's dynamic Wh per image, total g CO2e per image, LoRA fine-tuning carbon, and the requests naming an
    adapter without a factor row."""
    in_days, params = _days_in("day", days)
    con = _open_marts(warehouse)
    try:
        return con.execute(
            f"""
            select day, cluster, model, count(*), cast(sum(images) as bigint), sum(megapixel_steps),
                   sum(facility_energy_j) / sum(images) / 3600, sum(accelerator_dynamic_energy_j) / sum(images) / 3600,
                   sum(total_g_co2e) / sum(images), sum(fine_tuning_g_co2e), count(adapters_without_factor)
            from marts.fct_request_impact
            where modality = 'image' and {in_days}
            group by day, cluster, model order by day, cluster, model
            """,
            params,
        ).fetchall()
    finally:
        con.close()


def _rejection_reasons(warehouse: Path, days: Sequence[dt.date]) -> list[tuple]:
    """Rejected rows of these days (and undated ones) by input and kind of reason, with one example each."""
    from orchestration.lib.warehouse import connect

    con = connect(warehouse, read_only=True)
    try:
        return con.execute(
            """
            select input, regexp_replace(reason, ' ''[^'']*''| \\([^)]*\\)|: .*', '', 'g') as kind, count(*),
                   left(min(source_file || coalesce(':' || source_row, '') || '  ' || reason), 160)
            from raw.rejected_rows
            where partition_day is null or list_contains($days, partition_day)
            group by all order by count(*) desc, kind limit 20
            """,
            {"days": list(days)},
        ).fetchall()
    finally:
        con.close()


def _inputs_that_look_wrong(warehouse: Path, days: Sequence[dt.date]) -> list[str]:
    """Telemetry faults, requests naming nodes or GPUs without telemetry, durations in the wrong unit."""
    import duckdb

    from orchestration.lib.ingestion.fault_report import summary_lines

    con = _open_marts(warehouse)  # (on Spark, its raw layer and tables)
    try:
        return summary_lines(con, days)
    except duckdb.Error:  # a warehouse of an earlier version (the failure above says so)
        return []
    finally:
        con.close()


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain fixed-width table for the terminal."""

    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:,.3f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    # numbers right-aligned, text left-aligned
    lines += [
        "  ".join(c.rjust(w) if isinstance(v, (int, float)) else c.ljust(w) for c, w, v in zip(r, widths, row))
        for r, row in zip(cells, rows)
    ]
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    from orchestration.lib.ingestion.prometheus import URL_ENV

    kept = (URL_ENV, settings.ENGINE_ENV, settings.SPARK_WAREHOUSE_ENV)
    before = {name: os.environ.get(name) for name in kept}
    try:
        with _engine(args):
            return _cmd_run(args, _prometheus_url(args.prometheus_url))
    finally:  # the flags last for this command only (main() may be called in-process, e.g. by tests)
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _engine(args: argparse.Namespace):
    """The engine of the run (--engine, $IMPACT_ENGINE): for spark, --warehouse names the warehouse directory;
    ingestion's DuckDB store is in it, and a local Spark Connect server runs for it during the run (unless
    SPARK_REMOTE names one)."""
    from orchestration.lib import engines

    try:
        engine = engines.engine_name(getattr(args, "engine", None))
    except ValueError as exc:
        raise CliError(str(exc)) from None
    os.environ[settings.ENGINE_ENV] = engine
    if engine != "spark":
        yield
        return
    from orchestration.lib.engines.spark_server import REMOTE_ENV, LocalSparkServer, SparkServerError

    directory = Path(args.warehouse or settings.DEFAULT_SPARK_WAREHOUSE).expanduser().resolve()
    if directory.suffix == ".duckdb" or directory.is_file():
        raise CliError(f"--engine spark: --warehouse is a directory, not the file {directory}")
    os.environ[settings.SPARK_WAREHOUSE_ENV] = str(directory)
    args.warehouse = str(directory / SPARK_INGEST_STORE)
    if os.environ.get(REMOTE_ENV):
        yield
        return
    server = LocalSparkServer(directory)
    try:
        if not args.quiet:
            print(f"Starting a local Spark server for {directory} ...", flush=True)
        server.start()
    except SparkServerError as exc:
        raise CliError(str(exc)) from None
    try:
        yield
    finally:
        server.stop()


def _refuse_spark_warehouse(args: argparse.Namespace) -> None:
    """retain, publish and migrate are DuckDB-warehouse operations (docs/spark.md, 'What runs on Spark')."""
    warehouse = args.warehouse or os.environ.get(settings.WAREHOUSE_ENV)
    if os.environ.get(settings.ENGINE_ENV, "").strip().lower() == "spark" or (warehouse and Path(warehouse).is_dir()):
        raise CliError(
            f"impact {args.command} works on a DuckDB warehouse file; on the Spark engine the tables are in Spark's "
            "catalog: keep or drop their day partitions with your cluster's tools (docs/spark.md, 'What runs on "
            "Spark')"
        )


# ingestion's DuckDB store (raw layer validation, raw.rejected_rows) in a Spark warehouse directory
SPARK_INGEST_STORE = "ingest.duckdb"


def _cmd_run(args: argparse.Namespace, prometheus_url: str | None) -> int:
    if not args.data_dir:
        raise CliError(f"--data-dir is required (or set {settings.DATA_DIR_ENV})")
    data_dir = Path(args.data_dir).expanduser().resolve()
    if not (data_dir / "clusters.yml").is_file():
        raise CliError(f"{data_dir}: no clusters.yml (see CONTRACT section 1 for the input layout)")
    warehouse = commands.resolve_warehouse(args.warehouse)
    os.environ[settings.DATA_DIR_ENV] = str(data_dir)
    os.environ[settings.WAREHOUSE_ENV] = str(warehouse)

    from orchestration.lib.operations.launcher import PARENT_ENV
    from orchestration.lib.warehouse import (
        MEMORY_LIMIT_ENV,
        TempDirectoryError,
        check_temp_directory,
        memory_limit,
    )

    # dbt's profile reads the memory limit: set before the background parse, so that the builds' profile is the
    # parse's (a different rendering, e.g. 6GB against 6.0GB, makes dbt parse everything again)
    os.environ.setdefault(MEMORY_LIMIT_ENV, memory_limit())

    try:
        check_temp_directory(warehouse)
    except TempDirectoryError as exc:
        raise CliError(str(exc)) from None
    os.environ[PARENT_ENV] = str(os.getpid())
    with commands.stop_on_signals() as received, commands.run_lock(warehouse, args.no_wait):
        return _run_days(args, prometheus_url, data_dir, warehouse, received)


def _run_days(
    args: argparse.Namespace, prometheus_url: str | None, data_dir: Path, warehouse: Path, received: list[int]
) -> int:
    from orchestration.dbt_manifest import prepare_manifest, prune_target_folders, start_background_parse
    from orchestration.lib.ingestion.ingest import days_in_inputs
    from orchestration.lib.warehouse import connect

    terminal = sys.stdout  # the job's own output goes to the run log; progress lines come here
    say = (lambda *_: None) if args.quiet else (lambda msg: print(msg, file=terminal, flush=True))
    prepare_manifest()
    prune_target_folders()  # the dbt folders of warehouses since deleted
    # a new warehouse: dbt parses its target folder on the other core while the inputs are scanned
    start_background_parse(warehouse)
    if prometheus_url:
        say(f"Telemetry from Prometheus at {prometheus_url} (not from {data_dir / 'telemetry'})")
    say(f"Scanning {data_dir} for days ...")
    con = connect(":memory:")
    try:
        found = days_in_inputs(con, data_dir)
    finally:
        con.close()
    days = days_to_run(found, args.start, args.end)
    if not days:
        raise CliError(f"{data_dir}: no request or telemetry timestamps in the inputs (or none in the range)")
    # Partitions must start on or before the first day: widen the partition range for this process if needed.
    start_env = os.environ.get(settings.PARTITIONS_START_ENV, settings.DEFAULT_PARTITIONS_START)
    if days[0].isoformat() < start_env:
        os.environ[settings.PARTITIONS_START_ENV] = days[0].isoformat()

    import dagster as dg

    from orchestration.definitions import defs
    from orchestration.defs.automation.jobs import DAILY_JOB_NAME, MODELS_JOB_NAME

    logging.getLogger("dagster").setLevel(logging.WARNING)
    definitions = defs()
    job = definitions.resolve_job_def(DAILY_JOB_NAME)
    if os.environ.get("DAGSTER_HOME"):
        Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)  # run history kept there
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    failures: list[str] = []
    published: str | None = None
    say(f"Materialising {len(days)} day(s) into {warehouse}")
    log_path = warehouse.with_name(warehouse.name + ".run.log")
    say(f"(dbt and Dagster logs: {log_path})")
    for i, day in enumerate(days, start=1):
        began = time.monotonic()
        log_offset = log_path.stat().st_size if log_path.exists() else 0
        say(f"[{i}/{len(days)}] {day}  running ...")
        run_id = str(uuid.uuid4())
        instance.add_event_listener(run_id, StepProgress(say))  # slow steps and dbt models as they finish
        with log_path.open("a") as log, contextlib.redirect_stdout(log):
            result = job.execute_in_process(
                partition_key=day.isoformat(),
                instance=instance,
                raise_on_error=False,
                run_id=run_id,
                run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
            )
        status = "ok" if result.success else "FAILED"
        say(f"[{i}/{len(days)}] {day}  {status}  {time.monotonic() - began:.1f} s{_failed_checks(result)}")
        for line in check_advice(result):
            say(line)
        published = _publication(result) or published
        if not result.success:
            failures.append(f"{day}: {_failure_cause(result)}{_dbt_failure_detail(log_path, log_offset)}")
        if _was_interrupted(result, received):
            raise commands.Interrupted(received[-1] if received else None)

    report_page = None
    if not failures and MODELS_JOB_NAME in {job.name for job in definitions.resolve_all_job_defs()}:
        # then the unpartitioned assets: model fits, diagnostics and predictions over the trailing window
        began = time.monotonic()
        run_id = str(uuid.uuid4())
        instance.add_event_listener(run_id, StepProgress(say))
        with log_path.open("a") as log, contextlib.redirect_stdout(log):
            result = definitions.resolve_job_def(MODELS_JOB_NAME).execute_in_process(
                instance=instance,
                raise_on_error=False,
                run_id=run_id,
                run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
            )
        say(f"[models] energy and runtime models  {'ok' if result.success else 'FAILED'}  "
            f"{time.monotonic() - began:.1f} s{_failed_checks(result)}")
        for line in check_advice(result):
            say(line)
        report_page = written_report(result)
        published = _publication(result) or published
        if not result.success:
            failures.append(f"models: {_failure_cause(result)}")
        if _was_interrupted(result, received):
            raise commands.Interrupted(received[-1] if received else None)
    if not failures:
        failures += _run_advice(definitions, instance, days, data_dir, log_path, say)

    # (a first run that failed before the marts, e.g. an unreachable Prometheus, leaves no marts to summarise)
    rows = _summary_rows(warehouse, days) if _has_table(warehouse, "marts", "fct_cluster_energy_daily") else []
    header = ("day", "cluster", "requests", "metered_kwh", "attributed_kwh", "unattributed_kwh",
              "coverage", "counter_resets", "rejected_rows")
    print(format_table(header, rows))
    impact = _impact_rows(warehouse, days) if _has_table(warehouse, "marts", "fct_request_impact") else []
    if impact:
        print("\nImpact of the requests started each day (marts.fct_request_impact; bounds: all factor ranges at one end):")
        print(format_table(IMPACT_HEADER, impact))
    images = _image_rows(warehouse, days) if impact else []
    if images:
        print("\nImage requests (per image: facility Wh, the GPU's metered dynamic Wh, total g CO2e; fine-tuning: "
              "LoRA adapters):")
        print(format_table(IMAGE_HEADER, images))
    reasons = _rejection_reasons(warehouse, days) if _has_table(warehouse, "raw", "rejected_rows") else []
    if reasons:
        print("\nRejected rows (details in raw.rejected_rows):")
        print(format_table(("input", "reason", "rows", "example"), reasons))
    wrong = _inputs_that_look_wrong(warehouse, days) if _has_table(warehouse, "raw", "requests") else []
    if wrong:
        print("\nInputs that look wrong (flagged, see docs/telemetry-faults.md):\n  " + "\n  ".join(wrong))
    for warning in _factor_file_warnings(warehouse) if _has_table(warehouse, "factors", "load_state") else []:
        print(f"\nWarning: {warning}")
    if report_page and not args.quiet:
        print(f"\nCharts and checks of the latest day: {report_page}")
    from orchestration.lib.operations.publish import published_path

    if published:
        print(f"\nAnalysts' warehouse (open it read-only): {published}")
    if failures:
        print("\nFailed:\n  " + "\n  ".join(failures) + f"\n(full log: {log_path})", file=sys.stderr)
        if any(DISK_FULL.search(f) for f in failures):
            print("The disk is full: free space, or move the warehouse or DuckDB's temp directory "
                  "(IMPACT_DUCKDB_TEMP_DIRECTORY).", file=sys.stderr)
        target = published_path(warehouse)
        if target.exists():
            print(f"The analysts' warehouse {target} keeps the last successful publication"
                  + (" (this run's successful jobs are in it)." if published else "."), file=sys.stderr)
        else:
            print(f"Nothing was published for analysts ({target} does not exist yet).", file=sys.stderr)
        return 1
    return 0


def _factor_file_warnings(warehouse: Path) -> list[str]:
    """A warning per factor file none of whose rows loaded (malformed YAML, no models list or mapping, a
    required column missing, unreadable), from the factor loader's state (factors.load_state)."""
    import json

    from orchestration.lib.warehouse import connect, fetch_one

    con = connect(warehouse, read_only=True)
    try:
        state = fetch_one(con, "select summaries from factors.load_state")
    finally:
        con.close()
    summaries = json.loads(state[0]) if state else {}
    return [
        f"factor file {file} was rejected whole ({reason}): none of its rows are used, so factors.{table} holds "
        f"the shipped defaults and your other files only (raw.rejected_rows, input 'factors/{table}'; "
        "docs/impact-and-factors.md#your-own-factors)"
        for table, summary in summaries.items()
        for file, reason in (summary.get("files_rejected") or {}).items()
    ]
DISK_FULL = re.compile(r"No space left on device|disk is full|max_temp_directory_size", re.IGNORECASE)


def _publication(result) -> str | None:
    """'PATH (summary)' when the run published the warehouse for analysts, else None."""
    for event in result.all_events:
        if event.event_type_value != "ASSET_MATERIALIZATION":
            continue
        materialization = event.step_materialization_data.materialization
        if materialization.asset_key.path[0] == "operations" and "path" in materialization.metadata:
            md = materialization.metadata
            return (f"{md['path'].value} (version {md['version'].value}: {md['rows_copied'].value:,} rows "
                    f"copied, {md['parquet_files_shared'].value} Parquet files shared, "
                    f"{md['seconds'].value:.1f} s)")
    return None


def _was_interrupted(result, received: list[int]) -> bool:
    """Whether the Dagster run ended because of SIGINT or SIGTERM (Dagster turns both into an interrupt of the
    running step, which it reports as a failure)."""
    if received:
        return True
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data.error:
            err = event.step_failure_data.error
            while err is not None:
                if err.cls_name in ("DagsterExecutionInterruptedError", "KeyboardInterrupt"):
                    return True
                err = err.cause
    return False


def _run_advice(definitions, instance, days, data_dir: Path, log_path: Path, say) -> list[str]:
    """The advice job for each day, when the data dir has an advice.yml (docs/advice.md); its own job, so a
    mistake in advice.yml fails advice assets only: the day's energy and impact are complete either way."""
    from orchestration.defs.automation.jobs import ADVICE_JOB_NAME
    from orchestration.lib.advice.config import advice_path

    if os.environ.get(settings.ENGINE_ENV) == "spark" and advice_path(data_dir).is_file():
        say("[advice] not run on the Spark engine: advice reads the DuckDB warehouse (docs/spark.md)")
        return []
    if not advice_path(data_dir).is_file():
        say(f"[advice] no {advice_path(data_dir).name} in {data_dir}: no advice (docs/advice.md)")
        return []
    job = definitions.resolve_job_def(ADVICE_JOB_NAME)
    failures = []
    for day in days:
        began = time.monotonic()
        with log_path.open("a") as log, contextlib.redirect_stdout(log):
            result = job.execute_in_process(
                partition_key=day.isoformat(),
                instance=instance,
                raise_on_error=False,
                run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
            )
        say(f"[advice] {day}  {'ok' if result.success else 'FAILED'}  {time.monotonic() - began:.1f} s"
            f"{_failed_checks(result)}")
        for line in check_advice(result):
            say(line)
        if not result.success:
            # "step: dagster...Failure: advice.yml routing.zeta: ..." -> "step: advice.yml routing.zeta: ..."
            cause = re.sub(r"^([^:]+: )[\w.]+\.(Failure|\w+Error): ", r"\1", _failure_cause(result))
            failures.append(f"advice {day} (energy and impact are complete): {cause}")
    return failures


def _has_table(warehouse: Path, schema: str, table: str) -> bool:
    if os.environ.get(settings.ENGINE_ENV) == "spark" and schema not in ("raw", "factors"):
        con = _open_marts(warehouse)
        try:
            return con.has_table(f"{schema}.{table}")
        finally:
            con.close()
    if not warehouse.exists():
        return False
    from orchestration.lib.warehouse import connect, fetch_one

    con = connect(warehouse, read_only=True)
    try:
        (n,) = fetch_one(
            con,
            "select count(*) from information_schema.tables where table_schema = $s and table_name = $t",
            {"s": schema, "t": table},
        )
    finally:
        con.close()
    return n > 0


def _prometheus_url(flag: str | None) -> str | None:
    """Validate --prometheus-url (or $IMPACT_PROMETHEUS_URL) and hand it to the Dagster resource through the
    environment (the resource reads it as a dg.EnvVar when the definitions load, below); returns it without
    credentials for messages, or None (telemetry from files)."""
    from orchestration.lib.ingestion.prometheus import URL_ENV

    url = flag or os.environ.get(URL_ENV)
    if not url:
        return None
    from orchestration.lib.ingestion.prometheus import PrometheusError, check_url, safe_url

    try:
        os.environ[URL_ENV] = check_url(url)
    except PrometheusError as exc:
        raise CliError(str(exc)) from None
    return safe_url(url)


def _failed_checks(result) -> str:
    """'  checks not passed: ...' naming each asset check that did not pass (warnings included), or ''."""
    names = [
        f"{e.asset_check_evaluation_data.check_name} on {e.asset_check_evaluation_data.asset_key.to_user_string()}"
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed
    ]
    return f"  checks not passed: {', '.join(names)}" if names else ""


SCHEMA_CHANGE_HINT = (
    "the warehouse was built by an earlier version whose tables had other columns: delete the warehouse file and "
    "run again (docs/warehouse.md, 'Upgrading a warehouse')"
)


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
DBT_FAILURE = re.compile(r"(Failure|Error) in (model|test|unit_test) ")


def _dbt_failure_detail(log_path: Path, offset: int) -> str:
    """What dbt said went wrong, from this run's part of the log: the first failing model or test, and a hint when
    an incremental model's columns changed since the warehouse was built."""
    with log_path.open(errors="replace") as log:
        log.seek(offset)
        text = log.read()
    if "schemas on this incremental model are out of sync" in text:
        return f"\n    {SCHEMA_CHANGE_HINT}"
    plain = ANSI_ESCAPE.sub("", text)
    failing = [line.strip() for line in plain.splitlines() if DBT_FAILURE.search(line)]
    return "\n    dbt: " + failing[0] if failing else ""


def _failure_cause(result) -> str:
    """The first step failure's message, which names the asset and the cause."""
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data.error:
            err = event.step_failure_data.error
            # Dagster wraps the asset's exception ("Error occurred while executing op ..."): show the cause
            while err.cause is not None and (
                not err.message.strip() or err.cls_name == "DagsterExecutionStepExecutionError"
            ):
                err = err.cause
            cause = f"{event.step_key}: {err.message.strip().splitlines()[0]}"
            # a full disk often surfaces as another error raised while handling it (a failed rollback): name it
            full = next((m for m in _error_chain(event.step_failure_data.error) if DISK_FULL.search(m)), None)
            return cause if full is None or full in cause else f"{cause} (while handling: {full})"
    return "run failed (see the Dagster run log)"


def _error_chain(err) -> list[str]:
    """The first line of every error in a Dagster error's chain (its causes and the errors it was raised while
    handling)."""
    out, todo = [], [err]
    while todo:
        e = todo.pop()
        if e is None:
            continue
        if e.message.strip():
            out.append(e.message.strip().splitlines()[0])
        todo += [e.cause, getattr(e, "context", None)]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["simulate"] and "--images" in argv:
        from orchestration.lib.images import simulate as image_simulate

        return image_simulate.main([a for a in argv[1:] if a != "--images"])
    if argv[:1] == ["simulate"]:
        from orchestration.lib.simulation import simulate

        return simulate.main(argv[1:])
    if argv[:1] == ["fit"]:
        from orchestration.lib import energy_models

        return energy_models.fit_main(argv[1:])
    if argv[:1] == ["predict"]:
        from orchestration.lib import predictions

        return predictions.predict_main(argv[1:])
    if argv[:1] == ["sql"]:
        from orchestration.lib.engines import sql_cli

        return sql_cli.sql_main(argv[1:])
    if argv[:1] == ["report"]:
        from orchestration.lib import report

        return report.report_main(argv[1:])
    if argv[:1] == ["advise"]:
        from orchestration.lib.advice import report

        return report.advise_main(argv[1:])
    args = build_parser().parse_args(argv)
    from orchestration.lib.operations.lock import WarehouseBusy

    try:
        if args.command in commands.COMMANDS:
            _refuse_spark_warehouse(args)
        return {"run": cmd_run, **commands.COMMANDS}[args.command](args)
    except CliError as exc:
        print(f"impact: {exc}", file=sys.stderr)
        return 2
    except WarehouseBusy as exc:
        print(f"impact: {exc}; not waiting (--no-wait): try again once it has finished", file=sys.stderr)
        return commands.EXIT_BUSY
    except commands.Interrupted as exc:
        print(f"impact: stopped by {exc} (its dbt process too); the analysts' warehouse keeps its last "
              f"publication", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        print(f"impact: {exc}\nThe disk is full: free space, or move the warehouse or DuckDB's temp directory "
              f"(IMPACT_DUCKDB_TEMP_DIRECTORY). The analysts' warehouse keeps the last successful publication.",
              file=sys.stderr)
        return 1


def console_main() -> int:
    """The `impact` console script: main(), then the garbage collector is told to leave the objects of the run
    alone. The interpreter's shutdown otherwise walks them all (Dagster's definitions, dbt's manifest, the model
    frames): 1.8 s of a demo run's 21 s after the summary was printed, 0.3 s frozen. Exit handlers still run
    (temporary directories are removed). Not in main(): tests call it in-process many times."""
    import gc

    code = main()
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(console_main())
