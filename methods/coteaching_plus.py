"""Co-teaching+ (Yu et al., ICML 2019), as the official xingruiyu/coteaching_plus code trains it.

Before ``init_epoch`` the two networks train with plain Co-teaching. From ``init_epoch`` on,
each mini-batch is first reduced to the samples where the two networks' argmax predictions
disagree; within that set each network keeps its (1 - R(T)) small-loss fraction and the PEER
is updated on it (``loss.py`` ``loss_coteaching_plus``, ``main.py`` ``train``).

Faithful to the code (``main.py``, ``loss.py`` at a68ed61), including its quirks, each with an
option to turn it off:

* ``init_epoch`` per dataset as ``main.py``: MNIST 0, CIFAR-10 20, CIFAR-100 5 (here also
  CIFAR-10N 20 and CIFAR-100N 5, which share those images; anything else 0).
* Forget-rate schedule ``type_1``: ``linspace(0, forget_rate, num_gradual)`` then
  ``forget_rate``, by epoch number (the code trains epochs 1..n_epoch-1); forget_rate defaults
  to the nominal noise rate. The code caps no epoch at 400 iterations, unlike Co-teaching.
* Double softmax (issue #1), ``double_softmax: true``: the code passes softmax probabilities
  into ``loss_coteaching``, whose ``F.cross_entropy`` applies log-softmax again; both the
  ranking and the update use CE(softmax(p)). ``false`` uses the logits (the corrected variant).
  Plain Co-teaching before ``init_epoch`` uses the logits, as the code.
* Loss normalisation (issue #1): the mean CE over the kept samples is divided once more by
  ``num_remember`` (``loss_normalization: official``; ``mean`` for the plain mean).
* Empty selection: where ``int((1 - forget_rate) * n)`` is 0 for n disagreeing samples, all n
  are used (``loss_coteaching``'s fallback); also applies before ``init_epoch``.
* No-disagreement fallback: when nothing disagrees, both networks take the (double-softmax) CE
  mean over the whole batch, multiplied by the fraction of the batch the gate lets through. The
  gate is ``step < 5000`` with ``step = epoch * i`` (i the batch index in the epoch, not a
  global step; issue #5), so late in training a batch without disagreement gives a zero loss,
  and Adam still moves the weights with its momentum, as in the code. ``gate_steps`` sets 5000;
  ``gate_counter: global`` counts a true global step instead.
* Index 0 (``index0_quirk: true``): the code recovers dataset indices of the disagreement set
  by multiplying them with the 0/1 mask and dropping zeros, which loses dataset index 0, and
  then truncates the list of batch positions to the same length, which drops the LAST
  disagreeing position of the batch. Reproduced: when sample 0 is in the batch and disagrees,
  the last disagreeing position is removed from the disagreement set (the empty-set fallback
  follows from it). Its effect is at most one sample per epoch.

Not verified: which network the paper reports (the code logs both); ``report = "net1"``.

Everything runs on the device without a host synchronisation per step: the disagreement set,
the per-network ranks and both branches are computed as masked tensors and the branch is chosen
with ``torch.where``. The selected mask is net1's picks (the samples net2 is trained on); for
the no-disagreement fallback, the whole batch when the gate is open. ``scores`` is net1's rank
quantile in its batch (before ``init_epoch``) or in the batch's disagreement set (NaN for the
samples outside it), for the selection curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.registry import METHODS
from methods.base import BatchLoss
from methods.small_loss import (NORMALIZATIONS, SmallLossMethod, check_fraction,
                                coteaching_losses, num_remember, positions_mask, rank_quantiles)

INIT_EPOCH = {"mnist": 0, "cifar10": 20, "cifar100": 5, "cifar10n": 20, "cifar100n": 5}


@dataclass(frozen=True)
class CoteachingPlusConfig:
    init_epoch: int = 0                # main.py: per dataset (setting_defaults)
    forget_rate: float | None = None   # main.py --forget_rate; None: the nominal noise rate
    num_gradual: int = 10              # main.py --num_gradual (E_k)
    double_softmax: bool = True        # loss.py passes softmax outputs to cross_entropy
    loss_normalization: str = "official"  # loss.py: mean / num_remember; "mean": plain mean
    gate_steps: int = 5000             # loss.py: step < 5000 in the no-disagreement fallback
    gate_counter: str = "epoch_x_iter"  # main.py passes epoch*i; "global": a true global step
    index0_quirk: bool = True          # loss.py: the mask trick drops one disagreeing sample

    def __post_init__(self) -> None:
        check_fraction("forget_rate", self.forget_rate)
        if self.num_gradual < 1 or self.init_epoch < 0:
            raise ValueError("num_gradual must be >= 1 and init_epoch >= 0")
        if self.loss_normalization not in NORMALIZATIONS:
            raise ValueError(f"loss_normalization must be one of {NORMALIZATIONS}, got "
                             f"{self.loss_normalization!r}")
        if self.gate_counter not in ("epoch_x_iter", "global"):
            raise ValueError(f"gate_counter must be epoch_x_iter or global, got "
                             f"{self.gate_counter!r}")


def _ranks(values: torch.Tensor) -> torch.Tensor:
    """(B,) rank of each entry in ascending order (0 = smallest)."""
    order = torch.argsort(values, stable=True)
    return torch.zeros_like(order).scatter(0, order, torch.arange(len(values),
                                                                   device=values.device))


def coteaching_plus_losses(logits1: torch.Tensor, logits2: torch.Tensor, labels: torch.Tensor,
                           idx: torch.Tensor, *, forget_rate: float, gate_open: bool,
                           double_softmax: bool = True, normalization: str = "official",
                           index0_quirk: bool = True,
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``loss_coteaching_plus`` on one batch: (loss1, loss2, keep1); see
    :func:`coteaching_plus_selection`."""
    return coteaching_plus_selection(
        logits1, logits2, labels, idx, forget_rate=forget_rate, gate_open=gate_open,
        double_softmax=double_softmax, normalization=normalization,
        index0_quirk=index0_quirk)[:3]


def coteaching_plus_selection(logits1: torch.Tensor, logits2: torch.Tensor,
                              labels: torch.Tensor, idx: torch.Tensor, *, forget_rate: float,
                              gate_open: bool, double_softmax: bool = True,
                              normalization: str = "official", index0_quirk: bool = True,
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``loss_coteaching_plus`` on one batch: (loss1, loss2, keep1, score1).

    idx: (B,) dataset indices (for the index-0 quirk). gate_open: ``step < gate_steps``.
    keep1: (B,) bool, the samples net1 picked (net2's update set; the whole batch in the
    no-disagreement fallback when the gate is open).
    score1: (B,) net1's rank quantile ``(rank + 1) / n`` within the n disagreeing samples (the
    ranking behind keep1), NaN outside the disagreement set.
    """
    b = labels.shape[0]
    pos = torch.arange(b, device=labels.device)
    disagree = logits1.detach().argmax(1) != logits2.detach().argmax(1)
    n_disagree_raw = disagree.sum()
    if index0_quirk:
        has_zero = (disagree & (idx == 0)).any()
        last = torch.where(disagree, pos, -1).max()
        disagree = disagree & ~(has_zero & (pos == last))
    n = disagree.sum()
    in1 = F.softmax(logits1, dim=1) if double_softmax else logits1
    in2 = F.softmax(logits2, dim=1) if double_softmax else logits2
    ce1 = F.cross_entropy(in1, labels, reduction="none")
    ce2 = F.cross_entropy(in2, labels, reduction="none")

    # disagreement branch: int((1 - forget_rate) * n) in float64 as Python does; 0 -> all n
    k = torch.floor(n.double() * (1 - forget_rate)).long()
    k = torch.where(k == 0, n, k)
    inf = torch.tensor(float("inf"), device=ce1.device)
    rank1 = _ranks(torch.where(disagree, ce1.detach(), inf))
    keep1 = disagree & (rank1 < k)
    score1 = torch.where(disagree, (rank1 + 1).float() / n.clamp(min=1).float(),
                         torch.full_like(ce1, float("nan")))
    keep2 = disagree & (_ranks(torch.where(disagree, ce2.detach(), inf)) < k)
    denom = k.clamp(min=1).to(ce1.dtype)  # finite in the unused branch, so no NaN gradient
    loss1_d = (ce1 * keep2).sum() / denom
    loss2_d = (ce2 * keep1).sum() / denom
    if normalization == "official":
        loss1_d, loss2_d = loss1_d / denom, loss2_d / denom

    # fallback: sum(update_step * CE mean) / B, update_step = disagree_raw OR gate
    passed = b if gate_open else n_disagree_raw.to(ce1.dtype)
    loss1_f = ce1.mean() * passed / b
    loss2_f = ce2.mean() * passed / b

    has = n > 0
    keep1 = torch.where(has, keep1, torch.full_like(keep1, gate_open))
    return (torch.where(has, loss1_d, loss1_f), torch.where(has, loss2_d, loss2_f), keep1,
            score1)


@dataclass(frozen=True)
class CoteachingPlusStep:
    """The per-step state of Co-teaching+: the epoch's forget rate, whether the epoch is still
    plain Co-teaching (before ``init_epoch``), and the no-disagreement fallback's gate."""

    forget_rate: float
    coteaching: bool
    gate_open: bool


@METHODS.register("coteaching_plus")
class CoteachingPlus(SmallLossMethod):
    Config = CoteachingPlusConfig
    report = "net1"
    score_kind = "keep_fraction"   # net1's rank quantile in its batch / disagreement set
    num_networks = 2               # each with its own Adam (optimizer1, optimizer2)

    @classmethod
    def setting_defaults(cls, *, dataset: str, noise_type: str,
                         noise_rate: float | None) -> dict:
        return {"init_epoch": INIT_EPOCH[dataset]} if dataset in INIT_EPOCH else {}

    def step_state(self, epoch: int, step: int) -> CoteachingPlusStep:
        cfg = self.config
        counter = epoch * step if cfg.gate_counter == "epoch_x_iter" else self.global_step
        return CoteachingPlusStep(forget_rate=float(self.rate_schedule[epoch]),
                                  coteaching=epoch < cfg.init_epoch,
                                  gate_open=counter < cfg.gate_steps)

    def batch_loss(self, logits: tuple[torch.Tensor, ...], labels: torch.Tensor,
                   indices: torch.Tensor, state: CoteachingPlusStep) -> BatchLoss:
        """:func:`coteaching_losses` before ``init_epoch``, then
        :func:`coteaching_plus_selection`; selected: net1's picks."""
        cfg = self.config
        logits1, logits2 = logits
        if state.coteaching:
            loss1, loss2, pick1, _ = coteaching_losses(
                logits1, logits2, labels, num_remember=num_remember(state.forget_rate,
                                                                    len(labels)),
                normalization=cfg.loss_normalization)
            return BatchLoss(losses=(loss1, loss2), selected=positions_mask(pick1, labels),
                             scores=rank_quantiles(F.cross_entropy(logits1.detach(), labels,
                                                                   reduction="none")))
        loss1, loss2, keep1, score1 = coteaching_plus_selection(
            logits1, logits2, labels, indices, forget_rate=state.forget_rate,
            gate_open=state.gate_open, double_softmax=cfg.double_softmax,
            normalization=cfg.loss_normalization, index0_quirk=cfg.index0_quirk)
        return BatchLoss(losses=(loss1, loss2), selected=keep1, scores=score1)
