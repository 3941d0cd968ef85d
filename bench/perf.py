"""Training throughput: the official codes' loop, the suite's engine, and fused runs.

``python -m bench.perf [--device cpu|cuda] [--network mlp,cnn6] [--runs N] [--steps S]
[--batch 128] [--compile] [--out reports/perf.md]`` measures, in one process, the images per
second of one training step (forward + backward + update of one network, batch 128, on synthetic
uint8 images of the dataset's shape) along three paths:

(a) ``reference``: the loop of the official Co-teaching / JoCoR code. A torch DataLoader over a
    dataset of uint8 numpy arrays with a per-sample ToTensor-style transform, fp32, NCHW, the
    batch copied to the device every step, and the Co-teaching selection: the per-sample losses
    are moved to the host and sorted with ``np.argsort`` every step (a host-device sync).
(b) ``engine``: this suite's path for one run. The images live on the device as uint8, batches
    are gathered by index (:class:`bench.engine.RunContext` itself), the selection is a
    ``torch.topk`` on the device, the loss is accumulated on the device, bf16 autocast and
    channels_last on CUDA, fused Adam; ``--compile`` adds ``torch.compile``.
(c) ``fused``: N runs trained as one model (:mod:`bench.fused`), each with its own batches.

All three take the same step: per-sample cross-entropy, the (1 - 0.2) fraction of the batch
with the smallest loss is kept, and their mean loss updates the network (Adam). Throughput of
(c) counts the images of all N networks (network-images per second), so it compares directly
with (a) and (b).

The report gives the ratios (b)/(a) and (c)/(a), the FLOPs per training image (conv and linear
multiply-accumulates counted with forward hooks, 1 MAC = 2 FLOPs, training = 3 x forward), the
FLOP/s achieved, and on CUDA its share of 400 TFLOP/s (the effective bf16 rate taken as the
physical limit of an H100). It is written to ``--out`` (markdown) and beside it as JSON.

:func:`estimate_grid_hours` turns run specifications into GPU-hours from the same FLOP counts.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import math
import os
import platform
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "reports" / "perf.md"
# ~40% of the H100 SXM's 989 TFLOP/s dense bf16 peak; the fastest CIFAR-10 trainers reach
# 37-45% of an A100's peak (airbench), so this is an optimistic but physical ceiling
PHYSICAL_LIMIT_FLOPS = 400e12
REALISTIC_FLOPS = 200e12          # half the ceiling: the rate the targets below assume
FORGET_RATE = 0.2                 # small-loss selection of the benchmarked step
MODES = ("reference", "engine", "fused")
MODE_LABELS = {"reference": "(a) official-style loop", "engine": "(b) engine, one run",
               "fused": "(c) engine, N runs fused"}

# Target training images per second per network on one H100 (bf16, channels_last, resident
# data; cnn9 and preact_resnet18 at ~200 TFLOP/s, cnn6 with seeds fused at ~100 TFLOP/s). The
# MLP is launch-bound, so its FLOPs mean nothing; LeNet's figure is a guess of the same kind.
H100_TARGETS = {"cnn9": 45_000.0, "preact_resnet18": 60_000.0, "cnn6": 150_000.0,
                "mlp": 1_000_000.0, "lenet": 300_000.0}

# (train images, test images, (C, H, W), classes). Clothing1M, Food-101N and WebVision are the
# noisy training sets as released (mini-WebVision: the first 50 classes).
DATASET_SHAPES = {
    "digits": (1347, 450, (1, 8, 8), 10),
    "mnist": (60_000, 10_000, (1, 28, 28), 10),
    "fashion-mnist": (60_000, 10_000, (1, 28, 28), 10),
    "cifar10": (50_000, 10_000, (3, 32, 32), 10),
    "cifar10n": (50_000, 10_000, (3, 32, 32), 10),
    "cifar100": (50_000, 10_000, (3, 32, 32), 100),
    "cifar100n": (50_000, 10_000, (3, 32, 32), 100),
    "clothing1m": (1_000_000, 10_526, (3, 224, 224), 14),
    "food101n": (310_009, 25_250, (3, 224, 224), 101),
    "webvision": (65_944, 2_500, (3, 224, 224), 50),
}

# Training passes over the data per epoch, in units of one network's training step, and how
# many networks are evaluated on the test set each epoch.
NETWORK_PASSES = {"standard": 1.0, "mentornet": 1.0, "coteaching": 2.0, "coteaching_plus": 2.0,
                  "jocor": 2.0, "decoupling": 2.0, "f_correction": 1.0,
                  "f_correction_nominal": 1.0, "self_learning": 1.2,
                  "f_correction_patrini": 0.93,   # trains 90%, one forward of the other 10%
                  "rsl": 2.0, "rsl_wm": 3.0}
EVAL_NETWORKS = {"coteaching": 2, "coteaching_plus": 2, "jocor": 2, "decoupling": 2,
                 "dividemix": 2}


# ---- FLOPs ------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def forward_macs(network: str, *, in_channels: int, image_size: int, num_classes: int,
                 options: str = "{}") -> int:
    """Multiply-accumulates of one forward pass of one image through conv and linear layers.

    The network is built on the meta device, so no memory is allocated and nothing is computed.
    options: the network options as JSON (hashable for the cache).
    """
    from bench.models import build_network

    with torch.device("meta"):
        net = build_network(network, in_channels=in_channels, num_classes=num_classes,
                            image_size=image_size, options=json.loads(options))
    total = 0

    def hook(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        per_image = output[0].numel()
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += per_image * (module.in_channels // module.groups) * k
        else:
            total += per_image * module.in_features

    handles = [m.register_forward_hook(hook) for m in net.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    net.eval()
    with torch.no_grad():
        net(torch.empty(1, in_channels, image_size, image_size, device="meta"))
    for h in handles:
        h.remove()
    return total


def train_flops_per_image(network: str, shape: tuple[int, int, int], num_classes: int = 10, *,
                          options: dict | None = None) -> float:
    """FLOPs of one training step per image: 3 x forward, 2 FLOPs per MAC."""
    macs = forward_macs(network, in_channels=shape[0], image_size=shape[1],
                        num_classes=num_classes, options=json.dumps(options or {},
                                                                    sort_keys=True))
    return 6.0 * macs


def input_shape(network: str) -> tuple[int, int, int]:
    """MNIST-shaped images for the MLP (as the papers), CIFAR-shaped for the CNNs."""
    return (1, 28, 28) if network == "mlp" else (3, 32, 32)


# ---- the three paths --------------------------------------------------------------------------

class _Synthetic(torch.utils.data.Dataset):
    """uint8 images stored as numpy arrays (N, H, W[, C]) and a per-sample ToTensor, as the
    official codes' CIFAR/MNIST dataset classes with ``transforms.ToTensor()``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        img = torch.from_numpy(self.images[i])
        img = img[None] if img.dim() == 2 else img.permute(2, 0, 1)
        return img.float().div(255.0), int(self.labels[i]), i


def _synthetic_data(shape: tuple[int, int, int], n: int, num_classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    c, h, w = shape
    hwc = rng.integers(0, 256, size=(n, h, w, c), dtype=np.uint8)
    labels = rng.integers(0, num_classes, size=n).astype(np.int64)
    return hwc, labels


def _cycle(make_iter: Callable[[], Iterable]):
    while True:
        yield from make_iter()


def _build(network: str, shape, num_classes: int, device: torch.device) -> nn.Module:
    from bench.models import build_network

    return build_network(network, in_channels=shape[0], num_classes=num_classes,
                         image_size=shape[1]).to(device)


def reference_step(network: str, shape, *, batch: int, device: torch.device, workers: int,
                   num_classes: int = 10, n: int) -> Callable[[], None]:
    """(a): the official loop, one step per call."""
    hwc, labels = _synthetic_data(shape, n, num_classes)
    if shape[0] == 1:
        hwc = hwc[..., 0]
    loader = torch.utils.data.DataLoader(_Synthetic(hwc, labels), batch_size=batch, shuffle=True,
                                         num_workers=workers, drop_last=True,
                                         persistent_workers=workers > 0)
    batches = _cycle(lambda: loader)
    net = _build(network, shape, num_classes, device).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    keep = int((1 - FORGET_RATE) * batch)

    def step() -> None:
        images, y, _ = next(batches)
        images, y = images.to(device), y.to(device)
        logits = net(images)
        loss = F.cross_entropy(logits, y, reduction="none")
        order = np.argsort(loss.detach().cpu().numpy())       # Co-teaching's loss.py
        ind = torch.from_numpy(order[:keep]).to(device)
        loss_update = F.cross_entropy(logits[ind], y[ind])
        optimizer.zero_grad()
        loss_update.backward()
        optimizer.step()

    return step


def _context(network: str, shape, *, batch: int, device: torch.device, num_classes: int,
             n: int):
    from bench.config import RunSpec, TrainConfig
    from bench.data import ImageData
    from bench.engine import RunContext

    hwc, labels = _synthetic_data(shape, n, num_classes)
    images = torch.from_numpy(np.ascontiguousarray(hwc.transpose(0, 3, 1, 2)))
    data = ImageData("synthetic", images, labels, images[:batch], labels[:batch], num_classes,
                     mean=(0.5,) * shape[0], std=(0.25,) * shape[0])
    spec = RunSpec(grid="perf", label="perf", method="standard", method_params={},
                   dataset="synthetic", network=network,
                   # the throughput targets are bf16 figures; training runs default to fp32
                   train=TrainConfig(batch_size=batch,
                                     precision="bf16" if device.type == "cuda" else "fp32"))
    return RunContext(spec, data, labels, device)


def engine_step(network: str, shape, *, batch: int, device: torch.device, compile: bool = False,
                num_classes: int = 10, n: int) -> Callable[[], None]:
    """(b): one run through :class:`bench.engine.RunContext`."""
    from methods.small_loss import small_loss_indices

    ctx = _context(network, shape, batch=batch, device=device, num_classes=num_classes, n=n)
    net = ctx.make_network().train()
    optimizer = ctx.make_optimizer(net.parameters())
    model = torch.compile(net) if compile else net
    batches = _cycle(ctx.train_batches)
    keep = int((1 - FORGET_RATE) * batch)
    total = torch.zeros((), device=device)

    def step() -> None:
        nonlocal total
        x, y, _ = next(batches)
        with ctx.autocast():
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, reduction="none")
        pick = small_loss_indices(loss, keep)
        loss_update = loss[pick].mean()
        optimizer.zero_grad(set_to_none=True)
        loss_update.backward()
        optimizer.step()
        total += loss_update.detach()

    return step


def fused_step(network: str, shape, *, batch: int, runs: int, device: torch.device,
               compile: bool = False, num_classes: int = 10, n: int) -> Callable[[], None]:
    """(c): ``runs`` runs fused, each with its own data order."""
    from bench.fused import FusedNetworks, fused_train_batches

    ctx = _context(network, shape, batch=batch, device=device, num_classes=num_classes, n=n)
    hwc, _ = _synthetic_data(shape, n, num_classes)
    images = torch.from_numpy(np.ascontiguousarray(hwc.transpose(0, 3, 1, 2))).to(device)
    fused = FusedNetworks([ctx.make_network() for _ in range(runs)]).train()
    optimizer = ctx.make_optimizer(fused.parameters())
    model = torch.compile(fused) if compile else fused
    gens = [torch.Generator().manual_seed(s) for s in range(runs)]
    batches = _cycle(lambda: fused_train_batches(images, ctx.noisy_labels, generators=gens,
                                                 batch_size=batch,
                                                 channels_last=device.type == "cuda"))
    keep = int((1 - FORGET_RATE) * batch)
    total = torch.zeros(runs, device=device)

    def step() -> None:
        nonlocal total
        x, y, _ = next(batches)
        with ctx.autocast():
            logits = model(x)                                       # (G, B, K)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(),
                               reduction="none").view(runs, -1)
        pick = torch.topk(loss.detach(), keep, dim=1, largest=False, sorted=False).indices
        losses = loss.gather(1, pick).mean(1)
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        optimizer.step()
        total += losses.detach()

    return step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], None], *, device: torch.device, warmup: int,
               steps: int | None, min_seconds: float, max_steps: int = 5000) -> tuple[int, float]:
    """(timed steps, seconds) of ``step`` after ``warmup`` untimed steps.

    Without ``steps``, untimed chunks of 1, 2, 4, ... steps find the pace first, and the count
    is set so that the timed region lasts about ``min_seconds`` (at least 3 steps). The device
    is synchronised only around the timed region (and the calibration chunks), never per step.
    """
    for _ in range(warmup):
        step()
    if steps is None:
        chunk = 1
        while True:
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(chunk):
                step()
            _sync(device)
            elapsed = time.perf_counter() - t0
            if elapsed >= 0.2 * min_seconds or chunk >= max_steps:
                break
            chunk *= 2
        steps = int(min(max_steps, max(3, math.ceil(min_seconds * chunk / elapsed))))
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps, time.perf_counter() - t0


# ---- the benchmark ---------------------------------------------------------------------------

def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{model} ({os.cpu_count()} logical CPUs; torch intra-op threads: "
            f"{torch.get_num_threads()})")


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
    found = []
    for w in caught:
        text = str(w.message)
        if "batching rule" in text:
            op = text.split("batching rule for ", 1)[-1].split(".")[0]
            if op not in found:
                found.append(op)
    return found


def measure(network: str, mode: str, *, device: torch.device, batch: int, runs: int,
            warmup: int, steps: int | None, min_seconds: float, workers: int,
            compile: bool) -> dict:
    """One row: images/s of one network along one path (``mode``)."""
    shape = input_shape(network)
    n = 50_000 if device.type == "cuda" else batch * 16
    row = {"network": network, "mode": mode, "input_shape": list(shape), "batch": batch,
           "runs": runs if mode == "fused" else 1,
           "compiled": bool(compile and mode != "reference"),
           "train_flops_per_image": train_flops_per_image(network, shape)}
    torch.manual_seed(0)
    try:
        if mode == "reference":
            step = reference_step(network, shape, batch=batch, device=device, workers=workers,
                                  n=n)
        elif mode == "engine":
            step = engine_step(network, shape, batch=batch, device=device, compile=compile, n=n)
        else:
            step = fused_step(network, shape, batch=batch, runs=runs, device=device,
                              compile=compile, n=n)
            row["vmap_fallbacks"] = vmap_fallbacks(step)
        timed, seconds = time_steps(step, device=device, warmup=warmup, steps=steps,
                                    min_seconds=min_seconds)
    except Exception as exc:  # a path that fails (e.g. compile) must not hide the others
        row.update(error=f"{type(exc).__name__}: {exc}"[:300], images_per_s=None)
        return row
    finally:
        if device.type == "cuda":   # free this row's data and networks before the next one
            gc.collect()
            torch.cuda.empty_cache()
    images = timed * batch * row["runs"]
    ips = images / seconds
    flops = ips * row["train_flops_per_image"]
    row.update(steps=timed, seconds=seconds, images_per_s=ips, flops_per_s=flops,
               share_of_limit=flops / PHYSICAL_LIMIT_FLOPS if device.type == "cuda" else None)
    return row


def ratios(rows: list[dict]) -> dict[str, dict[str, float | None]]:
    """network -> {"engine": (b)/(a), "fused": (c)/(a)}."""
    out: dict[str, dict[str, float | None]] = {}
    for row in rows:
        ref = next((r for r in rows if r["network"] == row["network"]
                    and r["mode"] == "reference"), None)
        if row["mode"] == "reference":
            continue
        ok = ref and ref.get("images_per_s") and row.get("images_per_s")
        out.setdefault(row["network"], {})[row["mode"]] = (
            row["images_per_s"] / ref["images_per_s"] if ok else None)
    return out


def _fmt(value: float | None, spec: str = ",.0f") -> str:
    return "failed" if value is None else format(value, spec)


def render_markdown(result: dict) -> str:
    cuda = result["device_type"] == "cuda"
    lines = [
        "# Training throughput", "",
        f"Generated by `{result['command']}` on {result['date']}.", "",
        f"- device: {result['device']}" + ("" if cuda else " (**CPU only: no GPU was measured**)"),
        f"- torch {result['torch']}, Python {result['python']}",
        f"- batch {result['batch']}; fused runs N = {result['runs']}; "
        f"torch.compile: {'on' if result['compile'] else 'off'}; "
        f"DataLoader workers of (a): {result['workers']}",
        "- step: forward, per-sample cross-entropy, keep the 80% smallest losses, backward, Adam "
        "update (Co-teaching's selection on one network); synthetic uint8 images",
        "- (a) official-style loop: DataLoader + per-sample ToTensor, fp32, per-step `.cpu()` + "
        "`np.argsort`; (b) engine: device-resident data, `RunContext` batches, `torch.topk` on the "
        "device, no per-step sync" + (", bf16 autocast, channels_last" if cuda else
                                      " (fp32 on CPU: autocast and channels_last are CUDA-only)")
        + "; (c) N runs fused with `bench.fused` (vmap: grouped convolutions, batched matmuls)",
        "- images/s counts the images of every network (N x batch per fused step)", "",
    ]
    limit_col = "share of 400 TFLOP/s" if cuda else "achieved GFLOP/s"
    lines += [f"| network | input | path | runs | steps | images/s | x (a) | train MFLOP/img | "
              f"{limit_col} |", "|---|---|---|---|---|---|---|---|---|"]
    rat = result["ratios"]
    for row in result["rows"]:
        ratio = 1.0 if row["mode"] == "reference" else rat.get(row["network"], {}).get(row["mode"])
        if row.get("images_per_s") is None:
            extra = "failed: " + row.get("error", "")
        elif cuda:
            extra = f"{100 * row['share_of_limit']:.1f}%"
        else:
            extra = f"{row['flops_per_s'] / 1e9:,.1f}"
        shape = "x".join(str(s) for s in row["input_shape"])
        lines.append(f"| {row['network']} | {shape} | {MODE_LABELS[row['mode']]} | {row['runs']} | "
                     f"{row.get('steps', '-')} | {_fmt(row.get('images_per_s'))} | "
                     f"{_fmt(ratio, '.2f')} | {row['train_flops_per_image'] / 1e6:,.2f} | "
                     f"{extra} |")
    slow = [f"{r['network']}: {', '.join(r['vmap_fallbacks'])}" for r in result["rows"]
            if r.get("vmap_fallbacks")]
    if slow:
        lines += ["", "vmap fell back to a per-run loop for: " + "; ".join(slow)]
    lines += ["", "Ratios to (a):", ""]
    for net, r in rat.items():
        lines.append(f"- {net}: (b)/(a) = {_fmt(r.get('engine'), '.2f')}, "
                     f"(c)/(a) = {_fmt(r.get('fused'), '.2f')}")
    if not cuda:
        lines += ["", "These are CPU measurements and say nothing about GPU throughput: on a CPU "
                  "the engine runs in fp32 (its bf16 autocast and channels_last are CUDA-only), "
                  "and fusing runs pays only where one small network leaves the device idle, "
                  "which a CPU thread never is. The GPU targets (H100, images/s per network: "
                  "cnn9 >= 45,000, preact_resnet18 >= 60,000, cnn6 fused >= 150,000) remain to "
                  "be measured with `python -m bench.perf --device cuda`. On a CPU shared with other "
                  "jobs, repeated invocations differ by tens of percent."]
    if result.get("grid_estimates"):
        lines += ["", "## Estimated GPU-hours of the shipped grids", "",
                  f"From `estimate_grid_hours` with {result['throughput_source']}.", "",
                  "| grid | runs | GPU-hours |", "|---|---|---|"]
        for name, est in result["grid_estimates"].items():
            lines.append(f"| {name} | {est['runs']} | {est['gpu_hours']:.3g} |")
    return "\n".join(lines) + "\n"


def _shipped_grid_estimates() -> tuple[dict, str] | None:
    try:
        import methods  # noqa: F401  (registers the methods the grids name)
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
    rows = []
    for network in networks:
        for mode in MODES:
            row = measure(network, mode, device=device, batch=batch, runs=runs, warmup=warmup,
                          steps=steps, min_seconds=min_seconds, workers=workers,
                          compile=compile)
            rows.append(row)
            log(f"{network:>16} {MODE_LABELS[mode]:<26} "
                f"{_fmt(row.get('images_per_s')):>12} images/s"
                + (f"  ({row['error']})" if row.get("error") else ""))
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "device": device_name(device), "device_type": device.type,
            "torch": torch.__version__, "python": platform.python_version(), "batch": batch,
            "runs": runs, "compile": compile, "workers": workers, "rows": rows,
            "ratios": ratios(rows)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    if argv and argv[0] == "--":   # `python -m bench perf -- --device cuda`
        argv = argv[1:]
    p = argparse.ArgumentParser(prog="python -m bench.perf", description=__doc__.split("\n")[0])
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--network", default=None,
                   help="comma-separated networks (default: mlp,lenet,cnn6 on CPU; "
                        "cnn9,preact_resnet18,cnn6 on CUDA)")
    p.add_argument("--runs", type=int, default=None, help="runs fused in (c) (2 CPU, 8 CUDA)")
    p.add_argument("--steps", type=int, default=None,
                   help="timed steps per row (default: enough for --min-seconds)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (1 CPU, 20 CUDA)")
    p.add_argument("--min-seconds", type=float, default=None,
                   help="timed seconds per row when --steps is not given (2 CPU, 5 CUDA)")
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA device is available", file=sys.stderr)
        return 2
    cuda = device.type == "cuda"
    if args.threads or not cuda:
        torch.set_num_threads(args.threads or 1)
    if args.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    networks = (args.network.split(",") if args.network else
                ["cnn9", "preact_resnet18", "cnn6"] if cuda else ["mlp", "lenet", "cnn6"])
    runs = args.runs or (8 if cuda else 2)
    workers = args.workers if args.workers is not None else (4 if cuda else 0)
    result = run_benchmark(device=device, networks=[n.strip() for n in networks if n.strip()],
                           runs=runs, batch=args.batch,
                           warmup=args.warmup if args.warmup is not None else (20 if cuda else 1),
                           steps=args.steps,
                           min_seconds=args.min_seconds or (5.0 if cuda else 2.0),
                           workers=workers, compile=args.compile)
    result["command"] = "python -m bench.perf " + " ".join(argv if argv is not None
                                                           else sys.argv[1:])
    if not args.no_grid_estimate:
        est = _shipped_grid_estimates()
        if est is not None:
            result["grid_estimates"], result["throughput_source"] = est
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = render_markdown(result)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    print()
    print(text)
    return 0


# ---- grid cost --------------------------------------------------------------------------------

def measured_throughput(path: str | Path | None = None) -> dict[str, float]:
    """network -> training images/s per network measured on a GPU by a previous perf run
    (the better of the engine and fused paths), from ``reports/perf.json``; {} if none."""
    path = Path(path) if path is not None else DEFAULT_OUT.with_suffix(".json")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if data.get("device_type") != "cuda":
        return {}
    best: dict[str, float] = {}
    for row in data.get("rows", []):
        ips = row.get("images_per_s")
        if row.get("mode") in ("engine", "fused") and ips:
            best[row["network"]] = max(best.get(row["network"], 0.0), float(ips))
    return best


def default_throughput() -> tuple[dict[str, float], str]:
    """The H100 targets (:data:`H100_TARGETS`), overridden by measured GPU numbers."""
    measured = measured_throughput()
    if measured:
        return {**H100_TARGETS, **measured}, "measured GPU throughput (reports/perf.json)"
    return dict(H100_TARGETS), "H100 throughput targets (no GPU measurement yet)"


def _labelled_fraction(spec) -> float:
    # DivideMix's GMM keeps roughly the clean share of the data (25k..40k of CIFAR's 50k)
    rate = spec.noise_rate
    return 0.6 if rate is None else min(max(1.0 - float(rate), 0.2), 0.9)


def _network_images(spec) -> float:
    """Training-step equivalents of one network (network-images) over the whole run."""
    n_train, n_test, _, _ = DATASET_SHAPES.get(spec.dataset, DATASET_SHAPES["cifar10"])
    cfg = spec.train
    per_epoch = n_train - (n_train % cfg.batch_size if cfg.drop_last else 0)
    if cfg.max_iters_per_epoch is not None:
        per_epoch = min(per_epoch, cfg.max_iters_per_epoch * cfg.batch_size)
    epochs = cfg.epochs - cfg.start_epoch
    evals = EVAL_NETWORKS.get(spec.method, 1) * n_test / 3.0   # a forward is 1/3 of a step
    if spec.method == "dividemix":
        warm = min(int(spec.method_params.get("warm_up", 10)), cfg.epochs)
        warm_epochs = max(warm - cfg.start_epoch, 0)
        # per network and epoch 18 forward-equivalents per labelled sample plus eval_train's
        # forward of every sample: 2 x (1 + 18 f) forwards per training image, /3 in steps
        main = 2.0 * (1.0 + 18.0 * _labelled_fraction(spec)) / 3.0
        passes = warm_epochs * 2.0 + (epochs - warm_epochs) * main
        return passes * n_train + epochs * evals
    return epochs * (NETWORK_PASSES.get(spec.method, 1.0) * per_epoch + evals)


def _throughput_for(spec, table: dict[str, float]) -> float:
    _, _, shape, classes = DATASET_SHAPES.get(spec.dataset, DATASET_SHAPES["cifar10"])
    flops = train_flops_per_image(spec.network, shape, classes,
                                  options=spec.train.network_options)
    if spec.network not in table:
        return REALISTIC_FLOPS / flops
    ref_flops = train_flops_per_image(spec.network, input_shape(spec.network), classes)
    # a larger input costs proportionally more; a smaller one is no faster (launch-bound)
    return table[spec.network] * min(1.0, ref_flops / flops)


def _resolve_table(throughput: dict[str, float] | None) -> tuple[dict[str, float], str]:
    if throughput is None:
        return default_throughput()
    return {**H100_TARGETS, **throughput}, "given throughput"


def estimate_run_hours(spec, *, throughput: dict[str, float] | None = None) -> float:
    """Estimated GPU-hours of one run (:class:`bench.config.RunSpec`); see
    :func:`estimate_grid_hours`."""
    table, _ = _resolve_table(throughput)
    return _network_images(spec) / _throughput_for(spec, table) / 3600.0


def estimate_grid_hours(runs: Iterable, *, throughput: dict[str, float] | None = None) -> dict:
    """Estimated GPU-hours of run specifications (:class:`bench.config.RunSpec`).

    Cost of a run = network-images / (training images per second of its network), where
    network-images = trained epochs x (training passes of the method x images per epoch +
    test forwards of its networks / 3). Training passes per epoch: standard, MentorNet 1;
    Co-teaching, Co-teaching+, JoCoR, Decoupling 2; F-correction 1 (its two stages share the
    run's epochs); self-learning
    1.2 (label-correction forwards); RSL 2, RSL_WM 3; DivideMix 2 during warm-up, then
    2 x (1 + 18 f) / 3 with f the labelled fraction (~ 1 - noise rate): 18 forward-equivalents
    per labelled sample (per 64 labelled samples: six no-grad forwards of 64 images for
    co-guessing and co-refinement, and one training step on the 256-image mixed batch) and one
    eval_train forward per sample, per network.
    Images per second per network: the H100 targets
    (cnn9 45,000; preact_resnet18 60,000; cnn6 150,000 fused; lenet 300,000; mlp 1e6, launch-
    bound), replaced by measured GPU numbers when ``reports/perf.json`` holds a CUDA run, and
    scaled down for inputs larger than the benchmarked ones; other networks at 200 TFLOP/s of
    their training FLOPs. The result depends only on the specs and those throughput figures.

    throughput: network -> images/s, to use instead of the defaults.
    Returns {"gpu_hours": total, "runs": count, "by_grid": {grid: hours},
    "by_method": {method: hours}, "throughput": {network: images/s used},
    "throughput_source": str, "assumptions": [str]}.
    """
    table, source = _resolve_table(throughput)
    by_grid: dict[str, float] = {}
    by_method: dict[str, float] = {}
    used: dict[str, float] = {}
    total, count, unknown, unknown_data = 0.0, 0, set(), set()
    for spec in runs:
        ips = _throughput_for(spec, table)
        hours = _network_images(spec) / ips / 3600.0
        total += hours
        count += 1
        used[spec.network] = table.get(spec.network, ips)
        by_grid[spec.grid] = by_grid.get(spec.grid, 0.0) + hours
        by_method[spec.method] = by_method.get(spec.method, 0.0) + hours
        if spec.method not in NETWORK_PASSES and spec.method != "dividemix":
            unknown.add(spec.method)
        if spec.dataset not in DATASET_SHAPES:
            unknown_data.add(spec.dataset)
    assumptions = ["per-epoch test evaluation counted as forwards (1/3 of a training step)"]
    if "cnn6" in used:
        assumptions.append("cnn6 at its fused rate, which `bench run --fuse-seeds` reaches for "
                           "standard, coteaching, decoupling and jocor; the other methods' cnn6 "
                           "runs train unfused, so their share is a lower bound")
    if unknown_data:
        assumptions.append("CIFAR-10 sizes assumed for " + ", ".join(sorted(unknown_data)))
    if unknown:
        assumptions.append("one training pass per epoch for " + ", ".join(sorted(unknown)))
    return {"gpu_hours": total, "runs": count, "by_grid": by_grid, "by_method": by_method,
            "throughput": used, "throughput_source": source, "assumptions": assumptions}


# ---- CPU cost ---------------------------------------------------------------------------------

CALIBRATION_SECONDS = 0.3         # timed region of one calibration (after one untimed step)


def cache_path() -> Path:
    """The per-device cache of measured CPU throughput: ``$LNLBENCH_CACHE/perf-cpu.json``,
    else ``$XDG_CACHE_HOME/lnlbench/perf-cpu.json`` (``~/.cache/lnlbench/perf-cpu.json``)."""
    root = os.environ.get("LNLBENCH_CACHE")
    if root:
        return Path(root).expanduser() / "perf-cpu.json"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "lnlbench" / "perf-cpu.json"


def _cpu_key(spec) -> tuple[str, str, tuple[int, int, int], int, int]:
    """What a run's CPU rate depends on: (label, network, input shape, classes, batch)."""
    _, _, shape, classes = DATASET_SHAPES.get(spec.dataset, DATASET_SHAPES["cifar10"])
    label = (f"{spec.network} {'x'.join(map(str, shape))} {classes} classes "
             f"batch {spec.train.batch_size}")
    return label, spec.network, shape, classes, spec.train.batch_size


def _calibrate_cpu(network: str, shape, classes: int, batch: int) -> float:
    """Training images per second of one engine step on this CPU (a short timing)."""
    torch.manual_seed(0)
    step = engine_step(network, shape, batch=batch, device=torch.device("cpu"),
                       num_classes=classes, n=batch * 8)
    t0 = time.perf_counter()
    step()  # untimed; its pace sets the count, so that a ResNet takes two steps, an MLP many
    first = time.perf_counter() - t0
    steps, seconds = time_steps(step, device=torch.device("cpu"), warmup=0,
                                steps=int(min(500, max(1, CALIBRATION_SECONDS // first))),
                                min_seconds=CALIBRATION_SECONDS)
    return steps * batch / seconds


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, data: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:  # a read-only home: measure again next time
        pass


def cpu_rates(runs: Iterable, *, threads: int | None = None, calibrate: bool = True,
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
        data = _read_cache(cache)
        known = data.get(device, {})
        rates, sources = {}, {}
        for label, network, shape, classes, batch in sorted({_cpu_key(r) for r in runs}):
            if isinstance(known.get(label), (int, float)) and known[label] > 0:
                rates[label], sources[label] = float(known[label]), "cached"
            elif calibrate:
                if log is not None:
                    log(f"calibrating the CPU throughput of {label} (once; cached in {cache})")
                rates[label], sources[label] = _calibrate_cpu(network, shape, classes,
                                                              batch), "measured now"
                known[label] = rates[label]
            else:
                sources[label] = "unmeasured"
        if any(v == "measured now" for v in sources.values()):
            data[device] = known
            _write_cache(cache, data)
        return rates, sources, device
    finally:
        torch.set_num_threads(before)


def estimate_grid_cpu_hours(runs: Iterable, *, threads: int | None = None,
                            calibrate: bool = True, cache: Path | None = None,
                            log: Callable[[str], None] | None = None) -> dict:
    """Estimated CPU-hours of run specifications on this machine: the same network-images as
    :func:`estimate_grid_hours`, divided by this CPU's measured training images per second for
    each (network, input shape, classes, batch) of the runs (:func:`cpu_rates`), each run at
    ``threads`` torch threads. Hours of one run after another; ``--jobs J`` runs side by side
    take about 1/J of it when J x threads cores are free.

    Returns {"cpu_hours": total or None (a rate unmeasured), "runs": count, "by_method":
    {method: hours}, "rates": {label: images/s}, "sources": {label: where from}, "device": str,
    "threads": int}.
    """
    runs = list(runs)
    rates, sources, device = cpu_rates(runs, threads=threads, calibrate=calibrate,
                                       cache=cache, log=log)
    by_method: dict[str, float] = {}
    total: float | None = 0.0
    for spec in runs:
        label = _cpu_key(spec)[0]
        if label not in rates:
            total = None
            continue
        hours = _network_images(spec) / rates[label] / 3600.0
        by_method[spec.method] = by_method.get(spec.method, 0.0) + hours
        total = None if total is None else total + hours
    return {"cpu_hours": total, "runs": len(runs), "by_method": by_method, "rates": rates,
            "sources": sources, "device": device, "threads": threads or torch.get_num_threads()}


if __name__ == "__main__":
    sys.exit(main())
