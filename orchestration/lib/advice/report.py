"""`impact advise [--day D] [--zeta Z] [--warehouse FILE]`: the day's savings (routing, rightsizing, shifting,
settings) from the advice tables, with what each figure assumed. Reads the warehouse only (read-only)."""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import duckdb

from orchestration import settings as app_settings
from orchestration.cli import CliError as AdviseError
from orchestration.cli import _parse_day, format_table
from orchestration.lib.advice import notes
from orchestration.lib.warehouse import connect, has_table


def _zeta(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"zeta must be between 0 and 1, not {value:g}")
    return value


WIDTH = 116  # the assumptions are wrapped to this many characters


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="impact advise",
        description="The day's advice: energy-optimal routing, rightsizing, carbon-aware shifting and operating "
        "settings, with the assumptions behind each (docs/advice.md). Reads the advice tables that `impact run` "
        "(or the impact_advice job) wrote from advice.yml.",
    )
    p.add_argument("--day", type=_parse_day, help="the UTC day (default: the latest day advised)")
    p.add_argument("--zeta", type=_zeta, help="the routing trade-off to show, one of the day's frontier "
                   "(default: the plan's zeta from advice.yml)")  # fmt: skip
    p.add_argument("--warehouse", help=f"DuckDB warehouse (default: ${app_settings.WAREHOUSE_ENV} or "
                   f"{app_settings.DEFAULT_WAREHOUSE})")  # fmt: skip
    return p


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: dict) -> list[dict]:
    rel = con.execute(sql, params)
    names = [d[0] for d in rel.description]
    return [dict(zip(names, r)) for r in rel.fetchall()]


def _num(v) -> float | str:
    """A number for format_table (right-aligned, 3 decimals), or '-' when there is none."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return float(v)


def _status(con, day: dt.date | None, part: str) -> dict | None:
    rows = _rows(con, "select * from advice.status where part = $part and day is not distinct from $day",
                 {"part": part, "day": day})  # fmt: skip
    return rows[0] if rows else None


def _advised(con, day: dt.date, part: str, title: str) -> tuple[dict | None, list[str]]:
    """The part's status when it was advised for the day, else None and the line that says why not."""
    status = _status(con, day, part)
    if status is None or status["status"] != "ok":
        return None, [f"{title}: {status['detail'] if status else 'not advised for this day'}"]
    return status, []


def _assumptions(status: dict | None) -> list[str]:
    text = (status or {}).get("assumptions") or ""
    return [wrapped for line in text.splitlines()
            for wrapped in textwrap.wrap(line, WIDTH, initial_indent="    - ", subsequent_indent="      ")]  # fmt: skip


def _routing(con, day: dt.date, zeta: float | None, table) -> tuple[list[str], list[tuple]]:
    status, why_not = _advised(con, day, "routing", "Routing")
    if status is None:
        return why_not, []
    rows = _rows(con, "select * from advice.routing_frontier where day = $day order by zeta", {"day": day})
    if not rows:
        return ["Routing: no re-routable requests that day"], []
    available = [r["zeta"] for r in rows]
    if zeta is None:
        chosen = next((r for r in rows if r["is_plan"]), rows[-1])
    else:
        chosen = next((r for r in rows if math.isclose(r["zeta"], zeta, abs_tol=1e-9)), None)
        if chosen is None:
            raise AdviseError(f"zeta {zeta:g} is not on the frontier of {day} ({', '.join(f'{z:g}' for z in available)}):"
                              " add it to routing.zeta_sweep in advice.yml and run the advice again")  # fmt: skip
    header = ("requests", "as ran kWh (measured)", "as ran kWh (modelled)", "plan kWh", "saving kWh",
              "plan kg CO2e", "saving kg CO2e", "accuracy (as ran)")  # fmt: skip
    r = chosen
    accuracy = f"{r['accuracy']:.4f}" + (f" ({r['actual_accuracy']:.4f})" if r["actual_accuracy"] is not None else "")
    body = [(r["requests"], _num(r["actual_measured_kwh"]), _num(r["actual_modelled_kwh"]), _num(r["energy_kwh"]),
             _num(r["saving_kwh"]), _num(r["operational_kg_co2e"]), _num(r["saving_kg_co2e"]), accuracy)]  # fmt: skip
    shares = ", ".join(f"{k} {v:.1%}" for k, v in sorted(r["shares"].items(), key=lambda kv: -kv[1]))
    lines = [
        (f"Routing at zeta {r['zeta']:g}{' (the plan)' if r['is_plan'] else ''} (advice.routing_frontier; --zeta "
        f"shows another of {', '.join(f'{z:g}' for z in available)}):"),
        table(header, body),
        f"  shares: {shares}",
        "  assumptions:",
        *_assumptions(status),
    ]
    saving = [("routing", "re-routable requests", _num(r["saving_kwh"]), _num(r["saving_kg_co2e"]), "-")]
    return lines, saving


def _rightsizing(con, day: dt.date, table) -> tuple[list[str], list[tuple]]:
    status, why_not = _advised(con, day, "rightsizing", "Rightsizing")
    if status is None:
        return why_not, []
    rows = _rows(con, "select * from advice.rightsizing_daily where day = $day order by cluster", {"day": day})
    header = ("cluster", "GPU-h present", "GPU-h needed", "capacity/GPU", "metered kWh", "avoidable kWh",
              "share", "operational kg", "embodied kg")  # fmt: skip
    body = [(r["cluster"], _num(r["gpu_hours_provisioned"]), _num(r["gpu_hours_needed"]),
             _num(r["capacity_per_gpu"]), _num(r["metered_it_energy_kwh"]), _num(r["avoidable_energy_kwh"]),
             "-" if r["avoidable_share_of_metered"] is None else f"{r['avoidable_share_of_metered']:.1%}",
             _num(r["avoidable_operational_kg_co2e"]), _num(r["avoidable_embodied_kg_co2e"])) for r in rows]  # fmt: skip
    lines = ["Rightsizing (advice.rightsizing_daily; per hour in advice.rightsizing_hourly):", table(header, body),
             "  assumptions:", *_assumptions(status)]  # fmt: skip
    saving = [("rightsizing", r["cluster"], _num(r["avoidable_energy_kwh"]), _num(r["avoidable_operational_kg_co2e"]),
               _num(r["avoidable_embodied_kg_co2e"])) for r in rows]  # fmt: skip
    return lines, saving


def _shifting(con, day: dt.date, table) -> tuple[list[str], list[tuple]]:
    status, why_not = _advised(con, day, "shifting", "Shifting")
    if status is None:
        return why_not, []
    rows = _rows(con, "select * from advice.shifting_daily where day = $day order by cluster", {"day": day})
    if not rows:
        return ["Shifting: no deferrable requests that day", "  assumptions:", *_assumptions(status)], []
    header = ("cluster", "deferrable requests", "moved", "facility kWh", "actual kg CO2e", "shifted kg CO2e",
              "saving kg CO2e")  # fmt: skip
    body = [(r["cluster"], r["requests"], r["requests_moved"], _num(r["facility_energy_kwh"]),
             _num(r["actual_kg_co2e"]), _num(r["shifted_kg_co2e"]), _num(r["saving_kg_co2e"])) for r in rows]  # fmt: skip
    lines = ["Shifting (advice.shifting_daily):", table(header, body), "  assumptions:", *_assumptions(status)]
    saving = [("shifting", r["cluster"], "-", _num(r["saving_kg_co2e"]), "-") for r in rows]
    return lines, saving


def _settings(con, table) -> list[str]:
    status = _status(con, None, "settings")
    if status is None:
        return ["Settings: not advised yet"]
    if not has_table(con, "advice.settings") or status["status"] == "failed":
        return [f"Settings: {status['detail']}"]
    rows = _rows(con, "select * from advice.settings order by model, hardware, energy_per_output_token_j", {})
    if not rows:
        return [f"Settings: {status['detail']}"]
    header = ("model", "hardware", "setting", "runs", "J/output token", "s/output token", "meets SLO", "recommended")
    body = []
    for r in rows:  # one line per measured setting
        setting = ", ".join(f"{k} {r[k]:g}" for k in ("gpu_clock_mhz", "power_limit_w", "tensor_parallel",
                                                      "batch_size") if r[k] is not None and not math.isnan(r[k]))  # fmt: skip
        body.append((r["model"], r["hardware"], setting, r["runs"], _num(r["energy_per_output_token_j"]),
                     _num(r["latency_s_per_output_token"]), "-" if r["meets_slo"] is None else
                     ("yes" if r["meets_slo"] else "no"), "yes" if r["recommended"] else ""))  # fmt: skip
    return ["Settings (advice.settings, from profiling runs):", table(header, body), "  assumptions:",
            *_assumptions(status)]  # fmt: skip


def report(con: duckdb.DuckDBPyConnection, day: dt.date | None, zeta: float | None, warehouse: Path) -> str:
    """The text `impact advise` prints."""
    if not has_table(con, "advice.status"):
        raise AdviseError(f"{warehouse}: no advice yet. `impact run` advises when the data dir has an advice.yml "
                          "(docs/advice.md); without one there is no advice")  # fmt: skip
    days = [r[0] for r in con.execute("select distinct day from advice.status where day is not null order by day")
            .fetchall()]  # fmt: skip
    if day is None:
        if not days:
            raise AdviseError(f"{warehouse}: no day advised yet")
        day = days[-1]
    elif day not in days:
        raise AdviseError(f"{day} was not advised (advised: {', '.join(map(str, days)) or 'none'})")
    out = [f"Advice for {day} ({warehouse})", f"  {notes.NOT_PROMISED}; docs/advice.md", ""]
    savings: list[tuple] = []
    for part in (_routing(con, day, zeta, format_table), _rightsizing(con, day, format_table),
                 _shifting(con, day, format_table)):  # fmt: skip
        lines, rows = part
        out += [*lines, ""]
        savings += rows
    out += [*_settings(con, format_table), ""]
    if savings:
        out += ["Savings of the day (each part alone; they overlap and do not add up to one plan):",
                format_table(("part", "scope", "energy kWh", "operational kg CO2e", "embodied kg CO2e"), savings)]  # fmt: skip
    else:
        out.append("No savings: no part of the advice is configured or applies to this day.")
    return "\n".join(out)


def advise_main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    path = Path(args.warehouse or os.environ.get(app_settings.WAREHOUSE_ENV) or app_settings.DEFAULT_WAREHOUSE)
    path = path.expanduser().resolve()
    if not path.is_file():
        print(f"impact advise: no warehouse at {path} (run `impact run` first, or give --warehouse)", file=sys.stderr)
        return 2
    con = connect(path, read_only=True)
    try:
        print(report(con, args.day, args.zeta, path))
    except AdviseError as exc:
        print(f"impact advise: {exc}", file=sys.stderr)
        return 2
    finally:
        con.close()
    return 0
