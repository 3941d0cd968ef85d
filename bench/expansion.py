"""Grid files read and expanded into runs.

A grid is one small YAML file, expanded here into :class:`~bench.spec.RunSpec` cells (methods
with their parameter variations x datasets x noise settings x seeds).

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
the run's configuration (and run_id) and its record (:mod:`bench.spec`). Where a grid holds more
than one draw, the labels of the runs on an official draw say which (``jocor(draw=noisify)``),
so that a report never pools two draws into one cell.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from bench.errors import ConfigError, UnknownNameError
from bench.noise import check_draw, resolve_draw
from bench.registry import METHODS
from bench.schema import GridFile, NoiseEntry, parse_grid
from bench.schema_errors import GridError
from bench.schema_params import check_network_options
from bench.spec import RunSpec, TrainConfig, resolve_method_params
from bench.yaml_loader import NO_LINES, Lines, read_yaml


@dataclass(frozen=True)
class Grid:
    """A grid's runs, in the order of its expansion, under the grid's name."""

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
        raise exc.in_file(source, lines) from None
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
