"""MixMatch pieces shared by DivideMix and RSL's Weighted MixMatch.

Written once, as MixMatch (Berthelot et al., NeurIPS 2019) and both official codes compute them
(LiJunnan1992/DivideMix ``Train_cifar.py``; guixianjin/RSL ``Weighted_MixMatch_train_CIFAR.py``):

* sharpening ``p ** (1 / T)`` renormalised over classes;
* mixup with ``lambda' = max(lambda, 1 - lambda)``, ``lambda ~ Beta(alpha, alpha)``, inputs and
  targets mixed with the same random permutation, so the mixed sample stays closer to its
  first element (the labelled part stays mostly labelled);
* ``L_x``: soft-target cross-entropy, mean over the batch;
* ``L_u``: mean squared error between the softmax and the target, mean over batch AND classes
  (``torch.mean((probs_u - targets_u) ** 2)``), as both codes;
* the linear ramp ``clip((current - start) / length, 0, 1)`` of the unsupervised weight;
* MixMatch's ``interleave`` (the labelled rows are swapped into every forward chunk so that each
  BatchNorm batch sees labelled and unlabelled samples), used by Weighted MixMatch.

Index streams (:func:`cycling_batches`) are drawn on the device, so a training loop never waits
for the host.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F


def sharpen(probs: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """(B, K) class distribution ``p ** (1/T)``, renormalised per row."""
    p = probs ** (1.0 / temperature)
    return p / p.sum(dim=1, keepdim=True)


def mix_coefficient(rng: np.random.Generator, *, alpha: float) -> float:
    """``max(lam, 1 - lam)`` with ``lam ~ Beta(alpha, alpha)`` (a host float: no sync)."""
    lam = float(rng.beta(alpha, alpha))
    return max(lam, 1.0 - lam)


def mixup(inputs: torch.Tensor, targets: torch.Tensor, *, lam: float, perm: torch.Tensor,
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix ``inputs`` (B, ...) and ``targets`` (B, K) with their rows permuted by ``perm`` (B,).

    Returns ``(lam * x + (1 - lam) * x[perm], lam * t + (1 - lam) * t[perm])``.
    """
    return (lam * inputs + (1.0 - lam) * inputs[perm],
            lam * targets + (1.0 - lam) * targets[perm])


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-sum_k t_k log softmax(z)_k``; logits and targets (B, K)."""
    return -torch.mean(torch.sum(F.log_softmax(logits, dim=1) * targets, dim=1))


def softmax_mse(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``mean((softmax(z) - t) ** 2)`` over batch and classes; logits and targets (B, K)."""
    return torch.mean((torch.softmax(logits, dim=1) - targets) ** 2)


def linear_rampup(current: float, *, start: float = 0.0, length: float) -> float:
    """``clip((current - start) / length, 0, 1)``; 1 when ``length`` is 0."""
    if length <= 0:
        return 1.0
    return float(np.clip((current - start) / length, 0.0, 1.0))


def cycling_batches(pool: torch.Tensor, batch_size: int, *, generator: torch.Generator,
                    drop_last: bool = False, weights: torch.Tensor | None = None,
                    ) -> Iterator[torch.Tensor]:
    """Endless (b,) index batches over ``pool`` (n,), a fresh pass each time one runs out.

    Without ``weights``: a shuffled pass (a DataLoader with ``shuffle=True``); with ``weights``
    (n,): n draws with replacement (``WeightedRandomSampler(weights, n, replacement=True)``).
    drop_last: skip the last partial batch of a pass (needs n >= batch_size).
    """
    n = len(pool)
    if n == 0 or (drop_last and n < batch_size):
        raise ValueError(f"cannot draw batches of {batch_size} from {n} samples")
    stop = n - n % batch_size if drop_last else n
    while True:
        if weights is None:
            order = pool[torch.randperm(n, device=pool.device, generator=generator)]
        else:
            order = pool[torch.multinomial(weights, n, replacement=True, generator=generator)]
        for start in range(0, stop, batch_size):
            yield order[start:start + batch_size]


def interleave(chunks: list[torch.Tensor], batch: int) -> list[torch.Tensor]:
    """MixMatch's interleave: row group g of chunk 0 trades places with row group g of chunk g.

    chunks: k tensors of ``batch`` rows each, each cut into k row groups of ``batch // k`` rows
    (the last ``batch % k`` groups one row longer). Applying it twice restores the input, which
    is how the logits are put back in order.
    """
    k = len(chunks)
    sizes = [batch // k + (1 if g >= k - batch % k else 0) for g in range(k)]
    groups = [list(torch.split(c, sizes)) for c in chunks]
    for g in range(1, k):
        groups[0][g], groups[g][g] = groups[g][g], groups[0][g]
    return [torch.cat(parts, dim=0) for parts in groups]
