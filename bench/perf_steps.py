"""The Co-teaching training step three ways, on synthetic data, and how it is timed.

Each builder returns ``step()``, one training step of both networks of one Co-teaching run
(or of N runs fused) on a batch of synthetic uint8 images of the given shape:

(a) :func:`reference_step`: the official Co-teaching loop. A torch DataLoader over uint8 numpy
    arrays with a per-sample ToTensor-style transform, fp32, NCHW, the batch copied to the
    device every step, and ``loss.py``'s selection: each network's per-sample losses moved to
    the host and sorted with ``np.argsort`` (a host-device sync every step).
(b) :func:`engine_step`: the suite's step of one run. Images resident on the device,
    batches from :class:`bench.engine.RunContext`, and the registered ``coteaching`` method's
    own loop (:meth:`methods.base.BatchMethod.fit_epoch` over one batch, its batch loss with
    ``torch.topk`` on the device), as a run trains.
(c) :func:`fused_step`: N runs trained as one model, the same loop over the method's batch
    loss vmapped (:func:`bench.fused.vmap_loss`), each run with its own batches, as
    ``bench run --fuse-seeds`` trains them.

:func:`time_steps` times a step with :mod:`torch.utils.benchmark`; :func:`device_name` names
what it ran on.
"""

from __future__ import annotations

import logging
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.context import RunContext

if TYPE_CHECKING:
    from torch.utils import benchmark

FORGET_RATE = 0.2                 # Co-teaching's forget rate of the benchmarked step
NETWORKS_PER_RUN = 2              # Co-teaching trains two networks

Step = Callable[[], None]


def num_remember(batch: int) -> int:
    """Samples of a batch each network keeps: the official ``loss.py``'s
    ``int((1 - forget_rate) * batch_size)``, for the reference loop."""
    return int((1 - FORGET_RATE) * batch)


# ---- synthetic data ---------------------------------------------------------------------------

class _Synthetic(torch.utils.data.Dataset):
    """uint8 images stored as numpy arrays (N, H, W[, C]) and a per-sample ToTensor, as the
    official codes' CIFAR/MNIST dataset classes with ``transforms.ToTensor()``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        img = torch.from_numpy(self.images[i])
        img = img[None] if img.dim() == 2 else img.permute(2, 0, 1)
        return img.float().div(255.0), int(self.labels[i]), i


def synthetic_data(shape: tuple[int, int, int], n: int, num_classes: int,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(images (n, H, W, C) uint8, labels (n,) int64), uniformly random."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    hwc = rng.integers(0, 256, size=(n, h, w, c), dtype=np.uint8)
    labels = rng.integers(0, num_classes, size=n).astype(np.int64)
    return hwc, labels


def _cycle(make_iter: Callable[[], Iterable]) -> Iterator:
    while True:
        yield from make_iter()


def synthetic_context(network: str, shape: tuple[int, int, int], *, batch: int,
                      device: torch.device, num_classes: int, n: int) -> RunContext:
    """A :class:`RunContext` of one Co-teaching run on synthetic images, bf16 on CUDA (the
    throughput targets are bf16 figures; training runs default to fp32)."""
    from bench.config import RunSpec, TrainConfig
    from bench.data import ImageData

    hwc, labels = synthetic_data(shape, n, num_classes)
    images = torch.from_numpy(np.ascontiguousarray(hwc.transpose(0, 3, 1, 2)))
    data = ImageData("synthetic", images, labels, images[:batch], labels[:batch], num_classes,
                     mean=(0.5,) * shape[0], std=(0.25,) * shape[0])
    precision = "bf16" if device.type == "cuda" else "fp32"
    spec = RunSpec(grid="perf", label="perf", method="coteaching", method_params={},
                   dataset="synthetic", network=network,
                   train=TrainConfig(batch_size=batch, precision=precision))
    return RunContext(spec, data, labels, device)


# ---- the three paths --------------------------------------------------------------------------

def _host_sorted_losses(logits1: torch.Tensor, logits2: torch.Tensor, y: torch.Tensor,
                        keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Co-teaching's ``loss.py``: each network's losses sorted on the host, peers' picks."""
    loss1 = F.cross_entropy(logits1, y, reduction="none")
    loss2 = F.cross_entropy(logits2, y, reduction="none")
    pick1 = torch.from_numpy(np.argsort(loss1.detach().cpu().numpy())[:keep]).to(y.device)
    pick2 = torch.from_numpy(np.argsort(loss2.detach().cpu().numpy())[:keep]).to(y.device)
    return (F.cross_entropy(logits1[pick2], y[pick2]) / keep,
            F.cross_entropy(logits2[pick1], y[pick1]) / keep)


def reference_step(network: str, shape: tuple[int, int, int], *, batch: int,
                   device: torch.device, workers: int, num_classes: int = 10, n: int) -> Step:
    """(a): the official loop, one step per call."""
    from bench.models import build_network

    hwc, labels = synthetic_data(shape, n, num_classes)
    loader = torch.utils.data.DataLoader(_Synthetic(hwc[..., 0] if shape[0] == 1 else hwc,
                                                    labels),
                                         batch_size=batch, shuffle=True, num_workers=workers,
                                         drop_last=True, persistent_workers=workers > 0)
    batches = _cycle(lambda: loader)
    nets: list[nn.Module] = [build_network(network, in_channels=shape[0], num_classes=num_classes,
                                           image_size=shape[1]).to(device).train()
                             for _ in range(NETWORKS_PER_RUN)]
    optimizers = [torch.optim.Adam(net.parameters(), lr=1e-3) for net in nets]
    keep = num_remember(batch)

    def step() -> None:
        images, y, _ = next(batches)
        images, y = images.to(device), y.to(device)
        losses = _host_sorted_losses(nets[0](images), nets[1](images), y, keep)
        for loss, optimizer in zip(losses, optimizers):
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    return step


def _coteaching(ctx: RunContext):
    """The registered ``coteaching`` method of ``ctx`` at its full forget rate, and the epoch
    whose step state has that rate (the schedule's last)."""
    from bench.registry import METHODS

    method_cls = METHODS.get("coteaching")
    method = method_cls(method_cls.Config(forget_rate=FORGET_RATE, num_gradual=1), ctx)
    return method, ctx.epochs - 1


def engine_step(network: str, shape: tuple[int, int, int], *, batch: int, device: torch.device,
                compile: bool = False, num_classes: int = 10, n: int) -> Step:
    """(b): one run through :class:`RunContext` and the method's own loop and batch loss."""
    from methods.base import EpochTally

    ctx = synthetic_context(network, shape, batch=batch, device=device,
                            num_classes=num_classes, n=n)
    method, epoch = _coteaching(ctx)
    nets = [net.train() for net in method.ordered_networks()]
    models = [torch.compile(net) for net in nets] if compile else nets
    batches = _cycle(ctx.train_batches)
    tally = EpochTally(ctx.num_train, device, per_sample=method.per_sample_loss)

    def step() -> None:
        method.fit_epoch(epoch, [next(batches)], forward=lambda x: [m(x) for m in models],
                         loss=method.batch_loss, optimizers=method.optimizers(), tally=tally)

    return step


def fused_step(network: str, shape: tuple[int, int, int], *, batch: int, runs: int,
               device: torch.device, compile: bool = False, num_classes: int = 10,
               n: int) -> Step:
    """(c): ``runs`` Co-teaching runs fused, each with its own data order."""
    from bench.fused import FusedNetworks, fused_train_batches, stacked_forward, vmap_loss
    from methods.base import EpochTally

    ctx = synthetic_context(network, shape, batch=batch, device=device,
                            num_classes=num_classes, n=n)
    methods = [_coteaching(ctx)[0] for _ in range(runs)]
    lead, epoch = methods[0], ctx.epochs - 1
    per_run = lead.num_networks
    # FusedNetworks' order: net1 of every run, then net2 of every run
    fused = FusedNetworks([m.ordered_networks()[i] for i in range(per_run) for m in methods])
    fused.train()
    optimizer = ctx.make_optimizer(fused.parameters())
    model = cast(FusedNetworks, torch.compile(fused)) if compile else fused
    labels = ctx.noisy_labels.expand(runs, -1)
    gens = [torch.Generator().manual_seed(s) for s in range(runs)]
    batches = _cycle(lambda: fused_train_batches(ctx.train_images, labels, generators=gens,
                                                 batch_size=batch,
                                                 normalization=ctx.normalization(),
                                                 channels_last=device.type == "cuda"))
    loss = vmap_loss(lead.batch_loss)
    tally = EpochTally(ctx.num_train, device, runs=runs, per_sample=lead.per_sample_loss)

    def step() -> None:
        lead.fit_epoch(epoch, [next(batches)],
                       forward=lambda x: stacked_forward(model, x, per_run), loss=loss,
                       optimizers=[optimizer], tally=tally)

    return step


# ---- timing -----------------------------------------------------------------------------------

def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model with its logical CPUs and torch's thread count."""
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


def _timer(step: Step) -> "benchmark.Timer":
    """A :class:`torch.utils.benchmark.Timer` of ``step`` at the current torch thread count.

    The module is imported here, on first use: it imports ``torch.utils.cpp_extension``, which
    logs a warning on a machine without a CUDA toolkit, and a dry run that reads its CPU rates
    from the cache never times anything.
    """
    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        from torch.utils import benchmark
    finally:
        log.setLevel(level)
    return benchmark.Timer(stmt="step()", globals={"step": step},
                           num_threads=torch.get_num_threads())


def time_steps(step: Step, *, warmup: int, steps: int | None,
               min_seconds: float) -> tuple[int, float]:
    """(timed steps, seconds per step) of ``step`` after ``warmup`` untimed steps.

    With ``steps``, one block of that many steps (:meth:`Timer.timeit`, which runs two more
    untimed first); without, :meth:`Timer.blocked_autorange` sizes the blocks by untimed runs
    and times them for at least ``min_seconds``, and the median block gives the pace. The device is synchronised around each block, never per step, at the current
    torch thread count.
    """
    for _ in range(warmup):
        step()
    timer = _timer(step)
    if steps is not None:
        measurement = timer.timeit(number=steps)
        return steps, measurement.median
    measurement = timer.blocked_autorange(min_run_time=min_seconds)
    return len(measurement.times) * measurement.number_per_run, measurement.median
