"""The throughput benchmark (end to end on CPU, no timing asserted) and the grid-cost estimate."""

from __future__ import annotations

import dataclasses
import json

import pytest

from bench import perf
from bench.config import RunSpec, TrainConfig


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
    assert data["rows"][2]["runs"] == 2
    assert set(data["ratios"]["mlp"]) == {"engine", "fused"}
    assert all(v > 0 for v in data["ratios"]["mlp"].values())


def test_cli_forwards_to_perf_main(monkeypatch) -> None:
    from bench.__main__ import main

    seen = []
    monkeypatch.setattr(perf, "main", lambda argv=None: seen.append(argv) or 0)
    assert main(["perf", "--device", "cpu", "--steps", "2"]) == 0
    assert seen == [["--device", "cpu", "--steps", "2"]]


def test_perf_arguments_after_a_separator() -> None:
    args = perf.parse_args(["--", "--device", "cpu", "--steps", "2"])
    assert args.device == "cpu" and args.steps == 2


@pytest.mark.parametrize("network,shape,macs", [
    ("mlp", (1, 28, 28), 203_264),              # 784*256 + 256*10
    ("cnn6", (3, 32, 32), 112_400_896),         # performance notes 3.2: 112.4 M
    ("cnn9", (3, 32, 32), 745_538_816),         # 745.5 M
    ("cnn9", (1, 28, 28), 561_532_160),         # 561.5 M on MNIST
    ("preact_resnet18", (3, 32, 32), 555_422_720),  # 555.4 M
])
def test_forward_macs_match_hand_counts(network, shape, macs) -> None:
    assert perf.forward_macs(network, in_channels=shape[0], image_size=shape[1],
                             num_classes=10) == macs
    assert perf.train_flops_per_image(network, shape) == 6 * macs


def _spec(method="standard", *, network="cnn6", dataset="cifar10", epochs=10, seed=1,
          grid="g", **train) -> RunSpec:
    return RunSpec(grid=grid, label=method, method=method, method_params={}, dataset=dataset,
                   network=network, noise_type="symmetric", noise_rate=0.5, seed=seed,
                   train=TrainConfig(epochs=epochs, **train))


def test_estimate_is_positive_and_monotone_in_epochs() -> None:
    table = {"cnn6": 150_000.0}
    hours = [perf.estimate_grid_hours([_spec(epochs=e)], throughput=table)["gpu_hours"]
             for e in (5, 10, 20)]
    assert 0 < hours[0] < hours[1] < hours[2]
    # 10 epochs x 50,000 images + 10 x 10,000 test forwards / 3, at 150k images/s
    assert hours[1] == pytest.approx((10 * 50_000 + 10 * 10_000 / 3) / 150_000 / 3600)


def test_estimate_scales_with_methods_networks_and_throughput() -> None:
    specs = [_spec("standard"), _spec("jocor"), _spec("dividemix", network="preact_resnet18"),
             _spec("coteaching", network="cnn9", dataset="mnist", grid="h")]
    est = perf.estimate_grid_hours(specs)
    assert est["runs"] == 4 and est["gpu_hours"] == pytest.approx(sum(est["by_grid"].values()))
    assert set(est["by_grid"]) == {"g", "h"}
    assert est["by_method"]["jocor"] > 1.9 * est["by_method"]["standard"]
    assert est["by_method"]["dividemix"] > est["by_method"]["jocor"]
    slower = perf.estimate_grid_hours(specs, throughput={k: v / 2 for k, v in
                                                         perf.H100_TARGETS.items()})
    assert slower["gpu_hours"] == pytest.approx(2 * est["gpu_hours"])
    # a pure function of the specs: the same specs give the same answer
    assert perf.estimate_grid_hours(specs) == est
    # more iterations cost more; a per-epoch cap costs less
    capped = dataclasses.replace(specs[0], train=TrainConfig(epochs=10, max_iters_per_epoch=100))
    assert perf.estimate_run_hours(capped) < perf.estimate_run_hours(specs[0])
    # a network without a target runs at 200 TFLOP/s of its FLOPs
    wrn = _spec(network="wrn28_2")
    assert perf.estimate_run_hours(wrn) > 0


def test_measured_gpu_throughput_overrides_targets(tmp_path) -> None:
    path = tmp_path / "perf.json"
    rows = [{"network": "cnn6", "mode": "reference", "images_per_s": 10.0},
            {"network": "cnn6", "mode": "engine", "images_per_s": 90_000.0},
            {"network": "cnn6", "mode": "fused", "images_per_s": 200_000.0},
            {"network": "cnn9", "mode": "fused", "images_per_s": None}]
    path.write_text(json.dumps({"device_type": "cuda", "rows": rows}))
    assert perf.measured_throughput(path) == {"cnn6": 200_000.0}
    path.write_text(json.dumps({"device_type": "cpu", "rows": rows}))
    assert perf.measured_throughput(path) == {}
    assert perf.measured_throughput(tmp_path / "missing.json") == {}


def test_cpu_estimate_calibrates_once_then_reads_the_cache(tmp_path, monkeypatch) -> None:
    """CPU-hours = the same network-images as the GPU estimate / this CPU's measured rate of
    each (network, input shape, classes, batch); a second estimate reads the cached rate."""
    calls = []
    real = perf._calibrate_cpu
    monkeypatch.setattr(perf, "_calibrate_cpu",
                        lambda *a: calls.append(a) or real(*a))
    cache = tmp_path / "perf-cpu.json"
    specs = [_spec(network="mlp", dataset="digits", epochs=e, batch_size=64) for e in (2, 4)]
    first = perf.estimate_grid_cpu_hours(specs, threads=1, cache=cache)
    assert calls == [("mlp", (1, 8, 8), 10, 64)]
    (label, rate), = first["rates"].items()
    assert label == "mlp 1x8x8 10 classes batch 64" and rate > 0
    assert first["sources"] == {label: "measured now"} and first["threads"] == 1
    expected = sum(perf._network_images(s) for s in specs) / rate / 3600
    assert first["cpu_hours"] == pytest.approx(expected)
    second = perf.estimate_grid_cpu_hours(specs, threads=1, cache=cache)
    assert len(calls) == 1 and second["sources"] == {label: "cached"}
    assert second["cpu_hours"] == pytest.approx(first["cpu_hours"])
    assert json.loads(cache.read_text())[first["device"]] == {label: rate}
    # without calibration an unknown combination gives no total rather than a guess
    other = perf.estimate_grid_cpu_hours([_spec(network="mlp", dataset="mnist")], cache=cache,
                                         calibrate=False)
    assert other["cpu_hours"] is None and set(other["sources"].values()) == {"unmeasured"}


def test_cnn6_fused_rate_is_named_only_for_grids_with_cnn6() -> None:
    with_cnn6 = perf.estimate_grid_hours([_spec(network="cnn6")])["assumptions"]
    without = perf.estimate_grid_hours([_spec(network="mlp", dataset="mnist")])["assumptions"]
    assert any("cnn6 at its fused rate" in a for a in with_cnn6)
    assert not any("cnn6" in a for a in without)
