"""The child processes of a run (dbt, a background `dbt parse`): found and stopped when the run is interrupted.

dbt itself is started through the launcher (launcher.py), which makes the kernel stop it when its parent dies, so
even a `kill -9` of `impact run` leaves no dbt behind; stop_children() is the orderly path for SIGINT and SIGTERM.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def _parents() -> dict[int, list[int]]:
    """parent PID -> the PIDs of its live children, from /proc (Linux; elsewhere none)."""
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat") if Path("/proc").is_dir() else []:
        try:
            stat = entry.read_bytes()
        except OSError:
            continue
        state, ppid = stat[stat.rindex(b")") + 2 :].split()[:2]
        if state != b"Z":
            kids.setdefault(int(ppid), []).append(int(entry.parent.name))
    return kids


def children(pid: int | None = None) -> list[int]:
    """The live direct children of `pid` (default: this process)."""
    return sorted(_parents().get(os.getpid() if pid is None else pid, []))


def descendants(pid: int) -> list[int]:
    """The live children of `pid`, theirs, and so on."""
    kids, out, todo = _parents(), [], [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


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
