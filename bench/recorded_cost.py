"""CPU-hours of runs still to train, from the wall seconds of runs this machine already finished.

The calibrated estimate (:mod:`bench.cpu_cost`) times one training step of a network in
isolation; a run also evaluates the test set every epoch, ranks its samples, checkpoints, and
shares the machine with the runs beside it. A finished record's ``wall_seconds`` holds all of
that. Runs cost the same when they agree on :func:`cost_key` (method, network, dataset, epochs,
batch size, iterations per epoch, training-set limit) and ran on the same host, on the CPU, at the
same torch thread count; a run to come takes the median wall seconds of its finished twins.
"""

from __future__ import annotations

import socket
import statistics
from pathlib import Path
from typing import Any, Iterable, Mapping

from bench.spec import RunSpec
from bench.store import iter_record_paths, read_record

__all__ = ["cost_key", "estimate_from_records", "record_cost_key", "recorded_seconds",
           "scan_recorded_seconds"]

CostKey = tuple[str, str, str, int, int, int | None, int | None]


def cost_key(spec: RunSpec) -> CostKey:
    """What a run's wall time depends on, apart from the machine: (method, network, dataset,
    epochs trained, batch size, iterations per epoch, training images limit)."""
    train = spec.train
    limit = (spec.smoke_limits or {}).get("limit_train")
    return (spec.method, spec.network, spec.dataset, train.epochs - train.start_epoch,
            train.batch_size, train.max_iters_per_epoch, limit)


def record_cost_key(record: Mapping[str, Any]) -> CostKey | None:
    """:func:`cost_key` of the run a record holds; None when the record lacks a field."""
    train = record.get("train")
    if not isinstance(train, Mapping):
        return None
    try:
        epochs = int(train["epochs"]) - int(train.get("start_epoch", 0))
        batch = int(train["batch_size"])
    except (KeyError, TypeError, ValueError):
        return None
    limit = (record.get("smoke_limits") or {}).get("limit_train")
    return (str(record.get("method")), str(record.get("network")), str(record.get("dataset")),
            epochs, batch, train.get("max_iters_per_epoch"), limit)


def recorded_seconds(records: Iterable[Mapping[str, Any]], *, host: str, threads: int | None
                     ) -> dict[CostKey, list[float]]:
    """{cost key: wall seconds} of the finished CPU runs of ``host`` at ``threads`` torch
    threads (None: at any thread count, and then CPU-seconds, wall x threads); each run counted
    once (copies of a run into another grid's folder are skipped)."""
    seen: set[str] = set()
    out: dict[CostKey, list[float]] = {}
    for rec in records:
        env = rec.get("env") or {}
        seconds = rec.get("wall_seconds")
        if (rec.get("status") != "ok" or rec.get("reused_from") or rec.get("fused")
                or str(rec.get("device", "")) != "cpu" or env.get("hostname") != host
                or (threads is not None and env.get("cpu_threads") != threads)
                or not isinstance(seconds, (int, float)) or seconds <= 0):
            continue
        if threads is None:
            seconds = seconds * float(env.get("cpu_threads") or 1)
        run_id = str(rec.get("run_id"))
        key = record_cost_key(rec)
        if key is None or run_id in seen:
            continue
        seen.add(run_id)
        out.setdefault(key, []).append(float(seconds))
    return out


def scan_recorded_seconds(results_root: str | Path, *, threads: int | None, host: str | None = None
                          ) -> dict[CostKey, list[float]]:
    """:func:`recorded_seconds` of every record under ``results_root`` (every grid's folder);
    unreadable files are skipped (the status table reports them)."""
    def records() -> Iterable[dict]:
        for path in iter_record_paths(results_root):
            try:
                yield read_record(path)
            except (OSError, ValueError):
                continue
    return recorded_seconds(records(), host=host or socket.gethostname(), threads=threads)


def estimate_from_records(runs: Iterable[RunSpec], seconds: Mapping[CostKey, list[float]], *,
                          threads: int | None) -> dict:
    """CPU-hours of ``runs`` (one after another, at ``threads`` threads each) from the median
    wall seconds of their finished twins in ``seconds`` (``threads`` None: ``seconds`` holds
    CPU-seconds, :func:`recorded_seconds` at any thread count).

    Returns {"cpu_hours": hours of the covered runs, "covered": runs with twins, "uncovered":
    runs without, "records": twins used, "by_method": {method: hours}}.
    """
    hours = 0.0
    covered = uncovered = 0
    used: set[CostKey] = set()
    by_method: dict[str, float] = {}
    for spec in runs:
        key = cost_key(spec)
        twins = seconds.get(key)
        if not twins:
            uncovered += 1
            continue
        run_hours = statistics.median(twins) * (threads or 1) / 3600.0
        hours += run_hours
        covered += 1
        used.add(key)
        by_method[spec.method] = by_method.get(spec.method, 0.0) + run_hours
    return {"cpu_hours": hours, "covered": covered, "uncovered": uncovered,
            "records": sum(len(seconds[k]) for k in used), "by_method": by_method}
