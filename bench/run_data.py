"""A run's data: the dataset loaded, the noisy labels drawn, the clean validation split made.

:func:`prepare` is what every run (fused or not) goes through before training: it loads the
dataset (or cuts a smoke run's subset of it), draws the noisy labels from (dataset, noise type,
rate, noise seed), holds a clean validation set out of the training images when
``train.clean_val_fraction`` asks for one, and returns the record's noise fields with it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from bench.config import RunSpec
from bench.data import ImageData, hold_out_clean, load_dataset
from bench.errors import ConfigError
from bench.noise import apply_noise, realised_noise_rate, realised_transition_matrix


def prepare(spec: RunSpec, device: torch.device, *, data_root: str | Path | None = None,
            verify: bool = True, data: ImageData | None = None):
    """Load the data and draw the run's noisy labels: (data, noisy_labels, noise_info).

    noise_info holds the record's noise fields, ``data_split`` (the split sizes) and, under
    ``_nominal_matrix``, the noise model's full-precision matrix (None where it has none) for
    :class:`~bench.context.RunContext`. With ``train.clean_val_fraction`` the data returned is the training
    part, with the held-out clean set as its ``val_images`` / ``val_labels``.
    data: the run's dataset when already loaded (the seeds of a fused cell share it).
    """
    if data is None:
        data = load_dataset(spec.dataset, root=data_root, verify=verify)
    if spec.smoke_limits is not None:
        data = smoke_subset(data, spec.smoke_limits)
    clean = data.train_labels
    features = None
    if spec.noise_type == "instance":
        features = data.train_images.reshape(len(clean), -1).float().div(255.0).numpy()
    human_labels = None
    if spec.noise_type == "human":
        if not data.human_labels:
            raise ConfigError(f"dataset {spec.dataset!r} has no human label sets; use one of "
                              "cifar10n, cifar100n, clothing1m, food101n, webvision")
        variant = spec.noise_variant or data.default_noise_variant
        if variant not in data.human_labels:
            raise ConfigError(f"{spec.dataset} has no label set {variant!r}; known: "
                              f"{', '.join(sorted(data.human_labels))}")
        human_labels = data.human_labels[variant]
    draw = apply_noise(spec.noise_type, clean, num_classes=data.num_classes,
                       rate=spec.noise_rate, noise_seed=spec.noise_seed, dataset=spec.dataset,
                       variant=spec.noise_variant, features=features, human_labels=human_labels,
                       draw=spec.noise_draw)
    data, noisy, split = _split(spec, data, draw.noisy_labels)
    clean = data.train_labels
    known = clean >= 0
    info = {
        "noise_draw": spec.noise_draw,
        "data_split": split,
        "realised_noise_rate": (realised_noise_rate(clean[known], noisy[known])
                                if known.any() else None),
        "transition_matrix": realised_transition_matrix(
            clean[known], noisy[known], data.num_classes).round(6).tolist(),
        "nominal_transition_matrix": (None if draw.nominal_transition_matrix is None else
                                      draw.nominal_transition_matrix.round(6).tolist()),
        # unrounded, for the run's context (popped before the info goes into the record)
        "_nominal_matrix": draw.nominal_transition_matrix,
    }
    return data, noisy, info


def _split(spec: RunSpec, data: ImageData, noisy: np.ndarray):
    """The clean validation split of ``train.clean_val_fraction``: (data, noisy, sizes)."""
    fraction = spec.train.clean_val_fraction
    if fraction == 0:
        return data, noisy, {"train": len(noisy), "clean_val": 0}
    # the noise is drawn on every image first, then the clean split made, as RSL's scripts
    data, noisy = hold_out_clean(data, noisy, fraction=fraction, seed=spec.noise_seed)
    assert data.val_labels is not None, "hold_out_clean returns the clean validation labels"
    return data, noisy, {"train": len(noisy), "clean_val": len(data.val_labels),
                         "clean_val_fraction": fraction, "split_seed": spec.noise_seed}


def smoke_subset(data: ImageData, limits: dict) -> ImageData:
    """The first ``limit_train`` training and ``limit_test`` test images of ``data`` (in memory),
    human label sets cut alike; a smoke run's data (see :func:`bench.config.smoke_spec`)."""
    if not data.in_memory:
        raise ConfigError(f"smoke runs need an in-memory dataset; {data.name} is read from files")
    n, m = limits.get("limit_train"), limits.get("limit_test")
    return dataclasses.replace(
        data, train_images=data.train_images[:n], train_labels=data.train_labels[:n],
        test_images=data.test_images[:m], test_labels=data.test_labels[:m],
        human_labels={k: v[:n] for k, v in data.human_labels.items()})
