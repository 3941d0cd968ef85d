"""CPU-hours of runs on this machine, from training rates measured here once and cached.

A run's network-images (:func:`bench.cost_model.network_images`) are divided by this CPU's
training images per second for the run's (network, input shape, classes, batch), measured by a
short timing of the benchmark's engine step (:func:`bench.perf_steps.engine_step`) and cached
per CPU model and thread count in :func:`cache_path`, so that a dry run measures each
combination once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterable

import torch

from bench.atomic import atomic_write_json
from bench.config import RunSpec
from bench.cost_model import dataset_facts, network_images
from bench.perf_steps import NETWORKS_PER_RUN, device_name, engine_step, time_steps

CALIBRATION_SECONDS = 0.3         # timed region of one calibration


def cache_path() -> Path:
    """The per-device cache of measured CPU throughput: ``$LNLBENCH_CACHE/perf-cpu.json``,
    else ``$XDG_CACHE_HOME/lnlbench/perf-cpu.json`` (``~/.cache/lnlbench/perf-cpu.json``)."""
    root = os.environ.get("LNLBENCH_CACHE")
    if root:
        return Path(root).expanduser() / "perf-cpu.json"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "lnlbench" / "perf-cpu.json"


def cpu_key(spec: RunSpec) -> tuple[str, str, tuple[int, int, int], int, int]:
    """What a run's CPU rate depends on: (label, network, input shape, classes, batch)."""
    facts = dataset_facts(spec.dataset)
    label = (f"{spec.network} {'x'.join(map(str, facts.shape))} {facts.classes} classes "
             f"batch {spec.train.batch_size}")
    return label, spec.network, facts.shape, facts.classes, spec.train.batch_size


def calibrate_cpu(network: str, shape: tuple[int, int, int], classes: int, batch: int) -> float:
    """Training images per second per network of the engine step on this CPU (a short timing)."""
    torch.manual_seed(0)
    step = engine_step(network, shape, batch=batch, device=torch.device("cpu"),
                       num_classes=classes, n=batch * 8)
    # the blocks are sized by the first, untimed steps: a ResNet takes two steps, an MLP many
    _, seconds_per_step = time_steps(step, warmup=0, steps=None,
                                     min_seconds=CALIBRATION_SECONDS)
    return NETWORKS_PER_RUN * batch / seconds_per_step


def read_cache(path: Path) -> dict:
    """The cache's {device: {label: images/s}}; {} when missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_cache(path: Path, data: dict) -> None:
    """Store the cache; a read-only home only means measuring again next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, data, indent=1, sort_keys=True)
    except OSError:
        pass


def cpu_rates(runs: Iterable[RunSpec], *, threads: int | None = None, calibrate: bool = True,
              cache: Path | None = None, log: Callable[[str], None] | None = None
              ) -> tuple[dict[str, float], dict[str, str], str]:
    """(label -> CPU training images/s, label -> "cached" | "measured now" | "unmeasured",
    device) for the (network, input shape, classes, batch) combinations of ``runs``, at
    ``threads`` torch threads (default: the current count).

    Rates come from :func:`cache_path` (keyed by the CPU model and thread count); missing ones
    are measured with a short calibration (``calibrate``) and cached.
    """
    cache = cache or cache_path()
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        device = device_name(torch.device("cpu"))
        data = read_cache(cache)
        known = data.get(device, {})
        rates: dict[str, float] = {}
        sources: dict[str, str] = {}
        for label, network, shape, classes, batch in sorted({cpu_key(r) for r in runs}):
            if isinstance(known.get(label), (int, float)) and known[label] > 0:
                rates[label], sources[label] = float(known[label]), "cached"
            elif calibrate:
                if log is not None:
                    log(f"calibrating the CPU throughput of {label} (once; cached in {cache})")
                rates[label] = known[label] = calibrate_cpu(network, shape, classes, batch)
                sources[label] = "measured now"
            else:
                sources[label] = "unmeasured"
        if "measured now" in sources.values():
            data[device] = known
            write_cache(cache, data)
        return rates, sources, device
    finally:
        torch.set_num_threads(before)


def estimate_grid_cpu_hours(runs: Iterable[RunSpec], *, threads: int | None = None,
                            calibrate: bool = True, cache: Path | None = None,
                            log: Callable[[str], None] | None = None) -> dict:
    """Estimated CPU-hours of run specifications on this machine: the same network-images as
    :func:`bench.cost_model.estimate_grid_hours`, divided by this CPU's measured training
    images per second for each (network, input shape, classes, batch) of the runs
    (:func:`cpu_rates`), each run at ``threads`` torch threads. Hours of one run after another;
    ``--jobs J`` runs side by side take about 1/J of it when J x threads cores are free.

    Returns {"cpu_hours": total or None (a rate unmeasured), "runs": count, "by_method":
    {method: hours}, "rates": {label: images/s}, "sources": {label: where from}, "device": str,
    "threads": int}.
    """
    specs = list(runs)
    rates, sources, device = cpu_rates(specs, threads=threads, calibrate=calibrate,
                                       cache=cache, log=log)
    by_method: dict[str, float] = {}
    total: float | None = 0.0
    for spec in specs:
        label = cpu_key(spec)[0]
        if label not in rates:
            total = None
            continue
        hours = network_images(spec) / rates[label] / 3600.0
        by_method[spec.method] = by_method.get(spec.method, 0.0) + hours
        total = None if total is None else total + hours
    return {"cpu_hours": total, "runs": len(specs), "by_method": by_method, "rates": rates,
            "sources": sources, "device": device, "threads": threads or torch.get_num_threads()}
