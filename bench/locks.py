"""Run locks on shared storage, so that several runners never train the same cell twice.

A run is claimed by creating ``<results>/<grid>/.locks/<run_id>.lock`` with
``os.open(O_CREAT | O_EXCL)``, which succeeds for exactly one process even on NFS v3+. The file
holds JSON::

    {"host": ..., "pid": ..., "pid_start": ..., "runner": ..., "nonce": ...,
     "run_id": ..., "started": <unix time>, "heartbeat": <unix time>, "epoch": ...}

A background thread of the process running the run rewrites it every ``heartbeat_seconds``
(atomically, :mod:`bench.atomic`). A lock is *live* while its heartbeat is younger than the
stale timeout and, when it was taken on this host, its process still exists (the process's
start time guards against a recycled pid). A runner that finds a lock that is not live breaks it
and takes the run over; breaking goes through a second ``O_EXCL`` file so that two runners
cannot both break the same lock and then both claim the run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.atomic import atomic_write_json

HOST = socket.gethostname()
# a lock file still empty this long after creation belongs to a process that died creating it
_EMPTY_GRACE_SECONDS = 60.0
# progress (the epoch) is written at most this often, so that tiny epochs do not flood the disk
PROGRESS_SECONDS = 1.0


def new_token() -> str:
    return uuid.uuid4().hex[:12]


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux ``/proc``), or None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may contain spaces; the fields after it are fixed
    return stat.rsplit(")", 1)[1].split()[19]


def pid_alive(pid: int, start: str | None = None) -> bool:
    """Whether process ``pid`` of this host still runs (zombies and recycled pids do not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust os.kill
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return False
    return start is None or fields[19] == start


def descendants(pid: int) -> list[int]:
    """The pids of every living descendant of ``pid`` on this host (Linux ``/proc``; an empty
    list where there is none), children before grandchildren."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] not in ("Z", "X"):
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        children = parents.get(queue.pop(0), [])
        found += children
        queue += children
    return found


def end_processes(pids: list[int], *, timeout: float = 5.0) -> None:
    """SIGTERM ``pids``, then SIGKILL those still running after ``timeout`` seconds."""
    starts = {pid: process_start_time(pid) for pid in pids}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = [p for p in pids if pid_alive(p, starts[p])]
            if not pids:
                return
            time.sleep(0.05)


def owner_info(*, runner: str, run_id: str, nonce: str | None = None, **extra: Any) -> dict:
    now = time.time()
    pid = os.getpid()
    return {"host": HOST, "pid": pid, "pid_start": process_start_time(pid), "runner": runner,
            "nonce": nonce or new_token(), "run_id": run_id, "started": now, "heartbeat": now,
            "epoch": None, **extra}


def read_lock(path: Path) -> dict | None:
    """The lock's content; None when it is missing, empty or unreadable."""
    try:
        text = path.read_text()
        info = json.loads(text)
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def holder_alive(info: dict | None, path: Path, *, stale_seconds: float,
                 now: float | None = None) -> bool:
    """Whether the lock at ``path`` (content ``info``) belongs to a process that still runs."""
    now = time.time() if now is None else now
    if info is None:
        try:
            return now - path.stat().st_mtime < _EMPTY_GRACE_SECONDS
        except OSError:
            return False
    if now - float(info.get("heartbeat", 0.0)) > stale_seconds:
        return False
    if info.get("host") == HOST:
        return pid_alive(int(info.get("pid", -1)), info.get("pid_start"))
    return True


def lock_is_live(path: Path, *, stale_seconds: float) -> bool:
    if not path.exists():
        return False
    return holder_alive(read_lock(path), path, stale_seconds=stale_seconds)


class RunLock:
    """A claimed run; :meth:`start_heartbeat` keeps it live, :meth:`release` frees it."""

    def __init__(self, path: Path, info: dict) -> None:
        self.path = path
        self.info = info
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()  # guards info (set from the training thread)
        self._io = threading.Lock()     # a heartbeat never rewrites the file after release
        self._written = -math.inf       # monotonic time of the last progress write

    @property
    def nonce(self) -> str:
        return self.info["nonce"]

    def owned(self) -> bool:
        current = read_lock(self.path)
        return current is not None and current.get("nonce") == self.nonce

    def set_progress(self, **fields: Any) -> None:
        """Fields (e.g. the epoch) shown by ``bench status`` and the runner's progress bar;
        written at once, at most every ``PROGRESS_SECONDS`` (else with the next heartbeat)."""
        with self._mutex:
            self.info.update(fields)
        now = time.monotonic()
        if now - self._written >= PROGRESS_SECONDS and self.heartbeat():
            self._written = now

    def heartbeat(self) -> bool:
        """Refresh the timestamp; False when the lock was taken over (it is then left alone)."""
        with self._io:
            if self._stop.is_set() or not self.owned():
                return False
            with self._mutex:
                self.info["heartbeat"] = time.time()
                snapshot = dict(self.info)
            try:
                atomic_write_json(self.path, snapshot)
            except OSError:
                return False
        return True

    def start_heartbeat(self, interval: float) -> None:
        def beat() -> None:
            while not self._stop.wait(interval):
                self.heartbeat()

        self._thread = threading.Thread(target=beat, name=f"heartbeat-{self.path.stem}",
                                        daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._io:
            if self.owned():
                self.path.unlink(missing_ok=True)

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _break(path: Path, seen: dict | None) -> None:
    """Remove the dead lock at ``path`` if it still has the content ``seen``."""
    guard = path.with_name(path.name + ".break")
    try:
        fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        try:  # a guard left by a process that died while breaking
            if time.time() - guard.stat().st_mtime > _EMPTY_GRACE_SECONDS:
                guard.unlink(missing_ok=True)
        except OSError:
            pass
        return
    os.close(fd)
    try:
        current = read_lock(path)
        same = (current == seen) if seen is not None else current is None
        if same:
            path.unlink(missing_ok=True)
    finally:
        guard.unlink(missing_ok=True)


def acquire(path: str | Path, info: dict, *, stale_seconds: float,
            takeover_nonce: str | None = None) -> RunLock | None:
    """Claim ``path`` with ``info`` (from :func:`owner_info`); None when a live process holds it.

    takeover_nonce: a lock with this nonce is taken over unless its process still runs on this
        host (a scheduler such as dask re-runs a task whose worker died, with the same nonce).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(5):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            seen = read_lock(path)
            same_task = (seen is not None and takeover_nonce is not None
                         and seen.get("nonce") == takeover_nonce)
            if same_task and seen is not None:
                alive = seen.get("host") == HOST and pid_alive(int(seen.get("pid", -1)),
                                                              seen.get("pid_start"))
            else:
                alive = holder_alive(seen, path, stale_seconds=stale_seconds)
            if alive:
                return None
            _break(path, seen)
            continue
        os.close(fd)   # the run is claimed; its content lands whole, never half written
        atomic_write_json(path, info)
        return RunLock(path, info)
    return None


def force_release(path: Path, *, nonce: str) -> None:
    """Remove the lock at ``path`` if it carries ``nonce`` (cleanup after a dead holder)."""
    current = read_lock(path)
    if current is not None and current.get("nonce") == nonce:
        _break(path, current)
