"""The run session: one ``python -m bench run`` of a grid, from the scan to the last record.

Resumable and idempotent. A session scans the grid's state (:mod:`bench.grid.state`), sends the
runs still to do to joblib (:mod:`bench.grid.backends`) as tasks (:mod:`bench.grid.worker`),
and prints each outcome as it streams back. Failed runs are retried in the next round; a worker
that dies (killed, out of memory) turns the runs it held into failed attempts; runs locked by
another runner are waited for. A cell that cannot run as configured (a
:class:`~bench.errors.BenchError`, e.g. missing data) stops the grid with that one-line error.
Ctrl-C, SIGTERM and SIGHUP end the workers, keep the checkpoints and say how to resume
(:mod:`bench.grid.interrupts`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from bench import locks, store
from bench.cli import first_line
from bench.config import RunSpec
from bench.errors import BenchError, ConfigError
from bench.grid import interrupts
from bench.grid.backends import joblib_backend
from bench.grid.devices import default_threads, device_pool
from bench.grid.interrupts import Interrupted, stop_on_signals
from bench.grid.options import RunnerOptions, check_options
from bench.grid.progress import PROGRESS_SECONDS, Tally, run_line, running_text, write
from bench.grid.state import GridState, attempts, cleanup_temporary_files, read_record
from bench.grid.worker import Task, execute, failed_record, outcome

__all__ = ["RunSession", "POLL_SECONDS"]

POLL_SECONDS = 2.0
# an own run whose heartbeat is this many intervals old is dead (its worker died elsewhere)
_OWN_DEAD_BEATS = 3


class RunSession:
    """The runs of one grid (``runs``, those ``--only`` selected) under one set of options.

    ``grid_run_ids``: every run of the grid file, also those left out by ``--only`` (None: not
    known), to tell records of a changed setting apart. :meth:`run` returns 0 when every run is
    ok, else 1.
    """

    def __init__(self, grid_name: str, runs: list[RunSpec], opts: RunnerOptions, *,
                 grid_run_ids: Iterable[str] | None = None) -> None:
        check_options(opts)
        self.grid_name = grid_name
        self.runs = runs
        self.by_id = {r.run_id: r for r in runs}
        self.grid_run_ids = set(grid_run_ids) if grid_run_ids is not None else None
        self.opts = opts
        results = Path(opts.results).absolute()
        self.grid_dir = results / grid_name
        self.checkpoint_dir = (Path(opts.checkpoints).absolute() if opts.checkpoints else
                               results.parent / "checkpoints" / grid_name)
        self.max_attempts = opts.retries + 1
        self.stale_seconds = opts.stale_lock_minutes * 60.0
        self.state = GridState(self.grid_dir, max_attempts=self.max_attempts,
                               stale_seconds=self.stale_seconds)
        self.token = locks.new_token()
        self.device, self.device_slots = device_pool(opts)
        self.jobs = opts.jobs or max(1, len(self.device_slots))
        if self.jobs < 1:
            raise ConfigError("--jobs must be >= 1")
        self.threads = opts.threads or default_threads(self.jobs)
        self.slot_dir = (Path(tempfile.gettempdir()) / f"lnlbench-slots-{self.token}"
                         if self.device_slots else None)
        self.tally = Tally()
        self.bar: Any = None
        self.idle_crashes = 0
        self._foreign_children: set[int] = set()

    # -- tasks -----------------------------------------------------------------------------
    def _task(self, spec: RunSpec, index: int) -> Task:
        opts = self.opts
        return Task(spec=spec, record_path=str(self.grid_dir / spec.filename),
                    lock_path=str(self.state.lock_path(spec)),
                    checkpoint_dir=str(self.checkpoint_dir), checkpoint_every=opts.checkpoint_every,
                    data_root=str(Path(opts.data_root).absolute()) if opts.data_root else None,
                    device=self.device, device_slots=self.device_slots,
                    slot_dir=str(self.slot_dir) if self.slot_dir else None,
                    threads=self.threads, max_attempts=self.max_attempts, runner=self.token,
                    nonce=locks.new_token(), index=index, stale_seconds=self.stale_seconds,
                    heartbeat_seconds=opts.heartbeat_seconds,
                    runner_process=(locks.HOST, os.getpid(), locks.process_start_time(os.getpid())),
                    reuse=opts.reuse, compile=opts.compile)

    def _groups(self, tasks: list[Task]) -> list[list[Task]]:
        """One task per run, or with ``fuse_seeds`` the fusable seeds of a cell together."""
        if not self.opts.fuse_seeds:
            return [[t] for t in tasks]
        from bench.fused_run import fusable, group_key

        groups: dict[str, list[Task]] = {}
        for task in tasks:
            key = group_key(task.spec) if fusable(task.spec) else task.spec.run_id
            groups.setdefault(key, []).append(task)
        return list(groups.values())

    def _round(self, todo: list[RunSpec], n_jobs: int) -> int:
        """Run ``todo`` once; returns how many runs reached a record or an error."""
        from joblib import Parallel, delayed

        tasks = [self._task(spec, i) for i, spec in enumerate(todo)]
        progressed = 0
        results = Parallel(n_jobs=n_jobs, return_as="generator_unordered", batch_size=1)(
            delayed(execute)(group) for group in self._groups(tasks))
        try:
            while True:
                try:
                    outcomes = next(results)
                except StopIteration:
                    break
                except (BenchError, KeyboardInterrupt):
                    raise
                except Exception as exc:  # a worker died: its runs become failed attempts
                    if interrupts.signalled:  # killed by the signal that stops this runner too
                        raise Interrupted(interrupts.signalled[0]) from None
                    progressed += self._handle_crash(exc, tasks)
                    break
                for done in outcomes:
                    progressed += self._finish(done)
        finally:
            results.close()
        return progressed

    # -- outcomes --------------------------------------------------------------------------
    def _finish(self, done: dict) -> int:
        """Count and print one outcome; 1 when the run reached a record, else 0."""
        spec = self.by_id[done["run_id"]]
        status = done["status"]
        if status in ("locked", "abandoned"):
            return 0
        note = ""
        if not done["fresh"]:
            note = "(recorded by another process)"
        elif done.get("reused_from"):
            note = f"(identical run reused from grid {done['reused_from']})"
        if status == "error":
            # a cell that cannot run as configured, or missing data: the user's to fix, and
            # every other cell would most likely stop the same way
            raise BenchError(f"{spec.label} on {spec.dataset} {spec.noise_label} seed "
                             f"{spec.seed}: {done['error']}")
        if status == "failed":
            final = done["attempts"] >= self.max_attempts
            note = (f"attempt {done['attempts']}/{self.max_attempts}"
                    f"{'' if final else ', will retry'}: {first_line(done['error'])} {note}")
            if final:
                self._count(spec.run_id, failed=True)
        else:
            if done["attempts"] > 1:
                note = f"attempt {done['attempts']} {note}"
            self._count(spec.run_id, failed=False)
        write(run_line(spec, status, acc=done["test_acc_last10"],
                       seconds=done["wall_seconds"], note=note.strip()))
        for warning in done.get("warnings") or ():
            write(f"  warning: {warning}")
        return 1

    def _count(self, run_id: str, *, failed: bool) -> None:
        if run_id in self.tally.finished:
            return
        self.tally.finished.add(run_id)
        if failed:
            self.tally.failed.add(run_id)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(self.postfix(), refresh=False)

    def postfix(self) -> str:
        """The bar's tail: failed runs, and the epoch each run of this runner is at."""
        running = [running_text(self.by_id[info["run_id"]], info) for _, info in self._own_locks()
                   if info.get("run_id") in self.by_id]
        return "; ".join([f"failed={len(self.tally.failed)}", *running])

    def _watch_progress(self, stop: threading.Event) -> None:
        while not stop.wait(PROGRESS_SECONDS):
            with contextlib.suppress(Exception):  # a display must never stop the grid
                self.bar.set_postfix_str(self.postfix())

    # -- crashes ---------------------------------------------------------------------------
    def _own_locks(self, nonces: dict[str, Task] | None = None) -> list[tuple[Path, dict]]:
        """(path, content) of the locks of this runner's tasks (those of ``nonces``, or all)."""
        found = []
        lock_dir = self.state.lock_dir
        for path in sorted(lock_dir.glob("*.lock")) if lock_dir.is_dir() else ():
            info = locks.read_lock(path)
            if info is not None and (info.get("nonce") in nonces if nonces is not None
                                     else info.get("runner") == self.token):
                found.append((path, info))
        return found

    def _handle_crash(self, exc: BaseException, tasks: list[Task]) -> int:
        """Turn the runs held by dead workers into failed attempts (retried next round)."""
        nonces = {t.nonce: t for t in tasks}
        dead_after = _OWN_DEAD_BEATS * self.opts.heartbeat_seconds
        while True:  # runs still going on other workers finish and record themselves
            held = self._own_locks(nonces)
            if not any(locks.holder_alive(info, path, stale_seconds=dead_after)
                       for path, info in held):
                break
            time.sleep(POLL_SECONDS)
        if not held:
            # a worker that died between runs costs nothing; a backend that keeps failing
            # before any run starts (it cannot start workers, say) stops the grid
            self.idle_crashes += 1
            if self.idle_crashes >= 3:
                raise BenchError(f"the {self.opts.backend} backend keeps failing before any run "
                                 f"starts: {type(exc).__name__}: {first_line(str(exc))}")
            return 0
        self.idle_crashes = 0
        message = (f"WorkerDied: the worker process running this run died ({type(exc).__name__}: "
                   f"{first_line(str(exc))}); killed, out of memory, or a crash in native code. "
                   f"Runs in flight on the same pool at that moment are charged the same attempt.")
        return sum(self._charge(path, info, nonces[info["nonce"]], message, dead_after)
                   for path, info in held)

    def _charge(self, path: Path, info: dict, task: Task, message: str, dead_after: float) -> int:
        """Record a failed attempt for the run of a dead worker's lock; 1 when recorded here."""
        claim = locks.owner_info(runner=self.token, run_id=task.spec.run_id, nonce=task.nonce)
        lock = locks.acquire(path, claim, stale_seconds=dead_after, takeover_nonce=task.nonce)
        if lock is None:
            return 0
        try:
            previous = read_record(task.record_path)
            if previous is not None and previous.get("status") == "ok":
                return 0
            record = failed_record(task.spec, message, attempts=attempts(previous) + 1,
                                   device=info.get("device") or task.device, host=info.get("host"))
            store.write_record(task.record_path, record)
        finally:
            lock.release()
        return self._finish(outcome(task, "failed", record=record))

    # -- the whole grid --------------------------------------------------------------------
    def run(self) -> int:
        """Run every selected run still to do; 0 when all are ok, else 1."""
        self._start()
        self._open_bar()
        interrupts.signalled.clear()
        # processes of the caller (a notebook's, a test runner's) are not this runner's to end
        self._foreign_children = set(locks.descendants(os.getpid()))
        stop = threading.Event()
        if not self.bar.disable:
            threading.Thread(target=self._watch_progress, args=(stop,), daemon=True,
                             name="progress").start()
        with stop_on_signals():  # also while cleaning up: a repeated signal is ignored
            try:
                with contextlib.ExitStack() as stack:
                    self._loop(stack)
            except KeyboardInterrupt as exc:
                raise self._interrupted(exc) from None
            finally:
                stop.set()
                self.bar.close()
                self._release_dead_own_locks()
                if self.slot_dir is not None:
                    shutil.rmtree(self.slot_dir, ignore_errors=True)
        return self._report()

    def _start(self) -> None:
        """Check the records folder, clear what killed processes left, count what is recorded
        and say what the session is about to do."""
        _check_writable(self.grid_dir, "records")
        cleanup_temporary_files([self.grid_dir, self.checkpoint_dir, self.state.lock_dir],
                                self.state.live_locks())
        states = self.state.states(self.runs)
        for run_id, s in states.items():
            if s in ("ok", "failed"):
                self.tally.finished.add(run_id)
                if s == "failed":
                    self.tally.failed.add(run_id)
        todo = sum(s in ("pending", "retry") for s in states.values())
        self._set_aside_damaged()
        self._warn_orphans()
        write(f"grid {self.grid_name}: {len(self.runs)} runs, {todo} to run, "
              f"{len(self.tally.finished)} already recorded; backend {self.opts.backend}, "
              f"{self.jobs} job(s), {self.threads} thread(s) per run, device "
              f"{', '.join(dict.fromkeys(self.device_slots)) or self.device}")

    def _open_bar(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=len(self.runs), initial=len(self.tally.finished), unit="run",
                        desc=self.grid_name, dynamic_ncols=True,
                        # a bar is for a terminal; a log file gets the one line per run
                        disable=not (self.opts.progress and sys.stderr.isatty()))
        self.bar.set_postfix_str(self.postfix())

    def _interrupted(self, exc: KeyboardInterrupt) -> Interrupted:
        """End the workers (their runs' checkpoints stay) and say how to resume."""
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        interrupts.signalled.append(signum)  # stopping: a further SIGTERM or SIGHUP is ignored
        in_flight = {info.get("run_id") for _, info in self._own_locks()} & set(self.by_id)
        # atomic writes make a SIGKILL safe; loky's resource tracker ignores SIGTERM
        ours = [p for p in locks.descendants(os.getpid()) if p not in self._foreign_children]
        locks.end_processes(ours, timeout=1.0)
        states = self.state.states(self.runs)
        done = sum(s in ("ok", "failed") for s in states.values())
        kept = f" (checkpoints kept in {self.checkpoint_dir})" if in_flight else ""
        return Interrupted(signum, f"interrupted by {signal.Signals(signum).name}: "
                                   f"{len(in_flight)} run(s) in progress stopped{kept}; "
                                   f"{done} of {len(self.runs)} runs recorded; run the same "
                                   f"command again to resume")

    def _set_aside_damaged(self) -> None:
        """Move damaged records of the selected runs aside (kept for a look); they train again."""
        for path, reason in list(self.state.damaged.values()):
            try:
                aside = store.move_aside(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise BenchError(f"cannot move the damaged record {path} aside: "
                                 f"{exc.strerror or exc}") from None
            write(f"warning: damaged record {path} ({reason}) moved to {aside.name}; its "
                  f"run trains again")
        self.state.damaged.clear()

    def _warn_orphans(self) -> None:
        """Records in the grid's folder that belong to no run of the grid file as it is now."""
        if self.grid_run_ids is None:
            return
        orphans = sorted(p.name for p in self.grid_dir.glob("*.json")
                         if p.stem.rsplit("-", 1)[-1] not in self.grid_run_ids)
        if orphans:
            write(f"warning: {len(orphans)} record(s) in {self.grid_dir} belong to no run "
                  f"of this grid (a changed setting or default gives a run a new run_id), "
                  f"e.g. {orphans[0]}; reports read every record of the folder, so move "
                  f"them out of it")

    def _loop(self, stack: contextlib.ExitStack) -> None:
        """Rounds until nothing is left to run, then wait for runs other runners hold."""
        n_jobs = None  # the backend starts (a cluster, say) only once there is work for it
        announced: set[str] = set()
        while True:
            states = self.state.states(self.runs)
            self._sync(states)
            todo = [s for s in self.runs if states[s.run_id] in ("pending", "retry")]
            if todo:
                if n_jobs is None:
                    n_jobs = stack.enter_context(joblib_backend(
                        self.opts.backend, scheduler=self.opts.scheduler, jobs=self.jobs,
                        threads=self.threads))
                if self._round(todo, n_jobs) == 0:
                    time.sleep(POLL_SECONDS)  # every run was claimed by someone else
                continue
            running = [s for s in self.runs if states[s.run_id] == "running"]
            if not running or not self.opts.wait:
                return
            fresh = [s for s in running if s.run_id not in announced]
            if fresh:
                announced.update(s.run_id for s in fresh)
                write(f"waiting for {len(running)} run(s) in progress in another runner")
            time.sleep(POLL_SECONDS)

    def _sync(self, states: dict[str, str]) -> None:
        """Count runs that another runner (or a worker whose result was lost) recorded."""
        for spec in self.runs:
            s = states[spec.run_id]
            if s in ("ok", "failed") and spec.run_id not in self.tally.finished:
                summary = self.state.summary(spec)
                self._count(spec.run_id, failed=s == "failed")
                write(run_line(spec, s, acc=summary.test_acc_last10 if summary else None,
                               seconds=summary.wall_seconds if summary else None,
                               note="(recorded by another process)"))

    def _release_dead_own_locks(self) -> None:
        lock_dir = self.state.lock_dir
        for path in lock_dir.glob("*.lock") if lock_dir.is_dir() else ():
            info = locks.read_lock(path)
            if info is not None and info.get("runner") == self.token and info.get(
                    "host") == locks.HOST and not locks.pid_alive(int(info["pid"]),
                                                                  info.get("pid_start")):
                locks.force_release(path, nonce=info["nonce"])

    def _report(self) -> int:
        """The closing lines: counts, the failed runs with their errors; 1 when any failed."""
        states = self.state.states(self.runs)
        counts = Counter(states.values())
        failed = [s for s in self.runs if states[s.run_id] in ("failed", "retry")]
        write(f"grid {self.grid_name}: {counts['ok']} ok, {len(failed)} failed, "
              f"{counts['running']} in progress elsewhere, "
              f"{len(self.runs)} in all; records in {self.grid_dir}")
        for spec in failed:
            summary = self.state.summary(spec)
            if summary is not None:
                write(f"  failed: {spec.label} {spec.dataset} {spec.noise_label} s{spec.seed} "
                      f"({summary.attempts} attempt(s)): {first_line(summary.error)}")
        if counts["running"]:
            write(f"  {counts['running']} run(s) are still in progress in another runner; "
                  "`python -m bench status` shows them")
        return 1 if failed else 0


def _check_writable(folder: Path, what: str) -> None:
    """Create ``folder`` and write a file in it, or stop with one line saying why not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise BenchError(f"cannot write {what} to {folder}: {exc.strerror or exc}") from None
