"""The operations commands of `impact` (docs/operations.md), and how every command that writes the warehouse takes
its run lock and stops on signals:

    impact retain [--warehouse FILE] [--dry-run] [--raw-days N --request-days N --aggregate-days N|keep] [--as-of D]
    impact publish [--warehouse FILE]
    impact migrate [--warehouse FILE]

No Dagster here: these commands work on the warehouse directly (lib/operations), under the same lock as the runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from pathlib import Path

from orchestration import settings

EXIT_BUSY = 75  # EX_TEMPFAIL: another run holds the warehouse; try again later


def _cli_error(message: str) -> Exception:
    from orchestration.cli import CliError  # printed by `impact` without a traceback, exit 2

    return CliError(message)


def _format_table(header, rows) -> str:
    from orchestration.cli import format_table

    return format_table(header, rows)


def add_parsers(sub) -> None:
    """The subcommands' parsers, on `impact`'s subparsers."""
    from orchestration.cli import _parse_day  # YYYY-MM-DD, as `impact run --start` reads it

    retain = sub.add_parser("retain", help="delete the days each warehouse layer no longer keeps, then republish")
    retain.add_argument("--warehouse", default=os.environ.get(settings.WAREHOUSE_ENV), help="DuckDB warehouse file")
    retain.add_argument("--dry-run", action="store_true", help="say what would be deleted; delete nothing")
    retain.add_argument("--raw-days", type=parse_days, help="days of raw inputs kept (default $IMPACT_RETAIN_RAW_DAYS, 35)")
    retain.add_argument("--request-days", type=parse_days,
                        help="days of per-request and per-window rows kept (default $IMPACT_RETAIN_REQUEST_DAYS, 400)")
    retain.add_argument("--aggregate-days", type=parse_days,
                        help="days of daily aggregates kept, or keep (default $IMPACT_RETAIN_AGGREGATE_DAYS, keep)")
    retain.add_argument("--as-of", type=_parse_day, help="count the days back from this day (default: the newest day)")
    retain.add_argument("--no-wait", action="store_true", help=f"exit at once (code {EXIT_BUSY}) if a run holds it")

    migrate = sub.add_parser("migrate", help="convert a warehouse built by an earlier version to this storage")
    migrate.add_argument("--warehouse", default=os.environ.get(settings.WAREHOUSE_ENV), help="DuckDB warehouse file")
    migrate.add_argument("--no-wait", action="store_true", help=f"exit at once (code {EXIT_BUSY}) if a run holds it")

    publish = sub.add_parser("publish", help="publish the warehouse for analysts again (runs do it themselves)")
    publish.add_argument("--warehouse", default=os.environ.get(settings.WAREHOUSE_ENV), help="DuckDB warehouse file")
    publish.add_argument("--no-wait", action="store_true", help=f"exit at once (code {EXIT_BUSY}) if a run holds it")


def parse_days(text: str) -> int | str:
    """A number of days (at least 1), or 'keep'."""
    if text.strip().lower() == "keep":
        return "keep"
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days or 'keep': {text!r}") from None
    if days < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 day: {text!r}")
    return days


def resolve_warehouse(flag: str | None) -> Path:
    """--warehouse (or IMPACT_WAREHOUSE, or the default), absolute, with its folder created."""
    warehouse = Path(flag or settings.DEFAULT_WAREHOUSE).expanduser().resolve()
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    return warehouse


@contextlib.contextmanager
def run_lock(warehouse: Path, no_wait: bool):
    """This command's hold on the warehouse's run lock (lib/operations/lock.py): waits for another run, saying whose,
    or with --no-wait raises WarehouseBusy at once."""
    from orchestration.lib.operations import lock

    def waiting(holder: lock.Holder | None) -> None:
        who = holder.describe() if holder else "another process"
        print(f"impact: the warehouse {warehouse} is in use by {who}; waiting for it to finish (Ctrl-C stops "
              f"waiting; --no-wait exits at once)", file=sys.stderr, flush=True)

    def stale(holder: lock.Holder) -> None:
        print(f"impact: a run on this warehouse ended without releasing it ({holder.describe()}; killed?): "
              f"taking over", file=sys.stderr, flush=True)

    wait_s = 0.0 if no_wait else lock.wait_from_env()
    with lock.holding(warehouse, wait_s=wait_s, on_wait=waiting, on_stale=stale):
        yield


class Interrupted(Exception):
    """SIGINT or SIGTERM: the run stops (its dbt subprocess is stopped too). The signal is unknown when Dagster
    received it (during a run it turns both into an interrupt of the step)."""

    def __init__(self, signum: int | None):
        self.signum = signum
        super().__init__(signal.Signals(signum).name if signum else "SIGINT or SIGTERM")

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals():
    """SIGINT and SIGTERM stop the command (Interrupted), whatever it is doing; its child processes (dbt) are
    stopped on the way out. During a Dagster run, Dagster turns both into an interrupt of the step, which forwards
    it to dbt; the run then ends failed and the loop below stops."""
    import threading

    from orchestration.lib.operations import processes

    received: list[int] = []

    def handler(signum, _frame):
        received.append(signum)
        raise KeyboardInterrupt

    main_thread = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)} if main_thread else {}
    before = set(processes.children())
    try:
        yield received
    except KeyboardInterrupt:
        processes.stop_children(exclude=before)
        raise Interrupted(received[-1] if received else None) from None
    except BaseException:
        processes.stop_children(exclude=before)  # only what this command started
        raise
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


def cmd_retain(args: argparse.Namespace) -> int:
    """`impact retain`: apply the retention settings (flags over IMPACT_RETAIN_*_DAYS), print what was deleted, and
    republish the analysts' warehouse."""
    from orchestration.lib.operations import publish, retention
    from orchestration.lib.warehouse import connect

    warehouse = resolve_warehouse(args.warehouse)
    if not warehouse.exists():
        raise _cli_error(f"{warehouse}: no such warehouse")
    overrides = {
        layer: value for layer, value in
        (("raw", args.raw_days), ("requests", args.request_days), ("aggregates", args.aggregate_days))
        if value is not None
    }
    try:
        policy = retention.Policy.from_env()
        policy = retention.Policy(**{
            layer: (None if overrides.get(layer) == "keep" else overrides.get(layer, policy.days(layer)))
            for layer in retention.DEFAULT_DAYS
        })
    except ValueError as exc:
        raise _cli_error(str(exc)) from None
    with run_lock(warehouse, args.no_wait):
        with connect(warehouse, read_only=args.dry_run) as con:
            report = retention.apply(con, warehouse, policy, as_of=args.as_of, dry_run=args.dry_run)
        publication = None if args.dry_run else publish.publish(warehouse)
    keeps = ", ".join(f"{layer} {policy.days(layer) or 'kept'}" + (" days" if policy.days(layer) else "")
                      for layer in retention.DEFAULT_DAYS)
    print(f"Retention ({keeps}), counted back from {report.as_of or 'no day (empty warehouse)'}:")
    verb = "would delete" if args.dry_run else "deleted"
    rows = [(d.table, d.layer, str(d.cutoff), len(d.days), d.rows) for d in report.deletions]
    print(_format_table(("table", "layer", "days before", "days", f"rows {verb}"), rows) if rows
          else "  nothing to delete")
    if report.prometheus_files:
        print(f"Prometheus pulls {verb}: {len(report.prometheus_files)}")
    for table in report.not_covered:
        print(f"(kept whole: {table} has a day column but no retention layer)")
    if publication:
        print(f"Analysts' warehouse republished: {publication.summary()}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """`impact migrate`: convert the per-request and per-window tables of a warehouse built by an earlier version
    to Parquet day files (lib/operations/migrate.py), then publish it for analysts."""
    from orchestration.dbt_manifest import claim_target_path, dbt_executable, prepare_manifest
    from orchestration.lib.operations import migrate, publish
    from orchestration.lib.warehouse import MEMORY_LIMIT_ENV, memory_limit

    warehouse = resolve_warehouse(args.warehouse)
    if not warehouse.exists():
        raise _cli_error(f"{warehouse}: no such warehouse")
    prepare_manifest()
    project = str(settings.DBT_PROJECT_DIR)
    command = [dbt_executable(), "run", "--select", "int_request_days", "fct_window_energy", "--project-dir",
               project, "--profiles-dir", project, "--target-path", str(claim_target_path(warehouse))]
    env = {settings.WAREHOUSE_ENV: str(warehouse), MEMORY_LIMIT_ENV: memory_limit()}
    with run_lock(warehouse, args.no_wait):
        report = migrate.migrate(warehouse, command, env)
        if not report.converted:
            print(f"{warehouse}: already in this version's storage; nothing to convert")
            return 0
        publication = publish.publish(warehouse)
    for relation, rows in report.converted.items():
        print(f"{relation}: {rows:,} rows of {len(report.days)} day(s) converted to Parquet day files")
    print(f"{report.rebuilt_day} rebuilt by dbt (creates the views); warehouse and day files: "
          f"{report.bytes_before / 1e6:,.1f} MB before, {report.bytes_after / 1e6:,.1f} MB after (the file shrinks "
          f"only when rewritten: space freed inside it is reused by later days)")
    print(f"Analysts' warehouse: {publication.summary()}")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    """`impact publish`: publish the warehouse for analysts now (each successful run does it by itself)."""
    from orchestration.lib.operations import publish

    warehouse = resolve_warehouse(args.warehouse)
    if not warehouse.exists():
        raise _cli_error(f"{warehouse}: no such warehouse")
    with run_lock(warehouse, args.no_wait):
        report = publish.publish(warehouse)
    print(f"Published: {report.summary()}")
    for name, why in report.left_out.items():
        print(f"  left out {name}: {why}")
    return 0


COMMANDS = {"retain": cmd_retain, "publish": cmd_publish, "migrate": cmd_migrate}
