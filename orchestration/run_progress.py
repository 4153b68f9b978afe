"""What `impact run` shows while a job runs, and what it says about the checks that did not pass.

A run of the daily job on a large day takes a minute (ingestion, then ~30 dbt models): instead of one line at the
end, the steps and dbt models that take a while are printed as they finish, from the run's own event stream
(``DagsterInstance.add_event_listener``, called synchronously as each event is stored). Quick steps are not printed,
so the demo's output stays short.

Each asset check that does not pass explains itself in one line (the check's ``AssetCheckResult.description``,
written by the checks in ``defs/*/checks.py``); ``check_advice`` prints those lines under the run's status line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

SLOW_STEP_S = 1.0  # a step or dbt model that ran at least this long is printed as it finishes
DBT_STEP = "impact_dbt_models"
NO_ADVICE = "no explanation recorded: see the check's metadata in the UI (make ui) or in the run log"


class StepProgress:
    """An event listener that prints each slow step and each slow dbt model when it finishes.

    ``say`` prints a line (it must write to the user's terminal, not to the redirected run log)."""

    def __init__(self, say: Callable[[str], None], slow_s: float = SLOW_STEP_S, indent: str = "      "):
        self.say = say
        self.slow_s = slow_s
        self.indent = indent
        self._started: dict[str, float] = {}

    def __call__(self, entry: Any) -> None:
        event = getattr(entry, "dagster_event", None)
        if event is None:
            return
        kind = event.event_type_value
        step = event.step_key or ""
        if kind == "STEP_START":
            self._started[step] = time.monotonic()
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE"):
            began = self._started.pop(step, None)
            if began is not None and time.monotonic() - began >= self.slow_s:
                status = "" if kind == "STEP_SUCCESS" else "  FAILED"
                self.say(f"{self.indent}{_step_label(step)}  {time.monotonic() - began:.1f} s{status}")
        elif kind == "ASSET_MATERIALIZATION" and step == DBT_STEP:
            materialization = event.event_specific_data.materialization
            duration = materialization.metadata.get("Execution Duration")
            seconds = getattr(duration, "value", duration)
            if isinstance(seconds, (int, float)) and seconds >= self.slow_s:
                self.say(f"{self.indent}  dbt {materialization.asset_key.to_user_string()}  {seconds:.1f} s")


def _step_label(step_key: str) -> str:
    """A step's name as the user knows it: 'dbt models' for the dbt step, asset-like names for the rest."""
    if step_key == DBT_STEP:
        return "dbt models (and their tests)"
    return step_key.replace("__", "/")


def check_advice(result: Any) -> list[str]:
    """One line per asset check of the run that did not pass: its name, severity and what it means and what to do
    (the check's description), e.g. '  fit_quality (warning): the paper's form fits ...'."""
    lines = []
    for event in result.all_events:
        if event.event_type_value != "ASSET_CHECK_EVALUATION":
            continue
        evaluation = event.asset_check_evaluation_data
        if evaluation.passed:
            continue
        severity = "warning" if evaluation.severity.value == "WARN" else "error"
        lines.append(f"  {evaluation.check_name} ({severity}): {evaluation.description or NO_ADVICE}")
    return lines


def written_report(result: Any) -> str | None:
    """The HTML page the run's reports/daily_report materialisation wrote (its `html` metadata), or None."""
    for event in result.all_events:
        if event.event_type_value != "ASSET_MATERIALIZATION":
            continue
        materialization = event.event_specific_data.materialization
        if materialization.asset_key.path == ["reports", "daily_report"] and "html" in materialization.metadata:
            return str(materialization.metadata["html"].value)
    return None
