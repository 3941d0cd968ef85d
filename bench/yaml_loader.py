"""Reading grid and preset files: YAML 1.2 scalars, no duplicate keys, the line of every key.

PyYAML implements YAML 1.1, under which ``1e-3`` (no dot) is a string and ``yes`` / ``on`` are
booleans. Grid files are read with YAML 1.2's core rules for floats and booleans instead, so
``lr: 1e-3`` is the number 0.001 and ``variant: on`` stays a string. A key given twice in one
mapping is an error naming the key and both lines (PyYAML would keep the last silently). Every
error is a :class:`~bench.errors.ConfigError` of one line, ``<file>:<line>: <message>``.

:func:`read_yaml` returns the data with :class:`Lines`, which maps a location in the data (the
keys and list positions leading to a value, as in a pydantic error's ``loc``) to the line of its
key in the file, so that a later check can point at the line at fault.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from bench.errors import ConfigError

_FLOAT_TAG = "tag:yaml.org,2002:float"
_BOOL_TAG = "tag:yaml.org,2002:bool"

# YAML 1.2 core schema: a dot or an exponent makes a float (``1e-3``, ``.5``, ``2.``), as do the
# three spellings of infinity and not-a-number; integers keep their own resolver, tried first
_FLOAT_12 = re.compile(r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
                          |[-+]?\.(?:inf|Inf|INF)
                          |\.(?:nan|NaN|NAN))$""", re.X)
_BOOL_12 = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


class GridLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats and booleans."""


GridLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_FLOAT_TAG, _BOOL_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
GridLoader.add_implicit_resolver(_FLOAT_TAG, _FLOAT_12, list("-+0123456789."))
GridLoader.add_implicit_resolver(_BOOL_TAG, _BOOL_12, list("tTfF"))


@dataclass(frozen=True)
class Lines:
    """The line (1-based) of every mapping key and list item of a document, by location."""

    by_location: dict[tuple, int]

    def of(self, loc: Sequence[Any]) -> int | None:
        """The line of the deepest prefix of ``loc`` the document has (None: not even the first)."""
        loc = tuple(loc)
        for end in range(len(loc), 0, -1):
            line = self.by_location.get(loc[:end])
            if line is not None:
                return line
        return None


NO_LINES = Lines({})


def read_yaml(path: Path) -> tuple[Any, Lines]:
    """The data of a YAML file and the lines of its keys; a one-line ConfigError otherwise."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    text = _decode(raw, path)
    try:
        loader = GridLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None, NO_LINES
            lines: dict[tuple, int] = {}
            _index(node, (), lines, path)
            return loader.construct_document(node), Lines(lines)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: malformed YAML: {problem}") from None


def _decode(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at "
                          f"offset {exc.start}); save the file as UTF-8") from None


def _index(node: yaml.Node, loc: tuple, lines: dict[tuple, int], path: Path) -> None:
    """Record the line of every key and item under ``node``; refuse a key given twice."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = _key(key_node, path)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(f"{path}:{line}: duplicate key {key!r} (first given on line "
                                  f"{seen[key]})")
            seen[key] = line
            lines[loc + (key,)] = line
            _index(value_node, loc + (key,), lines, path)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[loc + (i,)] = item.start_mark.line + 1
            _index(item, loc + (i,), lines, path)


def _key(node: yaml.Node, path: Path) -> Any:
    """A key as the loader constructs it: a string, or a number or boolean written plain."""
    if not isinstance(node, yaml.ScalarNode):
        raise ConfigError(f"{path}:{node.start_mark.line + 1}: a key must be a plain value, "
                          "not a list or mapping")
    if node.tag in ("tag:yaml.org,2002:str", "tag:yaml.org,2002:merge"):
        return node.value
    return GridLoader("").construct_object(node)
