"""Decoupling, "update by disagreement" (Malach & Shalev-Shwartz, NeurIPS 2017).

Two networks see the same mini-batch; each is updated, with its own optimiser, only on the
samples where their argmax predictions disagree. "When to update" (disagreement) is decoupled
from "how to update" (the usual CE step on the noisy label).

Follows the authors' code, emalach/UpdateByDisagreement ``train.py`` (TensorFlow):

* The update mask is ``(pred1 != pred2) OR (global_step < init_iter)``, computed from the same
  training-mode forward pass, with ``init_iter`` 0 by default: there is no initial phase on all
  samples unless ``init_iters`` is set (the two networks differ from the start through their
  random initialisations). ``global_step`` counts iterations over the whole run.
* Default mode (``min_batch_size`` != -1): the masked CE is summed and divided by
  ``max(min_batch_size * batch_size, number of disagreeing samples)`` with ``min_batch_size``
  0.1, so a batch with few disagreements does not take a full-size step
  (``min_batch_fraction``; 0 gives the plain mean over the disagreement set). A batch without
  disagreement gives a zero loss; the optimiser still steps, so momentum moves the weights,
  as in the code.
* Not reproduced: the code's buffered mode (``min_batch_size == -1``) that collects
  disagreeing samples into full batches; the class-balancing weights ``pn_weights`` of its
  binary gender task; the L2 regularisation of its networks (``train.weight_decay`` if wanted)
  and its gradient clipping at 4 (only on its non-default Adam path).

The Co-teaching and JoCoR tables ran Decoupling as a baseline under their own protocol (Adam,
the Co-teaching schedule, the grid's network); their baseline code is not released, so how they
normalised the loss or whether they used an initial phase could not be checked. The full text
of the paper could not be read here either: the choices above follow the authors' code.

The selected mask is the disagreement (update) set of the epoch; ``report = "net1"`` (the
code's ``eval.py`` evaluates net1 first and net2 as ``#2``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.registry import METHODS
from methods.base import EpochResult, Method


@dataclass(frozen=True)
class DecouplingConfig:
    init_iters: int = 0                # train.py --init_iter: update on all samples before it
    min_batch_fraction: float = 0.1    # train.py --min_batch_size (loss denominator floor)

    def __post_init__(self) -> None:
        if self.init_iters < 0 or not 0.0 <= self.min_batch_fraction <= 1.0:
            raise ValueError("init_iters must be >= 0 and min_batch_fraction in [0, 1]")


def decoupling_losses(logits1: torch.Tensor, logits2: torch.Tensor, labels: torch.Tensor, *,
                      warmup: bool = False, min_batch_fraction: float = 0.1,
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss1, loss2, update): both losses over the (B,) bool update set ``update``.

    warmup: update on every sample (``global_step < init_iter``).
    """
    update = logits1.detach().argmax(1) != logits2.detach().argmax(1)
    if warmup:
        update = torch.ones_like(update)
    weights = update.to(logits1.dtype)
    denom = torch.clamp(weights.sum(), min=max(min_batch_fraction * len(labels), 1e-12))
    loss1 = (F.cross_entropy(logits1, labels, reduction="none") * weights).sum() / denom
    loss2 = (F.cross_entropy(logits2, labels, reduction="none") * weights).sum() / denom
    return loss1, loss2, update


@METHODS.register("decoupling")
class Decoupling(Method):
    Config = DecouplingConfig
    report = "net1"
    extra_state = ("global_step",)

    def __init__(self, config: DecouplingConfig, ctx) -> None:
        super().__init__(config, ctx)
        self.net1 = ctx.make_network()
        self.net2 = ctx.make_network()
        self.optimizer1 = ctx.make_optimizer(self.net1.parameters())
        self.optimizer2 = ctx.make_optimizer(self.net2.parameters())
        self.global_step = 0

    def train_epoch(self, epoch: int) -> EpochResult:
        ctx, cfg = self.ctx, self.config
        self.net1.train()
        self.net2.train()
        selected = torch.zeros(ctx.num_train, dtype=torch.bool, device=ctx.device)
        total, batches = torch.zeros((), device=ctx.device), 0
        for x, y, idx in ctx.train_batches():
            with ctx.autocast():
                logits1, logits2 = self.net1(x).float(), self.net2(x).float()
            loss1, loss2, update = decoupling_losses(
                logits1, logits2, y, warmup=self.global_step < cfg.init_iters,
                min_batch_fraction=cfg.min_batch_fraction)
            self.optimizer1.zero_grad(set_to_none=True)
            self.optimizer2.zero_grad(set_to_none=True)
            (loss1 + loss2).backward()
            self.optimizer1.step()
            self.optimizer2.step()
            selected[idx] = update
            total += loss1.detach()
            batches += 1
            self.global_step += 1
        return EpochResult(train_loss=float(total) / max(batches, 1), selected=selected)
