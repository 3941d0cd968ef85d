"""Choosing runs of a grid by ``key=value`` filters (the CLI's ``--only``).

A key is a field of the run (``method``, ``seed``, ``noise_rate``, ``run_id``, ...) or one of its
method parameters (``select_on=ce``); a value may list comma-separated alternatives. Numbers
compare as numbers (``noise_rate=0.20`` matches 0.2), seeds and names as text, booleans as
``true`` / ``false``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from bench.errors import ConfigError
from bench.spec import RunSpec

RUN_FIELDS = frozenset({"method", "label", "dataset", "network", "noise_type", "noise_rate",
                        "noise_variant", "seed", "noise_seed", "noise_draw", "run_id"})
_MISSING = object()   # the value of a method parameter a run does not have


@dataclass(frozen=True)
class RunFilter:
    """One ``key=value[,value...]`` filter: a run matches when its value is one of ``values``."""

    key: str
    values: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> RunFilter:
        if "=" not in text:
            raise ConfigError(f"filter {text!r} must look like key=value, e.g. method=jocor")
        key, _, values = text.partition("=")
        return cls(key.strip(), tuple(v.strip() for v in values.split(",")))

    def matches(self, run: RunSpec) -> bool:
        actual = _value_of(run, self.key)
        if actual is _MISSING:
            return False
        if isinstance(actual, bool):
            actual = str(actual).lower()
        if self._numeric(actual):
            return actual is not None and any(_float_eq(actual, v) for v in self.values)
        return str(actual) in self.values

    def _numeric(self, actual: Any) -> bool:
        """Whether the key compares as a number: the noise rate, a float, an integer parameter."""
        return (self.key == "noise_rate" or isinstance(actual, float)
                or (self.key not in RUN_FIELDS and isinstance(actual, int)))


def filter_runs(runs: Iterable[RunSpec], filters: Iterable[str]) -> list[RunSpec]:
    """Keep the runs matching every ``key=value`` (values may be comma-separated alternatives).

    ``key`` is a field of the run (method, seed, noise_rate, ...) or one of its method
    parameters (``select_on=ce``); a run without that parameter does not match.
    """
    parsed = [RunFilter.parse(f) for f in filters]
    runs = list(runs)
    _check_keys(parsed, runs)
    return [run for run in runs if all(f.matches(run) for f in parsed)]


def _check_keys(filters: list[RunFilter], runs: list[RunSpec]) -> None:
    """Each key is a field of a run or a method parameter of at least one of ``runs``."""
    params = {k for run in runs for k in run.method_params}
    for f in filters:
        if f.key not in RUN_FIELDS and f.key not in params:
            raise ConfigError(f"cannot filter on {f.key!r}; known: {', '.join(sorted(RUN_FIELDS))}, "
                              f"or a method parameter of the grid ({', '.join(sorted(params)) or 'none'})")


def _value_of(run: RunSpec, key: str) -> Any:
    if key == "run_id":
        return run.run_id
    if key in RUN_FIELDS:
        return getattr(run, key)
    return run.method_params.get(key, _MISSING)


def _float_eq(a: float, b: str) -> bool:
    try:
        return abs(float(a) - float(b)) < 1e-9
    except ValueError:
        return False
