"""Fused seeds of a cell (bench.fused_run, ``bench run --fuse-seeds``) against unfused runs."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from bench import engine, store
from bench.__main__ import main as bench_main
from bench.errors import ConfigError
from bench.fused_run import fusable, fusable_methods, run_fused
from bench.registry import METHODS

SCHEDULE = {"epochs": 4, "batch_size": 64, "lr": 0.001, "optimizer": "adam",
            "schedule": "coteaching", "decay_start": 2, "drop_last": True}
# the JoCoR/Co-teaching MNIST protocol's knobs: epochs from 1, a cap on batches per epoch,
# whole test batches only
OFFICIAL = {**SCHEDULE, "epochs": 5, "start_epoch": 1, "max_iters_per_epoch": 15,
            "test_drop_last": True, "test_batch_size": 64}


@pytest.mark.parametrize("method,params,noise,train", [
    ("standard", {}, ("symmetric", 0.4), SCHEDULE),
    ("jocor", {"co_lambda": 0.5}, ("symmetric", 0.4), SCHEDULE),
    ("jocor", {"co_lambda": 0.5, "select_on": "ce"}, ("asymmetric", 0.4), OFFICIAL),
    ("coteaching", {}, ("symmetric", 0.4), OFFICIAL),
    ("coteaching", {"loss_normalization": "mean"}, ("pairflip", 0.45), SCHEDULE),
    ("decoupling", {}, ("symmetric", 0.4), OFFICIAL),
    ("decoupling", {"init_iters": 20, "min_batch_fraction": 0.0}, ("symmetric", 0.4), SCHEDULE),
    ("mentornet", {"num_gradual": 2}, ("symmetric", 0.4), OFFICIAL),
    ("mentornet", {"normalization": "kept"}, ("pairflip", 0.45), SCHEDULE),
    ("coteaching_plus", {"num_gradual": 2}, ("symmetric", 0.4), OFFICIAL),
    ("coteaching_plus", {"init_epoch": 2, "gate_steps": 10, "double_softmax": False},
     ("pairflip", 0.45), SCHEDULE),
    ("coteaching_plus", {"gate_counter": "global", "gate_steps": 30}, ("symmetric", 0.4),
     SCHEDULE),
])
def test_fused_seeds_record_what_unfused_runs_record(method, params, noise, train,
                                                     make_spec) -> None:
    specs = [make_spec(method=method, method_params=params, noise_type=noise[0],
                       noise_rate=noise[1], seed=seed, train=train) for seed in (1, 2, 3)]
    fused = run_fused(specs, device="cpu")
    for spec, rec in zip(specs, fused):
        alone = engine.run(spec, device="cpu")
        assert rec["status"] == "ok", rec["error"]
        assert store.validate_record(rec) == []
        assert rec["run_id"] == spec.run_id and rec["seed"] == spec.seed
        assert rec["fused"]["run_ids"] == [s.run_id for s in specs]
        assert rec["transition_matrix"] == alone["transition_matrix"]
        a, b = rec["metrics"], alone["metrics"]
        assert a["epoch"] == b["epoch"] == list(range(train.get("start_epoch", 0),
                                                      train["epochs"]))
        np.testing.assert_allclose(a["train_loss"], b["train_loss"], rtol=1e-4)
        # test accuracy (of 360 images): the same to float rounding of a few logits
        np.testing.assert_allclose(a["test_acc"], b["test_acc"], atol=0.6)
        if method != "standard":
            assert a["selected_count"] == b["selected_count"]
            np.testing.assert_allclose(a["label_precision"], b["label_precision"], atol=2e-3)
            np.testing.assert_allclose(a["label_recall"], b["label_recall"], atol=2e-3)
            assert a["extra"] == b["extra"]          # forget rates (small-loss methods)
        if "selection_curve" in b:                   # methods that score their samples
            assert a["selection_curve"]["size"] == b["selection_curve"]["size"]
            np.testing.assert_allclose(_floats(a["selection_curve"]["precision"]),
                                       _floats(b["selection_curve"]["precision"]), atol=2e-3)
    # the seeds really trained differently (different initial weights and batch orders)
    assert len({tuple(r["metrics"]["train_loss"]) for r in fused}) == 3


def _floats(series: list) -> np.ndarray:
    """A nested list of numbers and nulls as a float array (NaN for null)."""
    return np.array([[np.nan if v is None else v for v in row] if isinstance(row, list)
                     else (np.nan if row is None else row) for row in series], dtype=float)


def test_every_batch_method_of_the_registry_fuses_and_phase_methods_do_not(make_spec) -> None:
    assert set(fusable_methods()) == {"standard", "mentornet", "coteaching", "coteaching_plus",
                                      "decoupling", "jocor"}
    for method in METHODS.names():
        assert fusable(make_spec(method=method)) == (method in fusable_methods())


def test_only_one_cell_with_different_seeds_fuses(make_spec) -> None:
    a = make_spec(seed=1)
    with pytest.raises(ConfigError, match="differ in seed"):
        run_fused([a, make_spec(seed=2, noise_rate=0.4)], device="cpu")
    with pytest.raises(ConfigError, match="differ in seed"):
        run_fused([a, make_spec(seed=1)], device="cpu")
    with pytest.raises(ConfigError, match="cannot be fused"):
        run_fused([make_spec(method="dividemix", seed=s) for s in (1, 2)], device="cpu")
    with pytest.raises(ConfigError, match="cannot be fused"):
        run_fused([make_spec(seed=s, train={"augment": "crop_flip"}) for s in (1, 2)],
                  device="cpu")


def test_runner_fuses_the_seeds_of_fusable_cells(tmp_path, capsys) -> None:
    grid = {"name": "f", "dataset": "digits", "network": "mlp",
            "train": {"epochs": 2, "batch_size": 64},
            "methods": {"standard": {}, "jocor": {}, "f_correction": {"estimation_epochs": 1}},
            "noise": [{"type": "symmetric", "rate": 0.2}], "seeds": 3}
    path = tmp_path / "f.yaml"
    path.write_text(yaml.safe_dump(grid))
    args = ["run", str(path), "--results", str(tmp_path / "results"), "--no-progress",
            "--threads", "1", "--fuse-seeds"]
    assert bench_main(args) == 0
    recs = [store.read_record(p) for p in (tmp_path / "results" / "f").glob("*.json")]
    assert len(recs) == 9 and all(r["status"] == "ok" for r in recs)
    for method in ("standard", "jocor"):
        group = [r for r in recs if r["method"] == method]
        ids = sorted(r["run_id"] for r in group)
        assert all(sorted(r["fused"]["run_ids"]) == ids for r in group)
        (wall,) = {r["fused"]["group_wall_seconds"] for r in group}
        assert all(r["wall_seconds"] == pytest.approx(wall / 3) for r in group)
    assert not any("fused" in r for r in recs if r["method"] == "f_correction")
    capsys.readouterr()
    assert bench_main(args) == 0          # resumable: nothing left to run
    assert "0 to run" in capsys.readouterr().out


def test_compiled_runs_record_what_eager_runs_record(make_spec) -> None:
    train = {"epochs": 2, "batch_size": 64, "max_iters_per_epoch": 5}
    spec = make_spec(seed=1, train=train)
    eager, compiled = engine.run(spec, device="cpu"), engine.run(spec, device="cpu", compile=True)
    assert compiled["status"] == "ok", compiled["error"]
    assert compiled["env"]["torch_compile"] is True and eager["env"]["torch_compile"] is False
    assert compiled["run_id"] == eager["run_id"]
    np.testing.assert_allclose(compiled["metrics"]["train_loss"], eager["metrics"]["train_loss"],
                               rtol=1e-4)
    np.testing.assert_allclose(compiled["metrics"]["test_acc"], eager["metrics"]["test_acc"],
                               atol=0.6)
    specs = [make_spec(method="jocor", seed=s, train=train) for s in (1, 2)]
    fused = run_fused(specs, device="cpu", compile=True)
    for spec, rec in zip(specs, fused):
        alone = engine.run(spec, device="cpu")
        assert rec["status"] == "ok", rec["error"]
        np.testing.assert_allclose(rec["metrics"]["train_loss"], alone["metrics"]["train_loss"],
                                   rtol=1e-4)
