"""Run specifications and grid files.

A grid is one small YAML file, expanded here into :class:`RunSpec` cells (methods with their
parameter variations x datasets x noise settings x seeds). A run's ``run_id`` is a hash of its
resolved configuration, so the same cell always maps to the same record.

Grid file::

    name: demo                                # default: the file's stem
    reference: {paper: jocor, table: "Table 2", protocol: last10}
    datasets: [digits]                        # or `dataset: digits`
    network: mlp                              # or a mapping dataset -> network
    train: {epochs: 20, batch_size: 64, optimizer: adam, lr: 0.001}
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
from typing import Any, Iterable

import yaml

from bench.errors import ConfigError, UnknownNameError
from bench.noise import check_draw, resolve_draw
from bench.protocols import PROTOCOLS
from bench.registry import DATASETS, METHODS, NETWORKS, NOISE_MODELS

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
        if self.optimizer not in ("adam", "sgd", "adagrad"):
            raise ConfigError("train.optimizer must be adam, sgd or adagrad, "
                              f"got {self.optimizer!r}")
        if self.schedule not in ("constant", "coteaching", "multistep"):
            raise ConfigError("train.schedule must be constant, coteaching or multistep, "
                              f"got {self.schedule!r}")
        if self.augment not in ("none", "crop_flip"):
            raise ConfigError(f"train.augment must be none or crop_flip, got {self.augment!r}")
        if self.epochs < 1 or not 0 <= self.start_epoch < self.epochs:
            raise ConfigError(f"train.epochs must be >= 1 and 0 <= start_epoch < epochs, got "
                              f"epochs={self.epochs}, start_epoch={self.start_epoch}")
        if self.batch_size < 1 or self.lr <= 0:
            raise ConfigError("train.batch_size must be >= 1 and train.lr > 0")
        if self.precision not in ("fp32", "bf16"):
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

class _LineLoader(yaml.SafeLoader):
    """A YAML loader that remembers the line of every mapping key (for error messages)."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode, deep: bool = False):
    mapping = yaml.SafeLoader.construct_mapping(loader, node, deep=deep)
    lines = {}
    for key_node, _ in node.value:
        lines[loader.construct_object(key_node)] = key_node.start_mark.line + 1
    return _Mapping(mapping, lines)


class _Mapping(dict):
    def __init__(self, data: dict, lines: dict) -> None:
        super().__init__(data)
        self.lines = lines

    def line(self, key: str) -> int | None:
        return getattr(self, "lines", {}).get(key)


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


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
    text = path.read_text()
    try:
        raw = yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: malformed YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a grid file must be a mapping of keys such as methods, "
                          "datasets, noise, seeds")
    return expand_grid(raw, name=name or raw.get("name") or path.stem, source=str(path))


_TOP_KEYS = {"name", "description", "reference", "dataset", "datasets", "network", "train",
             "methods", "noise", "noise_seed", "noise_seeds", "noise_draw", "seeds", "overrides"}


def expand_grid(raw: dict, *, name: str, source: str = "<grid>") -> Grid:
    """Expand a parsed grid mapping into run specs."""

    def fail(msg: str, key: str | None = None, mapping: Any = raw) -> ConfigError:
        line = mapping.line(key) if isinstance(mapping, _Mapping) and key else None
        return ConfigError(f"{source}{f':{line}' if line else ''}: {msg}")

    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise fail(f"unknown key {unknown[0]!r}; known: {', '.join(sorted(_TOP_KEYS))}",
                   unknown[0])
    for required in ("methods", "noise"):
        if required not in raw:
            raise fail(f"missing key {required!r}")

    datasets = _as_list(raw.get("datasets", raw.get("dataset", "digits")))
    for d in datasets:
        if d not in DATASETS:
            raise fail(f"unknown dataset {d!r}; known: {', '.join(DATASETS.names())}",
                       "datasets" if "datasets" in raw else "dataset")

    networks = raw.get("network", "mlp")
    for d in datasets:
        net = networks.get(d) if isinstance(networks, dict) else networks
        if net is None or net not in NETWORKS:
            raise fail(f"unknown network {net!r} for dataset {d!r}; known: "
                       f"{', '.join(NETWORKS.names())}", "network")

    reference = dict(raw.get("reference") or {})
    protocol = reference.setdefault("protocol", "last10")
    if protocol not in PROTOCOLS:
        raise fail(f"reference.protocol must be one of {', '.join(PROTOCOLS)}", "reference")
    reference.setdefault("paper", None)
    reference.setdefault("table", None)

    seeds = raw.get("seeds", [0])
    seeds = list(range(1, int(seeds) + 1)) if isinstance(seeds, int) else _as_list(seeds)
    if not seeds or not all(isinstance(s, int) for s in seeds):
        raise fail("seeds must be a positive count or a list of integers", "seeds")
    if "noise_seed" in raw and "noise_seeds" in raw:
        raise fail("give noise_seed or noise_seeds, not both", "noise_seeds")
    key = "noise_seeds" if "noise_seeds" in raw else "noise_seed"
    noise_seeds = _check_noise_seeds(raw.get(key, "seed"), fail, key, raw)

    noise_settings = _expand_noise(raw["noise"], fail, datasets=datasets, noise_seeds=noise_seeds,
                                   draw=raw.get("noise_draw", "suite"))
    several_draws = len({s.draw for s in noise_settings}) > 1
    methods = raw["methods"]
    if not isinstance(methods, dict) or not methods:
        raise fail("methods must be a mapping of method name -> parameters", "methods")
    for m in methods:
        if m not in METHODS:
            raise fail(f"unknown method {m!r}; known: {', '.join(METHODS.names())}", m, methods)

    overrides = raw.get("overrides") or []
    if not isinstance(overrides, list):
        raise fail("overrides must be a list of {when, method_params, train}", "overrides")

    base_train = dict(raw.get("train") or {})
    runs: list[RunSpec] = []
    for method, params in methods.items():
        for variation, label in _expand_params(method, params or {}, fail, methods):
            for dataset in datasets:
                network = networks.get(dataset) if isinstance(networks, dict) else networks
                for setting in noise_settings:
                    noise_type, rate, variant = setting.noise_type, setting.rate, setting.variant
                    run_label = _draw_label(label, setting.draw) if several_draws else label
                    for seed, noise_seed in itertools.product(seeds, setting.noise_seeds):
                        cell = dict(method=method, dataset=dataset, noise_type=noise_type,
                                    noise_rate=rate, noise_variant=variant, seed=seed,
                                    label=run_label, noise_draw=setting.draw)
                        train = dict(base_train)
                        mparams = dict(variation)
                        for ov in overrides:
                            if _matches(ov.get("when") or {}, cell):
                                mparams.update(ov.get("method_params") or {})
                                train.update(ov.get("train") or {})
                        try:
                            train_cfg = TrainConfig.from_dict(train)
                            resolved = resolve_method_params(
                                method, mparams, dataset=dataset, noise_type=noise_type,
                                noise_rate=rate)
                            # a method whose parameters depend on the schedule checks them
                            check = getattr(METHODS.get(method), "check_train", None)
                            if check is not None:
                                check(resolved, train_cfg)
                        except ConfigError as exc:
                            raise fail(str(exc), method, methods) from None
                        runs.append(RunSpec(
                            grid=name, label=run_label, method=method, method_params=resolved,
                            dataset=dataset, network=network, noise_type=noise_type,
                            noise_rate=rate, noise_variant=variant,
                            noise_seed=seed if noise_seed == "seed" else noise_seed,
                            seed=seed, train=train_cfg, reference=reference,
                            noise_draw=setting.draw))
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        raise fail("two cells of the grid resolve to the same configuration")
    return Grid(name=name, path=Path(source) if source != "<grid>" else None, runs=tuple(runs))


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


@dataclass(frozen=True)
class _NoiseSetting:
    noise_type: str
    rate: float | None
    variant: str | None
    draw: str
    noise_seeds: tuple                    # ints, or ("seed",): each run's own seed


def _check_noise_seeds(value: Any, fail, key: str, mapping: Any) -> tuple:
    """("seed",), or the non-negative integer noise seeds of a noise_seed(s) value."""
    if value == "seed":
        return ("seed",)
    values = _as_list(value)
    if (not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                              for v in values) or len(set(values)) != len(values)):
        raise fail(f"{key} must be the word 'seed', a non-negative integer or a list of "
                   "distinct ones", key, mapping)
    return tuple(values)


def _draw_label(label: str, draw: str) -> str:
    if draw == "suite":
        return label
    return f"{label[:-1]},draw={draw})" if label.endswith(")") else f"{label}(draw={draw})"


def _expand_noise(entries: Any, fail, *, datasets: list[str], noise_seeds: tuple,
                  draw: str) -> list[_NoiseSetting]:
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list) or not entries:
        raise fail("noise must be a list of {type, rate} or {type, variant}", "noise")
    settings = []
    for entry in entries:
        if not isinstance(entry, dict) or "type" not in entry:
            raise fail("each noise entry needs a 'type'", "noise")
        ntype = entry["type"]
        if ntype not in NOISE_MODELS:
            raise fail(f"unknown noise type {ntype!r}; known: {', '.join(NOISE_MODELS.names())}",
                       "type", entry)
        extra = sorted(set(entry) - {"type", "rate", "variant", "draw", "noise_seed"})
        if extra:
            raise fail(f"unknown noise key {extra[0]!r}", extra[0], entry)
        entry_seeds = (_check_noise_seeds(entry["noise_seed"], fail, "noise_seed", entry)
                       if "noise_seed" in entry else noise_seeds)
        entry_draw = _entry_draw(entry, ntype, datasets, fail, default=draw)
        for rate, variant in _rates_and_variants(entry, ntype, fail):
            settings.append(_NoiseSetting(ntype, rate, variant, entry_draw, entry_seeds))
    return settings


def _entry_draw(entry: dict, ntype: str, datasets: list[str], fail, *, default: str) -> str:
    key = "draw" if "draw" in entry else None
    try:
        draw = resolve_draw(str(entry.get("draw", default)), ntype)
        for dataset in datasets:
            check_draw(draw, ntype, dataset)
    except (ConfigError, UnknownNameError) as exc:
        raise fail(str(exc), key, entry) from None
    return draw


def _rates_and_variants(entry: dict, ntype: str, fail) -> Iterable[tuple]:
    rates = _as_list(entry.get("rate")) if entry.get("rate") is not None else [None]
    variants = _as_list(entry.get("variant")) if entry.get("variant") is not None else [None]
    for rate in rates:
        if ntype not in ("human", "none"):
            if not isinstance(rate, (int, float)) or not 0.0 <= float(rate) < 1.0:
                raise fail(f"noise rate {rate!r} of {ntype} must be a number in [0, 1)",
                           "rate", entry)
            rate = float(rate)
        elif rate is not None:
            raise fail(f"noise type {ntype} takes no rate", "rate", entry)
        for variant in variants:
            if ntype == "human" and variant is None:
                raise fail("human noise needs a 'variant' (the label set, e.g. aggre)",
                           "type", entry)
            yield rate, variant


def _expand_params(method: str, params: Any, fail, methods) -> Iterable[tuple[dict, str]]:
    if not isinstance(params, dict):
        raise fail(f"parameters of {method!r} must be a mapping", method, methods)
    keys = list(params)
    value_lists = [params[k] if isinstance(params[k], list) else [params[k]] for k in keys]
    varied = [k for k, vals in zip(keys, value_lists) if len(vals) > 1]
    for combo in itertools.product(*value_lists):
        variation = dict(zip(keys, combo))
        tag = ",".join(f"{k}={variation[k]}" for k in varied)
        yield variation, f"{method}({tag})" if tag else method


def _matches(when: dict, cell: dict) -> bool:
    for key, expected in when.items():
        value = cell.get(key)
        options = expected if isinstance(expected, list) else [expected]
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

    def value(run: RunSpec, key: str):
        if key == "run_id":
            return run.run_id
        if key in known:
            return getattr(run, key)
        return run.method_params.get(key, missing)

    def ok(run: RunSpec) -> bool:
        for key, values in parsed:
            actual = value(run, key)
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
