"""Operating settings: per model and hardware, the measured setting (GPU clock, power limit, tensor parallelism,
batch size) with the least energy per output token among those that meet the latency SLO.

Input: profiling runs (CONTRACT section 1, ``<data dir>/profiling/**/*.csv``) that carry one or more settings
columns besides the profiling columns; each row is one request as measured at that setting (its energy, its
latency, its tokens). Per model x hardware x setting: runs, energy per output token = sum of energy / sum of
output tokens, latency per output token = the SLO quantile of runtime / output tokens over the runs. A setting
is recommended only if it was measured (at least ``min_runs`` runs) and meets the SLO: nothing is claimed for a
setting that was not profiled, and nothing is interpolated between settings. Without an SLO the table still
lists what was measured, with the lowest energy per token marked and ``meets_slo`` empty.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from orchestration.lib.advice.config import SettingsConfig

SETTINGS_COLUMNS: tuple[str, ...] = ("gpu_clock_mhz", "power_limit_w", "tensor_parallel", "batch_size")
TABLE_COLUMNS: dict[str, str] = {
    "model": "varchar", "hardware": "varchar", **{c: "double" for c in SETTINGS_COLUMNS}, "runs": "bigint",
    "energy_per_output_token_j": "double", "latency_s_per_output_token": "double", "slo_s_per_output_token": "double",
    "slo_quantile": "double", "meets_slo": "boolean", "recommended": "boolean",
    "energy_vs_recommended": "double", "source_files": "varchar",
}  # fmt: skip


def read_settings_runs(data_dir: Path) -> tuple[pd.DataFrame, int]:
    """The valid profiling runs that carry a settings column, with their settings (NaN where a file lacks one),
    and the number of rows left out because a settings value is not a number (the base columns are validated,
    and their rejects recorded, by the models job)."""
    from orchestration.lib.energy_models import read_profiling_csv

    folder = Path(data_dir) / "profiling"
    files = sorted(folder.rglob("*.csv")) if folder.is_dir() else []
    parts, bad = [], 0
    for path in files:  # a loop over files
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
        raw.columns = [c.strip() for c in raw.columns]
        present = [c for c in SETTINGS_COLUMNS if c in raw.columns]
        if not present:
            continue
        try:
            good, rejects = read_profiling_csv(path)
        except (OSError, ValueError):
            continue  # the models job reports the file (raw.rejected_rows)
        keep = np.setdiff1d(np.arange(len(raw)), rejects["source_row"].to_numpy(int) - 1)
        values = raw.iloc[keep][present].apply(lambda s: pd.to_numeric(s.str.strip().replace("", np.nan),
                                                                      errors="coerce"))  # fmt: skip
        invalid = (raw.iloc[keep][present].apply(lambda s: s.str.strip() != "") & values.isna()).any(axis=1)
        bad += int(invalid.sum())
        part = pd.concat([good.reset_index(drop=True), values.reset_index(drop=True)], axis=1)
        part = part.loc[~invalid.to_numpy()]
        part["source_file"] = path.name
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=["model", "hardware", "input_tokens", "output_tokens", "energy_j", "runtime_s",
                                     *SETTINGS_COLUMNS, "source_file"]), bad  # fmt: skip
    return pd.concat(parts, ignore_index=True).reindex(
        columns=["model", "hardware", "input_tokens", "output_tokens", "energy_j", "runtime_s", *SETTINGS_COLUMNS,
                 "source_file"]), bad  # fmt: skip


def settings_table(runs: pd.DataFrame, cfg: SettingsConfig) -> pd.DataFrame:
    """advice.settings from the runs (module docstring)."""
    runs = runs[runs["output_tokens"] > 0]
    if runs.empty:
        return pd.DataFrame(columns=list(TABLE_COLUMNS))
    keys = ["model", "hardware", *SETTINGS_COLUMNS]
    runs = runs.assign(latency=runs["runtime_s"] / runs["output_tokens"])
    g = runs.groupby(keys, dropna=False, sort=True)
    table = g.agg(
        runs=("energy_j", "size"),
        energy_j=("energy_j", "sum"),
        tokens=("output_tokens", "sum"),
        latency_s_per_output_token=("latency", lambda s: float(s.quantile(cfg.slo_quantile))),
        source_files=("source_file", lambda s: ", ".join(sorted(set(s)))),
    ).reset_index()
    table["energy_per_output_token_j"] = table["energy_j"] / table["tokens"]
    slo = cfg.slo_s_per_output_token
    table["slo_s_per_output_token"] = slo
    table["slo_quantile"] = cfg.slo_quantile
    enough = table["runs"] >= cfg.min_runs
    table["meets_slo"] = (table["latency_s_per_output_token"] <= slo) if slo is not None else None
    ok = enough & (table["meets_slo"].fillna(True).astype(bool) if slo is not None else True)
    ranked = table["energy_per_output_token_j"].where(ok)
    best = ranked.groupby([table["model"], table["hardware"]]).transform("min")
    table["recommended"] = ok & (ranked == best)
    best_energy = table["energy_per_output_token_j"].where(table["recommended"]).groupby(
        [table["model"], table["hardware"]]).transform("min")  # fmt: skip
    table["energy_vs_recommended"] = table["energy_per_output_token_j"] / best_energy
    return table.reindex(columns=list(TABLE_COLUMNS))
