"""Smoke runs: a grid's cells on a stated subset for a stated number of epochs, never results."""

from __future__ import annotations

import json

import pytest

from bench import engine
from bench.__main__ import main as bench_main
from bench.config import load_grid, smoke_spec
from bench.errors import ConfigError
from bench.report import ReportError, load_runs

GRID = {"name": "g", "dataset": "digits", "network": "mlp",
        "train": {"epochs": 5, "start_epoch": 1, "batch_size": 32},
        "methods": {"standard": {}, "f_correction": {"estimation_epochs": 3}},
        "noise": [{"type": "symmetric", "rate": 0.2}], "seeds": 1}


def test_a_smoke_spec_cuts_the_data_and_the_epochs_and_has_its_own_run_id(write_grid) -> None:
    full = load_grid(write_grid(GRID)).runs[0]
    smoke = smoke_spec(full, limit_train=100, epochs=2)
    assert smoke.run_id != full.run_id
    assert "smoke_limits" not in full.config_dict()           # full runs keep their run_ids
    assert smoke.smoke_limits == {"limit_train": 100, "limit_test": 100, "epochs": 2}
    assert (smoke.train.start_epoch, smoke.train.epochs) == (1, 3)
    record = engine.run(smoke, device="cpu")
    assert record["status"] == "ok", record["error"]
    assert record["smoke"] is True and record["smoke_limits"] == smoke.smoke_limits
    assert record["metrics"]["epoch"] == [1, 2]
    data, noisy, _ = engine.prepare(smoke, engine.pick_device("cpu"))
    assert (len(data.train_labels), len(noisy), len(data.test_labels)) == (100, 100, 100)


def test_full_records_carry_no_smoke_mark(write_grid) -> None:
    full = load_grid(write_grid({**GRID, "train": {"epochs": 2, "batch_size": 64}})).runs[0]
    assert "smoke" not in engine.run(full, device="cpu")


def test_smoke_params_reach_a_later_phase_and_are_checked(write_grid) -> None:
    run = load_grid(write_grid(GRID)).runs[1]                  # f_correction, estimation 3
    smoke = smoke_spec(run, limit_train=200, epochs=2, method_params={"estimation_epochs": 1})
    record = engine.run(smoke, device="cpu")
    assert record["metrics"]["extra"]["stage"] == [1.0, 2.0]
    with pytest.raises(ConfigError, match="estimation_epochs"):
        smoke_spec(run, method_params={"estimation_epochs": 0})
    with pytest.raises(ConfigError, match="--epochs must be a positive integer"):
        smoke_spec(run, epochs=0)


def test_the_cli_writes_smoke_records_apart_and_the_report_skips_them(tmp_path, write_grid,
                                                                      capsys) -> None:
    path = write_grid(GRID)
    folder = tmp_path / "smoke"
    assert bench_main(["run", str(path), "--limit-train", "120", "--epochs", "1",
                       "--results", str(folder), "--no-progress"]) == 0
    records = sorted((folder / "g").glob("*.json"))
    assert len(records) == 2
    assert all(json.loads(p.read_text())["smoke"] is True for p in records)
    with pytest.raises(ReportError, match="no successful runs"):
        load_runs(folder, "g")


def test_the_cli_refuses_to_write_smoke_runs_to_results(tmp_path, write_grid, capsys) -> None:
    path = write_grid(GRID)
    assert bench_main(["run", str(path), "--limit-train", "50",
                       "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "never written to results/" in err
    assert not (tmp_path / "results").exists()
