"""The declared schema of grid files and protocol presets (pydantic v2).

Every mapping of a grid, at every depth, accepts only its own keys (an unknown one is refused
with the closest known key); values have strict types (an integer option refuses ``2.5`` and
``"abc"``, a number refuses ``true``); names are checked against the registries (methods and
their parameters, datasets, networks, noise types, reporting protocols, presets). Numbers keep
the type they were written with (``lambda_u: 25`` stays an integer), so a run's configuration,
and its run_id, is what the file says. The value types are in :mod:`bench.schema_types`, the
checks of method parameters and network options in :mod:`bench.schema_params`.

:func:`parse_grid` validates a parsed grid and raises :class:`~bench.schema_errors.GridError`,
which carries the location of the fault in the data (the keys and list positions leading to it)
and a one-line message; :mod:`bench.expansion` turns the location into the line of the file.

Protocol presets: a ``train`` block may name a preset, ``train: {preset: jocor, decay_start:
100}``; the preset's keys apply first and the block's own keys override them. A preset is one
file ``bench/grids/presets/<name>.yaml`` holding a train block (without ``preset``), so that a
paper's training protocol is written once for all the grids that follow it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, BaseModel, ConfigDict, Field, model_validator

from bench.schema_errors import GridError, did_you_mean, own_error, validated
from bench.schema_params import check_network_options, check_param_value, check_params, param_types
from bench.schema_types import (DatasetName, DatasetNames, Fraction, Ints, MethodName, MethodNames,
                                Name, NetworkName, NonNegative, NonNegativeInt, NoiseSeeds,
                                NoiseType, NoiseTypes, Numbers, PaperName, Positive, PositiveInt,
                                Protocol, Seeds, Strings, choice, one_or_many)
from bench.spec import AUGMENTS, OPTIMIZERS, PRECISIONS, SCHEDULES
from bench.yaml_loader import read_yaml

__all__ = ["AUGMENTS", "OPTIMIZERS", "PRECISIONS", "PRESETS_DIR", "SCHEDULES", "GridError",
           "GridFile", "NoiseEntry", "Override", "Reference", "Strict", "TrainBlock",
           "TrainSettings", "When", "check_network_options", "load_preset", "parse_grid",
           "validated"]

PRESETS_DIR = Path(__file__).with_name("grids") / "presets"


def _preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


PresetName = Annotated[str, choice("preset", _preset_names)]


def _unset() -> Any:
    """The default of a key that may be left out (the dataclass's default then applies)."""
    return Field(default=None)


# ---- models ----------------------------------------------------------------------------------

class Strict(BaseModel):
    """A mapping with only the declared keys, strict types, and the closest key on a typo."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    where: ClassVar[str] = ""            # " in <mapping>", for messages

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = sorted(cls.model_fields)
            for key in data:
                if key not in cls.model_fields:
                    raise own_error("unknown_key", f"unknown key {key!r}{cls.where}"
                                    f"{did_you_mean(key, known) or ';'} known: {', '.join(known)}",
                                    at=(key,))
        return data


class Reference(Strict):
    """What a grid reproduces: the paper, its table, and the accuracy the paper reports."""

    where: ClassVar[str] = " in reference"
    paper: PaperName | None = None
    table: str | None = None
    protocol: Protocol = "last10"


class TrainSettings(Strict):
    """The keys of :class:`bench.spec.TrainConfig`; a key left out keeps its default."""

    where: ClassVar[str] = " in train"
    epochs: PositiveInt = _unset()
    start_epoch: NonNegativeInt = _unset()
    batch_size: PositiveInt = _unset()
    optimizer: Annotated[str, choice("optimizer", lambda: OPTIMIZERS)] = _unset()
    lr: Positive = _unset()
    momentum: NonNegative = _unset()
    weight_decay: NonNegative = _unset()
    schedule: Annotated[str, choice("schedule", lambda: SCHEDULES)] = _unset()
    decay_start: NonNegativeInt = _unset()
    milestones: list[NonNegativeInt] = _unset()
    gamma: Positive = _unset()
    max_iters_per_epoch: PositiveInt | None = None
    drop_last: bool = _unset()
    test_drop_last: bool = _unset()
    test_batch_size: PositiveInt = _unset()
    augment: Annotated[str, choice("augment", lambda: AUGMENTS)] = _unset()
    normalize: bool = _unset()
    network_options: dict[str, Any] = _unset()
    precision: Annotated[str, choice("precision", lambda: PRECISIONS)] = _unset()
    clean_val_fraction: Fraction = _unset()

    def given(self) -> dict[str, Any]:
        """The keys the file gives, as written."""
        return self.model_dump(exclude_unset=True, exclude={"preset"})


class TrainBlock(TrainSettings):
    """A grid's (or an override's) train block: a preset's keys, then the block's own."""

    preset: PresetName | None = None

    def resolved(self) -> dict[str, Any]:
        return {**load_preset(self.preset), **self.given()} if self.preset else self.given()


class NoiseEntry(Strict):
    """One noise setting, or several: ``rate`` and ``variant`` lists expand."""

    where: ClassVar[str] = " in a noise entry"
    type: NoiseType
    rate: Numbers | None = None
    variant: Strings | None = None
    draw: str | None = None
    noise_seed: NoiseSeeds | None = None


class When(Strict):
    """The cells an override applies to: every key given must match (a list: any of it)."""

    where: ClassVar[str] = " in an override's when"
    method: MethodNames | None = None
    label: Strings | None = None
    dataset: DatasetNames | None = None
    noise_type: NoiseTypes | None = None
    noise_rate: Numbers | None = None
    noise_variant: Strings | None = None
    noise_draw: Strings | None = None
    seed: Ints | None = None

    def conditions(self) -> dict[str, list]:
        return self.model_dump(exclude_none=True)


class Override(Strict):
    """Method parameters and train keys for the cells that match ``when``."""

    where: ClassVar[str] = " in an override"
    when: When = When()
    method_params: dict[str, Any] = {}
    train: TrainBlock = TrainBlock()


class GridFile(Strict):
    """A grid file: methods (with parameter variations) x datasets x noise settings x seeds."""

    name: Name | None = None
    description: str | None = None
    reference: Reference = Reference()
    dataset: DatasetName | None = None
    datasets: Annotated[list[DatasetName], Field(min_length=1)] | None = None
    network: NetworkName | dict[str, NetworkName] = "mlp"
    train: TrainBlock = TrainBlock()
    methods: Annotated[dict[MethodName, dict[str, Any] | None], Field(min_length=1)]
    noise: Annotated[list[NoiseEntry], BeforeValidator(one_or_many), Field(min_length=1)]
    noise_seed: NoiseSeeds | None = None
    noise_seeds: NoiseSeeds | None = None
    noise_draw: str = "suite"
    seeds: Seeds = [0]
    overrides: list[Override] = []

    @model_validator(mode="after")
    def _consistent(self) -> GridFile:
        if self.dataset is not None and self.datasets is not None:
            raise own_error("both", "give dataset or datasets, not both", at=("datasets",))
        if self.noise_seed is not None and self.noise_seeds is not None:
            raise own_error("both", "give noise_seed or noise_seeds, not both", at=("noise_seeds",))
        if isinstance(self.network, dict):
            self._check_networks(self.network)
        for method, params in self.methods.items():
            check_params(method, params or {}, ("methods", method))
        for i, override in enumerate(self.overrides):
            self._check_override(i, override)
        return self

    def _check_override(self, i: int, override: Override) -> None:
        """Its methods are the grid's, and each parameter is one of a method it can match."""
        for j, method in enumerate(override.when.method or ()):
            if method not in self.methods:
                raise own_error("when", f"override when method {method!r} is not a method of the "
                                f"grid{did_you_mean(method, self.methods) or ';'} the grid's: "
                                f"{', '.join(self.methods)}",
                                at=("overrides", i, "when", "method", j))
        methods = override.when.method or list(self.methods)
        for key, value in override.method_params.items():
            loc = ("overrides", i, "method_params", key)
            owners = [m for m in methods if key in param_types(m)]
            if not owners:
                known = sorted({p for m in methods for p in param_types(m)})
                raise own_error("param", f"no method the override applies to "
                                f"({', '.join(methods)}) has a parameter {key!r}"
                                f"{did_you_mean(key, known) or ';'} known: "
                                f"{', '.join(known) or 'none'}", at=loc)
            for method in owners:
                check_param_value(method, key, value, loc, expands=False)

    def _check_networks(self, networks: dict[str, str]) -> None:
        """A mapping dataset -> network names each dataset of the grid and no other."""
        datasets = self.dataset_names
        for dataset in datasets:
            if dataset not in networks:
                raise own_error("network", f"network names no network for dataset {dataset!r}",
                                at=("network",))
        for key in networks:
            if key not in datasets:
                raise own_error("network", f"network names {key!r}, not a dataset of the grid"
                                f"{did_you_mean(key, datasets) or ';'} the grid's: "
                                f"{', '.join(datasets)}", at=("network", key))

    @property
    def dataset_names(self) -> list[str]:
        return self.datasets or [self.dataset or "digits"]

    def network_of(self, dataset: str) -> str:
        return self.network[dataset] if isinstance(self.network, dict) else self.network

    @property
    def noise_seed_values(self) -> tuple:
        """The grid-wide noise seeds: ("seed",) (each run's own) unless the file pins some."""
        return self.noise_seeds or self.noise_seed or ("seed",)


# ---- loading ---------------------------------------------------------------------------------

def parse_grid(raw: Any) -> GridFile:
    """A parsed grid file validated against the schema; GridError at the first fault."""
    if not isinstance(raw, dict):
        raise GridError((), "a grid file must be a mapping of keys such as methods, datasets, "
                            "noise, seeds")
    return validated(GridFile, raw)


def load_preset(name: str) -> dict[str, Any]:
    """The train keys of preset ``name``; a one-line ConfigError at its file's line otherwise."""
    path = PRESETS_DIR / f"{name}.yaml"
    data, lines = read_yaml(path)
    try:
        return validated(TrainSettings, data if data is not None else {}).given()
    except GridError as exc:
        raise exc.in_file(str(path), lines) from None
