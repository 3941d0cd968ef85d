"""Every method x network of every CIFAR-10 grid trains on real CIFAR-10 images (slow, CPU).

The grids are read from bench/grids/: each one whose dataset is cifar10 or cifar10n (its images
are CIFAR-10's) contributes one smoke cell per (method, network): 128 training and 128 test
images, two epochs, with the phase parameters of tests/test_runner.py so that both epochs are
not spent in a warm-up. The seconds per cell are printed (``pytest -s``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import pytest

from bench import engine
from bench.config import load_grid, smoke_spec
from bench.registry import METHODS
from tests.conftest import REPO, real_data_root
from tests.test_runner import TINY_PARAMS

CIFAR10_IMAGES = ("cifar10", "cifar10n")


def cifar10_cells() -> list:
    """One run per (grid, method, network) of the grids on CIFAR-10 images."""
    cells, seen = [], set()
    for path in sorted((REPO / "bench" / "grids").glob("*.yaml")):
        for run in load_grid(path).runs:
            key = (run.grid, run.method, run.network)
            if run.dataset in CIFAR10_IMAGES and key not in seen:
                seen.add(key)
                cells.append(run)
    return cells


CELLS = cifar10_cells()


def test_the_cifar10_grids_are_found() -> None:
    grids = {c.grid for c in CELLS}
    assert {"jocor_cifar10", "dividemix_cifar10", "cifar10n"} <= grids


@pytest.mark.slow
@pytest.mark.parametrize("run", CELLS, ids=[f"{c.grid}-{c.method}-{c.network}" for c in CELLS])
def test_the_cell_trains_on_real_cifar10(run) -> None:
    root = real_data_root()
    if root is None or not (Path(root) / "cifar-10-batches-py").is_dir():
        pytest.skip("the real CIFAR-10 files are absent (DATA_ROOT/cifar-10-batches-py)")
    fields = {f.name for f in dataclasses.fields(METHODS.get(run.method).Config)}
    params = {k: v for k, v in TINY_PARAMS.get(run.method, {}).items() if k in fields}
    spec = smoke_spec(run, limit_train=128, limit_test=128, epochs=2, method_params=params)
    t0 = time.perf_counter()
    record = engine.run(spec, device="cpu", data_root=root, verify_data=False)
    seconds = time.perf_counter() - t0
    print(f"\nsmoke {run.grid} {run.method} {run.network} {run.noise_label}: {seconds:.1f} s")
    assert record["status"] == "ok", record["error"]
    assert record["smoke"] is True
    metrics = record["metrics"]
    assert len(metrics["epoch"]) == 2
    assert all(math.isfinite(v) for v in metrics["train_loss"])
    assert all(0.0 <= a <= 100.0 for a in metrics["test_acc"])
