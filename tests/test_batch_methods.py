"""Batch methods (methods.base.BatchMethod): the one loop against hand-written loops.

Each reference below is the straightforward per-method loop (forward, the method's pure loss,
zero_grad / backward / step, selection and score bookkeeping), written out here for one method
at a time; the suite's loop must reproduce it to the last bit: the same losses, selections,
scores and weights. A method written the loss-only way, defined in a test, is found by the
registry, trains, fuses and resumes from a checkpoint.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench import engine
from bench.data import load_dataset
from bench.fused_run import fusable, run_fused
from bench.registry import METHODS
from methods.base import BatchLoss, BatchMethod, EpochResult
from methods.coteaching_plus import coteaching_plus_selection
from methods.decoupling import decoupling_losses
from methods.jocor import jocor_selection
from methods.mentornet import self_paced_loss
from methods.small_loss import (coteaching_losses, num_remember, rank_quantiles, run_schedule,
                                unscored)

# ---- reference loops ----------------------------------------------------------------------


def _tallies(ref):
    n, dev = ref.ctx.num_train, ref.ctx.device
    return (torch.zeros(n, dtype=torch.bool, device=dev), unscored(n, dev),
            torch.zeros((), device=dev))


def ref_standard(ref, epoch: int) -> EpochResult:
    total, count = torch.zeros(()), 0
    for x, y, _ in ref.ctx.train_batches():
        loss = F.cross_entropy(ref.nets[0](x), y)
        ref.optimizers[0].zero_grad(set_to_none=True)
        loss.backward()
        ref.optimizers[0].step()
        total += loss.detach() * len(y)
        count += len(y)
    return EpochResult(train_loss=float(total) / count)


def ref_mentornet(ref, epoch: int) -> EpochResult:
    rate = float(ref.rate_schedule[epoch])
    selected, scores, total = _tallies(ref)
    batches = 0
    for x, y, idx in ref.ctx.train_batches():
        logits = ref.nets[0](x)
        loss, keep = self_paced_loss(logits, y, num_remember=num_remember(rate, len(y)),
                                     normalization=ref.config.normalization)
        ref.optimizers[0].zero_grad(set_to_none=True)
        loss.backward()
        ref.optimizers[0].step()
        selected[idx] = keep
        scores[idx] = rank_quantiles(F.cross_entropy(logits.detach(), y, reduction="none"))
        total += loss.detach()
        batches += 1
    return EpochResult(float(total) / batches, selected, {"forget_rate": rate}, scores)


def _two_optimiser_step(ref, loss1, loss2) -> None:
    for opt in ref.optimizers:
        opt.zero_grad(set_to_none=True)
    (loss1 + loss2).backward()
    for opt in ref.optimizers:
        opt.step()


def ref_coteaching(ref, epoch: int) -> EpochResult:
    rate = float(ref.rate_schedule[epoch])
    selected, scores, total = _tallies(ref)
    batches = 0
    for x, y, idx in ref.ctx.train_batches():
        logits1, logits2 = ref.nets[0](x), ref.nets[1](x)
        loss1, loss2, pick1, _ = coteaching_losses(
            logits1, logits2, y, num_remember=num_remember(rate, len(y)),
            normalization=ref.config.loss_normalization)
        _two_optimiser_step(ref, loss1, loss2)
        selected[idx[pick1]] = True
        scores[idx] = rank_quantiles(F.cross_entropy(logits1.detach(), y, reduction="none"))
        total += loss1.detach()
        batches += 1
    return EpochResult(float(total) / batches, selected, {"forget_rate": rate}, scores)


def ref_coteaching_plus(ref, epoch: int) -> EpochResult:
    cfg, rate = ref.config, float(ref.rate_schedule[epoch])
    selected, scores, total = _tallies(ref)
    batches = 0
    for i, (x, y, idx) in enumerate(ref.ctx.train_batches()):
        logits1, logits2 = ref.nets[0](x), ref.nets[1](x)
        if epoch < cfg.init_epoch:
            loss1, loss2, pick1, _ = coteaching_losses(
                logits1, logits2, y, num_remember=num_remember(rate, len(y)),
                normalization=cfg.loss_normalization)
            keep1 = torch.zeros_like(y, dtype=torch.bool)
            keep1[pick1] = True
            score1 = rank_quantiles(F.cross_entropy(logits1.detach(), y, reduction="none"))
        else:
            step = epoch * i if cfg.gate_counter == "epoch_x_iter" else ref.global_step
            loss1, loss2, keep1, score1 = coteaching_plus_selection(
                logits1, logits2, y, idx, forget_rate=rate, gate_open=step < cfg.gate_steps,
                double_softmax=cfg.double_softmax, normalization=cfg.loss_normalization,
                index0_quirk=cfg.index0_quirk)
        _two_optimiser_step(ref, loss1, loss2)
        selected[idx] = keep1
        scores[idx] = score1
        total += loss1.detach()
        batches += 1
        ref.global_step += 1
    return EpochResult(float(total) / batches, selected, {"forget_rate": rate}, scores)


def ref_decoupling(ref, epoch: int) -> EpochResult:
    selected, _, total = _tallies(ref)
    batches = 0
    for x, y, idx in ref.ctx.train_batches():
        logits1, logits2 = ref.nets[0](x), ref.nets[1](x)
        loss1, loss2, update = decoupling_losses(
            logits1, logits2, y, warmup=ref.global_step < ref.config.init_iters,
            min_batch_fraction=ref.config.min_batch_fraction)
        _two_optimiser_step(ref, loss1, loss2)
        selected[idx] = update
        total += loss1.detach()
        batches += 1
        ref.global_step += 1
    return EpochResult(float(total) / batches, selected)


def ref_jocor(ref, epoch: int) -> EpochResult:
    cfg, rate = ref.config, float(ref.rate_schedule[epoch])
    selected, scores, total = _tallies(ref)
    batches = 0
    for x, y, idx in ref.ctx.train_batches():
        loss, pick, ranked = jocor_selection(
            ref.nets[0](x), ref.nets[1](x), y, co_lambda=cfg.co_lambda,
            num_remember=num_remember(rate, len(y)), select_on=cfg.select_on,
            stable_kl=cfg.stable_kl)
        ref.optimizers[0].zero_grad(set_to_none=True)
        loss.backward()
        ref.optimizers[0].step()
        selected[idx[pick]] = True
        scores[idx] = rank_quantiles(ranked)
        total += loss.detach()
        batches += 1
    return EpochResult(float(total) / batches, selected, {"forget_rate": rate}, scores)


# method, its parameters, the reference loop, networks, optimisers ("joint" or one per net)
CASES = [
    ("standard", {}, ref_standard, 1, "joint"),
    ("mentornet", {"num_gradual": 2}, ref_mentornet, 1, "joint"),
    ("mentornet", {"num_gradual": 2, "normalization": "kept"}, ref_mentornet, 1, "joint"),
    ("coteaching", {"num_gradual": 2}, ref_coteaching, 2, "each"),
    ("coteaching", {"num_gradual": 2, "loss_normalization": "mean"}, ref_coteaching, 2, "each"),
    ("coteaching_plus", {"num_gradual": 2, "init_epoch": 1, "gate_steps": 20},
     ref_coteaching_plus, 2, "each"),
    ("coteaching_plus", {"num_gradual": 2, "gate_counter": "global", "gate_steps": 30,
                         "double_softmax": False}, ref_coteaching_plus, 2, "each"),
    ("decoupling", {"init_iters": 10}, ref_decoupling, 2, "each"),
    ("jocor", {"num_gradual": 2, "co_lambda": 0.7}, ref_jocor, 2, "joint"),
    ("jocor", {"num_gradual": 2, "select_on": "ce", "stable_kl": False}, ref_jocor, 2, "joint"),
]
# 1347 training images in batches of 50: 26 whole batches and a short one of 47
TRAIN = {"epochs": 3, "batch_size": 50, "lr": 0.01, "optimizer": "adam"}


def _context(spec, data):
    torch.manual_seed(spec.seed)
    _, noisy, _ = engine.prepare(spec, torch.device("cpu"), data=data)
    return engine.RunContext(spec, data, noisy, torch.device("cpu"))


def _reference(spec, data, config, num_nets: int, layout: str) -> SimpleNamespace:
    ctx = _context(spec, data)
    nets = [ctx.make_network() for _ in range(num_nets)]
    if layout == "joint":
        optimizers = [ctx.make_optimizer([p for net in nets for p in net.parameters()])]
    else:
        optimizers = [ctx.make_optimizer(net.parameters()) for net in nets]
    schedule = (run_schedule(config, ctx, halve_asymmetric=spec.method == "jocor")[1]
                if hasattr(config, "num_gradual") else None)
    return SimpleNamespace(ctx=ctx, config=config, nets=nets, optimizers=optimizers,
                           rate_schedule=schedule, global_step=0)


def _assert_same(got: torch.Tensor | None, want: torch.Tensor | None, what: str) -> None:
    assert (got is None) == (want is None), what
    if want is not None:
        torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True, msg=what)


@pytest.mark.parametrize("method,params,reference,num_nets,layout", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_the_loop_reproduces_the_methods_own_loop(method, params, reference, num_nets, layout,
                                                  make_spec) -> None:
    spec = make_spec(method=method, method_params=params, train=TRAIN, seed=3)
    data = load_dataset("digits")
    ctx = _context(spec, data)
    subject = engine.build_method(spec, ctx)
    assert isinstance(subject, BatchMethod) and subject.num_networks == num_nets
    ref = _reference(spec, data, subject.config, num_nets, layout)
    for a, b in zip(subject.ordered_networks(), ref.nets):    # the same initial weights
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    for epoch in range(spec.train.epochs):
        ctx.apply_schedule(epoch)
        ref.ctx.apply_schedule(epoch)
        for net in ref.nets:
            net.train()
        got, want = subject.train_epoch(epoch), reference(ref, epoch)
        assert got.train_loss == want.train_loss, f"epoch {epoch}"
        assert got.extra == want.extra
        _assert_same(got.selected, want.selected, f"selected, epoch {epoch}")
        _assert_same(got.scores, want.scores, f"scores, epoch {epoch}")
    for a, b in zip(subject.ordered_networks(), ref.nets):
        for (name, p), q in zip(a.named_parameters(), b.parameters()):
            assert torch.equal(p, q), name
    assert subject.global_step == 3 * 27


def test_every_two_network_method_keeps_its_optimiser_layout(make_spec) -> None:
    data = load_dataset("digits")
    for method, want in (("coteaching", {"optimizer1", "optimizer2"}),
                         ("coteaching_plus", {"optimizer1", "optimizer2"}),
                         ("decoupling", {"optimizer1", "optimizer2"}), ("jocor", {"optimizer"}),
                         ("standard", {"optimizer"}), ("mentornet", {"optimizer"})):
        spec = make_spec(method=method)
        state = engine.build_method(spec, _context(spec, data)).state_dict()
        assert {k for k in state if k.startswith("optimizer")} == want, method


# ---- a method written as a loss -------------------------------------------------------------


@dataclass(frozen=True)
class SoftBootstrapConfig:
    beta: float = 0.8           # weight of the noisy label in the target
    warm_up: int = 1            # epochs of plain cross-entropy first


class SoftBootstrap(BatchMethod):
    """Soft bootstrapping (Reed et al., 2015): CE against beta * y + (1 - beta) * p."""

    Config = SoftBootstrapConfig

    def step_state(self, epoch: int, step: int) -> bool:
        return epoch >= self.config.warm_up

    def batch_loss(self, logits, labels, indices, state) -> BatchLoss:
        (z,) = logits
        ce = F.cross_entropy(z, labels, reduction="none")
        if not state:
            return BatchLoss(losses=(ce.mean(),))
        log_p = F.log_softmax(z, dim=1)
        entropy = -(log_p.detach().exp() * log_p).sum(1)
        loss = self.config.beta * ce + (1 - self.config.beta) * entropy
        return BatchLoss(losses=(loss.mean(),), selected=ce.detach() < entropy.detach())


@pytest.fixture
def scratch_registry(monkeypatch) -> None:
    """Methods registered during the test are forgotten after it."""
    METHODS.names()       # the built-in methods first
    monkeypatch.setattr(METHODS, "_items", dict(METHODS._items))


@pytest.fixture
def soft_bootstrap(scratch_registry) -> str:
    """``soft_bootstrap`` registered as a method for the test's duration."""
    METHODS.register("soft_bootstrap")(SoftBootstrap)
    return "soft_bootstrap"


def test_a_method_written_as_a_loss_trains_fuses_and_resumes(soft_bootstrap, make_spec,
                                                             tmp_path) -> None:
    assert soft_bootstrap in METHODS.names()
    train = {"epochs": 3, "batch_size": 64, "lr": 0.001}
    specs = [make_spec(method=soft_bootstrap, method_params={"beta": 0.9}, train=train, seed=s)
             for s in (1, 2)]
    assert fusable(specs[0])
    alone = [engine.run(spec, device="cpu") for spec in specs]
    for rec in alone:
        assert rec["status"] == "ok", rec["error"]
        assert rec["metrics"]["selected_count"][0] is None          # warm-up: no selection
        assert all(c is not None for c in rec["metrics"]["selected_count"][1:])
    for got, want in zip(run_fused(specs, device="cpu"), alone):
        assert got["status"] == "ok", got["error"]
        np.testing.assert_allclose(got["metrics"]["train_loss"], want["metrics"]["train_loss"],
                                   rtol=1e-4)
        np.testing.assert_allclose(got["metrics"]["test_acc"], want["metrics"]["test_acc"],
                                   atol=0.6)
    assert engine.run(specs[0], device="cpu", checkpoint_dir=tmp_path, checkpoint_every=1,
                      stop_after_epoch=0) == {}
    resumed = engine.run(specs[0], device="cpu", checkpoint_dir=tmp_path)
    assert resumed["status"] == "ok", resumed["error"]
    for key in ("test_acc", "train_loss", "selected_count", "label_precision"):
        assert resumed["metrics"][key] == alone[0]["metrics"][key], key


def test_the_readme_example_registers_a_fusable_method(scratch_registry, monkeypatch) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Adding a method", 1)[1]
    code = section.split("```python", 1)[1].split("```", 1)[0]
    module = types.ModuleType("readme_example")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(code, "README.md", "exec"), module.__dict__)
    method_cls = METHODS.get("bootstrap")
    assert issubclass(method_cls, BatchMethod) and method_cls.fusable
    assert method_cls.Config().beta == 0.95


def test_the_fused_loss_is_the_methods_loss_run_by_run(make_spec) -> None:
    """vmap over stacked runs gives each run the values of the unbatched loss."""
    from bench.fused import vmap_loss

    data = load_dataset("digits")
    torch.manual_seed(0)
    logits = (torch.randn(3, 16, 10), torch.randn(3, 16, 10))
    labels = torch.randint(0, 10, (3, 16))
    indices = torch.stack([torch.randperm(40)[:16] for _ in range(3)])
    indices[1, 5] = 0                                  # Co-teaching+'s index-0 case
    for method in ("coteaching_plus", "coteaching", "jocor", "decoupling"):
        spec = make_spec(method=method, method_params={"num_gradual": 2}
                         if method != "decoupling" else {})
        subject = engine.build_method(spec, _context(spec, data))
        state = subject.step_state(1, 3)
        fused = vmap_loss(subject.batch_loss)(logits, labels, indices, state)
        for g in range(3):
            one = subject.batch_loss(tuple(z[g] for z in logits), labels[g], indices[g],
                                     state)
            for a, b in zip(fused.losses, one.losses):
                torch.testing.assert_close(a[g], b)
            _assert_same(fused.selected[g], one.selected, method)
            if one.scores is not None:
                torch.testing.assert_close(fused.scores[g], one.scores, equal_nan=True)
