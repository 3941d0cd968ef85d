"""``make gpu-check``: a bounded check of the GPU path, for a machine with a CUDA device.

``python -m bench.gpu_check [--budget-seconds 460] [--epochs 3] [--results gpu-check]``

1. ``python -m bench.perf --device cuda``: the throughput table, written to ``reports/perf.md``
   (and ``reports/perf.json``). The CPU measurement it replaces is first kept as
   ``reports/perf_cpu.json``, so that later checks still have it.
2. One real CIFAR-10 cell of ``jocor_cifar10`` (JoCoR, symmetric 50%), its five seeds fused
   into one model, for ``--epochs`` epochs on the full training set: ``bench run
   --fuse-seeds --epochs E`` (a smoke run: its records say ``smoke: true`` and have run_ids of
   their own). The records go to ``gpu-check/jocor_cifar10/`` (``--results``), beside the
   repository's ``results/``, never into it.
3. Printed, and written to ``reports/gpu_check.md``: for each network and path of the
   benchmark, images per second on this GPU beside the CPU figure and the H100 target
   (:data:`bench.cost_model.H100_TARGETS`); for the cell, its seconds per epoch and network-images
   per second.

Each step runs in a child process under what is left of ``--budget-seconds`` (default 460 s,
under 8 minutes in all); a step that overruns is stopped and reported. Without a CUDA device the
command fails at once with one line (exit 2).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.tables import markdown_table

REPO = Path(__file__).resolve().parents[1]
PERF_JSON = REPO / "reports" / "perf.json"
CPU_PERF_JSON = REPO / "reports" / "perf_cpu.json"
SUMMARY = REPO / "reports" / "gpu_check.md"
GRID = REPO / "bench" / "grids" / "jocor_cifar10.yaml"
CELL = ("method=jocor", "noise_type=symmetric", "noise_rate=0.5")


class NoCudaError(RuntimeError):
    """No CUDA device is visible."""


def require_cuda() -> str:
    """The name of the first CUDA device; :class:`NoCudaError` when there is none."""
    import torch

    if not torch.cuda.is_available():
        raise NoCudaError("gpu-check needs a CUDA device and torch sees none "
                          "(torch.cuda.is_available() is False); run it on a GPU machine")
    return torch.cuda.get_device_name(0)


def keep_cpu_perf(perf_json: Path = PERF_JSON, cpu_json: Path = CPU_PERF_JSON) -> dict | None:
    """The last CPU throughput measurement: copied aside before the GPU one overwrites it."""
    try:
        current = json.loads(perf_json.read_text())
    except (OSError, ValueError):
        current = None
    if current is not None and current.get("device_type") == "cpu":
        shutil.copyfile(perf_json, cpu_json)
        return current
    try:
        return json.loads(cpu_json.read_text())
    except (OSError, ValueError):
        return None


def throughput_rows(gpu: dict, cpu: dict | None, targets: dict[str, float]) -> list[dict]:
    """One row per (network, path) of the GPU measurement, with the CPU figure and the target."""
    cpu_ips = {(r["network"], r["mode"]): r.get("images_per_s")
               for r in (cpu or {}).get("rows", [])}
    rows = []
    for r in gpu.get("rows", []):
        key = (r["network"], r["mode"])
        target = targets.get(r["network"]) if r["mode"] != "reference" else None
        ips = r.get("images_per_s")
        rows.append({"network": r["network"], "mode": r["mode"], "gpu": ips,
                     "cpu": cpu_ips.get(key), "target": target,
                     "of_target": ips / target if ips and target else None})
    return rows


def cell_figures(records: list[dict]) -> dict:
    """Seconds per epoch and network-images per second of the fused cell's records."""
    if not records:
        return {}
    rec = records[0]
    epochs = len(rec["metrics"]["epoch"])
    train = rec["train"]
    n_train = (rec.get("smoke_limits") or {}).get("limit_train") or 50_000
    steps = min(train["max_iters_per_epoch"] or 10 ** 9, n_train // train["batch_size"])
    images = steps * train["batch_size"] * 2 * len(records)   # two networks per JoCoR run
    # a fused group's records share its wall time; unfused runs add theirs up
    wall = (rec.get("fused") or {}).get("group_wall_seconds") or sum(
        float(r.get("wall_seconds") or 0.0) for r in records)
    per_epoch = wall / epochs if epochs else None
    return {"runs": len(records), "epochs": epochs, "wall_seconds": wall,
            "seconds_per_epoch": per_epoch,
            "network_images_per_s": images / per_epoch if per_epoch else None,
            "test_acc_last": [r["test_acc_last"] for r in records],
            "status": sorted({r["status"] for r in records})}


def _fmt(value, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def render(device: str, rows: list[dict], cell: dict, cpu: dict | None, steps: list[str]) -> str:
    lines = ["# GPU check", "", f"Device: {device}. CPU figures: "
             + (f"{cpu['device']}, {cpu['date']}" if cpu else "none measured") + ".", "",
             "Steps: " + "; ".join(steps) + ".", ""]
    lines += markdown_table([[r["network"], r["mode"], _fmt(r["gpu"]), _fmt(r["cpu"]), _fmt(r["target"]),
                              _fmt(r["of_target"], ".2f")] for r in rows],
                            ["network", "path", "GPU images/s", "CPU images/s", "H100 target", "GPU / target"],
                            style="compact").splitlines()
    lines += ["", "jocor_cifar10, JoCoR symmetric 50%, seeds fused, real CIFAR-10: "
              + (f"{cell['runs']} runs x {cell['epochs']} epochs, {cell['wall_seconds']:.1f} s, "
                 f"{_fmt(cell['seconds_per_epoch'], '.2f')} s per epoch, "
                 f"{_fmt(cell['network_images_per_s'])} network-images/s, status "
                 f"{', '.join(cell['status'])}, last-epoch accuracy "
                 f"{', '.join(f'{a:.2f}' for a in cell['test_acc_last'])}"
                 if cell else "no record")]
    return "\n".join(lines) + "\n"


def _step(cmd: list[str], deadline: float, log: list[str], name: str) -> bool:
    left = deadline - time.monotonic()
    if left < 10:
        log.append(f"{name}: not run (budget spent)")
        return False
    t0 = time.monotonic()
    try:
        rc = subprocess.run(cmd, cwd=REPO, timeout=left).returncode
    except subprocess.TimeoutExpired:
        log.append(f"{name}: stopped after {left:.0f} s (budget)")
        return False
    log.append(f"{name}: exit {rc} in {time.monotonic() - t0:.0f} s")
    return rc == 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n")[0])
    p.add_argument("--budget-seconds", type=float, default=460.0,
                   help="wall-clock budget of all steps (default 460)")
    p.add_argument("--epochs", type=int, default=3, help="epochs of the CIFAR-10 cell (default 3)")
    p.add_argument("--results", default="gpu-check",
                   help="records folder of the cell (default gpu-check/, never results/)")
    p.add_argument("--data-root", default=os.environ.get("DATA_ROOT"),
                   help="dataset folder (default: $DATA_ROOT)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        device = require_cuda()
    except NoCudaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from bench.cost_model import H100_TARGETS
    from bench.store import iter_record_paths, read_record

    deadline = time.monotonic() + args.budget_seconds
    cpu = keep_cpu_perf()
    log: list[str] = []
    perf_ok = _step([sys.executable, "-m", "bench.perf", "--device", "cuda"], deadline, log,
                    "bench.perf --device cuda")
    cmd = [sys.executable, "-m", "bench", "run", str(GRID), "--only", *CELL, "--fuse-seeds",
           "--epochs", str(args.epochs), "--device", "cuda", "--results", args.results,
           "--no-progress", *(["--data-root", args.data_root] if args.data_root else [])]
    cell_ok = _step(cmd, deadline, log, "jocor_cifar10 cell, seeds fused")
    gpu = json.loads(PERF_JSON.read_text()) if perf_ok else {"rows": []}
    records = [r for r in (read_record(p) for p in
                           iter_record_paths(REPO / args.results, "jocor_cifar10"))
               if (r.get("smoke_limits") or {}).get("epochs") == args.epochs]
    text = render(device, throughput_rows(gpu, cpu, H100_TARGETS), cell_figures(records), cpu,
                  log)
    SUMMARY.write_text(text)
    print(text)
    return 0 if perf_ok and cell_ok else 1


if __name__ == "__main__":
    sys.exit(main())
