"""Training throughput: the official codes' loop, the suite's engine, and fused runs.

``python -m bench.perf [--device cpu|cuda] [--network mlp,cnn6] [--runs N] [--steps S]
[--batch 128] [--compile] [--quick] [--out reports/perf.md]`` measures, in one process, the
images per second of Co-teaching's training step (both networks: forward, backward, update;
batch 128, synthetic uint8 images of the network's input shape) along three paths, built by
:mod:`bench.perf_steps`:

(a) ``reference``: the loop of the official Co-teaching code (DataLoader, per-sample
    ToTensor, fp32, per-step host sort);
(b) ``engine``: the suite's step of one run (:class:`bench.engine.RunContext` and the method's
    own batch loss);
(c) ``fused``: N runs trained as one model, the same loop over the batch loss vmapped
    (:func:`bench.fused.vmap_loss`).

Throughput counts the images of every network (network-images per second), so the three
compare directly. The report gives the ratios (b)/(a) and (c)/(a), the training FLOPs per
image (:func:`bench.cost_model.train_flops_per_image`), the FLOP/s achieved and, on CUDA, its
share of 400 TFLOP/s (the effective bf16 rate taken as the physical limit of an H100). It is
written to ``--out`` (markdown, :mod:`bench.perf_report`) and beside it as JSON, which
:mod:`bench.cost_model` reads back for its GPU-hour estimates. ``--quick`` is a short CPU-sized
run (one network, 0.2 s per row).

The cost model's entry points (:func:`estimate_grid_hours`, :func:`estimate_grid_cpu_hours`,
:data:`H100_TARGETS`) are importable from here too.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch

from bench.cost_model import (H100_TARGETS, PHYSICAL_LIMIT_FLOPS, estimate_grid_hours,
                              input_shape, train_flops_per_image)
from bench.cpu_cost import estimate_grid_cpu_hours
from bench.perf_report import MODE_LABELS, MODES, fmt, render_markdown
from bench.perf_steps import (NETWORKS_PER_RUN, device_name, engine_step, fused_step,
                              reference_step, time_steps)

# the cost model's entry points, which the dry run and the GPU check call from here
__all__ = ["H100_TARGETS", "estimate_grid_cpu_hours", "estimate_grid_hours", "MODES",
           "MODE_LABELS", "default_networks", "measure", "ratios", "run_benchmark",
           "parse_args", "main"]

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "reports" / "perf.md"
DEFAULT_NETWORKS = 3              # networks measured when --network is not given


def default_networks(cuda: bool) -> list[str]:
    """The registered networks with an H100 target, the cheapest three on a CPU (a short run)
    and the costliest three on CUDA (the small ones are launch-bound there), by training FLOPs
    of their benchmark input."""
    from bench.registry import NETWORKS

    with_target = [n for n in NETWORKS.names() if n in H100_TARGETS]
    by_cost = sorted(with_target, key=lambda n: train_flops_per_image(n, input_shape(n)),
                     reverse=cuda)
    return by_cost[:DEFAULT_NETWORKS]


def vmap_fallbacks(step: Callable[[], None]) -> list[str]:
    """Run ``step`` once and list the ops vmap had no batching rule for (each is a slow loop
    over the runs); the warning is off while timing."""
    switch = getattr(torch._C._functorch, "_set_vmap_fallback_warning_enabled", None)
    if switch is None:
        step()
        return []
    switch(True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            step()
    finally:
        switch(False)
    found: list[str] = []
    for w in caught:
        text = str(w.message)
        if "batching rule" in text:
            op = text.split("batching rule for ", 1)[-1].split(".")[0]
            if op not in found:
                found.append(op)
    return found


def _build_step(network: str, mode: str, row: dict[str, Any], *, device: torch.device, batch: int,
                runs: int, workers: int, compile: bool) -> Callable[[], None]:
    shape = input_shape(network)
    n = 50_000 if device.type == "cuda" else batch * 16
    if mode == "reference":
        return reference_step(network, shape, batch=batch, device=device, workers=workers, n=n)
    if mode == "engine":
        return engine_step(network, shape, batch=batch, device=device, compile=compile, n=n)
    step = fused_step(network, shape, batch=batch, runs=runs, device=device, compile=compile,
                      n=n)
    row["vmap_fallbacks"] = vmap_fallbacks(step)
    return step


def measure(network: str, mode: str, *, device: torch.device, batch: int, runs: int,
            warmup: int, steps: int | None, min_seconds: float, workers: int,
            compile: bool) -> dict:
    """One row: network-images/s of one network's Co-teaching step along one path (``mode``)."""
    shape = input_shape(network)
    row: dict[str, Any] = {
        "network": network, "mode": mode, "input_shape": list(shape), "batch": batch,
        "runs": runs if mode == "fused" else 1, "compiled": bool(compile and mode != "reference"),
        "train_flops_per_image": train_flops_per_image(network, shape)}
    torch.manual_seed(0)
    try:
        step = _build_step(network, mode, row, device=device, batch=batch, runs=runs,
                           workers=workers, compile=compile)
        timed, per_step = time_steps(step, warmup=warmup, steps=steps, min_seconds=min_seconds)
    except Exception as exc:  # a path that fails (e.g. compile) must not hide the others
        row.update(error=f"{type(exc).__name__}: {exc}"[:300], images_per_s=None)
        return row
    finally:
        if device.type == "cuda":   # free this row's data and networks before the next one
            gc.collect()
            torch.cuda.empty_cache()
    ips = NETWORKS_PER_RUN * batch * row["runs"] / per_step
    flops = ips * row["train_flops_per_image"]
    row.update(steps=timed, seconds=timed * per_step, images_per_s=ips, flops_per_s=flops,
               share_of_limit=flops / PHYSICAL_LIMIT_FLOPS if device.type == "cuda" else None)
    return row


def ratios(rows: list[dict]) -> dict[str, dict[str, float | None]]:
    """network -> {"engine": (b)/(a), "fused": (c)/(a)}."""
    ref = {r["network"]: r.get("images_per_s") for r in rows if r["mode"] == "reference"}
    out: dict[str, dict[str, float | None]] = {}
    for row in rows:
        if row["mode"] == "reference":
            continue
        base, ips = ref.get(row["network"]), row.get("images_per_s")
        out.setdefault(row["network"], {})[row["mode"]] = ips / base if base and ips else None
    return out


def shipped_grid_estimates() -> tuple[dict, str] | None:
    """({grid: {"runs", "gpu_hours"}}, throughput source) of every grid in bench/grids/."""
    try:
        from bench.config import load_grid

        out, source = {}, ""
        for path in sorted((REPO / "bench" / "grids").glob("*.yaml")):
            grid = load_grid(path)
            est = estimate_grid_hours(list(grid.runs))
            source = est["throughput_source"]
            out[grid.name] = {"runs": len(grid.runs), "gpu_hours": est["gpu_hours"]}
        return out, source
    except Exception:  # the estimate is a bonus of the report; a bad grid must not stop it
        return None


def run_benchmark(*, device: torch.device, networks: list[str], runs: int, batch: int,
                  warmup: int, steps: int | None, min_seconds: float, workers: int,
                  compile: bool, log: Callable[[str], None] = print) -> dict:
    """Every (network, path) row, measured one after another, and the run's environment."""
    rows = []
    for network in networks:
        for mode in MODES:
            row = measure(network, mode, device=device, batch=batch, runs=runs, warmup=warmup,
                          steps=steps, min_seconds=min_seconds, workers=workers,
                          compile=compile)
            rows.append(row)
            log(f"{network:>16} {MODE_LABELS[mode]:<26} "
                f"{fmt(row.get('images_per_s')):>12} images/s"
                + (f"  ({row['error']})" if row.get("error") else ""))
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "device": device_name(device), "device_type": device.type,
            "torch": torch.__version__, "python": platform.python_version(), "batch": batch,
            "runs": runs, "compile": compile, "workers": workers, "rows": rows,
            "ratios": ratios(rows)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    if argv and argv[0] == "--":   # `python -m bench perf -- --device cuda`
        argv = argv[1:]
    p = argparse.ArgumentParser(prog="python -m bench.perf",
                                description=(__doc__ or "").split("\n")[0])
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--network", default=None,
                   help="comma-separated networks (default: of those with an H100 target, the "
                        "three cheapest on CPU, the three costliest on CUDA)")
    p.add_argument("--runs", type=int, default=None, help="runs fused in (c) (2 CPU, 8 CUDA)")
    p.add_argument("--steps", type=int, default=None,
                   help="timed steps per row (default: enough for --min-seconds)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (1 CPU, 20 CUDA)")
    p.add_argument("--min-seconds", type=float, default=None,
                   help="timed seconds per row when --steps is not given (2 CPU, 5 CUDA)")
    p.add_argument("--quick", action="store_true",
                   help="a short run: the cheapest network only, 0.2 s per row, unless "
                        "--network / --min-seconds say otherwise")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader workers of (a) (the official 4 on CUDA; 0 on CPU)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default on CPU: 1, so that the rows compare "
                        "code paths, not how busy the other cores are)")
    p.add_argument("--compile", action="store_true", help="torch.compile in (b) and (c)")
    p.add_argument("--cudnn-benchmark", action="store_true",
                   help="torch.backends.cudnn.benchmark = True (the engine leaves it off)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="markdown report; JSON beside it")
    p.add_argument("--no-grid-estimate", action="store_true",
                   help="leave the shipped grids' GPU-hour estimates out of the report")
    return p.parse_args(argv)


def _benchmark_options(args: argparse.Namespace, cuda: bool) -> dict:
    """run_benchmark's keyword arguments: the command line over the device's defaults."""
    networks = (args.network.split(",") if args.network else
                default_networks(cuda)[:1 if args.quick else None])
    min_seconds = args.min_seconds or (0.2 if args.quick else 5.0 if cuda else 2.0)
    return {"networks": [n.strip() for n in networks if n.strip()],
            "runs": args.runs or (8 if cuda else 2), "batch": args.batch,
            "warmup": args.warmup if args.warmup is not None else (20 if cuda else 1),
            "steps": args.steps, "min_seconds": min_seconds,
            "workers": args.workers if args.workers is not None else (4 if cuda else 0),
            "compile": args.compile}


def _write(result: dict, out: Path) -> str:
    out.parent.mkdir(parents=True, exist_ok=True)
    text = render_markdown(result)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    return text


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA device is available", file=sys.stderr)
        return 2
    if args.threads or not cuda:
        torch.set_num_threads(args.threads or 1)
    if args.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    result = run_benchmark(device=device, **_benchmark_options(args, cuda))
    result["command"] = "python -m bench.perf " + " ".join(argv if argv is not None
                                                           else sys.argv[1:])
    if not args.no_grid_estimate:
        est = shipped_grid_estimates()
        if est is not None:
            result["grid_estimates"], result["throughput_source"] = est
    text = _write(result, Path(args.out))
    print()
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
