"""The noise models draw what they claim.

Tolerance of a realised transition matrix: row i holds n_i = N/K samples, so entry (i, j) is a
binomial proportion with standard error sqrt(p (1 - p) / n_i). Every entry must lie within
Z = 5 standard errors of its target; a target of 0 or 1 must be met exactly. With at most K^2 =
10,000 entries, the chance that a correct sampler fails anywhere is below 10,000 * 5.7e-7 < 1%,
and the seeds are fixed, so the test is deterministic anyway.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from bench import noise
from bench.errors import ConfigError
from bench.noise import (CIFAR100_COARSE, apply_noise, cifar100_block_map,
                         cifar100_superclass_map, realised_noise_rate,
                         realised_transition_matrix)
from bench.registry import NOISE_MODELS

N_DRAWS = 100_000
Z = 5.0


def balanced_labels(num_classes: int, n: int = N_DRAWS, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.arange(n) % num_classes).astype(np.int64)


def assert_matrix_close(clean: np.ndarray, noisy: np.ndarray, target: np.ndarray) -> None:
    k = target.shape[0]
    realised = realised_transition_matrix(clean, noisy, k)
    n_row = np.bincount(clean, minlength=k)[:, None]
    tol = Z * np.sqrt(target * (1 - target) / n_row)
    sure = (target == 0) | (target == 1)
    assert np.array_equal(realised[sure], target[sure]), "a certain transition was missed"
    if (~sure).any():
        worst = np.max(np.abs(realised - target)[~sure] / tol[~sure])
        assert worst <= 1.0, f"an entry is {worst * Z:.2f} standard errors from its target"


def draw(noise_type: str, clean: np.ndarray, *, num_classes: int, rate: float | None,
         seed: int = 0, dataset: str = "synthetic", **kw) -> noise.NoiseDraw:
    return apply_noise(noise_type, clean, num_classes=num_classes, rate=rate, noise_seed=seed,
                       dataset=dataset, **kw)


# ---- matrices ------------------------------------------------------------------------------

@pytest.mark.parametrize("noise_type,num_classes,rate,dataset", [
    ("symmetric", 10, 0.2, "synthetic"),
    ("symmetric", 10, 0.8, "synthetic"),
    ("symmetric", 100, 0.5, "synthetic"),
    ("symmetric_inclusive", 10, 0.5, "synthetic"),
    ("symmetric_inclusive", 100, 0.8, "synthetic"),
    ("pairflip", 10, 0.45, "synthetic"),
    ("pairflip", 100, 0.35, "synthetic"),
    ("asymmetric", 10, 0.4, "mnist"),
    ("asymmetric", 10, 0.4, "cifar10"),
    ("asymmetric", 100, 0.4, "cifar100"),
    ("asymmetric_superclass", 100, 0.4, "cifar100"),
    ("none", 10, None, "synthetic"),
])
def test_realised_matrix_matches_target(noise_type, num_classes, rate, dataset) -> None:
    clean = balanced_labels(num_classes)
    result = draw(noise_type, clean, num_classes=num_classes, rate=rate, dataset=dataset)
    assert result.noisy_labels.dtype == np.int64 and result.noisy_labels.shape == clean.shape
    assert_matrix_close(clean, result.noisy_labels, result.nominal_transition_matrix)


def test_symmetric_excludes_the_true_class() -> None:
    t = noise.symmetric_matrix(10, 0.5)
    assert np.allclose(np.diag(t), 0.5) and np.allclose(t[0, 1:], 0.5 / 9)


def test_symmetric_inclusive_realised_rate_is_r_times_k_minus_1_over_k() -> None:
    k, r = 10, 0.5
    clean = balanced_labels(k)
    noisy = draw("symmetric_inclusive", clean, num_classes=k, rate=r).noisy_labels
    # int(rN) samples are redrawn; each lands off its class with probability (K-1)/K
    m = int(r * N_DRAWS)
    se = np.sqrt(m * (k - 1) / k * (1 / k)) / N_DRAWS
    assert realised_noise_rate(clean, noisy) == pytest.approx(r * (k - 1) / k, abs=Z * se)
    assert np.trace(noise.symmetric_inclusive_matrix(k, r)) / k == pytest.approx(1 - r * 0.9)


def test_asymmetric_cifar10_leaves_five_classes_untouched() -> None:
    clean = balanced_labels(10)
    noisy = draw("asymmetric", clean, num_classes=10, rate=0.45, dataset="cifar10").noisy_labels
    untouched = np.isin(clean, [0, 1, 6, 7, 8])
    assert np.array_equal(noisy[untouched], clean[untouched])
    flips = {int(c): set(np.unique(noisy[clean == c]).tolist()) for c in (2, 3, 4, 5, 9)}
    assert flips == {2: {2, 0}, 3: {3, 5}, 4: {4, 7}, 5: {5, 3}, 9: {9, 1}}


def test_asymmetric_mnist_map() -> None:
    clean = balanced_labels(10)
    noisy = draw("asymmetric", clean, num_classes=10, rate=0.3, dataset="mnist").noisy_labels
    moved = {int(c): sorted(set(noisy[(clean == c) & (noisy != c)].tolist())) for c in range(10)}
    assert moved == {0: [], 1: [], 2: [7], 3: [8], 4: [], 5: [6], 6: [5], 7: [1], 8: [], 9: []}


def test_asymmetric_needs_a_class_map() -> None:
    with pytest.raises(ConfigError, match="no class map"):
        draw("asymmetric", balanced_labels(10, 100), num_classes=10, rate=0.2, dataset="svhn")


def test_cifar100_block_map_is_cyclic_within_blocks_of_five() -> None:
    block = cifar100_block_map()
    assert sorted(block) == list(range(100))
    for i in range(100):
        assert block[i] // 5 == i // 5 and block[i] != i
        j = i
        for _ in range(5):
            j = block[j]
        assert j == i
    assert [block[i] for i in range(5)] == [1, 2, 3, 4, 0]


def test_cifar100_superclass_map_differs_from_the_blocks() -> None:
    block, superclass = cifar100_block_map(), cifar100_superclass_map()
    coarse = np.asarray(CIFAR100_COARSE)
    assert all(coarse[superclass[i]] == coarse[i] and superclass[i] != i for i in range(100))
    assert sorted(superclass.values()) == list(range(100))  # a permutation
    assert sum(block[i] != superclass[i] for i in range(100)) > 50
    # the alphabetical blocks of five mix super-classes
    assert any(coarse[block[i]] != coarse[i] for i in range(100))


def test_cifar100_coarse_has_twenty_superclasses_of_five() -> None:
    assert len(CIFAR100_COARSE) == 100
    assert np.bincount(CIFAR100_COARSE).tolist() == [5] * 20


def test_cifar100_coarse_agrees_with_cifar100n(data_root) -> None:
    from bench.data import load_cifar_n_labels

    path = data_root / "CIFAR-10N" / "CIFAR-100_human.pt"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    labels = load_cifar_n_labels(path)
    fine, coarse = labels["clean_label"], np.asarray(labels["clean_coarse_label"])
    assert np.array_equal(np.asarray(CIFAR100_COARSE)[fine], coarse)
    assert len(np.unique(fine)) == 100


# ---- instance-dependent noise ----------------------------------------------------------------

def test_instance_noise_rate_is_near_r() -> None:
    rng = np.random.default_rng(1)
    n, k = 20_000, 10
    clean = balanced_labels(k, n)
    features = rng.random((n, 16))
    for rate in (0.2, 0.4):
        result = draw("instance", clean, num_classes=k, rate=rate, features=features)
        assert result.nominal_transition_matrix is None
        # truncating N(r, 0.1^2) to [0, 1] lifts the mean by 0.5 points at r = 0.2
        assert realised_noise_rate(clean, result.noisy_labels) == pytest.approx(rate, abs=0.02)


def test_instance_noise_depends_on_the_features() -> None:
    # one class, two groups of identical feature vectors: the flip destinations of the groups
    # follow different distributions (a class-conditional model would give one distribution)
    rng = np.random.default_rng(2)
    n, k = 20_000, 10
    clean = np.zeros(n, dtype=np.int64)
    a, b = rng.random(16), rng.random(16)
    features = np.where(np.arange(n)[:, None] < n // 2, a, b)
    noisy = draw("instance", clean, num_classes=k, rate=0.4, features=features).noisy_labels
    group = np.arange(n) < n // 2
    table = np.stack([np.bincount(noisy[group & (noisy != 0)], minlength=k)[1:],
                      np.bincount(noisy[~group & (noisy != 0)], minlength=k)[1:]])
    table = table[:, table.sum(0) > 0]
    assert sps.chi2_contingency(table).pvalue < 1e-6
    # and the same seed with other features gives other labels
    other = draw("instance", clean, num_classes=k, rate=0.4,
                 features=rng.random((n, 16))).noisy_labels
    assert np.mean(other != noisy) > 0.05


def test_instance_noise_needs_features() -> None:
    with pytest.raises(ConfigError, match="features"):
        draw("instance", balanced_labels(10, 100), num_classes=10, rate=0.2)


# ---- human and none --------------------------------------------------------------------------

def test_human_returns_the_given_labels() -> None:
    clean = balanced_labels(10, 1000)
    given = (clean + (np.arange(1000) % 7 == 0)) % 10
    result = draw("human", clean, num_classes=10, rate=None, human_labels=given)
    assert np.array_equal(result.noisy_labels, given) and result.nominal_transition_matrix is None
    with pytest.raises(ConfigError, match="human label sets"):
        draw("human", clean, num_classes=10, rate=None)


def test_none_is_the_identity() -> None:
    clean = balanced_labels(10, 1000)
    result = draw("none", clean, num_classes=10, rate=None)
    assert np.array_equal(result.noisy_labels, clean)
    assert result.noisy_labels is not clean
    assert np.array_equal(result.nominal_transition_matrix, np.eye(10))


# ---- determinism, rates, row sums ------------------------------------------------------------

SEEDED = [("symmetric", "synthetic", 10), ("symmetric_inclusive", "synthetic", 10),
          ("pairflip", "synthetic", 10), ("asymmetric", "mnist", 10),
          ("asymmetric", "cifar10", 10), ("asymmetric", "cifar100", 100),
          ("asymmetric_superclass", "cifar100", 100), ("instance", "synthetic", 10)]


@pytest.mark.parametrize("noise_type,dataset,num_classes", SEEDED)
def test_same_seed_same_labels_other_seed_other_labels(noise_type, dataset, num_classes) -> None:
    clean = balanced_labels(num_classes, 5000)
    features = np.random.default_rng(0).random((5000, 8))
    kw = dict(num_classes=num_classes, rate=0.4, dataset=dataset, features=features)
    first = draw(noise_type, clean, seed=3, **kw).noisy_labels
    again = draw(noise_type, clean, seed=3, **kw).noisy_labels
    other = draw(noise_type, clean, seed=4, **kw).noisy_labels
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("noise_type", NOISE_MODELS.names())
def test_every_nominal_matrix_is_row_stochastic(noise_type) -> None:
    settings = {"asymmetric": [("mnist", 10), ("cifar10", 10), ("cifar100", 100)],
                "asymmetric_superclass": [("cifar100", 100)]}
    for dataset, k in settings.get(noise_type, [("synthetic", 10), ("synthetic", 100)]):
        for rate in (0.0, 0.2, 0.45, 0.8, 0.99):
            clean = balanced_labels(k, 2000)
            result = draw(noise_type, clean, num_classes=k,
                          rate=None if noise_type in ("none", "human") else rate,
                          dataset=dataset, human_labels=clean,
                          features=np.random.default_rng(0).random((2000, 4)))
            t = result.nominal_transition_matrix
            if t is None:
                assert noise_type in ("instance", "human")
                continue
            assert t.shape == (k, k)
            assert np.all(t >= 0) and np.allclose(t.sum(axis=1), 1.0)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, None])
def test_rate_outside_unit_interval_is_rejected(rate) -> None:
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        draw("symmetric", balanced_labels(10, 100), num_classes=10, rate=rate)


def test_realised_helpers() -> None:
    clean = np.array([0, 0, 1, 1])
    noisy = np.array([0, 1, 1, 1])
    assert realised_noise_rate(clean, noisy) == 0.25
    assert realised_transition_matrix(clean, noisy, 3).tolist() == [[0.5, 0.5, 0], [0, 1, 0],
                                                                   [0, 0, 0]]
