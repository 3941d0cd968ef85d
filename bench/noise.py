"""Label-noise models and the draws that sample them.

One convention throughout: a transition matrix is row-stochastic and indexed ``T[clean, noisy]``,
so ``T[i, j]`` is the probability that a sample of true class ``i`` carries label ``j``. Every
sampler takes an explicit seed or :class:`numpy.random.Generator`; the same (dataset, noise,
noise draw, noise seed) therefore gives every method the same noisy labels, and runs pair across
methods.

The papers disagree on what "symmetric" means (see ``symmetric`` and ``symmetric_inclusive``);
both are offered under their own names so that a table states which one it used.

A noise model (``NOISE_MODELS``) fixes the distribution of the noisy labels; a noise draw
(``NOISE_DRAWS``) fixes how one sample of them is taken. ``suite`` (the default) runs the models
below on ``numpy.random.default_rng(noise_seed)``. ``noisify`` and ``dividemix`` reproduce,
sample by sample, the labels that the official codes draw (see their docstrings), so that a run
can train on the very labels a paper's code produced; ``official`` in a grid names the draw of
the official code of that noise type (a draw's ``official_for``).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Any, Callable, Mapping, SupportsInt

import numpy as np

from bench.errors import ConfigError
from bench.registry import NOISE_DRAWS, NOISE_MODELS

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


def _check_rate(rate: float | None, name: str) -> float:
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
    t = symmetric_matrix(num_classes, _check_rate(rate, "symmetric"))
    return NoiseDraw(sample_from_matrix(clean_labels, t, rng), t)


@NOISE_MODELS.register("symmetric_inclusive")
def symmetric_inclusive(clean_labels, *, num_classes, rate, rng, dataset, variant=None,
                        features=None):
    """DivideMix's ``sym``: exactly int(r*N) samples get a label uniform over all K classes."""
    rate = _check_rate(rate, "symmetric_inclusive")
    noisy = np.asarray(clean_labels, dtype=np.int64).copy()
    chosen = rng.permutation(len(noisy))[: int(rate * len(noisy))]
    noisy[chosen] = rng.integers(0, num_classes, size=len(chosen))
    return NoiseDraw(noisy, symmetric_inclusive_matrix(num_classes, rate))


@NOISE_MODELS.register("pairflip")
def pairflip(clean_labels, *, num_classes, rate, rng, dataset, variant=None, features=None):
    """Pair flip: class i becomes (i+1) mod K with probability r (RSL: "pairwise")."""
    t = pairflip_matrix(num_classes, _check_rate(rate, "pairflip"))
    return NoiseDraw(sample_from_matrix(clean_labels, t, rng), t)


@NOISE_MODELS.register("asymmetric")
def asymmetric(clean_labels, *, num_classes, rate, rng, dataset, variant=None, features=None):
    """The papers' class maps (MNIST, CIFAR-10; CIFAR-100 as JoCoR's blocks of five)."""
    rate = _check_rate(rate, "asymmetric")
    t = class_map_matrix(num_classes, rate, asymmetric_map(dataset, num_classes))
    return NoiseDraw(sample_from_matrix(clean_labels, t, rng), t)


@NOISE_MODELS.register("asymmetric_superclass")
def asymmetric_superclass(clean_labels, *, num_classes, rate, rng, dataset, variant=None,
                          features=None):
    """CIFAR-100: next fine class within the true super-class (the corrected JoCoR map)."""
    if num_classes != 100:
        raise ConfigError("asymmetric_superclass noise is defined for CIFAR-100 only")
    rate = _check_rate(rate, "asymmetric_superclass")
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
    rate = _check_rate(rate, "instance")
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


# ---- noise draws ----------------------------------------------------------------------------
# Signature: (clean_labels (N,), *, noise_type, num_classes, rate, seed, dataset, variant,
# features, human_labels) -> NoiseDraw

class RegisteredDraw:
    """A noise draw in ``NOISE_DRAWS``: its sampler and the settings it is defined for.

    Calling it calls the sampler; its ``__doc__``, ``__name__`` and ``__wrapped__`` are the
    sampler's, so that the registry documents the draw itself.

    noise_types: noise type -> the datasets it is defined for (None: any); None: every type.
    official_for: the noise types whose official code draws this way (``draw: official``).
    official_seed: the seed the official code draws with by default; that (draw, seed) gives
        the paper's own noisy labels (:func:`is_papers_draw`).
    """

    def __init__(self, sample: Callable[..., NoiseDraw], *,
                 noise_types: Mapping[str, tuple[str, ...] | None] | None,
                 official_for: tuple[str, ...] = (), official_seed: int | None = None) -> None:
        functools.update_wrapper(self, sample)
        self.sample = sample
        self.noise_types = noise_types
        self.official_for = official_for
        self.official_seed = official_seed

    def __call__(self, clean_labels: np.ndarray, **kwargs: Any) -> NoiseDraw:
        return self.sample(clean_labels, **kwargs)


def _draw(name: str, *, noise_types: Mapping[str, tuple[str, ...] | None] | None,
          official_for: tuple[str, ...] = (), official_seed: int | None = None,
          ) -> Callable[[Callable[..., NoiseDraw]], RegisteredDraw]:
    """Register a noise draw under ``name`` with its settings (see :class:`RegisteredDraw`)."""

    def decorator(sample: Callable[..., NoiseDraw]) -> RegisteredDraw:
        draw = RegisteredDraw(sample, noise_types=noise_types, official_for=official_for,
                              official_seed=official_seed)
        return NOISE_DRAWS.register(name)(draw)

    return decorator


def _registered(draw: str) -> RegisteredDraw:
    """The registered draw of that name (the registry's one-line error for an unknown one)."""
    entry = NOISE_DRAWS.get(draw)
    if not isinstance(entry, RegisteredDraw):
        raise TypeError(f"noise draw {draw!r} is registered as a {type(entry).__name__}, "
                        "not through bench.noise's draw decorator")
    return entry


def is_papers_draw(draw: str | None, noise_seed: SupportsInt | None) -> bool:
    """Whether (draw, noise_seed) is the official code's default draw, i.e. the paper's labels."""
    if not draw or draw not in NOISE_DRAWS:
        return False
    seed = _registered(draw).official_seed
    return seed is not None and noise_seed is not None and int(noise_seed) == seed


def check_draw(draw: str, noise_type: str, dataset: str) -> None:
    """Raise a one-line ConfigError unless ``draw`` defines ``noise_type`` noise on ``dataset``."""
    types = _registered(draw).noise_types
    if types is None:
        return
    if noise_type not in types:
        raise ConfigError(f"noise draw {draw!r} has no {noise_type!r} noise; it has "
                          f"{', '.join(sorted(types))}")
    datasets = types[noise_type]
    if datasets is not None and dataset not in datasets:
        raise ConfigError(f"noise draw {draw!r} defines {noise_type} noise for "
                          f"{', '.join(datasets)} only, not {dataset!r}")


def resolve_draw(draw: str, noise_type: str) -> str:
    """The registered draw a grid means: ``official`` -> the official code's draw of the type."""
    if draw != "official":
        NOISE_DRAWS.get(draw)  # the registry's one-line error for an unknown name
        return draw
    for name in NOISE_DRAWS.names():
        if noise_type in _registered(name).official_for:
            return name
    raise ConfigError(f"no official noise draw is known for {noise_type!r} noise; official "
                      f"draws exist for {', '.join(sorted(_official_types()))}")


def _official_types() -> set[str]:
    return {t for name in NOISE_DRAWS.names() for t in _registered(name).official_for}


@_draw("suite", noise_types=None)
def suite_draw(clean_labels, *, noise_type, num_classes, rate, seed, dataset, variant=None,
               features=None, human_labels=None) -> NoiseDraw:
    """The suite's samplers (the noise models) on numpy.random.default_rng(noise_seed)."""
    kwargs = dict(num_classes=num_classes, rate=rate, rng=np.random.default_rng(seed),
                  dataset=dataset, variant=variant, features=features)
    if noise_type == "human":
        kwargs["human_labels"] = human_labels
    return NOISE_MODELS.get(noise_type)(np.asarray(clean_labels, dtype=np.int64), **kwargs)


def _noisify_matrix(noise_type: str, num_classes: int, rate: float, dataset: str) -> np.ndarray:
    if noise_type == "symmetric":
        return symmetric_matrix(num_classes, rate)
    if noise_type == "pairflip":
        return pairflip_matrix(num_classes, rate)
    return class_map_matrix(num_classes, rate, asymmetric_map(dataset, num_classes))


@_draw("noisify", noise_types={"symmetric": None, "pairflip": None,
                               "asymmetric": ("mnist", "cifar10", "cifar100")},
       official_for=("symmetric", "pairflip", "asymmetric"), official_seed=0)
def noisify_draw(clean_labels, *, noise_type, num_classes, rate, seed, dataset,
                 **_unused) -> NoiseDraw:
    """Co-teaching / Co-teaching+ / JoCoR data/utils.py noisify: RandomState(seed) multinomials.

    The official ``multiclass_noisify`` makes one ``RandomState(random_state)`` and, for every
    training sample in dataset order, takes ``multinomial(1, P[y], 1)`` from the row of its
    true class; the noisy label is the class drawn. The matrices are built as the official
    ``noisify_pairflip``, ``noisify_multiclass_symmetric`` (true class excluded) and JoCoR's
    ``noisify_mnist_asymmetric``, ``noisify_cifar10_asymmetric``, ``noisify_cifar100_asymmetric``
    (blocks of five consecutive indices) build them, entry for entry, since the legacy sampler's
    draws depend on the exact row values. At rate 0 the official code draws nothing.

    The seed: Co-teaching and Co-teaching+ pass ``random_state=0`` whatever they are given;
    JoCoR passes the dataset's ``random_state``, 0 unless the code is edited. ``--seed`` never
    changes the labels. Only JoCoR's ``data/utils.py`` has the asymmetric maps. The dataset
    order is the files' own (MNIST's idx files, CIFAR-10's data_batch_1..5, CIFAR-100's train),
    which is the order ``bench.data`` loads them in.
    """
    rate = _check_rate(rate, noise_type)
    if not 0 <= int(seed) < 2 ** 32:
        raise ConfigError(f"the noisify draw needs a noise seed in [0, 2**32), got {seed}")
    matrix = _noisify_matrix(noise_type, num_classes, rate, dataset)
    clean = np.asarray(clean_labels, dtype=np.int64)
    if rate == 0.0:
        return NoiseDraw(clean.copy(), matrix)
    flipper = np.random.RandomState(int(seed))
    noisy = np.fromiter((flipper.multinomial(1, matrix[c], 1)[0].argmax() for c in clean),
                        dtype=np.int64, count=len(clean))
    return NoiseDraw(noisy, matrix)


@_draw("dividemix", noise_types={"symmetric_inclusive": None, "asymmetric": ("cifar10",)},
       official_for=("symmetric_inclusive",), official_seed=123)
def dividemix_draw(clean_labels, *, noise_type, num_classes, rate, seed, dataset,
                   **_unused) -> NoiseDraw:
    """DivideMix dataloader_cifar.py: Python's random after random.seed(seed) (123 by default).

    The official code shuffles ``list(range(N))`` with ``random.shuffle``, takes the first
    ``int(r * N)`` indices, then walks the samples in index order (not in shuffled order):
    a chosen sample gets ``random.randint(0, K - 1)`` under ``sym`` (the true class included)
    or its class's image under the ``asym`` transition (9->1, 2->0, 4->7, 3<->5; no further
    draw). ``Train_cifar.py`` calls ``random.seed(args.seed)`` first and nothing else draws from
    ``random`` before the first dataset is built (``loader.run('eval_train')`` at epoch 0), so
    the labels are fixed by ``--seed`` alone, 123 by default; a seed given on the command line
    arrives as a string (no ``type=int``) and ``random.seed('1')`` differs from ``seed(1)``: the
    suite takes integer seeds only. The labels are then cached in ``<data_path>/<r>_<mode>.json``
    and every later run reuses that file whatever its seed, so the draw is that of the first
    run on a machine (the authors' files were never shared).
    """
    rate = _check_rate(rate, noise_type)
    clean = np.asarray(clean_labels, dtype=np.int64)
    rng = random.Random(seed)   # the same stream as the module's random.seed(seed)
    order = list(range(len(clean)))
    rng.shuffle(order)
    chosen = np.zeros(len(clean), dtype=bool)
    chosen[order[: int(rate * len(clean))]] = True
    noisy = clean.copy()
    if noise_type == "symmetric_inclusive":
        noisy[chosen] = [rng.randint(0, num_classes - 1) for _ in range(int(chosen.sum()))]
        return NoiseDraw(noisy, symmetric_inclusive_matrix(num_classes, rate))
    mapping = asymmetric_map(dataset, num_classes)
    image = np.arange(num_classes)
    image[list(mapping)] = list(mapping.values())
    noisy[chosen] = image[clean[chosen]]
    return NoiseDraw(noisy, class_map_matrix(num_classes, rate, mapping))


def apply_noise(noise_type: str, clean_labels: np.ndarray, *, num_classes: int,
                rate: float | None, noise_seed: int, dataset: str, variant: str | None = None,
                features: np.ndarray | None = None, human_labels: np.ndarray | None = None,
                draw: str = "suite") -> NoiseDraw:
    """Draw the noisy labels of a run from its (noise type, rate, noise draw, noise seed)."""
    check_draw(draw, noise_type, dataset)
    return _registered(draw)(
        clean_labels, noise_type=noise_type, num_classes=num_classes, rate=rate,
        seed=noise_seed, dataset=dataset, variant=variant, features=features,
        human_labels=human_labels)
