"""What a worker process does with the runs it is sent: claim, train, record.

One :class:`Task` is one run, with everything the worker needs (paths, device pool, limits);
:func:`execute` claims the run's lock, settles runs that need no training (recorded meanwhile,
out of attempts, or copied from another grid's identical run), takes a device slot, trains
through :func:`bench.engine.run` (several seeds of one cell as one fused model,
:mod:`bench.fused_run`) and writes each record. It reports back small outcomes and never raises
for a run's failure.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import locks, store
from bench.config import RunSpec
from bench.errors import BenchError
from bench.grid.state import attempts, find_twin

__all__ = ["Task", "outcome", "execute", "take_device", "failed_record"]


@dataclass(frozen=True)
class Task:
    """One run as a worker receives it."""

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


Held = tuple[Task, locks.RunLock, "dict | None"]  # a claimed run, its lock and its previous record


def outcome(task: Task, status: str, *, record: dict | None = None, error: str | None = None,
            fresh: bool = True) -> dict:
    """What a task reports back: small, so that nothing heavy crosses the wire."""
    rec = record or {}
    return {"run_id": task.spec.run_id, "status": status, "fresh": fresh,
            "attempts": attempts(record) if record else 0,
            "test_acc_last10": rec.get("test_acc_last10"),
            "wall_seconds": rec.get("wall_seconds"), "device": rec.get("device"),
            "error": error if error is not None else rec.get("error"),
            "warnings": list(rec.get("warnings") or []) if fresh else [],
            "reused_from": rec.get("reused_from", {}).get("grid") if fresh else None}


def _reuse(task: Task, twin: Path, rec: dict) -> dict:
    """The twin's record, relabelled for this grid, saying where it was trained."""
    spec = task.spec
    out = dict(rec)
    out.update(grid=spec.grid, label=spec.label, reference=dict(spec.reference),
               reused_from={"grid": rec.get("grid", twin.parent.name), "record": twin.name})
    return out


def _settle(task: Task) -> tuple[dict | None, dict | None]:
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
                                 or attempts(previous) >= task.max_attempts):
        return outcome(task, previous.get("status", "failed"), record=previous,
                       fresh=False), previous
    twin = find_twin(Path(task.record_path).parent, task.spec.run_id) if task.reuse else None
    if twin is not None:
        record = _reuse(task, *twin)
        store.write_record(task.record_path, record)
        return outcome(task, "ok", record=record), previous
    return None, previous


def take_device(task: Task) -> tuple[str | None, locks.RunLock | None]:
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


def _claim(tasks: list[Task], outcomes: list[dict], held: list[Held]) -> None:
    """Lock each task's run; settled runs go to ``outcomes``, runs to train to ``held``."""
    for task in tasks:
        spec = task.spec
        info = locks.owner_info(runner=task.runner, run_id=spec.run_id, nonce=task.nonce,
                                label=spec.label, epochs=spec.train.epochs)
        try:
            lock = locks.acquire(Path(task.lock_path), info,
                                 stale_seconds=task.stale_seconds, takeover_nonce=task.nonce)
        except OSError as exc:
            outcomes.append(outcome(task, "error", error=f"cannot create the run's lock: {exc}"))
            continue
        if lock is None:
            outcomes.append(outcome(task, "locked"))
            continue
        lock.start_heartbeat(task.heartbeat_seconds)
        try:
            settled, previous = _settle(task)
        except BaseException:
            lock.release()
            raise
        if settled is not None:
            lock.release()
            outcomes.append(settled)
        else:
            held.append((task, lock, previous))


def _train(held: list[Held], device: str | None) -> list[dict]:
    """The records of the held runs, trained on ``device``: one run alone, several fused."""
    import torch

    from bench import engine, fused_run

    first = held[0][0]
    # runs side by side must not each start one thread per core
    torch.set_num_threads(first.threads)
    if len(held) == 1:
        task, lock, _ = held[0]
        return [engine.run(task.spec, device=device, results_dir=None,
                           checkpoint_dir=task.checkpoint_dir, checkpoint_every=task.checkpoint_every,
                           data_root=task.data_root,
                           on_epoch=lambda epoch, _m: lock.set_progress(epoch=epoch + 1),
                           compile=first.compile)]
    return fused_run.run_fused(
        [t.spec for t, _, _ in held], device=device, data_root=first.data_root,
        on_epoch=lambda g, epoch: held[g][1].set_progress(epoch=epoch + 1), compile=first.compile)


def execute(tasks: list[Task]) -> list[dict]:
    """Claim, train and record runs (in a worker process); never raises for a run's failure.

    One task is one run. Several tasks are the seeds of one cell: those this worker can claim
    train together as one fused model (:mod:`bench.fused_run`), each with its own record.
    """
    first = tasks[0]
    host, pid, start = first.runner_process
    if host == locks.HOST and not locks.pid_alive(pid, start):
        # a loky worker outlives a runner killed with SIGKILL; leave queued runs to the next one
        return [outcome(t, "abandoned") for t in tasks]
    outcomes: list[dict] = []
    held: list[Held] = []
    slot = None
    try:
        _claim(tasks, outcomes, held)
        if not held:
            return outcomes
        device, slot = take_device(first)
        for _, lock, _ in held:
            lock.set_progress(device=device)
        for (task, _, previous), record in zip(held, _train(held, device)):
            record["attempts"] = attempts(previous) + 1
            store.write_record(task.record_path, record)
            outcomes.append(outcome(task, record["status"], record=record))
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
    return outcomes + [outcome(t, "error", error=error) for t, _, _ in held
                       if t.spec.run_id not in done]


def failed_record(spec: RunSpec, error: str, *, attempts: int, device: str | None,
                  host: str | None) -> dict:
    """A complete ``failed`` record for a run whose worker died before it could write one."""
    from bench import engine

    record = engine.failed_record(spec, error, device=device)
    record["attempts"] = attempts
    if host:
        record["env"]["hostname"] = host
    return record
