"""MentorNet is named for what it is: a self-paced stand-in, not the learned mentor network."""

from __future__ import annotations

import torch

from bench.__main__ import main
from methods.mentornet import self_paced_loss


def test_bench_list_names_the_stand_in(capsys) -> None:
    assert main(["list"]) == 0
    line = next(t for t in capsys.readouterr().out.splitlines() if t.split()[:1] == ["mentornet"])
    assert "stand-in" in line and "not the learned mentor" in line


def test_readme_names_the_stand_in() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    row = next(t for t in readme.splitlines() if t.startswith("| methods |"))
    assert "`mentornet` (MentorNet's self-paced PD stand-in, not the learned mentor" in row


def test_self_paced_weights_are_hard_small_loss_picks() -> None:
    """v = 1 on the smallest losses, 0 elsewhere: nothing is learned from the losses."""
    logits = torch.tensor([[4.0, 0.0], [0.0, 4.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 0, 0])
    ce = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    loss, keep = self_paced_loss(logits, labels, num_remember=2)
    assert keep.tolist() == [True, False, True, False]
    assert torch.isclose(loss, (ce[0] + ce[2]) / 4)
    kept_mean, _ = self_paced_loss(logits, labels, num_remember=2, normalization="kept")
    assert torch.isclose(kept_mean, (ce[0] + ce[2]) / 2)
