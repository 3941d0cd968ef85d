"""Standard training: one network, mean cross-entropy against the noisy labels.

Every paper's baseline ("Standard", "Cross-Entropy", "CE"); its network, optimiser and schedule
come from the grid, as the papers train it under their own method's protocol.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.registry import METHODS
from methods.base import EpochResult, Method, NoConfig


@METHODS.register("standard")
class Standard(Method):
    Config = NoConfig
    report = "net1"

    def __init__(self, config: NoConfig, ctx) -> None:
        super().__init__(config, ctx)
        self.net1 = ctx.make_network()
        self.optimizer = ctx.make_optimizer(self.net1.parameters())

    def train_epoch(self, epoch: int) -> EpochResult:
        self.net1.train()
        total, count = torch.zeros((), device=self.ctx.device), 0
        for x, y, _ in self.ctx.train_batches():
            with self.ctx.autocast():
                loss = F.cross_entropy(self.net1(x), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.detach() * len(y)
            count += len(y)
        return EpochResult(train_loss=float(total) / max(count, 1))
