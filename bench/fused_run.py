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

Fusable methods and what they fuse:

* ``standard``: G networks, :func:`bench.fused.standard_step`;
* ``jocor``: the two networks of each of G runs, 2G networks, :func:`bench.fused.jocor_step`;
* ``coteaching``: likewise, :func:`bench.fused.coteaching_step` (one optimiser over the stacked
  parameters stands for the code's two Adam optimisers: the updates are elementwise);
* ``decoupling``: likewise, :func:`bench.fused.decoupling_step`.

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
from bench.errors import ConfigError
from bench.registry import METHODS
from methods.base import EpochResult
from methods.small_loss import num_remember

__all__ = ["FUSABLE", "fusable", "group_key", "run_fused"]

FUSABLE = ("standard", "jocor", "coteaching", "decoupling")


def group_key(spec: RunSpec) -> str:
    """What the runs of one fused group share: the whole configuration but the seeds (the
    run's seed and its noise seed; each run keeps its own noisy labels)."""
    config = spec.config_dict()
    config.pop("seed")
    config.pop("noise_seed")
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


def fusable(spec: RunSpec) -> bool:
    return (spec.method in FUSABLE and spec.train.augment == "none"
            and spec.train.clean_val_fraction == 0.0)


class _Trainer:
    """Trains the networks of G runs as one fused model; subclasses define one epoch."""

    def __init__(self, methods: Sequence, ctxs: Sequence[engine.RunContext]) -> None:
        self.methods = list(methods)
        self.ctxs = list(ctxs)
        self.device = ctxs[0].device
        self.networks = [net for names in self.layout() for net in names]
        self.fused = fused.FusedNetworks(self.networks)
        # one optimiser over the stacked parameters acts as one per run (elementwise updates);
        # made through the first context so that its schedule (lr, beta1) is applied to it
        self.optimizer = ctxs[0].make_optimizer(self.fused.parameters())
        ctx = ctxs[0]
        cfg = ctx.train_cfg
        self.labels = torch.stack([c.noisy_labels for c in ctxs])
        self.images = ctx._images     # one tensor for the group (run_fused checks it is one)
        self.batch_kwargs = dict(
            batch_size=cfg.batch_size, drop_last=cfg.drop_last,
            max_iters_per_epoch=cfg.max_iters_per_epoch,
            mean=ctx._mean.flatten() if cfg.normalize else None,
            std=ctx._std.flatten() if cfg.normalize else None,
            channels_last=self.device.type == "cuda")
        self.runs = torch.arange(len(ctxs), device=self.device)[:, None]

    def layout(self) -> list[list[torch.nn.Module]]:
        raise NotImplementedError

    def batches(self, visited: torch.Tensor):
        gens = [c.loader_gen for c in self.ctxs]
        for x, y, idx in fused.fused_train_batches(self.images, self.labels, generators=gens,
                                                   **self.batch_kwargs):
            visited[self.runs, idx] = True
            yield x, y, idx

    def train_epoch(self, epoch: int) -> list[EpochResult]:
        self.fused.train()
        visited = torch.zeros_like(self.labels, dtype=torch.bool)
        results = self._epoch(epoch, visited)
        for ctx, row in zip(self.ctxs, visited):
            ctx.visited.copy_(row)
        self.copy_back()
        return results

    def _epoch(self, epoch: int, visited: torch.Tensor) -> list[EpochResult]:
        raise NotImplementedError

    @torch.no_grad()
    def copy_back(self) -> None:
        """Write the trained weights and buffers into each run's own networks."""
        params, buffers = self.fused.stacked_parameters(), self.fused.stacked_buffers()
        for g, net in enumerate(self.networks):
            for name, value in params.items():
                net.get_parameter(name).copy_(value[g])
            for name, value in buffers.items():
                net.get_buffer(name).copy_(value[g])


class _StandardTrainer(_Trainer):
    def layout(self):
        return [[m.net1 for m in self.methods]]

    def _epoch(self, epoch, visited):
        g = len(self.ctxs)
        total = torch.zeros(g, device=self.device)
        count = 0
        for x, y, _ in self.batches(visited):
            losses = fused.standard_step(self.fused, self.optimizer, x, y,
                                         amp=self.ctxs[0].use_amp)
            total += losses * y.shape[1]
            count += y.shape[1]
        return [EpochResult(train_loss=float(t) / max(count, 1)) for t in total.cpu()]


class _TwoNetworkTrainer(_Trainer):
    def layout(self):
        # the fused steps' order: net1 of every run, then net2 of every run
        return [[m.net1 for m in self.methods], [m.net2 for m in self.methods]]


class _PairTrainer(_TwoNetworkTrainer):
    """Two networks per run under a small-loss schedule (Co-teaching, JoCoR)."""

    def step(self, x, y, num_remember: int):
        """One fused step: ((G,) losses, (G, num_remember) kept batch positions)."""
        raise NotImplementedError

    def _epoch(self, epoch, visited):
        forget_rate = float(self.methods[0].rate_schedule[epoch])
        selected = torch.zeros_like(visited)
        total = torch.zeros(len(self.ctxs), device=self.device)
        batches = 0
        for x, y, idx in self.batches(visited):
            losses, pick = self.step(x, y, num_remember(forget_rate, y.shape[1]))
            selected[self.runs, idx.gather(1, pick)] = True
            total += losses
            batches += 1
        return [EpochResult(train_loss=float(t) / max(batches, 1), selected=sel,
                            extra={"forget_rate": forget_rate})
                for t, sel in zip(total.cpu(), selected)]


class _JoCoRTrainer(_PairTrainer):
    def step(self, x, y, num_remember):
        cfg = self.methods[0].config
        return fused.jocor_step(self.fused, self.optimizer, x, y, co_lambda=cfg.co_lambda,
                                num_remember=num_remember, select_on=cfg.select_on,
                                stable_kl=cfg.stable_kl, amp=self.ctxs[0].use_amp)


class _CoteachingTrainer(_PairTrainer):
    def step(self, x, y, num_remember):
        cfg = self.methods[0].config
        return fused.coteaching_step(self.fused, self.optimizer, x, y,
                                     num_remember=num_remember,
                                     normalization=cfg.loss_normalization,
                                     amp=self.ctxs[0].use_amp)


class _DecouplingTrainer(_TwoNetworkTrainer):
    def _epoch(self, epoch, visited):
        cfg = self.methods[0].config
        selected = torch.zeros_like(visited)
        total = torch.zeros(len(self.ctxs), device=self.device)
        batches = 0
        for x, y, idx in self.batches(visited):
            step = self.methods[0].global_step      # the same in every run of the group
            losses, update = fused.decoupling_step(
                self.fused, self.optimizer, x, y, warmup=step < cfg.init_iters,
                min_batch_fraction=cfg.min_batch_fraction, amp=self.ctxs[0].use_amp)
            selected[self.runs, idx] = update
            total += losses
            batches += 1
            for method in self.methods:
                method.global_step += 1
        return [EpochResult(train_loss=float(t) / max(batches, 1), selected=sel)
                for t, sel in zip(total.cpu(), selected)]


_TRAINERS = {"standard": _StandardTrainer, "jocor": _JoCoRTrainer,
             "coteaching": _CoteachingTrainer, "decoupling": _DecouplingTrainer}


def run_fused(specs: Sequence[RunSpec], *, device: str | None = None,
              data_root=None, verify_data: bool = True,
              on_epoch: Callable[[int, int], None] | None = None,
              compile: bool = False) -> list[dict]:
    """Train the runs ``specs`` (one cell, different seeds) fused; returns their records.

    A run whose loss becomes non-finite gets a ``failed`` record with the epochs it completed;
    the others go on. An exception of the group fails every run not yet failed.
    on_epoch(run_index, epoch) is called after each run's epoch is recorded.
    compile: compile the fused model with ``torch.compile`` (the runs' own networks, used for
        evaluation only, stay eager).
    """
    specs = list(specs)
    if not specs:
        return []
    keys = {group_key(s) for s in specs}
    if len(keys) != 1 or len({s.seed for s in specs}) != len(specs):
        raise ConfigError("run_fused: the runs must share their configuration and differ in seed")
    if not fusable(specs[0]):
        raise ConfigError(f"{specs[0].method} with augment {specs[0].train.augment!r} cannot be "
                          f"fused; fusable methods (without augmentation or a clean validation "
                          f"split): {', '.join(FUSABLE)}")
    dev = engine.pick_device(device)
    records = [engine._base_record(s, dev) for s in specs]
    for record in records:
        record["env"]["torch_compile"] = bool(compile)
    alive = list(range(len(specs)))
    t0 = time.perf_counter()
    try:
        method_cls = METHODS.get(specs[0].method)
        ctxs, methods, cleans = [], [], []
        data = on_device = None
        for spec, record in zip(specs, records):
            # the seeding and construction order of engine.run: the same initial weights
            torch.manual_seed(spec.seed)
            data, noisy, info = engine.prepare(spec, dev, data_root=data_root,
                                               verify=verify_data, data=data)
            if not data.in_memory:
                raise ConfigError(f"--fuse-seeds needs a dataset held in memory; "
                                  f"{spec.dataset} is read from disk per batch")
            if on_device is None:   # one copy of the images on the device for the whole group
                on_device = dataclasses.replace(data, train_images=data.train_images.to(dev))
            nominal = info.pop("_nominal_matrix")
            record.update(info)
            ctx = engine.RunContext(spec, on_device, noisy, dev,
                                    nominal_transition_matrix=nominal)
            config = method_cls.Config(**engine._config_kwargs(method_cls, spec.method_params))
            methods.append(method_cls(config, ctx))
            ctxs.append(ctx)
            cleans.append(torch.as_tensor(data.train_labels, device=dev))
            record["metrics"] = engine._empty_metrics()
        test_x = data.test_images.to(dev)
        test_y = torch.as_tensor(data.test_labels, device=dev)
        trainer = _TRAINERS[specs[0].method](methods, ctxs)
        if compile:
            trainer.fused.compile()
        for epoch in range(specs[0].train.start_epoch, specs[0].train.epochs):
            ctxs[0].apply_schedule(epoch)
            results = trainer.train_epoch(epoch)
            for g in list(alive):
                result, method, ctx, record = results[g], methods[g], ctxs[g], records[g]
                if not math.isfinite(result.train_loss):
                    alive.remove(g)
                    record.update(status="failed", error=(
                        f"NonFiniteLossError: training loss is {result.train_loss} at epoch "
                        f"{epoch}"))
                    continue
                accs = engine.evaluate(method, ctx, test_x, test_y)
                engine._append_epoch(record["metrics"], epoch, result, accs,
                                     engine.reported_accuracy(method, accs), ctx, cleans[g])
                if on_epoch is not None:
                    on_epoch(g, epoch)
        for g in alive:
            records[g].update(engine._final_metrics(records[g]["metrics"]))
            records[g]["method_state"] = engine._jsonable_state(methods[g].record_extras())
            records[g]["status"] = "ok"
    except ConfigError:
        raise
    except Exception as exc:  # the group's failure is each remaining run's failure
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
        for g in alive:
            records[g].update(status="failed", error=error)
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    wall = time.perf_counter() - t0
    finished = engine._now()
    group = [s.run_id for s in specs]
    for record in records:
        record.update(wall_seconds=wall / len(specs), finished_at=finished,
                      fused={"run_ids": group, "group_wall_seconds": wall})
    return records
