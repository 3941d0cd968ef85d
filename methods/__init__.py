"""LNL methods, one algorithm a file; each registers itself in bench.registry.METHODS."""

from methods import standard  # noqa: F401
