"""Run specifications and grid files: the names the harness imports, from the modules that
hold them.

- :mod:`bench.spec`: what a run is (:class:`TrainConfig`, :class:`RunSpec`, its run_id) and
  its method parameters resolved (:func:`resolve_method_params`);
- :mod:`bench.expansion`: grid files read, validated and expanded into runs (:func:`load_grid`,
  :func:`expand_grid`, :class:`Grid`);
- :mod:`bench.run_filter`: runs chosen by ``key=value`` filters (:func:`filter_runs`);
- :mod:`bench.smoke`: a reduced copy of a run (:func:`smoke_spec`, ``SMOKE_RESULTS``).
"""

from __future__ import annotations

from bench.expansion import Grid, expand_grid, load_grid
from bench.run_filter import filter_runs
from bench.smoke import SMOKE_RESULTS, smoke_spec
from bench.spec import RunSpec, TrainConfig, resolve_method_params

__all__ = ["SMOKE_RESULTS", "Grid", "RunSpec", "TrainConfig", "expand_grid", "filter_runs",
           "load_grid", "resolve_method_params", "smoke_spec"]
