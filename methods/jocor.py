"""JoCoR (Wei, Feng, Chen, An, CVPR 2020), as the official hongxin001/JoCoR code trains it.

Two networks see the same mini-batch. Every sample gets the joint loss

    l = (1 - lambda) * (CE(p1, y) + CE(p2, y)) + lambda * (KL(p2 || p1) + KL(p1 || p2)),

the (1 - R(T)) fraction of the batch with the smallest joint loss is kept, and the mean joint
loss over the kept samples updates BOTH networks through ONE Adam optimiser over their joint
parameters (``algorithm/loss.py`` ``loss_jocor``, ``algorithm/jocor.py``).

Faithful to the code (86db359):

* KL(q || p) is ``F.kl_div(log_softmax(pred), softmax(target), reduction='none').sum(1)``
  (``kl_loss_compute``); the target is not detached, so gradients flow through both arguments.
* Forget rate: ``forget_rate`` when given, else the nominal noise rate, halved for asymmetric
  noise (``noise_type == 'asymmetric'`` in the code; here every ``asymmetric*`` noise type). The
  halving is applied whatever the dataset, also on CIFAR-100 where JoCoR's block map corrupts
  every class.
* Schedule ``linspace(0, forget_rate**exponent, num_gradual)`` by epoch number, as Co-teaching;
  ``num_remember = int((1 - forget_rate) * batch_size)``.
* ``co_lambda`` per setting, from the official README: CIFAR-10 symmetric 20%/50% and
  asymmetric 40%: 0.9; CIFAR-10 symmetric 80%: 0.65; CIFAR-100 (every setting): 0.85. MNIST:
  0.95 (``example.sh``, which shows it for symmetric 20% only; used for every MNIST setting).
  Anything else: the argparse default 0.1. The README warns that lambda must be re-tuned for
  other backbones or with input normalisation.
* ``report = "mean"``: ``main.py`` averages the test accuracy of both networks.

Options beyond the code: ``select_on: ce`` ranks the samples by CE1 + CE2 alone while still
back-propagating the joint loss (an ablation of the selection criterion).

NaN gradients: the code's ``kl_div(log_softmax(pred), softmax(target))`` back-propagates into
the target. PyTorch 1.x, on which the code ran, masked that gradient where a target probability
is exactly 0 (its ``kl_div`` backward for the target, as we read it), so the gradients stayed
finite. PyTorch 2's composite ``kl_div`` differentiates ``xlogy(t, t)`` instead, and the same
expression yields NaN gradients as soon as one softmax probability underflows to 0 in fp32 (a
logit gap above ~104); on MNIST at 40% asymmetric noise the literal port collapsed to NaN at
epoch 16. The default (``stable_kl: true``) therefore computes the same KL from
``log_softmax(target)``, whose gradient is the analytic one and stays finite, as the code's did
under its PyTorch; ``stable_kl: false`` runs the literal expression on the installed PyTorch
(the engine then records a collapse as a failed run with a non-finite loss). A run of the
official code in a published reproduction log also ended in NaN (CIFAR-10 sym-20, ``Loss1: nan``
from epoch 175); its cause is not known. Losses are computed in fp32 (logits are cast out of
bf16 autocast).
The selected mask is the joint selection (the same for both networks); ``scores`` each sample's
rank quantile of the ranked loss in its batch (for the selection curve).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.registry import METHODS
from methods.base import BatchLoss
from methods.small_loss import (SmallLossMethod, check_fraction, num_remember, positions_mask,
                                rank_quantiles, small_loss_indices)


@dataclass(frozen=True)
class JoCoRConfig:
    co_lambda: float = 0.1             # main.py --co_lambda (argparse default; README per setting)
    forget_rate: float | None = None   # main.py --forget_rate; None: noise rate (/2 if asymmetric)
    num_gradual: int = 10              # main.py --num_gradual
    exponent: float = 1.0              # main.py --exponent
    select_on: str = "joint"           # loss.py ranks by the joint loss; "ce": by CE1 + CE2
    stable_kl: bool = True             # finite-gradient KL (see the docstring); False: literal

    def __post_init__(self) -> None:
        check_fraction("forget_rate", self.forget_rate)
        if not 0.0 <= self.co_lambda <= 1.0:
            raise ValueError(f"co_lambda must be in [0, 1], got {self.co_lambda}")
        if self.num_gradual < 1:
            raise ValueError(f"num_gradual must be >= 1, got {self.num_gradual}")
        if self.select_on not in ("joint", "ce"):
            raise ValueError(f"select_on must be joint or ce, got {self.select_on!r}")


def kl_per_sample(pred: torch.Tensor, target: torch.Tensor, *,
                  stable: bool = False) -> torch.Tensor:
    """(B,) KL(softmax(target) || softmax(pred)), gradients through both (``kl_loss_compute``).

    stable: compute it from ``log_softmax(target)``; same value, but a finite gradient where a
        target probability underflows to 0.
    """
    log_pred = F.log_softmax(pred, dim=1)
    if stable:
        log_target = F.log_softmax(target, dim=1)
        return (log_target.exp() * (log_target - log_pred)).sum(1)
    return F.kl_div(log_pred, F.softmax(target, dim=1), reduction="none").sum(1)


def jocor_joint_loss(logits1: torch.Tensor, logits2: torch.Tensor, labels: torch.Tensor, *,
                     co_lambda: float, stable_kl: bool = False,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample joint loss (B,) and, for the ``ce`` ablation, CE1 + CE2 (B,)."""
    ce = (F.cross_entropy(logits1, labels, reduction="none")
          + F.cross_entropy(logits2, labels, reduction="none"))
    kl = (kl_per_sample(logits1, logits2, stable=stable_kl)
          + kl_per_sample(logits2, logits1, stable=stable_kl))
    return (1 - co_lambda) * ce + co_lambda * kl, ce


def jocor_loss(logits1: torch.Tensor, logits2: torch.Tensor, labels: torch.Tensor, *,
               co_lambda: float, num_remember: int, select_on: str = "joint",
               stable_kl: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean joint loss over the ``num_remember`` kept samples, and their (k,) batch positions."""
    loss, pick, _ = jocor_selection(logits1, logits2, labels, co_lambda=co_lambda,
                                    num_remember=num_remember, select_on=select_on,
                                    stable_kl=stable_kl)
    return loss, pick


def jocor_selection(logits1: torch.Tensor, logits2: torch.Tensor, labels: torch.Tensor, *,
                    co_lambda: float, num_remember: int, select_on: str = "joint",
                    stable_kl: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`jocor_loss` and the (B,) per-sample values it ranked the batch by."""
    joint, ce = jocor_joint_loss(logits1, logits2, labels, co_lambda=co_lambda,
                                 stable_kl=stable_kl)
    ranked = joint if select_on == "joint" else ce
    pick = small_loss_indices(ranked, num_remember)
    return joint[pick].mean(), pick, ranked


@METHODS.register("jocor")
class JoCoR(SmallLossMethod):
    Config = JoCoRConfig
    report = "mean"
    score_kind = "keep_fraction"   # rank quantile of the ranked loss in its batch
    num_networks = 2
    joint_optimizer = True         # one Adam over both networks' parameters
    halve_asymmetric = True        # the default forget rate: noise rate / 2 if asymmetric

    @classmethod
    def setting_defaults(cls, *, dataset: str, noise_type: str,
                         noise_rate: float | None) -> dict:
        rate = None if noise_rate is None else round(float(noise_rate), 6)
        if dataset == "mnist":
            return {"co_lambda": 0.95}                       # example.sh
        if dataset == "cifar10":
            if noise_type == "symmetric" and rate == 0.8:
                return {"co_lambda": 0.65}                   # README
            if (noise_type, rate) in {("symmetric", 0.2), ("symmetric", 0.5),
                                      ("asymmetric", 0.4)}:
                return {"co_lambda": 0.9}                    # README
        if dataset == "cifar100":
            return {"co_lambda": 0.85}                       # README
        return {}

    def batch_loss(self, logits: tuple[torch.Tensor, ...], labels: torch.Tensor,
                   indices: torch.Tensor, state: float) -> BatchLoss:
        """:func:`jocor_selection` at the forget rate ``state``: one loss for the joint
        optimiser; scores: the rank quantiles of the ranked loss."""
        cfg = self.config
        logits1, logits2 = logits
        loss, pick, ranked = jocor_selection(
            logits1, logits2, labels, co_lambda=cfg.co_lambda,
            num_remember=num_remember(state, len(labels)), select_on=cfg.select_on,
            stable_kl=cfg.stable_kl)
        return BatchLoss(losses=(loss,), selected=positions_mask(pick, labels),
                         scores=rank_quantiles(ranked))
