"""What a dry run says a grid will cost: GPU-hours from the perf cost model, CPU-hours on this
machine from measured rates (:mod:`bench.perf`), and CPU-hours from the wall seconds of the runs
this machine already finished (:mod:`bench.recorded_cost`). An estimate never stops a dry run:
what cannot be estimated is one line saying why."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from bench.cli import first_line
from bench.config import RunSpec

__all__ = ["estimate_lines", "recorded_lines"]


def _gpu_estimate(runs: list[RunSpec]) -> dict | None:
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


def _gpu_lines(estimate: dict | None) -> list[str]:
    if not estimate:
        return []
    if "unavailable" in estimate:
        return [f"no GPU-hour estimate: {estimate['unavailable']}"]
    hours = estimate.get("gpu_hours")
    if not isinstance(hours, (int, float)):
        return []
    source = estimate.get("throughput_source")
    lines = [f"estimated GPU-hours: {hours:.3g}" + (f" (throughput: {source})" if source else "")]
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


def _cpu_lines(runs: list[RunSpec], threads: int, log: Callable[[str], None]) -> list[str]:
    """CPU-hours of ``runs`` on this machine, from cached or freshly calibrated rates."""
    if not runs:
        return []
    try:
        from bench.perf import estimate_grid_cpu_hours

        est = estimate_grid_cpu_hours(runs, threads=threads, log=log)
    except Exception as exc:  # an estimate must never stop a dry run
        return [f"no CPU-hour estimate: {type(exc).__name__}: {first_line(str(exc))}"]
    lines = [f"estimated CPU-hours on this machine: {est['cpu_hours']:.3g}, one run after "
             f"another at {est['threads']} thread(s) per run (--jobs J: about 1/J of it when "
             f"J x {est['threads']} cores are free)"]
    lines.append("  CPU rates (training images/s): " + ", ".join(
        f"{label} {rate:,.0f} ({est['sources'][label]})"
        for label, rate in sorted(est["rates"].items())))
    lines.append(f"  on {est['device']}")
    return lines


def recorded_lines(runs: list[RunSpec], threads: int | None, results: Path | None) -> list[str]:
    """CPU-hours of ``runs`` from the finished runs under ``results`` that cost the same, at
    ``threads`` torch threads (None: finished runs at any thread count, as CPU-seconds)."""
    if not runs or results is None:
        return []
    try:
        from bench.recorded_cost import estimate_from_records, scan_recorded_seconds

        est = estimate_from_records(runs, scan_recorded_seconds(results, threads=threads),
                                    threads=threads)
    except Exception as exc:  # an estimate must never stop a dry run
        return [f"no estimate from finished runs: {type(exc).__name__}: {first_line(str(exc))}"]
    at = f"{threads} thread(s)" if threads else "any thread count"
    if not est["covered"]:
        return [f"from finished runs: none under {results} has the method, network, dataset, "
                f"epochs and batch of a run to run on this host at {at}"]
    lines = [f"from finished runs on this host: {est['cpu_hours']:.3g} CPU-hours for "
             f"{est['covered']} of the {len(runs)} run(s) to run, each at the median wall time "
             f"of its twins ({est['records']} records of the same method, network, dataset, "
             f"epochs and batch at {at} under {results})"]
    lines.append("  by method: " + ", ".join(
        f"{k} {v:.3g}" for k, v in sorted(est["by_method"].items(), key=lambda kv: -kv[1])))
    if est["uncovered"]:
        lines.append(f"  {est['uncovered']} run(s) have no such record and are not counted")
    lines.append("  their wall times include whatever shared the machine with them; "
                 "--jobs J side by side take about 1/J of it as wall time")
    return lines


def estimate_lines(runs: list[RunSpec], *, threads: int, results: Path | None = None,
                   log: Callable[[str], None] = print) -> list[str]:
    """The GPU-hour and CPU-hour lines of a dry run of ``runs`` at ``threads`` per run; with
    ``results`` (the records root) also the CPU-hours from the finished runs there; ``log``
    receives what a calibration of the CPU rates prints while it measures."""
    return (_gpu_lines(_gpu_estimate(runs)) + _cpu_lines(runs, threads, log)
            + recorded_lines(runs, threads, results))
