"""Run specifications and grid files.

A grid is one small YAML file, expanded here into :class:`RunSpec` cells (methods with their
parameter variations x datasets x noise settings x seeds). A run's ``run_id`` is a hash of its
resolved configuration, so the same cell always maps to the same record.

Grid file (keys, types and checks: :mod:`bench.schema` and ``docs/grid-files.md``)::

    name: demo                                # default: the file's stem
    reference: {paper: jocor, table: "Table 2", protocol: last10}
    datasets: [digits]                        # or `dataset: digits`
    network: mlp                              # or a mapping dataset -> network
    train: {preset: jocor, decay_start: 100}  # a protocol preset (bench/grids/presets), then keys
    methods:
      standard: {}
      jocor: {select_on: [joint, ce]}         # a list expands (wrap a literal list: [[1, 2]])
    noise:
      - {type: symmetric, rate: [0.2, 0.5]}
      - {type: human, variant: [aggre, worse]}
      - {type: symmetric, rate: 0.5, draw: official, noise_seed: 0}   # per-entry draw and seed
    noise_seed: 0                             # an int for all runs, or `seed` (each run's own)
    noise_seeds: [0, 1, 2]                    # or several draws, crossed with the seeds
    noise_draw: suite                         # suite | noisify | dividemix | official
    seeds: [1, 2, 3, 4, 5]                    # or a count: `seeds: 5` means 1..5
    overrides:                                # applied in order to the cells they match
      - when: {method: jocor, noise_rate: 0.8}
        method_params: {co_lambda: 0.65}
        train: {lr: 0.0005}

Reading (:mod:`bench.yaml_loader`), validation (:mod:`bench.schema`) and the expansion here
each stop at the first mistake with one ConfigError ``<file>:<line>: <message>``.

The noise seeds of a cell: ``noise_seed: seed`` (the default) gives each training seed its own
draw; an integer pins one draw for all seeds; ``noise_seeds: [...]`` crosses several draws with
the seeds (J noise seeds x I seeds runs per cell, for designs that separate the two variances).
Methods stay paired by (seed, noise_seed). A noise entry may set its own ``noise_seed`` (an
integer, a list, or ``seed``) and ``draw``. The draw (``bench.noise.NOISE_DRAWS``) is how the
labels are sampled: ``suite`` (the default) or an official code's own draw (``noisify``,
``dividemix``; ``official`` picks the one of the noise type). A draw other than ``suite`` enters
the run's configuration (and run_id) and its record; ``suite`` is left out of both, so that the
run_ids of records made before draws existed stay valid. Where a grid holds more than one draw,
the labels of the runs on an official draw say which (``jocor(draw=noisify)``), so that a
report never pools two draws into one cell.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from bench.errors import ConfigError, UnknownNameError
from bench.noise import check_draw, resolve_draw
from bench.registry import METHODS
from bench.schema import (AUGMENTS, OPTIMIZERS, PRECISIONS, SCHEDULES, GridError, GridFile,
                          NoiseEntry, check_network_options, parse_grid)
from bench.yaml_loader import NO_LINES, Lines, read_yaml

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
    smoke_limits: dict | None = field(default=None, hash=False)   # see smoke_spec

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


# ---- smoke runs ------------------------------------------------------------------------------

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


# ---- grid files ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Grid:
    name: str
    path: Path | None
    runs: tuple[RunSpec, ...]

    def __len__(self) -> int:
        return len(self.runs)


def load_grid(path: str | Path, *, name: str | None = None) -> Grid:
    """Read, validate and expand a grid file; errors name the file and the line at fault."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"grid file {path} not found")
    raw, lines = read_yaml(path)
    return expand_grid(raw, name=name, source=str(path), lines=lines)


def expand_grid(raw: Any, *, name: str | None = None, source: str = "<grid>",
                lines: Lines = NO_LINES) -> Grid:
    """Validate a parsed grid (:mod:`bench.schema`) and expand it into run specs.

    ``name`` (default: the grid's ``name``, else the stem of ``source``) names the grid of
    every run. A fault is a one-line ConfigError ``<source>:<line>: <message>``, the line
    taken from ``lines`` (those of :func:`bench.yaml_loader.read_yaml`) where it is known.
    """
    try:
        grid = parse_grid(raw)
        grid_name = name or grid.name or Path(source).stem
        runs = _expand(grid, grid_name)
    except GridError as exc:
        line = lines.of(exc.loc)
        raise ConfigError(f"{source}{f':{line}' if line else ''}: {exc.message}") from None
    return Grid(name=grid_name, path=Path(source) if source != "<grid>" else None,
                runs=tuple(runs))


@dataclass(frozen=True)
class _NoiseSetting:
    noise_type: str
    rate: float | None
    variant: str | None
    draw: str
    noise_seeds: tuple                    # ints, or ("seed",): each run's own seed


@dataclass(frozen=True)
class _Cell:
    """One run of the product, before its overrides and method defaults are applied."""

    method: str
    variation: dict
    label: str
    dataset: str
    network: str
    noise: _NoiseSetting
    seed: int
    noise_seed: int

    def fields(self) -> dict[str, Any]:
        """The values an override's ``when`` is matched against."""
        return {"method": self.method, "label": self.label, "dataset": self.dataset,
                "noise_type": self.noise.noise_type, "noise_rate": self.noise.rate,
                "noise_variant": self.noise.variant, "noise_draw": self.noise.draw,
                "seed": self.seed}


@dataclass(frozen=True)
class _Override:
    when: dict[str, list]
    method_params: dict[str, Any]
    train: dict[str, Any]


def _expand(grid: GridFile, name: str) -> list[RunSpec]:
    """The runs of a validated grid, in the order methods, variations, datasets, noise, seeds."""
    overrides = [_Override(o.when.conditions(), o.method_params, o.train.resolved())
                 for o in grid.overrides]
    base_train = grid.train.resolved()
    reference = grid.reference.model_dump()
    runs, used = [], set()
    for cell in _cells(grid):
        train, params, matched = _apply_overrides(cell, base_train, overrides)
        used |= matched
        runs.append(_run_spec(cell, name, train, params, reference))
    _check_overrides_used(overrides, used)
    if len({r.run_id for r in runs}) != len(runs):
        raise GridError((), "two cells of the grid resolve to the same configuration")
    return runs


def _cells(grid: GridFile) -> Iterator[_Cell]:
    settings = _noise_settings(grid)
    several_draws = len({s.draw for s in settings}) > 1
    for method, params in grid.methods.items():
        for variation, label in _expand_params(method, params or {}):
            for dataset, setting in itertools.product(grid.dataset_names, settings):
                run_label = _draw_label(label, setting.draw) if several_draws else label
                for seed, noise_seed in itertools.product(grid.seeds, setting.noise_seeds):
                    yield _Cell(method=method, variation=variation, label=run_label,
                                dataset=dataset, network=grid.network_of(dataset),
                                noise=setting, seed=seed,
                                noise_seed=seed if noise_seed == "seed" else noise_seed)


def _apply_overrides(cell: _Cell, base_train: dict, overrides: list[_Override]
                     ) -> tuple[dict, dict, set[int]]:
    """The train keys and method parameters of a cell after the overrides that match it."""
    train, params, matched = dict(base_train), dict(cell.variation), set()
    fields = cell.fields()
    for i, override in enumerate(overrides):
        if _matches(override.when, fields):
            params.update(override.method_params)
            train.update(override.train)
            matched.add(i)
    return train, params, matched


def _run_spec(cell: _Cell, name: str, train: dict, params: dict, reference: dict) -> RunSpec:
    setting = cell.noise
    try:
        train_cfg = TrainConfig.from_dict(train)
        check_network_options(cell.network, train_cfg.network_options,
                              ("train", "network_options"))
        resolved = resolve_method_params(cell.method, params, dataset=cell.dataset,
                                         noise_type=setting.noise_type, noise_rate=setting.rate)
        # a method whose parameters depend on the schedule checks them
        check = getattr(METHODS.get(cell.method), "check_train", None)
        if check is not None:
            check(resolved, train_cfg)
    except ConfigError as exc:
        raise GridError(("methods", cell.method), str(exc)) from None
    return RunSpec(grid=name, label=cell.label, method=cell.method, method_params=resolved,
                   dataset=cell.dataset, network=cell.network, noise_type=setting.noise_type,
                   noise_rate=setting.rate, noise_variant=setting.variant,
                   noise_seed=cell.noise_seed, seed=cell.seed, train=train_cfg,
                   reference=reference, noise_draw=setting.draw)


def _check_overrides_used(overrides: list[_Override], used: set[int]) -> None:
    """An override that matches no run is a mistake in its ``when`` (a value of no cell)."""
    for i, override in enumerate(overrides):
        if i not in used:
            raise GridError(("overrides", i),
                            f"overrides[{i}] matches no run of the grid (when: "
                            f"{json.dumps(override.when)})")


def _draw_label(label: str, draw: str) -> str:
    if draw == "suite":
        return label
    return f"{label[:-1]},draw={draw})" if label.endswith(")") else f"{label}(draw={draw})"


def _noise_settings(grid: GridFile) -> list[_NoiseSetting]:
    settings = []
    for i, entry in enumerate(grid.noise):
        seeds = entry.noise_seed or grid.noise_seed_values
        draw = _entry_draw(grid, i)
        for rate, variant in _rates_and_variants(entry, i):
            settings.append(_NoiseSetting(entry.type, rate, variant, draw, seeds))
    return settings


def _entry_draw(grid: GridFile, i: int) -> str:
    """The registered draw of noise entry ``i`` (its own ``draw``, else the grid's)."""
    entry = grid.noise[i]
    loc = ("noise", i, "draw") if entry.draw is not None else ("noise_draw",)
    try:
        draw = resolve_draw(entry.draw or grid.noise_draw, entry.type)
        for dataset in grid.dataset_names:
            check_draw(draw, entry.type, dataset)
    except (ConfigError, UnknownNameError) as exc:
        raise GridError(loc, str(exc)) from None
    return draw


def _rates_and_variants(entry: NoiseEntry, i: int) -> Iterator[tuple[float | None, str | None]]:
    """(rate, variant) of each setting of a noise entry; a rate or variant its type refuses."""
    ntype, loc = entry.type, ("noise", i)
    if ntype == "human" and entry.variant is None:
        raise GridError(loc + ("type",), "human noise needs a 'variant' (the label set, e.g. aggre)")
    if ntype != "human" and entry.variant is not None:
        raise GridError(loc + ("variant",), f"noise type {ntype} takes no variant")
    variants: list[str | None] = list(entry.variant) if entry.variant else [None]
    for rate in _rates(entry, loc):
        for variant in variants:
            yield rate, variant


def _rates(entry: NoiseEntry, loc: tuple) -> list[float | None]:
    ntype = entry.type
    if ntype in ("human", "none"):
        if entry.rate is not None:
            raise GridError(loc + ("rate",), f"noise type {ntype} takes no rate")
        return [None]
    if entry.rate is None:
        raise GridError(loc + ("rate",), f"noise type {ntype} needs a rate in [0, 1)")
    for rate in entry.rate:
        if not 0.0 <= rate < 1.0:
            raise GridError(loc + ("rate",),
                            f"noise rate {rate!r} of {ntype} must be a number in [0, 1)")
    return [float(rate) for rate in entry.rate]


def _expand_params(method: str, params: dict) -> Iterator[tuple[dict, str]]:
    """Each combination of the listed values (a list expands), with its label."""
    keys = list(params)
    value_lists = [params[k] if isinstance(params[k], list) else [params[k]] for k in keys]
    varied = [k for k, vals in zip(keys, value_lists) if len(vals) > 1]
    for combo in itertools.product(*value_lists):
        variation = dict(zip(keys, combo))
        tag = ",".join(f"{k}={variation[k]}" for k in varied)
        yield variation, f"{method}({tag})" if tag else method


def _matches(when: dict[str, list], fields: dict[str, Any]) -> bool:
    for key, options in when.items():
        value = fields[key]
        if key == "noise_rate":
            if value is None or not any(abs(value - float(o)) < 1e-9 for o in options):
                return False
        elif value not in options:
            return False
    return True


def filter_runs(runs: Iterable[RunSpec], filters: Iterable[str]) -> list[RunSpec]:
    """Keep the runs matching every ``key=value`` (values may be comma-separated alternatives).

    ``key`` is a field of the run (method, seed, noise_rate, ...) or one of its method
    parameters (``select_on=ce``); a run without that parameter does not match.
    """
    parsed = []
    for f in filters:
        if "=" not in f:
            raise ConfigError(f"filter {f!r} must look like key=value, e.g. method=jocor")
        key, _, value = f.partition("=")
        parsed.append((key.strip(), [v.strip() for v in value.split(",")]))
    runs = list(runs)
    known = {"method", "label", "dataset", "network", "noise_type", "noise_rate",
             "noise_variant", "seed", "noise_seed", "noise_draw", "run_id"}
    params = {k for run in runs for k in run.method_params}
    for key, _ in parsed:
        if key not in known and key not in params:
            raise ConfigError(f"cannot filter on {key!r}; known: {', '.join(sorted(known))}, "
                              f"or a method parameter of the grid ({', '.join(sorted(params)) or 'none'})")

    missing = object()

    def value_of(run: RunSpec, key: str) -> Any:
        if key == "run_id":
            return run.run_id
        if key in known:
            return getattr(run, key)
        return run.method_params.get(key, missing)

    def ok(run: RunSpec) -> bool:
        for key, values in parsed:
            actual = value_of(run, key)
            if actual is missing:           # a method parameter this run does not have
                return False
            if isinstance(actual, bool):
                actual = str(actual).lower()
            # numbers compare as numbers (0.2 == "0.20"); seeds and names as text
            numeric = (key == "noise_rate" or isinstance(actual, float)
                       or (key not in known and isinstance(actual, int)))
            if numeric:
                if actual is None or not any(_float_eq(actual, v) for v in values):
                    return False
            elif str(actual) not in values:
                return False
        return True

    return [r for r in runs if ok(r)]


def _float_eq(a: float, b: str) -> bool:
    try:
        return abs(float(a) - float(b)) < 1e-9
    except ValueError:
        return False


def check_known(name: str, registry) -> None:
    """Raise the registry's one-line error for an unknown name."""
    if name not in registry:
        raise UnknownNameError(f"unknown {registry.kind} {name!r}; known: "
                               f"{', '.join(registry.names())}")
