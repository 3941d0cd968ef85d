"""Co-teaching (Han et al., NeurIPS 2018), as the official bhanML/Co-teaching code trains it.

Two networks see the same mini-batch. Each ranks the batch by its own cross-entropy and keeps
the (1 - R(T)) fraction with the smallest loss; each network is then updated on the samples its
PEER kept, with its own Adam optimiser (``main.py`` ``train``, ``loss.py`` ``loss_coteaching``).

Faithful to the code (``main.py``, ``loss.py`` at 7c7fbe2):

* Forget-rate schedule ``rate_schedule[:num_gradual] = linspace(0, forget_rate**exponent,
  num_gradual)``, then ``forget_rate``, indexed by the epoch number. The code trains epochs
  1..n_epoch-1 (grids set ``train.start_epoch: 1``), so the first trained epoch forgets
  ``forget_rate / 9``. The argparse help calls ``exponent`` "c in T^c", but the code raises the
  rate to it, as done here.
* ``forget_rate`` defaults to the nominal noise rate (``ctx.noise_rate``); the code has no
  asymmetric noise and never halves it.
* Loss normalisation quirk (see issue #4): the code averages the CE over the kept samples, then sums
  that scalar and divides by ``num_remember``, so the loss is the mean scaled by
  ``1 / num_remember``. ``loss_normalization: official`` (default) reproduces it, ``mean``
  gives the plain mean. Under Adam the scale barely matters (Adam is invariant to a constant
  loss scale up to its epsilon), but ``num_remember`` changes during the first ``num_gradual``
  epochs.
* ``num_remember = int((1 - forget_rate) * batch_size)`` per batch.

Not verified: which of the two networks the paper's tables report. The code logs both; this
method reports net1 (``report = "net1"``), and the record keeps both networks' accuracies.

Implementation notes: the two losses depend on disjoint parameters, so one backward of their sum
gives the same gradients as the code's two backward passes. The selection is a ``torch.topk`` on
the device; ties may be broken differently from ``np.argsort``. The selected mask is net1's
small-loss picks (the samples net2 is trained on), and ``scores`` the rank quantile of each
sample's net1 CE in its batch (the ranking behind the picks, for the selection curve);
``train_loss`` is the loss net1 optimised
(with the official normalisation, the mean CE divided by num_remember), as the code prints it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.registry import METHODS
from methods.base import BatchLoss
from methods.small_loss import (NORMALIZATIONS, SmallLossMethod, check_fraction,
                                coteaching_losses, num_remember, positions_mask, rank_quantiles)


@dataclass(frozen=True)
class CoteachingConfig:
    forget_rate: float | None = None   # main.py --forget_rate; None: the nominal noise rate
    num_gradual: int = 10              # main.py --num_gradual (T_k of the paper)
    exponent: float = 1.0              # main.py --exponent (applied to the rate, as the code)
    loss_normalization: str = "official"  # loss.py: mean / num_remember; "mean": plain mean

    def __post_init__(self) -> None:
        check_fraction("forget_rate", self.forget_rate)
        if self.num_gradual < 1:
            raise ValueError(f"num_gradual must be >= 1, got {self.num_gradual}")
        if self.loss_normalization not in NORMALIZATIONS:
            raise ValueError(f"loss_normalization must be one of {NORMALIZATIONS}, got "
                             f"{self.loss_normalization!r}")


@METHODS.register("coteaching")
class Coteaching(SmallLossMethod):
    Config = CoteachingConfig
    report = "net1"
    score_kind = "keep_fraction"   # net1's CE rank quantile in its batch
    num_networks = 2               # each with its own Adam (optimizer1, optimizer2)

    def batch_loss(self, logits: tuple[torch.Tensor, ...], labels: torch.Tensor,
                   indices: torch.Tensor, state: float) -> BatchLoss:
        """:func:`coteaching_losses` at the forget rate ``state``; selected: net1's picks."""
        logits1, logits2 = logits
        loss1, loss2, pick1, _ = coteaching_losses(
            logits1, logits2, labels, num_remember=num_remember(state, len(labels)),
            normalization=self.config.loss_normalization)
        scores = rank_quantiles(F.cross_entropy(logits1.detach(), labels, reduction="none"))
        return BatchLoss(losses=(loss1, loss2), selected=positions_mask(pick1, labels),
                         scores=scores)
