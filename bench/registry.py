"""The one registry of methods, datasets, networks and noise models.

Everything the suite can run is registered here by a decorator next to its definition; the CLI,
the grid validation and the parametrised tests all read these dictionaries, so nothing is listed
twice by hand.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from bench.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object mapping with a decorator and an error that lists the known names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        _load_plugins()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        _load_plugins()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        _load_plugins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


METHODS: Registry = Registry("method")
DATASETS: Registry = Registry("dataset")
NETWORKS: Registry = Registry("network")
NOISE_MODELS: Registry = Registry("noise type")
NOISE_DRAWS: Registry = Registry("noise draw")

_loaded = False


def _load_plugins() -> None:
    """Import the modules whose decorators fill the registries (once, on first use)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import bench.data  # noqa: F401
    import bench.models  # noqa: F401
    import bench.noise  # noqa: F401
    import methods  # noqa: F401
