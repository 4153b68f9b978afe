"""One run per warehouse at a time.

The lock is the file `<warehouse>.lock`, held with flock(2) by the process of the run for as long as it writes the
warehouse. The kernel releases a flock when the process that holds it ends, however it ends (`kill -9` included),
so no lock outlives its run. The file names its holder (PID, host, start time, command, Dagster run): another run
prints it while it waits, or exits at once with it. A lock file that names a holder but whose lock is free was left
by a run that was killed: it is stale, and taken over (the caller is told whose it was).

Within one process the lock is re-entrant: `impact run` holds it across its days and the models job, and each
Dagster run it executes in-process takes it again through the settings resource without blocking on itself.
flock locks are local: the warehouse must be on a local file system (not NFS) for two hosts to exclude each other.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

LOCK_SUFFIX = ".lock"
WAIT_ENV = "IMPACT_LOCK_WAIT_S"  # seconds a run waits for the lock: unset = as long as it takes, 0 = not at all


def lock_path(warehouse: Path) -> Path:
    return Path(str(warehouse) + LOCK_SUFFIX)


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a warehouse's lock."""

    pid: int
    host: str
    started_at: str  # UTC, ISO 8601
    command: str

    def describe(self) -> str:
        return f"PID {self.pid} on {self.host}, started {self.started_at}: {self.command}"

    @classmethod
    def read(cls, path: Path) -> Holder | None:
        """The holder a lock file names, or None (empty: released cleanly; unreadable: being written)."""
        try:
            data = json.loads(path.read_text() or "null")
            return cls(**data) if isinstance(data, dict) else None
        except (OSError, ValueError, TypeError):
            return None


class WarehouseBusy(Exception):
    """Another run holds the warehouse's lock (and this one would not wait, or waited too long)."""

    def __init__(self, warehouse: Path, holder: Holder | None, waited_s: float = 0.0):
        self.warehouse, self.holder, self.waited_s = warehouse, holder, waited_s
        who = holder.describe() if holder else "another process (it has not said which yet)"
        waited = f" (waited {waited_s:.0f} s)" if waited_s >= 1 else ""
        super().__init__(f"the warehouse {warehouse} is in use by {who}{waited}")


def wait_from_env() -> float | None:
    """IMPACT_LOCK_WAIT_S: seconds to wait for the lock (None: as long as it takes)."""
    raw = os.environ.get(WAIT_ENV, "").strip()
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"{WAIT_ENV} must be a number of seconds, not {raw!r}") from None
    if seconds < 0:
        raise ValueError(f"{WAIT_ENV} must not be negative, not {raw!r}")
    return seconds


_held: dict[Path, list[int]] = {}  # lock path -> [file descriptor, depth], for this process
_held_guard = threading.Lock()


def held_by_this_process(warehouse: Path) -> bool:
    with _held_guard:
        return lock_path(Path(warehouse).resolve()) in _held


def _command() -> str:
    return " ".join(Path(sys.argv[0]).name if i == 0 else a for i, a in enumerate(sys.argv)) or sys.executable


def acquire(
    warehouse: Path,
    *,
    wait_s: float | None = None,
    command: str | None = None,
    on_wait: Callable[[Holder | None], None] | None = None,
    on_stale: Callable[[Holder], None] | None = None,
    poll_s: float = 0.5,
) -> None:
    """Take the warehouse's lock for this process (re-entrant). When another process holds it: call `on_wait` with
    its holder (again whenever the holder changes) and wait, up to `wait_s` seconds (None: as long as it takes;
    0: not at all), then raise WarehouseBusy. A lock left by a killed run is taken over, after `on_stale`."""
    warehouse = Path(warehouse).resolve()
    path = lock_path(warehouse)
    with _held_guard:
        if path in _held:
            _held[path][1] += 1
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    began = time.monotonic()
    announced: object = ()
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = Holder.read(path)
                waited = time.monotonic() - began
                if wait_s is not None and waited >= wait_s:
                    raise WarehouseBusy(warehouse, holder, waited) from None
                if on_wait is not None and holder != announced:
                    on_wait(holder)
                    announced = holder
                time.sleep(poll_s if wait_s is None else max(0.0, min(poll_s, wait_s - waited)))
        stale = Holder.read(path)
        if stale is not None and on_stale is not None:
            on_stale(stale)
        me = Holder(
            pid=os.getpid(),
            host=socket.gethostname(),
            started_at=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
            command=command or _command(),
        )
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(asdict(me)).encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    with _held_guard:
        _held[path] = [fd, 1]


def release(warehouse: Path) -> None:
    """Release one level of this process's lock; the last one empties the file (a clean release) and unlocks."""
    path = lock_path(Path(warehouse).resolve())
    with _held_guard:
        entry = _held.get(path)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _held[path]
    fd = entry[0]
    try:
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def holding(warehouse: Path, **kwargs) -> Iterator[None]:
    """acquire() ... release()."""
    acquire(warehouse, **kwargs)
    try:
        yield
    finally:
        release(warehouse)
