"""The grid runner: ``python -m bench run GRID`` and ``python -m bench status GRID``.

Resumable and idempotent. The state of a grid is the files under ``<results>/<grid>/``: a run
with an ``ok`` record is done; a ``failed`` record carries ``attempts`` and is retried until
``--retries`` is used up; a lock ``.locks/<run_id>.lock`` (:mod:`bench.locks`) marks a run in
progress, so several runners (on one machine or on many sharing the results folder) never train
the same cell twice. Records are written atomically by the process that trained the run, and a
run's full state is checkpointed every ``--checkpoint-every`` epochs under ``--checkpoints``, so
killing the runner at any moment and starting it again completes the grid with every run
recorded exactly once.

Data flow of ``run``: expand the grid, scan the records and locks, send the runs still to do to
joblib (loky processes on this machine, or a dask / ray cluster); each task claims its run's
lock, takes a device from the pool, trains through :func:`bench.engine.run` and writes the
record. Results stream back as they finish; failed runs are retried in the next round, and a
worker that dies (killed, out of memory) turns the runs it held into failed attempts. A cell
that cannot run as configured (a :class:`~bench.errors.BenchError`, e.g. missing data) stops
the grid with that one-line error.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from bench import locks, store
from bench.cli import EXIT_INTERRUPTED, EXIT_TERMINATED, float_at_least, int_at_least
from bench.config import SMOKE_RESULTS, RunSpec, filter_runs, load_grid, smoke_spec
from bench.errors import BenchError, ConfigError

BACKENDS = ("loky", "dask", "ray")
POLL_SECONDS = 2.0
PROGRESS_SECONDS = 1.0  # how often the bar shows the epochs of the running runs
# an own run whose heartbeat is this many intervals old is dead (its worker died elsewhere)
_OWN_DEAD_BEATS = 3
_RUN_ID_IN_NAME = re.compile(r"([0-9a-f]{16})(?:\.json|\.pt|\.lock)")
# what a batch scheduler (SLURM, systemd, docker) or a closed terminal sends
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))
# a lock without heartbeat this long is dead; under two heartbeats, live runs would be taken over
MIN_STALE_LOCK_MINUTES = 1.0
_stale_minutes = float_at_least(MIN_STALE_LOCK_MINUTES)


class Interrupted(KeyboardInterrupt):
    """The runner was stopped by a signal: Ctrl-C (SIGINT), SIGTERM or SIGHUP.

    A subclass of KeyboardInterrupt, so that joblib and the runner stop a grid on SIGTERM
    exactly as on Ctrl-C. ``exit_code``: 130 for SIGINT, 143 for SIGTERM and SIGHUP.
    """

    def __init__(self, signum: int, message: str = "") -> None:
        self.signum = signum
        self.exit_code = EXIT_INTERRUPTED if signum == signal.SIGINT else EXIT_TERMINATED
        super().__init__(message or f"interrupted by {signal.Signals(signum).name}")


_signalled: list[int] = []  # the stop signals received by this process


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Interrupted` in the main thread (once;
    a repeated signal during the clean-up is ignored). Outside the main thread, a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame) -> None:
        first = not _signalled
        _signalled.append(signum)
        if first:
            raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@dataclass(frozen=True)
class RunnerOptions:
    """Options of :func:`run_grid` (the ``run`` subcommand's flags)."""

    results: Path = Path("results")
    checkpoints: Path | None = None        # default: <results>/../checkpoints/<grid>
    jobs: int | None = None                # default: 1, or one per device slot
    backend: str = "loky"
    scheduler: str | None = None
    device: str = "auto"                   # cpu | cuda | auto
    devices: tuple[str, ...] = ()          # GPU pool, e.g. ("cuda:0", "cuda:1")
    runs_per_device: int | None = None
    retries: int = 1
    checkpoint_every: int = 10
    threads: int | None = None             # default: $OMP_NUM_THREADS, else cores // jobs
    data_root: str | None = None
    progress: bool = True
    stale_lock_minutes: float = 10.0
    wait: bool = True
    heartbeat_seconds: float = 30.0
    reuse: bool = True                     # copy an identical run recorded by another grid
    fuse_seeds: bool = False               # train the seeds of a cell as one fused model
    compile: bool = False                  # torch.compile the networks


# ---- the task a worker executes ----------------------------------------------------------------

@dataclass(frozen=True)
class _Task:
    spec: RunSpec
    record_path: str
    lock_path: str
    checkpoint_dir: str
    checkpoint_every: int
    data_root: str | None
    device: str | None
    device_slots: tuple[str, ...]
    slot_dir: str | None
    threads: int
    max_attempts: int
    runner: str
    nonce: str
    index: int
    stale_seconds: float
    heartbeat_seconds: float
    runner_process: tuple[str, int, str | None]  # host, pid, start time of the runner
    reuse: bool = True
    compile: bool = False


def _attempts(record: dict | None) -> int:
    if record is None:
        return 0
    return int(record.get("attempts") or 1)


def _read_record(path: str | Path) -> dict | None:
    """The valid record at ``path``; None when there is none or it is damaged (the runner
    moves a damaged one aside before it trains the run again)."""
    try:
        return store.read_valid_record(path)
    except (FileNotFoundError, store.DamagedRecord):
        return None


def _outcome(task: _Task, status: str, *, record: dict | None = None, error: str | None = None,
             fresh: bool = True) -> dict:
    """What a task reports back: small, so that nothing heavy crosses the wire."""
    rec = record or {}
    return {"run_id": task.spec.run_id, "status": status, "fresh": fresh,
            "attempts": _attempts(record) if record else 0,
            "test_acc_last10": rec.get("test_acc_last10"),
            "wall_seconds": rec.get("wall_seconds"), "device": rec.get("device"),
            "error": error if error is not None else rec.get("error"),
            "warnings": list(rec.get("warnings") or []) if fresh else [],
            "reused_from": rec.get("reused_from", {}).get("grid") if fresh else None}


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
        rec = _read_record(path)
        if (rec is not None and rec.get("status") == "ok" and rec.get("run_id") == run_id
                and not rec.get("reused_from")):
            return path, rec
    return None


def _reuse(task: _Task, twin: Path, rec: dict) -> dict:
    """The twin's record, relabelled for this grid, saying where it was trained."""
    spec = task.spec
    out = dict(rec)
    out.update(grid=spec.grid, label=spec.label, reference=dict(spec.reference),
               reused_from={"grid": rec.get("grid", twin.parent.name), "record": twin.name})
    return out


def _settle(task: _Task) -> tuple[dict | None, dict | None]:
    """(outcome, previous record) of a claimed run: an outcome when it needs no training (it is
    recorded, out of attempts, or copied from another grid's identical run), else None."""
    try:
        previous = store.read_valid_record(task.record_path)
    except FileNotFoundError:
        previous = None
    except store.DamagedRecord:  # damaged after the runner's scan; kept for a look
        with contextlib.suppress(FileNotFoundError):
            store.move_aside(task.record_path)
        previous = None
    if previous is not None and (previous.get("status") == "ok"
                                 or _attempts(previous) >= task.max_attempts):
        return _outcome(task, previous.get("status", "failed"), record=previous,
                        fresh=False), previous
    twin = find_twin(Path(task.record_path).parent, task.spec.run_id) if task.reuse else None
    if twin is not None:
        record = _reuse(task, *twin)
        store.write_record(task.record_path, record)
        return _outcome(task, "ok", record=record), previous
    return None, previous


def _take_device(task: _Task) -> tuple[str | None, locks.RunLock | None]:
    """A device slot of the pool: slot ``index`` first, so runs spread round-robin."""
    if not task.device_slots:
        return task.device, None
    n = len(task.device_slots)
    slot_dir = Path(task.slot_dir or tempfile.gettempdir())
    while True:
        for j in range(n):
            k = (task.index + j) % n
            info = locks.owner_info(runner=task.runner, run_id=task.spec.run_id)
            slot = locks.acquire(slot_dir / f"slot{k}.lock", info, stale_seconds=math.inf)
            if slot is not None:
                return task.device_slots[k], slot
        time.sleep(0.5)


def _execute(tasks: list[_Task]) -> list[dict]:
    """Claim, train and record runs (in a worker process); never raises for a run's failure.

    One task is one run. Several tasks are the seeds of one cell: those this worker can claim
    train together as one fused model (:mod:`bench.fused_run`), each with its own record.
    """
    first = tasks[0]
    host, pid, start = first.runner_process
    if host == locks.HOST and not locks.pid_alive(pid, start):
        # a loky worker outlives a runner killed with SIGKILL; leave queued runs to the next one
        return [_outcome(t, "abandoned") for t in tasks]
    outcomes: list[dict] = []
    held: list[tuple[_Task, locks.RunLock, dict | None]] = []
    slot = None
    try:
        for task in tasks:
            spec = task.spec
            info = locks.owner_info(runner=task.runner, run_id=spec.run_id, nonce=task.nonce,
                                    label=spec.label, epochs=spec.train.epochs)
            try:
                lock = locks.acquire(Path(task.lock_path), info,
                                     stale_seconds=task.stale_seconds, takeover_nonce=task.nonce)
            except OSError as exc:
                outcomes.append(_outcome(task, "error",
                                         error=f"cannot create the run's lock: {exc}"))
                continue
            if lock is None:
                outcomes.append(_outcome(task, "locked"))
                continue
            lock.start_heartbeat(task.heartbeat_seconds)
            try:
                outcome, previous = _settle(task)
            except BaseException:
                lock.release()
                raise
            if outcome is not None:
                lock.release()
                outcomes.append(outcome)
            else:
                held.append((task, lock, previous))
        if not held:
            return outcomes
        device, slot = _take_device(first)
        for _, lock, _ in held:
            lock.set_progress(device=device)

        import torch

        from bench import engine, fused_run

        # runs side by side must not each start one thread per core
        torch.set_num_threads(first.threads)
        if len(held) == 1:
            task, lock, _ = held[0]
            records = [engine.run(task.spec, device=device, results_dir=None,
                                  checkpoint_dir=task.checkpoint_dir,
                                  checkpoint_every=task.checkpoint_every,
                                  data_root=task.data_root,
                                  on_epoch=lambda epoch, _m: lock.set_progress(epoch=epoch + 1),
                                  compile=first.compile)]
        else:
            records = fused_run.run_fused(
                [t.spec for t, _, _ in held], device=device, data_root=first.data_root,
                on_epoch=lambda g, epoch: held[g][1].set_progress(epoch=epoch + 1),
                compile=first.compile)
        for (task, _, previous), record in zip(held, records):
            record["attempts"] = _attempts(previous) + 1
            store.write_record(task.record_path, record)
            outcomes.append(_outcome(task, record["status"], record=record))
        return outcomes
    except BenchError as exc:  # bad configuration of this cell or missing data: stop the grid
        error = str(exc)
    except Exception as exc:  # the runner's own plumbing (a full disk...), not the training
        error = f"{type(exc).__name__}: {exc}"
    finally:
        if slot is not None:
            slot.release()
        for _, lock, _ in held:
            lock.release()
    done = {o["run_id"] for o in outcomes}
    return outcomes + [_outcome(t, "error", error=error) for t, _, _ in held
                       if t.spec.run_id not in done]


# ---- scanning the grid's state -----------------------------------------------------------------

@dataclass
class _Summary:
    status: str
    attempts: int
    test_acc_last10: float | None
    wall_seconds: float | None
    error: str | None


class GridState:
    """Records and locks of one grid's runs, read from ``<results>/<grid>/``.

    ``state(spec)`` is one of ``ok``, ``failed`` (attempts used up), ``retry`` (a failed record
    with attempts left), ``running`` (a live lock) or ``pending``.
    """

    def __init__(self, grid_dir: Path, *, max_attempts: int, stale_seconds: float) -> None:
        self.grid_dir = grid_dir
        self.lock_dir = grid_dir / ".locks"
        self.max_attempts = max_attempts
        self.stale_seconds = stale_seconds
        self._cache: dict[str, tuple[int, _Summary]] = {}
        self.damaged: dict[str, tuple[Path, str]] = {}  # run_id -> (path, reason)

    def summary(self, spec: RunSpec) -> _Summary | None:
        """The run's record in short; None when there is none or it is damaged (then named in
        :attr:`damaged`)."""
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
        summary = _Summary(rec.get("status", "failed"), _attempts(rec), rec.get("test_acc_last10"),
                           rec.get("wall_seconds"), rec.get("error"))
        self._cache[spec.run_id] = (mtime, summary)
        return summary

    def lock_path(self, spec: RunSpec) -> Path:
        return self.lock_dir / f"{spec.run_id}.lock"

    def live_locks(self) -> dict[str, dict]:
        """run_id -> lock content, for the locks held by a live process."""
        live = {}
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


def _cleanup_temporary_files(folders: Iterable[Path], live: dict[str, dict]) -> int:
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


# ---- the session -------------------------------------------------------------------------------

def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _default_threads(jobs: int) -> int:
    """CPU cores // jobs, or ``OMP_NUM_THREADS`` when set (an explicit choice of the user)."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, _cpu_count() // jobs)


def _run_line(spec: RunSpec, status: str, *, acc: float | None, seconds: float | None,
              note: str = "") -> str:
    acc_text = f"{acc:6.2f}" if isinstance(acc, (int, float)) else "     -"
    sec_text = f"{seconds:7.1f}s" if isinstance(seconds, (int, float)) else "       -"
    return (f"{spec.label:<24} {spec.dataset:<10} {spec.noise_label:<16} s{spec.seed:<3} "
            f"{status:<6} last10={acc_text} {sec_text}{'  ' + note if note else ''}")


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0][:160] if text and text.strip() else ""


@dataclass
class _Tally:
    finished: set = field(default_factory=set)   # run_ids counted on the bar
    failed: set = field(default_factory=set)


class _Session:
    def __init__(self, grid_name: str, runs: list[RunSpec], opts: RunnerOptions, *,
                 grid_run_ids: Iterable[str] | None = None) -> None:
        if opts.backend not in BACKENDS:
            raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}")
        if opts.retries < 0 or opts.checkpoint_every < 1:
            raise ConfigError("--retries must be >= 0 and --checkpoint-every >= 1")
        if opts.stale_lock_minutes * 60.0 < 2 * opts.heartbeat_seconds:
            raise ConfigError(f"--stale-lock-minutes {opts.stale_lock_minutes:g} is under two "
                              f"heartbeats ({opts.heartbeat_seconds:g} s): live runs would be "
                              "taken over and trained twice")
        self.grid_name = grid_name
        self.runs = runs
        self.by_id = {r.run_id: r for r in runs}
        # every run of the grid, also those --only leaves out (None: not known)
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
        self.device, self.device_slots = self._device_pool()
        self.jobs = opts.jobs or max(1, len(self.device_slots))
        if self.jobs < 1:
            raise ConfigError("--jobs must be >= 1")
        self.threads = opts.threads or _default_threads(self.jobs)
        self.slot_dir = (Path(tempfile.gettempdir()) / f"lnlbench-slots-{self.token}"
                         if self.device_slots else None)
        self.tally = _Tally()
        self.bar = None
        self.idle_crashes = 0
        self._foreign_children: set[int] = set()

    # -- devices ---------------------------------------------------------------------------
    def _device_pool(self) -> tuple[str | None, tuple[str, ...]]:
        """(device for every run, or None; the slots of the GPU pool, one per concurrent run)."""
        opts = self.opts
        if opts.device not in ("cpu", "cuda", "auto"):
            raise ConfigError(f"--device must be cpu, cuda or auto, got {opts.device!r}")
        remote = opts.backend != "loky" and opts.scheduler is not None
        pool: list[str] = list(opts.devices)
        if not pool and opts.device != "cpu" and not remote:
            import torch

            n = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if opts.device == "cuda" and n == 0:
                raise BenchError("--device cuda, but this machine has no visible GPU")
            pool = [f"cuda:{i}" for i in range(n)]
        if not pool:
            # a cluster's workers pick their own device ("auto": their GPU if they have one)
            return (opts.device if remote and opts.device != "cpu" else "cpu"), ()
        per = opts.runs_per_device or max(1, math.ceil((opts.jobs or len(pool)) / len(pool)))
        return None, tuple(d for _ in range(per) for d in pool)

    # -- backends --------------------------------------------------------------------------
    @contextlib.contextmanager
    def _backend(self) -> Iterator[int]:
        """Enter the joblib backend; yields the n_jobs to pass to Parallel."""
        from joblib import parallel_config

        opts = self.opts
        if opts.backend == "loky":
            with parallel_config(backend="loky", inner_max_num_threads=self.threads):
                yield self.jobs
        elif opts.backend == "dask":
            try:
                from dask.distributed import Client, LocalCluster
            except ImportError:
                raise BenchError("the dask backend needs dask.distributed: "
                                 "pip install 'lnlbench[dask]'") from None
            cluster = None
            if opts.scheduler:
                try:
                    client = Client(opts.scheduler)
                except (OSError, TimeoutError) as exc:
                    raise BenchError(f"cannot reach the dask scheduler at {opts.scheduler}: "
                                     f"{_first_line(str(exc)) or type(exc).__name__}") from None
            else:
                cluster = LocalCluster(n_workers=self.jobs, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=logging.ERROR)
                client = Client(cluster)
            try:
                with parallel_config(backend="dask", wait_for_workers_timeout=600):
                    yield -1
            finally:
                client.close()
                if cluster is not None:
                    cluster.close()
        else:
            try:
                import ray
                from ray.util.joblib import register_ray
            except ImportError:
                raise BenchError("the ray backend needs ray: pip install 'lnlbench[ray]'") from None
            register_ray()
            started = not ray.is_initialized()
            if started:
                if opts.scheduler:
                    try:
                        ray.init(address=opts.scheduler)
                    except (OSError, ConnectionError, TimeoutError) as exc:
                        raise BenchError(f"cannot reach the ray cluster at {opts.scheduler}: "
                                         f"{_first_line(str(exc))}") from None
                else:
                    ray.init(num_cpus=self.jobs)
            try:
                with parallel_config(backend="ray"):
                    yield self.jobs if not opts.scheduler else -1
            finally:
                if started:
                    ray.shutdown()

    # -- tasks -----------------------------------------------------------------------------
    def _task(self, spec: RunSpec, index: int) -> _Task:
        return _Task(spec=spec, record_path=str(self.grid_dir / spec.filename),
                     lock_path=str(self.state.lock_path(spec)),
                     checkpoint_dir=str(self.checkpoint_dir),
                     checkpoint_every=self.opts.checkpoint_every,
                     data_root=(str(Path(self.opts.data_root).absolute())
                                if self.opts.data_root else None),
                     device=self.device, device_slots=self.device_slots,
                     slot_dir=str(self.slot_dir) if self.slot_dir else None,
                     threads=self.threads, max_attempts=self.max_attempts, runner=self.token,
                     nonce=locks.new_token(), index=index, stale_seconds=self.stale_seconds,
                     heartbeat_seconds=self.opts.heartbeat_seconds,
                     runner_process=(locks.HOST, os.getpid(),
                                     locks.process_start_time(os.getpid())),
                     reuse=self.opts.reuse, compile=self.opts.compile)

    def _round(self, todo: list[RunSpec], n_jobs: int) -> int:
        """Run ``todo`` once; returns how many runs reached a record or an error."""
        from joblib import Parallel, delayed

        tasks = [self._task(spec, i) for i, spec in enumerate(todo)]
        progressed = 0
        results = Parallel(n_jobs=n_jobs, return_as="generator_unordered", batch_size=1)(
            delayed(_execute)(group) for group in self._groups(tasks))
        try:
            while True:
                try:
                    outcomes = next(results)
                except StopIteration:
                    break
                except (BenchError, KeyboardInterrupt):
                    raise
                except Exception as exc:  # a worker died: its runs become failed attempts
                    if _signalled:  # killed by the signal that stops this runner too
                        raise Interrupted(_signalled[0]) from None
                    progressed += self._handle_crash(exc, tasks)
                    break
                for outcome in outcomes:
                    progressed += self._finish(outcome)
        finally:
            results.close()
        return progressed

    def _groups(self, tasks: list[_Task]) -> list[list[_Task]]:
        """One task per run, or with ``fuse_seeds`` the fusable seeds of a cell together."""
        if not self.opts.fuse_seeds:
            return [[t] for t in tasks]
        from bench.fused_run import fusable, group_key

        groups: dict[str, list[_Task]] = {}
        for task in tasks:
            key = group_key(task.spec) if fusable(task.spec) else task.spec.run_id
            groups.setdefault(key, []).append(task)
        return list(groups.values())

    def _finish(self, outcome: dict) -> int:
        spec = self.by_id[outcome["run_id"]]
        status = outcome["status"]
        if status in ("locked", "abandoned"):
            return 0
        note = ""
        if not outcome["fresh"]:
            note = "(recorded by another process)"
        elif outcome.get("reused_from"):
            note = f"(identical run reused from grid {outcome['reused_from']})"
        if status == "error":
            # a cell that cannot run as configured, or missing data: the user's to fix, and
            # every other cell would most likely stop the same way
            raise BenchError(f"{spec.label} on {spec.dataset} {spec.noise_label} seed "
                             f"{spec.seed}: {outcome['error']}")
        if status == "failed":
            final = outcome["attempts"] >= self.max_attempts
            note = (f"attempt {outcome['attempts']}/{self.max_attempts}"
                    f"{'' if final else ', will retry'}: {_first_line(outcome['error'])} {note}")
            if final:
                self._count(spec.run_id, failed=True)
        else:
            if outcome["attempts"] > 1:
                note = f"attempt {outcome['attempts']} {note}"
            self._count(spec.run_id, failed=False)
        self._write(_run_line(spec, status, acc=outcome["test_acc_last10"],
                              seconds=outcome["wall_seconds"], note=note.strip()))
        for warning in outcome.get("warnings") or ():
            self._write(f"  warning: {warning}")
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
        running = []
        for _, info in self._own_locks():
            spec = self.by_id.get(info.get("run_id"))
            if spec is not None and info.get("epoch"):
                running.append(f"{spec.label} {spec.noise_label} s{spec.seed} "
                               f"{info['epoch']}/{info.get('epochs')}")
            elif spec is not None:
                running.append(f"{spec.label} {spec.noise_label} s{spec.seed} starting")
        return "; ".join([f"failed={len(self.tally.failed)}", *running])

    def _watch_progress(self, stop: threading.Event) -> None:
        while not stop.wait(PROGRESS_SECONDS):
            with contextlib.suppress(Exception):  # a display must never stop the grid
                self.bar.set_postfix_str(self.postfix())

    def _write(self, line: str) -> None:
        from tqdm import tqdm

        tqdm.write(line)

    # -- crashes ---------------------------------------------------------------------------
    def _own_locks(self, nonces: dict[str, _Task] | None = None) -> list[tuple[Path, dict]]:
        """(path, content) of the locks of this runner's tasks (those of ``nonces``, or all)."""
        found = []
        lock_dir = self.state.lock_dir
        for path in sorted(lock_dir.glob("*.lock")) if lock_dir.is_dir() else ():
            info = locks.read_lock(path)
            if info is not None and (info.get("nonce") in nonces if nonces is not None
                                     else info.get("runner") == self.token):
                found.append((path, info))
        return found

    def _handle_crash(self, exc: BaseException, tasks: list[_Task]) -> int:
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
                                 f"starts: {type(exc).__name__}: {_first_line(str(exc))}")
            return 0
        self.idle_crashes = 0
        message = (f"WorkerDied: the worker process running this run died ({type(exc).__name__}: "
                   f"{_first_line(str(exc))}); killed, out of memory, or a crash in native code. "
                   f"Runs in flight on the same pool at that moment are charged the same attempt.")
        progressed = 0
        for path, info in held:
            task = nonces[info["nonce"]]
            claim = locks.owner_info(runner=self.token, run_id=task.spec.run_id,
                                     nonce=task.nonce)
            lock = locks.acquire(path, claim, stale_seconds=dead_after, takeover_nonce=task.nonce)
            if lock is None:
                continue
            try:
                previous = _read_record(task.record_path)
                if previous is not None and previous.get("status") == "ok":
                    continue
                record = _failed_record(task.spec, message, attempts=_attempts(previous) + 1,
                                        device=info.get("device") or task.device,
                                        host=info.get("host"))
                store.write_record(task.record_path, record)
            finally:
                lock.release()
            progressed += self._finish(_outcome(task, "failed", record=record))
        return progressed

    # -- the whole grid --------------------------------------------------------------------
    def run(self) -> int:
        from tqdm import tqdm

        _check_writable(self.grid_dir, "records")
        _cleanup_temporary_files([self.grid_dir, self.checkpoint_dir, self.state.lock_dir],
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
        self._write(f"grid {self.grid_name}: {len(self.runs)} runs, {todo} to run, "
                    f"{len(self.tally.finished)} already recorded; backend {self.opts.backend}, "
                    f"{self.jobs} job(s), {self.threads} thread(s) per run, device "
                    f"{', '.join(dict.fromkeys(self.device_slots)) or self.device}")
        self.bar = tqdm(total=len(self.runs), initial=len(self.tally.finished), unit="run",
                        desc=self.grid_name, dynamic_ncols=True,
                        # a bar is for a terminal; a log file gets the one line per run
                        disable=not (self.opts.progress and sys.stderr.isatty()))
        self.bar.set_postfix_str(self.postfix())
        _signalled.clear()
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

    def _interrupted(self, exc: KeyboardInterrupt) -> Interrupted:
        """End the workers (their runs' checkpoints stay) and say how to resume."""
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        _signalled.append(signum)  # stopping: a further SIGTERM or SIGHUP is ignored
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
            self._write(f"warning: damaged record {path} ({reason}) moved to {aside.name}; its "
                        f"run trains again")
        self.state.damaged.clear()

    def _warn_orphans(self) -> None:
        """Records in the grid's folder that belong to no run of the grid file as it is now."""
        if self.grid_run_ids is None:
            return
        orphans = sorted(p.name for p in self.grid_dir.glob("*.json")
                         if p.stem.rsplit("-", 1)[-1] not in self.grid_run_ids)
        if orphans:
            self._write(f"warning: {len(orphans)} record(s) in {self.grid_dir} belong to no run "
                        f"of this grid (a changed setting or default gives a run a new run_id), "
                        f"e.g. {orphans[0]}; reports read every record of the folder, so move "
                        f"them out of it")

    def _loop(self, stack: contextlib.ExitStack) -> None:
        n_jobs = None  # the backend starts (a cluster, say) only once there is work for it
        announced: set[str] = set()
        while True:
            states = self.state.states(self.runs)
            self._sync(states)
            todo = [s for s in self.runs if states[s.run_id] in ("pending", "retry")]
            if todo:
                if n_jobs is None:
                    n_jobs = stack.enter_context(self._backend())
                if self._round(todo, n_jobs) == 0:
                    time.sleep(POLL_SECONDS)  # every run was claimed by someone else
                continue
            running = [s for s in self.runs if states[s.run_id] == "running"]
            if not running or not self.opts.wait:
                return
            fresh = [s for s in running if s.run_id not in announced]
            if fresh:
                announced.update(s.run_id for s in fresh)
                self._write(f"waiting for {len(running)} run(s) in progress in another runner")
            time.sleep(POLL_SECONDS)

    def _sync(self, states: dict[str, str]) -> None:
        """Count runs that another runner (or a worker whose result was lost) recorded."""
        for spec in self.runs:
            s = states[spec.run_id]
            if s in ("ok", "failed") and spec.run_id not in self.tally.finished:
                summary = self.state.summary(spec)
                self._count(spec.run_id, failed=s == "failed")
                self._write(_run_line(spec, s, acc=summary.test_acc_last10,
                                      seconds=summary.wall_seconds,
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
        states = self.state.states(self.runs)
        counts = Counter(states.values())
        failed = [s for s in self.runs if states[s.run_id] in ("failed", "retry")]
        self._write(f"grid {self.grid_name}: {counts['ok']} ok, {len(failed)} failed, "
                    f"{counts['running']} in progress elsewhere, "
                    f"{len(self.runs)} in all; records in {self.grid_dir}")
        for spec in failed:
            summary = self.state.summary(spec)
            self._write(f"  failed: {spec.label} {spec.dataset} {spec.noise_label} s{spec.seed} "
                        f"({summary.attempts} attempt(s)): {_first_line(summary.error)}")
        if counts["running"]:
            self._write(f"  {counts['running']} run(s) are still in progress in another runner; "
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


def _failed_record(spec: RunSpec, error: str, *, attempts: int, device: str | None,
                   host: str | None) -> dict:
    """A complete ``failed`` record for a run whose worker died before it could write one."""
    from bench import engine

    record = engine.failed_record(spec, error, device=device)
    record["attempts"] = attempts
    if host:
        record["env"]["hostname"] = host
    return record


# ---- public API and CLI ------------------------------------------------------------------------

def run_grid(grid_path: str | Path, *, only: Iterable[str] = (),
             options: RunnerOptions | None = None) -> int:
    """Run (or complete) a grid; returns 0 when every selected run is ok, else 1."""
    grid = load_grid(grid_path)
    runs = filter_runs(grid.runs, list(only))
    return _Session(grid.name, runs, options or RunnerOptions(),
                    grid_run_ids=[r.run_id for r in grid.runs]).run()


def add_subcommands(sub) -> None:
    p = sub.add_parser("run", help="run a grid (resumable; parallel, GPU pool, dask, ray)",
                       description="Run every cell of a grid that has no record yet. Safe to "
                                   "kill and start again, and to start on several machines.")
    p.add_argument("grid", nargs="?", help="grid YAML file")
    p.add_argument("--jobs", "-j", type=int_at_least(1), default=None, metavar="N",
                   help="runs in parallel (default 1, or one per GPU slot)")
    p.add_argument("--devices", default="",
                   help="GPU pool, comma-separated (e.g. cuda:0,cuda:1); runs take slots "
                        "round-robin")
    p.add_argument("--runs-per-device", type=int_at_least(1), default=None, metavar="N",
                   help="concurrent runs per GPU of the pool (default: jobs / GPUs)")
    p.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"),
                   help="auto: every visible GPU, else the CPU")
    p.add_argument("--backend", default="loky", choices=BACKENDS,
                   help="joblib backend: loky (this machine), dask or ray (a cluster)")
    p.add_argument("--scheduler", default=None,
                   help="dask scheduler address (tcp://host:8786) or ray address; without it a "
                        "local dask cluster / local ray")
    p.add_argument("--retries", type=int_at_least(0), default=1, metavar="N",
                   help="retry a failed run up to N times (default 1)")
    p.add_argument("--results", default=None,
                   help=f"records go to RESULTS/<grid>/ (default results, or {SMOKE_RESULTS} "
                        "for smoke runs)")
    p.add_argument("--checkpoints", default=None,
                   help="checkpoint folder (default: checkpoints/<grid> beside RESULTS)")
    p.add_argument("--checkpoint-every", type=int_at_least(1), default=10, metavar="EPOCHS",
                   help="checkpoint a run's full state every N epochs (default 10)")
    p.add_argument("--threads", type=int_at_least(1), default=None, metavar="N",
                   help="torch threads per run (default: $OMP_NUM_THREADS if set, else CPU "
                        "cores // jobs)")
    p.add_argument("--data-root", default=None, help="dataset folder (default: $DATA_ROOT)")
    p.add_argument("--download", action="store_true",
                   help="fetch missing datasets of the grid (those torchvision can download) "
                        "before any run starts")
    p.add_argument("--stale-lock-minutes", type=_stale_minutes, default=10.0, metavar="MIN",
                   help="a run lock without heartbeat this long belongs to a dead runner "
                        f"(default 10, at least {MIN_STALE_LOCK_MINUTES:g})")
    p.add_argument("--no-wait", action="store_true",
                   help="at the end, do not wait for runs another runner is still training")
    p.add_argument("--fuse-seeds", action="store_true",
                   help="train the seeds of each cell together as one fused model (batch-loop "
                        "methods: standard, mentornet, coteaching, coteaching_plus, decoupling, "
                        "jocor; without augmentation; pays on a GPU, not on a CPU)")
    p.add_argument("--compile", action="store_true",
                   help="compile the networks with torch.compile (each run first spends "
                        "seconds to minutes compiling; pays on long GPU runs)")
    p.add_argument("--no-reuse", action="store_true",
                   help="train every run even when another grid under RESULTS recorded the "
                        "identical configuration (same run_id); by default that record is copied")
    p.add_argument("--only", nargs="*", default=[], metavar="KEY=VALUE",
                   help="run only matching cells, e.g. method=jocor noise_rate=0.2,0.5 "
                        "select_on=ce (a run field or a method parameter)")
    p.add_argument("--dry-run", action="store_true",
                   help="list the cells and what would run; run nothing")
    p.add_argument("--limit-train", type=int, default=None, metavar="N",
                   help="smoke run: train on the first N training images (records marked "
                        f"smoke, written to {SMOKE_RESULTS}/, never reported)")
    p.add_argument("--limit-test", type=int, default=None, metavar="M",
                   help="smoke run: score the first M test images (default: N)")
    p.add_argument("--epochs", type=int, default=None, metavar="E",
                   help="smoke run: train E epochs from each run's start epoch")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)

    s = sub.add_parser("status", help="done / failed / running / pending per cell of a grid")
    s.add_argument("grid", nargs="?", help="grid YAML file")
    s.add_argument("--results", default="results")
    s.add_argument("--only", nargs="*", default=[], metavar="KEY=VALUE")
    s.add_argument("--retries", type=int_at_least(0), default=1,
                   help="as given to `run` (failed runs with attempts left count as to run)")
    s.add_argument("--stale-lock-minutes", type=_stale_minutes, default=10.0)
    s.set_defaults(func=cmd_status)


def _grid_and_filters(args: argparse.Namespace) -> tuple[str, list[str]]:
    """The grid file and the ``--only`` filters, also when the grid came after ``--only``."""
    only = list(args.only)
    grid = args.grid
    if grid is None:
        files = [o for o in only if "=" not in o
                 and (o.endswith((".yaml", ".yml")) or Path(o).is_file())]
        if len(files) != 1:
            raise ConfigError("a grid file is required, e.g. python -m bench "
                              f"{args.command} bench/grids/demo.yaml")
        grid = files[0]
        only.remove(grid)
    bad = [o for o in only if "=" not in o]
    if bad:
        raise ConfigError(f"--only takes KEY=VALUE filters, got {bad[0]!r}")
    return grid, only


def _options(args: argparse.Namespace) -> RunnerOptions:
    if args.scheduler is not None and args.backend == "loky":
        raise ConfigError("--scheduler needs --backend dask or ray")
    if args.backend == "dask" and args.scheduler is not None and not re.fullmatch(
            r"([a-z]+://)?[\w.\-\[\]:]+:\d+", args.scheduler):
        raise ConfigError(f"--scheduler takes an address such as tcp://host:8786, "
                          f"got {args.scheduler!r}")
    devices = tuple(d.strip() for d in args.devices.split(",") if d.strip())
    for d in devices:
        if not re.fullmatch(r"cuda(:\d+)?|cpu", d):
            raise ConfigError(f"--devices takes names such as cuda:0,cuda:1, got {d!r}")
    for flag in ("jobs", "runs_per_device", "threads"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be >= 1")
    return RunnerOptions(
        results=Path(args.results),
        checkpoints=Path(args.checkpoints) if args.checkpoints else None,
        jobs=args.jobs, backend=args.backend, scheduler=args.scheduler, device=args.device,
        devices=devices, runs_per_device=args.runs_per_device, retries=args.retries,
        checkpoint_every=args.checkpoint_every, threads=args.threads, data_root=args.data_root,
        progress=not args.no_progress, stale_lock_minutes=args.stale_lock_minutes,
        wait=not args.no_wait, reuse=not args.no_reuse, fuse_seeds=args.fuse_seeds,
        compile=args.compile)


def cmd_run(args: argparse.Namespace) -> int:
    grid_path, only = _grid_and_filters(args)
    limits = {k: getattr(args, k) for k in ("limit_train", "limit_test", "epochs")}
    smoke = any(v is not None for v in limits.values())
    if smoke and args.results is not None and Path(args.results).resolve().name == "results":
        raise ConfigError(f"smoke runs are never written to results/; use --results "
                          f"{SMOKE_RESULTS} (the default) or another folder")
    args.results = args.results or (SMOKE_RESULTS if smoke else "results")
    opts = _options(args)
    grid = load_grid(grid_path)
    runs = filter_runs(grid.runs, only)
    if not runs:
        raise ConfigError(f"no run of grid {grid.name} matches {' '.join(only)}")
    all_runs = grid.runs
    if smoke:
        runs = [smoke_spec(r, **limits) for r in runs]
        all_runs = [smoke_spec(r, **limits) for r in grid.runs]
    if args.dry_run:
        return _print_table(grid.name, runs, results=opts.results, retries=opts.retries,
                            stale_minutes=opts.stale_lock_minutes, dry_run=True,
                            reuse=opts.reuse,
                            threads=opts.threads or _default_threads(opts.jobs or 1))
    if args.download:
        download_datasets(runs, data_root=opts.data_root)
    return _Session(grid.name, runs, opts, grid_run_ids=[r.run_id for r in all_runs]).run()


def download_datasets(runs: Iterable[RunSpec], *, data_root: str | None = None) -> None:
    """Fetch each dataset of ``runs`` once, here, so that parallel workers never download."""
    from bench.data import load_dataset

    for name in sorted({r.dataset for r in runs}):
        print(f"checking {name} (downloading what is missing)", flush=True)
        try:
            load_dataset(name, root=data_root, download=True)
        except BenchError:
            raise
        except Exception as exc:  # offline, a proxy, a full disk: torchvision's long traceback
            raise BenchError(f"cannot download {name}: {type(exc).__name__}: "
                             f"{_first_line(str(exc))}; without network, put its files under "
                             "the data root (docs/datasets.md)") from None


def cmd_status(args: argparse.Namespace) -> int:
    grid_path, only = _grid_and_filters(args)
    grid = load_grid(grid_path)
    runs = filter_runs(grid.runs, only)
    return _print_table(grid.name, runs, results=Path(args.results), retries=args.retries,
                        stale_minutes=args.stale_lock_minutes, dry_run=False)


# ---- status tables -----------------------------------------------------------------------------

def cell_counts(runs: list[RunSpec], states: dict[str, str]) -> list[dict[str, Any]]:
    """One row per cell (dataset x noise setting x method label), counts over seeds."""
    rows: dict[tuple, dict[str, Any]] = {}
    for spec in runs:
        key = (spec.dataset, spec.noise_label, spec.label)
        row = rows.setdefault(key, {"dataset": key[0], "noise": key[1], "method": key[2],
                                    "done": 0, "failed": 0, "running": 0, "pending": 0,
                                    "to run": 0})
        s = states[spec.run_id]
        row[{"ok": "done", "retry": "failed"}.get(s, s)] += 1
        row["to run"] += s in ("pending", "retry")
    return list(rows.values())


def _print_table(grid_name: str, runs: list[RunSpec], *, results: Path, retries: int,
                 stale_minutes: float, dry_run: bool, reuse: bool = True,
                 threads: int = 1) -> int:
    from tabulate import tabulate

    state = GridState(Path(results) / grid_name, max_attempts=retries + 1,
                      stale_seconds=stale_minutes * 60.0)
    states = state.states(runs)
    rows = cell_counts(runs, states)
    columns = ["dataset", "noise", "method", "done", "failed", "running", "pending"]
    if dry_run:
        columns.append("to run")
    totals = {c: sum(r[c] for r in rows) for c in columns[3:]}
    table = [[r[c] for c in columns] for r in rows]
    table.append(["total", "", f"{len(rows)} cells"] + [totals[c] for c in columns[3:]])
    print(f"grid {grid_name} ({Path(results) / grid_name}): {len(runs)} runs")
    print(tabulate(table, headers=columns, tablefmt="simple"))
    _print_left_out(state.damaged.values())
    live = state.live_locks()
    for spec in runs:
        info = live.get(spec.run_id)
        if info is not None and states[spec.run_id] == "running":
            epoch = info.get("epoch")
            progress = f"epoch {epoch}/{info.get('epochs')}" if epoch else "starting"
            print(f"  running: {spec.label} {spec.dataset} {spec.noise_label} s{spec.seed} on "
                  f"{info.get('host')} pid {info.get('pid')} {info.get('device') or ''} "
                  f"({progress})")
    pending = [s for s in runs if states[s.run_id] == "pending"]
    twins = {s.run_id for s in pending if find_twin(state.grid_dir, s.run_id) is not None}
    if twins:
        print(f"  {len(twins)} pending run(s) have an identical record in another grid's folder: "
              + ("`run` copies them instead of training them (--no-reuse trains them)" if reuse
                 else "with --no-reuse they train again"))
    if not reuse:
        twins = set()
    if dry_run:
        to_run = [s for s in runs if states[s.run_id] in ("pending", "retry")
                  and s.run_id not in twins]
        print(f"{len(to_run)} run(s) would run")
        for line in _estimate_lines(_estimate(to_run)) + _cpu_estimate_lines(to_run, threads):
            print(line)
    return 0


def _print_left_out(damaged: Iterable[tuple[Path, str]]) -> None:
    damaged = sorted(damaged)
    if damaged:
        print(f"left out: {len(damaged)} damaged record(s), counted as pending (`run` moves "
              f"them aside and trains their runs again):")
    for path, reason in damaged:
        print(f"  {path}: {reason}")


def _estimate_lines(estimate: dict | None) -> list[str]:
    if not estimate:
        return []
    if "unavailable" in estimate:
        return [f"no GPU-hour estimate: {estimate['unavailable']}"]
    hours = estimate.get("gpu_hours")
    if not isinstance(hours, (int, float)):
        return []
    source = estimate.get("throughput_source")
    lines = [f"estimated GPU-hours: {hours:.3g}"
             + (f" (throughput: {source})" if source else "")]
    by_method = estimate.get("by_method")
    if isinstance(by_method, dict) and by_method:
        lines.append("  by method: " + ", ".join(
            f"{k} {v:.3g}" for k, v in sorted(by_method.items(), key=lambda kv: -kv[1])))
    rates = estimate.get("throughput")
    if isinstance(rates, dict) and rates:
        lines.append("  GPU rates assumed (training images/s per network): " + ", ".join(
            f"{k} {v:,.0f}" for k, v in sorted(rates.items())))
    lines += [f"  assuming {a}" for a in estimate.get("assumptions") or []]
    return lines


def _cpu_estimate_lines(runs: list[RunSpec], threads: int) -> list[str]:
    """CPU-hours of ``runs`` on this machine, from cached or freshly calibrated rates."""
    if not runs:
        return []
    try:
        from bench.perf import estimate_grid_cpu_hours

        est = estimate_grid_cpu_hours(runs, threads=threads, log=print)
    except Exception as exc:  # an estimate must never stop a dry run
        return [f"no CPU-hour estimate: {type(exc).__name__}: {_first_line(str(exc))}"]
    lines = [f"estimated CPU-hours on this machine: {est['cpu_hours']:.3g}, one run after "
             f"another at {est['threads']} thread(s) per run (--jobs J: about 1/J of it when "
             f"J x {est['threads']} cores are free)"]
    lines.append("  CPU rates (training images/s): " + ", ".join(
        f"{label} {rate:,.0f} ({est['sources'][label]})"
        for label, rate in sorted(est["rates"].items())))
    lines.append(f"  on {est['device']}")
    return lines


def _estimate(runs: list[RunSpec]) -> dict | None:
    if not runs:
        return None
    try:
        from bench.perf import estimate_grid_hours
    except (ImportError, AttributeError):
        return None
    try:
        return dict(estimate_grid_hours(runs))
    except Exception as exc:  # an estimate must never stop a dry run
        return {"unavailable": f"{type(exc).__name__}: {exc}"}
