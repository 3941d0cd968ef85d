"""The cost model (bench.cost_model, bench.cpu_cost): FLOPs, the registries' cost metadata,
GPU- and CPU-hour estimates."""

from __future__ import annotations

import dataclasses
import json

import pytest

from bench import cost_model, cpu_cost
from bench.config import RunSpec, TrainConfig
from bench.image_data import DatasetSizes
from bench.registry import DATASETS, METHODS, NETWORKS
from methods.base import BatchMethod

# Forward MACs of one image, as the forward-hook counter that FlopCounterMode replaced gave
# them (per conv: output elements x in_channels / groups x kernel area; per linear: output
# elements x in_features), recorded for every registered network at its benchmark input
# before the switch. Two are also closed forms: the MLP's 784*256 + 256*10, and LeNet's on
# 3x32x32, 28*28*6*3*25 + 10*10*16*6*25 + 400*120 + 120*84 + 84*10 (conv, conv, three linear).
HOOK_COUNTED_MACS = [
    ("mlp", (1, 28, 28), 10, 203_264),
    ("mlp", (1, 28, 28), 100, 226_304),
    ("mlp", (1, 8, 8), 10, 18_944),
    ("mlp_patrini", (1, 28, 28), 10, 118_016),
    ("lenet", (3, 32, 32), 10, 651_720),
    ("lenet", (1, 28, 28), 100, 289_200),
    ("cnn6", (3, 32, 32), 10, 112_400_896),         # performance notes 3.2: 112.4 M
    ("cnn6", (3, 32, 32), 100, 112_423_936),
    ("cnn9", (3, 32, 32), 10, 745_538_816),         # 745.5 M
    ("cnn9", (1, 28, 28), 10, 561_532_160),         # 561.5 M on MNIST
    ("preact_resnet18", (3, 32, 32), 10, 555_422_720),
    ("preact_resnet18", (1, 8, 8), 100, 34_691_072),
    ("wrn28_2", (3, 32, 32), 10, 214_353_152),
    ("resnet18", (3, 32, 32), 10, 37_016_576),
    ("resnet50", (3, 32, 32), 100, 83_615_744),
]


@pytest.mark.parametrize("network,shape,classes,macs", HOOK_COUNTED_MACS)
def test_forward_macs_equal_the_hook_counts(network, shape, classes, macs) -> None:
    assert cost_model.forward_macs(network, in_channels=shape[0], image_size=shape[1],
                                   num_classes=classes) == macs
    assert cost_model.train_flops_per_image(network, shape, classes) == 6 * macs


def test_every_registered_network_has_a_benchmark_input() -> None:
    shapes = {n: cost_model.input_shape(n) for n in NETWORKS.names()}
    assert shapes["mlp"] == shapes["mlp_patrini"] == (1, 28, 28)
    assert {shapes[n] for n in ("cnn6", "cnn9", "lenet", "preact_resnet18")} == {(3, 32, 32)}


def test_every_registered_name_has_cost_metadata() -> None:
    for name in DATASETS.names():
        assert isinstance(cost_model.declared_sizes(name), DatasetSizes), name
    for name in METHODS.names():
        cost = cost_model.declared_cost(name)
        assert cost is not None, f"{name} declares no training_passes / eval_networks"
        assert cost.training_passes is None or cost.training_passes > 0, name
        assert cost.eval_networks >= 1, name
    assert set(cost_model.H100_TARGETS) <= set(NETWORKS.names())


def test_a_batch_method_costs_one_pass_and_one_evaluation_per_network() -> None:
    batch = [n for n in METHODS.names() if issubclass(METHODS.get(n), BatchMethod)]
    assert {METHODS.get(n).num_networks for n in batch} == {1, 2}
    for name in batch:
        networks = METHODS.get(name).num_networks
        assert cost_model.method_cost(name) == (float(networks), networks), name


@pytest.mark.parametrize("method", ["standard", "jocor", "self_learning", "rsl_wm"])
def test_network_images_read_the_declared_cost(method) -> None:
    spec = _spec(method, dataset="mnist", epochs=3, batch_size=128, drop_last=True)
    cls, sizes = METHODS.get(method), DATASETS.meta("mnist")["sizes"]
    per_epoch = sizes.train - sizes.train % 128
    assert cost_model.network_images(spec) == pytest.approx(
        3 * (cls.training_passes * per_epoch + cls.eval_networks * sizes.test / 3))


def _spec(method="standard", *, network="cnn6", dataset="cifar10", epochs=10, seed=1,
          grid="g", **train) -> RunSpec:
    return RunSpec(grid=grid, label=method, method=method, method_params={}, dataset=dataset,
                   network=network, noise_type="symmetric", noise_rate=0.5, seed=seed,
                   train=TrainConfig(epochs=epochs, **train))


def test_estimate_is_positive_and_monotone_in_epochs() -> None:
    table = {"cnn6": 150_000.0}
    hours = [cost_model.estimate_grid_hours([_spec(epochs=e)], throughput=table)["gpu_hours"]
             for e in (5, 10, 20)]
    assert 0 < hours[0] < hours[1] < hours[2]
    # 10 epochs x 50,000 images + 10 x 10,000 test forwards / 3, at 150k images/s
    assert hours[1] == pytest.approx((10 * 50_000 + 10 * 10_000 / 3) / 150_000 / 3600)


def test_estimate_scales_with_methods_networks_and_throughput() -> None:
    specs = [_spec("standard"), _spec("jocor"), _spec("dividemix", network="preact_resnet18"),
             _spec("coteaching", network="cnn9", dataset="mnist", grid="h")]
    est = cost_model.estimate_grid_hours(specs)
    assert est["runs"] == 4 and est["gpu_hours"] == pytest.approx(sum(est["by_grid"].values()))
    assert set(est["by_grid"]) == {"g", "h"}
    assert est["by_method"]["jocor"] > 1.9 * est["by_method"]["standard"]
    assert est["by_method"]["dividemix"] > est["by_method"]["jocor"]
    slower = cost_model.estimate_grid_hours(specs, throughput={
        k: v / 2 for k, v in cost_model.H100_TARGETS.items()})
    assert slower["gpu_hours"] == pytest.approx(2 * est["gpu_hours"])
    # a pure function of the specs: the same specs give the same answer
    assert cost_model.estimate_grid_hours(specs) == est
    # more iterations cost more; a per-epoch cap costs less
    capped = dataclasses.replace(specs[0], train=TrainConfig(epochs=10, max_iters_per_epoch=100))
    assert cost_model.estimate_run_hours(capped) < cost_model.estimate_run_hours(specs[0])
    # a network without a target runs at 200 TFLOP/s of its FLOPs
    wrn = _spec(network="wrn28_2")
    flops = cost_model.train_flops_per_image("wrn28_2", (3, 32, 32))
    assert cost_model.estimate_run_hours(wrn) == pytest.approx(
        cost_model.network_images(wrn) * flops / cost_model.REALISTIC_FLOPS / 3600)


def test_names_without_facts_are_costed_by_fallbacks_and_said_so() -> None:
    odd = _spec(network="mlp", dataset="synthetic")
    odd = dataclasses.replace(odd, method="unregistered")
    assert cost_model.network_images(odd) == cost_model.network_images(
        _spec(network="mlp", dataset="cifar10"))
    assumptions = cost_model.estimate_grid_hours([odd])["assumptions"]
    assert "CIFAR-10 sizes assumed for synthetic" in assumptions
    assert "one training pass per epoch for unregistered" in assumptions


def test_registered_names_without_declarations_fall_back_too(monkeypatch) -> None:
    class Undeclared:
        """A method class that states no cost."""

    METHODS.names()       # the built-in methods first
    monkeypatch.setitem(METHODS._items, "undeclared", Undeclared)
    monkeypatch.setitem(DATASETS._items, "sizeless", DATASETS.get("cifar10"))
    spec = dataclasses.replace(_spec(network="mlp", dataset="sizeless"), method="undeclared")
    assert cost_model.declared_cost("undeclared") is None
    assert cost_model.declared_sizes("sizeless") is None
    assert cost_model.network_images(spec) == cost_model.network_images(
        _spec(network="mlp", dataset="cifar10"))
    assumptions = cost_model.estimate_grid_hours([spec])["assumptions"]
    assert "CIFAR-10 sizes assumed for sizeless" in assumptions
    assert "one training pass per epoch for undeclared" in assumptions


def test_measured_gpu_throughput_overrides_targets(tmp_path) -> None:
    path = tmp_path / "perf.json"
    rows = [{"network": "cnn6", "mode": "reference", "images_per_s": 10.0},
            {"network": "cnn6", "mode": "engine", "images_per_s": 90_000.0},
            {"network": "cnn6", "mode": "fused", "images_per_s": 200_000.0},
            {"network": "cnn9", "mode": "fused", "images_per_s": None}]
    path.write_text(json.dumps({"device_type": "cuda", "rows": rows}))
    assert cost_model.measured_throughput(path) == {"cnn6": 200_000.0}
    path.write_text(json.dumps({"device_type": "cpu", "rows": rows}))
    assert cost_model.measured_throughput(path) == {}
    assert cost_model.measured_throughput(tmp_path / "missing.json") == {}


def test_cnn6_fused_rate_is_named_only_for_grids_with_cnn6() -> None:
    with_cnn6 = cost_model.estimate_grid_hours([_spec(network="cnn6")])["assumptions"]
    without = cost_model.estimate_grid_hours([_spec(network="mlp", dataset="mnist")])["assumptions"]
    assert any("cnn6 at its fused rate" in a for a in with_cnn6)
    assert not any("cnn6" in a for a in without)


def test_cpu_estimate_calibrates_once_then_reads_the_cache(tmp_path, monkeypatch) -> None:
    """CPU-hours = the same network-images as the GPU estimate / this CPU's measured rate of
    each (network, input shape, classes, batch); a second estimate reads the cached rate."""
    calls = []
    real = cpu_cost.calibrate_cpu

    def counted(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(cpu_cost, "calibrate_cpu", counted)
    cache = tmp_path / "perf-cpu.json"
    specs = [_spec(network="mlp", dataset="digits", epochs=e, batch_size=64) for e in (2, 4)]
    first = cpu_cost.estimate_grid_cpu_hours(specs, threads=1, cache=cache)
    assert calls == [("mlp", (1, 8, 8), 10, 64)]
    (label, rate), = first["rates"].items()
    assert label == "mlp 1x8x8 10 classes batch 64" and rate > 0
    assert first["sources"] == {label: "measured now"} and first["threads"] == 1
    expected = sum(cost_model.network_images(s) for s in specs) / rate / 3600
    assert first["cpu_hours"] == pytest.approx(expected)
    second = cpu_cost.estimate_grid_cpu_hours(specs, threads=1, cache=cache)
    assert len(calls) == 1 and second["sources"] == {label: "cached"}
    assert second["cpu_hours"] == pytest.approx(first["cpu_hours"])
    assert json.loads(cache.read_text())[first["device"]] == {label: rate}
    assert [p.name for p in tmp_path.iterdir()] == ["perf-cpu.json"]   # no temporary left
    # without calibration an unknown combination gives no total rather than a guess
    other = cpu_cost.estimate_grid_cpu_hours([_spec(network="mlp", dataset="mnist")],
                                             cache=cache, calibrate=False)
    assert other["cpu_hours"] is None and set(other["sources"].values()) == {"unmeasured"}


def test_a_cache_that_cannot_be_written_only_means_measuring_again(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    cpu_cost.write_cache(blocker / "perf-cpu.json", {"cpu": {"x": 1.0}})   # parent is a file
    assert cpu_cost.read_cache(blocker / "perf-cpu.json") == {}
    cache = tmp_path / "perf-cpu.json"
    cpu_cost.write_cache(cache, {"cpu": {"x": 1.0}})
    cpu_cost.write_cache(cache, {"cpu": {"x": 2.0}})
    assert cpu_cost.read_cache(cache) == {"cpu": {"x": 2.0}}


def test_the_cache_lives_where_the_environment_says(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LNLBENCH_CACHE", str(tmp_path / "a"))
    assert cpu_cost.cache_path() == tmp_path / "a" / "perf-cpu.json"
    monkeypatch.delenv("LNLBENCH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cpu_cost.cache_path() == tmp_path / "x" / "lnlbench" / "perf-cpu.json"
