"""The throughput benchmark (bench.perf, bench.perf_steps): end to end on CPU, no timing
asserted beyond its being positive."""

from __future__ import annotations

import json

import pytest
import torch

from bench import perf, perf_steps
from bench.cost_model import H100_TARGETS


def test_benchmark_writes_markdown_and_json(tmp_path) -> None:
    out = tmp_path / "perf.md"
    code = perf.main(["--device", "cpu", "--network", "mlp", "--steps", "3", "--warmup", "1",
                      "--runs", "2", "--threads", "1", "--no-grid-estimate", "--out", str(out)])
    assert code == 0
    text = out.read_text()
    for label in perf.MODE_LABELS.values():
        assert f"| mlp | 1x28x28 | {label} |" in text
    assert "(b)/(a) = " in text and "(c)/(a) = " in text
    assert "CPU only" in text and "achieved GFLOP/s" in text
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["device_type"] == "cpu" and data["torch"]
    assert [r["mode"] for r in data["rows"]] == list(perf.MODES)
    for row in data["rows"]:
        assert row.get("error") is None
        assert row["steps"] == 3 and row["images_per_s"] > 0 and row["flops_per_s"] > 0
        # network-images: both networks of each run, over the timed seconds
        assert row["images_per_s"] == pytest.approx(
            3 * 2 * 128 * row["runs"] / row["seconds"])
    assert data["rows"][2]["runs"] == 2
    assert set(data["ratios"]["mlp"]) == {"engine", "fused"}
    assert all(v > 0 for v in data["ratios"]["mlp"].values())


def test_quick_measures_the_cheapest_network_briefly(monkeypatch, tmp_path) -> None:
    seen = {}

    def fake_run_benchmark(**kwargs):
        seen.update(kwargs)
        return {"date": "d", "device": "cpu", "device_type": "cpu", "torch": "t", "python": "p",
                "batch": 128, "runs": 2, "compile": False, "workers": 0, "rows": [],
                "ratios": {}}

    monkeypatch.setattr(perf, "run_benchmark", fake_run_benchmark)
    assert perf.main(["--device", "cpu", "--quick", "--no-grid-estimate",
                      "--out", str(tmp_path / "p.md")]) == 0
    assert seen["networks"] == ["mlp"] and seen["min_seconds"] == 0.2


def test_default_networks_come_from_the_registry_by_cost() -> None:
    cpu, cuda = perf.default_networks(cuda=False), perf.default_networks(cuda=True)
    assert cpu == ["mlp", "lenet", "cnn6"]
    assert cuda == ["cnn9", "preact_resnet18", "cnn6"]
    assert set(cpu + cuda) <= set(H100_TARGETS)


def test_ratios_are_to_the_reference_row() -> None:
    rows: list[dict] = [{"network": "a", "mode": "reference", "images_per_s": 10.0},
                        {"network": "a", "mode": "engine", "images_per_s": 30.0},
                        {"network": "a", "mode": "fused", "images_per_s": None},
                        {"network": "b", "mode": "engine", "images_per_s": 5.0}]
    assert perf.ratios(rows) == {"a": {"engine": 3.0, "fused": None}, "b": {"engine": None}}


def test_a_failing_path_is_a_row_with_its_error(monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("no kernel")

    monkeypatch.setattr(perf, "engine_step", broken)
    row = perf.measure("mlp", "engine", device=torch.device("cpu"), batch=8, runs=1, warmup=0,
                       steps=1, min_seconds=0.01, workers=0, compile=False)
    assert row["images_per_s"] is None and row["error"] == "RuntimeError: no kernel"


def test_the_engine_step_updates_both_networks(monkeypatch) -> None:
    contexts = []
    real = perf_steps.synthetic_context

    def keep(*args, **kwargs):
        contexts.append(real(*args, **kwargs))
        return contexts[-1]

    monkeypatch.setattr(perf_steps, "synthetic_context", keep)
    torch.manual_seed(0)
    step = perf_steps.engine_step("mlp", (1, 8, 8), batch=16, device=torch.device("cpu"), n=64)
    (ctx,) = contexts
    optimizers = [opt for opt, _ in ctx._optimizers]
    assert len(optimizers) == perf_steps.NETWORKS_PER_RUN

    def params(opt):
        return [p.detach().clone() for group in opt.param_groups for p in group["params"]]

    before = [params(opt) for opt in optimizers]
    step()
    for old, opt in zip(before, optimizers):
        assert any(not torch.equal(a, b) for a, b in zip(old, params(opt)))


def test_time_steps_counts_what_it_timed() -> None:
    calls = []
    steps, per_step = perf_steps.time_steps(lambda: calls.append(1), warmup=2, steps=5,
                                            min_seconds=0.01)
    assert steps == 5 and len(calls) >= 7 and per_step > 0   # Timer warms up too
    calls.clear()
    steps, per_step = perf_steps.time_steps(lambda: calls.append(1), warmup=0, steps=None,
                                            min_seconds=0.05)
    assert steps >= 1 and len(calls) >= steps and per_step > 0


def test_cli_forwards_to_perf_main(monkeypatch) -> None:
    from bench.__main__ import main

    seen = []

    def fake_main(argv=None) -> int:
        seen.append(argv)
        return 0

    monkeypatch.setattr(perf, "main", fake_main)
    assert main(["perf", "--device", "cpu", "--steps", "2"]) == 0
    assert seen == [["--device", "cpu", "--steps", "2"]]


def test_perf_arguments_after_a_separator() -> None:
    args = perf.parse_args(["--", "--device", "cpu", "--steps", "2"])
    assert args.device == "cpu" and args.steps == 2


def test_the_dry_runs_entry_points_stay_importable_from_perf() -> None:
    from bench import cost_model, cpu_cost

    assert perf.estimate_grid_hours is cost_model.estimate_grid_hours
    assert perf.estimate_grid_cpu_hours is cpu_cost.estimate_grid_cpu_hours
    assert perf.H100_TARGETS is cost_model.H100_TARGETS
