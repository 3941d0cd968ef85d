"""The declared schema of grid files and protocol presets (pydantic v2).

Every mapping of a grid, at every depth, accepts only its own keys (an unknown one is refused
with the closest known key); values have strict types (an integer option refuses ``2.5`` and
``"abc"``, a number refuses ``true``); names are checked against the registries (methods and
their parameters, datasets, networks, noise types, reporting protocols, presets). Numbers keep
the type they were written with (``lambda_u: 25`` stays an integer), so a run's configuration,
and its run_id, is what the file says.

:func:`parse_grid` validates a parsed grid and raises :class:`GridError`, which carries the
location of the fault in the data (the keys and list positions leading to it) and a one-line
message; :mod:`bench.config` turns the location into the line of the file.

Protocol presets: a ``train`` block may name a preset, ``train: {preset: jocor, decay_start:
100}``; the preset's keys apply first and the block's own keys override them. A preset is one
file ``bench/grids/presets/<name>.yaml`` holding a train block (without ``preset``), so that a
paper's training protocol is written once for all the grids that follow it.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import re
import typing
from pathlib import Path
from typing import Annotated, Any, Callable, ClassVar, Iterable, Sequence

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field,
                      PlainValidator, TypeAdapter, ValidationError, model_validator)
from pydantic_core import PydanticCustomError

from bench.errors import ConfigError
from bench.protocols import PROTOCOLS
from bench.registry import DATASETS, METHODS, NETWORKS, NOISE_MODELS
from bench.yaml_loader import read_yaml

PRESETS_DIR = Path(__file__).with_name("grids") / "presets"
OPTIMIZERS = ("adam", "sgd", "adagrad")
SCHEDULES = ("constant", "coteaching", "multistep")
AUGMENTS = ("none", "crop_flip")
PRECISIONS = ("fp32", "bf16")
_M = typing.TypeVar("_M", bound=BaseModel)


class GridError(Exception):
    """A fault at ``loc`` (keys and list positions into the grid's data): one-line ``message``."""

    def __init__(self, loc: Sequence[Any], message: str) -> None:
        super().__init__(message)
        self.loc = tuple(loc)
        self.message = message


# ---- messages --------------------------------------------------------------------------------

def did_you_mean(word: Any, choices: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for the closest of ``choices``, or nothing when none is close."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown(kind: str, name: Any, choices: Sequence[str]) -> str:
    """``unknown <kind> 'x'; did you mean 'y'? known: a, b, c``."""
    return f"unknown {kind} {name!r}{did_you_mean(name, choices) or ';'} known: {', '.join(choices)}"


# Messages of pydantic's built-in error types, after the dotted location of the value
_TYPE_TEXT = {
    "int_type": "must be an integer", "int_from_float": "must be an integer",
    "int_parsing": "must be an integer", "float_type": "must be a number",
    "bool_type": "must be true or false", "string_type": "must be a string",
    "dict_type": "must be a mapping", "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping", "list_type": "must be a list",
    "greater_than": "must be > {gt}", "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}", "less_than_equal": "must be <= {le}",
    "too_short": "must not be empty",
}


def _own(kind: str, message: str, **ctx: Any) -> PydanticCustomError:
    """A complete message of ours (``grid_*``); ``at`` extends the error's location."""
    return PydanticCustomError(f"grid_{kind}", message, ctx or None)


def _value_error(text: str) -> PydanticCustomError:
    """A type or range fault, shown as ``<location> <text>, got <value>``."""
    return PydanticCustomError("value", text)


def _walk(data: Any, loc: Sequence[Any]) -> tuple:
    """The part of ``loc`` that names places in ``data`` (pydantic adds tags such as '[key]')."""
    path: list[Any] = []
    for part in loc:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            continue
        path.append(part)
    return tuple(path)


def dotted(path: Sequence[Any]) -> str:
    """``noise[1].rate`` for ("noise", 1, "rate")."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _grid_error(error: Any, data: Any) -> GridError:
    """One pydantic error as a GridError at the place in ``data`` it is about."""
    loc = tuple(error["loc"]) + tuple(error.get("ctx", {}).get("at", ()))
    path = _walk(data, loc)
    kind = error["type"]
    if kind.startswith("grid_"):
        return GridError(path, error["msg"])
    if kind == "missing":
        where = f" in {dotted(path)}" if path else ""
        return GridError(path, f"missing key {loc[-1]!r}{where}")
    text = _TYPE_TEXT[kind].format(**error.get("ctx", {})) if kind in _TYPE_TEXT else error["msg"]
    return GridError(path, f"{dotted(path) or 'the file'} {text}, got {_short(error['input'])}")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def validated(model: type[_M], data: Any) -> _M:
    """``model`` validated from ``data``, or a GridError for one of its faults.

    Of several faults the deepest is told: where a value may take two shapes (a network name
    or a mapping dataset -> network), the shape that got further is the one the file meant.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [_grid_error(e, data) for e in exc.errors()]
    raise max(errors, key=lambda e: len(e.loc)) from None


# ---- value types -----------------------------------------------------------------------------

def _choice(kind: str, names: Callable[[], Sequence[str]]) -> AfterValidator:
    def check(value: str) -> str:
        known = list(names())
        if value not in known:
            raise _own("unknown_name", unknown(kind, value, known))
        return value
    return AfterValidator(check)


def _number(*, gt: float | None = None, ge: float | None = None,
            lt: float | None = None) -> PlainValidator:
    """An int or a float, kept as written (bool refused), within the given bounds."""
    def check(value: Any) -> int | float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _value_error("must be a number")
        if gt is not None and not value > gt:
            raise _value_error(f"must be > {gt}")
        if ge is not None and not value >= ge:
            raise _value_error(f"must be >= {ge}")
        if lt is not None and not value < lt:
            raise _value_error(f"must be < {lt}")
        return value
    return PlainValidator(check)


def _one_or_many(value: Any) -> Any:
    return value if isinstance(value, list) else [value]


def _noise_seeds(value: Any) -> tuple:
    """("seed",), or the distinct non-negative integer noise seeds of a noise_seed(s) value."""
    if value == "seed":
        return ("seed",)
    values = _one_or_many(value)
    if (not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                              for v in values) or len(set(values)) != len(values)):
        raise _value_error("must be the word 'seed', a non-negative integer or a list of "
                           "distinct ones")
    return tuple(values)


def _seeds(value: Any) -> list[int]:
    """``n`` -> [1..n]; a list of distinct integers as it is."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return list(range(1, value + 1))
    if (isinstance(value, list) and value and len(set(value)) == len(value)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        return list(value)
    raise _value_error("must be a positive count or a list of distinct integers")


def _plain_name(value: Any) -> str:
    """A grid's name names its records' folder: letters, digits, '_' and '-', nothing else."""
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", value):
        raise _value_error("must be a plain name (letters, digits, '_' and '-')")
    return value


def _paper_names() -> list[str]:
    """The papers the suite has numbers or run counts for (``bench.papers``)."""
    from bench.papers import DEFAULT_N_RUNS   # pandas, only when a grid names a paper

    return sorted(DEFAULT_N_RUNS)


def _preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


PositiveInt = Annotated[int, Field(strict=True, ge=1)]
NonNegativeInt = Annotated[int, Field(strict=True, ge=0)]
Number = Annotated[float, _number()]
NonNegative = Annotated[float, _number(ge=0)]
Positive = Annotated[float, _number(gt=0)]
Fraction = Annotated[float, _number(ge=0, lt=1)]
Name = Annotated[str, PlainValidator(_plain_name)]
MethodName = Annotated[str, _choice("method", METHODS.names)]
DatasetName = Annotated[str, _choice("dataset", DATASETS.names)]
NetworkName = Annotated[str, _choice("network", NETWORKS.names)]
NoiseType = Annotated[str, _choice("noise type", NOISE_MODELS.names)]
Protocol = Annotated[str, _choice("protocol", lambda: PROTOCOLS)]
PaperName = Annotated[str, _choice("paper", _paper_names)]
PresetName = Annotated[str, _choice("preset", _preset_names)]
NoiseSeeds = Annotated[tuple, PlainValidator(_noise_seeds)]
Seeds = Annotated[list, PlainValidator(_seeds)]


# one value or a non-empty list of them, as a list
_AS_LIST = BeforeValidator(_one_or_many)
_NON_EMPTY = Field(min_length=1)
Numbers = Annotated[list[Number], _AS_LIST, _NON_EMPTY]
Ints = Annotated[list[int], _AS_LIST, _NON_EMPTY]
Strings = Annotated[list[str], _AS_LIST, _NON_EMPTY]
MethodNames = Annotated[list[MethodName], _AS_LIST, _NON_EMPTY]
DatasetNames = Annotated[list[DatasetName], _AS_LIST, _NON_EMPTY]
NoiseTypes = Annotated[list[NoiseType], _AS_LIST, _NON_EMPTY]


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
                    raise _own("unknown_key", f"unknown key {key!r}{cls.where}"
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
    """The keys of :class:`bench.config.TrainConfig`; a key left out keeps its default."""

    where: ClassVar[str] = " in train"
    epochs: PositiveInt = _unset()
    start_epoch: NonNegativeInt = _unset()
    batch_size: PositiveInt = _unset()
    optimizer: Annotated[str, _choice("optimizer", lambda: OPTIMIZERS)] = _unset()
    lr: Positive = _unset()
    momentum: NonNegative = _unset()
    weight_decay: NonNegative = _unset()
    schedule: Annotated[str, _choice("schedule", lambda: SCHEDULES)] = _unset()
    decay_start: NonNegativeInt = _unset()
    milestones: list[NonNegativeInt] = _unset()
    gamma: Positive = _unset()
    max_iters_per_epoch: PositiveInt | None = None
    drop_last: bool = _unset()
    test_drop_last: bool = _unset()
    test_batch_size: PositiveInt = _unset()
    augment: Annotated[str, _choice("augment", lambda: AUGMENTS)] = _unset()
    normalize: bool = _unset()
    network_options: dict[str, Any] = _unset()
    precision: Annotated[str, _choice("precision", lambda: PRECISIONS)] = _unset()
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
    noise: Annotated[list[NoiseEntry], BeforeValidator(_one_or_many), Field(min_length=1)]
    noise_seed: NoiseSeeds | None = None
    noise_seeds: NoiseSeeds | None = None
    noise_draw: str = "suite"
    seeds: Seeds = [0]
    overrides: list[Override] = []

    @model_validator(mode="after")
    def _consistent(self) -> GridFile:
        if self.dataset is not None and self.datasets is not None:
            raise _own("both", "give dataset or datasets, not both", at=("datasets",))
        if self.noise_seed is not None and self.noise_seeds is not None:
            raise _own("both", "give noise_seed or noise_seeds, not both", at=("noise_seeds",))
        if isinstance(self.network, dict):
            self._check_networks(self.network)
        for method, params in self.methods.items():
            _check_params(method, params or {}, ("methods", method))
        for i, override in enumerate(self.overrides):
            self._check_override(i, override)
        return self

    def _check_override(self, i: int, override: Override) -> None:
        """Its methods are the grid's, and each parameter is one of a method it can match."""
        methods = override.when.method or list(self.methods)
        for j, method in enumerate(override.when.method or ()):
            if method not in self.methods:
                raise _own("when", f"override when method {method!r} is not a method of the grid"
                           f"{did_you_mean(method, self.methods) or ';'} the grid's: "
                           f"{', '.join(self.methods)}", at=("overrides", i, "when", "method", j))
        for key, value in override.method_params.items():
            owners = [m for m in methods if key in _param_types(m)]
            if not owners:
                known = sorted({p for m in methods for p in _param_types(m)})
                raise _own("param", f"no method the override applies to ({', '.join(methods)}) "
                           f"has a parameter {key!r}{did_you_mean(key, known) or ';'} known: "
                           f"{', '.join(known) or 'none'}", at=("overrides", i, "method_params", key))
            for method in owners:
                _check_param_value(method, key, value, ("overrides", i, "method_params", key),
                                   expands=False)

    def _check_networks(self, networks: dict[str, str]) -> None:
        """A mapping dataset -> network names each dataset of the grid and no other."""
        datasets = self.dataset_names
        for dataset in datasets:
            if dataset not in networks:
                raise _own("network", f"network names no network for dataset {dataset!r}",
                           at=("network",))
        for key in networks:
            if key not in datasets:
                raise _own("network", f"network names {key!r}, not a dataset of the grid"
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


# ---- method parameters -----------------------------------------------------------------------

def _param_types(method: str) -> dict[str, Any]:
    """The parameters of a method's Config dataclass and their types."""
    config = METHODS.get(method).Config
    hints = typing.get_type_hints(config)
    return {f.name: hints[f.name] for f in dataclasses.fields(config)}


def param_type_error(hint: Any, value: Any) -> str | None:
    """Why ``value`` is not of type ``hint`` (ints pass as floats, bools as nothing else)."""
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return None
    try:
        TypeAdapter(hint, config=ConfigDict(strict=True)).validate_python(value)
    except ValidationError as exc:
        kind = exc.errors()[0]["type"]
        return _TYPE_TEXT.get(kind, exc.errors()[0]["msg"])
    return None


def _check_params(method: str, params: dict[str, Any], loc: tuple) -> None:
    types = _param_types(method)
    for key, value in params.items():
        if key not in types:
            known = sorted(types)
            raise _own("param", f"method {method!r} has no parameter {key!r}"
                       f"{did_you_mean(key, known) or ';'} known: {', '.join(known) or 'none'}",
                       at=loc + (key,))
        _check_param_value(method, key, value, loc + (key,), expands=True)


def _check_param_value(method: str, key: str, value: Any, loc: tuple, *, expands: bool) -> None:
    """Each value of a parameter (each item of a list that expands) has the parameter's type."""
    hint = _param_types(method)[key]
    for item in (value if expands and isinstance(value, list) else [value]):
        text = param_type_error(hint, item)
        if text is not None:
            owner = "" if loc[:1] == ("methods",) else f" (a parameter of {method})"
            raise _own("param", f"{dotted(loc)} {text}{owner}, got {item!r}", at=loc)


# ---- network options -------------------------------------------------------------------------

_BUILD_ARGS = ("in_channels", "num_classes", "image_size")   # given by the engine, not the grid


def check_network_options(network: str, options: dict[str, Any], loc: tuple) -> None:
    """``train.network_options`` are keyword options of the network's factory, of its types."""
    factory = NETWORKS.get(network)
    hints = typing.get_type_hints(factory)
    known = {name: hints.get(name, Any) for name in inspect.signature(factory).parameters
             if name not in _BUILD_ARGS}
    for key, value in options.items():
        if key not in known:
            names = sorted(known)
            raise GridError(loc + (key,), f"network {network!r} has no option {key!r}"
                            f"{did_you_mean(key, names) or ';'} known: {', '.join(names) or 'none'}")
        text = param_type_error(known[key], value)
        if text is not None:
            raise GridError(loc + (key,), f"{dotted(loc + (key,))} {text} (an option of "
                            f"{network}), got {_short(value)}")


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
        line = lines.of(exc.loc)
        raise ConfigError(f"{path}{f':{line}' if line else ''}: {exc.message}") from None

