"""Scoring a run's epoch: test accuracy of every network, and the selection against the clean labels.

:func:`evaluate` scores each network the method exposes on the test set (or the clean
validation set), :func:`reported_accuracy` is the one number the method's paper reports of
them, and :func:`selection_diagnostics` scores the samples a method selected (label precision
and recall against the clean labels, which the method never sees).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from bench.context import RunContext
from bench.errors import ConfigError


@torch.no_grad()
def evaluate(method, ctx: RunContext, test_x: Any, test_y: torch.Tensor, *,
             drop_last: bool | None = None) -> dict[str, float]:
    """Test accuracy (percent) of every network the method exposes.

    drop_last: score only whole test batches (default ``train.test_drop_last``).
    """
    cfg = ctx.train_cfg
    total = len(test_y)
    if cfg.test_drop_last if drop_last is None else drop_last:
        # the official loaders score only whole batches (9,984 of 10,000)
        total -= total % cfg.test_batch_size
        if total == 0:
            raise ConfigError(f"test_drop_last with test_batch_size {cfg.test_batch_size} "
                              f"scores none of the {len(test_y)} test images")
    correct: dict[str, torch.Tensor] = {}
    for start in range(0, total, 1024):
        stop = min(start + 1024, total)
        if isinstance(test_x, torch.Tensor):
            raw = test_x[start:stop]
        else:
            raw = test_x.load(np.arange(start, stop), train=False).to(ctx.device)
        x = ctx.transform(raw, augment=False)
        with ctx.autocast():
            logits = method.predict(x)
        for name, out in logits.items():
            hits = (out.argmax(1) == test_y[start:stop]).sum()
            correct[name] = correct.get(name, 0) + hits
    return {k: 100.0 * float(v) / total for k, v in correct.items()}


def reported_accuracy(method, accs: dict[str, float]) -> float:
    """The accuracy the method reports of ``accs``: its ensemble's, its networks' mean, or
    its first network's (``method.report``)."""
    if method.report == "ensemble":
        return accs["ensemble"]
    if method.report == "mean":
        nets = [v for k, v in accs.items() if k != "ensemble"]
        return float(np.mean(nets))
    return accs["net1"]


def selection_diagnostics(selected: torch.Tensor, visited: torch.Tensor,
                          noisy: torch.Tensor, clean: torch.Tensor, num_classes: int) -> dict:
    """Label precision and recall of a selected set against the clean labels.

    precision = |selected and correctly labelled| / |selected|;
    recall = |selected and correctly labelled| / |visited and correctly labelled|.
    """
    known = clean >= 0
    correct = (noisy == clean) & known
    sel = selected.bool()
    n_sel = int(sel.sum())
    hit = int((sel & correct).sum())
    pool = int((visited & correct).sum())
    return {
        "selected_count": n_sel,
        "label_precision": hit / max(int((sel & known).sum()), 1) if known.any() else None,
        "label_recall": hit / pool if pool else None,
        "selected_per_class": torch.bincount(noisy[sel], minlength=num_classes).tolist(),
    }
