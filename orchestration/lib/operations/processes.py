"""The child processes of a run (dbt, a background `dbt parse`): found and stopped when the run is interrupted.

dbt itself is started through the launcher (launcher.py), which makes the kernel stop it when its parent dies, so
even a `kill -9` of `impact run` leaves no dbt behind; stop_children() is the orderly path for SIGINT and SIGTERM.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def children(pid: int | None = None) -> list[int]:
    """The live direct children of `pid` (default: this process), from /proc (Linux; elsewhere none)."""
    pid = os.getpid() if pid is None else pid
    out = []
    for entry in Path("/proc").glob("[0-9]*/stat") if Path("/proc").is_dir() else []:
        try:
            stat = entry.read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != b"Z":
            out.append(int(entry.parent.name))
    return sorted(out)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2 :].split()[0] != b"Z"


def stop_children(grace_s: float = 10.0, exclude: set[int] | frozenset[int] = frozenset()) -> list[int]:
    """SIGTERM the children of this process (but those in `exclude`: started before, by someone else), then SIGKILL
    those still alive after `grace_s`. Returns their PIDs."""
    pids = [pid for pid in children() if pid not in exclude]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + grace_s
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for pid in pids:  # reap them (they are ours)
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    return pids
