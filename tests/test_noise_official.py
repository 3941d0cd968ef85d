"""The official draws give the official codes' labels, sample by sample.

The references below are transliterations of the official functions, kept as close to them as
the tests allow (shapes, call order, the matrices built entry by entry):

* hongxin001/JoCoR data/utils.py at 86db359 (``multiclass_noisify``, ``noisify_pairflip``,
  ``noisify_multiclass_symmetric``, ``noisify_*_asymmetric``, ``build_for_cifar100``); the
  symmetric and pair-flip routines are the same in bhanML/Co-teaching and
  xingruiyu/coteaching_plus, whose ``noisify`` forces ``random_state=0``. The labels enter as
  an (N, 1) array, as the datasets' ``np.asarray([[label] ...])`` makes them.
* LiJunnan1992/DivideMix dataloader_cifar.py at d9d3058 (the noise injection of
  ``cifar_dataset.__init__``, with N in place of its hard-coded 50000), after the
  ``random.seed(args.seed)`` of Train_cifar.py.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from bench.errors import ConfigError
from bench.noise import apply_noise, check_draw, resolve_draw, realised_noise_rate
from bench.registry import NOISE_DRAWS

N = 1000
RATES = (0.2, 0.45, 0.5, 0.8)
SEEDS = (0, 1, 7, 123)


# ---- transliterations of the official functions ----------------------------------------------

def ref_multiclass_noisify(y, P, random_state=0):
    assert P.shape[0] == P.shape[1]
    assert np.max(y) < P.shape[0]
    m = y.shape[0]
    new_y = y.copy()
    flipper = np.random.RandomState(random_state)
    for idx in np.arange(m):
        i = y[idx]
        flipped = flipper.multinomial(1, P[i, :][0], 1)[0]
        new_y[idx] = np.where(flipped == 1)[0]
    return new_y


def ref_pairflip_matrix(n, nb_classes):
    P = np.eye(nb_classes)
    P[0, 0], P[0, 1] = 1. - n, n
    for i in range(1, nb_classes - 1):
        P[i, i], P[i, i + 1] = 1. - n, n
    P[nb_classes - 1, nb_classes - 1], P[nb_classes - 1, 0] = 1. - n, n
    return P


def ref_symmetric_matrix(n, nb_classes):
    P = np.ones((nb_classes, nb_classes))
    P = (n / (nb_classes - 1)) * P
    P[0, 0] = 1. - n
    for i in range(1, nb_classes - 1):
        P[i, i] = 1. - n
    P[nb_classes - 1, nb_classes - 1] = 1. - n
    return P


# noisify_mnist_asymmetric and noisify_cifar10_asymmetric set P[src, src], P[src, dst] =
# 1 - n, n for these pairs, in this order, one line each
REF_ASYMMETRIC_PAIRS = {"mnist": [(7, 1), (2, 7), (5, 6), (6, 5), (3, 8)],
                        "cifar10": [(9, 1), (2, 0), (3, 5), (5, 3), (4, 7)]}


def ref_pairs_matrix(n, pairs):
    P = np.eye(10)
    for src, dst in pairs:
        P[src, src], P[src, dst] = 1. - n, n
    return P


def ref_build_for_cifar100(size, noise):
    P = (1. - noise) * np.eye(size)
    for i in np.arange(size - 1):
        P[i, i + 1] = noise
    P[size - 1, 0] = noise
    return P


def ref_cifar100_asymmetric_matrix(n):
    P = np.eye(100)
    for i in np.arange(20):
        init, end = i * 5, (i + 1) * 5
        P[init:end, init:end] = ref_build_for_cifar100(5, n)
    return P


def ref_noisify(dataset, nb_classes, train_labels, noise_type, noise_rate, random_state):
    """JoCoR's ``noisify`` with the matrix of each routine; returns the flat noisy labels."""
    if noise_type == "pairflip":
        P = ref_pairflip_matrix(noise_rate, nb_classes)
    elif noise_type == "symmetric":
        P = ref_symmetric_matrix(noise_rate, nb_classes)
    else:
        P = (ref_cifar100_asymmetric_matrix(noise_rate) if dataset == "cifar100" else
             ref_pairs_matrix(noise_rate, REF_ASYMMETRIC_PAIRS[dataset]))
    y = np.asarray([[label] for label in train_labels])
    noisy = ref_multiclass_noisify(y, P=P, random_state=random_state)
    return np.array([i[0] for i in noisy])


DIVIDEMIX_TRANSITION = {0: 0, 2: 0, 4: 7, 7: 7, 1: 1, 9: 1, 3: 5, 5: 3, 6: 6, 8: 8}


def ref_dividemix(train_label, r, noise_mode, num_classes, seed):
    random.seed(seed)                        # Train_cifar.py, before the datasets are built
    n = len(train_label)
    noise_label = []
    idx = list(range(n))
    random.shuffle(idx)
    num_noise = int(r * n)
    noise_idx = idx[:num_noise]
    for i in range(n):
        if i in noise_idx:
            if noise_mode == "sym":
                noiselabel = random.randint(0, num_classes - 1)
                noise_label.append(noiselabel)
            elif noise_mode == "asym":
                noiselabel = DIVIDEMIX_TRANSITION[train_label[i]]
                noise_label.append(noiselabel)
        else:
            noise_label.append(train_label[i])
    return np.array(noise_label)


# ---- the tests -----------------------------------------------------------------------------

def labels(num_classes: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, num_classes, N).astype(np.int64)


NOISIFY_CASES = [("symmetric", "mnist", 10), ("symmetric", "cifar100", 100),
                 ("pairflip", "mnist", 10), ("pairflip", "cifar100", 100),
                 ("asymmetric", "mnist", 10), ("asymmetric", "cifar10", 10),
                 ("asymmetric", "cifar100", 100)]


@pytest.mark.parametrize("noise_type,dataset,num_classes", NOISIFY_CASES)
@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("seed", SEEDS)
def test_noisify_draw_equals_the_official_labels(noise_type, dataset, num_classes, rate, seed):
    clean = labels(num_classes)
    ours = apply_noise(noise_type, clean, num_classes=num_classes, rate=rate, noise_seed=seed,
                       dataset=dataset, draw="noisify").noisy_labels
    official = ref_noisify(dataset, num_classes, clean.tolist(), noise_type, rate, seed)
    assert np.array_equal(ours, official)
    assert 0 < realised_noise_rate(clean, ours) < 1


@pytest.mark.parametrize("dataset,num_classes", [("cifar10", 10), ("cifar100", 100)])
@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("seed", SEEDS)
def test_dividemix_sym_draw_equals_the_official_labels(dataset, num_classes, rate, seed):
    clean = labels(num_classes)
    ours = apply_noise("symmetric_inclusive", clean, num_classes=num_classes, rate=rate,
                       noise_seed=seed, dataset=dataset, draw="dividemix").noisy_labels
    assert np.array_equal(ours, ref_dividemix(clean.tolist(), rate, "sym", num_classes, seed))


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("seed", SEEDS)
def test_dividemix_asym_draw_equals_the_official_labels(rate, seed):
    clean = labels(10)
    ours = apply_noise("asymmetric", clean, num_classes=10, rate=rate, noise_seed=seed,
                       dataset="cifar10", draw="dividemix").noisy_labels
    assert np.array_equal(ours, ref_dividemix(clean.tolist(), rate, "asym", 10, seed))


def test_the_draws_differ_from_each_other_and_from_the_suite() -> None:
    """Same distribution, other labels: the draw is a variance source of its own."""
    clean = labels(10)
    kw = dict(num_classes=10, rate=0.5, dataset="mnist")
    suite = apply_noise("symmetric", clean, noise_seed=0, **kw).noisy_labels
    official = apply_noise("symmetric", clean, noise_seed=0, draw="noisify", **kw).noisy_labels
    other_seed = apply_noise("symmetric", clean, noise_seed=1, draw="noisify", **kw).noisy_labels
    assert (suite != official).mean() > 0.3 and (official != other_seed).mean() > 0.3


def test_zero_rate_keeps_the_labels() -> None:
    clean = labels(10)
    for draw, ntype in (("noisify", "symmetric"), ("dividemix", "symmetric_inclusive")):
        out = apply_noise(ntype, clean, num_classes=10, rate=0.0, noise_seed=0,
                          dataset="cifar10", draw=draw)
        assert np.array_equal(out.noisy_labels, clean)


def test_nominal_matrices_are_the_noise_models() -> None:
    clean = labels(10)
    for draw, ntype in (("noisify", "asymmetric"), ("dividemix", "asymmetric")):
        suite = apply_noise(ntype, clean, num_classes=10, rate=0.4, noise_seed=0,
                            dataset="cifar10")
        out = apply_noise(ntype, clean, num_classes=10, rate=0.4, noise_seed=0,
                          dataset="cifar10", draw=draw)
        assert np.array_equal(out.nominal_transition_matrix, suite.nominal_transition_matrix)


def test_official_resolves_per_noise_type() -> None:
    assert resolve_draw("official", "symmetric") == "noisify"
    assert resolve_draw("official", "pairflip") == "noisify"
    assert resolve_draw("official", "asymmetric") == "noisify"
    assert resolve_draw("official", "symmetric_inclusive") == "dividemix"
    assert resolve_draw("dividemix", "asymmetric") == "dividemix"
    with pytest.raises(ConfigError, match="no official noise draw"):
        resolve_draw("official", "instance")
    with pytest.raises(Exception, match="unknown noise draw"):
        resolve_draw("mine", "symmetric")


@pytest.mark.parametrize("draw,noise_type,dataset,message", [
    ("noisify", "symmetric_inclusive", "cifar10", "has no 'symmetric_inclusive'"),
    ("noisify", "asymmetric", "digits", "mnist, cifar10, cifar100 only"),
    ("dividemix", "asymmetric", "cifar100", "cifar10 only"),
    ("dividemix", "pairflip", "cifar10", "has no 'pairflip'"),
])
def test_undefined_settings_are_one_line_errors(draw, noise_type, dataset, message) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        check_draw(draw, noise_type, dataset)
    assert "\n" not in str(err.value)


def test_every_draw_is_listed_with_a_description() -> None:
    for name in NOISE_DRAWS.names():
        assert (NOISE_DRAWS.get(name).__doc__ or "").strip(), name
    assert {"suite", "noisify", "dividemix"} <= set(NOISE_DRAWS.names())


def test_a_run_trains_on_its_draw_and_records_it(make_spec) -> None:
    """engine.prepare draws with the spec's draw; the record's noise section names it."""
    import torch

    from bench import engine

    spec = make_spec(noise_type="symmetric", noise_rate=0.5, noise_seed=0, noise_draw="noisify")
    data, noisy, info = engine.prepare(spec, torch.device("cpu"))
    clean = data.train_labels
    official = ref_noisify("digits", 10, clean.tolist(), "symmetric", 0.5, 0)
    assert np.array_equal(noisy, official)
    assert info["noise_draw"] == "noisify"
    assert info["realised_noise_rate"] == realised_noise_rate(clean, official)
    suite = engine.prepare(make_spec(noise_type="symmetric", noise_rate=0.5, noise_seed=0),
                           torch.device("cpu"), data=data)
    assert suite[2]["noise_draw"] == "suite" and not np.array_equal(suite[1], noisy)
