"""What a grid costs: FLOPs per training image, throughput per network, GPU-hours of runs.

The cost of a run is counted in network-images, the training steps of one network of one image
over the whole run (:func:`network_images`), divided by the training images per second of its
network (:func:`throughput_for`). The rates are the H100 targets (:data:`H100_TARGETS`),
replaced by the GPU measurement of ``python -m bench.perf --device cuda`` when
``reports/perf.json`` holds one, and, for a network without either, 200 TFLOP/s of its
training FLOPs (:func:`train_flops_per_image`, counted by
:class:`torch.utils.flop_counter.FlopCounterMode` on the meta device).

What the estimate needs about a dataset and a method is read from the registries: the sizes
each dataset is registered with (:class:`~bench.image_data.DatasetSizes`, its ``sizes``
metadata) and the cost each method class declares (``training_passes``, ``eval_networks``,
:class:`methods.base.Method`). ``tests/test_perf_cost_model.py`` keeps every registered name
declared; a run of a name without them is costed with CIFAR-10's sizes or one training pass,
and the estimate says so in its assumptions. The CPU-hours of the same network-images are
:mod:`bench.cpu_cost`'s.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Iterable, NamedTuple

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bench.config import RunSpec
from bench.image_data import DatasetSizes
from bench.registry import DATASETS, METHODS

REPO = Path(__file__).resolve().parents[1]
PERF_JSON = REPO / "reports" / "perf.json"
# ~40% of the H100 SXM's 989 TFLOP/s dense bf16 peak; the fastest CIFAR-10 trainers reach
# 37-45% of an A100's peak (airbench), so this is an optimistic but physical ceiling
PHYSICAL_LIMIT_FLOPS = 400e12
REALISTIC_FLOPS = 200e12          # half the ceiling: the rate the targets below assume

# Target training images per second per network on one H100 (bf16, channels_last, resident
# data; cnn9 and preact_resnet18 at ~200 TFLOP/s, cnn6 with seeds fused at ~100 TFLOP/s). The
# MLP is launch-bound, so its FLOPs mean nothing; LeNet's figure is a guess of the same kind.
H100_TARGETS = {"cnn9": 45_000.0, "preact_resnet18": 60_000.0, "cnn6": 150_000.0,
                "mlp": 1_000_000.0, "lenet": 300_000.0}


FALLBACK_DATASET = "cifar10"


class MethodCost(NamedTuple):
    """What a method's class declares of its cost (:class:`methods.base.Method`).

    training_passes: training passes over the data per epoch, in units of one network's
        training step; None for DivideMix, whose cost changes after the warm-up
        (:func:`_dividemix_passes`).
    eval_networks: networks evaluated on the test set each epoch.
    """

    training_passes: float | None
    eval_networks: int


FALLBACK_COST = MethodCost(training_passes=1.0, eval_networks=1)


def declared_sizes(name: str) -> DatasetSizes | None:
    """The sizes dataset ``name`` is registered with; None if it is unregistered or has none."""
    return DATASETS.meta(name).get("sizes") if name in DATASETS else None


def dataset_facts(name: str) -> DatasetSizes:
    """The sizes of dataset ``name``; CIFAR-10's for a dataset without them."""
    return declared_sizes(name) or DATASETS.meta(FALLBACK_DATASET)["sizes"]


def declared_cost(name: str) -> MethodCost | None:
    """The cost method ``name``'s class declares; None if it is unregistered or declares none."""
    if name not in METHODS:
        return None
    cls = METHODS.get(name)
    try:
        return MethodCost(cls.training_passes, cls.eval_networks)
    except AttributeError:
        return None


def method_cost(name: str) -> MethodCost:
    """The cost of method ``name``; one training pass and one evaluated network without one."""
    return declared_cost(name) or FALLBACK_COST


# ---- FLOPs ------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def forward_macs(network: str, *, in_channels: int, image_size: int, num_classes: int,
                 options: str = "{}") -> int:
    """Multiply-accumulates of one forward pass of one image (FLOPs / 2 of matmuls and
    convolutions, as :class:`~torch.utils.flop_counter.FlopCounterMode` counts them).

    The network is built and run on the meta device: nothing is allocated or computed.
    options: the network options as JSON (hashable for the cache).
    """
    from bench.models import build_network

    with torch.device("meta"):
        net = build_network(network, in_channels=in_channels, num_classes=num_classes,
                            image_size=image_size, options=json.loads(options))
    net.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(torch.empty(1, in_channels, image_size, image_size, device="meta"))
    return counter.get_total_flops() // 2


def train_flops_per_image(network: str, shape: tuple[int, int, int], num_classes: int = 10, *,
                          options: dict | None = None) -> float:
    """FLOPs of one training step per image: 3 x forward, 2 FLOPs per MAC."""
    macs = forward_macs(network, in_channels=shape[0], image_size=shape[1],
                        num_classes=num_classes,
                        options=json.dumps(options or {}, sort_keys=True))
    return 6.0 * macs


@functools.lru_cache(maxsize=None)
def input_shape(network: str) -> tuple[int, int, int]:
    """The input a network is benchmarked on: MNIST-shaped for a network whose first layer is
    linear (an MLP, as the papers train them), CIFAR-shaped for a convolutional one."""
    from bench.models import build_network

    with torch.device("meta"):
        net = build_network(network, in_channels=3, num_classes=10, image_size=32, options={})
    first = next(m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
    return (1, 28, 28) if isinstance(first, nn.Linear) else (3, 32, 32)


# ---- throughput -------------------------------------------------------------------------------

def measured_throughput(path: str | Path | None = None) -> dict[str, float]:
    """network -> training images/s per network measured on a GPU by a previous perf run
    (the better of the engine and fused paths), from ``reports/perf.json``; {} if none."""
    try:
        data = json.loads(Path(path or PERF_JSON).read_text())
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


def resolve_throughput(throughput: dict[str, float] | None) -> tuple[dict[str, float], str]:
    """(network -> images/s, where from): ``throughput`` over the targets, or the defaults."""
    if throughput is None:
        return default_throughput()
    return {**H100_TARGETS, **throughput}, "given throughput"


def throughput_for(spec: RunSpec, table: dict[str, float]) -> float:
    """Training images/s of the network of ``spec`` on its dataset's input."""
    facts = dataset_facts(spec.dataset)
    flops = train_flops_per_image(spec.network, facts.shape, facts.classes,
                                  options=spec.train.network_options)
    if spec.network not in table:
        return REALISTIC_FLOPS / flops
    ref_flops = train_flops_per_image(spec.network, input_shape(spec.network), facts.classes)
    # a larger input costs proportionally more; a smaller one is no faster (launch-bound)
    return table[spec.network] * min(1.0, ref_flops / flops)


# ---- network-images ---------------------------------------------------------------------------

def _labelled_fraction(spec: RunSpec) -> float:
    # DivideMix's GMM keeps roughly the clean share of the data (25k..40k of CIFAR's 50k)
    rate = spec.noise_rate
    return 0.6 if rate is None else min(max(1.0 - float(rate), 0.2), 0.9)


def _dividemix_passes(spec: RunSpec) -> float:
    """DivideMix's training passes over the whole run, in units of one network's step."""
    cfg = spec.train
    warm = min(int(spec.method_params.get("warm_up", 10)), cfg.epochs)
    warm_epochs = max(warm - cfg.start_epoch, 0)
    # per network and epoch 18 forward-equivalents per labelled sample plus eval_train's
    # forward of every sample: 2 x (1 + 18 f) forwards per training image, /3 in steps
    main = 2.0 * (1.0 + 18.0 * _labelled_fraction(spec)) / 3.0
    return warm_epochs * 2.0 + (cfg.epochs - cfg.start_epoch - warm_epochs) * main


def network_images(spec: RunSpec) -> float:
    """Training-step equivalents of one network (network-images) over the whole run."""
    facts = dataset_facts(spec.dataset)
    cfg = spec.train
    per_epoch = facts.train - (facts.train % cfg.batch_size if cfg.drop_last else 0)
    if cfg.max_iters_per_epoch is not None:
        per_epoch = min(per_epoch, cfg.max_iters_per_epoch * cfg.batch_size)
    epochs = cfg.epochs - cfg.start_epoch
    cost = method_cost(spec.method)
    evals = cost.eval_networks * facts.test / 3.0   # a forward: 1/3 of a step
    passes = cost.training_passes
    if passes is None:
        return _dividemix_passes(spec) * facts.train + epochs * evals
    return epochs * (passes * per_epoch + evals)


# ---- GPU-hours --------------------------------------------------------------------------------

def estimate_run_hours(spec: RunSpec, *, throughput: dict[str, float] | None = None) -> float:
    """Estimated GPU-hours of one run; see :func:`estimate_grid_hours`."""
    table, _ = resolve_throughput(throughput)
    return network_images(spec) / throughput_for(spec, table) / 3600.0


def _assumptions(networks: Iterable[str], specs: list[RunSpec]) -> list[str]:
    """What the estimate of ``specs`` assumed, one sentence each."""
    unknown_data = sorted(d for d in {s.dataset for s in specs} if declared_sizes(d) is None)
    unknown = sorted(m for m in {s.method for s in specs} if declared_cost(m) is None)
    lines = ["per-epoch test evaluation counted as forwards (1/3 of a training step)"]
    if "cnn6" in networks:
        lines.append("cnn6 at its fused rate, which `bench run --fuse-seeds` reaches for "
                     "standard, coteaching, decoupling and jocor; the other methods' cnn6 "
                     "runs train unfused, so their share is a lower bound")
    if unknown_data:
        lines.append("CIFAR-10 sizes assumed for " + ", ".join(unknown_data))
    if unknown:
        lines.append("one training pass per epoch for " + ", ".join(unknown))
    return lines


def estimate_grid_hours(runs: Iterable[RunSpec], *,
                        throughput: dict[str, float] | None = None) -> dict:
    """Estimated GPU-hours of run specifications.

    Cost of a run = network-images / (training images per second of its network), where
    network-images = trained epochs x (training passes of the method x images per epoch +
    test forwards of its networks / 3). Training passes per epoch: standard, MentorNet 1;
    Co-teaching, Co-teaching+, JoCoR, Decoupling 2; F-correction 1 (its two stages share the
    run's epochs); self-learning 1.2 (label-correction forwards); RSL 2, RSL_WM 3; DivideMix 2
    during warm-up, then 2 x (1 + 18 f) / 3 with f the labelled fraction (~ 1 - noise rate):
    18 forward-equivalents per labelled sample (per 64 labelled samples: six no-grad forwards
    of 64 images for co-guessing and co-refinement, and one training step on the 256-image
    mixed batch) and one eval_train forward per sample, per network.
    Images per second per network: the H100 targets (cnn9 45,000; preact_resnet18 60,000; cnn6
    150,000 fused; lenet 300,000; mlp 1e6, launch-bound), replaced by measured GPU numbers when
    ``reports/perf.json`` holds a CUDA run, and scaled down for inputs larger than the
    benchmarked ones; other networks at 200 TFLOP/s of their training FLOPs. The result
    depends only on the specs and those throughput figures.

    throughput: network -> images/s, to use instead of the defaults.
    Returns {"gpu_hours": total, "runs": count, "by_grid": {grid: hours},
    "by_method": {method: hours}, "throughput": {network: images/s used},
    "throughput_source": str, "assumptions": [str]}.
    """
    table, source = resolve_throughput(throughput)
    specs = list(runs)
    by_grid: dict[str, float] = {}
    by_method: dict[str, float] = {}
    used: dict[str, float] = {}
    total = 0.0
    for spec in specs:
        ips = throughput_for(spec, table)
        hours = network_images(spec) / ips / 3600.0
        total += hours
        used[spec.network] = table.get(spec.network, ips)
        by_grid[spec.grid] = by_grid.get(spec.grid, 0.0) + hours
        by_method[spec.method] = by_method.get(spec.method, 0.0) + hours
    return {"gpu_hours": total, "runs": len(specs), "by_grid": by_grid,
            "by_method": by_method, "throughput": used, "throughput_source": source,
            "assumptions": _assumptions(used, specs)}
