"""Noise draws: how one sample of a run's noisy labels is taken, and :func:`apply_noise`.

The noise models themselves (transition matrices, samplers, ``NOISE_MODELS``) are in
:mod:`bench.noise_models`, re-exported here. A noise draw (``NOISE_DRAWS``) fixes how one sample
of the noisy labels is taken. ``suite`` (the default) runs the models on
``numpy.random.default_rng(noise_seed)``, so the same (dataset, noise, noise draw, noise seed)
gives every method the same noisy labels and runs pair across methods. ``noisify`` and
``dividemix`` reproduce, sample by sample, the labels that the official codes draw (see their
docstrings), so that a run can train on the very labels a paper's code produced; ``official`` in
a grid names the draw of the official code of that noise type (a draw's ``official_for``).
"""

from __future__ import annotations

import functools
import random
from typing import Any, Callable, Mapping, SupportsInt

import numpy as np

from bench.errors import ConfigError
from bench.noise_models import (  # noqa: F401  (re-exported: the models are part of this API)
    MNIST_ASYMMETRIC,
    CIFAR10_ASYMMETRIC,
    CIFAR100_COARSE,
    NoiseDraw,
    realised_transition_matrix,
    realised_noise_rate,
    sample_from_matrix,
    symmetric_matrix,
    symmetric_inclusive_matrix,
    pairflip_matrix,
    check_rate,
    class_map_matrix,
    cifar100_block_map,
    cifar100_superclass_map,
    asymmetric_map,
    no_noise,
    symmetric,
    symmetric_inclusive,
    pairflip,
    asymmetric,
    asymmetric_superclass,
    instance,
    human,
)
from bench.registry import NOISE_DRAWS, NOISE_MODELS


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
    rate = check_rate(rate, noise_type)
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
    rate = check_rate(rate, noise_type)
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
