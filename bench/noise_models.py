"""Label-noise models: the transition matrices and the samplers of the noisy labels.

One convention throughout: a transition matrix is row-stochastic and indexed ``T[clean, noisy]``,
so ``T[i, j]`` is the probability that a sample of true class ``i`` carries label ``j``. Every
sampler takes an explicit :class:`numpy.random.Generator`.

The papers disagree on what "symmetric" means (see ``symmetric`` and ``symmetric_inclusive``);
both are offered under their own names so that a table states which one it used. A noise model
(``NOISE_MODELS``) fixes the distribution of the noisy labels; how one sample of them is taken is
a noise draw (:mod:`bench.noise`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.errors import ConfigError
from bench.registry import NOISE_MODELS

# Class maps of the "asymmetric" noise the papers used, clean -> noisy.
# MNIST (JoCoR data/utils.py): 7->1, 2->7, 5<->6, 3->8.
MNIST_ASYMMETRIC = {7: 1, 2: 7, 5: 6, 6: 5, 3: 8}
# CIFAR-10 (DivideMix, JoCoR, RSL "structured"): truck->automobile, bird->airplane,
# deer->horse, cat<->dog.
CIFAR10_ASYMMETRIC = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}

# CIFAR-100 fine label -> coarse (super-class) label, in the dataset's own index order.
CIFAR100_COARSE = (
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
)


@dataclass(frozen=True)
class NoiseDraw:
    """The result of a noise model: labels and the matrix they were drawn from.

    noisy_labels: (N,) int64.
    nominal_transition_matrix: (K, K) target ``T[clean, noisy]``, or None where the model has
        no single matrix (instance-dependent and human noise).
    """

    noisy_labels: np.ndarray
    nominal_transition_matrix: np.ndarray | None


def realised_transition_matrix(clean_labels: np.ndarray, noisy_labels: np.ndarray,
                               num_classes: int) -> np.ndarray:
    """Row-normalised counts ``T[clean, noisy]`` of a realised draw, (K, K); empty rows are 0."""
    counts = np.zeros((num_classes, num_classes), dtype=np.float64)
    np.add.at(counts, (clean_labels, noisy_labels), 1.0)
    rows = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)


def realised_noise_rate(clean_labels: np.ndarray, noisy_labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(clean_labels) != np.asarray(noisy_labels)))


def sample_from_matrix(clean_labels: np.ndarray, transition_matrix: np.ndarray,
                       rng: np.random.Generator) -> np.ndarray:
    """Draw one noisy label per sample from row ``T[clean]`` (inverse-CDF, vectorised).

    The official Co-teaching/JoCoR code draws the same distribution sample by sample with
    ``RandomState(0).multinomial``; the labels differ, their distribution does not (the
    ``noisify`` draw reproduces those labels).
    """
    cdf = np.cumsum(transition_matrix, axis=1)
    cdf[:, -1] = 1.0  # guard against rounding below 1
    u = rng.random(len(clean_labels))
    return (u[:, None] >= cdf[clean_labels]).sum(axis=1).astype(np.int64)


def check_rate(rate: float | None, name: str) -> float:
    if rate is None or not (0.0 <= float(rate) < 1.0):
        raise ConfigError(f"noise rate of {name} must be in [0, 1), got {rate!r}")
    return float(rate)


# ---- transition matrices ---------------------------------------------------------------------

def symmetric_matrix(num_classes: int, rate: float) -> np.ndarray:
    """1-r on the diagonal, r/(K-1) elsewhere: the true class is excluded (Co-teaching, JoCoR)."""
    t = np.full((num_classes, num_classes), rate / (num_classes - 1))
    np.fill_diagonal(t, 1.0 - rate)
    return t


def symmetric_inclusive_matrix(num_classes: int, rate: float) -> np.ndarray:
    """A fraction r redrawn uniformly over all K classes: actual noise r(K-1)/K (DivideMix)."""
    t = np.full((num_classes, num_classes), rate / num_classes)
    np.fill_diagonal(t, 1.0 - rate + rate / num_classes)
    return t


def pairflip_matrix(num_classes: int, rate: float) -> np.ndarray:
    """Class i goes to (i+1) mod K with probability r."""
    t = np.eye(num_classes) * (1.0 - rate)
    for i in range(num_classes):
        t[i, (i + 1) % num_classes] += rate
    return t


def class_map_matrix(num_classes: int, rate: float, mapping: dict[int, int]) -> np.ndarray:
    """Each mapped class flips to its target with probability r; others stay clean."""
    t = np.eye(num_classes)
    for src, dst in mapping.items():
        if src != dst:
            t[src, src] = 1.0 - rate
            t[src, dst] = rate
    return t


def cifar100_block_map() -> dict[int, int]:
    """JoCoR's CIFAR-100 map: next class within blocks of five consecutive indices (cyclic).

    The official code calls these blocks super-classes, but CIFAR-100's fine indices are in
    alphabetical order, so they are not; ``asymmetric_superclass`` uses the true ones.
    """
    return {i: (i // 5) * 5 + (i % 5 + 1) % 5 for i in range(100)}


def cifar100_superclass_map() -> dict[int, int]:
    """Next fine class (cyclic, in index order) within each true CIFAR-100 super-class."""
    mapping: dict[int, int] = {}
    for coarse in range(20):
        members = [f for f, c in enumerate(CIFAR100_COARSE) if c == coarse]
        for k, fine in enumerate(members):
            mapping[fine] = members[(k + 1) % len(members)]
    return mapping


def asymmetric_map(dataset: str, num_classes: int) -> dict[int, int]:
    if dataset in ("mnist", "digits") and num_classes == 10:
        return MNIST_ASYMMETRIC
    if dataset in ("cifar10", "cifar10n") and num_classes == 10:
        return CIFAR10_ASYMMETRIC
    if dataset in ("cifar100", "cifar100n") and num_classes == 100:
        return cifar100_block_map()
    raise ConfigError(
        f"asymmetric noise has no class map for dataset {dataset!r}; "
        "defined for mnist, digits, cifar10, cifar100")


# ---- registered noise models -----------------------------------------------------------------
# Signature: (clean_labels (N,), *, num_classes, rate, rng, dataset, variant, features) -> NoiseDraw

@NOISE_MODELS.register("none")
def no_noise(clean_labels, *, num_classes, rate, rng, dataset, variant=None, features=None):
    """Clean labels (the upper bound of every table)."""
    return NoiseDraw(np.asarray(clean_labels, dtype=np.int64).copy(), np.eye(num_classes))


@NOISE_MODELS.register("symmetric")
def symmetric(clean_labels, *, num_classes, rate, rng, dataset, variant=None, features=None):
    """Co-teaching/JoCoR symmetric: a flipped label is uniform over the K-1 other classes."""
    t = symmetric_matrix(num_classes, check_rate(rate, "symmetric"))
    return NoiseDraw(sample_from_matrix(clean_labels, t, rng), t)


@NOISE_MODELS.register("symmetric_inclusive")
def symmetric_inclusive(clean_labels, *, num_classes, rate, rng, dataset, variant=None,
                        features=None):
    """DivideMix's ``sym``: exactly int(r*N) samples get a label uniform over all K classes."""
    rate = check_rate(rate, "symmetric_inclusive")
    noisy = np.asarray(clean_labels, dtype=np.int64).copy()
    chosen = rng.permutation(len(noisy))[: int(rate * len(noisy))]
    noisy[chosen] = rng.integers(0, num_classes, size=len(chosen))
    return NoiseDraw(noisy, symmetric_inclusive_matrix(num_classes, rate))


@NOISE_MODELS.register("pairflip")
def pairflip(clean_labels, *, num_classes, rate, rng, dataset, variant=None, features=None):
    """Pair flip: class i becomes (i+1) mod K with probability r (RSL: "pairwise")."""
    t = pairflip_matrix(num_classes, check_rate(rate, "pairflip"))
    return NoiseDraw(sample_from_matrix(clean_labels, t, rng), t)


@NOISE_MODELS.register("asymmetric")
def asymmetric(clean_labels, *, num_classes, rate, rng, dataset, variant=None, features=None):
    """The papers' class maps (MNIST, CIFAR-10; CIFAR-100 as JoCoR's blocks of five)."""
    rate = check_rate(rate, "asymmetric")
    t = class_map_matrix(num_classes, rate, asymmetric_map(dataset, num_classes))
    return NoiseDraw(sample_from_matrix(clean_labels, t, rng), t)


@NOISE_MODELS.register("asymmetric_superclass")
def asymmetric_superclass(clean_labels, *, num_classes, rate, rng, dataset, variant=None,
                          features=None):
    """CIFAR-100: next fine class within the true super-class (the corrected JoCoR map)."""
    if num_classes != 100:
        raise ConfigError("asymmetric_superclass noise is defined for CIFAR-100 only")
    rate = check_rate(rate, "asymmetric_superclass")
    t = class_map_matrix(num_classes, rate, cifar100_superclass_map())
    return NoiseDraw(sample_from_matrix(clean_labels, t, rng), t)


@NOISE_MODELS.register("instance")
def instance(clean_labels, *, num_classes, rate, rng, dataset, variant=None, features=None):
    """Instance-dependent noise after Xia et al. (NeurIPS 2020, part-dependent noise, Alg. 2).

    Each sample gets a flip rate q ~ N(r, 0.1^2) truncated to [0, 1]; a random projection
    W (d, K, K) per true class scores the other classes from the sample's features; the noisy
    label keeps the true class with probability 1-q and otherwise takes class j with probability
    q * softmax(x W_y)_j over j != y.

    features: (N, d) float, the flattened images scaled to [0, 1].
    """
    rate = check_rate(rate, "instance")
    if features is None:
        raise ConfigError("instance noise needs the training images as features")
    clean = np.asarray(clean_labels, dtype=np.int64)
    x = np.asarray(features, dtype=np.float64).reshape(len(clean), -1)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    q = _truncated_normal(rate, 0.1, len(clean), rng)
    weights = rng.standard_normal((num_classes, x.shape[1], num_classes))
    scores = np.einsum("nd,ndk->nk", x, weights[clean])
    scores[np.arange(len(clean)), clean] = -np.inf
    scores -= scores.max(axis=1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(axis=1, keepdims=True)
    probs *= q[:, None]
    probs[np.arange(len(clean)), clean] = 1.0 - q
    cdf = np.cumsum(probs, axis=1)
    cdf[:, -1] = 1.0
    noisy = (rng.random(len(clean))[:, None] >= cdf).sum(axis=1).astype(np.int64)
    return NoiseDraw(noisy, None)


def _truncated_normal(mean: float, std: float, size: int, rng: np.random.Generator) -> np.ndarray:
    out = rng.normal(mean, std, size)
    bad = (out < 0) | (out > 1)
    while bad.any():  # rejection sampling; converges fast for mean in [0, 1)
        out[bad] = rng.normal(mean, std, int(bad.sum()))
        bad = (out < 0) | (out > 1)
    return out


@NOISE_MODELS.register("human")
def human(clean_labels, *, num_classes, rate, rng, dataset, variant=None, features=None,
          human_labels=None):
    """Real human annotations (CIFAR-N): the dataset supplies them; nothing is drawn."""
    if human_labels is None:
        raise ConfigError(f"dataset {dataset!r} has no human label sets; use one of cifar10n, "
                          "cifar100n, clothing1m, food101n, webvision")
    return NoiseDraw(np.asarray(human_labels, dtype=np.int64), None)
