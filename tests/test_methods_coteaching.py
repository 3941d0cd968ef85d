"""The Co-teaching family: schedules, losses and selections on hand-built tensors, checked
against the official codes' formulas (re-derived here independently of the implementation),
plus a short engine run of every method on the embedded digits data."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench import engine
from bench.config import resolve_method_params
from bench.errors import ConfigError
from bench.store import validate_record
from methods.coteaching import Coteaching
from methods.coteaching_plus import coteaching_plus_losses
from methods.decoupling import decoupling_losses
from methods.f_correction import estimate_transition_matrix, forward_corrected_loss
from methods.jocor import JoCoR, jocor_joint_loss, jocor_loss, kl_per_sample
from methods.mentornet import self_paced_loss
from methods.small_loss import (coteaching_losses, forget_rate_schedule, num_remember,
                                resolve_forget_rate, small_loss_mask)

METHODS = ["coteaching", "coteaching_plus", "decoupling", "f_correction", "jocor", "mentornet"]


# ---------------------------------------------------------------------------- the schedule


def test_rate_schedule_matches_official_linspace() -> None:
    s = forget_rate_schedule(200, 0.5, num_gradual=10)
    assert s.shape == (200,)
    assert s[0] == 0.0
    assert s[1] == pytest.approx(0.5 / 9)            # the first trained epoch (start_epoch 1)
    assert s[5] == pytest.approx(5 * 0.5 / 9)
    assert s[9] == pytest.approx(0.5) and s[10] == 0.5 and s[199] == 0.5
    assert np.array_equal(s[:10], np.linspace(0, 0.5, 10))


def test_exponent_raises_the_rate_not_the_epoch() -> None:
    s = forget_rate_schedule(200, 0.5, num_gradual=10, exponent=2)
    assert s[9] == pytest.approx(0.25) and s[10] == 0.5   # the code's jump after the ramp


def test_short_runs_truncate_the_ramp() -> None:
    assert np.allclose(forget_rate_schedule(3, 0.45), [0.0, 0.05, 0.1])


def test_num_remember_is_the_codes_int() -> None:
    assert num_remember(0.2, 128) == 102          # int(102.4)
    assert num_remember(0.5 / 9, 128) == 120      # int(120.89)
    assert num_remember(0.0, 128) == 128
    # a last batch of one sample keeps it (the official loaders drop such a batch)
    assert num_remember(0.5, 1) == 1 and num_remember(0.8, 3) == 1 and num_remember(0.5, 0) == 0


def test_forget_rate_defaults() -> None:
    assert resolve_forget_rate(None, noise_type="symmetric", noise_rate=0.5) == 0.5
    assert resolve_forget_rate(None, noise_type="asymmetric", noise_rate=0.4) == 0.4
    assert resolve_forget_rate(None, noise_type="asymmetric", noise_rate=0.4,
                               halve_asymmetric=True) == 0.2
    assert resolve_forget_rate(0.3, noise_type="asymmetric", noise_rate=0.4,
                               halve_asymmetric=True) == 0.3
    assert resolve_forget_rate(None, noise_type="none", noise_rate=None) == 0.0


def test_small_loss_mask_keeps_the_smallest() -> None:
    loss = torch.tensor([0.9, 0.1, 0.5, 0.05, 2.0])
    assert small_loss_mask(loss, 2).tolist() == [False, True, False, True, False]


# ---------------------------------------------------------------------------- Co-teaching


def test_coteaching_cross_update_and_official_normalisation() -> None:
    torch.manual_seed(0)
    logits1 = torch.randn(8, 3, requires_grad=True)
    logits2 = torch.randn(8, 3, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    loss1, loss2, pick1, pick2 = coteaching_losses(logits1, logits2, y, num_remember=5)
    ce1 = F.cross_entropy(logits1, y, reduction="none").detach()
    ce2 = F.cross_entropy(logits2, y, reduction="none").detach()
    assert set(pick1.tolist()) == set(np.argsort(ce1.numpy())[:5].tolist())
    assert set(pick2.tolist()) == set(np.argsort(ce2.numpy())[:5].tolist())
    # loss.py: F.cross_entropy(y_1[ind_2_update], ...) summed and divided by num_remember
    assert float(loss1.detach()) == pytest.approx(float(ce1[pick2].mean()) / 5)
    assert float(loss2.detach()) == pytest.approx(float(ce2[pick1].mean()) / 5)
    loss1.backward()
    rows = set(torch.nonzero(logits1.grad.abs().sum(1)).flatten().tolist())
    assert rows == set(pick2.tolist())        # net1's gradient comes from net2's picks only
    plain, _, _, _ = coteaching_losses(logits1, logits2, y, num_remember=5,
                                       normalization="mean")
    assert float(plain.detach()) == pytest.approx(float(ce1[pick2].mean()))


class FakeContext:
    """Just enough of RunContext for one batch of one epoch with given networks."""

    def __init__(self, x, y, nets, *, noise_rate=0.5, noise_type="symmetric") -> None:
        self.device = torch.device("cpu")
        self.num_train, self.num_classes = len(y), 3
        self.epochs, self.start_epoch = 20, 1
        self.noise_type, self.noise_rate = noise_type, noise_rate
        self.x, self.y, self._nets = x, y, list(nets)

    def make_network(self):
        return self._nets.pop(0)

    def make_optimizer(self, params, *, lr=None):
        return torch.optim.SGD(params, lr=0.0)

    def train_batches(self, **_):
        yield self.x, self.y, torch.arange(len(self.y))

    def autocast(self):
        return contextlib.nullcontext()


def _linear_nets(n: int, batch: int, classes: int = 3):
    torch.manual_seed(1)
    return [nn.Linear(batch, classes, bias=False) for _ in range(n)]


def test_coteaching_net1_gradient_involves_only_net2_picks() -> None:
    # one-hot inputs: column j of a Linear weight only sees sample j
    batch = 10
    x, y = torch.eye(batch), torch.tensor([0, 1, 2] * 3 + [0])
    net1, net2 = _linear_nets(2, batch)
    ctx = FakeContext(x, y, [net1, net2])
    method = Coteaching(Coteaching.Config(), ctx)
    grads = []
    net1.weight.register_hook(lambda g: grads.append(g.clone()))
    epoch = 9                                  # forget rate 0.5 -> keep 5 of 10
    with torch.no_grad():
        ce2 = F.cross_entropy(net2(x), y, reduction="none")
        ce1 = F.cross_entropy(net1(x), y, reduction="none")
    result = method.train_epoch(epoch)
    picked_by_net2 = set(np.argsort(ce2.numpy())[:5].tolist())
    columns = set(torch.nonzero(grads[0].abs().sum(0)).flatten().tolist())
    assert columns == picked_by_net2
    assert set(torch.nonzero(result.selected).flatten().tolist()) == \
        set(np.argsort(ce1.numpy())[:5].tolist())          # the mask is net1's own picks
    assert result.extra["forget_rate"] == pytest.approx(0.5)


# ---------------------------------------------------------------------------- JoCoR


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_jocor_joint_loss_matches_the_formula() -> None:
    l1 = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.5]])
    l2 = np.array([[1.0, 1.0, 0.0], [0.0, 3.0, -2.0]])
    y = np.array([0, 1])
    p1, p2 = _softmax(l1), _softmax(l2)
    ce = -np.log(p1[[0, 1], y]) - np.log(p2[[0, 1], y])
    kl21 = (p2 * (np.log(p2) - np.log(p1))).sum(1)      # KL(p2 || p1)
    kl12 = (p1 * (np.log(p1) - np.log(p2))).sum(1)
    lam = 0.7
    expected = (1 - lam) * ce + lam * (kl21 + kl12)
    t1, t2, ty = torch.tensor(l1), torch.tensor(l2), torch.tensor(y)
    joint, ce_t = jocor_joint_loss(t1, t2, ty, co_lambda=lam)
    assert joint.numpy() == pytest.approx(expected)
    assert kl_per_sample(t1, t2).numpy() == pytest.approx(kl21)
    zero, _ = jocor_joint_loss(t1, t2, ty, co_lambda=0.0)
    assert zero.numpy() == pytest.approx(ce) and ce_t.numpy() == pytest.approx(ce)
    stable, _ = jocor_joint_loss(t1, t2, ty, co_lambda=lam, stable_kl=True)
    assert stable.numpy() == pytest.approx(expected)


def test_jocor_kl_is_not_detached() -> None:
    pred = torch.tensor([[1.0, 0.0]], requires_grad=True)
    target = torch.tensor([[0.0, 2.0]], requires_grad=True)
    kl_per_sample(pred, target).sum().backward()
    assert target.grad.abs().sum() > 0 and pred.grad.abs().sum() > 0


def test_jocor_official_kl_gradient_nans_where_stable_kl_does_not() -> None:
    for stable, finite in ((False, False), (True, True)):
        pred = torch.tensor([[0.0, 1.0, 0.0]], requires_grad=True)
        target = torch.tensor([[0.0, 200.0, 0.0]], requires_grad=True)  # softmax underflows
        kl_per_sample(pred, target, stable=stable).sum().backward()
        assert bool(torch.isfinite(target.grad).all()) is finite


def test_jocor_keeps_the_smallest_joint_losses() -> None:
    margins = torch.tensor([3.0, -1.0, 0.5, 5.0])
    logits = torch.stack([margins, torch.zeros(4)], 1)
    y = torch.zeros(4, dtype=torch.long)
    loss, pick = jocor_loss(logits, logits.clone(), y, co_lambda=0.9, num_remember=2)
    assert set(pick.tolist()) == {0, 3}
    ce = F.cross_entropy(logits, y, reduction="none")
    assert float(loss.detach()) == pytest.approx(float(0.1 * 2 * ce[[0, 3]].mean()), rel=1e-5)


def test_jocor_select_on_ce_ranks_without_the_kl() -> None:
    # sample 0: confident nets that disagree in confidence (small CE, large KL);
    # sample 1: two identical, less confident nets (larger CE, no KL)
    l1 = torch.tensor([[3.0, 0.0], [0.5, 0.0]])
    l2 = torch.tensor([[1.0, 0.0], [0.5, 0.0]])
    y = torch.zeros(2, dtype=torch.long)
    _, by_joint = jocor_loss(l1, l2, y, co_lambda=0.9, num_remember=1)
    _, by_ce = jocor_loss(l1, l2, y, co_lambda=0.9, num_remember=1, select_on="ce")
    assert by_joint.tolist() == [1] and by_ce.tolist() == [0]


def test_jocor_one_optimiser_over_both_networks() -> None:
    net1, net2 = _linear_nets(2, 6)
    ctx = FakeContext(torch.eye(6), torch.tensor([0, 1, 2, 0, 1, 2]), [net1, net2],
                      noise_type="asymmetric", noise_rate=0.4)
    method = JoCoR(JoCoR.Config(), ctx)
    params = method.optimizer.param_groups[0]["params"]
    assert len(params) == 2 and params[0] is net1.weight and params[1] is net2.weight
    assert method.forget_rate == pytest.approx(0.2)        # asymmetric: noise_rate / 2
    assert method.report == "mean"


@pytest.mark.parametrize("dataset, noise_type, rate, expected", [
    ("mnist", "symmetric", 0.2, 0.95), ("mnist", "asymmetric", 0.4, 0.95),
    ("cifar10", "symmetric", 0.2, 0.9), ("cifar10", "symmetric", 0.5, 0.9),
    ("cifar10", "asymmetric", 0.4, 0.9), ("cifar10", "symmetric", 0.8, 0.65),
    ("cifar10", "pairflip", 0.45, 0.1), ("cifar100", "symmetric", 0.8, 0.85),
    ("digits", "symmetric", 0.2, 0.1)])
def test_jocor_co_lambda_per_setting(dataset, noise_type, rate, expected) -> None:
    params = resolve_method_params("jocor", {}, dataset=dataset, noise_type=noise_type,
                                   noise_rate=rate)
    assert params["co_lambda"] == expected


# ---------------------------------------------------------------------------- Co-teaching+


def _official_coteaching_plus(l1, l2, y, positions, forget_rate):
    """loss_coteaching on the softmax outputs of the disagreement positions, as loss.py."""
    p1, p2, t = F.softmax(l1[positions], 1), F.softmax(l2[positions], 1), y[positions]
    ce1 = F.cross_entropy(p1, t, reduction="none")
    ce2 = F.cross_entropy(p2, t, reduction="none")
    k = int((1 - forget_rate) * len(positions)) or len(positions)
    keep1, keep2 = np.argsort(ce1.numpy())[:k], np.argsort(ce2.numpy())[:k]
    loss1 = F.cross_entropy(p1[keep2], t[keep2]) / k
    loss2 = F.cross_entropy(p2[keep1], t[keep1]) / k
    return float(loss1.detach()), float(loss2.detach()), {positions[i] for i in keep1}


def _plus_batch():
    # argmax disagrees at positions 1, 2, 4, 5
    l1 = torch.tensor([[2.0, 0.0], [3.0, 0.0], [0.0, 0.5], [1.0, 0.0], [0.2, 0.0], [0.0, 2.5]])
    l2 = torch.tensor([[1.5, 0.0], [0.0, 1.0], [0.3, 0.0], [2.0, 0.0], [0.0, 4.0], [0.9, 0.0]])
    y = torch.tensor([0, 0, 1, 0, 0, 1])
    return l1, l2, y


def test_coteaching_plus_disagreement_selection() -> None:
    l1, l2, y = _plus_batch()
    idx = torch.tensor([10, 11, 12, 13, 14, 15])
    loss1, loss2, keep1 = coteaching_plus_losses(l1, l2, y, idx, forget_rate=0.5,
                                                 gate_open=False)
    ref1, ref2, ref_keep1 = _official_coteaching_plus(l1, l2, y, [1, 2, 4, 5], 0.5)
    assert (float(loss1.detach()), float(loss2.detach())) == pytest.approx((ref1, ref2))
    assert set(torch.nonzero(keep1).flatten().tolist()) == ref_keep1
    assert len(ref_keep1) == 2


def test_coteaching_plus_without_double_softmax_uses_logits() -> None:
    l1, l2, y = _plus_batch()
    loss1, _, _ = coteaching_plus_losses(l1, l2, y, torch.arange(1, 7), forget_rate=0.0,
                                         gate_open=True, double_softmax=False,
                                         normalization="mean")
    assert float(loss1.detach()) == pytest.approx(float(F.cross_entropy(l1[[1, 2, 4, 5]],
                                                               y[[1, 2, 4, 5]])))


def test_coteaching_plus_index0_drops_the_last_disagreeing_position() -> None:
    l1, l2, y = _plus_batch()
    idx = torch.tensor([7, 0, 3, 4, 5, 6])    # dataset index 0 sits at disagreeing position 1
    loss1, _, keep1 = coteaching_plus_losses(l1, l2, y, idx, forget_rate=0.5, gate_open=True)
    ref1, _, ref_keep1 = _official_coteaching_plus(l1, l2, y, [1, 2, 4], 0.5)
    assert float(loss1.detach()) == pytest.approx(ref1)
    assert set(torch.nonzero(keep1).flatten().tolist()) == ref_keep1
    off, _, _ = coteaching_plus_losses(l1, l2, y, idx, forget_rate=0.5, gate_open=True,
                                       index0_quirk=False)
    assert float(off.detach()) == pytest.approx(_official_coteaching_plus(l1, l2, y, [1, 2, 4, 5],
                                                                 0.5)[0])


def test_coteaching_plus_no_disagreement_fallback_and_gate() -> None:
    l1 = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.5, 0.0]], requires_grad=True)
    l2 = torch.tensor([[1.0, 0.0], [0.0, 3.0], [2.0, 0.0]])
    y = torch.tensor([0, 0, 1])
    double = float(F.cross_entropy(F.softmax(l1, 1), y).detach())
    idx = torch.tensor([5, 6, 7])
    loss1, _, keep1 = coteaching_plus_losses(l1, l2, y, idx, forget_rate=0.5, gate_open=True)
    assert float(loss1.detach()) == pytest.approx(double) and bool(keep1.all())
    loss1.backward()
    assert torch.isfinite(l1.grad).all() and l1.grad.abs().sum() > 0
    closed, _, keep1 = coteaching_plus_losses(l1, l2, y, idx, forget_rate=0.5, gate_open=False)
    assert float(closed.detach()) == 0.0 and not bool(keep1.any())


def test_coteaching_plus_lone_index0_disagreement_falls_back() -> None:
    l1 = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.5, 0.0]])
    l2 = torch.tensor([[1.0, 0.0], [3.0, 0.0], [2.0, 0.0]])   # disagree at position 1 only
    y = torch.tensor([0, 0, 1])
    idx = torch.tensor([4, 0, 9])
    loss1, _, _ = coteaching_plus_losses(l1, l2, y, idx, forget_rate=0.5, gate_open=False)
    # update_step = disagree OR gate: the one raw disagreement passes, so CE mean * 1 / B
    assert float(loss1.detach()) == pytest.approx(float(F.cross_entropy(F.softmax(l1, 1), y)) / 3)


def test_coteaching_plus_keeps_all_when_num_remember_is_zero() -> None:
    l1, l2, y = _plus_batch()
    idx = torch.arange(1, 7)
    _, _, keep1 = coteaching_plus_losses(l1, l2, y, idx, forget_rate=0.8, gate_open=True)
    assert set(torch.nonzero(keep1).flatten().tolist()) == {1, 2, 4, 5}  # int(0.2 * 4) = 0


def _official_plus_reference(l1, l2, y, ind, forget_rate, step):
    """loss_coteaching_plus step by step on the host: the index mask trick, the truncation,
    the update_step gate and loss_coteaching's empty-selection fallback."""
    p1, p2 = F.softmax(l1, 1), F.softmax(l2, 1)
    pred1, pred2 = l1.argmax(1).numpy(), l2.argmax(1).numpy()
    logical = pred1 != pred2
    positions = [i for i in range(len(pred1)) if logical[i]]
    dataset_ids = np.asarray([i for i in ind * logical.astype(np.int64) if i != 0])
    positions = positions[:dataset_ids.shape[0]]
    if positions:
        t = y[positions]
        ce1 = F.cross_entropy(p1[positions], t, reduction="none")
        ce2 = F.cross_entropy(p2[positions], t, reduction="none")
        k = int((1 - forget_rate) * len(positions))
        o1, o2 = np.argsort(ce1.numpy(), kind="stable"), np.argsort(ce2.numpy(), kind="stable")
        keep1, keep2 = (o1[:k], o2[:k]) if k > 0 else (o1, o2)
        k = len(keep1)
        loss1 = F.cross_entropy(p1[positions][keep2], t[keep2]) / k
        loss2 = F.cross_entropy(p2[positions][keep1], t[keep1]) / k
        return float(loss1), float(loss2), {positions[i] for i in keep1}
    update_step = np.logical_or(logical, step < 5000).astype(np.float32)
    loss1 = float(F.cross_entropy(p1, y)) * update_step.sum() / len(y)
    loss2 = float(F.cross_entropy(p2, y)) * update_step.sum() / len(y)
    return loss1, loss2, set(range(len(y))) if step < 5000 else set()


def test_coteaching_plus_matches_the_code_on_random_batches() -> None:
    gen = torch.Generator().manual_seed(0)
    for trial in range(60):
        b = 12
        l1 = torch.randn(b, 3, generator=gen) * 2
        l2 = l1 + torch.randn(b, 3, generator=gen) * (0.05 if trial % 4 == 0 else 1.5)
        y = torch.randint(0, 3, (b,), generator=gen)
        ind = torch.randperm(40, generator=gen)[:b]
        if trial % 3 == 0:
            ind[int(torch.randint(0, b, (1,), generator=gen))] = 0
        forget_rate = [0.0, 0.2, 0.5, 0.8][trial % 4]
        step = [0, 4999, 5000, 12000][trial % 4]
        loss1, loss2, keep1 = coteaching_plus_losses(l1, l2, y, ind, forget_rate=forget_rate,
                                                     gate_open=step < 5000)
        ref1, ref2, ref_keep1 = _official_plus_reference(l1, l2, y, ind.numpy(),
                                                         forget_rate, step)
        assert (float(loss1), float(loss2)) == pytest.approx((ref1, ref2), rel=1e-6, abs=1e-9)
        assert set(torch.nonzero(keep1).flatten().tolist()) == ref_keep1


@pytest.mark.parametrize("dataset, expected", [("mnist", 0), ("cifar10", 20), ("cifar100", 5),
                                               ("digits", 0)])
def test_coteaching_plus_init_epoch_per_dataset(dataset, expected) -> None:
    params = resolve_method_params("coteaching_plus", {}, dataset=dataset,
                                   noise_type="symmetric", noise_rate=0.2)
    assert params["init_epoch"] == expected and params["double_softmax"] is True


# ---------------------------------------------------------------------------- Decoupling


def test_decoupling_updates_on_disagreement_only() -> None:
    l1 = torch.zeros(10, 2)
    l1[:, 0] = 1.0
    l2 = l1.clone()
    l2[[3, 7], 1] = 2.0                       # net2 predicts class 1 at positions 3 and 7
    l1.requires_grad_(True)
    y = torch.tensor([0, 1] * 5)
    loss1, _, update = decoupling_losses(l1, l2, y)
    assert torch.nonzero(update).flatten().tolist() == [3, 7]
    ce = F.cross_entropy(l1, y, reduction="none").detach()
    assert float(loss1.detach()) == pytest.approx(float(ce[[3, 7]].sum()) / max(0.1 * 10, 2))
    loss1.backward()
    assert torch.nonzero(l1.grad.abs().sum(1)).flatten().tolist() == [3, 7]
    one = l2.clone()
    one[7, 1] = 0.0                           # a single disagreement: denominator 0.1 * B = 1
    loss1, _, _ = decoupling_losses(l1, one, y, min_batch_fraction=0.3)
    assert float(loss1.detach()) == pytest.approx(float(ce[3]) / 3.0)
    _, _, update = decoupling_losses(l1, l2, y, warmup=True)
    assert bool(update.all())


# ---------------------------------------------------------------------------- MentorNet PD


def test_mentornet_pd_weights_the_small_losses() -> None:
    margins = torch.tensor([3.0, -1.0, 0.5, 5.0])
    logits = torch.stack([margins, torch.zeros(4)], 1)
    y = torch.zeros(4, dtype=torch.long)
    ce = F.cross_entropy(logits, y, reduction="none")
    loss, keep = self_paced_loss(logits, y, num_remember=2)
    assert keep.tolist() == [True, False, False, True]
    # google/mentornet: reduce_mean(loss * v), i.e. divided by the batch size
    assert float(loss.detach()) == pytest.approx(float(ce[[0, 3]].sum()) / 4)
    kept, _ = self_paced_loss(logits, y, num_remember=2, normalization="kept")
    assert float(kept.detach()) == pytest.approx(float(ce[[0, 3]].mean()))


# ---------------------------------------------------------------------------- F-correction


def test_forward_corrected_loss_on_a_known_matrix() -> None:
    t = torch.tensor([[0.8, 0.2], [0.3, 0.7]])
    logits = torch.log(torch.tensor([[0.9, 0.1], [0.9, 0.1]]))
    y = torch.tensor([1, 0])
    loss = forward_corrected_loss(logits, y, t)
    assert loss.tolist() == pytest.approx([-math.log(0.25), -math.log(0.75)], rel=1e-5)
    plain = forward_corrected_loss(logits, y, torch.eye(2))
    assert plain.tolist() == pytest.approx(F.cross_entropy(logits, y, reduction="none").tolist(),
                                           rel=1e-5)


def _patrini_estimate(eta: np.ndarray, filter_outlier: bool) -> np.ndarray:
    """NoiseEstimator.fit + predict (row_normalize, alpha 0), with its numpy view semantics."""
    eta = eta.copy()
    c = eta.shape[1]
    t = np.empty((c, c))
    for i in range(c):
        if not filter_outlier:
            best = np.argmax(eta[:, i])
        else:
            thresh = np.percentile(eta[:, i], 97, method="higher")
            robust = eta[:, i]                  # a view: the zeroing below edits eta
            robust[robust >= thresh] = 0.0
            best = np.argmax(robust)
        t[i] = eta[best]
    return t / t.sum(1, keepdims=True)


def test_transition_estimate_by_hand() -> None:
    probs = torch.tensor([[0.5, 0.45, 0.05], [0.4, 0.1, 0.5], [0.1, 0.8, 0.1],
                          [0.3, 0.3, 0.4], [0.2, 0.2, 0.6]])
    plain = estimate_transition_matrix(probs, filter_outlier=False)
    assert plain.numpy() == pytest.approx(np.array([[0.5, 0.45, 0.05], [0.1, 0.8, 0.1],
                                                    [0.2, 0.2, 0.6]]))
    # with 5 samples the 97th percentile ('higher') is the column maximum, which is dropped;
    # row 0 was zeroed in column 0 before it is read as class 1's example
    quirk = estimate_transition_matrix(probs)
    assert quirk.numpy() == pytest.approx(np.array([[0.4, 0.1, 0.5], [0.0, 0.9, 0.1],
                                                    [0.4, 0.1, 0.5]]))
    copy = estimate_transition_matrix(probs, inplace_quirk=False)
    assert copy[1].tolist() == pytest.approx([0.5, 0.45, 0.05])


@pytest.mark.parametrize("filter_outlier", [True, False])
def test_transition_estimate_matches_patrini_code(filter_outlier) -> None:
    rng = np.random.default_rng(0)
    eta = _softmax(rng.normal(size=(1000, 10)) * 3).astype(np.float32)
    ours = estimate_transition_matrix(torch.from_numpy(eta), filter_outlier=filter_outlier)
    assert ours.numpy() == pytest.approx(_patrini_estimate(eta, filter_outlier), abs=1e-6)


@pytest.mark.parametrize("dataset, expected", [("cifar100", False), ("cifar10", True),
                                               ("mnist", True)])
def test_filter_outlier_per_dataset(dataset, expected) -> None:
    params = resolve_method_params("f_correction", {}, dataset=dataset, noise_type="symmetric",
                                   noise_rate=0.2)
    assert params["filter_outlier"] is expected


# ---------------------------------------------------------------------------- engine runs


@pytest.mark.parametrize("method", METHODS)
def test_method_runs_on_digits(method, make_spec) -> None:
    params = {"f_correction": {"estimation_epochs": 1},
              "coteaching_plus": {"init_epoch": 2}}.get(method, {})
    spec = make_spec(method=method, method_params=params, noise_rate=0.4,
                     train={"epochs": 3, "start_epoch": 1, "batch_size": 128, "drop_last": True,
                            "schedule": "coteaching", "decay_start": 2,
                            "max_iters_per_epoch": 6})
    record = engine.run(spec, device="cpu")
    assert record["status"] == "ok", record["error"]
    assert validate_record(record) == []
    metrics = record["metrics"]
    assert metrics["epoch"] == [1, 2]
    if method == "f_correction":
        assert metrics["extra"]["stage"] == [1.0, 2.0]
        assert metrics["extra"]["estimated_noise_rate"][0] is None
    else:
        assert all(n > 0 for n in metrics["selected_count"])
    if method != "decoupling" and method != "f_correction":
        assert metrics["extra"]["forget_rate"] == pytest.approx([0.4 / 9, 0.8 / 9])


def test_f_correction_resumes_across_the_stage_change(make_spec, tmp_path) -> None:
    spec = make_spec(method="f_correction", method_params={"estimation_epochs": 1},
                     train={"epochs": 4, "start_epoch": 1, "batch_size": 128,
                            "max_iters_per_epoch": 4})
    full = engine.run(spec, device="cpu")
    assert engine.run(spec, device="cpu", checkpoint_dir=tmp_path, checkpoint_every=1,
                      stop_after_epoch=2) == {}
    resumed = engine.run(spec, device="cpu", checkpoint_dir=tmp_path)
    assert resumed["metrics"]["test_acc"] == full["metrics"]["test_acc"]
    assert resumed["metrics"]["extra"] == full["metrics"]["extra"]


def test_f_correction_with_the_nominal_matrix_trains_forward_from_the_start(make_spec,
                                                                             monkeypatch) -> None:
    used = []
    real = forward_corrected_loss

    def spy(logits, labels, transition_matrix, **kw):
        used.append(transition_matrix.detach().cpu().numpy().copy())
        return real(logits, labels, transition_matrix, **kw)

    monkeypatch.setattr("methods.f_correction.forward_corrected_loss", spy)
    spec = make_spec(method="f_correction_nominal", noise_rate=0.4, train={"epochs": 2, "batch_size": 128,
                                            "max_iters_per_epoch": 3})
    record = engine.run(spec, device="cpu")
    assert record["status"] == "ok", record["error"]
    assert record["metrics"]["extra"]["stage"] == [2.0, 2.0]      # no estimation stage
    assert len(used) == 6                                         # every step is corrected
    want = np.array(record["nominal_transition_matrix"])
    assert want[0, 0] == 0.6 and want[0, 1] == round(0.4 / 9, 6)      # the record rounds
    exact = np.full((10, 10), 0.4 / 9) + np.eye(10) * (0.6 - 0.4 / 9)
    np.testing.assert_allclose(used[0], exact, rtol=1e-7)             # the method does not
    assert record["method_state"] == {}


def test_f_correction_nominal_needs_a_noise_model_with_a_matrix(make_spec) -> None:
    spec = make_spec(method="f_correction_nominal", noise_type="instance", noise_rate=0.2,
                     train={"epochs": 1})
    with pytest.raises(ConfigError, match="needs a noise model with a transition matrix"):
        engine.run(spec, device="cpu")
