"""What every dataset loader returns, the sizes it declares, and where dataset files are read from.

A module of its own below both loader modules (:mod:`bench.data`, the in-memory datasets, and
:mod:`bench.data_real`, the file-backed ones), so that neither needs the other.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class DatasetSizes:
    """The sizes a dataset's loader returns, stated at its registration
    (``@DATASETS.register(name, sizes=DatasetSizes(...))``) so that a grid can be costed
    without reading a file (:mod:`bench.cost_model`).

    train, test: images in the training and test sets; shape: one image's (C, H, W);
    classes: the number of classes.
    """

    train: int
    test: int
    shape: tuple[int, int, int]
    classes: int


@dataclass
class ImageData:
    """One dataset, train and test.

    train_images: (N, C, H, W) uint8 tensor, or a lazy file-backed image set (bench.data_real).
    train_labels: (N,) int64 clean labels; -1 where the clean label is unknown.
    test_images: (M, C, H, W) uint8 tensor or lazy image set; test_labels: (M,) int64.
    human_labels: label-set name -> (N,) int64, for datasets with real annotations (CIFAR-N).
    mean, std: per-channel statistics for the methods that normalise (DivideMix, RSL).
    val_images, val_labels: a clean validation set held out of the training images
        (:func:`bench.data.hold_out_clean`), or None.
    """

    name: str
    train_images: Any
    train_labels: np.ndarray
    test_images: Any
    test_labels: np.ndarray
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    human_labels: dict[str, np.ndarray] = field(default_factory=dict)
    default_noise_variant: str | None = None
    val_images: Any = None
    val_labels: np.ndarray | None = None

    @property
    def in_memory(self) -> bool:
        return isinstance(self.train_images, torch.Tensor)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:]) if self.in_memory else self.train_images.shape


def data_root() -> Path:
    """The folder datasets are read from: ``DATA_ROOT`` (environment variable), else ``./data``."""
    return Path(os.environ.get("DATA_ROOT", "./data")).expanduser()
