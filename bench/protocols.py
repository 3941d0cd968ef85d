"""Which epoch a protocol reports: pure functions on a run's per-epoch curves (numpy only).

``clean_val``: the test accuracy at the epoch of best accuracy on a clean validation set held
out of the training images (RSL's "best"; ``train.clean_val_fraction`` makes the split and the
engine records the per-epoch ``metrics.val_acc``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

# The reporting protocols a grid or a paper number may name: ``last`` (last epoch), ``best`` (best
# test accuracy), ``last10`` (mean of the last ten epochs), ``clean_val`` (above) and ``val_loss``
# (the epoch of lowest loss on a noisy validation split, Patrini's checkpoint rule).
PROTOCOLS = ("last", "best", "last10", "clean_val", "val_loss")
TIES = ("last", "first")


def clean_val_index(val_acc: Sequence[float | None], *, start: int = 0,
                    ties: str = "last") -> int | None:
    """Position of the best clean-validation accuracy among positions ``>= start``, or None.

    val_acc: (E,) per-epoch accuracies (None or NaN where not measured).
    start: the first position the selection may pick (the epochs before it trained another
        network, e.g. RSL's selection phase).
    ties: ``last`` picks the latest of equal bests (RSL ``main.py``: ``if val_accuracy >=
        val_best``); ``first`` the earliest (``Weighted_MixMatch_train_CIFAR.py``: ``is_best =
        val_acc > best_acc``).
    """
    if ties not in TIES:
        raise ValueError(f"ties must be one of {', '.join(TIES)}, got {ties!r}")
    values = np.array([np.nan if v is None else v for v in val_acc], dtype=float)[start:]
    if values.size == 0 or np.isnan(values).all():
        return None
    hits = np.flatnonzero(values == np.nanmax(values))
    return start + int(hits[-1] if ties == "last" else hits[0])
