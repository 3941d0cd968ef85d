"""A run's checkpoints: its full state saved every few epochs, and resumed from.

A checkpoint (``<run_id>.pt``) holds the method's state, the run's random generators, the
metrics so far and the elapsed wall time; it is written atomically, the one before it kept as
``<run_id>.pt.prev``. A checkpoint that cannot be read, is another run's or does not fit the
method is moved aside with a warning and the run resumes from the one before it or from
scratch; one that cannot be written is a warning and the run goes on without it. The
checkpoints of a run that finished are removed.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from bench import store
from bench.atomic import atomic_write
from bench.context import RunContext

CHECKPOINT_VERSION = 1


def checkpoint_path(directory: str | Path, run_id: str) -> Path:
    """Where the checkpoint of run ``run_id`` is kept under ``directory``."""
    return Path(directory) / f"{run_id}.pt"


def _previous_checkpoint(path: Path) -> Path:
    """Where the checkpoint before the last one is kept (for when the last one is damaged)."""
    return path.with_name(path.name + ".prev")


def _warn(warnings: list[str], message: str, *, once_per: str | None = None) -> None:
    """A problem the run survives, kept in the record's ``warnings`` (which the runner prints
    with the run's line), once per message (or per message starting with ``once_per``)."""
    if not any(w.startswith(once_per or message) for w in warnings):
        warnings.append(message)


def save_checkpoint(path: Path, next_epoch: int, method, ctx: RunContext, metrics: dict,
                     elapsed: float, warnings: list[str]) -> None:
    """Write the run's full state atomically, keeping the previous checkpoint as ``.prev``.

    A checkpoint that cannot be written (a full or read-only disk) is a warning: the run goes
    on without it and the last good checkpoint stays.
    """
    state = {"version": CHECKPOINT_VERSION, "run_id": ctx.spec.run_id, "next_epoch": next_epoch,
             "method": method.state_dict(), "rng": ctx.rng_state(),
             "metrics": json.dumps(metrics), "elapsed": elapsed}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda fh: torch.save(state, fh), previous=_previous_checkpoint(path))
    except (OSError, RuntimeError) as exc:  # torch reports a full disk as a RuntimeError
        _warn(warnings, f"cannot write checkpoint {path} ({_first_line(exc)}); the run goes "
                        "on without it", once_per=f"cannot write checkpoint {path} ")


def _read_checkpoint(path: Path, run_id: str) -> dict:
    """The state saved in ``path``, checked to be a whole checkpoint of this version and run."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    missing = {"version", "next_epoch", "method", "rng", "metrics", "elapsed"} - set(state)
    if missing:
        raise ValueError(f"no {', '.join(sorted(missing))}")
    if state["version"] != CHECKPOINT_VERSION:
        raise ValueError(f"unknown version {state['version']!r}")
    if state.get("run_id", run_id) != run_id:  # checkpoints before run_id was kept: trusted
        raise ValueError(f"it is run {state['run_id']}'s")
    return state


def _check_fits(method, state: dict) -> None:
    """The checkpoint holds exactly the method's state entries (a method's ``load_state_dict``
    takes what it is given: another version's checkpoint would leave some state new, some old)."""
    have, want = set(state), set(method.state_dict())
    if have != want:
        extra, absent = sorted(have - want), sorted(want - have)
        raise ValueError("; ".join(part for part in (
            f"unknown {', '.join(extra)}" if extra else "",
            f"no {', '.join(absent)}" if absent else "") if part))


def load_checkpoint(path: Path, method, ctx: RunContext,
                     warnings: list[str]) -> tuple[int, dict, float] | None:
    """(next epoch, metrics, elapsed seconds) from the last readable checkpoint (``path``, else
    the one before it), or None to start from scratch. A checkpoint that cannot be read, is
    another run's, or lacks or adds state entries of the method is moved aside
    (``<name>.damaged-<time>``) with a warning naming it. One whose entries the method then
    refuses (a tensor of another shape) is moved aside too and the attempt fails, as the state
    may be half loaded; the next attempt starts from the checkpoint before it or from scratch."""
    for candidate in (path, _previous_checkpoint(path)):
        if not candidate.is_file():
            continue
        try:
            state = _read_checkpoint(candidate, ctx.spec.run_id)
            _check_fits(method, state["method"])
        except Exception as exc:  # truncated, another format, another run or method version
            then = ("resuming from the checkpoint before it, if any, else from scratch"
                    if candidate == path else "starting from scratch")
            _warn(warnings, f"checkpoint {candidate} cannot be read ({_first_line(exc)}); "
                            f"{_set_aside(candidate)}, {then}")
            continue
        try:
            method.load_state_dict(state["method"])
            ctx.set_rng_state(state["rng"])
        except Exception as exc:
            raise RuntimeError(f"checkpoint {candidate} does not fit this run, "
                               f"{_set_aside(candidate)} ({_first_line(exc)})") from exc
        return int(state["next_epoch"]), json.loads(state["metrics"]), float(state["elapsed"])
    return None


def _set_aside(path: Path) -> str:
    """Move a damaged checkpoint aside; says where (or why it stays, to be skipped again)."""
    try:
        return f"moved to {store.move_aside(path).name}"
    except OSError as exc:
        return f"left in place ({exc.strerror or exc})"


def _first_line(exc: BaseException) -> str:
    """The error's first sentence (torch's go on with advice), or its type's name."""
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    end = text.find(". ", 40)
    return text[:end] if end > 0 else text


def remove_checkpoints(path: Path) -> None:
    """Remove a finished run's checkpoint and the one before it."""
    for p in (path, _previous_checkpoint(path)):
        p.unlink(missing_ok=True)
