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
from methods.base import BatchLoss, BatchMethod


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
class Decoupling(BatchMethod):
    Config = DecouplingConfig
    report = "net1"
    num_networks = 2               # each with its own optimiser (optimizer1, optimizer2)

    def step_state(self, epoch: int, step: int) -> bool:
        """Warm-up: every sample updates while ``global_step < init_iters``."""
        return self.global_step < self.config.init_iters

    def batch_loss(self, logits: tuple[torch.Tensor, ...], labels: torch.Tensor,
                   indices: torch.Tensor, state: bool) -> BatchLoss:
        """:func:`decoupling_losses`; selected: the update (disagreement) set."""
        logits1, logits2 = logits
        loss1, loss2, update = decoupling_losses(
            logits1, logits2, labels, warmup=state,
            min_batch_fraction=self.config.min_batch_fraction)
        return BatchLoss(losses=(loss1, loss2), selected=update)
