"""F-correction under Patrini's protocol against transliterations of giorgiop/loss-correction.

The transliterations below are written for these tests from the Keras code: ``ModelCheckpoint``'s
``save_best_only`` rule, Keras 2.0's Adagrad update, ``loss.py``'s clipped cross-entropy and
``fit``'s ``validation_split``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench import engine
from bench.config import TrainConfig, load_grid, resolve_method_params
from bench.models import build_network
from bench.reporting.records import from_curve as _from_curve
from methods.f_correction import forward_corrected_loss, noisy_validation_split

REPO_GRID = "bench/grids/jocor_mnist_fcorrection.yaml"


def keras_checkpoint_epoch(val_losses: list[float]) -> int:
    """ModelCheckpoint(monitor='val_loss', save_best_only=True), mode 'min': np.less on a best
    that starts at +inf; the weights saved last are those of the returned epoch."""
    best, saved = np.inf, -1
    for epoch, current in enumerate(val_losses):
        if np.less(current, best):
            best, saved = current, epoch
    return saved


def keras_adagrad(params: list[np.ndarray], grads: list[list[np.ndarray]], *, lr: float,
                  epsilon: float) -> list[np.ndarray]:
    """Keras 2.0 Adagrad.get_updates: a <- a + g^2, p <- p - lr * g / (sqrt(a) + epsilon)."""
    params = [p.copy() for p in params]
    acc = [np.zeros_like(p) for p in params]
    for step in grads:
        for i, g in enumerate(step):
            acc[i] = acc[i] + g ** 2
            params[i] = params[i] - lr * g / (np.sqrt(acc[i]) + epsilon)
    return params


def keras_crossentropy(y_true: np.ndarray, y_pred: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """loss.py crossentropy: renormalise, clip to [eps, 1 - eps], -sum(y log p)."""
    y_pred = y_pred / y_pred.sum(-1, keepdims=True)
    y_pred = np.clip(y_pred, eps, 1.0 - eps)
    return -(y_true * np.log(y_pred)).sum(-1)


@pytest.mark.parametrize("losses", [
    [0.9, 0.7, 0.7, 0.8, 0.6, 0.6, 0.65],     # ties keep the first
    [0.5, 0.6, 0.7],                           # the first epoch
    [0.9, 0.8, 0.7, 0.6],                      # the last epoch
])
def test_the_report_reads_the_checkpoint_keras_keeps(losses) -> None:
    rng = np.random.default_rng(0)
    stage1 = list(rng.uniform(0.1, 0.4, size=3))            # lower, but of the other stage
    acc = list(rng.uniform(50, 99, size=len(stage1) + len(losses)))
    metrics = {"test_acc": acc, "extra": {"val_loss": stage1 + losses,
                                          "stage": [1.0] * 3 + [2.0] * len(losses)}}
    want = acc[len(stage1) + keras_checkpoint_epoch(losses)]
    assert _from_curve(metrics, "val_loss") == want
    assert math.isnan(_from_curve({"test_acc": acc}, "val_loss"))   # no validation loss


def test_the_method_keeps_the_checkpoint_keras_keeps(make_spec) -> None:
    spec = make_spec(method="f_correction_patrini", method_params={"estimation_epochs": 3},
                     network="mlp", train={"epochs": 6, "batch_size": 128, "optimizer": "adagrad",
                                           "lr": 0.01})
    record = engine.run(spec, device="cpu")
    assert record["status"] == "ok", record["error"]
    extra, state = record["metrics"]["extra"], record["method_state"]
    assert extra["stage"] == [1.0] * 3 + [2.0] * 3
    assert state["stage1_selected_epoch"] == keras_checkpoint_epoch(extra["val_loss"][:3])
    assert state["selected_epoch"] == 3 + keras_checkpoint_epoch(extra["val_loss"][3:])
    assert _from_curve(record["metrics"], "val_loss") == \
        record["metrics"]["test_acc"][state["selected_epoch"]]
    t = np.array(state["estimated_transition_matrix"])
    np.testing.assert_allclose(t.sum(1), 1.0, rtol=1e-6)
    assert extra["estimated_noise_rate"][3] == pytest.approx(1.0 - np.diag(t).mean())


def test_stage_one_restores_its_selected_checkpoint_before_estimating(make_spec, monkeypatch) -> None:
    """T comes from the weights of the selected stage-1 epoch, not from the last one."""
    from methods import f_correction as fc

    seen = {}
    real_estimate = fc.FCorrection.estimate

    def spy(self):
        seen["weights"] = {k: v.clone() for k, v in self.net1.state_dict().items()}
        seen["kept"] = {k: v.clone() for k, v in self.best_state.items()}
        return real_estimate(self)

    monkeypatch.setattr(fc.FCorrection, "estimate", spy)
    # a rising validation loss after the first epoch: Keras keeps epoch 0
    losses = iter([0.1, 0.5, 0.9, 1.0, 1.1, 1.2])
    monkeypatch.setattr(fc.FCorrectionPatrini, "validation_loss", lambda self: next(losses))
    spec = make_spec(method="f_correction_patrini", method_params={"estimation_epochs": 3},
                     network="mlp", train={"epochs": 4, "batch_size": 128})
    record = engine.run(spec, device="cpu")
    assert record["status"] == "ok", record["error"]
    assert record["method_state"]["stage1_selected_epoch"] == 0
    for key, value in seen["kept"].items():
        torch.testing.assert_close(seen["weights"][key], value)


@pytest.mark.parametrize("stop", [0, 2])   # within stage 1; at the change of stage
def test_patrini_resumes_to_the_uninterrupted_record(stop, make_spec, tmp_path) -> None:
    spec = make_spec(method="f_correction_patrini", method_params={"estimation_epochs": 2},
                     network="mlp", train={"epochs": 4, "batch_size": 128})
    whole = engine.run(spec, device="cpu")
    engine.run(spec, device="cpu", checkpoint_dir=tmp_path, checkpoint_every=1,
               stop_after_epoch=stop)
    again = engine.run(spec, device="cpu", checkpoint_dir=tmp_path)
    for key in ("metrics", "method_state"):
        assert again[key] == whole[key], key


def test_the_split_is_keras_validation_split_after_the_permutation() -> None:
    n = 60_000
    train, val = noisy_validation_split(n, 0.1, 101)
    perm = np.random.RandomState(101).permutation(n)         # models.py get_data
    x = perm                                                   # what fit sees, in order
    split_at = int(len(x) * (1.0 - 0.1))                       # keras validation_split
    np.testing.assert_array_equal(train, x[:split_at])
    np.testing.assert_array_equal(val, x[split_at:])
    assert (len(train), len(val)) == (54_000, 6_000)


def test_the_method_trains_on_the_split_only(make_spec) -> None:
    spec = make_spec(method="f_correction_patrini", method_params={"estimation_epochs": 1},
                     network="mlp", train={"epochs": 1, "batch_size": 128})
    from bench.registry import METHODS

    data, noisy, _ = engine.prepare(spec, torch.device("cpu"))
    ctx = engine.RunContext(spec, data, noisy, torch.device("cpu"))
    cls = METHODS.get("f_correction_patrini")
    method = cls(cls.Config(**spec.method_params), ctx)
    seen = torch.cat([idx for _, _, idx in ctx.train_batches(indices=method.train_pool)])
    assert not set(seen.tolist()) & set(method.val_idx.tolist())
    assert len(seen) + len(method.val_idx) == ctx.num_train


def test_clipped_cross_entropy_is_keras_crossentropy() -> None:
    rng = np.random.default_rng(1)
    logits = torch.tensor(rng.normal(0, 8, size=(16, 10)), dtype=torch.float32)
    labels = torch.tensor(rng.integers(0, 10, size=16))
    ours = forward_corrected_loss(logits, labels, torch.eye(10))
    probs = torch.softmax(logits, 1).double().numpy()
    want = keras_crossentropy(np.eye(10)[labels.numpy()], probs)
    np.testing.assert_allclose(ours.numpy(), want, rtol=1e-5)


def test_adagrad_is_keras_adagrad(make_spec) -> None:
    spec = make_spec(train={"optimizer": "adagrad", "lr": 0.01})
    data, noisy, _ = engine.prepare(spec, torch.device("cpu"))
    ctx = engine.RunContext(spec, data, noisy, torch.device("cpu"))
    rng = np.random.default_rng(2)
    p0 = rng.normal(size=(3, 4))
    grads = [[rng.normal(size=(3, 4)) * 10 ** -k] for k in range(4)]   # steps of every scale
    param = torch.nn.Parameter(torch.tensor(p0, dtype=torch.float64))
    opt = ctx.make_optimizer([param])
    assert isinstance(opt, torch.optim.Adagrad)
    for (g,) in grads:
        param.grad = torch.tensor(g)
        opt.step()
    want = keras_adagrad([p0], grads, lr=0.01, epsilon=1e-8)[0]
    np.testing.assert_allclose(param.detach().numpy(), want, rtol=1e-12)


def test_mlp_patrini_is_his_mnist_network() -> None:
    torch.manual_seed(0)
    net = build_network("mlp_patrini", in_channels=1, num_classes=10, image_size=28)
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 128), (128, 128), (128, 10)]
    assert [m.p for m in net.modules() if isinstance(m, torch.nn.Dropout)] == [0.2, 0.2]
    for m in linears:
        std = math.sqrt(2.0 / m.in_features)
        w = m.weight.detach()
        assert float(w.abs().max()) <= 2.0 * std + 1e-7            # truncated at 2 std
        # N(0, s^2) truncated at +-2s has std 0.8796 s
        assert float(w.std()) == pytest.approx(0.8796 * std, rel=0.1)
        assert not m.bias.detach().any()
    net.eval()
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(net(x), net(x))                   # no dropout in eval mode


def test_the_grid_keeps_the_committed_run_ids_and_adds_the_patrini_arm() -> None:
    import json
    from pathlib import Path

    runs = load_grid(REPO_GRID).runs
    ids = {r.run_id for r in runs}
    records = sorted(Path("results/jocor_mnist_fcorrection").glob("*.json"))
    committed = [json.loads(p.read_text())["run_id"] for p in records]
    assert committed and set(committed) <= ids
    patrini = [r for r in runs if r.method == "f_correction_patrini"]
    assert len(patrini) == 20
    t = patrini[0].train
    assert (t.epochs, t.start_epoch, t.optimizer, t.lr, t.batch_size) == (80, 0, "adagrad", 0.01, 128)
    assert (t.max_iters_per_epoch, t.drop_last, t.test_drop_last) == (None, False, False)
    assert patrini[0].method_params["estimation_epochs"] == 40
    assert patrini[0].method_params["network"] == "mlp_patrini"


def test_bad_patrini_options_are_one_line_errors() -> None:
    from bench.errors import ConfigError

    with pytest.raises(ConfigError, match="val_fraction"):
        resolve_method_params("f_correction_patrini", {"val_fraction": 1.5}, dataset="mnist",
                              noise_type="symmetric", noise_rate=0.2)
    with pytest.raises(ConfigError, match="adam, sgd or adagrad"):
        TrainConfig(optimizer="rmsprop")


def test_the_report_reports_a_validation_selecting_run_at_its_checkpoint() -> None:
    import pandas as pd

    from bench.report import PAPER_METHOD, with_accuracy

    acc = [60.0, 70.0, 80.0, 75.0]
    runs = pd.DataFrame({
        "metrics": [{"test_acc": acc, "extra": {"val_loss": [0.5, 0.4, 0.3, 0.35],
                                                 "stage": [1.0, 2.0, 2.0, 2.0]}},
                    {"test_acc": acc}],
        "test_acc_last10": [71.25, 71.25]})
    out = with_accuracy(runs, "last10")
    assert out["acc"].tolist() == [80.0, 71.25]
    assert out["acc_protocol"].tolist() == ["val_loss", "last10"]
    assert PAPER_METHOD["f_correction_patrini"] == "f_correction"   # tested against its number
