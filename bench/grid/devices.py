"""Where the runs of a session train: one device for all, or a pool of GPU slots, and how many
torch threads each run gets."""

from __future__ import annotations

import math
import os

from bench.errors import BenchError
from bench.grid.options import RunnerOptions

__all__ = ["device_pool", "default_threads"]


def device_pool(options: RunnerOptions) -> tuple[str | None, tuple[str, ...]]:
    """(device for every run, or None; the slots of the GPU pool, one per concurrent run).

    The pool is ``--devices``, else every visible GPU (unless ``--device cpu``); each GPU gives
    ``--runs-per-device`` slots (default: jobs / GPUs). A cluster's workers pick their own device.
    """
    remote = options.backend != "loky" and options.scheduler is not None
    pool: list[str] = list(options.devices)
    if not pool and options.device != "cpu" and not remote:
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if options.device == "cuda" and n == 0:
            raise BenchError("--device cuda, but this machine has no visible GPU")
        pool = [f"cuda:{i}" for i in range(n)]
    if not pool:
        # a cluster's workers pick their own device ("auto": their GPU if they have one)
        return (options.device if remote and options.device != "cpu" else "cpu"), ()
    per = options.runs_per_device or max(1, math.ceil((options.jobs or len(pool)) / len(pool)))
    return None, tuple(d for _ in range(per) for d in pool)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_threads(jobs: int) -> int:
    """CPU cores // jobs, or ``OMP_NUM_THREADS`` when set (an explicit choice of the user)."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, _cpu_count() // jobs)
