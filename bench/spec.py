"""What a run is: its training protocol (:class:`TrainConfig`), its cell (:class:`RunSpec`) and
its id.

A run's ``run_id`` is a hash of its resolved configuration (:meth:`RunSpec.config_dict`), so the
same cell always maps to the same record. Options added after records existed enter that
configuration only away from their defaults, so the run_ids of earlier records stay valid: the
train keys of ``_LATER_DEFAULTS``, a ``noise_draw`` other than the suite's own, and the limits
of a smoke run (:mod:`bench.smoke`).

The choices of the train options (``OPTIMIZERS``, ``SCHEDULES``, ``AUGMENTS``, ``PRECISIONS``)
are declared here once, for :class:`TrainConfig` and for the grid schema (:mod:`bench.schema`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from bench.errors import ConfigError
from bench.registry import METHODS

OPTIMIZERS = ("adam", "sgd", "adagrad")
SCHEDULES = ("constant", "coteaching", "multistep")
AUGMENTS = ("none", "crop_flip")
PRECISIONS = ("fp32", "bf16")
_LATER_DEFAULTS = {"precision": "fp32", "clean_val_fraction": 0.0}


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser, schedule and data protocol of a run (the papers' settings live in the grids).

    The Co-teaching family's official code trains epochs 1..n_epoch-1 (epoch 0 only evaluates),
    stops each epoch after 400 iterations, drops the last partial batch of both loaders (so
    9,984 of the 10,000 test images are scored), and uses Adam with a linear decay to 0 from
    ``decay_start`` while beta1 drops from 0.9 to 0.1: ``start_epoch: 1``,
    ``max_iters_per_epoch: 400``, ``drop_last: true``, ``test_drop_last: true``,
    ``schedule: coteaching`` reproduce that.

    ``precision``: ``fp32`` (default), as every official code, under PyTorch's default TF32
    policy; ``bf16`` runs the forward passes under CUDA bf16 autocast (refused on a CPU).
    ``clean_val_fraction``: hold out this fraction of every clean class, with its clean labels,
    as a validation set (RSL's scripts: 0.1, 45,000 / 5,000 on CIFAR); protocol ``clean_val``
    reports the test accuracy at its best epoch. Both are left out of ``to_dict`` (and so of
    the run_id) at their defaults.
    """

    epochs: int = 200                      # n_epoch of the schedule
    start_epoch: int = 0                   # first trained epoch (1 in the Co-teaching family)
    batch_size: int = 128
    optimizer: str = "adam"                # adam | sgd | adagrad
    lr: float = 0.001
    momentum: float = 0.9                  # sgd only
    weight_decay: float = 0.0
    schedule: str = "constant"             # constant | coteaching | multistep
    decay_start: int = 80                  # coteaching schedule
    milestones: tuple[int, ...] = ()       # multistep schedule
    gamma: float = 0.1                     # multistep factor
    max_iters_per_epoch: int | None = None
    drop_last: bool = False
    test_drop_last: bool = False
    test_batch_size: int = 128             # only matters with test_drop_last
    augment: str = "none"                  # none | crop_flip
    normalize: bool = False
    network_options: dict = field(default_factory=dict, hash=False)
    precision: str = "fp32"                # fp32 (every official code) | bf16 (CUDA autocast)
    clean_val_fraction: float = 0.0        # clean training images held out per class (RSL 0.1)

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError("train.optimizer must be adam, sgd or adagrad, "
                              f"got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError("train.schedule must be constant, coteaching or multistep, "
                              f"got {self.schedule!r}")
        if self.augment not in AUGMENTS:
            raise ConfigError(f"train.augment must be none or crop_flip, got {self.augment!r}")
        if self.epochs < 1 or not 0 <= self.start_epoch < self.epochs:
            raise ConfigError(f"train.epochs must be >= 1 and 0 <= start_epoch < epochs, got "
                              f"epochs={self.epochs}, start_epoch={self.start_epoch}")
        if self.batch_size < 1 or self.lr <= 0:
            raise ConfigError("train.batch_size must be >= 1 and train.lr > 0")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"train.precision must be fp32 or bf16, got {self.precision!r}")
        if not 0.0 <= self.clean_val_fraction < 1.0:
            raise ConfigError("train.clean_val_fraction must be in [0, 1), got "
                              f"{self.clean_val_fraction!r}")
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))

    @property
    def trained_epochs(self) -> range:
        return range(self.start_epoch, self.epochs)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        # options added later are left out at their defaults, so earlier run_ids still hold
        for key, default in _LATER_DEFAULTS.items():
            if d[key] == default:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise ConfigError(f"unknown train option(s) {', '.join(bad)}; known: "
                              f"{', '.join(sorted(known))}")
        return cls(**d)


@dataclass(frozen=True)
class RunSpec:
    """One cell of a grid: everything a run needs, resolved."""

    grid: str
    label: str
    method: str
    method_params: dict = field(hash=False)
    dataset: str = "digits"
    network: str = "mlp"
    noise_type: str = "none"
    noise_rate: float | None = None
    noise_variant: str | None = None
    noise_seed: int = 0
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)
    reference: dict = field(default_factory=dict, hash=False)
    noise_draw: str = "suite"
    smoke_limits: dict | None = field(default=None, hash=False)   # see bench.smoke

    def config_dict(self) -> dict:
        """The resolved configuration that identifies the run (hashed into run_id).

        ``noise_draw`` appears only when it is not the suite's own (see the module docstring),
        ``smoke_limits`` only on a smoke run: the run_ids of full runs on the suite's draw stay.
        """
        config = {
            "method": self.method, "method_params": _jsonable(self.method_params),
            "dataset": self.dataset, "network": self.network,
            "noise_type": self.noise_type, "noise_rate": self.noise_rate,
            "noise_variant": self.noise_variant, "noise_seed": self.noise_seed,
            "seed": self.seed, "train": _jsonable(self.train.to_dict()),
        }
        if self.noise_draw != "suite":
            config["noise_draw"] = self.noise_draw
        if self.smoke_limits is not None:   # absent from full runs: their run_ids stay
            config["smoke_limits"] = _jsonable(self.smoke_limits)
        return config

    @property
    def run_id(self) -> str:
        blob = json.dumps(self.config_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def noise_label(self) -> str:
        if self.noise_type == "human":
            return f"human-{self.noise_variant}"
        if self.noise_rate is None or self.noise_type == "none":
            return self.noise_type
        return f"{self.noise_type}-{self.noise_rate:g}"

    @property
    def filename(self) -> str:
        safe_label = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in self.label)
        return f"{safe_label}-{self.dataset}-{self.noise_label}-s{self.seed}-{self.run_id}.json"

    def to_dict(self) -> dict:
        d = self.config_dict()
        d.update(grid=self.grid, label=self.label, reference=dict(self.reference))
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RunSpec":
        d = dict(d)
        d["train"] = TrainConfig.from_dict(d["train"])
        return cls(**{k: d[k] for k in (f.name for f in dataclasses.fields(cls)) if k in d})


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# ---- method parameters -----------------------------------------------------------------------

def resolve_method_params(method: str, params: dict, *, dataset: str, noise_type: str,
                          noise_rate: float | None, num_classes: int | None = None) -> dict:
    """Defaults of the method's config, then its per-setting official values, then ``params``."""
    cls = METHODS.get(method)
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    bad = sorted(set(params) - set(fields))
    if bad:
        raise ConfigError(f"method {method!r} has no parameter(s) {', '.join(bad)}; known: "
                          f"{', '.join(sorted(fields)) or 'none'}")
    resolved = dataclasses.asdict(cls.Config())
    resolved.update(cls.setting_defaults(dataset=dataset, noise_type=noise_type,
                                         noise_rate=noise_rate))
    resolved.update(params)
    try:
        cls.Config(**resolved)  # type and range checks of the method's own dataclass
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"method {method!r}: {exc}") from None
    return _jsonable(resolved)
