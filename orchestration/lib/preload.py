"""Load the model-fitting libraries in a background thread while the process has nothing else to do.

scipy, statsmodels and matplotlib take 1.5-2 s to import on the 2-core machine, and only the models job needs
them (lib/energy_models.py and lib/model_plots.py import them inside the functions that use them, so the
definitions load without them). `impact run` runs the models job after the daily job in the same process, and
the daily job's dbt step spends seconds waiting on the dbt subprocess, which starts up on one core: the dbt
asset calls ``start()`` there, so the libraries are loaded by the time the models job runs. Importing in a
thread is safe (Python's per-module import locks make a concurrent import of the same module wait for it); a
failed import is left for the models job to raise where it has context.
"""

from __future__ import annotations

import importlib
import threading

MODULES: tuple[str, ...] = (
    "scipy.stats",
    "statsmodels.api",
    "statsmodels.formula.api",
    "statsmodels.stats.anova",
    "statsmodels.stats.diagnostic",
    "matplotlib.figure",
    "matplotlib.backends.backend_agg",
)

_lock = threading.Lock()
_thread: threading.Thread | None = None


def _load(modules: tuple[str, ...]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001, S112 - the step that needs it imports it again and reports the error
            continue


def start(modules: tuple[str, ...] = MODULES) -> threading.Thread:
    """Start loading ``modules`` in a daemon thread, once per process; returns the thread (already started)."""
    global _thread
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=_load, args=(modules,), name="impact-preload", daemon=True)
            _thread.start()
        return _thread
