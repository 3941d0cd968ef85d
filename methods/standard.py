"""Standard training: one network, mean cross-entropy against the noisy labels.

Every paper's baseline ("Standard", "Cross-Entropy", "CE"); its network, optimiser and schedule
come from the grid, as the papers train it under their own method's protocol.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.registry import METHODS
from methods.base import BatchLoss, BatchMethod, NoConfig


@METHODS.register("standard")
class Standard(BatchMethod):
    Config = NoConfig
    report = "net1"
    per_sample_loss = True    # train_loss: the mean CE over the epoch's samples

    def batch_loss(self, logits: tuple[torch.Tensor, ...], labels: torch.Tensor,
                   indices: torch.Tensor, state: None) -> BatchLoss:
        """The mean cross-entropy of the batch."""
        return BatchLoss(losses=(F.cross_entropy(logits[0], labels),))
