"""The grids of the seed articles' questions: each expands to the cells its question needs, with
its noise-seed convention, and JoCoR's lambda curve reuses jocor_mnist's co_lambda 0.95 runs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from bench.config import load_grid

GRIDS = Path(__file__).resolve().parents[1] / "bench" / "grids"
QUESTIONS = ["dividemix_threshold", "dividemix_threshold_cifar10", "self_learning_start",
             "rsl_vs_smallloss_mnist", "jocor_lambda_mnist"]


def cells(name: str) -> Counter:
    """(label, noise_type, noise_rate) -> number of runs."""
    return Counter((s.label, s.noise_type, s.noise_rate) for s in load_grid(GRIDS / f"{name}.yaml").runs)


@pytest.mark.parametrize("name", QUESTIONS)
def test_each_grid_states_its_question(name: str) -> None:
    raw = yaml.safe_load((GRIDS / f"{name}.yaml").read_text())
    assert raw["name"] == name
    assert raw["description"].endswith("?") and "\n" not in raw["description"]


@pytest.mark.parametrize("name", ["dividemix_threshold", "dividemix_threshold_cifar10"])
def test_dividemix_threshold_grid(name: str) -> None:
    grid = load_grid(GRIDS / f"{name}.yaml")
    found = cells(name)
    ps = [0.1, 0.3, 0.5, 0.7, 0.9]
    expected = {(f"dividemix(p_threshold={p})", ntype, rate): 3
                for p in ps for ntype, rate in (("asymmetric", 0.3), ("symmetric_inclusive", 0.4))}
    assert dict(found) == expected
    for spec in grid.runs:
        assert spec.noise_seed == spec.seed           # each seed its own draw
        assert spec.method_params["confidence_penalty"] == (spec.noise_type == "asymmetric")
        assert spec.method_params["warm_up"] == 10
    assert {s.dataset for s in grid.runs} == {"mnist" if name == "dividemix_threshold" else "cifar10"}


def test_self_learning_start_grid() -> None:
    grid = load_grid(GRIDS / "self_learning_start.yaml")
    starts = Counter(s.method_params.get("correction_start_epoch") for s in grid.runs
                     if s.method == "self_learning")
    assert starts == {1: 5, 3: 5, 5: 5}
    assert Counter(s.method for s in grid.runs) == {"self_learning": 15, "standard": 5}
    assert all(s.dataset == "fashion-mnist" and s.noise_seed == s.seed for s in grid.runs)
    # the three starts of one seed share its draw and initialisation: a paired comparison
    by_seed = Counter((s.seed, s.noise_seed) for s in grid.runs if s.method == "self_learning")
    assert set(by_seed.values()) == {3}


def test_rsl_vs_smallloss_grid() -> None:
    grid = load_grid(GRIDS / "rsl_vs_smallloss_mnist.yaml")
    found = cells("rsl_vs_smallloss_mnist")
    settings = [("asymmetric", 0.4), ("symmetric", 0.5), ("symmetric", 0.8)]
    assert dict(found) == {(f"rsl(selection={sel})", t, r): 5
                           for sel in ("classwise", "global") for t, r in settings}
    for spec in grid.runs:
        assert spec.noise_seed == spec.seed
        # the code's class balance for structured noise, the same in both arms
        assert spec.method_params["class_balance"] == (spec.noise_type == "asymmetric")
        assert spec.method_params["sel_epoch"] + spec.method_params["retrain_epochs"] == \
            spec.train.epochs - spec.train.start_epoch


def test_jocor_lambda_grid_reuses_jocor_mnist_runs() -> None:
    grid = load_grid(GRIDS / "jocor_lambda_mnist.yaml")
    found = cells("jocor_lambda_mnist")
    lambdas = [0.1, 0.5, 0.65, 0.8, 0.9, 0.95]
    assert dict(found) == {(f"jocor(co_lambda={lam})", "symmetric", r): 3
                           for lam in lambdas for r in (0.5, 0.8)}
    assert all(s.noise_seed == 0 for s in grid.runs)
    base = {s.run_id for s in load_grid(GRIDS / "jocor_mnist.yaml").runs if s.method == "jocor"}
    reused = {s.run_id for s in grid.runs if s.method_params["co_lambda"] == 0.95}
    assert len(reused) == 6 and reused <= base
    assert not {s.run_id for s in grid.runs if s.method_params["co_lambda"] != 0.95} & base
