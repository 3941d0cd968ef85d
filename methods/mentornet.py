"""MentorNet (self-paced PD stand-in): small-loss self-paced learning, not the learned mentor.

What this is not: MentorNet (Jiang et al., ICML 2018) proper, a mentor network (a bidirectional
LSTM over loss, loss moving average, label and epoch) trained on clean data or on a data-driven
curriculum to weight the student's samples. Nothing here is learned: the registry key stays
``mentornet`` so that records and the papers' "MentorNet" rows keep their name, but a table
built on it compares against a self-paced baseline in MentorNet's pre-defined form.

MentorNet weights each sample of a student network's mini-batch. Without clean data its
"pre-defined" curriculum (MentorNet PD) is self-paced learning: weight 1 for a sample whose loss
is below a threshold, 0 otherwise. The Co-teaching paper compares against this self-paced form.
Here, as the benchmark's "MentorNet PD" baseline form, one network keeps the (1 - R(T))
small-loss fraction of every batch, with the same forget-rate schedule R(T) as Co-teaching
(``linspace(0, forget_rate**exponent, num_gradual)`` by epoch number, forget_rate defaulting to
the nominal noise rate), and is updated on it: Co-teaching without the peer.

Sources and choices:

* The Co-teaching authors' MentorNet baseline code is not released; how they set the threshold
  could not be checked. Tying the threshold to R(T) is this suite's choice, so that MentorNet PD
  and Co-teaching differ only by the cross update.
* Loss: ``normalization: batch`` (default) is the official MentorNet student loss,
  ``reduce_mean(loss * v)`` over the whole batch (google/mentornet ``cifar_train_mentornet.py``);
  ``kept`` averages over the kept samples.
* Not reproduced from google/mentornet: the learned or p-percentile moving-average threshold,
  the burn-in epochs with all weights 1 (the R(T) ramp plays that role), and example dropout.

The selected mask is the epoch's kept samples; ``scores`` each sample's CE rank quantile in its
batch (the ranking behind the kept set, for the selection curve).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.registry import METHODS
from methods.base import BatchLoss
from methods.small_loss import (SmallLossMethod, check_fraction, num_remember, rank_quantiles,
                                small_loss_mask)


@dataclass(frozen=True)
class MentorNetConfig:
    forget_rate: float | None = None   # as Co-teaching main.py; None: the nominal noise rate
    num_gradual: int = 10              # as Co-teaching main.py --num_gradual
    exponent: float = 1.0              # as Co-teaching main.py --exponent
    normalization: str = "batch"       # mentornet cifar_train_mentornet.py: mean of loss * v

    def __post_init__(self) -> None:
        check_fraction("forget_rate", self.forget_rate)
        if self.num_gradual < 1:
            raise ValueError(f"num_gradual must be >= 1, got {self.num_gradual}")
        if self.normalization not in ("batch", "kept"):
            raise ValueError(f"normalization must be batch or kept, got {self.normalization!r}")


def self_paced_loss(logits: torch.Tensor, labels: torch.Tensor, *, num_remember: int,
                    normalization: str = "batch") -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, keep): CE weighted by v = 1 on the ``num_remember`` smallest losses, else 0."""
    ce = F.cross_entropy(logits, labels, reduction="none")
    keep = small_loss_mask(ce, num_remember)
    weighted = (ce * keep).sum()
    denom = len(labels) if normalization == "batch" else max(num_remember, 1)
    return weighted / denom, keep


@METHODS.register("mentornet")
class MentorNetPD(SmallLossMethod):
    """MentorNet (self-paced PD stand-in): small-loss self-paced learning, not the learned mentor."""

    Config = MentorNetConfig
    report = "net1"
    score_kind = "keep_fraction"   # CE rank quantile in the batch

    def batch_loss(self, logits: tuple[torch.Tensor, ...], labels: torch.Tensor,
                   indices: torch.Tensor, state: float) -> BatchLoss:
        """:func:`self_paced_loss` at the forget rate ``state``; scores: the CE rank quantiles."""
        (net1,) = logits
        loss, keep = self_paced_loss(net1, labels, num_remember=num_remember(state, len(labels)),
                                     normalization=self.config.normalization)
        scores = rank_quantiles(F.cross_entropy(net1.detach(), labels, reduction="none"))
        return BatchLoss(losses=(loss,), selected=keep, scores=scores)
