"""The one-line errors of the grid schema, each at the place in the data it is about.

:class:`GridError` carries the location of a fault in the parsed data (the keys and list
positions leading to it) and a one-line message; :meth:`GridError.in_file` turns the location
into the line of the file (:class:`bench.yaml_loader.Lines`). :func:`validated` reduces a
pydantic ``ValidationError`` to the GridError of its deepest fault, worded for the file's author:
``noise[1].rate must be a number, got 'abc'``, ``unknown key 'lr_' in train; did you mean 'lr'?``.

Validators raise :func:`own_error` (a complete message of ours, whose ``at`` extends the error's
location) or :func:`value_error` (a type or range fault, worded as ``<location> <text>, got
<value>``).
"""

from __future__ import annotations

import difflib
import typing
from typing import Any, Iterable, Sequence

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from bench.errors import ConfigError
from bench.yaml_loader import Lines

_M = typing.TypeVar("_M", bound=BaseModel)

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


class GridError(Exception):
    """A fault at ``loc`` (keys and list positions into the grid's data): one-line ``message``."""

    def __init__(self, loc: Sequence[Any], message: str) -> None:
        super().__init__(message)
        self.loc = tuple(loc)
        self.message = message

    def in_file(self, source: str, lines: Lines) -> ConfigError:
        """This fault as the ConfigError ``<source>:<line>: <message>`` (no line where
        ``lines`` has none for the location)."""
        line = lines.of(self.loc)
        return ConfigError(f"{source}{f':{line}' if line else ''}: {self.message}")


def did_you_mean(word: Any, choices: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for the closest of ``choices``, or nothing when none is close."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown(kind: str, name: Any, choices: Sequence[str]) -> str:
    """``unknown <kind> 'x'; did you mean 'y'? known: a, b, c``."""
    return f"unknown {kind} {name!r}{did_you_mean(name, choices) or ';'} known: {', '.join(choices)}"


def dotted(path: Sequence[Any]) -> str:
    """``noise[1].rate`` for ("noise", 1, "rate")."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def short(value: Any, limit: int = 60) -> str:
    """The repr of ``value``, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def own_error(kind: str, message: str, **ctx: Any) -> PydanticCustomError:
    """A complete message of ours (``grid_*``); ``at`` extends the error's location."""
    return PydanticCustomError(f"grid_{kind}", message, ctx or None)


def value_error(text: str) -> PydanticCustomError:
    """A type or range fault, shown as ``<location> <text>, got <value>``."""
    return PydanticCustomError("value", text)


def error_text(error: Any) -> str:
    """What one of pydantic's errors says of its value (``must be an integer``)."""
    kind = error["type"]
    return _TYPE_TEXT[kind].format(**error.get("ctx", {})) if kind in _TYPE_TEXT else error["msg"]


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
    return GridError(path, f"{dotted(path) or 'the file'} {error_text(error)}, "
                           f"got {short(error['input'])}")


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
