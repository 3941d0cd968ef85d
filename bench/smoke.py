"""Smoke runs: a reduced copy of a run, to check in seconds that its path trains.

A smoke run trains on the first images of the run's data for a few epochs; its limits enter its
configuration, so its run_id is never a full run's, and its records go to their own folder
(``SMOKE_RESULTS``), never to ``results/``.
"""

from __future__ import annotations

import dataclasses

from bench.errors import ConfigError
from bench.spec import RunSpec, resolve_method_params

SMOKE_RESULTS = "smoke"   # the default records folder of smoke runs (never results/)


def smoke_spec(spec: RunSpec, *, limit_train: int | None = None, limit_test: int | None = None,
               epochs: int | None = None, method_params: dict | None = None) -> RunSpec:
    """A reduced copy of a run, to check that its path trains: never a result.

    limit_train: train on the first N training images (noise is drawn on them); limit_test:
    score the first M test images (default: as many as ``limit_train``, at most all); epochs:
    train E epochs from the run's start epoch; method_params: parameters changed on top of the
    run's (e.g. a shorter warm-up, so that E epochs reach every phase), checked again. The
    limits become part of the configuration, so the run_id differs from the full run's, and
    the record says ``smoke: true``.
    """
    for flag, value in (("limit-train", limit_train), ("limit-test", limit_test),
                        ("epochs", epochs)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"--{flag} must be a positive integer, got {value!r}")
    train = spec.train
    if epochs is not None:
        train = dataclasses.replace(train, epochs=train.start_epoch + epochs)
    params = spec.method_params
    if method_params:
        params = resolve_method_params(spec.method, {**params, **method_params},
                                       dataset=spec.dataset, noise_type=spec.noise_type,
                                       noise_rate=spec.noise_rate)
    if limit_test is None:
        limit_test = limit_train
    limits = {"limit_train": limit_train, "limit_test": limit_test,
              "epochs": train.epochs - train.start_epoch}
    return dataclasses.replace(spec, train=train, method_params=params, smoke_limits=limits)
