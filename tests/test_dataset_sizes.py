"""The sizes each in-memory dataset is registered with are the sizes its loader returns."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.data import load_dataset
from bench.image_data import DatasetSizes
from bench.registry import DATASETS

# The files under DATA_ROOT whose presence means the dataset can be loaded (none: embedded).
REQUIRED_FILES = {
    "digits": (),
    "mnist": ("MNIST/raw/train-images-idx3-ubyte",),
    "fashion-mnist": ("FashionMNIST/raw/train-images-idx3-ubyte",),
    "cifar10": ("cifar-10-batches-py/data_batch_1",),
    "cifar100": ("cifar-100-python/train",),
    "cifar10n": ("cifar-10-batches-py/data_batch_1", "CIFAR-10N/CIFAR-10_human.pt"),
    "cifar100n": ("cifar-100-python/train", "CIFAR-10N/CIFAR-100_human.pt"),
}
# the loaders of bench.data hold their images in memory; bench.data_real's read files lazily
IN_MEMORY = [name for name in DATASETS.names() if DATASETS.get(name).__module__ == "bench.data"]


def test_every_in_memory_dataset_is_checked() -> None:
    assert set(IN_MEMORY) == set(REQUIRED_FILES)


@pytest.mark.parametrize("name", IN_MEMORY)
def test_declared_sizes_equal_the_loaded_dataset(name, data_root: Path) -> None:
    missing = [f for f in REQUIRED_FILES[name] if not (data_root / f).is_file()]
    if missing:
        pytest.skip(f"{name} is not under {data_root} (no {', '.join(missing)})")
    data = load_dataset(name, root=data_root, verify=False)
    loaded = DatasetSizes(train=len(data.train_labels), test=len(data.test_labels),
                          shape=data.image_shape, classes=data.num_classes)
    assert DATASETS.meta(name)["sizes"] == loaded
