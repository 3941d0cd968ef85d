"""The seeds of one grid cell trained together as one fused model (``bench run --fuse-seeds``).

A cell's runs differ only in their seed: the same architecture, batch size, optimiser and
schedule, different initial weights and data orders (and noisy labels, where the noise seed
follows the seed, as it does unless the grid fixes ``noise_seed``). :func:`run_fused` builds
every run exactly as :func:`bench.engine.run` does (same seeding, same
:class:`~bench.engine.RunContext`, same method object, so the same initial weights and the same
batch order; the dataset is loaded once and its images held once on the device), stacks the runs' networks into one
:class:`~bench.fused.FusedNetworks` and trains them with one stream of kernels per step. After
each epoch the trained weights are copied back into each run's own networks, and the engine's
per-run code evaluates them, scores the selection against the clean labels and writes one
record per run, in the schema of an unfused run plus ``fused`` (the group's run_ids and wall
time; ``wall_seconds`` is the run's share, the group's time divided by its size).

Fusable methods: every :class:`~methods.base.BatchMethod` whose class sets ``fusable``
(``standard``, ``mentornet``, ``coteaching``, ``coteaching_plus``, ``decoupling``, ``jocor``).
Its networks of the G runs become one :class:`~bench.fused.FusedNetworks` (a two-network method
2G networks), its own ``batch_loss`` runs vmapped over the runs, and its own epoch loop
(:meth:`~methods.base.BatchMethod.fit_epoch`) trains them, with one optimiser over the stacked
parameters standing for the runs' optimisers (every supported optimiser updates elementwise).

Other methods run unfused (the runner falls back by itself). The fused path has no data
augmentation (the Co-teaching family trains without it) and keeps no checkpoints: a fused group
that is killed starts again from its first epoch. Runs agree with their unfused twins up to
float rounding (``tests/test_fused_run.py``); the fused step runs in the runs'
``train.precision`` as the unfused one does (fp32 by default; CUDA bf16 autocast under
``precision: bf16``). Runs that hold out a clean validation set run unfused. Fusing pays on a
GPU, where one small network leaves the device mostly idle; on a CPU it is slower than running
the seeds one by one (see ``reports/perf.md``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import traceback
from typing import Callable, Sequence

import torch

from bench import engine, fused
from bench.config import RunSpec
from bench.errors import BenchError, ConfigError
from bench.registry import METHODS
from methods.base import BatchMethod, EpochResult, EpochTally

__all__ = ["fusable", "fusable_methods", "group_key", "run_fused"]


def group_key(spec: RunSpec) -> str:
    """What the runs of one fused group share: the whole configuration but the seeds (the
    run's seed and its noise seed; each run keeps its own noisy labels)."""
    config = spec.config_dict()
    config.pop("seed")
    config.pop("noise_seed")
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


def fusable_methods() -> list[str]:
    """The registered methods whose class is a fusable :class:`~methods.base.BatchMethod`."""
    return [name for name in METHODS.names() if _fusable_class(METHODS.get(name))]


def _fusable_class(method_cls: type) -> bool:
    return issubclass(method_cls, BatchMethod) and method_cls.fusable


def fusable(spec: RunSpec) -> bool:
    """Whether the run can train fused: a fusable method, no augmentation, no clean split."""
    return (spec.method in METHODS and _fusable_class(METHODS.get(spec.method))
            and spec.train.augment == "none" and spec.train.clean_val_fraction == 0.0)


class _FusedGroup:
    """The networks of G runs of one :class:`~methods.base.BatchMethod` as one fused model.

    The first run's method drives the epoch (its step state is every run's: they share the
    configuration); after each epoch the trained weights are copied back into every run's own
    networks and its step count and visited set are updated, so each run's method and context
    read as after an unfused epoch.
    """

    def __init__(self, methods: Sequence[BatchMethod], ctxs: Sequence[engine.RunContext]) -> None:
        self.methods = list(methods)
        self.ctxs = list(ctxs)
        self.lead = self.methods[0]
        # FusedNetworks' order: net1 of every run, then net2 of every run, ...
        self.networks = [net for i in range(self.lead.num_networks)
                         for net in (m.ordered_networks()[i] for m in self.methods)]
        self.fused = fused.FusedNetworks(self.networks)
        # made through the first context so that its schedule (lr, beta1) is applied to it
        self.optimizer = self.ctxs[0].make_optimizer(self.fused.parameters())
        self.loss = fused.vmap_loss(self.lead.batch_loss)
        self.labels = torch.stack([c.noisy_labels for c in self.ctxs])
        self.runs = torch.arange(len(self.ctxs), device=self.labels.device)[:, None]

    def batches(self, visited: torch.Tensor):
        ctx = self.ctxs[0]
        cfg = ctx.train_cfg
        for x, y, idx in fused.fused_train_batches(
                ctx.train_images, self.labels, generators=[c.loader_gen for c in self.ctxs],
                batch_size=cfg.batch_size, drop_last=cfg.drop_last,
                max_iters_per_epoch=cfg.max_iters_per_epoch, normalization=ctx.normalization(),
                channels_last=ctx.device.type == "cuda"):
            visited[self.runs, idx] = True
            yield x, y, idx

    def train_epoch(self, epoch: int) -> list[EpochResult]:
        self.fused.train()
        visited = torch.zeros_like(self.labels, dtype=torch.bool)
        tally = EpochTally(self.lead.ctx.num_train, self.labels.device, runs=len(self.ctxs),
                           per_sample=self.lead.per_sample_loss)
        networks_per_run = self.lead.num_networks
        self.lead.fit_epoch(
            epoch, self.batches(visited),
            forward=lambda x: fused.stacked_forward(self.fused, x, networks_per_run),
            loss=self.loss, optimizers=[self.optimizer], tally=tally)
        for method in self.methods[1:]:
            method.global_step = self.lead.global_step
        for ctx, row in zip(self.ctxs, visited):
            ctx.visited.copy_(row)
        self.copy_back()
        return tally.results(self.lead.epoch_extra(epoch))

    @torch.no_grad()
    def copy_back(self) -> None:
        """Write the trained weights and buffers into each run's own networks."""
        params, buffers = self.fused.stacked_parameters(), self.fused.stacked_buffers()
        for g, net in enumerate(self.networks):
            for name, value in params.items():
                net.get_parameter(name).copy_(value[g])
            for name, value in buffers.items():
                net.get_buffer(name).copy_(value[g])


def run_fused(specs: Sequence[RunSpec], *, device: str | None = None,
              data_root=None, verify_data: bool = True,
              on_epoch: Callable[[int, int], None] | None = None,
              compile: bool = False) -> list[dict]:
    """Train the runs ``specs`` (one cell, different seeds) fused; returns their records.

    A run whose loss becomes non-finite gets a ``failed`` record with the epochs it completed;
    the others go on. An exception of the group fails every run not yet failed, except a
    :class:`~bench.errors.BenchError` (bad configuration, missing data), which is raised for
    the caller to report, as :func:`bench.engine.run` does.
    on_epoch(run_index, epoch) is called after each run's epoch is recorded.
    compile: compile the fused model with ``torch.compile`` (the runs' own networks, used for
        evaluation only, stay eager).
    """
    specs = list(specs)
    if not specs:
        return []
    _check_group(specs)
    dev = engine.pick_device(device)
    records = [engine.new_record(s, dev, compile=compile) for s in specs]
    alive = list(range(len(specs)))
    t0 = time.perf_counter()
    try:
        runs = _build_runs(specs, records, dev, data_root=data_root, verify=verify_data)
        group = _FusedGroup(runs.methods, runs.ctxs)
        if compile:
            group.fused.compile()
        for epoch in range(specs[0].train.start_epoch, specs[0].train.epochs):
            runs.ctxs[0].apply_schedule(epoch)
            _record_epoch(epoch, group.train_epoch(epoch), runs, records, alive, on_epoch)
        for g in alive:
            engine.finish_record(records[g], runs.methods[g], records[g]["metrics"])
    except BenchError:
        raise
    except Exception as exc:  # the group's failure is each remaining run's failure
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
        for g in alive:
            records[g].update(status="failed", error=error)
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    _close(specs, records, time.perf_counter() - t0)
    return records


@dataclasses.dataclass
class _Runs:
    """The runs of a fused group: each one's context, method and clean training labels, and
    the test set they share."""

    ctxs: list[engine.RunContext]
    methods: list[BatchMethod]
    cleans: list[torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]


def _check_group(specs: list[RunSpec]) -> None:
    """Refuse runs that are not one cell's seeds, or whose method or protocol cannot fuse."""
    keys = {group_key(s) for s in specs}
    if len(keys) != 1 or len({s.seed for s in specs}) != len(specs):
        raise ConfigError("run_fused: the runs must share their configuration and differ in seed")
    if not fusable(specs[0]):
        raise ConfigError(f"{specs[0].method} with augment {specs[0].train.augment!r} cannot be "
                          f"fused; fusable methods (without augmentation or a clean validation "
                          f"split): {', '.join(fusable_methods())}")


def _build_runs(specs: list[RunSpec], records: list[dict], dev: torch.device, *, data_root,
                verify: bool) -> _Runs:
    """Every run's context and method, built in the seeding and construction order of
    :func:`bench.engine.run` (so with the same initial weights), the dataset loaded once and
    its training images held once on the device; each record takes its run's noise fields."""
    ctxs: list[engine.RunContext] = []
    methods: list[BatchMethod] = []
    cleans: list[torch.Tensor] = []
    data = on_device = None
    for spec, record in zip(specs, records):
        torch.manual_seed(spec.seed)
        data, noisy, info = engine.prepare(spec, dev, data_root=data_root, verify=verify,
                                           data=data)
        if not data.in_memory:
            raise ConfigError(f"--fuse-seeds needs a dataset held in memory; "
                              f"{spec.dataset} is read from disk per batch")
        if on_device is None:   # one copy of the images on the device for the whole group
            on_device = dataclasses.replace(data, train_images=data.train_images.to(dev))
        nominal = info.pop("_nominal_matrix")
        record.update(info)
        ctx = engine.RunContext(spec, on_device, noisy, dev, nominal_transition_matrix=nominal)
        methods.append(engine.build_method(spec, ctx))
        ctxs.append(ctx)
        cleans.append(torch.as_tensor(data.train_labels, device=dev))
    assert data is not None     # specs is not empty
    test = (data.test_images.to(dev), torch.as_tensor(data.test_labels, device=dev))
    return _Runs(ctxs, methods, cleans, test)


def _record_epoch(epoch: int, results: list[EpochResult], runs: _Runs, records: list[dict],
                  alive: list[int], on_epoch: Callable[[int, int], None] | None) -> None:
    """Record the epoch of every run still alive; a run whose loss is not finite fails, its
    record keeping the epochs it completed, and leaves ``alive``."""
    for g in list(alive):
        result, record = results[g], records[g]
        if not math.isfinite(result.train_loss):
            alive.remove(g)
            record.update(status="failed", error=(
                f"NonFiniteLossError: training loss is {result.train_loss} at epoch {epoch}"))
            continue
        engine.record_epoch(record["metrics"], epoch, runs.methods[g], runs.ctxs[g], result,
                            runs.test, runs.cleans[g])
        if on_epoch is not None:
            on_epoch(g, epoch)


def _close(specs: list[RunSpec], records: list[dict], wall: float) -> None:
    """Stamp every record with its share of the group's wall time, the time it finished and
    the group it trained in."""
    finished = engine.utc_now()
    run_ids = [s.run_id for s in specs]
    for record in records:
        record.update(wall_seconds=wall / len(specs), finished_at=finished,
                      fused={"run_ids": run_ids, "group_wall_seconds": wall})
