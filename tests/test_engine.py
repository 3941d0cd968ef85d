"""The engine: records, determinism, evaluation protocol, schedules, augmentation, failures, and
the atomic record store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import engine, store
from bench.config import TrainConfig
from bench.data import load_dataset
from bench.engine import RunContext, random_crop_flip
from bench.noise import realised_transition_matrix, symmetric_matrix
from methods.base import EpochResult
from methods.standard import Standard

SCHEMA = Path(__file__).resolve().parents[1] / "docs" / "record-schema.md"


def schema_keys() -> tuple[list[str], list[str]]:
    """(record keys, metrics keys) from the two tables of docs/record-schema.md."""
    tables: list[list[str]] = []
    rows: list[str] = []
    for line in SCHEMA.read_text().splitlines():
        if line.startswith("|"):
            rows.append(line.split("|")[1].strip())
        elif rows:
            tables.append(rows)
            rows = []
    if rows:
        tables.append(rows)
    record, metrics = ([k for row in t[2:] for k in re.split(r",\s*", row)] for t in tables[:2])
    return record, metrics


@pytest.fixture(scope="module")
def digits_record(tmp_path_factory):
    """``standard`` on digits, symmetric 20%, 2 epochs: (spec, record, results folder)."""
    from bench.config import RunSpec

    out = tmp_path_factory.mktemp("results")
    spec = RunSpec(grid="test", label="standard", method="standard", method_params={},
                   dataset="digits", network="mlp", noise_type="symmetric", noise_rate=0.2,
                   noise_seed=3, seed=1, train=TrainConfig(epochs=2, batch_size=64))
    record = engine.run(spec, device="cpu", results_dir=out)
    return spec, record, out


def test_record_is_valid_and_complete(digits_record) -> None:
    spec, record, out = digits_record
    assert record["status"] == "ok", record["error"]
    assert store.validate_record(record) == []
    on_disk = store.read_record(out / spec.filename)
    assert store.validate_record(on_disk) == []
    record_keys, metric_keys = schema_keys()
    assert len(record_keys) > 25 and "started_at" in record_keys and "finished_at" in record_keys
    # `attempts` is the runner's count, which engine.run alone does not write; `fused` and
    # `reused_from` are only on runs trained fused or copied from another grid
    assert sorted(set(record_keys) - set(on_disk) - {"attempts", "fused", "reused_from"}) == []
    assert sorted(set(metric_keys) - set(on_disk["metrics"])) == []
    assert on_disk["run_id"] == spec.run_id and on_disk["epochs"] == 2
    assert on_disk["metrics"]["epoch"] == [0, 1]
    assert on_disk["test_acc_last"] == on_disk["metrics"]["test_acc"][-1]
    assert on_disk["env"]["torch"] == torch.__version__ and on_disk["device"] == "cpu"


def test_record_noise_matches_the_noisy_labels(digits_record) -> None:
    spec, record, _ = digits_record
    data, noisy, _ = engine.prepare(spec, torch.device("cpu"))
    clean = data.train_labels
    assert record["realised_noise_rate"] == pytest.approx(float(np.mean(noisy != clean)))
    assert 0.1 < record["realised_noise_rate"] < 0.3
    realised = realised_transition_matrix(clean, noisy, 10)
    assert np.allclose(record["transition_matrix"], realised, atol=1e-6)
    assert np.allclose(record["nominal_transition_matrix"], symmetric_matrix(10, 0.2))


def test_same_spec_same_run(digits_record, make_spec) -> None:
    spec, first, _ = digits_record
    again = engine.run(spec, device="cpu")
    assert again["metrics"]["test_acc"] == first["metrics"]["test_acc"]
    assert again["metrics"]["train_loss"] == first["metrics"]["train_loss"]
    _, noisy_a, _ = engine.prepare(spec, torch.device("cpu"))
    _, noisy_b, _ = engine.prepare(spec, torch.device("cpu"))
    assert np.array_equal(noisy_a, noisy_b)


def test_resumed_run_equals_uninterrupted_run(tmp_path, make_spec) -> None:
    spec = make_spec(train={"epochs": 3})
    full = engine.run(spec, device="cpu")
    assert engine.run(spec, device="cpu", checkpoint_dir=tmp_path, stop_after_epoch=0) == {}
    assert (tmp_path / f"{spec.run_id}.pt").is_file()
    resumed = engine.run(spec, device="cpu", checkpoint_dir=tmp_path)
    assert resumed["metrics"]["test_acc"] == full["metrics"]["test_acc"]
    assert resumed["metrics"]["train_loss"] == full["metrics"]["train_loss"]
    assert not (tmp_path / f"{spec.run_id}.pt").exists()


# ---- evaluation protocol ---------------------------------------------------------------------

class _CountingMethod:
    """Predicts class 0 for every image and counts the images it was shown."""

    report = "net1"

    def __init__(self) -> None:
        self.seen = 0

    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.seen += len(x)
        logits = torch.zeros(len(x), 10)
        logits[:, 0] = 1.0
        return {"net1": logits}


@pytest.mark.parametrize("test_batch_size", [128, 100, 64, 450])
def test_drop_last_scores_whole_batches_only(make_spec, test_batch_size) -> None:
    spec = make_spec(train={"test_drop_last": True, "test_batch_size": test_batch_size})
    data = load_dataset("digits")
    ctx = RunContext(spec, data, data.train_labels, torch.device("cpu"))
    m = len(data.test_labels)
    scored = (m // test_batch_size) * test_batch_size
    method = _CountingMethod()
    test_y = torch.as_tensor(data.test_labels)
    accs = engine.evaluate(method, ctx, data.test_images, test_y)
    assert method.seen == scored
    assert accs["net1"] == pytest.approx(100.0 * np.mean(data.test_labels[:scored] == 0))


def test_without_drop_last_every_test_image_counts(make_spec) -> None:
    spec = make_spec()
    data = load_dataset("digits")
    ctx = RunContext(spec, data, data.train_labels, torch.device("cpu"))
    method = _CountingMethod()
    accs = engine.evaluate(method, ctx, data.test_images, torch.as_tensor(data.test_labels))
    assert method.seen == 450
    assert accs["net1"] == pytest.approx(100.0 * np.mean(data.test_labels == 0))


# ---- batches ----------------------------------------------------------------------------------

def context(make_spec, **train) -> RunContext:
    data = load_dataset("digits")
    noisy = (data.train_labels + 1) % 10
    return RunContext(make_spec(train=train), data, noisy, torch.device("cpu"))


def test_train_batches_honour_drop_last_and_max_iters(make_spec) -> None:
    ctx = context(make_spec, batch_size=100, drop_last=True)
    batches = list(ctx.train_batches())
    assert [len(idx) for _, _, idx in batches] == [100] * 13  # 1,347 -> 13 whole batches
    idx = torch.cat([i for _, _, i in batches])
    assert len(set(idx.tolist())) == 1300 and int(ctx.visited.sum()) == 1300
    x, y, i = batches[0]
    assert x.shape == (100, 1, 8, 8) and x.dtype == torch.float32
    assert torch.equal(y, ctx.noisy_labels[i])
    keep = context(make_spec, batch_size=100)
    assert [len(i) for _, _, i in keep.train_batches()][-1] == 47
    capped = context(make_spec, batch_size=100, max_iters_per_epoch=3)
    assert len(list(capped.train_batches())) == 3
    subset = torch.arange(0, 1347, 2)
    seen = torch.cat([i for _, _, i in ctx.train_batches(indices=subset, batch_size=50)])
    assert set(seen.tolist()) <= set(subset.tolist()) and len(seen) == 650


def test_eval_batches_are_in_order_and_unaugmented(make_spec) -> None:
    ctx = context(make_spec, augment="crop_flip")
    data = load_dataset("digits")
    xs, idx = zip(*[(x, i) for x, _, i in ctx.eval_train_batches(batch_size=500)])
    assert torch.equal(torch.cat(idx), torch.arange(1347))
    assert torch.equal(torch.cat(xs), data.train_images.float() / 255)
    normed = context(make_spec, normalize=True)
    x = normed.fetch(torch.arange(4), augment=False)
    assert torch.allclose(x, (data.train_images[:4].float() / 255 - 0.30) / 0.37)


# ---- schedules ---------------------------------------------------------------------------------

def test_coteaching_schedule(make_spec) -> None:
    spec = make_spec(train={"epochs": 200, "schedule": "coteaching", "decay_start": 80,
                            "lr": 0.001})
    data = load_dataset("digits")
    ctx = RunContext(spec, data, data.train_labels, torch.device("cpu"))
    opt = ctx.make_optimizer([torch.nn.Parameter(torch.zeros(3))])
    # Co-teaching main.py: alpha_plan[i] = (n_epoch - i) / (n_epoch - decay_start) * lr and
    # beta1_plan[i] = 0.1 for i >= decay_start; lr and beta1 0.9 before
    for epoch in (0, 1, 79, 80, 81, 140, 199):
        ctx.apply_schedule(epoch)
        want_lr = 0.001 if epoch < 80 else (200 - epoch) / 120 * 0.001
        want_beta1 = 0.9 if epoch < 80 else 0.1
        assert ctx.learning_rate(epoch, 0.001) == pytest.approx(want_lr)
        assert opt.param_groups[0]["lr"] == pytest.approx(want_lr)
        assert opt.param_groups[0]["betas"] == (want_beta1, 0.999)
    ctx.apply_schedule(10)  # schedules are stateless: going back restores the start values
    assert opt.param_groups[0]["lr"] == pytest.approx(0.001)
    assert opt.param_groups[0]["betas"][0] == 0.9


def test_multistep_and_constant_schedules(make_spec) -> None:
    data = load_dataset("digits")
    spec = make_spec(train={"epochs": 100, "schedule": "multistep", "milestones": [40, 80],
                            "gamma": 0.1, "optimizer": "sgd", "lr": 0.02})
    ctx = RunContext(spec, data, data.train_labels, torch.device("cpu"))
    opt = ctx.make_optimizer([torch.nn.Parameter(torch.zeros(3))])
    for epoch, want in ((0, 0.02), (39, 0.02), (40, 0.002), (79, 0.002), (80, 0.0002)):
        ctx.apply_schedule(epoch)
        assert opt.param_groups[0]["lr"] == pytest.approx(want)
    const = RunContext(make_spec(), data, data.train_labels, torch.device("cpu"))
    assert const.learning_rate(150, 0.001) == 0.001


# ---- augmentation ------------------------------------------------------------------------------

def test_random_crop_flip_is_a_window_of_the_padded_image() -> None:
    x = torch.rand(64, 3, 12, 10)
    gen = torch.Generator().manual_seed(0)
    out = random_crop_flip(x, padding=4, generator=gen)
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    seen = set()
    for b in range(len(x)):
        matches = [(dy, dx, flip) for dy in range(9) for dx in range(9) for flip in (False, True)
                   if torch.equal(out[b], (padded[b, :, dy:dy + 12, dx:dx + 10].flip(-1) if flip
                                           else padded[b, :, dy:dy + 12, dx:dx + 10]))]
        assert len(matches) == 1, f"sample {b}: {matches}"
        seen.add(matches[0])
    assert {f for _, _, f in seen} == {False, True}
    assert len({(dy, dx) for dy, dx, _ in seen}) > 20
    again = random_crop_flip(x, padding=4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


# ---- failures ----------------------------------------------------------------------------------

def test_nan_loss_becomes_a_failed_record(tmp_path, make_spec, monkeypatch) -> None:
    monkeypatch.setattr(Standard, "train_epoch",
                        lambda self, epoch: EpochResult(train_loss=float("nan")))
    spec = make_spec()
    record = engine.run(spec, device="cpu", results_dir=tmp_path)
    assert record["status"] == "failed"
    assert "NonFiniteLossError" in record["error"] and "nan" in record["error"]
    on_disk = store.read_record(tmp_path / spec.filename)
    assert on_disk["status"] == "failed" and store.validate_record(on_disk) == []


def test_an_exception_in_a_method_becomes_a_failed_record(make_spec, monkeypatch) -> None:
    def boom(self, epoch):
        raise RuntimeError("out of cheese")

    monkeypatch.setattr(Standard, "train_epoch", boom)
    record = engine.run(make_spec(), device="cpu")
    assert record["status"] == "failed" and "out of cheese" in record["error"]


# ---- the store ---------------------------------------------------------------------------------

def _strict_json(path: Path) -> dict:
    def reject(token):
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(path.read_text(), parse_constant=reject)


def test_write_record_is_atomic_and_nan_becomes_null(tmp_path) -> None:
    path = tmp_path / "grid" / "run.json"
    rec = {"a": float("nan"), "b": [1.5, float("inf"), {"c": -float("inf")}], "d": "x", "e": 3}
    assert store.write_record(path, rec) == path
    assert sorted(p.name for p in path.parent.iterdir()) == ["run.json"]
    assert _strict_json(path) == {"a": None, "b": [1.5, None, {"c": None}], "d": "x", "e": 3}
    # a record that cannot be written leaves the previous file whole and no temporary file
    with pytest.raises(TypeError):
        store.write_record(path, {"bad": object()})
    assert sorted(p.name for p in path.parent.iterdir()) == ["run.json"]
    assert _strict_json(path)["d"] == "x"


def test_validate_record_reports_problems(digits_record) -> None:
    _, record, _ = digits_record
    broken = dict(record)
    del broken["seed"]
    assert store.validate_record(broken) == ["missing key 'seed'"]
    short = json.loads(json.dumps(record))
    short["metrics"]["train_loss"] = short["metrics"]["train_loss"][:1]
    assert any("train_loss" in p for p in store.validate_record(short))
    failed = dict(record, status="failed", error=None)
    assert store.validate_record(failed) == ["a failed record has no error text"]
