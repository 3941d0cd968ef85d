"""The value types of the grid schema (pydantic ``Annotated`` types).

Numbers keep the type they were written with (``lambda_u: 25`` stays an integer) and refuse
booleans; names are checked against the registries (methods, datasets, networks, noise types,
reporting protocols, papers) with the closest known name on a typo; a key that takes one value
or a list of them holds a non-empty list; seeds and noise seeds take their short forms
(``seeds: 5`` is 1..5, ``noise_seed: seed`` each run's own).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Callable, Sequence

from pydantic import AfterValidator, BeforeValidator, Field, PlainValidator

from bench.protocols import PROTOCOLS
from bench.registry import DATASETS, METHODS, NETWORKS, NOISE_MODELS
from bench.schema_errors import own_error, unknown, value_error


def choice(kind: str, names: Callable[[], Sequence[str]]) -> AfterValidator:
    """A string that is one of ``names()`` (read when a value is checked, not at import)."""
    def check(value: str) -> str:
        known = list(names())
        if value not in known:
            raise own_error("unknown_name", unknown(kind, value, known))
        return value
    return AfterValidator(check)


def one_or_many(value: Any) -> Any:
    """A list as it is, any other value as a list of one."""
    return value if isinstance(value, list) else [value]


def _number(*, gt: float | None = None, ge: float | None = None,
            lt: float | None = None) -> PlainValidator:
    """An int or a float, kept as written (bool refused), within the given bounds."""
    def check(value: Any) -> int | float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise value_error("must be a number")
        if gt is not None and not value > gt:
            raise value_error(f"must be > {gt}")
        if ge is not None and not value >= ge:
            raise value_error(f"must be >= {ge}")
        if lt is not None and not value < lt:
            raise value_error(f"must be < {lt}")
        return value
    return PlainValidator(check)


def _noise_seeds(value: Any) -> tuple:
    """("seed",), or the distinct non-negative integer noise seeds of a noise_seed(s) value."""
    if value == "seed":
        return ("seed",)
    values = one_or_many(value)
    if (not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                              for v in values) or len(set(values)) != len(values)):
        raise value_error("must be the word 'seed', a non-negative integer or a list of "
                          "distinct ones")
    return tuple(values)


def _seeds(value: Any) -> list[int]:
    """``n`` -> [1..n]; a list of distinct integers as it is."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return list(range(1, value + 1))
    if (isinstance(value, list) and value and len(set(value)) == len(value)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        return list(value)
    raise value_error("must be a positive count or a list of distinct integers")


def _plain_name(value: Any) -> str:
    """A grid's name names its records' folder: letters, digits, '_' and '-', nothing else."""
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", value):
        raise value_error("must be a plain name (letters, digits, '_' and '-')")
    return value


def _paper_names() -> list[str]:
    """The papers the suite has numbers or run counts for (``bench.papers``)."""
    from bench.papers import DEFAULT_N_RUNS   # pandas, only when a grid names a paper

    return sorted(DEFAULT_N_RUNS)


PositiveInt = Annotated[int, Field(strict=True, ge=1)]
NonNegativeInt = Annotated[int, Field(strict=True, ge=0)]
Number = Annotated[float, _number()]
NonNegative = Annotated[float, _number(ge=0)]
Positive = Annotated[float, _number(gt=0)]
Fraction = Annotated[float, _number(ge=0, lt=1)]
Name = Annotated[str, PlainValidator(_plain_name)]
MethodName = Annotated[str, choice("method", METHODS.names)]
DatasetName = Annotated[str, choice("dataset", DATASETS.names)]
NetworkName = Annotated[str, choice("network", NETWORKS.names)]
NoiseType = Annotated[str, choice("noise type", NOISE_MODELS.names)]
Protocol = Annotated[str, choice("protocol", lambda: PROTOCOLS)]
PaperName = Annotated[str, choice("paper", _paper_names)]
NoiseSeeds = Annotated[tuple, PlainValidator(_noise_seeds)]
Seeds = Annotated[list, PlainValidator(_seeds)]


# one value or a non-empty list of them, as a list
_AS_LIST = BeforeValidator(one_or_many)
_NON_EMPTY = Field(min_length=1)
Numbers = Annotated[list[Number], _AS_LIST, _NON_EMPTY]
Ints = Annotated[list[int], _AS_LIST, _NON_EMPTY]
Strings = Annotated[list[str], _AS_LIST, _NON_EMPTY]
MethodNames = Annotated[list[MethodName], _AS_LIST, _NON_EMPTY]
DatasetNames = Annotated[list[DatasetName], _AS_LIST, _NON_EMPTY]
NoiseTypes = Annotated[list[NoiseType], _AS_LIST, _NON_EMPTY]
