"""A method's checkpoint cannot forget: parametrised over every registered method, a short run
changes the method's attributes, and ``state_dict`` / ``load_state_dict`` (through the bytes the
engine writes) must give a fresh instance every one of them back.

The resume tests compare records, which a state dropped from the checkpoint leaves unchanged
whenever the interruption falls where the state is still empty or not used yet (DivideMix's
loss history during warm-up); these tests compare the state itself.
"""

from __future__ import annotations

import dataclasses
import io
import math
from functools import lru_cache
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from bench import engine
from bench.config import RunSpec, TrainConfig, resolve_method_params
from bench.data import ImageData, load_dataset
from bench.registry import METHODS
from methods.base import Method

EPOCHS = 3
# values (of the parameters a method has) that bring each of its phases into three epochs, and
# DivideMix's loss history over several epochs (its 90%-noise setting; one epoch's by default)
SHORT = {"loss_history": 5, "warm_up": 1, "warmup": 1, "warmup_epochs": 1, "init_epoch": 1, "num_gradual": 1,
         "init_iters": 5, "estimation_epochs": 1, "sel_epoch": 1, "retrain_epochs": 2,
         "mixmatch_epochs": 2, "iterations": 4, "correction_start_epoch": 1, "num_samples": 64,
         "num_prototypes": 2, "m": 64, "num_batches": 5, "T_k": 1}
CPU = torch.device("cpu")


@lru_cache(maxsize=1)
def digits() -> ImageData:
    return load_dataset("digits")


def spec_of(method: str, **params: Any) -> RunSpec:
    fields = {f.name for f in dataclasses.fields(METHODS.get(method).Config)}
    short = {k: v for k, v in SHORT.items() if k in fields}
    resolved = resolve_method_params(method, {**short, **params}, dataset="digits",
                                     noise_type="symmetric", noise_rate=0.4)
    return RunSpec(grid="checkpoint", label=method, method=method, method_params=resolved,
                   dataset="digits", network="mlp", noise_type="symmetric", noise_rate=0.4,
                   noise_seed=1, seed=1, train=TrainConfig(epochs=EPOCHS, batch_size=64))


def build(spec: RunSpec) -> Method:
    """A fresh instance of the run's method, as the engine builds it."""
    torch.manual_seed(spec.seed)
    data, noisy, info = engine.prepare(spec, CPU, data=digits())
    ctx = engine.RunContext(spec, data, noisy, CPU,
                            nominal_transition_matrix=info["_nominal_matrix"])
    cls = METHODS.get(spec.method)
    return cls(cls.Config(**engine._config_kwargs(cls, spec.method_params)), ctx)


def train(method: Method, epochs: int = EPOCHS) -> Method:
    for epoch in range(epochs):
        method.ctx.apply_schedule(epoch)
        method.ctx.visited.zero_()
        method.train_epoch(epoch)
    return method


def through_disk(state: dict) -> dict:
    """``state`` after a save and a load as the engine's checkpoints do them."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, map_location="cpu", weights_only=True)


def same(a: Any, b: Any) -> bool:
    """Equal values of the same kind: tensors and arrays in value, dtype and device; networks
    and optimisers by their state_dict; NaN equal to NaN."""
    if isinstance(a, (nn.Module, torch.optim.Optimizer)):
        return type(a) is type(b) and same(a.state_dict(), b.state_dict())
    if isinstance(a, torch.Tensor):
        return (isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.device == b.device
                and a.shape == b.shape and _equal_tensors(a, b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b,
                                                                                   equal_nan=True)
    if isinstance(a, dict):
        return (isinstance(b, dict) and a.keys() == b.keys()
                and all(same(a[k], b[k]) for k in a))
    if isinstance(a, (list, tuple)):
        return (type(a) is type(b) and len(a) == len(b)
                and all(same(x, y) for x, y in zip(a, b)))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return type(a) is type(b) and a == b


def _equal_tensors(a: torch.Tensor, b: torch.Tensor) -> bool:
    if not a.is_floating_point():
        return torch.equal(a, b)
    nan = a.isnan()
    return torch.equal(nan, b.isnan()) and torch.equal(a[~nan], b[~nan])


def state_attributes(method: Method) -> dict[str, Any]:
    return {k: v for k, v in vars(method).items() if k not in ("config", "ctx")}


def not_restored(trained: Method, restored: Method) -> list[str]:
    """The attributes of ``trained`` that ``restored`` does not hold equal."""
    mine, theirs = state_attributes(trained), state_attributes(restored)
    return sorted(k for k in mine.keys() | theirs.keys()
                  if k not in mine or k not in theirs or not same(mine[k], theirs[k]))


def restored_from(trained: Method, state: dict | None = None) -> Method:
    fresh = build(trained.ctx.spec)
    fresh.load_state_dict(through_disk(trained.state_dict() if state is None else state))
    return fresh


@lru_cache(maxsize=None)
def trained_run(method: str) -> tuple[Method, Method]:
    """(an untrained instance, one trained for EPOCHS epochs) of the method's short run."""
    spec = spec_of(method)
    return build(spec), train(build(spec))


@pytest.mark.parametrize("method", METHODS.names())
def test_a_fresh_instance_gets_back_every_attribute_training_changed(method) -> None:
    untrained, trained = trained_run(method)
    changed = [k for k, v in state_attributes(trained).items()
               if not same(v, state_attributes(untrained).get(k))]
    assert changed, "training changed nothing: the run is too short to test the checkpoint"
    assert not_restored(trained, restored_from(trained)) == []


@pytest.mark.parametrize("method", METHODS.names())
def test_declared_constants_are_constant(method) -> None:
    untrained, trained = trained_run(method)
    for name in type(trained).constant_state:
        assert hasattr(untrained, name), f"constant_state names {name!r}, which is no attribute"
        assert same(getattr(untrained, name), getattr(trained, name)), (
            f"{name} changed in training: it is state, not a constant")


@pytest.mark.parametrize("method", METHODS.names())
def test_a_fresh_instance_has_the_entries_of_a_trained_ones_checkpoint(method) -> None:
    """The engine accepts a checkpoint only with exactly a fresh instance's entries: state
    first set in training (not in ``__init__``) would make every checkpoint unusable."""
    untrained, trained = trained_run(method)
    assert set(trained.state_dict()) == set(untrained.state_dict())


def test_dividemix_keeps_its_loss_history() -> None:
    _, trained = trained_run("dividemix")
    history = trained.loss_history1
    assert history.shape == (EPOCHS - 1, trained.ctx.num_train)  # the epochs after warm-up
    restored = restored_from(trained)
    assert torch.equal(restored.loss_history1, history)
    assert torch.equal(restored.loss_history2, trained.loss_history2)

    dropped = {k: v for k, v in trained.state_dict().items() if not k.startswith("loss_history")}
    assert not_restored(trained, restored_from(trained, dropped)) == ["loss_history1",
                                                                      "loss_history2"]


def test_a_dividemix_run_resumed_after_warm_up_equals_the_uninterrupted_one(tmp_path) -> None:
    """Interrupted with two epochs of loss history behind it: a resumed run that lost the
    history fits its next GMM to one epoch's losses and divides the samples otherwise."""
    spec = dataclasses.replace(spec_of("dividemix"),
                               train=TrainConfig(epochs=4, batch_size=64))
    full = engine.run(spec, device="cpu")
    assert full["status"] == "ok", full["error"]
    assert engine.run(spec, device="cpu", checkpoint_dir=tmp_path, stop_after_epoch=2) == {}
    resumed = engine.run(spec, device="cpu", checkpoint_dir=tmp_path)
    assert resumed["status"] == "ok" and resumed["warnings"] == []
    assert resumed["metrics"] == full["metrics"]


def test_state_of_a_kind_no_checkpoint_holds_is_an_error_naming_it() -> None:
    _, trained = trained_run("standard")
    trained.sampler = torch.Generator()
    try:
        with pytest.raises(TypeError, match=r"Standard\.sampler holds a Generator"):
            trained.state_dict()
        trained.sampler = [1, {"k": torch.Generator()}]
        with pytest.raises(TypeError, match=r"Standard\.sampler holds a Generator"):
            trained.state_dict()
    finally:
        del trained.sampler


def test_numpy_values_come_back_as_numpy() -> None:
    _, trained = trained_run("standard")
    trained.schedule = np.linspace(0.0, 0.5, 4, dtype=np.float32)
    trained.rate = np.float64(0.25)
    try:
        restored = build(trained.ctx.spec)
        restored.schedule, restored.rate = np.zeros(4, dtype=np.float32), np.float64(0.0)
        restored.load_state_dict(through_disk(trained.state_dict()))
        assert same(restored.schedule, trained.schedule) and same(restored.rate, trained.rate)
    finally:
        del trained.schedule, trained.rate
