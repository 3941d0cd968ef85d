"""The state of a grid on disk: which runs are done, failed, running, pending or damaged.

Read from ``<results>/<grid>/``: a run with an ``ok`` record is done; a ``failed`` record
carries ``attempts`` and is retried until they are used up; a lock ``.locks/<run_id>.lock``
(:mod:`bench.locks`) held by a live process marks a run in progress; a record that cannot be read
is damaged (named in :attr:`GridState.damaged`) and counts as pending.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from bench import locks, store
from bench.config import RunSpec

__all__ = ["RunSummary", "GridState", "attempts", "read_record", "find_twin", "cleanup_temporary_files"]

_RUN_ID_IN_NAME = re.compile(r"([0-9a-f]{16})(?:\.json|\.pt|\.lock)")


def attempts(record: dict | None) -> int:
    """How many times the run of ``record`` was tried (0 without a record)."""
    if record is None:
        return 0
    return int(record.get("attempts") or 1)


def read_record(path: str | Path) -> dict | None:
    """The valid record at ``path``; None when there is none or it is damaged (the runner
    moves a damaged one aside before it trains the run again)."""
    try:
        return store.read_valid_record(path)
    except (FileNotFoundError, store.DamagedRecord):
        return None


def find_twin(grid_dir: Path, run_id: str) -> tuple[Path, dict] | None:
    """(path, record) of an ``ok`` record of ``run_id`` trained for another grid under the same
    results folder (never a copy itself), or None.

    The run_id hashes the whole resolved configuration (method and its parameters, data, noise
    and its seed, seed, training protocol), so two grids that share a cell, such as an ablation
    and the main table it varies, need train it only once.
    """
    for path in sorted(grid_dir.parent.glob(f"*/*-{run_id}.json")):
        if path.parent == grid_dir:
            continue
        rec = read_record(path)
        if (rec is not None and rec.get("status") == "ok" and rec.get("run_id") == run_id
                and not rec.get("reused_from")):
            return path, rec
    return None


@dataclass
class RunSummary:
    """A run's record in short: what the state and the progress lines need."""

    status: str
    attempts: int
    test_acc_last10: float | None
    wall_seconds: float | None
    error: str | None


class GridState:
    """Records and locks of one grid's runs, read from ``<results>/<grid>/``.

    ``states(runs)`` gives each run one of ``ok``, ``failed`` (attempts used up), ``retry`` (a
    failed record with attempts left), ``running`` (a live lock) or ``pending``.
    """

    def __init__(self, grid_dir: Path, *, max_attempts: int, stale_seconds: float) -> None:
        self.grid_dir = grid_dir
        self.lock_dir = grid_dir / ".locks"
        self.max_attempts = max_attempts
        self.stale_seconds = stale_seconds
        self._cache: dict[str, tuple[int, RunSummary]] = {}
        self.damaged: dict[str, tuple[Path, str]] = {}  # run_id -> (path, reason)

    def summary(self, spec: RunSpec) -> RunSummary | None:
        """The run's record in short; None when there is none or it is damaged (then named in
        :attr:`damaged`). Read again only when the file changed."""
        path = self.grid_dir / spec.filename
        self.damaged.pop(spec.run_id, None)
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        cached = self._cache.get(spec.run_id)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        try:
            rec = store.read_valid_record(path)
        except FileNotFoundError:
            return None
        except store.DamagedRecord as exc:
            self.damaged[spec.run_id] = (path, exc.reason)
            return None
        summary = RunSummary(rec.get("status", "failed"), attempts(rec), rec.get("test_acc_last10"),
                             rec.get("wall_seconds"), rec.get("error"))
        self._cache[spec.run_id] = (mtime, summary)
        return summary

    def lock_path(self, spec: RunSpec) -> Path:
        """The lock file of the run ``spec``."""
        return self.lock_dir / f"{spec.run_id}.lock"

    def live_locks(self) -> dict[str, dict]:
        """run_id -> lock content, for the locks held by a live process."""
        live: dict[str, dict] = {}
        try:
            names = os.listdir(self.lock_dir)
        except FileNotFoundError:
            return live
        for name in names:
            if name.startswith(".") or not name.endswith(".lock"):
                continue
            path = self.lock_dir / name
            info = locks.read_lock(path)
            if locks.holder_alive(info, path, stale_seconds=self.stale_seconds):
                live[name[:-5]] = info or {}
        return live

    def states(self, runs: Iterable[RunSpec]) -> dict[str, str]:
        """run_id -> state of each of ``runs``."""
        live = self.live_locks()
        out = {}
        for spec in runs:
            s = self.summary(spec)
            if s is not None and s.status == "ok":
                out[spec.run_id] = "ok"
            elif spec.run_id in live:
                out[spec.run_id] = "running"
            elif s is None:
                out[spec.run_id] = "pending"
            else:
                out[spec.run_id] = "failed" if s.attempts >= self.max_attempts else "retry"
        return out


def cleanup_temporary_files(folders: Iterable[Path], live: dict[str, dict]) -> int:
    """Remove ``.*.tmp`` files left by killed processes (none of a run that is still live)."""
    removed = 0
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in folder.glob(".*.tmp"):
            m = _RUN_ID_IN_NAME.search(path.name)
            if m is not None and m.group(1) in live:
                continue
            if m is None and time.time() - path.stat().st_mtime < 600:
                continue
            path.unlink(missing_ok=True)
            removed += 1
    return removed
