"""Parametrised over the registries: a network, method or noise model is tested the moment it is
registered."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

from bench import engine, store
from bench.__main__ import main
from bench.config import RunSpec, TrainConfig, resolve_method_params
from bench.models import build_network
from bench.registry import DATASETS, METHODS, NETWORKS, NOISE_MODELS

# image sizes each network is meant for (28: MNIST, 1 channel; 32: CIFAR, 3 channels); the
# ImageNet ResNets are tried at 64 to stay fast
IMAGE_SIZES = {"mlp": (28, 32), "cnn6": (28, 32), "cnn9": (28, 32), "lenet": (28, 32),
               "preact_resnet18": (32,), "wrn28_2": (32,), "resnet18": (64,), "resnet50": (64,)}
NETWORK_CASES = [(name, size) for name in NETWORKS.names() for size in IMAGE_SIZES.get(name, (32,))]


@pytest.mark.parametrize("name,size", NETWORK_CASES)
def test_network_maps_images_to_logits(name, size) -> None:
    channels = 1 if size == 28 else 3
    for num_classes in (10, 14):
        torch.manual_seed(0)
        net = build_network(name, in_channels=channels, num_classes=num_classes,
                            image_size=size).eval()
        assert isinstance(net.classifier, nn.Linear)
        assert net.classifier.out_features == num_classes
        x = torch.rand(2, channels, size, size)
        with torch.no_grad():
            features = net.features(x)
            logits = net(x)
        assert features.shape == (2, net.classifier.in_features)
        assert logits.shape == (2, num_classes) and torch.isfinite(logits).all()


def count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_parameter_counts_match_the_official_networks() -> None:
    # JoCoR MLPNet: Linear(784, 256) + Linear(256, 10) = 200,960 + 2,570
    assert count(build_network("mlp", in_channels=1, num_classes=10, image_size=28)) == 203_530
    # JoCoR CNN on 32x32x3: convs 1,792 + 36,928 + 73,856 + 147,584 + 225,988 + 28,240, six
    # BatchNorms 2 x (64 + 64 + 128 + 128 + 196 + 16) = 1,192, Linear(256, 10) 2,570
    assert count(build_network("cnn6", in_channels=3, num_classes=10, image_size=32)) == 518_150
    # DivideMix PreResNet.py ResNet18 (PreActBlock [2,2,2,2], BN-free 1x1 shortcuts): 11,171,274.
    # The often-quoted 11,173,962 is the post-activation ResNet-18 (BasicBlock): its three
    # shortcuts carry a BatchNorm (2 x (128 + 256 + 512) = 1,792) and the first BN of each
    # down-sampling block normalises the block's output width, not its input width
    # (2 x (64 + 128 + 256) = 896 more): 1,792 + 896 = 2,688 = 11,173,962 - 11,171,274.
    assert count(build_network("preact_resnet18", in_channels=3, num_classes=10,
                               image_size=32)) == 11_171_274


# ---- every method: one short run on digits ----------------------------------------------------

# small values for parameters that would otherwise postpone a phase past a two-epoch run
SMALL = {"warm_up": 1, "warmup": 1, "warmup_epochs": 1, "sel_epoch": 1, "estimation_epochs": 1,
         "init_epoch": 1, "num_gradual": 1, "init_iters": 5, "m": 64, "num_prototypes": 2,
         "num_batches": 5, "num_samples": 256, "T_k": 1, "iterations": 4}


def small_spec(method: str, **train) -> RunSpec:
    fields = {f.name for f in dataclasses.fields(METHODS.get(method).Config)}
    params = {k: v for k, v in SMALL.items() if k in fields}
    resolved = resolve_method_params(method, params, dataset="digits", noise_type="symmetric",
                                     noise_rate=0.2)
    return RunSpec(grid="registry", label=method, method=method, method_params=resolved,
                   dataset="digits", network="mlp", noise_type="symmetric", noise_rate=0.2,
                   noise_seed=1, seed=1,
                   train=TrainConfig(**{"epochs": 2, "batch_size": 64, **train}))


@pytest.mark.parametrize("method", METHODS.names())
def test_method_contract(method) -> None:
    cls = METHODS.get(method)
    assert cls.report in ("net1", "mean", "ensemble")
    assert dataclasses.is_dataclass(cls.Config) and cls.Config.__dataclass_params__.frozen
    cls.Config()  # every hyper-parameter has a default


@pytest.mark.parametrize("method", METHODS.names())
def test_method_runs_and_writes_a_valid_record(method, tmp_path) -> None:
    spec = small_spec(method)
    record = engine.run(spec, device="cpu", results_dir=tmp_path)
    assert record["status"] == "ok", record["error"]
    on_disk = store.read_record(tmp_path / spec.filename)
    assert store.validate_record(on_disk) == []
    metrics = on_disk["metrics"]
    assert metrics["epoch"] == [0, 1]
    assert all(0.0 <= a <= 100.0 for a in metrics["test_acc"])
    for count_, precision in zip(metrics["selected_count"], metrics["label_precision"]):
        if count_ is not None:
            assert 0 <= count_ <= 1347 and (precision is None or 0.0 <= precision <= 1.0)


@pytest.mark.parametrize("method", METHODS.names())
def test_method_resumes_from_a_checkpoint(method, tmp_path) -> None:
    """A run interrupted after epoch 0 and resumed equals an uninterrupted one (the method's
    state_dict holds everything that carries over between epochs)."""
    spec = small_spec(method, epochs=3)
    full = engine.run(spec, device="cpu")
    assert full["status"] == "ok", full["error"]
    engine.run(spec, device="cpu", checkpoint_dir=tmp_path, checkpoint_every=1,
               stop_after_epoch=0)
    resumed = engine.run(spec, device="cpu", checkpoint_dir=tmp_path)
    assert resumed["status"] == "ok", resumed["error"]
    for key in ("test_acc", "train_loss", "selected_count", "label_precision"):
        assert resumed["metrics"][key] == full["metrics"][key], key


# ---- the CLI lists everything ----------------------------------------------------------------

def test_list_shows_every_registered_name(capsys) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    listed = {line.split()[0] for line in out.splitlines() if line.startswith("  ")}
    for registry in (DATASETS, NOISE_MODELS, NETWORKS, METHODS):
        missing = set(registry.names()) - listed
        assert not missing, f"{registry.kind}s missing from `bench list`: {sorted(missing)}"
    for name in ("clothing1m", "food101n", "webvision", "symmetric_inclusive", "instance"):
        assert name in listed


def test_list_describes_every_entry(capsys) -> None:
    assert main(["list"]) == 0
    entries = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    blank = [line.split()[0] for line in entries if len(line.split()) < 2]
    assert not blank, f"no description in `bench list` for {blank}"


def test_list_shows_every_shipped_grid(capsys) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out.split("grids (bench/grids/):", 1)[1]
    listed = {line.split()[0] for line in out.splitlines() if line.startswith("  ")}
    shipped = {p.stem for p in (Path(__file__).resolve().parents[1] / "bench" / "grids").glob("*.yaml")}
    assert listed == shipped
