"""Shared fixtures: the real-data folder, a grid-file writer, small run specs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]

# The tests train tiny networks, which gain nothing from intra-op threads; on a loaded machine
# competing OpenMP threads make them ten times slower. OMP_NUM_THREADS overrides.
if "OMP_NUM_THREADS" not in os.environ:
    torch.set_num_threads(1)


def real_data_root() -> Path | None:
    """``DATA_ROOT`` if set, else ``../shared/data`` beside the repository (as the Makefile)."""
    env = os.environ.get("DATA_ROOT")
    path = Path(env).expanduser() if env else REPO.parent / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture
def data_root() -> Path:
    """The folder of the real data files; skips the test when there is none."""
    root = real_data_root()
    if root is None:
        pytest.skip("no real data: set DATA_ROOT to the folder of MNIST/, CIFAR-10N/, ...")
    return root


@pytest.fixture
def write_grid(tmp_path: Path) -> Callable[..., Path]:
    """``write_grid(grid: dict | str, name="g") -> Path`` of a YAML grid file in tmp_path."""

    def write(grid: dict[str, Any] | str, name: str = "g") -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(grid if isinstance(grid, str) else yaml.safe_dump(grid, sort_keys=False))
        return path

    return write


@pytest.fixture
def make_spec() -> Callable[..., Any]:
    """``make_spec(**fields)``: a RunSpec on digits with a tiny training config by default."""
    from bench.config import RunSpec, TrainConfig, resolve_method_params

    def make(*, method: str = "standard", method_params: dict | None = None,
             train: dict | None = None, **fields: Any):
        fields.setdefault("dataset", "digits")
        fields.setdefault("network", "mlp")
        fields.setdefault("noise_type", "symmetric")
        fields.setdefault("noise_rate", 0.2 if fields["noise_type"] not in ("none", "human")
                          else None)
        cfg = {"epochs": 2, "batch_size": 64, "lr": 0.001, **(train or {})}
        params = resolve_method_params(method, method_params or {}, dataset=fields["dataset"],
                                       noise_type=fields["noise_type"],
                                       noise_rate=fields["noise_rate"])
        return RunSpec(grid="test", label=method, method=method, method_params=params,
                       train=TrainConfig(**cfg), **fields)

    return make
