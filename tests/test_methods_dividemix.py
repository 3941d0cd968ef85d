"""DivideMix, Deep Self-Learning and RSL: their rules on small hand-made inputs (the expected
values are worked out by hand or by a direct transcription of the definitions), plus a short
engine run of every method on the embedded digits data."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bench import engine
from bench.config import resolve_method_params
from bench.errors import ConfigError
from bench.store import validate_record
from methods.dividemix import DivideMix, DivideMixConfig, gmm_clean_probability
from methods.mixmatch import (cycling_batches, interleave, linear_rampup, mix_coefficient,
                              mixup, sharpen, soft_cross_entropy, softmax_mse)
from methods.rsl import class_noise_rates, select_per_class, selection_counts
from methods.rsl_wm import loss_weights
from methods.self_learning import (density, nearest_prototype_labels, select_prototypes,
                                   similarity_measure, similarity_threshold)

# ---------------------------------------------------------------------------- DivideMix


def test_gmm_gives_the_low_loss_mode_a_high_clean_probability() -> None:
    rng = np.random.default_rng(0)
    clean = rng.normal(0.1, 0.03, 300)
    noisy = rng.normal(0.8, 0.05, 100)
    loss = np.concatenate([clean, noisy]).astype(np.float32)
    prob = gmm_clean_probability(loss, random_state=0)
    assert prob.shape == (400,)
    assert prob[:300].min() > 0.9 and prob[300:].max() < 0.1
    labelled = prob > 0.5
    assert labelled.tolist() == [True] * 300 + [False] * 100
    # the same seed gives the same fit
    assert np.array_equal(prob, gmm_clean_probability(loss, random_state=0))


def _lambda_u(epoch: float, **cfg) -> float:
    return DivideMix.lambda_u_at(SimpleNamespace(config=DivideMixConfig(**cfg)), epoch)


def test_lambda_u_ramps_linearly_over_16_epochs_after_warm_up() -> None:
    assert _lambda_u(9, warm_up=10, lambda_u=25) == 0.0
    assert _lambda_u(10, warm_up=10, lambda_u=25) == 0.0
    assert _lambda_u(10 + 100 / 200, warm_up=10, lambda_u=25) == pytest.approx(25 * 0.5 / 16)
    assert _lambda_u(18, warm_up=10, lambda_u=25) == pytest.approx(12.5)
    assert _lambda_u(26, warm_up=10, lambda_u=25) == 25.0
    assert _lambda_u(300, warm_up=30, lambda_u=150) == 150.0
    assert linear_rampup(3.0, length=0) == 1.0


@pytest.mark.parametrize("dataset, noise_type, rate, expected", [
    ("cifar10", "symmetric_inclusive", 0.2, dict(lambda_u=0.0, p_threshold=0.5, warm_up=10,
                                                 loss_history=1, confidence_penalty=False)),
    ("cifar10", "symmetric_inclusive", 0.5, dict(lambda_u=25.0, p_threshold=0.5)),
    ("cifar10", "symmetric_inclusive", 0.8, dict(lambda_u=25.0, p_threshold=0.5)),
    ("cifar10", "symmetric_inclusive", 0.9, dict(lambda_u=50.0, p_threshold=0.6,
                                                 loss_history=5)),
    ("cifar10", "asymmetric", 0.4, dict(lambda_u=0.0, confidence_penalty=True, loss_history=1)),
    ("cifar100", "symmetric_inclusive", 0.2, dict(lambda_u=25.0, warm_up=30)),
    ("cifar100", "symmetric_inclusive", 0.5, dict(lambda_u=150.0, warm_up=30)),
    ("cifar100", "symmetric_inclusive", 0.9, dict(lambda_u=150.0, p_threshold=0.6,
                                                  loss_history=5)),
    ("cifar10n", "human", None, dict(lambda_u=25.0, warm_up=10, p_threshold=0.5,
                                     confidence_penalty=False)),
    ("cifar10", "symmetric", 0.2, dict(lambda_u=25.0)),   # not DivideMix's sym: code default
])
def test_dividemix_setting_defaults(dataset, noise_type, rate, expected) -> None:
    params = resolve_method_params("dividemix", {}, dataset=dataset, noise_type=noise_type,
                                   noise_rate=rate)
    for key, value in expected.items():
        assert params[key] == value, key


def test_grid_values_override_the_setting_defaults() -> None:
    params = resolve_method_params("dividemix", {"lambda_u": 7.0}, dataset="cifar10",
                                   noise_type="symmetric_inclusive", noise_rate=0.2)
    assert params["lambda_u"] == 7.0


# ---------------------------------------------------------------------------- MixMatch pieces


def test_sharpening_by_hand() -> None:
    out = sharpen(torch.tensor([[0.6, 0.4], [0.5, 0.5]]), temperature=0.5)
    # 0.36 / (0.36 + 0.16), 0.16 / 0.52
    assert out[0].tolist() == pytest.approx([0.6923077, 0.3076923], abs=1e-6)
    assert out[1].tolist() == pytest.approx([0.5, 0.5])


def test_mix_coefficient_is_the_larger_of_lambda_and_one_minus_lambda() -> None:
    draws = np.random.default_rng(3).beta(4.0, 4.0, 50)
    rng = np.random.default_rng(3)
    got = [mix_coefficient(rng, alpha=4.0) for _ in range(50)]
    assert got == pytest.approx(np.maximum(draws, 1 - draws).tolist())
    assert min(got) >= 0.5


def test_mixup_mixes_inputs_and_targets_with_the_same_permutation() -> None:
    x = torch.arange(8.0).reshape(4, 2)
    t = torch.eye(4)
    perm = torch.tensor([2, 0, 3, 1])
    mx, mt = mixup(x, t, lam=0.75, perm=perm)
    assert mx[0].tolist() == pytest.approx((0.75 * x[0] + 0.25 * x[2]).tolist())
    assert mt[0].tolist() == pytest.approx([0.75, 0.0, 0.25, 0.0])
    assert mt[3].tolist() == pytest.approx([0.0, 0.25, 0.0, 0.75])
    assert torch.allclose(mt.sum(1), torch.ones(4))


def test_mixmatch_losses_by_hand() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.5], [0.9, 0.1]]))
    targets = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    expected_x = -(math.log(0.5) + 0.5 * math.log(0.9) + 0.5 * math.log(0.1)) / 2
    assert float(soft_cross_entropy(logits, targets)) == pytest.approx(expected_x, rel=1e-5)
    # mean over batch AND classes: (0.25 + 0.25 + 0.16 + 0.16) / 4
    assert float(softmax_mse(logits, targets)) == pytest.approx(0.205, rel=1e-5)


def test_interleave_swaps_groups_and_is_its_own_inverse() -> None:
    chunks = [torch.full((64, 1), float(i)) for i in range(3)]
    mixed = interleave(chunks, 64)
    # group sizes 21, 21, 22: chunk 0 takes group 1 from chunk 1 and group 2 from chunk 2
    assert mixed[0][:21].eq(0).all() and mixed[0][21:42].eq(1).all() and mixed[0][42:].eq(2).all()
    assert mixed[1][21:42].eq(0).all() and mixed[2][42:].eq(0).all()
    back = interleave(mixed, 64)
    assert all(torch.equal(a, b) for a, b in zip(back, chunks))


def test_cycling_batches_cover_the_pool_and_restart() -> None:
    pool = torch.arange(10, 20)
    gen = torch.Generator().manual_seed(0)
    batches = cycling_batches(pool, 4, generator=gen)
    first_pass = [next(batches) for _ in range(3)]
    assert [len(b) for b in first_pass] == [4, 4, 2]          # the last partial batch is kept
    assert sorted(torch.cat(first_pass).tolist()) == list(range(10, 20))
    dropped = cycling_batches(pool, 4, generator=gen, drop_last=True)
    assert [len(next(dropped)) for _ in range(3)] == [4, 4, 4]
    weights = torch.tensor([0.0] * 9 + [1.0])
    weighted = cycling_batches(pool, 5, generator=gen, weights=weights)
    assert next(weighted).tolist() == [19] * 5                # drawn with replacement
    with pytest.raises(ValueError):
        next(cycling_batches(pool[:3], 4, generator=gen, drop_last=True))


# ---------------------------------------------------------------------------- Deep Self-Learning

# pairs i < j sorted: .1 .2 .3 .4 .5 .6 .7 .85 .9 .96
SIM = torch.tensor([[1.0, 0.9, 0.85, 0.7, 0.2],
                    [0.9, 1.0, 0.6, 0.3, 0.1],
                    [0.85, 0.6, 1.0, 0.5, 0.4],
                    [0.7, 0.3, 0.5, 1.0, 0.96],
                    [0.2, 0.1, 0.4, 0.96, 1.0]])


def test_similarity_threshold_readings() -> None:
    # top40: 4 of the 10 pairs exceed it: 60th percentile, 0.6 + 0.4 * (0.7 - 0.6)
    assert float(similarity_threshold(SIM, reading="top40")) == pytest.approx(0.64)
    assert float(similarity_threshold(SIM, reading="p40")) == pytest.approx(0.46)  # 0.4 + .6*.1
    pairs = SIM[torch.triu_indices(5, 5, 1).unbind()].numpy()
    assert float(similarity_threshold(SIM)) == pytest.approx(np.percentile(pairs, 60))


def test_density_and_eta_top40() -> None:
    rho = density(SIM, similarity_threshold(SIM, reading="top40"))
    assert rho.tolist() == [3, -1, -1, 1, -1]
    eta = similarity_measure(SIM, rho)
    # 0 is densest: min of its row; 3: nearest denser is 0; 1, 2, 4: max over {0, 3}
    assert eta.tolist() == pytest.approx([0.2, 0.9, 0.85, 0.7, 0.96])
    assert select_prototypes(SIM, num_prototypes=2).tolist() == [0, 3]
    # sample 4 is a near-duplicate (eta 0.96 >= 0.95) of the denser sample 3: never chosen
    assert select_prototypes(SIM, num_prototypes=5).tolist() == [0, 3, 1, 2]


def test_density_and_eta_p40() -> None:
    rho = density(SIM, similarity_threshold(SIM, reading="p40"))
    assert rho.tolist() == [3, 1, 3, 3, -1]
    eta = similarity_measure(SIM, rho)
    # 0, 2, 3 tie for the highest density: each gets the minimum of its row
    assert eta.tolist() == pytest.approx([0.2, 0.9, 0.4, 0.3, 0.96])
    assert select_prototypes(SIM, num_prototypes=2, reading="p40").tolist() == [0, 2]
    assert select_prototypes(SIM, num_prototypes=3, reading="p40").tolist() == [0, 2, 3]


def test_corrected_label_is_the_class_of_the_most_similar_prototypes() -> None:
    protos = torch.tensor([[[1.0, 0.0], [0.8, 0.6]],            # class 0
                           [[0.0, 1.0], [0.0, 0.0]]])           # class 1, one prototype
    valid = torch.tensor([[True, True], [True, False]])
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    # sample 2: class 0 mean (0.6 + 0.96) / 2 = 0.78 < class 1: 0.8
    assert nearest_prototype_labels(feats, protos, valid).tolist() == [0, 1, 1]


# ---------------------------------------------------------------------------- RSL


def test_class_noise_rates_as_the_code() -> None:
    kw = dict(num_classes=10, dataset="cifar10")
    sym = class_noise_rates(noise_type="symmetric_inclusive", noise_rate=0.5, **kw)
    assert sym == pytest.approx([0.45] * 10)                        # 0.9 r
    sym100 = class_noise_rates(noise_type="symmetric_inclusive", noise_rate=0.4,
                               num_classes=100, dataset="cifar100")
    assert sym100 == pytest.approx([0.396] * 100)                   # 0.99 r
    assert class_noise_rates(noise_type="pairflip", noise_rate=0.3, **kw) == pytest.approx(
        [0.3] * 10)
    r = 0.4  # main.py each_class_noise_rate for Structured_CIFAR10
    expected = [r / (1 + r), r / (1 + r), 0, r, 0, r, 0, r / (1 + r), 0, 0]
    assert class_noise_rates(noise_type="asymmetric", noise_rate=r, **kw) == pytest.approx(
        expected)
    assert class_noise_rates(noise_type="human", noise_rate=None, assumed=0.1,
                             **kw) == pytest.approx([0.1] * 10)
    with pytest.raises(ConfigError):
        class_noise_rates(noise_type="human", noise_rate=None, **kw)


def test_selection_counts_formula() -> None:
    # eta 0.45, beta 0.2: max(1 - 1.2 * 0.45, 0.8 * 0.55) = max(0.46, 0.44)
    counts = selection_counts(np.full(10, 0.45), np.full(10, 5000), beta=0.2, n_per_class=4500)
    assert counts.tolist() == [int(4500 * max(1 - (1 + 0.2) * 0.45, (1 - 0.2) * (1 - 0.45)))] * 10
    # eta 0.8: max(0.04, 0.16): the second term wins at high noise; int() truncates the
    # float product 450 * 0.15999999999999998 to 71, as the code's int(450 * x) does
    assert selection_counts(np.array([0.8]), np.array([10]), beta=0.2,
                            n_per_class=450).tolist() == [int(450 * (1 - 0.2) * (1 - 0.8))] == [71]
    # class balance (main.py class_balance_num, gamma_index 1), two classes, eta (0, 0.5):
    # prop (1.0, 0.4), available (100, 40), z (200, 80), gamma (1 + 2.5) / 2 = 1.75,
    # num = min(1.75 * 80 * 0.5, available) = (70, 40)
    balanced = selection_counts(np.array([0.0, 0.5]), np.array([100, 100]), beta=0.2,
                                n_per_class=100, class_balance=True, gamma_index=1)
    assert balanced.tolist() == [70, 40]


def test_select_per_class_keeps_the_smallest_mean_losses_of_each_class() -> None:
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 1, 2])
    loss = torch.tensor([0.5, 0.9, 0.1, 0.2, 0.3, 0.05, 0.7, 3.0])
    mask = select_per_class(loss, labels, torch.tensor([2, 3, 0]))
    # class 0: 0.1 (2), 0.3 (4); class 1: 0.05 (5), 0.2 (3), 0.7 (6); class 2: none
    assert torch.nonzero(mask).flatten().tolist() == [2, 3, 4, 5, 6]


def test_loss_weights_span_0_7_to_1_per_class() -> None:
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    loss = torch.tensor([1.0, 2.0, 3.0, 0.5, 0.7, 4.0])
    w = loss_weights(loss, labels, kappa=-math.log(0.7), num_classes=3)
    assert w.tolist() == pytest.approx([1.0, math.sqrt(0.7), 0.7, 1.0, 0.7, 1.0])


# ---------------------------------------------------------------------------- engine runs

SMALL = {
    "dividemix": {"warm_up": 1},
    "self_learning": {"num_samples": 64, "num_prototypes": 2},
    "rsl": {"sel_epoch": 1, "retrain_epochs": 2},
    "rsl_wm": {"sel_epoch": 1, "mixmatch_epochs": 2, "iterations": 4, "batch_size": 32},
}


@pytest.mark.parametrize("method", sorted(SMALL))
def test_method_runs_on_digits(method, make_spec) -> None:
    spec = make_spec(method=method, method_params=SMALL[method], noise_type="symmetric_inclusive",
                     noise_rate=0.4, train={"epochs": 2, "batch_size": 64,
                                            "max_iters_per_epoch": 8})
    record = engine.run(spec, device="cpu")
    assert record["status"] == "ok", record["error"]
    assert validate_record(record) == []
    m = record["metrics"]
    assert m["epoch"] == [0, 1]
    if method == "dividemix":
        assert set(m["test_acc_networks"]) == {"net1", "net2", "ensemble"}
        assert m["test_acc"] == m["test_acc_networks"]["ensemble"]
        assert m["selected_count"][0] is None and m["selected_count"][1] > 0
        assert m["extra"]["labelled_fraction"][1] == pytest.approx(
            m["selected_count"][1] / 1347)
        assert m["extra"]["lambda_u"] == [0.0, 0.0]      # the ramp starts at warm-up's end
    elif method == "self_learning":
        assert m["selected_count"] == [None, None]
        assert m["extra"]["corrected_label_agreement"][0] is None
        assert 0.0 <= m["extra"]["corrected_label_agreement"][1] <= 1.0
        assert 0.0 <= m["extra"]["corrected_label_acc"][1] <= 100.0
    else:
        assert m["extra"]["phase"][0] == 1.0 and m["extra"]["phase"][1] in (3.0, 4.0)
        assert m["selected_count"][0] == m["selected_count"][1] > 0


@pytest.mark.parametrize("method", sorted(SMALL))
def test_method_resumes_from_a_checkpoint(method, make_spec, tmp_path) -> None:
    spec = make_spec(method=method, method_params=SMALL[method],
                     train={"epochs": 3, "batch_size": 64, "max_iters_per_epoch": 4})
    full = engine.run(spec, device="cpu")
    assert full["status"] == "ok", full["error"]
    engine.run(spec, device="cpu", checkpoint_dir=tmp_path, checkpoint_every=1,
               stop_after_epoch=1)
    resumed = engine.run(spec, device="cpu", checkpoint_dir=tmp_path)
    for key in ("test_acc", "train_loss", "selected_count", "extra"):
        assert resumed["metrics"][key] == full["metrics"][key], key


def test_rsl_refuses_more_epochs_than_its_two_steps(make_spec) -> None:
    spec = make_spec(method="rsl", method_params={"sel_epoch": 1, "retrain_epochs": 1},
                     train={"epochs": 3})
    with pytest.raises(ConfigError):
        engine.run(spec, device="cpu")
