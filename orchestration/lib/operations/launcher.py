"""`impact-dbt`: dbt, started so that it dies with the process that started it.

dagster-dbt runs dbt as a subprocess of the Dagster run (`impact run`, or the run worker of the UI). If that process
is killed with SIGKILL, nothing forwards the signal and dbt would run on, holding the warehouse. This launcher asks
the Linux kernel to send it SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG), then replaces itself with the
venv's dbt (the setting survives exec). Elsewhere it simply runs dbt.

The kernel sends the signal when the *thread* that started the child exits: the project starts dbt from the run's
main thread (in-process executor). Kept to the standard library: it runs before every dbt command.
"""

from __future__ import annotations

import os
import signal
import sys

PARENT_ENV = "IMPACT_DBT_PARENT_PID"  # the PID that started us, when the caller knows it (a race check)
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        return  # not permitted here: dbt runs unprotected, as without the launcher
    expected = os.environ.get(PARENT_ENV)
    if expected and os.getppid() != int(expected):
        os._exit(128 + signal.SIGTERM)  # the parent died before the request took effect


def dbt_path() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "dbt")
    return beside if os.path.exists(beside) else "dbt"


def main() -> None:
    if sys.platform.startswith("linux"):
        _die_with_parent()
    dbt = dbt_path()
    os.execvp(dbt, [dbt, *sys.argv[1:]])


if __name__ == "__main__":
    main()
