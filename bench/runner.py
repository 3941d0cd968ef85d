"""The grid runner's command line: ``python -m bench run GRID`` and ``python -m bench status GRID``.

Resumable and idempotent. The state of a grid is the files under ``<results>/<grid>/``: a run
with an ``ok`` record is done; a ``failed`` record carries ``attempts`` and is retried until
``--retries`` is used up; a lock ``.locks/<run_id>.lock`` (:mod:`bench.locks`) marks a run in
progress, so several runners (on one machine or on many sharing the results folder) never train
the same cell twice. Records are written atomically by the process that trained the run, and a
run's full state is checkpointed every ``--checkpoint-every`` epochs under ``--checkpoints``, so
killing the runner at any moment and starting it again completes the grid with every run
recorded exactly once.

The layers, in :mod:`bench.grid`: ``options`` (every flag, defined once), ``state`` (the scan of
records and locks), ``session`` (the rounds of a run, retries, crashes and signals), ``worker``
(what one task does in a worker process), ``backends`` (loky, dask, ray), ``devices`` (the GPU
pool), ``status`` (the status table) and ``estimates`` (a dry run's GPU- and CPU-hours).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterable

from bench.cli import first_line
from bench.config import SMOKE_RESULTS, RunSpec, filter_runs, load_grid, smoke_spec
from bench.errors import BenchError, ConfigError
from bench.grid.devices import default_threads
from bench.grid.options import RunnerOptions, add_run_arguments, add_status_arguments, options_from_args
from bench.grid.session import RunSession
from bench.grid.status import print_status

__all__ = ["RunnerOptions", "run_grid", "download_datasets", "add_subcommands"]

SMOKE_LIMITS = ("limit_train", "limit_test", "epochs")


def run_grid(grid_path: str | Path, *, only: Iterable[str] = (),
             options: RunnerOptions | None = None) -> int:
    """Run (or complete) a grid; returns 0 when every selected run is ok, else 1."""
    grid = load_grid(grid_path)
    runs = filter_runs(grid.runs, list(only))
    return RunSession(grid.name, runs, options or RunnerOptions(),
                      grid_run_ids=[r.run_id for r in grid.runs]).run()


def download_datasets(runs: Iterable[RunSpec], *, data_root: str | None = None) -> None:
    """Fetch each dataset of ``runs`` once, here, so that parallel workers never download."""
    from bench.data import load_dataset

    for name in sorted({r.dataset for r in runs}):
        print(f"checking {name} (downloading what is missing)", flush=True)
        try:
            load_dataset(name, root=data_root, download=True)
        except BenchError:
            raise
        except Exception as exc:  # offline, a proxy, a full disk: torchvision's long traceback
            raise BenchError(f"cannot download {name}: {type(exc).__name__}: "
                             f"{first_line(str(exc))}; without network, put its files under "
                             "the data root (docs/datasets.md)") from None


def _add_selection(parser: argparse.ArgumentParser, only_help: str | None) -> None:
    """The grid file and the ``--only`` filters, shared by ``run`` and ``status``."""
    parser.add_argument("grid", nargs="?", help="grid YAML file")
    parser.add_argument("--only", nargs="*", default=[], metavar="KEY=VALUE", help=only_help)


def _add_run_command(sub) -> None:
    p = sub.add_parser("run", help="run a grid (resumable; parallel, GPU pool, dask, ray)",
                       description="Run every cell of a grid that has no record yet. Safe to "
                                   "kill and start again, and to start on several machines.")
    _add_selection(p, "run only matching cells, e.g. method=jocor noise_rate=0.2,0.5 "
                      "select_on=ce (a run field or a method parameter)")
    add_run_arguments(p)
    p.add_argument("--download", action="store_true",
                   help="fetch missing datasets of the grid (those torchvision can download) "
                        "before any run starts")
    p.add_argument("--dry-run", action="store_true",
                   help="list the cells and what would run; run nothing")
    p.add_argument("--limit-train", type=int, default=None, metavar="N",
                   help="smoke run: train on the first N training images (records marked "
                        f"smoke, written to {SMOKE_RESULTS}/, never reported)")
    p.add_argument("--limit-test", type=int, default=None, metavar="M",
                   help="smoke run: score the first M test images (default: N)")
    p.add_argument("--epochs", type=int, default=None, metavar="E",
                   help="smoke run: train E epochs from each run's start epoch")
    p.set_defaults(func=cmd_run)


def add_subcommands(sub) -> None:
    """``run`` and ``status`` on the subparsers of ``python -m bench``."""
    _add_run_command(sub)
    s = sub.add_parser("status", help="done / failed / running / pending per cell of a grid")
    _add_selection(s, None)
    add_status_arguments(s)
    s.set_defaults(func=cmd_status)


def _grid_and_filters(args: argparse.Namespace) -> tuple[str, list[str]]:
    """The grid file and the ``--only`` filters, also when the grid came after ``--only``."""
    only = list(args.only)
    grid = args.grid
    if grid is None:
        files = [o for o in only if "=" not in o
                 and (o.endswith((".yaml", ".yml")) or Path(o).is_file())]
        if len(files) != 1:
            raise ConfigError("a grid file is required, e.g. python -m bench "
                              f"{args.command} bench/grids/demo.yaml")
        grid = files[0]
        only.remove(grid)
    bad = [o for o in only if "=" not in o]
    if bad:
        raise ConfigError(f"--only takes KEY=VALUE filters, got {bad[0]!r}")
    return grid, only


def _smoke_results(args: argparse.Namespace, smoke: bool) -> str:
    """The records folder: ``--results``, else results (smoke-results for a smoke run)."""
    if smoke and args.results is not None and Path(args.results).resolve().name == "results":
        raise ConfigError(f"smoke runs are never written to results/; use --results "
                          f"{SMOKE_RESULTS} (the default) or another folder")
    return args.results or (SMOKE_RESULTS if smoke else "results")


def cmd_run(args: argparse.Namespace) -> int:
    """``run``: the dry-run table, or a run session over the selected runs."""
    grid_path, only = _grid_and_filters(args)
    limits = {k: getattr(args, k) for k in SMOKE_LIMITS}
    smoke = any(v is not None for v in limits.values())
    args.results = _smoke_results(args, smoke)
    opts = options_from_args(args)
    grid = load_grid(grid_path)
    runs = filter_runs(grid.runs, only)
    if not runs:
        raise ConfigError(f"no run of grid {grid.name} matches {' '.join(only)}")
    all_runs = list(grid.runs)
    if smoke:
        runs = [smoke_spec(r, **limits) for r in runs]
        all_runs = [smoke_spec(r, **limits) for r in grid.runs]
    if args.dry_run:
        return print_status(grid.name, runs, results=opts.results, retries=opts.retries,
                            stale_minutes=opts.stale_lock_minutes, dry_run=True, reuse=opts.reuse,
                            threads=opts.threads or default_threads(opts.jobs or 1))
    if args.download:
        download_datasets(runs, data_root=opts.data_root)
    return RunSession(grid.name, runs, opts, grid_run_ids=[r.run_id for r in all_runs]).run()


def cmd_status(args: argparse.Namespace) -> int:
    """``status``: the per-cell table of the grid's state."""
    grid_path, only = _grid_and_filters(args)
    opts = options_from_args(args)
    grid = load_grid(grid_path)
    runs = filter_runs(grid.runs, only)
    return print_status(grid.name, runs, results=opts.results, retries=opts.retries,
                        stale_minutes=opts.stale_lock_minutes, dry_run=False)
