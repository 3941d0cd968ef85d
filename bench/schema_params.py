"""Method parameters and network options checked against the code that declares them.

A method's parameters are the fields of its ``Config`` dataclass and a network's options the
keyword arguments of its factory; a grid's value for one must be of the declared type (strictly:
an integer passes as a float, nothing else converts), and an unknown name is refused with the
closest known one.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any

from pydantic import ConfigDict, TypeAdapter, ValidationError

from bench.registry import METHODS, NETWORKS
from bench.schema_errors import GridError, did_you_mean, dotted, error_text, own_error, short

_BUILD_ARGS = ("in_channels", "num_classes", "image_size")   # given by the engine, not the grid


def param_types(method: str) -> dict[str, Any]:
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
        return error_text(exc.errors()[0])
    return None


def check_params(method: str, params: dict[str, Any], loc: tuple) -> None:
    """A method's block of a grid: known parameters, each value (or listed value) of its type."""
    types = param_types(method)
    for key, value in params.items():
        if key not in types:
            known = sorted(types)
            raise own_error("param", f"method {method!r} has no parameter {key!r}"
                            f"{did_you_mean(key, known) or ';'} known: {', '.join(known) or 'none'}",
                            at=loc + (key,))
        check_param_value(method, key, value, loc + (key,), expands=True)


def check_param_value(method: str, key: str, value: Any, loc: tuple, *, expands: bool) -> None:
    """Each value of a parameter (each item of a list that expands) has the parameter's type."""
    hint = param_types(method)[key]
    for item in (value if expands and isinstance(value, list) else [value]):
        text = param_type_error(hint, item)
        if text is not None:
            owner = "" if loc[:1] == ("methods",) else f" (a parameter of {method})"
            raise own_error("param", f"{dotted(loc)} {text}{owner}, got {item!r}", at=loc)


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
                            f"{network}), got {short(value)}")
