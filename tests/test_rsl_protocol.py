"""RSL's protocol: the 45k / 5k clean split, the clean-validation selection, the grid.

The split is checked against a transliteration of ``split_raw_trainset`` of guixianjin/RSL
``noisy_data_generator/Uniform_CIFAR10.py`` (117ca13), written for this test.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench import engine, store
from bench.config import TrainConfig, load_grid
from bench.data import hold_out_clean, load_dataset, stratified_holdout
from bench.errors import ConfigError
from bench.papers import load_paper_numbers, lookup
from bench.protocols import clean_val_index
from bench.report import with_accuracy
from methods.rsl import selection_counts

REPO = Path(__file__).resolve().parents[1]


def _official_split(labels: np.ndarray, noise: float, num_classes: int):
    """split_raw_trainset on the global np.random stream: noise per sample, then the split."""
    from collections import defaultdict

    flip_labels = np.zeros(len(labels), dtype=int)
    label_ind = defaultdict(list)
    for i, label in enumerate(labels):
        label_ind[label].append(i)
        if np.random.rand() > noise:
            flip_labels[i] = label
        else:
            flip_labels[i] = np.random.randint(0, num_classes)
    val_ind = []
    for _, part_ind in label_ind.items():
        val_ind.extend(np.random.choice(part_ind, int(0.1 * len(part_ind)), replace=False))
    train_ind = list(set(range(len(labels))) - set(val_ind))
    return train_ind, val_ind, flip_labels


def _ours_after_the_same_noise_draws(labels: np.ndarray, noise: float, num_classes: int):
    rng = np.random.RandomState(0)
    for _ in labels:                 # the code's noise draws, to bring the stream to its state
        if rng.rand() <= noise:
            rng.randint(0, num_classes)
    return stratified_holdout(labels, fraction=0.1, rng=rng)


@pytest.mark.parametrize("counts", [[50] * 5, [53, 47, 61, 38, 70]])
def test_split_equals_the_official_split_from_the_same_stream(counts) -> None:
    labels = np.random.default_rng(3).permutation(np.repeat(np.arange(5), counts))
    np.random.seed(0)
    train_off, val_off, _ = _official_split(labels, 0.4, 5)
    train, val = _ours_after_the_same_noise_draws(labels, 0.4, 5)
    np.testing.assert_array_equal(val, np.asarray(val_off))          # same indices, same order
    np.testing.assert_array_equal(train, np.sort(train_off))
    assert np.all(np.diff(train) > 0)
    # int(0.1 n_c) per class, whatever the class sizes
    assert np.bincount(labels[val], minlength=5).tolist() == [int(0.1 * c) for c in counts]


def test_cifar_sized_split_is_45000_5000_and_rsl_counts_come_from_4500() -> None:
    labels = np.random.default_rng(0).permutation(np.repeat(np.arange(10), 5000))
    train, val = stratified_holdout(labels, fraction=0.1, rng=np.random.RandomState(0))
    assert len(train) == 45_000 and len(val) == 5_000
    assert np.bincount(labels[val]).tolist() == [500] * 10
    assert np.bincount(labels[train]).tolist() == [4500] * 10
    assert len(np.intersect1d(train, val)) == 0
    n_per_class = len(train) / 10                      # what RSL's method uses: N_train / K
    for r in (0.1, 0.3, 0.5, 0.7, 0.9):                # main.py Uniform_CIFAR10
        eta = r * 0.9
        prop = max(1 - 1.2 * eta, 0.8 * (1 - eta))
        official = [int(4500 * prop)] * 10             # each_class_num = [int(4500*x) ...]
        ours = selection_counts(np.full(10, eta), np.bincount(labels[train]), beta=0.2,
                                n_per_class=n_per_class)
        assert ours.tolist() == official


def test_hold_out_clean_keeps_noisy_train_labels_and_clean_val_labels() -> None:
    data = load_dataset("digits")
    rng = np.random.default_rng(1)
    noisy = np.where(rng.random(len(data.train_labels)) < 0.3, (data.train_labels + 1) % 10,
                     data.train_labels)
    held, noisy_train = hold_out_clean(data, noisy, fraction=0.2, seed=5)
    train_idx, val_idx = stratified_holdout(data.train_labels, fraction=0.2,
                                            rng=np.random.RandomState(5))
    np.testing.assert_array_equal(noisy_train, noisy[train_idx])
    np.testing.assert_array_equal(held.train_labels, data.train_labels[train_idx])
    np.testing.assert_array_equal(held.val_labels, data.train_labels[val_idx])
    assert torch.equal(held.val_images, data.train_images[torch.from_numpy(val_idx)])
    assert torch.equal(held.train_images, data.train_images[torch.from_numpy(train_idx)])
    assert held.test_images is data.test_images


def test_hold_out_clean_refuses_unknown_clean_labels() -> None:
    data = load_dataset("digits")
    data.train_labels = data.train_labels.copy()
    data.train_labels[0] = -1
    with pytest.raises(ConfigError, match="needs every clean label"):
        hold_out_clean(data, data.train_labels, fraction=0.1, seed=0)


def test_clean_val_fraction_is_validated() -> None:
    with pytest.raises(ConfigError, match="clean_val_fraction"):
        TrainConfig(clean_val_fraction=1.0)
    with pytest.raises(ConfigError, match="clean_val_fraction"):
        TrainConfig(clean_val_fraction=-0.1)


# ---- the selection -------------------------------------------------------------------------

def test_clean_val_index_ties_window_and_gaps() -> None:
    val = [10.0, 30.0, 20.0, 30.0, None, 25.0]
    assert clean_val_index(val) == 3                   # main.py: >=, the latest best
    assert clean_val_index(val, ties="first") == 1     # Weighted MixMatch: >, the first
    assert clean_val_index(val, start=4) == 5          # only the reported network's epochs
    assert clean_val_index([None, math.nan]) is None
    assert clean_val_index(val, start=6) is None
    with pytest.raises(ValueError, match="ties"):
        clean_val_index(val, ties="middle")


def _official_best(val_accu, test_accu, strict: bool):
    """main.py (>=) and Weighted_MixMatch_train_CIFAR.py (>) best-epoch loops."""
    val_best, test_best = 0.0, 0.0
    for v, t in zip(val_accu, test_accu):
        if (v > val_best) if strict else (v >= val_best):
            val_best, test_best = v, t
    return test_best


@pytest.mark.parametrize("strict,ties", [(False, "last"), (True, "first")])
def test_clean_val_index_reproduces_the_official_loops(strict, ties) -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        val = rng.integers(80, 90, size=12).astype(float)   # many ties, as on 5,000 images
        test = rng.random(12) * 100
        assert test[clean_val_index(val, ties=ties)] == _official_best(val, test, strict)


def test_report_reads_clean_val_from_the_record_or_the_curve() -> None:
    runs = pd.DataFrame({
        "test_acc_clean_val": [None, 80.0],
        "metrics": [{"test_acc": [50.0, 60.0, 55.0], "val_acc": [70.0, 90.0, 90.0]},
                    {"test_acc": [1.0, 2.0], "val_acc": [3.0, 4.0]}]})
    assert with_accuracy(runs, "clean_val")["acc"].tolist() == [55.0, 80.0]


# ---- through the engine --------------------------------------------------------------------

def test_run_with_a_clean_split_records_sizes_val_acc_and_the_selection(make_spec) -> None:
    spec = make_spec(train={"epochs": 3, "clean_val_fraction": 0.1})
    rec = engine.run(spec, device="cpu")
    assert rec["status"] == "ok", rec["error"]
    assert store.validate_record(rec) == []
    labels = load_dataset("digits").train_labels
    held = sum(int(0.1 * c) for c in np.bincount(labels))
    assert rec["data_split"] == {"train": len(labels) - held, "clean_val": held,
                                 "clean_val_fraction": 0.1, "split_seed": spec.noise_seed}
    m = rec["metrics"]
    assert len(m["val_acc"]) == 3 and all(0 <= v <= 100 for v in m["val_acc"])
    pos = clean_val_index(m["val_acc"])
    assert rec["clean_val_epoch"] == m["epoch"][pos]
    assert rec["test_acc_clean_val"] == m["test_acc"][pos]
    assert rec["train"]["clean_val_fraction"] == 0.1


def test_split_draws_the_noise_on_every_image_first(make_spec) -> None:
    cpu = torch.device("cpu")
    plain = make_spec(noise_type="symmetric", noise_rate=0.4)
    split = make_spec(noise_type="symmetric", noise_rate=0.4, train={"clean_val_fraction": 0.1})
    full, noisy_full, info_full = engine.prepare(plain, cpu)
    held, noisy_train, info = engine.prepare(split, cpu)
    train_idx, _ = stratified_holdout(full.train_labels, fraction=0.1,
                                      rng=np.random.RandomState(split.noise_seed))
    np.testing.assert_array_equal(noisy_train, noisy_full[train_idx])
    assert info_full["data_split"] == {"train": len(noisy_full), "clean_val": 0}
    # the realised noise is that of the training part
    expected = float(np.mean(noisy_train != full.train_labels[train_idx]))
    assert info["realised_noise_rate"] == pytest.approx(expected)


def test_rsl_selects_among_its_step3_epochs(make_spec) -> None:
    spec = make_spec(method="rsl", method_params={"sel_epoch": 2, "retrain_epochs": 2},
                     train={"epochs": 4, "clean_val_fraction": 0.1})
    rec = engine.run(spec, device="cpu")
    assert rec["status"] == "ok", rec["error"]
    m = rec["metrics"]
    pos = 2 + clean_val_index(m["val_acc"][2:])
    assert rec["clean_val_epoch"] == m["epoch"][pos] >= 2
    assert rec["test_acc_clean_val"] == m["test_acc"][pos]


def test_rsl_wm_breaks_ties_as_its_code() -> None:
    from methods.rsl import RSL
    from methods.rsl_wm import RSLWeightedMixMatch

    assert RSLWeightedMixMatch.clean_val_ties == "first"
    assert getattr(RSL, "clean_val_ties", "last") == "last"


# ---- the grid ------------------------------------------------------------------------------

def test_rsl_cifar10_grid_has_the_official_protocol_and_its_paper_numbers() -> None:
    grid = load_grid(REPO / "bench" / "grids" / "rsl_cifar10.yaml")
    assert len(grid) == 3 * 13 * 3
    epochs = {"standard": 200, "rsl": 400, "rsl_wm": 700}
    papers = load_paper_numbers()
    for run in grid.runs:
        assert run.network == "wrn28_2" and run.noise_seed == run.seed
        assert run.train.clean_val_fraction == 0.1
        assert run.train.epochs == epochs[run.method]
        assert (run.train.lr, run.train.milestones, run.train.gamma) == (0.1, (60, 120, 160), 0.02)
        assert run.reference["protocol"] == "clean_val"
        row = lookup(papers, paper="rsl", dataset="cifar10", noise_type=run.noise_type,
                     noise_rate=run.noise_rate, method=run.method, protocol="clean_val",
                     table="Table 2")
        assert row is not None and row["provenance"] == "verified"
    spot = {("rsl", "symmetric_inclusive", 0.5): 88.21, ("rsl_wm", "asymmetric", 0.4): 91.17,
            ("standard", "pairflip", 0.4): 83.20}
    for (method, noise_type, rate), mean in spot.items():
        row = lookup(papers, paper="rsl", dataset="cifar10", noise_type=noise_type,
                     noise_rate=rate, method=method, protocol="clean_val")
        assert row["mean"] == pytest.approx(mean)


def test_real_cifar10_split_is_the_codes_45000_5000(data_root) -> None:
    if not (data_root / "cifar-10-batches-py").is_dir():
        pytest.skip(f"no cifar-10-batches-py in {data_root}")
    grid = load_grid(REPO / "bench" / "grids" / "rsl_cifar10.yaml")
    spec = next(r for r in grid.runs if r.method == "rsl" and r.noise_type == "pairflip"
                and r.noise_rate == 0.4)
    data, noisy, info = engine.prepare(spec, torch.device("cpu"), data_root=data_root)
    assert info["data_split"]["train"] == 45_000 and info["data_split"]["clean_val"] == 5_000
    assert np.bincount(data.val_labels).tolist() == [500] * 10
    assert np.bincount(data.train_labels).tolist() == [4500] * 10
    assert tuple(data.val_images.shape) == (5_000, 3, 32, 32) and len(noisy) == 45_000
    assert info["realised_noise_rate"] == pytest.approx(0.4, abs=0.01)
