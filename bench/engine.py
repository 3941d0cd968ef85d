"""One run: data on the device, noise, the method's epochs, evaluation, diagnostics, record.

Data flow: :func:`run` loads the dataset (uint8 tensors moved once to the device), draws the
noisy labels from (dataset, noise type, rate, noise seed), builds the method with a
:class:`RunContext`, and for each epoch calls the method's ``train_epoch``, evaluates every
network on the test set and scores the method's selection against the clean labels (for a
method that scores samples, also the selection curve of :mod:`bench.selection`). The record
is written atomically by :mod:`bench.store`. Full state is checkpointed every few epochs and a
run resumes from its last checkpoint.

With ``train.clean_val_fraction`` a clean, class-stratified validation set is held out of the
training images after the noise draw and scored every epoch (``metrics.val_acc``); the record
then carries ``test_acc_clean_val`` and ``clean_val_epoch`` (protocol ``clean_val``). Runs train
in fp32 unless ``train.precision: bf16`` (CUDA autocast); ``env`` records which.

The steps live in modules of their own, re-exported here: :mod:`bench.context` (the
:class:`RunContext`), :mod:`bench.run_data` (data, noise and splits), :mod:`bench.evaluation`
(accuracies and the selection's scores), :mod:`bench.run_record` (the record, epoch by epoch)
and :mod:`bench.checkpoints` (saving and resuming).
"""

from __future__ import annotations

import dataclasses
import math
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch

from bench import store
from bench.checkpoints import (CHECKPOINT_VERSION, checkpoint_path, load_checkpoint,
                               remove_checkpoints, save_checkpoint)
from bench.config import RunSpec
from bench.context import RunContext, autocast_dtype, pick_device, random_crop_flip
from bench.errors import BenchError
from bench.evaluation import evaluate, reported_accuracy, selection_diagnostics
from bench.registry import METHODS
from bench.run_data import prepare, smoke_subset
from bench.run_record import (empty_metrics, environment, failed_record, finish_record, git_sha,
                              new_record, precision_env, record_epoch, utc_now)

__all__ = ["CHECKPOINT_VERSION", "NonFiniteLossError", "RunContext", "autocast_dtype",
           "build_method", "environment", "evaluate", "failed_record", "finish_record",
           "git_sha", "new_record", "pick_device", "precision_env", "prepare",
           "random_crop_flip", "record_epoch", "reported_accuracy", "run",
           "selection_diagnostics", "smoke_subset", "utc_now"]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def run(spec: RunSpec, *, device: str | None = None, results_dir: str | Path | None = None,
        checkpoint_dir: str | Path | None = None, checkpoint_every: int = 10,
        data_root: str | Path | None = None, verify_data: bool = True,
        on_epoch: Callable[[int, dict], None] | None = None,
        stop_after_epoch: int | None = None, compile: bool = False) -> dict:
    """Execute one run and return its record; write it under ``results_dir`` when given.

    A failure (an exception, a NaN loss, running out of memory) becomes a record with
    ``status: failed`` and the error text, never an exception, except for bad configuration
    (:class:`~bench.errors.BenchError`), which is raised for the caller to report.

    stop_after_epoch: stop (without a record) after checkpointing this epoch; for tests of
        interrupted runs.
    compile: compile the networks with ``torch.compile`` (an execution choice, not part of the
        run's configuration or run_id; recorded as ``env.torch_compile``).
    """
    dev = pick_device(device)
    record = new_record(spec, dev, compile=compile)
    clock = _Clock()
    warnings: list[str] = []  # problems the run survived (a checkpoint it could not write...)
    checkpoints = (_Checkpoints(checkpoint_path(checkpoint_dir, spec.run_id), checkpoint_every,
                                clock, warnings) if checkpoint_dir else None)
    try:
        training = _set_up(spec, dev, record, data_root=data_root, verify=verify_data,
                           compile=compile)
        if checkpoints is not None:
            checkpoints.resume(training)
        record["metrics"] = training.metrics  # a failed record keeps the epochs it completed
        if not _train(training, checkpoints, on_epoch=on_epoch,
                      stop_after_epoch=stop_after_epoch):
            return {}
        finish_record(record, training.method, training.metrics)
        record["wall_seconds"] = clock.elapsed()
    except BenchError:
        raise
    except Exception as exc:  # one failing run must not stop a grid
        _fail(record, exc, clock.elapsed(), dev)
    record["finished_at"] = utc_now()
    record["warnings"] = warnings
    _keep(spec, record, results_dir, checkpoints)
    return record


def build_method(spec: RunSpec, ctx: RunContext):
    """The run's method object, its config built from the spec's method parameters."""
    method_cls = METHODS.get(spec.method)
    return method_cls(method_cls.Config(**_config_kwargs(method_cls, spec.method_params)), ctx)


def _config_kwargs(method_cls, params: dict) -> dict:
    # JSON turns tuples into lists; give the frozen dataclass back its tuples
    types = {f.name: f.type for f in dataclasses.fields(method_cls.Config)}
    return {k: tuple(v) if isinstance(v, list) and "tuple" in str(types.get(k, "")) else v
            for k, v in params.items()}


class _Clock:
    """The wall seconds of a run, those of the attempts it resumed from included."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.before = 0.0   # the earlier attempts' seconds, from the checkpoint resumed

    def elapsed(self) -> float:
        """Seconds of this attempt and of those before it."""
        return self.before + time.perf_counter() - self.start


@dataclasses.dataclass
class _Training:
    """What a run's epochs work on: the method and its context, the clean training labels,
    the test set and the clean validation set (or None), and the metrics so far, which go on
    from ``first_epoch``."""

    ctx: RunContext
    method: Any
    clean: torch.Tensor
    test: tuple[Any, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor] | None
    metrics: dict
    first_epoch: int


@dataclasses.dataclass
class _Checkpoints:
    """A run's checkpoint: where it is kept, after how many epochs of an attempt it is written
    again, the run's clock (whose seconds it keeps) and the warnings of those it could not
    read or write."""

    path: Path
    every: int
    clock: _Clock
    warnings: list[str]

    def resume(self, training: _Training) -> None:
        """Continue ``training`` from the last readable checkpoint, if there is one."""
        resumed = load_checkpoint(self.path, training.method, training.ctx, self.warnings)
        if resumed is not None:
            training.first_epoch, training.metrics, self.clock.before = resumed

    def due(self, epoch: int, training: _Training) -> bool:
        """Whether to checkpoint after ``epoch``: every ``every`` epochs of this attempt, not
        after the last epoch (the record follows it)."""
        last = epoch == training.ctx.epochs - 1
        return not last and (epoch + 1 - training.first_epoch) % self.every == 0

    def save(self, next_epoch: int, training: _Training) -> None:
        """Checkpoint the run's state, to go on at ``next_epoch``."""
        save_checkpoint(self.path, next_epoch, training.method, training.ctx, training.metrics,
                        self.clock.elapsed(), self.warnings)


def _set_up(spec: RunSpec, dev: torch.device, record: dict, *, data_root: str | Path | None,
            verify: bool, compile: bool) -> _Training:
    """Seed the run, prepare its data and build its context and method, in the order that
    fixes the initial weights; the record takes the data's noise fields."""
    torch.manual_seed(spec.seed)
    data, noisy, info = prepare(spec, dev, data_root=data_root, verify=verify)
    nominal = info.pop("_nominal_matrix")
    record.update(info)
    ctx = RunContext(spec, data, noisy, dev, nominal_transition_matrix=nominal, compile=compile)
    method = build_method(spec, ctx)
    clean = torch.as_tensor(data.train_labels, device=dev)
    test_x = data.test_images.to(dev) if data.in_memory else data.test_images
    test = (test_x, torch.as_tensor(data.test_labels, device=dev))
    val = (None if data.val_images is None else
           (data.val_images.to(dev), torch.as_tensor(data.val_labels, device=dev)))
    return _Training(ctx=ctx, method=method, clean=clean, test=test, val=val,
                     metrics=empty_metrics(), first_epoch=spec.train.start_epoch)


def _train(training: _Training, checkpoints: _Checkpoints | None, *,
           on_epoch: Callable[[int, dict], None] | None, stop_after_epoch: int | None) -> bool:
    """Train and record the remaining epochs, checkpointing as due; False when stopped after
    ``stop_after_epoch`` (its state checkpointed, no record made)."""
    for epoch in range(training.first_epoch, training.ctx.epochs):
        _train_epoch(training, epoch, on_epoch)
        if checkpoints is not None and checkpoints.due(epoch, training):
            checkpoints.save(epoch + 1, training)
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            if checkpoints is not None:
                checkpoints.save(epoch + 1, training)
            return False
    return True


def _train_epoch(training: _Training, epoch: int,
                 on_epoch: Callable[[int, dict], None] | None) -> None:
    """One epoch of the method under the epoch's schedule, then evaluated and recorded."""
    ctx, method = training.ctx, training.method
    ctx.apply_schedule(epoch)
    ctx.visited.zero_()
    result = method.train_epoch(epoch)
    if not math.isfinite(result.train_loss):
        raise NonFiniteLossError(f"training loss is {result.train_loss} at epoch {epoch}")
    accs = record_epoch(training.metrics, epoch, method, ctx, result, training.test,
                        training.clean, val=training.val)
    if on_epoch is not None:
        on_epoch(epoch, {"test_acc": training.metrics["test_acc"][-1], **accs})


def _fail(record: dict, exc: Exception, elapsed: float, dev: torch.device) -> None:
    """Make ``record`` the failed record of the exception being handled."""
    record["status"] = "failed"
    record["error"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
    record["wall_seconds"] = elapsed
    if dev.type == "cuda":
        torch.cuda.empty_cache()


def _keep(spec: RunSpec, record: dict, results_dir: str | Path | None,
          checkpoints: _Checkpoints | None) -> None:
    """Write the record under ``results_dir`` when given; a run that finished needs its
    checkpoints no more."""
    if results_dir is not None:
        store.write_record(Path(results_dir) / spec.filename, record)
    if checkpoints is not None and record["status"] == "ok":
        remove_checkpoints(checkpoints.path)
