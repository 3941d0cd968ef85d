"""Deep Self-Learning: when the label correction starts, and its one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.__main__ import main
from bench.config import TrainConfig, expand_grid
from bench.errors import ConfigError
from methods.self_learning import SelfLearning


class FakeContext:
    """What SelfLearning reads from a run context: a schedule, one tiny network, 8 samples."""

    def __init__(self, *, epochs: int, start_epoch: int) -> None:
        self.train_cfg = TrainConfig(epochs=epochs, start_epoch=start_epoch)
        self.epochs, self.start_epoch = epochs, start_epoch
        self.device = torch.device("cpu")
        self.num_train, self.num_classes = 8, 2
        self.x = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
        self.noisy_labels = torch.tensor([0, 1] * 4)
        self.np_rng = np.random.default_rng(0)

    def make_network(self):
        return torch.nn.Linear(3, 2)

    def make_optimizer(self, params, *, lr=None):
        return torch.optim.SGD(params, lr=0.1)

    def train_batches(self, **_):
        yield self.x, self.noisy_labels, torch.arange(8)

    def autocast(self):
        return torch.autocast("cpu", enabled=False)


def correction_epochs(monkeypatch, *, epochs: int, start_epoch: int, **params) -> list[int]:
    ctx = FakeContext(epochs=epochs, start_epoch=start_epoch)
    method = SelfLearning(SelfLearning.Config(**params), ctx)
    calls: list[int] = []
    current = {}
    monkeypatch.setattr(method, "correct_labels",
                        lambda: calls.append(current["epoch"]) or ctx.noisy_labels.clone())
    for epoch in range(start_epoch, epochs):
        current["epoch"] = epoch
        method.train_epoch(epoch)
    return calls


@pytest.mark.parametrize("start_epoch", [0, 1, 3])
def test_correction_starts_after_that_many_trained_epochs(monkeypatch, start_epoch) -> None:
    """Under ``start_epoch: 1`` (the Co-teaching family's schedules) the default still trains
    one CE epoch first: correction at epoch 2, not at the first trained epoch."""
    got = correction_epochs(monkeypatch, epochs=start_epoch + 4, start_epoch=start_epoch)
    assert got == [start_epoch + 1, start_epoch + 2, start_epoch + 3]
    got = correction_epochs(monkeypatch, epochs=start_epoch + 6, start_epoch=start_epoch,
                            correction_start_epoch=2, correct_every=2)
    assert got == [start_epoch + 2, start_epoch + 4]
    assert correction_epochs(monkeypatch, epochs=start_epoch + 2, start_epoch=start_epoch,
                             correction_start_epoch=0) == [start_epoch, start_epoch + 1]


def grid(correction_start_epoch: int, *, epochs: int = 5, start_epoch: int = 1) -> dict:
    return {"dataset": "digits", "network": "mlp",
            "train": {"epochs": epochs, "start_epoch": start_epoch},
            "methods": {"self_learning": {"correction_start_epoch": correction_start_epoch}},
            "noise": [{"type": "symmetric", "rate": 0.2}], "seeds": [1]}


def test_grid_accepts_a_start_within_the_run() -> None:
    assert len(expand_grid(grid(3), name="g").runs) == 1     # 4 trained epochs: 0..3 allowed


@pytest.mark.parametrize("value,fragment", [
    (4, "correction_start_epoch 4 must be in [0, 4)"),
    (10, "correction_start_epoch 10 must be in [0, 4)"),
    (-1, "correction_start_epoch must be >= 0"),
])
def test_grid_rejects_a_start_outside_the_run(value, fragment) -> None:
    with pytest.raises(ConfigError, match=r"self_learning") as err:
        expand_grid(grid(value), name="g")
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_the_cli_error_is_one_line(capsys, write_grid) -> None:
    path = write_grid(grid(7))
    assert main(["run", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "correction_start_epoch 7" in err[0] and str(path) in err[0]


def test_a_direct_run_is_checked_too() -> None:
    with pytest.raises(ConfigError, match="must be in"):
        SelfLearning(SelfLearning.Config(correction_start_epoch=3),
                     FakeContext(epochs=4, start_epoch=1))
