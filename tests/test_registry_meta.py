"""Registry metadata: what a registration states beside its object, read back by name."""

from __future__ import annotations

import pytest

from bench.errors import UnknownNameError
from bench.registry import Registry


def test_metadata_is_read_back_by_name_and_is_read_only() -> None:
    things: Registry[object] = Registry("thing")
    first, second = object(), object()
    assert things.register("first", size=3, shape=(1, 2))(first) is first
    assert things.register("second")(second) is second
    assert things.get("first") is first and things.get("second") is second
    assert dict(things.meta("first")) == {"size": 3, "shape": (1, 2)}
    assert dict(things.meta("second")) == {}
    with pytest.raises(TypeError):
        things.meta("first")["size"] = 4      # type: ignore[index]


def test_metadata_of_an_unknown_name_lists_the_known_ones() -> None:
    things: Registry[object] = Registry("thing")
    things.register("first", size=3)(object())
    with pytest.raises(UnknownNameError, match="unknown thing 'other'; known: first"):
        things.meta("other")


def test_a_name_registered_twice_is_refused_and_keeps_its_metadata() -> None:
    things: Registry[object] = Registry("thing")
    things.register("first", size=3)(object())
    with pytest.raises(ValueError, match="registered twice"):
        things.register("first", size=4)(object())
    assert things.meta("first")["size"] == 3
