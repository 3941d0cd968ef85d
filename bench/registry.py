"""The one registry of methods, datasets, networks and noise models.

Everything the suite can run is registered here by a decorator next to its definition; the CLI,
the grid validation and the parametrised tests all read these dictionaries, so nothing is listed
twice by hand. A registration can carry metadata that other modules read without importing the
object's module: each dataset states its sizes there (``sizes=``, read by
:mod:`bench.cost_model`).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Callable, Generic, Iterator, Mapping, TypeVar

from bench.errors import UnknownNameError

T = TypeVar("T")
_NO_META: Mapping[str, Any] = MappingProxyType({})


class Registry(Generic[T]):
    """A name -> object mapping with a decorator and an error that lists the known names.

    Each name may carry keyword metadata given at registration (:meth:`register`), read back
    read-only by :meth:`meta`.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._meta: dict[str, Mapping[str, Any]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        """A decorator that registers its object as ``name``, with ``meta`` as its metadata."""

        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            if meta:
                self._meta[name] = MappingProxyType(dict(meta))
            return obj

        return decorator

    def get(self, name: str) -> T:
        _load_plugins()
        try:
            return self._items[name]
        except KeyError:
            raise self._unknown(name) from None

    def meta(self, name: str) -> Mapping[str, Any]:
        """The metadata ``name`` was registered with (empty when none was given)."""
        if name not in self:
            raise self._unknown(name)
        return self._meta.get(name, _NO_META)

    def _unknown(self, name: str) -> UnknownNameError:
        known = ", ".join(sorted(self._items)) or "none"
        return UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}")

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
