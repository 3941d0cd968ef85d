"""Shared pieces of the small-loss family (Co-teaching, Co-teaching+, JoCoR, MentorNet PD).

The forget-rate schedule R(T) and the per-batch "keep the num_remember smallest losses" rule are
written once here, as the official codes compute them:

* ``rate_schedule = ones(n_epoch) * forget_rate;
  rate_schedule[:num_gradual] = linspace(0, forget_rate ** exponent, num_gradual)``, indexed by
  the epoch number (bhanML/Co-teaching ``main.py``; the same in JoCoR ``algorithm/jocor.py`` and,
  without the exponent, Co-teaching+ ``main.py`` ``gen_forget_rate('type_1')``);
* ``num_remember = int((1 - forget_rate) * batch_size)`` (every ``loss.py``), a host integer,
  so the selection itself is one ``torch.topk`` on the device with no synchronisation.

Every per-batch function here is pure and free of data-dependent shapes, so that it also runs
under ``torch.func.vmap`` over fused runs. :class:`SmallLossMethod` is the
:class:`~methods.base.BatchMethod` whose per-step state is the epoch's forget rate.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from bench.errors import ConfigError
from methods.base import BatchMethod


def forget_rate_schedule(n_epoch: int, forget_rate: float, *, num_gradual: int = 10,
                         exponent: float = 1.0) -> np.ndarray:
    """Forget rate of every epoch number 0..n_epoch-1, as the official ``rate_schedule``.

    The first ``num_gradual`` entries rise linearly from 0 to ``forget_rate ** exponent`` (the
    code raises the rate, not T, to the exponent), the rest are ``forget_rate``. With the
    Co-teaching loop (epochs 1..n_epoch-1) the first trained epoch therefore forgets
    ``forget_rate / (num_gradual - 1)``. Where ``num_gradual > n_epoch`` (short test runs) the
    ramp is truncated instead of failing as the original assignment would.
    """
    schedule = np.ones(n_epoch) * forget_rate
    ramp = np.linspace(0, forget_rate ** exponent, num_gradual)
    n = min(n_epoch, num_gradual)
    schedule[:n] = ramp[:n]
    return schedule


def num_remember(forget_rate: float, batch_size: int) -> int:
    """How many samples of a batch of ``batch_size`` the official ``loss.py`` keeps.

    At least one of a non-empty batch: the official loaders drop the last, short batch
    (``drop_last=True``), so their ``int((1 - forget_rate) * batch_size)`` is never 0; a loader
    that keeps it (a dataset whose size leaves a batch of one or two) would otherwise average
    an empty selection into a NaN loss. Unchanged wherever the official code's count is >= 1.
    """
    return max(int((1 - forget_rate) * batch_size), min(batch_size, 1))


def small_loss_indices(loss: torch.Tensor, k: int) -> torch.Tensor:
    """(k,) positions of the ``k`` smallest entries of ``loss`` (B,), on the device."""
    return torch.topk(loss.detach(), k, largest=False, sorted=False).indices


def rank_quantiles(values: torch.Tensor) -> torch.Tensor:
    """(B,) ``(rank + 1) / B`` of each entry of ``values`` (B,), rank 0 the smallest: the
    ``keep_fraction`` score of :mod:`bench.selection` (kept at f when <= f, i.e. rank < f B)."""
    order = torch.argsort(values.detach(), stable=True)
    steps = torch.arange(1, len(values) + 1, device=values.device,
                         dtype=torch.float32) / len(values)
    return torch.zeros_like(values, dtype=torch.float32).scatter(0, order, steps)


def unscored(num_train: int, device) -> torch.Tensor:
    """(N,) float NaN: an epoch's scores before any sample is ranked."""
    return torch.full((num_train,), float("nan"), device=device)


def small_loss_mask(loss: torch.Tensor, k: int) -> torch.Tensor:
    """(B,) bool mask of the ``k`` smallest entries of ``loss`` (B,)."""
    return positions_mask(small_loss_indices(loss, k), loss)


def positions_mask(positions: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) bool mask, True at ``positions`` (k,) of a batch of ``like``'s (B,) shape."""
    return torch.zeros_like(like, dtype=torch.bool).scatter(0, positions, True)


def resolve_forget_rate(forget_rate: float | None, *, noise_type: str,
                        noise_rate: float | None, halve_asymmetric: bool = False) -> float:
    """The forget rate a run uses: ``forget_rate`` when given, else the nominal noise rate.

    halve_asymmetric: JoCoR's rule (``algorithm/jocor.py``): ``noise_rate / 2`` for asymmetric
        (class-map) noise, where only some classes are corrupted.
    """
    if forget_rate is not None:
        return float(forget_rate)
    if noise_rate is None:
        if noise_type == "none":
            return 0.0
        raise ConfigError(f"noise type {noise_type!r} has no nominal rate: set the method's "
                         "forget_rate in the grid")
    if halve_asymmetric and noise_type.startswith("asymmetric"):
        return float(noise_rate) / 2
    return float(noise_rate)


def run_schedule(config, ctx, *, halve_asymmetric: bool = False) -> tuple[float, np.ndarray]:
    """(forget rate, per-epoch schedule) of a run, from a config with ``forget_rate``,
    ``num_gradual`` and ``exponent`` and the run's nominal noise."""
    rate = resolve_forget_rate(config.forget_rate, noise_type=ctx.noise_type,
                               noise_rate=ctx.noise_rate, halve_asymmetric=halve_asymmetric)
    return rate, forget_rate_schedule(ctx.epochs, rate, num_gradual=config.num_gradual,
                                      exponent=getattr(config, "exponent", 1.0))


def check_fraction(name: str, value: float | None) -> None:
    """Config validation: a rate in [0, 1) or None."""
    if value is not None and not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")


def coteaching_losses(logits1: torch.Tensor, logits2: torch.Tensor, labels: torch.Tensor, *,
                      num_remember: int, normalization: str = "official",
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Co-teaching's cross update on one batch (bhanML/Co-teaching ``loss.py``).

    Each network ranks the batch (B,) by its own cross-entropy and keeps its ``num_remember``
    smallest; net1 is then trained on net2's picks and net2 on net1's.

    normalization: ``official``: the mean CE over the picks is divided once more by
        ``num_remember`` (the code sums the already averaged loss and divides by num_remember);
        ``mean``: the plain mean.
    Returns ``(loss1, loss2, pick1, pick2)``: the scalar losses of net1 and net2 and the (k,)
    batch positions each network picked (pick2 is net1's update set).
    """
    ce1 = F.cross_entropy(logits1, labels, reduction="none")
    ce2 = F.cross_entropy(logits2, labels, reduction="none")
    pick1 = small_loss_indices(ce1, num_remember)
    pick2 = small_loss_indices(ce2, num_remember)
    loss1 = ce1[pick2].mean()
    loss2 = ce2[pick1].mean()
    if normalization == "official":
        loss1, loss2 = loss1 / num_remember, loss2 / num_remember
    return loss1, loss2, pick1, pick2


NORMALIZATIONS = ("official", "mean")


class SmallLossMethod(BatchMethod):
    """A batch method under the forget-rate schedule R(T): its per-step state is the epoch's
    forget rate (from :func:`run_schedule`), reported as ``extra.forget_rate``.

    halve_asymmetric: JoCoR's rule for the default forget rate (see
        :func:`resolve_forget_rate`).
    """

    halve_asymmetric: ClassVar[bool] = False

    def __init__(self, config: Any, ctx) -> None:
        self.forget_rate, self.rate_schedule = run_schedule(
            config, ctx, halve_asymmetric=self.halve_asymmetric)
        super().__init__(config, ctx)

    def step_state(self, epoch: int, step: int) -> Any:
        return float(self.rate_schedule[epoch])

    def epoch_extra(self, epoch: int) -> dict[str, float]:
        return {"forget_rate": float(self.rate_schedule[epoch])}
